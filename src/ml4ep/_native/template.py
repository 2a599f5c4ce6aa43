"""Fixed C++ (and CMake) text shipped as files in the package, filled by one strict filler.

Generated code that does not depend on the model lives in real files beside the Python that fills it, as
``ml4ep/infer/cpp/*.hpp``, ``ml4ep/bdt/cpp/*`` and ``ml4ep/fastsim/cpp/*`` (package data, see ``pyproject.toml``):
they read, diff and lint as C++. The parts that do depend on it are ``@NAME@`` placeholders (capitals, digits and
``_`` between two ``@``), filled by :func:`fill`:

- every placeholder of the text must be given and every value given must be used, else a :class:`TemplateError`
  naming the placeholders left unfilled and the values left unused (a renamed placeholder never ships as
  ``@NAME@`` in a user's header, nor is a value silently dropped);
- the text is filled in one pass: a value is never searched for placeholders itself, so a name that happens to
  read ``@LESS@`` stays as it is;
- values are inserted as they are (``str()`` of them): names from models go through :mod:`ml4ep._native.names`
  first.

:func:`load` reads a template file of a package (``importlib.resources``: from a wheel, a zip or a source tree
alike); :func:`sections` cuts a file of several small snippets at its ``//@@ NAME`` marker lines.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from ..errors import Ml4epError

__all__ = ["PLACEHOLDER", "TemplateError", "fill", "load", "placeholders", "render", "sections"]

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
_SECTION = re.compile(r"^//@@ ([A-Z][A-Z0-9_]*)\n", re.M)


class TemplateError(Ml4epError, ValueError):
    """A template filled with missing or surplus values (a bug of ml4ep, not of the model)."""


def placeholders(text: str) -> set[str]:
    """The names of the placeholders in ``text``."""
    return set(PLACEHOLDER.findall(text))


def fill(text: str, /, what: str = "template", **subs) -> str:
    """``text`` with every ``@NAME@`` replaced by ``str(subs["NAME"])``, in one pass. ``what`` names the template in
    errors. Raises :class:`TemplateError` when a placeholder has no value or a value no placeholder."""
    found = placeholders(text)
    missing, unused = sorted(found - subs.keys()), sorted(subs.keys() - found)
    if missing or unused:
        parts = []
        if missing:
            parts.append("placeholders left unfilled: " + ", ".join(f"@{k}@" for k in missing))
        if unused:
            parts.append("values given but not used: " + ", ".join(unused))
        raise TemplateError(f"{what}: {'; '.join(parts)}")
    return PLACEHOLDER.sub(lambda m: str(subs[m.group(1)]), text)


@functools.lru_cache(maxsize=None)
def load(package: str, name: str) -> str:
    """The template file ``name`` (a path relative to the package, e.g. ``"cpp/bridge.cpp"``) of ``package``."""
    try:
        return resources.files(package).joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise TemplateError(f"the template {name} of {package} is missing (a broken install?)") from exc


def render(package: str, name: str, **subs) -> str:
    """:func:`fill` of the template file ``name`` of ``package``."""
    return fill(load(package, name), what=f"{package}:{name}", **subs)


def sections(text: str, what: str = "template") -> dict[str, str]:
    """The snippets of a file of several: each starts after its marker line ``//@@ NAME`` and runs to the next marker
    (or the end), its last newline included. Text before the first marker (a comment) is not a snippet."""
    marks = list(_SECTION.finditer(text))
    names = [m.group(1) for m in marks]
    if len(set(names)) != len(names):
        raise TemplateError(f"{what}: a snippet name appears twice in {names}")
    return {m.group(1): text[m.end():nxt.start() if nxt else len(text)]
            for m, nxt in zip(marks, [*marks[1:], None])}
