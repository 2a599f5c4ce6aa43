"""The target ISA of generated builds (ML4EP_MARCH, march=, --march): part of the cache key, any target built and
saved on any machine, a build for a CPU with extensions this one lacks never loaded (a clear error naming them,
not SIGILL), and the same answers across ISA levels (integers and conversions bit for bit, floats within 1e-6)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper

import ml4ep.infer as mi
from ml4ep.errors import CompilerError, UnsupportedCPUError
from ml4ep._native import build

LEVELS = ["x86-64-v2", "x86-64-v3", "x86-64-v4", "native"]
pytestmark = pytest.mark.skipif(not build._x86(), reason="ISA levels are x86-64 names")


def _runnable(march: str) -> bool:
    return set(build.target(march).features) <= build.native_features()


def _foreign() -> str:
    """A -march this CPU cannot run (Intel server parts lack AMD's SSE4A/CLZERO, AMD parts lack AMX/SGX)."""
    for m in ("sapphirerapids", "znver4", "znver3", "icelake-server", "skylake-avx512", "haswell"):
        try:
            if not _runnable(m):
                return m
        except CompilerError:
            continue
    pytest.skip("every -march tried runs on this CPU")


def _mixed_model() -> onnx.ModelProto:
    """Dense layer + tanh + softmax, float -> int8/uint32/int4 casts out of range, float16 and bfloat16 round trips,
    integer arithmetic with wrap-around and shifts by more than the bit width."""
    rng = np.random.default_rng(3)
    w = onnx.numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    b = onnx.numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    big = onnx.numpy_helper.from_array(np.array([3.0e9, -3.0e9, np.nan, 300.0, -7.5, 2.5, np.inf, -np.inf],
                                                np.float32), "big")
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("Softmax", ["t"], ["p"], axis=1),
        helper.make_node("Mul", ["h", "big"], ["hb"]),
        helper.make_node("Cast", ["hb"], ["i8"], to=T.INT8),
        helper.make_node("Cast", ["hb"], ["u32"], to=T.UINT32),
        helper.make_node("Cast", ["hb"], ["i4"], to=T.INT4),
        helper.make_node("Cast", ["h"], ["f16"], to=T.FLOAT16),
        helper.make_node("Cast", ["hb"], ["bf"], to=T.BFLOAT16),
        helper.make_node("Mul", ["k", "k"], ["kk"]),
        helper.make_node("BitShift", ["u", "s"], ["ks"], direction="LEFT"),
    ]
    ins = [helper.make_tensor_value_info("x", T.FLOAT, ["N", 16]), helper.make_tensor_value_info("k", T.INT32, ["N", 8]),
           helper.make_tensor_value_info("u", T.UINT32, ["N", 8]), helper.make_tensor_value_info("s", T.UINT32, ["N", 8])]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in
            [("p", T.FLOAT), ("i8", T.INT8), ("u32", T.UINT32), ("i4", T.INT4), ("f16", T.FLOAT16),
             ("bf", T.BFLOAT16), ("kk", T.INT32), ("ks", T.UINT32)]]
    g = helper.make_graph(nodes, "mixed", ins, outs, initializer=[w, b, big])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def _feeds(n: int = 37) -> dict:
    rng = np.random.default_rng(5)
    return {"x": (rng.standard_normal((n, 16)) * 3).astype(np.float32),
            "k": rng.integers(-2**31, 2**31 - 1, (n, 8), dtype=np.int64).astype(np.int32),
            "u": rng.integers(0, 2**32, (n, 8), dtype=np.uint64).astype(np.uint32),
            "s": rng.integers(0, 40, (n, 8)).astype(np.uint32)}


def test_target_from_environment_argument_and_alias(monkeypatch):
    monkeypatch.setenv("ML4EP_MARCH", "x86-64-v3")
    assert build.target().march == "x86-64-v3"
    assert "-march=x86-64-v3" in build.flags()
    assert {"AVX2", "FMA", "BMI2"} <= set(build.target().features)
    assert build.target("x86-64-v2").march == "x86-64-v2"  # the argument wins
    assert build.target(portable=True).march == "x86-64-v2"  # the old switch is an alias
    assert "AVX" not in build.target("x86-64-v2").features
    monkeypatch.delenv("ML4EP_MARCH")
    assert build.target().march == "native"
    assert set(build.target().features) == build.native_features()
    with pytest.raises(CompilerError, match="not a CPU name"):
        build.target("native -fplugin=evil.so")
    with pytest.raises(CompilerError, match="does not accept -march=no-such-cpu"):
        build.target("no-such-cpu")


def test_march_is_part_of_the_cache_key_and_recorded(monkeypatch, tmp_path):
    model = _mixed_model()
    monkeypatch.setenv("ML4EP_MARCH", "x86-64-v2")
    a = mi.compile(model, name="mixed_key")
    b = mi.compile(model, name="mixed_key", march="x86-64-v3")
    c = mi.compile(model, name="mixed_key", march="x86-64-v3")
    assert a.directory != b.directory and b.directory == c.directory
    assert a.meta["march"] == "x86-64-v2" and "-march=x86-64-v2" in a.meta["flags"]
    assert b.meta["march"] == "x86-64-v3" and "AVX2" in b.meta["features"]
    # the saved CMakeLists.txt builds for the same target by default
    out = a.save(tmp_path / "saved")
    assert 'set(ML4EP_MARCH "x86-64-v2"' in (out / "CMakeLists.txt").read_text()
    cmake = shutil.which("cmake")
    if cmake:
        bdir = tmp_path / "build"
        for cmd in ([cmake, "-S", str(out), "-B", str(bdir), "-DML4EP_USE_BLAS=OFF"], [cmake, "--build", str(bdir)]):
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        flags = (bdir / "CMakeFiles" / "mixed_key_example.dir" / "flags.make").read_text()
        assert "-march=x86-64-v2" in flags
        res = subprocess.run([str(bdir / "mixed_key_example"), str(out / "mixed_key.bin")], capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr


def test_foreign_build_is_saved_but_never_loaded(tmp_path):
    march = _foreign()
    missing = set(build.target(march).features) - build.native_features()
    m = mi.compile(_mixed_model(), name="mixed_foreign", march=march)
    out = m.save(tmp_path / "grid")  # building and saving work for any target
    assert (out / "mixed_foreign.hpp").exists() and (out / "mixed_foreign.bin").exists()
    with pytest.raises(UnsupportedCPUError) as err:
        m(*_feeds().values())
    msg = str(err.value)
    assert march in msg or "mixed_foreign" in msg
    assert all(f.lower() in msg for f in missing)  # every missing extension is named


def test_foreign_forest_is_refused(monkeypatch):
    """The same for ml4ep.bdt; here the CPU is made to look like one without extensions beyond x86-64."""
    import ml4ep.bdt as mb
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    est = GradientBoostingRegressor(n_estimators=5, max_depth=3).fit(X, X[:, 0])
    forest = mb.from_sklearn(est)
    monkeypatch.setattr(build, "native_features", lambda: frozenset())
    fast = forest.compile(name="refused_forest", march="x86-64-v2")
    with pytest.raises(UnsupportedCPUError, match="sse4_2"):
        fast.predict(X)
    monkeypatch.undo()
    np.testing.assert_allclose(forest.compile(name="refused_forest", march="x86-64-v2").predict(X),
                               est.predict(X), rtol=1e-6, atol=1e-12)


def test_levels_agree():
    """Every ISA level this CPU runs gives the same integers and conversions, bit for bit, and floats within 1e-6
    (relative); the float outputs also agree with onnxruntime."""
    model, feeds = _mixed_model(), _feeds()
    levels = [m for m in LEVELS if _runnable(m)]
    assert len(levels) >= 2
    results = {m: mi.compile(model, name="mixed_levels", march=m).run(feeds) for m in levels}
    ref = results[levels[0]]
    for m in levels[1:]:
        for k, v in results[m].items():
            if k == "p":
                np.testing.assert_allclose(v, ref[k], rtol=1e-6, atol=1e-7, err_msg=f"{m} vs {levels[0]}: {k}")
            else:
                assert v.dtype == ref[k].dtype
                assert np.array_equal(v.view(np.uint8), ref[k].view(np.uint8)), f"{m} vs {levels[0]}: {k}"
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (p,) = sess.run(["p"], feeds)
    np.testing.assert_allclose(ref["p"], p, rtol=1e-5, atol=1e-6)
    # out-of-range float casts saturate, NaN gives 0 (the ONNX spec leaves them undefined)
    assert ref["i8"].min() == -128 and ref["i8"].max() == 127
    assert ref["u32"].max() == 2**32 - 1 and (ref["u32"][:, 2] == 0).all()  # NaN column
    s, u, k = feeds["s"].astype(np.uint64), feeds["u"].astype(np.uint64), feeds["k"].astype(np.int64)
    want = np.where(s >= 32, 0, (u << np.minimum(s, 31)) & 0xffffffff)  # ONNX: a shift >= the bit width gives 0
    assert (s >= 32).any() and np.array_equal(ref["ks"].astype(np.uint64), want)
    assert np.array_equal(ref["kk"], ((k * k) & 0xffffffff).astype(np.uint32).view(np.int32))


def test_cli_march(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_mixed_model(), path)
    res = subprocess.run([sys.executable, "-m", "ml4ep.cli", "compile", str(path), "-o", str(tmp_path / "out"),
                          "--march", "x86-64-v2", "--name", "cli_march"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "cli_march.hpp").exists()
    res = subprocess.run([sys.executable, "-m", "ml4ep.cli", "compile", str(path), "-o", str(tmp_path / "bad"),
                          "--march", "no-such-cpu"], capture_output=True, text=True)
    assert res.returncode != 0 and "no-such-cpu" in res.stderr
