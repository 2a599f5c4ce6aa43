"""ml4ep.infer.hls.activation and cpp/activation.hpp against hls4ml's own C-simulation, bit for bit.

One hls4ml model per precision (ap_fixed<16,6>, ap_fixed<24,8>) holds every activation side by side (several inputs,
one output per layer), so hls4ml compiles twice; ml4ep's kernels run from one small C++ driver built from ``emit``.
Inputs cover every raw value of the 16-bit and of the narrow (10- and 12-bit) types, values beyond their range, and
for 24 bits random raws plus every table-index boundary around zero. The defaults ml4ep claims (hls4ml's own) are
checked against a design hls4ml configures itself.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ml4ep._native import fixed
from ml4ep.errors import InputError
from ml4ep.infer.hls import activation as act
from ml4ep.infer.hls.layer import Layer

hls4ml = pytest.importorskip("hls4ml", reason="the oracle is hls4ml's C-simulation (the fpga extra)")

NATIVE = Path(fixed.__file__).parent
CPP = Path(act.__file__).parent / "cpp"
PRECISIONS = ["ap_fixed<16,6>", "ap_fixed<24,8>"]
NARROW = {"ap_fixed<16,6>": "fixed<10,3>", "ap_fixed<24,8>": "fixed<12,4>"}  # every raw value tested
ALPHA = float(np.float32(0.1))  # as the ONNX attribute (float32) reaches the driver
ROWS = 2048

# inputs: name -> (size, type or None for the precision)
INPUTS = {"x": (36, None), "xn": (3, "narrow"), "xw": (28, "fixed<40,30>"), "xf": (1, "fixed<8,12>"),
          "s5": (5, None), "s10": (10, None), "sn": (6, "fixed<8,3>"), "su": (4, "ufixed<9,4>")}
# layers: (ident, kind, input, attrs, type overrides)
CASES = [
    ("relu", "Activation", "x", {"activation": "relu"}, {}),
    ("leaky", "Activation", "x", {"activation": "leaky_relu", "alpha": ALPHA}, {}),
    ("sigmoid", "Activation", "x", {"activation": "sigmoid"}, {}),
    ("tanh", "Activation", "x", {"activation": "tanh"}, {}),
    ("relu_n", "Activation", "xn", {"activation": "relu"}, {}),
    ("leaky_n", "Activation", "xn", {"activation": "leaky_relu", "alpha": ALPHA}, {}),
    ("sigmoid_n", "Activation", "xn", {"activation": "sigmoid"}, {}),
    ("tanh_n", "Activation", "xn", {"activation": "tanh"}, {}),
    # a wide input (the table index wraps at 32 bits) and one with a step of 16 (negative fraction bits)
    ("sigmoid_xw", "Activation", "xw", {"activation": "sigmoid"}, {}),
    ("tanh_xw", "Activation", "xw", {"activation": "tanh"}, {}),
    ("sigmoid_xf", "Activation", "xf", {"activation": "sigmoid"}, {}),
    ("tanh_xf", "Activation", "xf", {"activation": "tanh"}, {}),
    ("leaky_xf", "Activation", "xf", {"activation": "leaky_relu", "alpha": ALPHA}, {}),
    # settings other than the defaults: table types and sizes, rounding/saturating results, a negative slope
    ("sigmoid_c", "Activation", "x", {"activation": "sigmoid", "table_size": 512},
     {"table": "fixed<12,2,RND,SAT>", "result": "ufixed<10,1,RND_CONV,SAT>"}),
    ("tanh_c", "Activation", "x", {"activation": "tanh", "table_size": 1000},
     {"table": "fixed<12,1,RND,SAT>", "result": "fixed<9,1,RND,SAT>"}),
    ("leaky_c", "Activation", "x", {"activation": "leaky_relu", "alpha": -0.3},
     {"param": "fixed<8,1,RND,SAT>", "result": "fixed<12,4,RND,SAT>"}),
    # wide tables: their entries show how hls4ml computes them (float std::exp, std::tanh on float)
    ("sigmoid_w", "Activation", "x", {"activation": "sigmoid"}, {"table": "fixed<40,2>", "result": "fixed<40,2>"}),
    ("tanh_w", "Activation", "x", {"activation": "tanh", "table_size": 4096},
     {"table": "fixed<40,2>", "result": "fixed<40,2>"}),
    ("softmax5", "Softmax", "s5", {}, {}),
    ("softmax10", "Softmax", "s10", {}, {}),
    ("softmax10_latency", "Softmax", "s10", {"implementation": "latency"}, {}),
    ("softmax10_legacy", "Softmax", "s10", {"implementation": "legacy"}, {}),
    ("softmax10_argmax", "Softmax", "s10", {"implementation": "argmax"}, {}),
    ("softmax10_w", "Softmax", "s10", {},
     {"exp_table": "fixed<40,8,RND,SAT>", "inv_table": "fixed<32,8,RND,SAT>", "accum": "fixed<30,6>",
      "result": "fixed<40,2>"}),
    ("softmax10_latency_w", "Softmax", "s10", {"implementation": "latency"},  # the 1/0 entry of a wrapping table
     {"inv_table": "fixed<40,8>", "accum": "fixed<20,8>", "result": "fixed<40,8>"}),
    ("softmax_n", "Softmax", "sn", {}, {}),  # an 8-bit input: tables cut to 256 / 128 entries
    ("softmax_n_latency", "Softmax", "sn", {"implementation": "latency"}, {}),
    ("softmax_u", "Softmax", "su", {}, {}),  # an unsigned input: inp_norm ap_ufixed<W,I>
    ("softmax10_c", "Softmax", "s10", {"table_size": 512},
     {"exp_table": "ufixed<14,3,RND,SAT>", "inv_table": "ufixed<16,6,RND>", "inv_inp": "ufixed<12,5,RND,SAT>",
      "accum": "fixed<20,6,RND,SAT>", "inp_norm": "ufixed<12,4,TRN,SAT>", "result": "ufixed<16,0,RND,SAT>"}),
]


# the defaults run at every precision; the other settings at the first only (each hls4ml layer costs compile time)
DEFAULTS = ("relu", "leaky", "sigmoid", "tanh", "relu_n", "leaky_n", "sigmoid_n", "tanh_n", "softmax5", "softmax10")


def _cases(prec: str) -> list[tuple]:
    return [c for c in CASES if prec == PRECISIONS[0] or c[0] in DEFAULTS]


def _inputs_of(prec: str) -> list[str]:
    used = {c[2] for c in _cases(prec)}
    return [name for name in INPUTS if name in used]


def _in_type(prec: str, name: str) -> fixed.FixedType:
    spec = INPUTS[name][1]
    return fixed.parse(prec if spec is None else NARROW[prec] if spec == "narrow" else spec)


def _layers(prec: str) -> list[Layer]:
    out = []
    for ident, kind, inp, attrs, over in _cases(prec):
        n = INPUTS[inp][0]
        lay = Layer(kind, ident, ident, [inp], [(n,)], (n,), {**attrs, "in_type": _in_type(prec, inp)})
        if kind == "Softmax":
            lay.attrs["axis"] = -1
        lay.types = {**act.types(lay, fixed.parse(prec), fixed.parse(prec)),
                     **{k: fixed.parse(v) for k, v in over.items()}}
        out.append(lay)
    return out


def _config(out_dir: Path, backend: str, model_precision, layers_cfg: dict) -> dict:
    cfg = hls4ml.utils.config.create_config(output_dir=str(out_dir), project_name="acts", backend=backend,
                                            io_type="io_parallel")
    cfg["HLSConfig"] = {"Model": {"Precision": model_precision, "ReuseFactor": 1, "Strategy": "Latency"},
                        "LayerName": layers_cfg}
    return cfg


def _graph(prec: str, out_dir: Path, backend: str = "Vitis", pinned: bool = True, model_precision=None):
    layers = _layers(prec)
    inputs = _inputs_of(prec)
    cfg_layers = {name: {"Precision": {"result": _in_type(prec, name).hls4ml()}} for name in inputs}
    for lay in layers:
        cfg_layers[lay.ident] = act.hls4ml_config(lay) if pinned else {}
    cfg = _config(out_dir, backend, model_precision or fixed.parse(prec).hls4ml(), cfg_layers)
    dicts = [{"class_name": "InputLayer", "name": name, "input_shape": [INPUTS[name][0]]} for name in inputs]
    dicts += [act.hls4ml_layer(lay) for lay in layers]
    g = hls4ml.model.ModelGraph.from_layer_list(cfg, dicts, inputs, [lay.ident for lay in layers])
    return g, layers


def _grid(t: fixed.FixedType, rng) -> np.ndarray:
    """Values of type t: every raw value (up to 16 bits) or random raws and every raw near a multiple of 2^(F-8)
    within +-16, the ends of the range, values beyond it and off the grid."""
    if t.width <= 16:
        raws = np.arange(t.raw_min, t.raw_max + 1, dtype=np.int64)
    else:
        step = 1 << max(t.frac - 8, 0)
        k = np.arange(-(16 << 8), (16 << 8) + 1, dtype=np.int64) * step
        raws = np.concatenate([rng.integers(t.raw_min, t.raw_max + 1, 30000), k - 1, k, k + 1])
        raws = np.clip(raws, t.raw_min, t.raw_max)
    vals = np.ldexp(raws.astype(np.float64), -t.frac)
    lsb = 2.0 ** -t.frac
    extra = [t.max + lsb, t.min - lsb, 3.3 * t.max, -7.1 * t.max, 1e4, -1e4, 0.3 * lsb, -0.3 * lsb, 1.7 * lsb,
             t.max, t.min, 0.0]
    return np.concatenate([vals, extra])


def _fill(vals: np.ndarray, rows: int, cols: int, rng) -> np.ndarray:
    reps = -(-rows * cols // len(vals))
    v = np.concatenate([vals, rng.permutation(np.tile(vals, reps))])[:rows * cols]
    return np.ascontiguousarray(v.reshape(rows, cols))


def _softmax_rows(t: fixed.FixedType, rows: int, n: int, rng) -> np.ndarray:
    """Logit rows: normal at scales from 0.05 to 16, uniform over the whole range (differences that wrap), ties and
    equal rows, the ends of the range."""
    scales = np.array([0.05, 0.25, 1.0, 2.0, 4.0, 8.0, 16.0])
    x = rng.normal(0, 1, (rows, n)) * scales[np.arange(rows) % len(scales)][:, None]
    x += rng.normal(0, 2, (rows, 1))
    k = rows // 8
    x[:k] = np.ldexp(rng.integers(t.raw_min, t.raw_max + 1, (k, n)).astype(np.float64), -t.frac)
    x[k:2 * k] = np.round(x[k:2 * k])  # ties
    x[2 * k] = 0.0
    x[2 * k + 1] = t.max
    x[2 * k + 2, ::2], x[2 * k + 2, 1::2] = t.max, t.min
    x[2 * k + 3, 0] = t.min
    x[2 * k + 4], x[2 * k + 5], x[2 * k + 6] = t.min, -6.0, -3.0  # tiny sums of exponentials (latency)
    return np.ascontiguousarray(t.quantize(x))


def _inputs(prec: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {}
    for name in _inputs_of(prec):
        n, t = INPUTS[name][0], _in_type(prec, name)
        data[name] = _fill(_grid(t, rng), ROWS, n, rng) if name.startswith("x") else _softmax_rows(t, ROWS, n, rng)
    return data


def _driver_source(designs: dict[str, list[Layer]]) -> str:
    lines = ['#include "fixed.hpp"', '#include "activation.hpp"', "#include <cstdint>", ""]
    for tag, layers in designs.items():
        for lay in layers:
            n = lay.out_shape[0]
            lines += [f'extern "C" void run_{tag}_{lay.ident}(const double* in, double* out, int rows) {{',
                      f"  int64_t xb[{n}], yb[{n}];",
                      "  for (int r = 0; r < rows; ++r) {",
                      f"    for (int i = 0; i < {n}; ++i) xb[i] = ml4ep_fx::from_double<"
                      f"{lay.attrs['in_type'].cpp()}>(in[r * {n} + i]);",
                      "    {"]
            lines += ["      " + s for s in act.emit(lay, ["xb"], "yb").strip().split("\n")]
            lines += ["    }",
                      f"    for (int i = 0; i < {n}; ++i) out[r * {n} + i] = ml4ep_fx::to_double<"
                      f"{lay.result.cpp()}>(yb[i]);",
                      "  }", "}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per precision: the inputs, hls4ml's outputs per layer, ml4ep's outputs per layer, and the timings."""
    d = tmp_path_factory.mktemp("hls_act")
    designs = {f"p{k}": _layers(p) for k, p in enumerate(PRECISIONS)}
    src = d / "driver.cpp"
    src.write_text(_driver_source(designs))
    t0 = time.perf_counter()
    cxx = subprocess.Popen(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                            f"-I{NATIVE}", f"-I{CPP}", str(src), "-o", str(d / "driver.so")],
                           stderr=subprocess.PIPE, text=True)
    out = {}
    for k, prec in enumerate(PRECISIONS):
        g, layers = _graph(prec, d / f"prj{k}")
        g.compile()
        data = _inputs(prec, 10 + k)
        ys = g.predict([data[name] for name in _inputs_of(prec)])
        out[prec] = {"data": data, "hls": dict(zip((lay.ident for lay in layers), ys)), "layers": layers,
                     "graph": g}
    err = cxx.communicate()[1]
    assert cxx.returncode == 0, err
    assert not err.strip(), err  # warning-free
    lib = ctypes.CDLL(str(d / "driver.so"))
    for k, prec in enumerate(PRECISIONS):
        mine = {}
        for lay in out[prec]["layers"]:
            x = np.ascontiguousarray(out[prec]["data"][lay.inputs[0]], dtype=np.float64)
            y = np.zeros(x.shape, dtype=np.float64)
            f = getattr(lib, f"run_p{k}_{lay.ident}")
            f(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(x.shape[0]))
            mine[lay.ident] = y
        out[prec]["ml4ep"] = mine
    out["seconds"] = time.perf_counter() - t0
    return out


@pytest.mark.parametrize(("prec", "ident"), [(p, c[0]) for p in PRECISIONS for c in _cases(p)])
def test_bit_exact_with_hls4ml_csim(runs, prec, ident):
    r = runs[prec]
    ref = np.asarray(r["hls"][ident], dtype=np.float64).reshape(r["ml4ep"][ident].shape)
    mine = r["ml4ep"][ident]
    bad = np.flatnonzero(ref != mine)
    if bad.size:
        lay = next(lay for lay in r["layers"] if lay.ident == ident)
        x = r["data"][lay.inputs[0]]
        row = bad[0] // ref.shape[1]
        pytest.fail(f"{ident} ({prec}): {bad.size} of {ref.size} outputs differ; first row input {x[row].tolist()} "
                    f"hls4ml {ref[row].tolist()} ml4ep {mine[row].tolist()}")
    # the test exercised something: not all outputs equal
    assert np.unique(ref).size > 1


def test_pinned_types_and_sizes_reach_hls4ml(runs):
    """Every type of the layer's config is the type hls4ml generates; the softmax table sizes too."""
    for prec in PRECISIONS:
        g, layers = runs[prec]["graph"], runs[prec]["layers"]
        for lay in layers:
            node = g.graph[lay.ident]
            got = {"result": node.get_output_variable().type.precision}
            for key in lay.types:
                if key != "result":
                    got[key] = node.get_attr(f"{key}_t").precision
            for key, t in lay.types.items():
                assert fixed.parse(str(got[key])) == t, (prec, lay.ident, key, str(got[key]), t)
            cfg = node.get_attr("config_cpp")
            if lay.kind == "Softmax":
                exp_size, inv_size = act.softmax_sizes(lay)
                assert f"exp_table_size = {exp_size};" in cfg and f"inv_table_size = {inv_size};" in cfg
                impl = lay.attrs.get("implementation", "stable")
                assert f"softmax_implementation::{impl};" in cfg
            elif lay.attrs["activation"] in ("sigmoid", "tanh"):
                assert f"table_size = {lay.attrs.get('table_size', 1024)};" in cfg


def test_defaults_are_hls4ml_defaults(tmp_path):
    """A design hls4ml configures itself (no per-layer settings but the inputs') has ml4ep's default types and
    sizes; the model's 'accum' precision is the softmax accumulator, as ml4ep's ``accum``."""
    prec = "ap_fixed<16,6>"
    accum = fixed.parse("fixed<20,7>")
    with pytest.warns(UserWarning, match="table size is too large"):  # hls4ml's own cut of softmax_n's tables
        g, _ = _graph(prec, tmp_path / "prj", pinned=False,
                      model_precision={"default": fixed.parse(prec).hls4ml(), "accum": accum.hls4ml()})
    sizes = {"softmax5": (1024, 1024), "softmax10": (1024, 1024), "softmax_n": (128, 256), "softmax_u": (512, 512)}
    for ident, kind, inp, attrs, over in CASES:
        if over or "table_size" in attrs or "implementation" in attrs:
            continue
        n = INPUTS[inp][0]
        lay = Layer(kind, ident, ident, [inp], [(n,)], (n,), {**attrs, "in_type": _in_type(prec, inp)})
        lay.types = act.types(lay, fixed.parse(prec), accum)
        node = g.graph[ident]
        cfg = node.get_attr("config_cpp")
        for key, t in lay.types.items():
            if key == "inp_norm":  # not an attribute when hls4ml derives it: the template writes it
                assert f"typedef{t}inp_norm_t;" in cfg.replace(" ", ""), cfg
                continue
            got = node.get_output_variable().type.precision if key == "result" else node.get_attr(f"{key}_t").precision
            assert fixed.parse(str(got)) == t, (ident, key, str(got), t)
        if kind == "Softmax":
            assert act.softmax_sizes(lay) == sizes[ident]
            m = re.search(r"exp_table_size = (\d+);.*inv_table_size = (\d+);", cfg, re.S)
            assert (int(m.group(1)), int(m.group(2))) == sizes[ident], cfg
            assert "softmax_implementation::stable;" in cfg
        elif attrs["activation"] in ("sigmoid", "tanh"):
            assert "table_size = 1024;" in cfg
        if attrs.get("activation") == "leaky_relu":
            assert f"({inp}, {ALPHA!r}, " in node.get_attr("function_cpp")


def test_vivado_generates_what_vitis_does(tmp_path):
    prec = "ap_fixed<16,6>"
    vitis, _ = _graph(prec, tmp_path / "vitis", "Vitis")
    vivado, _ = _graph(prec, tmp_path / "vivado", "Vivado")
    for ident, *_ in CASES:
        a, b = vitis.graph[ident], vivado.graph[ident]
        assert a.get_attr("config_cpp") == b.get_attr("config_cpp")
        assert a.get_attr("function_cpp") == b.get_attr("function_cpp")
        for key, t in a.types.items():
            assert str(t.precision) == str(b.types[key].precision), (ident, key)


def _layer(kind="Activation", shape=(4,), **attrs) -> Layer:
    attrs.setdefault("in_type", fixed.parse("ap_fixed<16,6>"))
    lay = Layer(kind, "n", "n", ["x"], [shape], shape, attrs)
    return lay


def test_refusals():
    p = fixed.parse("ap_fixed<16,6>")
    with pytest.raises(InputError, match="activation 'elu' is not supported"):
        act.types(_layer(activation="elu"), p, p)
    with pytest.raises(InputError, match="softmax implementation 'fast'"):
        act.types(_layer("Softmax", implementation="fast"), p, p)
    with pytest.raises(InputError, match="1-D"):
        act.types(_layer("Softmax", shape=(2, 3)), p, p)
    lay = _layer("Softmax", table_size=1000)
    lay.types = act.types(lay, p, p)
    with pytest.raises(InputError, match="power of two"):
        act.emit(lay, ["x"], "y")
    lay = _layer("Softmax", table_size=1000, implementation="legacy")  # legacy multiplies: any size
    lay.types = act.types(lay, p, p)
    assert "softmax_legacy" in act.emit(lay, ["x"], "y")
    lay = _layer(activation="sigmoid", table_size=0)
    lay.types = act.types(lay, p, p)
    with pytest.raises(InputError, match="table_size"):
        act.hls4ml_config(lay)
    lay = _layer(activation="leaky_relu", alpha=float("nan"))
    lay.types = act.types(lay, p, p)
    with pytest.raises(InputError, match="finite"):
        act.hls4ml_layer(lay)
    lay = _layer(activation="leaky_relu", alpha=0.2, in_type=fixed.parse("ap_fixed<40,10>"))
    lay.types = {**act.types(lay, p, p), "param": fixed.parse("ap_fixed<30,2>")}
    with pytest.raises(InputError, match="63 bits"):
        act.emit(lay, ["x"], "y")
    lay = _layer("Softmax")
    lay.types = {**act.types(lay, p, p), "inv_inp": fixed.parse("ap_fixed<8,4>")}
    with pytest.raises(InputError, match="inv_inp"):
        act.hls4ml_config(lay)
    with pytest.raises(InputError, match="in_type"):
        act.types(Layer("Softmax", "n", "n", ["x"], [(4,)], (4,), {}), p, p)


