"""ml4ep._native.template: the strict filler of the template files, their loader, and the files shipped."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from ml4ep._native.template import TemplateError, fill, load, placeholders, render, sections
from ml4ep.errors import Ml4epError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ml4ep"


def test_fill_replaces_every_placeholder():
    assert fill("namespace @NAME@ { int n = @N@; }  // @NAME@", NAME="m", N=3) == "namespace m { int n = 3; }  // m"
    assert fill("no placeholders") == "no placeholders"
    assert fill("a@@b @ c@d@ @D@", D=1) == "a@@b @ c@d@ 1"  # only @CAPS@ names are placeholders
    assert placeholders("@A@ @B_2@ @a@ @2X@ @@") == {"A", "B_2"}


def test_fill_names_what_is_missing_and_unused():
    with pytest.raises(TemplateError, match=r"kernel\.hpp: placeholders left unfilled: @LESS@, @ZERO@$"):
        fill("x @LESS@ y @ZERO@", what="kernel.hpp")
    with pytest.raises(TemplateError, match=r"values given but not used: EXTRA, OTHER$"):
        fill("@A@", A=1, EXTRA=2, OTHER=3)
    with pytest.raises(TemplateError, match=r"unfilled: @B@; values given but not used: C") as err:
        fill("@A@ @B@", A=1, C=2)
    assert isinstance(err.value, Ml4epError) and isinstance(err.value, ValueError)


def test_fill_is_one_pass():
    # a value that reads like a placeholder stays as it is (a name from a model is never filled in turn)
    assert fill("@A@ @B@", A="@B@", B="b") == "@B@ b"
    assert fill("@A@", A="@UNFILLED@") == "@UNFILLED@"


def test_sections():
    text = "// header comment\n//@@ ONE\nfirst\n//@@ TWO\nsecond\nline\n//@@ EMPTY\n"
    assert sections(text) == {"ONE": "first\n", "TWO": "second\nline\n", "EMPTY": ""}
    assert sections("no markers\n") == {}
    with pytest.raises(TemplateError, match="twice"):
        sections("//@@ A\nx\n//@@ A\ny\n", "f.cpp")


def test_load_and_render_package_files():
    assert "PyInit_@MODULE@" in load("ml4ep.bdt", "cpp/bridge.cpp")
    out = render("ml4ep.bdt", "cpp/example.cpp", NAME="higgs")
    assert "higgs::predict" in out and "@" not in out
    with pytest.raises(TemplateError, match="example.cpp: placeholders left unfilled: @NAME@"):
        render("ml4ep.bdt", "cpp/example.cpp")
    with pytest.raises(TemplateError, match="missing"):
        load("ml4ep.bdt", "cpp/no_such_file.hpp")


def _template_files() -> list[Path]:
    return sorted(p for d in ("bdt/cpp", "fastsim/cpp", "infer/cpp") for p in (PACKAGE / d).iterdir() if p.is_file())


def test_template_files_are_package_data():
    """Every template file is shipped in the wheel: matched by a pattern of [tool.setuptools.package-data]."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = _template_files()
    assert files
    for p in files:
        rel = p.relative_to(PACKAGE)
        pkg = "ml4ep." + rel.parts[0]
        assert any(fnmatch.fnmatch(Path(*rel.parts[1:]).as_posix(), pat) for pat in data.get(pkg, [])), \
            f"{rel} is not package data of {pkg} in pyproject.toml"


@pytest.mark.parametrize("path", _template_files(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_template_files_are_plain_text(path):
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\t" not in text and "\r" not in text
    assert all(c == "\n" or 32 <= ord(c) < 127 for c in text), "ASCII only"
    # a misspelt placeholder (@Name@) would be left in the output: every @word@ is a placeholder
    assert {w for w in re.findall(r"@([A-Za-z_][A-Za-z0-9_]*)@", text)} == placeholders(text)
