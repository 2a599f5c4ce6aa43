"""ml4ep.infer.literals: every rendered C++ literal reads back, in g++, as exactly the bits NumPy gives; and
models whose constants hold inf, NaN and -0.0 give onnxruntime's results in every operator family taking constants.

Unit level: one C++ program (strict flags) holds every value of every type and prints the bits of each; NumPy and
ml_dtypes are the oracle. Model level: small models built by one ``compile_many`` call, compared value by value
with NaN positions and the sign of -0.0 results.
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import ml_dtypes
import numpy as np
from onnx import numpy_helper
import pytest

import ml4ep.infer as mi
from ml4ep.infer import codegen
from ml4ep.infer.literals import CPP_DTYPES, literal

F32 = np.finfo(np.float32)
F64 = np.finfo(np.float64)
_RNG = np.random.default_rng(2024)


def _float_values(dt) -> list:
    fi = np.finfo(dt)
    bits = np.uint32 if dt == np.float32 else np.uint64
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 0.1, 1 / 3, -2.5, 1e38, 1e-38, 100.0, 1e16,
               fi.max, -fi.max, fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal,
               np.nextafter(fi.tiny, 0, dtype=dt),  # the largest subnormal
               np.nextafter(dt(1), 2, dtype=dt), 16777217.0, 1e-45, 123456789.0, 2.0 ** 70]
    hi = np.iinfo(bits).max
    rnd = _RNG.integers(0, hi, size=40, dtype=bits, endpoint=True).view(dt)
    return [dt(v) for v in special] + list(rnd)


def _cases() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    cases += [("float", v) for v in _float_values(np.float32)]
    cases += [("double", v) for v in _float_values(np.float64)]
    cases += [("float", 0.1), ("float", 1 / 3), ("float", 3.4028235677973366e38)]  # doubles rounded to float
    for ct in ("int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t"):
        info = np.iinfo(CPP_DTYPES[ct])
        vals = {int(info.min), int(info.max), 0, 1, int(info.min) + 1, int(info.max) - 1, 2**31 - 1, 2**31, -(2**31),
                -(2**31) - 1, 2**32, 2**63 - 1, 7, -7}
        cases += [(ct, v) for v in sorted(vals) if info.min <= v <= info.max]
    cases += [("bool", True), ("bool", False)]
    lowp = [ct for ct in CPP_DTYPES if ct.startswith("ml4ep_rt::")]
    for ct in lowp:
        dt = CPP_DTYPES[ct]
        if dt.kind in "iu" or "int" in ct:
            info = ml_dtypes.iinfo(dt)
            cases += [(ct, v) for v in range(int(info.min), int(info.max) + 1)]
            continue
        n = 1 << (8 * dt.itemsize)
        codes = range(n) if n <= 256 else list(range(0, n, 97)) + [0x7C00, 0xFC00, 0x7E00, 0x8000, 0x0001, 0x7BFF]
        store = np.uint8 if dt.itemsize == 1 else np.uint16
        cases += [(ct, np.array(c, store).view(dt)[()]) for c in codes]  # every code (by its exact bits)
        cases += [(ct, v) for v in (0.1, -0.0, 1e-8, 3.0, -np.inf, np.nan)]  # conversions from Python floats
    return cases


def _expected_bits(ct: str, v) -> tuple[int, bool]:
    """(bits the C++ value must have, whether it is a NaN, whose payload is free)."""
    dt = CPP_DTYPES[ct]
    if ct == "bool":
        return int(bool(v)), False
    if dt.kind in "iu" and ct.startswith("ml4ep_rt::"):
        return int(v) & ((1 << (4 if "4" in ct else 2)) - 1), False
    if dt.kind in "iu":
        return int(v) & ((1 << (8 * dt.itemsize)) - 1), False
    with np.errstate(all="ignore"):
        x = np.asarray(v)
        if ct in ("float", "double"):
            x = x.astype(dt)
        elif x.dtype != dt:
            x = x.astype(np.float32).astype(dt)
        store = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[dt.itemsize]
        is_nan = bool(np.isnan(x.astype(np.float64)))
        return int(x.view(store)), is_nan


def _bits_expr(ct: str, lit: str, k: int) -> str:
    if ct == "float":
        return f"{{ const float v = {lit}; uint32_t b; std::memcpy(&b, &v, 4); out(b); }}"
    if ct == "double":
        return f"{{ const double v = {lit}; uint64_t b; std::memcpy(&b, &v, 8); out(b); }}"
    if ct == "bool":
        return f"{{ const bool v = {lit}; out(v ? 1u : 0u); }}"
    if ct.startswith("ml4ep_rt::"):
        mask = "0xfu" if ct.endswith("int4") else ("0x3u" if ct.endswith("int2") else "0xffffu")
        return f"{{ const {ct} v = {lit}; static_assert(std::is_same<decltype({lit}), {ct}>::value, \"type\"); " \
               f"out(static_cast<uint64_t>(v.bits & {mask})); }}"
    # integers: of exactly their type, bits through the unsigned type of the same width
    u = "u" + ct if not ct.startswith("u") else ct
    return (f"{{ static_assert(std::is_same<decltype({lit}), {ct}>::value, \"type {k}\"); const {ct} v = {lit}; "
            f"out(static_cast<uint64_t>(static_cast<{u}>(v))); }}")


def _compiler() -> str:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not installed")
    return cxx


def test_every_literal_reads_back_bit_identical(tmp_path):
    cxx = _compiler()
    cases = _cases()
    lits = [literal(v, ct) for ct, v in cases]
    body = "\n".join(f"  {_bits_expr(ct, lit, k)}" for k, ((ct, _), lit) in enumerate(zip(cases, lits)))
    src = (
        "#define ML4EP_NO_BLAS\n" + codegen.prelude()
        + "\n#include <cinttypes>\n#include <cstdio>\n#include <type_traits>\n"
        + "static void out(uint64_t b) { std::printf(\"%\" PRIu64 \"\\n\", b); }\n"
        + "int main() {\n" + body + "\n  return 0;\n}\n"
    )
    (tmp_path / "lits.cpp").write_text(src)
    exe = tmp_path / "lits"
    r = subprocess.run([cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(tmp_path / "lits.cpp")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    got = [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    assert len(got) == len(cases)
    bad = []
    for (ct, v), lit, b in zip(cases, lits, got):
        want, is_nan = _expected_bits(ct, v)
        dt = CPP_DTYPES[ct]
        if is_nan and ct in ("float", "double"):
            nbits = 8 * dt.itemsize
            exp_mask = ((1 << (nbits - 1)) - 1) & ~((1 << np.finfo(dt).nmant) - 1)
            sign = 1 << (nbits - 1)
            ok = (b & exp_mask) == exp_mask and b & ~(exp_mask | sign) and (b & sign) == (want & sign)
        else:
            ok = b == want
        if not ok:
            bad.append(f"{ct} {v!r}: {lit} -> {b:#x}, want {want:#x}")
    assert not bad, "\n".join(bad[:20])


def test_float_renderings_are_short_and_readable():
    assert literal(0.1, "float") == "0.1f"
    assert literal(1, "float") == "1.0f"
    assert literal(1e-45, "float") == "1e-45f"
    assert literal(-0.0, "float") == "-0.0f"
    assert literal(F32.max, "float") == "3.4028235e+38f"
    assert literal(0.1, "double") == "0.1"
    assert literal(np.float32(0.1), "double") == "0.10000000149011612"  # the float's own value
    assert literal(5e-324, "double") == "5e-324"
    assert literal(np.inf, "float") == "std::numeric_limits<float>::infinity()"
    assert literal(-np.inf, "double") == "-std::numeric_limits<double>::infinity()"
    assert literal(np.nan, "float") == "std::numeric_limits<float>::quiet_NaN()"
    assert literal(-np.float64(np.nan), "double") == "-std::numeric_limits<double>::quiet_NaN()"
    assert "inf" not in literal(F32.max, "float")
    assert literal(struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0], "float").endswith("quiet_NaN()")


def test_integer_and_other_renderings():
    assert literal(-(2**63), "int64_t") == "int64_t(-9223372036854775807LL - 1)"
    assert literal(2**64 - 1, "uint64_t") == "uint64_t(18446744073709551615ULL)"
    assert literal(-(2**31), "int32_t") == "int32_t(-2147483647 - 1)"
    assert literal(5, "int64_t") == "int64_t(5)"
    assert literal(3.0, "uint8_t") == "uint8_t(3)"
    assert literal(np.array([7], np.int64), np.int64) == "int64_t(7)"
    assert literal(1, np.bool_) == "true"
    assert literal(1.0, "ml4ep_rt::half") == "ml4ep_rt::half::from_bits(0x3c00u)"
    assert literal(np.float32(-0.0), "ml4ep_rt::bfloat16") == "ml4ep_rt::bfloat16::from_bits(0x8000u)"
    assert literal(-3, "ml4ep_rt::int4") == "ml4ep_rt::int4::from_bits(0xdu)"
    assert literal(0.5, ml_dtypes.float8_e4m3fn) == "ml4ep_rt::float8e4m3fn::from_bits(0x30u)"


@pytest.mark.parametrize("value, ct", [(0.5, "int32_t"), (np.nan, "int64_t"), (256, "uint8_t"), (-1, "uint64_t"),
                                       (2**63, "int64_t"), (8, "ml4ep_rt::int4"), (1.0, "long double"),
                                       ([1.0, 2.0], "float")])
def test_values_a_type_cannot_hold_are_refused(value, ct):
    with pytest.raises(ValueError):
        literal(value, ct)


# ------------------------------------------------------------------------------------------------------
# model level: inf, NaN and -0.0 constants in every operator family that takes constants, against onnxruntime
# (onnx.reference where onnxruntime lacks the op or type); all models built by one compiler call

INF, NAN = np.float32(np.inf), np.float32(np.nan)
SPECIAL = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1.5, -2.0, 3.4028235e38], np.float32)


def _sp(*shape, seed=0) -> np.ndarray:
    """Finite values with the special ones (inf, -inf, NaN, -0.0, 0.0, float max) scattered in."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape).astype(np.float32)
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=min(flat.size // 3, 3 * len(SPECIAL)), replace=False)
    flat[idx] = np.resize(SPECIAL, idx.size)
    return x


def _fin(*shape, seed=1, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype(dtype)


def _model_cases() -> dict:
    from opcheck import graph_model

    cases: dict = {}

    def add(name, nodes, inputs, outputs=("y",), inits=None, sym=None, reference=False, opset=21):
        cases[name] = (graph_model(nodes, inputs, list(outputs), inits, sym, opset, name=name), inputs, reference)

    x23 = _fin(2, 3)
    # Gemm / MatMul: constant weights and biases holding inf, NaN, -0.0 (weights file); alpha and beta literals
    add("gemm_const", [("Gemm", ["a", "b", "c"], ["y"], {"alpha": 2.0, "beta": -1.0})], {"a": _fin(2, 6)},
        inits={"b": _sp(6, 5), "c": np.array([-0.0, INF, NAN, -INF, 0.0], np.float32)})
    add("gemm_runtime_nan_alpha", [("Gemm", ["a", "b"], ["y"], {"alpha": float("nan")})], {"a": x23, "b": _fin(3, 4)})
    add("gemm_runtime_inf_beta", [("Gemm", ["a", "b", "c"], ["y"], {"beta": float("-inf")})],
        {"a": x23, "b": _fin(3, 4), "c": np.array([[0.0, 1.0, -1.0, -0.0]], np.float32)})
    add("matmul_bias_clip", [("MatMul", ["a", "w"], ["m"], None), ("Add", ["m", "bias"], ["s"], None),
                             ("Clip", ["s", "lo", "hi"], ["y"], None)], {"a": _fin(3, 4)},
        inits={"w": _sp(4, 6, seed=2), "bias": np.array([-0.0, INF, NAN, 1.0, -INF, 0.0], np.float32),
               "lo": np.float32(-0.0), "hi": INF})
    # Conv: weights and bias with the special values (no padding: a zero pad times inf is NaN in some kernels
    # only), then a padded one with -0.0 and inf in the bias and a fused Clip to [-inf, 1]
    add("conv_const", [("Conv", ["x", "w", "b"], ["y"], {})], {"x": _fin(1, 2, 5, 5)},
        inits={"w": _sp(3, 2, 3, 3, seed=3), "b": np.array([-0.0, INF, NAN], np.float32)})
    add("conv_pad_clip", [("Conv", ["x", "w", "b"], ["c"], {"pads": [1, 1, 1, 1]}),
                          ("Clip", ["c", "lo", "hi"], ["y"], None)], {"x": _fin(1, 2, 4, 4)},
        inits={"w": _fin(3, 2, 3, 3, seed=4), "b": np.array([-0.0, INF, -INF], np.float32),
               "lo": -INF, "hi": np.float32(1.0)})
    # pooling with pads over inputs holding inf, -inf, NaN, -0.0 (max pooling without NaN: onnxruntime's vector
    # max keeps or drops a NaN by its position in the window)
    xp = _sp(1, 2, 5, 5, seed=5)
    xq = np.where(np.isnan(xp), np.float32(0.5), xp)
    add("maxpool_pads", [("MaxPool", ["x"], ["y"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})], {"x": xq})
    add("avgpool_pads", [("AveragePool", ["x"], ["y"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                        "count_include_pad": 0})], {"x": xp})
    add("avgpool_pads_incl", [("AveragePool", ["x"], ["y"], {"kernel_shape": [2, 2], "strides": [2, 2],
                                                             "pads": [1, 1, 1, 1], "count_include_pad": 1})],
        {"x": xp})
    xgp = _sp(1, 3, 6, 6, seed=6)
    add("global_pools", [("GlobalMaxPool", ["x"], ["y"], None), ("GlobalAveragePool", ["x"], ["z"], None)],
        {"x": np.where(np.isnan(xgp), np.float32(-0.0), xgp)}, outputs=("y", "z"))
    add("global_avgpool_nan", [("GlobalAveragePool", ["x"], ["y"], None)], {"x": xgp})
    # image: GridSample (zeros padding: out-of-range taps must not read NaN/inf pixels), LpPool, LpNormalization
    grid = np.array([[[[-0.0, -0.0], [1.5, 0.2], [-1.2, -1.3], [0.25, -0.75]],
                      [[1.0, 1.0], [-1.0, -1.0], [0.9, -2.0], [3.0, 3.0]]]], np.float32)
    xg = _fin(1, 1, 3, 4, seed=7)
    xg[0, 0, 0, 0], xg[0, 0, 2, 3], xg[0, 0, 1, 1] = NAN, INF, -0.0
    for mode in ("linear", "nearest", "cubic"):
        add(f"gridsample_{mode}", [("GridSample", ["x", "g"], ["y"], {"mode": mode, "padding_mode": "zeros",
                                                                     "align_corners": 0})],
            {"x": xg}, inits={"g": grid})
    add("lppool_lpnorm", [("LpPool", ["x"], ["y"], {"kernel_shape": [2, 2], "p": 3}),
                          ("LpNormalization", ["x"], ["z"], {"axis": -1, "p": 1})],
        {"x": _sp(1, 2, 4, 4, seed=8)}, outputs=("y", "z"))
    # recurrent: biases with inf / -inf / -0.0, activation alphas NaN and -0.0, clip inf
    T, B, F, H = 3, 2, 3, 2
    xr = _fin(T, B, F, seed=9)
    wr = lambda g, k, s: _fin(1, g * H, k, seed=s) * np.float32(0.5)  # noqa: E731
    bias = lambda g, s: np.where(np.arange(2 * g * H) % 3 == 0, np.float32(-0.0),  # noqa: E731
                                 _fin(1, 2 * g * H, seed=s)).astype(np.float32)
    b_lstm = bias(4, 10)
    b_lstm[0, 1], b_lstm[0, 5] = INF, -INF  # input gate saturates open, output gate closed
    add("lstm_bias_inf", [("LSTM", ["x", "w", "r", "b"], ["y", "yh", "yc"], {"hidden_size": H, "clip": float("inf")})],
        {"x": xr}, outputs=("y", "yh", "yc"), inits={"w": wr(4, F, 11), "r": wr(4, H, 12), "b": b_lstm})
    b_gru = bias(3, 13)
    b_gru[0, 0] = -INF  # update gate closed
    add("gru_bias_inf", [("GRU", ["x", "w", "r", "b"], ["y", "yh"], {"hidden_size": H, "linear_before_reset": 1})],
        {"x": xr}, outputs=("y", "yh"), inits={"w": wr(3, F, 14), "r": wr(3, H, 15), "b": b_gru})
    add("rnn_leakyrelu_nan_alpha", [("RNN", ["x", "w", "r", "b"], ["y", "yh"],
                                     {"hidden_size": H, "activations": ["LeakyRelu"], "activation_alpha": [float("nan")]})],
        {"x": xr}, outputs=("y", "yh"), inits={"w": wr(1, F, 16), "r": wr(1, H, 17), "b": bias(1, 18)})
    add("rnn_hardsigmoid_negzero", [("RNN", ["x", "w", "r"], ["y", "yh"],
                                     {"hidden_size": H, "activations": ["HardSigmoid"],
                                      "activation_alpha": [-0.0], "activation_beta": [-0.0]})],
        {"x": xr}, outputs=("y", "yh"), inits={"w": wr(1, F, 19), "r": wr(1, H, 20)})
    # Clip with constant bounds: -inf/inf, -0.0, and the extreme int64 values
    xs = _sp(4, 6, seed=21)
    add("clip_inf", [("Clip", ["x", "lo", "hi"], ["y"], None)], {"x": xs}, inits={"lo": -INF, "hi": INF})
    add("clip_negzero", [("Clip", ["x", "lo", "hi"], ["y"], None)], {"x": xs},
        inits={"lo": np.float32(-0.0), "hi": np.float32(3.4028235e38)})
    i64 = np.array([[-(2**63), 2**63 - 1, 0, -5, 7, 2**40]], np.int64)
    add("clip_int64_extremes", [("Clip", ["x", "lo", "hi"], ["y"], None)], {"x": i64},
        inits={"lo": np.int64(-(2**63)), "hi": np.int64(2**63 - 1)})
    add("clip_int64_bounds", [("Clip", ["x", "lo", "hi"], ["y"], None)], {"x": i64},
        inits={"lo": np.int64(-(2**62)), "hi": np.int64(2**35)})
    # unary attributes: LeakyRelu alpha NaN, ThresholdedRelu alpha inf, Shrink with a negative lambd
    add("unary_attrs", [("LeakyRelu", ["x"], ["y"], {"alpha": float("nan")}),
                        ("ThresholdedRelu", ["x"], ["z"], {"alpha": float("inf")}),
                        ("Shrink", ["x"], ["w"], {"lambd": -0.5, "bias": -0.0}),
                        ("HardSigmoid", ["x"], ["v"], {"alpha": -0.0, "beta": float("inf")})],
        {"x": xs}, outputs=("y", "z", "w", "v"))
    # Pad: constant values NaN, -0.0, -inf (float), float16 0.1 (not an integer), int64 extreme
    add("pad_nan", [("Pad", ["x", "p", "c"], ["y"], None)], {"x": x23},
        inits={"p": np.array([1, 0, 0, 2], np.int64), "c": NAN})
    add("pad_negzero", [("Pad", ["x", "p", "c"], ["y"], None)], {"x": x23},
        inits={"p": np.array([0, 1, 1, 0], np.int64), "c": np.float32(-0.0)})
    add("pad_neginf", [("Pad", ["x", "p", "c"], ["y"], None)], {"x": x23},
        inits={"p": np.array([1, 1, 1, 1], np.int64), "c": -INF})
    add("pad_half", [("Pad", ["x", "p", "c"], ["y"], None)], {"x": x23.astype(np.float16)},
        inits={"p": np.array([1, 1, 0, 0], np.int64), "c": np.float16(0.1)}, reference=True)
    add("pad_int64_min", [("Pad", ["x", "p", "c"], ["y"], None)], {"x": i64},
        inits={"p": np.array([0, 1, 0, 1], np.int64), "c": np.int64(-(2**63))})
    add("pad_uint64_max", [("Pad", ["x", "p", "c"], ["y"], None)], {"x": np.array([[1, 2]], np.uint64)},
        inits={"p": np.array([0, 1, 0, 1], np.int64), "c": np.uint64(2**64 - 1)})
    # ConstantOfShape over a run-time shape (the value printed into a fill), Constant outputs
    xn = _fin(2, 3, seed=22)
    sym = {"x": {0: "N"}}
    for nm, val in (("negzero", np.float32(-0.0)), ("neginf", -INF), ("nan", NAN), ("max", np.float32(3.4028235e38)),
                    ("i64min", np.int64(-(2**63))), ("u64max", np.uint64(2**64 - 1)), ("f64denorm", np.float64(5e-324)),
                    ("f32denorm", np.float32(1e-45))):
        add(f"constantofshape_{nm}", [("Shape", ["x"], ["s"], None),
                                      ("ConstantOfShape", ["s"], ["y"], {"value": numpy_helper.from_array(
                                          np.array([val]), "value")})], {"x": xn}, sym=sym)
    add("constant_outputs", [("Constant", [], ["y"], {"value": numpy_helper.from_array(
        np.array([-0.0, np.inf, -np.inf, np.nan, 1e-45, 0.1], np.float32), "v")}),
        ("Add", ["x", "y"], ["z"], None)], {"x": _fin(6, seed=23)}, outputs=("y", "z"))
    # Where / Add / Mul / Max with constant operands holding the special values
    add("where_add_consts", [("Where", ["c", "k", "x"], ["y"], None), ("Add", ["x", "k"], ["z"], None),
                             ("Max", ["x", "k"], ["m"], None), ("Mean", ["x", "k", "y"], ["u"], None)],
        {"c": np.array([[True, False, True], [False, True, True]]), "x": _sp(2, 3, seed=24)},
        outputs=("y", "z", "m", "u"), inits={"k": np.array([[-0.0, INF, NAN]], np.float32)})
    # reductions: initial values (-inf/inf for floats, the type's extremes for integers) and -0.0 sums
    xrd = np.array([[-np.inf, -np.inf, -np.inf], [np.inf, np.inf, np.inf], [-0.0, -0.0, -0.0],
                    [np.nan, 1.0, -np.inf], [3.4028235e38, 3.4028235e38, -1.0]], np.float32)
    for op in ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceLogSumExp", "ReduceProd", "ReduceL1"):
        # max and min against the reference: onnxruntime keeps or drops a NaN by its position in the row
        add(f"{op.lower()}_special", [(op, ["x", "ax"], ["y"], {"keepdims": 0})], {"x": xrd},
            inits={"ax": np.array([1], np.int64)}, reference=op in ("ReduceMax", "ReduceMin"))
    xrd2 = np.concatenate([xrd, xrd[:, ::-1]], axis=1)  # NaN first and last; rows of 6, reduced over axis 0 too
    for op in ("ReduceMax", "ReduceMin", "ReduceSum"):
        add(f"{op.lower()}_axes", [(op, ["x", "ax"], ["y"], {"keepdims": 1}), (op, ["x", "ax0"], ["z"], {"keepdims": 0})],
            {"x": xrd2}, outputs=("y", "z"), inits={"ax": np.array([1], np.int64), "ax0": np.array([0], np.int64)},
            reference=op != "ReduceSum")
    for dt in (np.int64, np.int32, np.int8, np.uint8):
        info = np.iinfo(dt)
        xi = np.array([[info.min, info.min], [info.max, info.max], [0, info.min], [info.max, 1]], dt)
        add(f"reduce_minmax_{np.dtype(dt).name}", [("ReduceMax", ["x", "ax"], ["y"], {"keepdims": 0}),
                                                   ("ReduceMin", ["x", "ax"], ["z"], {"keepdims": 0})],
            {"x": xi}, outputs=("y", "z"), inits={"ax": np.array([1], np.int64)})
    xb = np.array([[True, False], [False, False], [True, True]])
    add("reduce_minmax_bool", [("ReduceMax", ["x", "ax"], ["y"], {"keepdims": 0}),
                               ("ReduceMin", ["x", "ax"], ["z"], {"keepdims": 0})],
        {"x": xb}, outputs=("y", "z"), inits={"ax": np.array([1], np.int64)}, reference=True)
    # Resize: tf_crop_and_resize with a NaN / -0.0 extrapolation value
    for nm, ev in (("nan", float("nan")), ("negzero", -0.0)):
        add(f"resize_extrapolation_{nm}", [("Resize", ["x", "roi", "", "sizes"], ["y"],
                                            {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                                             "extrapolation_value": ev})], {"x": _fin(1, 1, 3, 3, seed=25)},
            inits={"roi": np.array([0, 0, -0.5, -0.5, 1, 1, 1.5, 1.5], np.float32),
                   "sizes": np.array([1, 1, 4, 4], np.int64)})
    # attention: a NaN scale (a double literal), RMSNormalization with an infinite epsilon (signed zeros out)
    q = _fin(1, 2, 3, 4, seed=26)
    qkv = {"q": q, "k": _fin(1, 2, 3, 4, seed=27), "v": _fin(1, 2, 3, 4, seed=28)}
    # (onnxruntime reads a NaN scale as "not given": the reference computes with it)
    add("attention_nan_scale", [("Attention", ["q", "k", "v"], ["y"], {"scale": float("nan")})], qkv, opset=23,
        reference=True)
    add("attention_denormal_scale", [("Attention", ["q", "k", "v"], ["y"], {"scale": 1e-45, "softcap": 0.5})], qkv,
        opset=23)
    add("rmsnorm_inf_eps", [("RMSNormalization", ["x", "w"], ["y"], {"epsilon": float("inf")})],
        {"x": _sp(2, 6, seed=29)}, inits={"w": np.array([1, -1, 2, -0.0, 0.5, 3], np.float32)}, opset=23)
    # QuantizeLinear: infinities saturate to the type's bounds (printed as float literals)
    for dt in (np.int8, np.uint8, np.int16):
        add(f"quantize_inf_{np.dtype(dt).name}", [("QuantizeLinear", ["x", "s", "z"], ["y"], None)],
            {"x": np.array([np.inf, -np.inf, -0.0, 1e30, -1e30, 2.5], np.float32)},
            inits={"s": np.float32(0.5), "z": np.zeros((), dt)})
    # float16 zeros and ones of the indexing family (from their bits), around inf / NaN / -0.0 values
    xh = _sp(4, 4, seed=30).astype(np.float16)
    add("trilu_eyelike_half", [("Trilu", ["x"], ["y"], {"upper": 1}), ("EyeLike", ["x"], ["z"], {"k": 1}),
                               ("CumSum", ["x", "ax"], ["c"], None)],
        {"x": xh}, outputs=("y", "z", "c"), inits={"ax": np.array(1, np.int64)})
    # IsInf / IsNaN on the special values (the comparisons print infinity literals)
    add("isinf_isnan", [("IsInf", ["x"], ["y"], {"detect_negative": 1, "detect_positive": 1}),
                        ("IsInf", ["x"], ["z"], {"detect_negative": 1, "detect_positive": 0}),
                        ("IsNaN", ["x"], ["w"], None)], {"x": xs}, outputs=("y", "z", "w"))
    return cases


def _reference(model, feeds, use_reference: bool) -> list[np.ndarray]:
    from opcheck import run_ort

    if not use_reference:
        try:
            return run_ort(model, feeds)
        except Exception:  # noqa: BLE001 - onnxruntime lacks the op or type: the ONNX reference instead
            pass
    from onnx.reference import ReferenceEvaluator

    with np.errstate(all="ignore"):
        return ReferenceEvaluator(model).run(None, feeds)


def assert_same(got: np.ndarray, want: np.ndarray, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same shape and dtype; NaN where the reference has NaN and only there; infinities equal; other values close;
    a zero the reference gives as -0.0 negative here too."""
    assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.dtype}{got.shape} != {want.dtype}{want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    g, w = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{what}: NaN positions")
    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=what)  # equal_nan, infinities must match
    negzero = (w == 0) & np.signbit(w)
    assert np.all(np.signbit(g[negzero])), f"{what}: -0.0 lost at {np.argwhere(negzero & ~np.signbit(g)).tolist()}"


MODEL_CASES = _model_cases()


@pytest.fixture(scope="module")
def compiled_cases():
    """Every model case by one compiler call, warning-free under -Wall -Wextra -Werror."""
    names = list(MODEL_CASES)
    built = mi.compile_many([MODEL_CASES[n][0] for n in names], names=[f"lit_{n}" for n in names],
                            extra_flags=["-Wall", "-Wextra", "-Werror"])
    return dict(zip(names, built))


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_special_constants_in_operator_families(name, compiled_cases):
    model, feeds, use_reference = MODEL_CASES[name]
    compiled = compiled_cases[name]
    if isinstance(compiled, Exception):
        raise compiled
    want = _reference(model, feeds, use_reference)
    got = compiled.run(feeds)
    for out, w in zip(model.graph.output, want):
        assert_same(got[out.name], np.asarray(w), f"{name}:{out.name}")
