"""The compute layers of ml4ep.infer.hls (dense.py, conv.py, pooling.py, merge.py, cpp/layers.hpp) against hls4ml.

The oracle is hls4ml's own C-simulation: one hls4ml model per configuration (two precisions, one with RND/SAT
accumulators and odd result types, that one on the Vitis and on the Vivado backend), built with ``ModelGraph.from_layer_list`` from the modules' ``hls4ml_layer`` and
``hls4ml_config``, every layer traced; the emulation is the modules' ``emit`` code in a small C++ driver compiled
here (fixed.hpp + layers.hpp, -Wall -Wextra -Werror). Every layer's output must be equal bit for bit, on random
inputs including ones far outside the types' ranges.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ml4ep._native.fixed import FixedType, parse
from ml4ep.errors import InputError
from ml4ep.infer.hls import conv, dense, merge, pooling
from ml4ep.infer.hls.layer import Layer

hls4ml = pytest.importorskip("hls4ml")

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "src" / "ml4ep" / "_native"
CPP = ROOT / "src" / "ml4ep" / "infer" / "hls" / "cpp"
N = 160  # samples per configuration


def _family(kind: str):
    if kind in ("Dense", "BatchNormalization"):
        return dense
    if kind.startswith("Conv"):
        return conv
    if "Pooling" in kind:
        return pooling
    return merge


def _quantize(w: np.ndarray, t: FixedType) -> np.ndarray:
    """Raw values as hls4ml's weight files give them: '{:.Ff}' text, read as a double, converted."""
    digits = max(0, t.frac)
    return t.raw_of(np.array([float(f"{v:.{digits}f}") for v in np.asarray(w, np.float64).reshape(-1)]))


class Net:
    """A small graph of Layers (plus no-op reshapes), its hls4ml model and its emulation."""

    def __init__(self, precision: str, accum: str, inputs: dict, overrides: dict, seed: int):
        self.precision, self.accum = parse(precision), parse(accum)
        self.inputs = {k: (tuple(s), parse(t) if t else self.precision) for k, (s, t) in inputs.items()}
        self.overrides = overrides
        self.rng = np.random.default_rng(seed)
        self.layers: list[Layer] = []
        self.reshapes: dict[str, tuple[str, tuple[int, ...]]] = {}  # name -> (source, shape)
        self.shape = {k: s for k, (s, _) in self.inputs.items()}
        self.type = {k: t for k, (_, t) in self.inputs.items()}
        self.buf = {k: k for k in self.inputs}  # the buffer holding each value (a reshape shares its source's)
        self.outputs: list[str] = []

    def add(self, kind, name, inputs, out_shape, attrs=None, weights=None) -> str:
        lay = Layer(kind, name, name, list(inputs), [self.shape[i] for i in inputs], tuple(out_shape),
                    dict(attrs or {}), {k: np.asarray(v, np.float32) for k, v in (weights or {}).items()})
        lay.attrs["in_types"] = [self.type[i] for i in inputs]
        lay.attrs["in_type"] = lay.attrs["in_types"][0]
        lay.types = dict(_family(kind).types(lay, self.precision, self.accum))
        lay.types.update({k: parse(v) for k, v in self.overrides.get(name, {}).items()})
        self.layers.append(lay)
        self.shape[name], self.type[name], self.buf[name] = lay.out_shape, lay.result, name
        return name

    def w(self, *shape, scale=0.5):
        return self.rng.normal(0.0, scale, shape)

    def reshape(self, name, src, shape):
        self.reshapes[name] = (src, tuple(shape))
        self.shape[name], self.type[name], self.buf[name] = tuple(shape), self.type[src], self.buf[src]
        self.layers.append(name)
        return name

    # -- hls4ml ---------------------------------------------------------------------------------------------------
    def hls4ml_model(self, out_dir: Path, backend: str = "Vitis"):
        from hls4ml.model import ModelGraph
        from hls4ml.utils.config import create_config

        cfg = create_config(output_dir=str(out_dir), project_name="nettest", backend=backend, io_type="io_parallel")
        names = {}
        for k, (_, t) in self.inputs.items():
            names[k] = {"Precision": {"result": t.hls4ml()}}
        layer_list = [{"class_name": "InputLayer", "name": k, "input_shape": list(s)} for k, (s, _) in self.inputs.items()]
        for lay in self.layers:
            if isinstance(lay, str):
                src, shape = self.reshapes[lay]
                layer_list.append({"class_name": "Reshape", "name": lay, "inputs": [src], "target_shape": list(shape)})
                continue
            fam = _family(lay.kind)
            layer_list.append(fam.hls4ml_layer(lay))
            names[lay.ident] = {**fam.hls4ml_config(lay), "Trace": True}
        cfg["HLSConfig"] = {"Model": {"Precision": self.precision.hls4ml(), "ReuseFactor": 1, "Strategy": "Latency"},
                            "LayerName": names}
        return ModelGraph.from_layer_list(cfg, layer_list, list(self.inputs), self.outputs)

    # -- the emulation --------------------------------------------------------------------------------------------
    def cpp(self, fn: str, only=None) -> str:
        """An ``extern "C"`` function ``fn(inputs, outputs, n)`` running the emulation on n samples, giving every
        layer's output (or those in ``only``) as doubles."""
        lines = [f"namespace {fn}_w {{\n"]
        for lay in self.layers:
            if isinstance(lay, str):
                continue
            for key, v in lay.weights.items():
                raw = _quantize(v, lay.types[key])
                lines.append(f"const int64_t w_{lay.ident}_{key}[] = {{{', '.join(f'{int(r)}LL' for r in raw)}}};\n")
        lines.append("}\n")
        lays = [lay for lay in self.layers if not isinstance(lay, str)]
        lines.append(f'extern "C" void {fn}(const double* const* in, double* const* out, int64_t n) {{\n'
                     f"  using namespace {fn}_w;\n")
        for k, (s, _) in self.inputs.items():
            lines.append(f"  std::vector<int64_t> v_{k}({int(np.prod(s))});\n")
        for lay in lays:
            lines.append(f"  std::vector<int64_t> v_{lay.ident}({int(np.prod(lay.out_shape))});\n")
        lines.append("  for (int64_t s = 0; s < n; ++s) {\n")
        for j, (k, (shape, t)) in enumerate(self.inputs.items()):
            size = int(np.prod(shape))
            lines.append(f"    for (int i = 0; i < {size}; ++i) v_{k}[i] = "
                         f"ml4ep_fx::from_double<{t.cpp()}>(in[{j}][s * {size} + i]);\n")
        for j, lay in enumerate(lays):
            code = _family(lay.kind).emit(lay, [f"v_{self.buf[i]}.data()" for i in lay.inputs], f"v_{lay.ident}.data()")
            size = int(np.prod(lay.out_shape))
            lines.append("    {\n" + "".join(f"      {line}\n" for line in code.strip().split("\n")))
            if only is None or lay.ident in only:
                lines.append(f"      for (int i = 0; i < {size}; ++i) out[{j}][s * {size} + i] = "
                             f"ml4ep_fx::to_double<{lay.result.cpp()}>(v_{lay.ident}[i]);\n")
            lines.append("    }\n")
        lines.append("  }\n}\n")
        return "".join(lines)

    def random_inputs(self, n: int) -> list[np.ndarray]:
        xs = []
        for s, _ in self.inputs.values():
            x = self.rng.normal(0.0, 1.0, (n, *s))
            x[n // 2:3 * n // 4] *= 40.0  # far outside the types' ranges
            x[3 * n // 4:] = self.rng.uniform(-300.0, 300.0, (n - 3 * n // 4, *s))
            xs.append(np.ascontiguousarray(x))
        return xs


def _net(precision: str, accum: str, overrides: dict, in_types: dict, seed: int) -> Net:
    net = Net(precision, accum, {"img": ((7, 7, 3), in_types.get("img")), "seq": ((9, 3), in_types.get("seq")),
                                 "a": ((3, 4, 5), in_types.get("a")), "b": ((3, 4, 5), in_types.get("b"))},
              overrides, seed)
    w = net.w
    # 2-D chain: strided padded conv, pointwise conv, padded max and average pooling, batchnorm, dense
    net.add("Conv2D", "c2a", ["img"], (4, 4, 5), {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
            {"weight": w(3, 3, 3, 5), "bias": w(5)})
    net.add("Conv2D", "c2b", ["c2a"], (4, 4, 4), {"kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0]},
            {"weight": w(1, 1, 5, 4, scale=1.0), "bias": w(4)})
    net.add("MaxPooling2D", "mp2", ["c2b"], (4, 4, 4), {"op": "Max", "kernel": [2, 2], "strides": [1, 1],
                                                        "pads": [0, 0, 1, 1]})
    net.add("AveragePooling2D", "ap2", ["mp2"], (2, 2, 4), {"op": "Average", "kernel": [3, 3], "strides": [2, 2],
                                                            "pads": [1, 1, 1, 1], "count_include_pad": 0})
    net.add("BatchNormalization", "bn2", ["ap2"], (2, 2, 4), {}, {"scale": w(4, scale=2.0), "bias": w(4)})
    net.reshape("flat2", "bn2", (16,))
    net.outputs.append(net.add("Dense", "fc2", ["flat2"], (6,), {}, {"weight": w(16, 6), "bias": w(6)}))
    # 1-D chain: strided padded conv, pointwise convs (one of width 1), average pooling counting the padding,
    # padded max pooling, global average pooling, dense
    net.add("Conv1D", "c1a", ["seq"], (5, 4), {"kernel": [3], "strides": [2], "pads": [1, 1]},
            {"weight": w(3, 3, 4), "bias": w(4)})
    net.add("Conv1D", "c1b", ["c1a"], (5, 3), {"kernel": [1], "strides": [1], "pads": [0, 0]},
            {"weight": w(1, 4, 3, scale=1.0), "bias": w(3)})
    net.add("AveragePooling1D", "ap1", ["c1b"], (3, 3), {"op": "Average", "kernel": [2], "strides": [2],
                                                         "pads": [1, 0], "count_include_pad": 1})
    net.add("MaxPooling1D", "mp1", ["ap1"], (3, 3), {"op": "Max", "kernel": [2], "strides": [1], "pads": [0, 1]})
    net.add("GlobalAveragePooling1D", "gap1", ["mp1"], (3,), {"op": "Average"})
    net.reshape("col1", "gap1", (1, 3))
    net.add("Conv1D", "c1c", ["col1"], (1, 4), {"kernel": [1], "strides": [1], "pads": [0, 0]},
            {"weight": w(1, 3, 4, scale=1.0), "bias": w(4)})
    net.reshape("flat1", "c1c", (4,))
    net.outputs.append(net.add("Dense", "fc1", ["flat1"], (4,), {}, {"weight": w(4, 4), "bias": w(4)}))
    # merges: add, concatenation along each axis, global pooling, a no-op batchnorm (removed by hls4ml)
    net.add("Add", "add", ["a", "b"], (3, 4, 5))
    net.add("Concatenate", "cat_c", ["add", "b"], (3, 4, 10), {"axis": 2})
    net.add("Concatenate", "cat_h", ["cat_c", "cat_c"], (6, 4, 10), {"axis": 0})
    net.add("Concatenate", "cat_w", ["cat_h", "cat_h"], (6, 8, 10), {"axis": 1})
    net.add("GlobalMaxPooling2D", "gmp2", ["cat_w"], (10,), {"op": "Max"})
    net.add("GlobalAveragePooling2D", "gap2", ["cat_w"], (10,), {"op": "Average"})
    net.add("Concatenate", "cat1", ["gmp2", "gap2"], (20,), {"axis": 0})
    net.add("BatchNormalization", "bnop", ["cat1"], (20,), {}, {"scale": np.ones(20), "bias": np.zeros(20)})
    net.outputs.append(net.add("BatchNormalization", "bn1", ["bnop"], (20,), {},
                               {"scale": w(20, scale=2.0), "bias": w(20)}))
    return net


CONFIGS = {
    # precision, accum, per-layer types, input types
    "p16": ("ap_fixed<16,6>", "ap_fixed<32,12>", {}, {"b": "ap_fixed<12,3>"}),
    "p24": ("ap_fixed<24,8>", "ap_fixed<24,8>", {}, {"b": "ap_fixed<20,10>"}),
    "sat": ("ap_fixed<16,6>", "ap_fixed<20,8,RND,SAT>",
            {"c2a": {"result": "ap_fixed<12,4,RND_CONV,SAT_SYM>"},
             "c2b": {"accum": "ap_fixed<12,5,RND_CONV,SAT>"},  # saturates halfway through the sums
             "c1a": {"accum": "ap_fixed<14,5,RND,SAT>"},
             "mp2": {"result": "ap_fixed<18,6>"},
             # average pooling quantising at every step (accum with fewer fraction bits than the input)
             "ap2": {"accum": "ap_fixed<12,5,RND_ZERO,SAT_ZERO>", "result": "ap_fixed<12,3,RND_INF,SAT>"},
             "bn2": {"scale": "ap_fixed<8,3,RND>", "bias": "ap_fixed<10,4>", "result": "ap_fixed<16,5,RND,SAT>"},
             "ap1": {"accum": "ap_fixed<13,6,RND_CONV,SAT>", "result": "ap_ufixed<12,4>"},  # unsigned into max pool
             "mp1": {"accum": "ap_fixed<10,4,RND,SAT>"},
             "c1c": {"accum": "ap_fixed<18,7,TRN_ZERO,SAT_SYM>", "weight": "ap_fixed<10,2,RND_CONV>"},
             "add": {"result": "ap_fixed<10,4,RND_INF,SAT>"},
             "cat_c": {"result": "ap_fixed<12,5,RND,SAT>"},
             "gap2": {"accum": "ap_fixed<16,8,RND_MIN_INF,SAT>"},
             "fc2": {"accum": "ap_fixed<18,6,RND_CONV,SAT_SYM>", "bias": "ap_fixed<8,2>"},
             "bnop": {}},
            {"seq": "ap_fixed<14,5,RND,SAT>"}),
}
CONFIGS["sat_vivado"] = CONFIGS["sat"]  # the same on hls4ml's Vivado backend (its own nnet_utils headers)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{config: (net, {layer: hls4ml's trace}, {layer: the emulation's outputs}, inputs)}, compiled in parallel."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed")
    base = tmp_path_factory.mktemp("hls_layers")
    nets = {k: _net(p, a, o, it, seed=7 + i) for i, (k, (p, a, o, it)) in enumerate(CONFIGS.items())}
    models = {}
    for k, net in nets.items():
        m = net.hls4ml_model(base / k, "Vivado" if k.endswith("vivado") else "Vitis")
        m.config.trace_output = True
        m.write()
        models[k] = m
    src = base / "emul.cpp"
    src.write_text('#include "fixed.hpp"\n#include "layers.hpp"\n#include <vector>\n'
                   + "".join(net.cpp(f"run_{k}") for k, net in nets.items()))
    lib = base / "emul.so"
    cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{NATIVE}", f"-I{CPP}",
           str(src), "-o", str(lib)]
    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(m._compile) for m in models.values()]
        gxx = pool.submit(subprocess.run, cmd, capture_output=True, text=True)
        for f in futs:
            f.result()
        r = gxx.result()
    assert r.returncode == 0, r.stderr
    emul = ctypes.CDLL(str(lib))
    out = {}
    for k, net in nets.items():
        xs = net.random_inputs(N)
        m = models[k]
        m.compile = lambda: None  # compiled above with tracing; trace() would compile again
        _, trace = m.trace(xs)
        lays = [lay for lay in net.layers if not isinstance(lay, str)]
        bufs = [np.zeros((N, int(np.prod(lay.out_shape)))) for lay in lays]
        ins = (ctypes.c_void_p * len(xs))(*[x.ctypes.data for x in xs])
        outs = (ctypes.c_void_p * len(bufs))(*[b.ctypes.data for b in bufs])
        getattr(emul, f"run_{k}")(ins, outs, ctypes.c_int64(N))
        out[k] = (net, trace, {lay.ident: b for lay, b in zip(lays, bufs)}, xs)
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
def test_bit_exact_against_hls4ml(results, config):
    net, trace, emul, xs = results[config]
    compared = []
    for lay in net.layers:
        if isinstance(lay, str):
            continue
        if lay.ident == "bnop":  # removed by hls4ml's remove_nop_batch_normalization: nothing traced
            assert lay.ident not in trace
            continue
        assert lay.ident in trace, f"{lay.ident} not traced by hls4ml ({sorted(trace)})"
        want = np.asarray(trace[lay.ident], np.float64).reshape(N, -1)
        got = emul[lay.ident]
        bad = np.flatnonzero((want != got).any(axis=1))
        assert bad.size == 0, (f"{config}: {lay.kind} {lay.ident} differs in {bad.size}/{N} samples, e.g. sample "
                               f"{bad[0]}: hls4ml {want[bad[0]][:8]} ml4ep {got[bad[0]][:8]}")
        compared.append(lay.ident)
    assert len(compared) == len([lay for lay in net.layers if not isinstance(lay, str)]) - 1
    # overflow happened: the inputs reach far outside their types, so do exact sums outside the result types
    xa, xb = net.inputs["a"][1].quantize(xs[2]), net.inputs["b"][1].quantize(xs[3])
    exact = (xa + xb).reshape(N, -1)
    assert np.count_nonzero((exact > net.type["add"].max) | (exact < net.type["add"].min)) >= 20
    if config.startswith("sat"):
        for k in ("c2a", "add", "cat_c"):
            v = emul[k]
            assert np.mean((v == net.type[k].max) | (v == -net.type[k].max) | (v == net.type[k].min)) > 0.05, k


def _layer(kind, in_shapes, out_shape, attrs=None, weights=None, in_types=None, **types):
    p = parse("ap_fixed<16,6>")
    lay = Layer(kind, "n1", "n1", ["x"] * len(in_shapes), in_shapes, out_shape, dict(attrs or {}),
                {k: np.asarray(v, np.float32) for k, v in (weights or {}).items()})
    lay.attrs["in_types"] = in_types or [p] * len(in_shapes)
    lay.types = dict(_family(kind).types(lay, p, parse("ap_fixed<32,12>")))
    lay.types.update({k: parse(v) for k, v in types.items()})
    return lay


def test_refusals_name_the_layer():
    wide = parse("ap_fixed<40,10>")
    lay = _layer("Dense", [(4,)], (2,), {}, {"weight": np.zeros((4, 2)), "bias": np.zeros(2)}, [wide],
                 weight="ap_fixed<30,4>")
    with pytest.raises(InputError, match="Dense layer 'n1'.*70 bits"):
        dense.emit(lay, ["x"], "y")
    bn = _layer("BatchNormalization", [(3,)], (3,), {}, {"scale": np.ones(3), "bias": np.zeros(3)},
                result="ap_fixed<8,4>")
    with pytest.raises(InputError, match="remove_nop_batch_normalization"):
        dense.emit(bn, ["x"], "y")
    ok = _layer("BatchNormalization", [(3,)], (3,), {}, {"scale": np.ones(3), "bias": np.zeros(3)})
    assert ok.types["result"] == parse("ap_fixed<16,6>") and "a copy" in dense.emit(ok, ["x"], "y")
    pool = _layer("AveragePooling2D", [(4, 4, 2)], (3, 3, 2), {"kernel": [2, 2], "strides": [1, 1],
                                                               "pads": [2, 0, 0, 0]})
    with pytest.raises(InputError, match="AveragePooling2D layer 'n1'.*divides by zero"):
        pooling.hls4ml_layer(pool)
    c = _layer("Conv2D", [(5, 5, 1)], (3, 3, 2), {"kernel": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0]},
               {"weight": np.zeros((3, 3, 1, 2)), "bias": np.zeros(2)})
    with pytest.raises(InputError, match=r"Conv2D layer 'n1'.*\(2, 2, 2\)"):
        conv.emit(c, ["x"], "y")
    cat = _layer("Concatenate", [(1, 2, 3, 4), (1, 2, 3, 4)], (1, 2, 3, 8), {"axis": 3})
    with pytest.raises(InputError, match="rank 1 to 3"):
        merge.hls4ml_layer(cat)
    add = _layer("Add", [(4,), (4,)], (4,), in_types=[parse("ap_fixed<40,-10>"), parse("ap_fixed<40,39>")])
    with pytest.raises(InputError, match="a \\+ b needs"):
        merge.emit(add, ["a", "b"], "y")
