"""The low-precision element types of cpp/lowp.hpp (bfloat16, float8 x5, float4e2m1, int4/uint4, int2/uint2):
every conversion bit for bit against onnx's own NumPy conversions (ml_dtypes, onnx.numpy_helper), exhaustively
for decoding and over a large float set (ties, subnormals, +-inf, NaN, out of range) for encoding, with and
without saturation; then Cast/CastLike models on random inputs (a symbolic batch dim) against onnx's reference
evaluator (onnxruntime lacks most of these casts), and a clear error for a bad Cast.

Where ml_dtypes is no oracle, the expected values are computed here another way:
- floats to int4/uint4/int2/uint2 out of range or NaN: undefined in the ONNX spec, and ml_dtypes' answer depends
  on its version and the CPU (0.5 keeps the low bits, 0.7 gives 0 on an AMD Zen 4); ml4ep saturates (NaN to 0);
- doubles to the small float types: rounded once (ml_dtypes 0.5 rounds to float first, 0.7 does not); the
  expected code is the float32 conversion of the double rounded to odd (truncated, last bit set when inexact),
  which equals the once-rounded value for every format of at most 22 bits."""

from __future__ import annotations

import subprocess

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import ml4ep.infer as mi
from ml4ep.errors import Ml4epError
from ml4ep._native import build
from ml4ep.infer import codegen

# (C++ type, ml_dtypes type, ONNX type, has a saturate choice)
TYPES = [
    ("ml4ep_rt::float8e4m3fn", ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E4M3FN, True),
    ("ml4ep_rt::float8e4m3fnuz", ml_dtypes.float8_e4m3fnuz, TensorProto.FLOAT8E4M3FNUZ, True),
    ("ml4ep_rt::float8e5m2", ml_dtypes.float8_e5m2, TensorProto.FLOAT8E5M2, True),
    ("ml4ep_rt::float8e5m2fnuz", ml_dtypes.float8_e5m2fnuz, TensorProto.FLOAT8E5M2FNUZ, True),
    ("ml4ep_rt::float4e2m1", ml_dtypes.float4_e2m1fn, TensorProto.FLOAT4E2M1, False),
    ("ml4ep_rt::float8e8m0", ml_dtypes.float8_e8m0fnu, TensorProto.FLOAT8E8M0, True),
    ("ml4ep_rt::uint4", ml_dtypes.uint4, TensorProto.UINT4, False),
    ("ml4ep_rt::int4", ml_dtypes.int4, TensorProto.INT4, False),
    ("ml4ep_rt::uint2", ml_dtypes.uint2, TensorProto.UINT2, False),
    ("ml4ep_rt::int2", ml_dtypes.int2, TensorProto.INT2, False),
    ("ml4ep_rt::bfloat16", ml_dtypes.bfloat16, TensorProto.BFLOAT16, False),
]
E8M0_MODES = ["up", "down", "nearest"]


def _floats() -> np.ndarray:
    """float32 values around every representable value of the small types (ties and their neighbours),
    subnormals of float and of the targets, powers of two, huge values, +-inf, NaN and random bit patterns."""
    rng = np.random.default_rng(0)
    grid = np.concatenate([np.arange(256, dtype=np.uint8).view(t).astype(np.float32)
                           for _, t, *_ in TYPES if np.dtype(t).itemsize == 1])
    grid = np.unique(grid[np.isfinite(grid)])
    mids = (grid[:-1].astype(np.float64) + grid[1:]) / 2  # ties of the coarser types
    base = np.concatenate([grid, mids.astype(np.float32), np.ldexp(1.0, np.arange(-150, 128)).astype(np.float32),
                           np.linspace(-20, 20, 4001, dtype=np.float32), np.arange(-40, 41, dtype=np.float32) / 4,
                           np.array([0.0, 1e-45, 1e-40, 1e-7, 65504, 65520, 1e6, 3e38, 2.0**31, 2.0**32 + 2**9,
                                     np.inf, np.nan], np.float32)])
    base = np.concatenate([base, -base])
    near = np.concatenate([np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(-np.inf))])
    bits = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([base, near, bits]).astype(np.float32)


_PROGRAM = r"""
#include <cstdio>
#include <vector>
template <typename T> void dump(const std::vector<float>& xs, FILE* out) {
  for (float x : xs) { T t = x; std::fwrite(&t.bits, sizeof(t.bits), 1, out); }
}
template <typename T> void dump_sat(const std::vector<float>& xs, bool sat, FILE* out) {
  for (float x : xs) { T t = T::cast(x, sat); std::fwrite(&t.bits, sizeof(t.bits), 1, out); }
}
template <typename T> void dump_e8m0(const std::vector<float>& xs, bool sat, int mode, FILE* out) {
  for (float x : xs) { T t = T::cast(x, sat, mode); std::fwrite(&t.bits, 1, 1, out); }
}
template <typename T> void decode(FILE* out) {
  for (int b = 0; b < 256; ++b) {
    const float f = T::from_bits(static_cast<uint8_t>(b)); std::fwrite(&f, 4, 1, out);
  }
}
template <typename T> void decode16(FILE* out) {
  for (int b = 0; b < 65536; ++b) {
    const float f = T::from_bits(static_cast<uint16_t>(b)); std::fwrite(&f, 4, 1, out);
  }
}
int main(int argc, char** argv) {
  (void)argc;
  std::vector<float> xs;
  FILE* in = std::fopen(argv[1], "rb");
  float v;
  while (std::fread(&v, 4, 1, in) == 1) xs.push_back(v);
  std::fclose(in);
  FILE* out = std::fopen(argv[2], "wb");
  // doubles through the implicit constructors: ml_dtypes also converts a double through float
  std::vector<double> ds(xs.begin(), xs.end());
  for (double& d : ds) d = d * (1.0 + 1e-12);
%BODY%
  std::fclose(out);
  return 0;
}
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Compile one program with every conversion and run it on the float set; a dict of result arrays."""
    tmp = tmp_path_factory.mktemp("lowp")
    xs = _floats()
    body, layout = [], []  # layout: (key, dtype, count)
    n = xs.size
    for cpp, t, _, sat in TYPES:
        item = np.dtype(t).itemsize
        raw = np.uint8 if item == 1 else np.uint16
        body.append(f"  dump<{cpp}>(xs, out);")
        layout.append(((cpp, "implicit"), raw, n))
        body.append(f"  for (double d : ds) {{ {cpp} t = d; std::fwrite(&t.bits, sizeof(t.bits), 1, out); }}")
        layout.append(((cpp, "double"), raw, n))
        if cpp.endswith("e8m0"):
            for mode, name in enumerate(E8M0_MODES):
                for s in (0, 1):
                    body.append(f"  dump_e8m0<{cpp}>(xs, {s}, {mode}, out);")
                    layout.append(((cpp, name, s), raw, n))
        elif sat:
            for s in (0, 1):
                body.append(f"  dump_sat<{cpp}>(xs, {s}, out);")
                layout.append(((cpp, "sat", s), raw, n))
        if item == 1:
            body.append(f"  decode<{cpp}>(out);")
            layout.append(((cpp, "decode"), np.float32, 256))
        else:
            body.append(f"  decode16<{cpp}>(out);")
            layout.append(((cpp, "decode"), np.float32, 65536))
    src = tmp / "lowp.cpp"
    src.write_text(codegen.prelude() + _PROGRAM.replace("%BODY%", "\n".join(body)))
    exe = tmp / "lowp"
    # for the target ISA of the suite, and sanitized: an undefined conversion stops the program, on any CPU
    res = subprocess.run([build.compiler(), "-std=c++17", "-O1", *build.target().flags, "-Wall", "-Wextra", "-Werror",
                          "-DML4EP_NO_BLAS", "-fsanitize=undefined,float-cast-overflow,address",
                          "-fno-sanitize-recover=all", str(src), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    xs.tofile(tmp / "in.bin")
    run = subprocess.run([str(exe), str(tmp / "in.bin"), str(tmp / "out.bin")], capture_output=True, text=True)
    assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr[-3000:]
    data = (tmp / "out.bin").read_bytes()
    out, off = {}, 0
    for key, dt, count in layout:
        size = np.dtype(dt).itemsize * count
        out[key] = np.frombuffer(data[off:off + size], dtype=dt)
        off += size
    assert off == len(data)
    out["xs"] = xs
    return out


def _to_odd(xd: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd: the nearest float32 toward zero, its last bit set when inexact."""
    f = xd.astype(np.float32)
    f = np.where(np.abs(f.astype(np.float64)) > np.abs(xd), np.nextafter(f, np.float32(0)), f)
    sticky = (f.astype(np.float64) != xd) & ~np.isnan(xd)
    return np.where(sticky, (f.view(np.uint32) | np.uint32(1)).view(np.float32), f)


def _int_rule(x: np.ndarray, t) -> np.ndarray:
    """Floats to a small integer type: truncated toward zero, saturated, NaN to 0."""
    info = ml_dtypes.iinfo(t)
    return np.clip(np.trunc(np.where(np.isnan(x), 0.0, x)), int(info.min), int(info.max)).astype(t)


def _raw(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8 if a.dtype.itemsize == 1 else np.uint16)


def _same(got_bits, want, xs, what):
    want = _raw(np.asarray(want))
    bad = np.flatnonzero(got_bits != want)
    if bad.size:
        i = bad[:8]
        raise AssertionError(f"{what}: {bad.size} of {xs.size} differ, e.g. x={xs[i].tolist()} "
                             f"(bits {xs[i].view(np.uint32).tolist()}) got {got_bits[i].tolist()} want {want[i].tolist()}")


@pytest.mark.parametrize("cpp,t,onnx_type,sat", TYPES, ids=[c.split("::")[1] for c, *_ in TYPES])
def test_encode(converted, cpp, t, onnx_type, sat):
    from onnx.reference.ops.op_cast import cast_to

    xs = converted["xs"]
    with np.errstate(all="ignore"):
        if cpp.endswith("e8m0"):
            for mode in E8M0_MODES:
                for s in (0, 1):
                    _same(converted[(cpp, mode, s)], onnx.numpy_helper.to_float8e8m0(xs, bool(s), mode), xs,
                          f"{cpp} {mode} saturate={s}")
            _same(converted[(cpp, "implicit")], cast_to(xs, onnx_type, True), xs, f"{cpp} implicit")
            _same(converted[(cpp, "double")], cast_to(xs.astype(np.float64) * (1.0 + 1e-12), onnx_type, True), xs,
                  f"{cpp} from double")
            return
        dbl = _to_odd(xs.astype(np.float64) * (1.0 + 1e-12))
        if sat:
            for s in (0, 1):
                _same(converted[(cpp, "sat", s)], cast_to(xs, onnx_type, bool(s)), xs, f"{cpp} saturate={s}")
            implicit = onnx.numpy_helper.saturate_cast(xs, t)  # the implicit conversion saturates
            dbl = onnx.numpy_helper.saturate_cast(dbl, t)
        elif np.dtype(t).itemsize == 1 and "int" in cpp:
            inside = (xs >= int(ml_dtypes.iinfo(t).min)) & (xs < int(ml_dtypes.iinfo(t).max) + 1)
            implicit = np.where(inside, cast_to(np.where(inside, xs, 0), onnx_type, True), _int_rule(xs, t))
            assert inside.sum() > 1000 and (~inside).sum() > 1000  # both sides are tested
            dbl = _int_rule(np.trunc(xs.astype(np.float64) * (1.0 + 1e-12)), t)
        else:
            implicit = cast_to(xs, onnx_type, True)
            dbl = dbl.astype(t)
        _same(converted[(cpp, "implicit")], implicit, xs, f"{cpp} implicit")
        _same(converted[(cpp, "double")], dbl, xs, f"{cpp} from double")


@pytest.mark.parametrize("cpp,t", [(c, t) for c, t, *_ in TYPES], ids=[c.split("::")[1] for c, *_ in TYPES])
def test_decode(converted, cpp, t):
    got = converted[(cpp, "decode")]
    n = got.size
    raw = np.arange(n, dtype=np.uint8 if n == 256 else np.uint16)
    want = raw.view(t).astype(np.float32)  # bit for bit, NaN signs included
    bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{cpp}: codes {raw[bad[:8]].tolist()} decode to {got[bad[:8]].tolist()}"


# ---------------------------------------------------------------------------------------------------------------
# Cast / CastLike models vs onnx's reference evaluator

def _values(dtype, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(rng.choice([0.01, 3.0, 300.0, 1e5], size=shape))
    x.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, -0.0]
    with np.errstate(all="ignore"):
        return x.astype(dtype)


F = TensorProto
PAIRS = [  # (source, target, attributes)
    (F.FLOAT, F.FLOAT8E4M3FN, {}), (F.FLOAT, F.FLOAT8E4M3FN, {"saturate": 0}),
    (F.DOUBLE, F.FLOAT8E5M2, {"saturate": 0}), (F.FLOAT16, F.FLOAT8E5M2FNUZ, {}),
    (F.BFLOAT16, F.FLOAT8E4M3FNUZ, {"saturate": 0}), (F.FLOAT, F.FLOAT8E8M0, {"round_mode": "nearest"}),
    (F.FLOAT, F.FLOAT8E8M0, {"round_mode": "down", "saturate": 0}), (F.FLOAT8E8M0, F.FLOAT16, {}),
    (F.DOUBLE, F.BFLOAT16, {}), (F.BFLOAT16, F.DOUBLE, {}), (F.FLOAT8E4M3FN, F.BFLOAT16, {}),
    (F.FLOAT, F.INT4, {}), (F.FLOAT16, F.UINT4, {}), (F.INT4, F.INT64, {}), (F.UINT2, F.FLOAT, {}),
    (F.INT2, F.BFLOAT16, {}), (F.INT32, F.INT4, {}), (F.INT64, F.UINT2, {}), (F.FLOAT4E2M1, F.FLOAT, {}),
    (F.FLOAT, F.FLOAT4E2M1, {}), (F.FLOAT8E5M2, F.FLOAT8E4M3FN, {}), (F.UINT4, F.BOOL, {}),
    (F.FLOAT8E5M2FNUZ, F.FLOAT4E2M1, {}),
]


def _name(p):
    return f"{F.DataType.Name(p[0])}_to_{F.DataType.Name(p[1])}" + "".join(f"_{k}{v}" for k, v in p[2].items())


def _compare(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "V" or want.dtype.kind == "f":  # NaN codes compared as NaN, the rest bit for bit
        gf, wf = got.astype(np.float64), want.astype(np.float64)
        assert np.array_equal(np.isnan(gf), np.isnan(wf))
        ok = ~np.isnan(wf)
        np.testing.assert_array_equal(_raw(got)[ok] if got.dtype.itemsize <= 2 else got[ok],
                                      _raw(want)[ok] if want.dtype.itemsize <= 2 else want[ok])
    else:
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def compiled_casts():
    """All Cast and CastLike cases as nodes of one model (one compiler run)."""
    nodes, inputs, outputs, ref_nodes = [], [], [], []
    for k, (src, dst, attrs) in enumerate(PAIRS):
        inputs.append(helper.make_tensor_value_info(f"x{k}", src, ["N", 3, 5]))
        outputs.append(helper.make_tensor_value_info(f"y{k}", dst, ["N", 3, 5]))
        nodes.append(helper.make_node("Cast", [f"x{k}"], [f"y{k}"], name=f"cast{k}", to=dst, **attrs))
        outputs.append(helper.make_tensor_value_info(f"z{k}", dst, ["N", 3, 5]))
        nodes.append(helper.make_node("CastLike", [f"x{k}", f"like{k}"], [f"z{k}"], name=f"castlike{k}", **attrs))
        inputs.append(helper.make_tensor_value_info(f"like{k}", dst, [1]))
        # onnx's reference CastLike rejects round_mode: its expected values come from the equivalent Cast
        ref_nodes += [nodes[-2], helper.make_node("Cast", [f"x{k}"], [f"z{k}"], to=dst, **attrs)]
    opset = [helper.make_opsetid("", 25)]
    model = helper.make_model(helper.make_graph(nodes, "casts", inputs, outputs), opset_imports=opset)
    ref = helper.make_model(helper.make_graph(ref_nodes, "casts", inputs, outputs), opset_imports=opset)
    return ref, mi.compile(model, name="lowp_casts")


@pytest.mark.parametrize("batch", [1, 6])
def test_cast_models_vs_reference(compiled_casts, batch):
    model, cm = compiled_casts
    rng = np.random.default_rng(batch)
    feeds = {}
    for k, (src, dst, _) in enumerate(PAIRS):
        feeds[f"x{k}"] = _values(helper.tensor_dtype_to_np_dtype(src), (batch, 3, 5), rng)
        feeds[f"like{k}"] = np.zeros(1, helper.tensor_dtype_to_np_dtype(dst))
    with np.errstate(all="ignore"):
        want = ReferenceEvaluator(model).run(None, feeds)
    got = cm.run({n: feeds[n] for n in cm.input_names})
    small_ints = (F.INT4, F.UINT4, F.INT2, F.UINT2)
    for k, p in enumerate(PAIRS):
        if p[1] in small_ints and p[0] not in small_ints + (F.INT32, F.INT64):  # floats: see the module's notes
            x = feeds[f"x{k}"].astype(np.float64)
            info = ml_dtypes.iinfo(want[2 * k].dtype)
            inside = (x >= int(info.min)) & (x < int(info.max) + 1)
            assert inside.any() and (~inside).any()
            want[2 * k] = want[2 * k + 1] = np.where(inside, want[2 * k], _int_rule(x, want[2 * k].dtype))
        for j, tag in ((0, "Cast"), (1, "CastLike")):
            try:
                _compare(got[cm.output_names[2 * k + j]], want[2 * k + j])
            except AssertionError as exc:
                raise AssertionError(f"{tag} {_name(p)}: {exc}") from None


def test_constant_cast_folds_like_reference():
    """A Cast of a constant folds at compile time with the same rules (saturate off: inf and NaN)."""
    x = np.array([1e6, -1e6, 0.3, np.nan, -1e-9, 500.0], np.float32)
    node = helper.make_node("Cast", ["c"], ["y"], name="fold_cast", to=F.FLOAT8E4M3FNUZ, saturate=0)
    add = helper.make_node("Identity", ["y"], ["z"])
    g = helper.make_graph([node, add], "g", [], [helper.make_tensor_value_info("z", F.FLOAT8E4M3FNUZ, [6])],
                          initializer=[onnx.numpy_helper.from_array(x, "c")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)])
    got = mi.compile(model, name="lowp_fold").run({})["z"]
    want = ReferenceEvaluator(model).run(None, {})[0]
    np.testing.assert_array_equal(_raw(got), _raw(want))


def test_bad_cast_names_node():
    node = helper.make_node("Cast", ["x"], ["y"], name="my_bad_cast", to=F.STRING)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F.FLOAT, ["N"])],
                          [helper.make_tensor_value_info("y", F.STRING, ["N"])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)])
    with pytest.raises(Ml4epError, match="my_bad_cast"):
        mi.compile(model, name="lowp_bad")
    node = helper.make_node("Cast", ["x"], ["y"], name="bad_round", to=F.FLOAT8E8M0, round_mode="sideways")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F.FLOAT, ["N"])],
                          [helper.make_tensor_value_info("y", F.FLOAT8E8M0, ["N"])])
    with pytest.raises(Ml4epError, match="bad_round.*sideways"):
        mi.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)]), name="lowp_bad2")


def test_generated_casts_compile_warning_free(compiled_casts, tmp_path):
    """The saved header of the Cast model (every conversion above) under -Wall -Wextra -Werror."""
    compiled_casts[1].save(tmp_path)
    src = tmp_path / "tu.cpp"
    src.write_text('#include "lowp_casts.hpp"\ndecltype(&lowp_casts::Model::infer) used = &lowp_casts::Model::infer;\n')
    res = subprocess.run([build.compiler(), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS",
                          "-c", str(src), "-o", str(tmp_path / "tu.o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("src,dst", [(F.FLOAT, F.INT8), (F.DOUBLE, F.UINT32), (F.FLOAT, F.INT64), (F.DOUBLE, F.UINT64),
                                     (F.FLOAT16, F.INT4), (F.DOUBLE, F.UINT2), (F.DOUBLE, F.BFLOAT16),
                                     (F.DOUBLE, F.FLOAT8E4M3FN), (F.DOUBLE, F.FLOAT4E2M1), (F.INT32, F.BFLOAT16)],
                         ids=lambda t: F.DataType.Name(t))
def test_folded_cast_equals_generated_cast(src, dst):
    """A Cast folded at compile time gives the bits the generated code gives at run time, out of range, NaN,
    +-inf and double ties included (floats to integers saturate, NaN to 0; doubles are rounded once)."""
    np_src = helper.tensor_dtype_to_np_dtype(src)
    vals = [0.0, -0.0, 1.5, -1.5, 7.9, -8.5, 200.0, -200.0, 3e9, -3e9, 1e19, -1e19, 1e300, -1e300, np.inf, -np.inf,
            np.nan, 2.0**-134 * (1 + 2.0**-40), 416.0 * (1 + 2.0**-40), 0.0146484375 * (1 + 2.0**-40), 2.0**31 - 1,
            (2**24 + 1) * 2**7 + 1, 255.0, 256.0, 65535.0]
    with np.errstate(all="ignore"):
        x = np.array(vals, np.float64).astype(np_src) if np_src != np.int32 else \
            np.array([0, 1, -1, 2**31 - 1, -2**31, 16777217, 33554435, -33554435, 65537 * 129], np.int32)
    n = x.size
    nodes = [helper.make_node("Cast", ["c"], ["folded"], name="fold_me", to=dst),
             helper.make_node("Cast", ["x"], ["run"], name="run_me", to=dst)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", src, [n])],
                          [helper.make_tensor_value_info("folded", dst, [n]), helper.make_tensor_value_info("run", dst, [n])],
                          initializer=[onnx.numpy_helper.from_array(x, "c")])
    m = mi.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)]),
                   name=f"fold_{F.DataType.Name(src)}_{F.DataType.Name(dst)}".lower())
    out = m.run({"x": x})
    folded, run = out["folded"], out["run"]
    assert folded.dtype == run.dtype
    np.testing.assert_array_equal(_raw(folded) if folded.dtype.itemsize <= 2 and folded.dtype.kind == "V" else folded,
                                  _raw(run) if run.dtype.itemsize <= 2 and run.dtype.kind == "V" else run)
    if np.dtype(run.dtype).kind in "iu" and np_src != np.int32:  # the rule itself, computed another way
        info = np.iinfo(run.dtype)
        with np.errstate(all="ignore"):
            xf = np.nan_to_num(x.astype(np.float64), nan=0.0)
        want = [info.min if v <= info.min else info.max if v >= info.max else int(v) for v in np.trunc(xf).tolist()]
        assert run.tolist() == want
