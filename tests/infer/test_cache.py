"""The compile cache trusts nothing it did not build: folders 0700, foreign or shared folders ignored, every cached
file checked against the content hash recorded when it was built, builds moved in place atomically."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

import ml4ep.infer as mi
from ml4ep.errors import ModelLoadError
from ml4ep._native import build


def _model(scale: float = 1.0, name: str = "cachetest"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    w = numpy_helper.from_array((np.arange(12, dtype=np.float32).reshape(4, 3) - 5) * scale, "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], name, [x], [y], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ort(model, x):
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ML4EP_CACHE_DIR", str(root))
    monkeypatch.setattr(build, "_private_root", None)
    return root


def _no_write_by_others(path: Path):
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            assert not p.stat().st_mode & 0o022, f"{p} is writable by others: {stat.filemode(p.stat().st_mode)}"


def test_folders_private_even_with_umask_002(cache):
    old = os.umask(0o002)
    try:
        m = mi.compile(_model())
    finally:
        os.umask(old)
    np.testing.assert_allclose(m(X), _ort(_model(), X), rtol=1e-6)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "infer").stat().st_mode) == 0o700
    assert m.directory.parent == cache / "infer"
    _no_write_by_others(cache)
    assert (m.directory / build.MANIFEST).exists()


def _plant_library(folder: Path, marker: Path):
    """A library that, loaded, writes ``marker``: what an attacker would put at the predictable path."""
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "evil.cpp"
    src.write_text(textwrap.dedent(f"""
        #include <cstdio>
        __attribute__((constructor)) static void planted() {{ std::FILE* f = std::fopen("{marker}", "w"); if (f) std::fclose(f); }}
    """))
    subprocess.run([build.compiler(), "-shared", "-fPIC", str(src), "-o", str(folder / "lib.so")], check=True)


def _where(model, tmp_path) -> Path:
    """Where ``model`` is cached: compiled once in another process (this one must not have the library loaded when
    the test changes it: a changed mapped library, or a new one at a path already loaded, would fool the test)."""
    f = tmp_path / "where.onnx"
    f.write_bytes(model.SerializeToString())
    code = f"import ml4ep.infer as mi, onnx; print(mi.compile(onnx.load({str(f)!r})).directory)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=os.environ)
    return Path(out.stdout.strip().splitlines()[-1])


def _planted(tmp_path) -> Path:
    """The cached build of ``_model()`` replaced by a planted library (its meta.json kept); the marker it writes."""
    import shutil

    target = _where(_model(), tmp_path)
    meta = (target / "meta.json").read_text()
    shutil.rmtree(target)
    marker = tmp_path / "PWNED"
    _plant_library(target, marker)
    (target / "meta.json").write_text(meta)
    return marker


def test_planted_library_in_a_shared_cache_never_runs(cache, tmp_path, caplog):
    marker = _planted(tmp_path)
    os.chmod(cache, 0o775)  # a shared cache (group-writable)
    with caplog.at_level(logging.WARNING, logger="ml4ep._native.build"):
        m = mi.compile(_model())
    assert "not trusted" in caplog.text and "writable by its group" in caplog.text
    assert m.directory.parent.parent != cache  # built in a private folder instead
    np.testing.assert_allclose(m(X), _ort(_model(), X), rtol=1e-6)
    assert not marker.exists()
    os.chmod(cache, 0o700)


def test_planted_library_without_manifest_never_runs(cache, tmp_path, caplog):
    """Even in the user's own cache, a build without the manifest written at the end of a build is not loaded."""
    marker = _planted(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ml4ep._native.build"):
        m = mi.compile(_model())
    assert "no manifest" in caplog.text
    np.testing.assert_allclose(m(X), _ort(_model(), X), rtol=1e-6)
    assert not marker.exists()


def test_cache_of_another_user_is_not_used(cache, monkeypatch, caplog):
    mi.compile(_model())
    monkeypatch.setattr(os, "getuid", lambda: 4242)  # everything in the cache now belongs to "someone else"
    monkeypatch.setattr(build, "_private_root", None)
    with caplog.at_level(logging.WARNING, logger="ml4ep._native.build"):
        m = mi.compile(_model())
    assert "belongs to another user" in caplog.text
    assert cache not in m.directory.parents
    np.testing.assert_allclose(m(X), _ort(_model(), X), rtol=1e-6)


@pytest.mark.parametrize("what", ["weights", "library"])
def test_edited_cached_file_is_rebuilt(cache, what, caplog, tmp_path):
    model = _model(name=f"edit_{what}")
    target = _where(model, tmp_path)
    f = target / ("edit_" + what + ".bin" if what == "weights" else "lib.so")
    if what == "weights":
        data = bytearray(f.read_bytes())
        data[-4:] = np.float32(1e6).tobytes()  # one weight changed: silently wrong outputs if it were used
        f.write_bytes(bytes(data))
    else:
        f.write_bytes(f.read_bytes() + b"\0")
    with caplog.at_level(logging.WARNING, logger="ml4ep._native.build"):
        m = mi.compile(model)
    assert "has changed since it was built" in caplog.text
    np.testing.assert_allclose(m(X), _ort(model, X), rtol=1e-6)
    assert build.verify(m.directory) is None


def test_key_covers_python_and_blas(monkeypatch):
    k = build.cache_key("x")
    monkeypatch.setattr(sys, "version", sys.version + " other")
    assert build.cache_key("x") != k
    monkeypatch.undo()
    b = dict(build.blas())
    monkeypatch.setattr(build, "blas", lambda: {**b, "libdir": "/elsewhere"})
    assert build.cache_key("x") != k


def test_external_data_content_is_part_of_the_key(cache, tmp_path):
    d = tmp_path / "ext"
    d.mkdir()
    for scale in (1.0, -3.0):
        model = _model(scale, name="ext")
        ref = _ort(model, X)
        external_data_helper.convert_model_to_external_data(model, all_tensors_to_one_file=True, location="w.data",
                                                            size_threshold=0)
        import onnx

        onnx.save(model, str(d / "m.onnx"))
        got = mi.compile(d / "m.onnx")(X)  # same file name, same reference, new data
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_external_data_of_a_proto_is_refused(tmp_path, monkeypatch):
    import onnx

    model = _model(name="extproto")
    external_data_helper.convert_model_to_external_data(model, location="w.data", size_threshold=0)
    onnx.save(model, str(tmp_path / "m.onnx"))
    proto = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    monkeypatch.chdir(tmp_path)  # the data file is right there: still not read from the working directory
    with pytest.raises(ModelLoadError, match="external data"):
        mi.compile(proto)
    with pytest.raises(ModelLoadError, match="external data"):
        mi.compile(proto.SerializeToString())


_RACE = """
import sys, numpy as np, xgboost as xgb
import ml4ep.bdt as mb
rng = np.random.default_rng(int(sys.argv[1]))
X = rng.standard_normal((300, 4)); y = (X[:, 0] > X[:, 1]).astype(int)
b = xgb.train({"max_depth": 3, "objective": "binary:logistic", "seed": 0}, xgb.DMatrix(X, label=y), 5)
f = mb.from_xgboost(b)
for k in range(2):
    np.testing.assert_allclose(f.compile(name=f"race{k}").predict(X), b.predict(xgb.DMatrix(X)), rtol=1e-5)
print("ok")
"""


def test_two_processes_build_the_same_bdt(tmp_path):
    pytest.importorskip("xgboost")
    for rnd in range(2):
        env = dict(os.environ, ML4EP_CACHE_DIR=str(tmp_path / f"shared{rnd}"))
        procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(rnd)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0 and "ok" in out, err[-2000:]
        leftovers = [p.name for p in (tmp_path / f"shared{rnd}" / "bdt").iterdir() if p.name.startswith(".")]
        assert not leftovers


def test_files_beside_the_manifest_make_a_build_unsound(cache, tmp_path, caplog):
    """A file the build did not write (or one missing) means someone changed the folder: rebuilt."""
    model = _model(name="extra")
    target = _where(model, tmp_path)
    (target / "lib2.so").write_bytes(b"\x7fELF")
    with caplog.at_level(logging.WARNING, logger="ml4ep._native.build"):
        m = mi.compile(model)
    assert "not those its manifest lists" in caplog.text
    np.testing.assert_allclose(m(X), _ort(model, X), rtol=1e-6)
    assert not (m.directory / "lib2.so").exists() and build.verify(m.directory) is None
