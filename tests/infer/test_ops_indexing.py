"""Indexing operators (GatherElements, GatherND, ScatterElements, Scatter, ScatterND, OneHot, Trilu, EyeLike,
CumSum, CumProd, TopK, Hardmax, ReverseSequence) against onnxruntime.

Each test compiles one model holding several nodes of a family (one C++ compile each keeps the file fast),
most with a symbolic batch dimension ``N`` fed at a size other than the declared one.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from onnx import TensorProto

import ml4ep.infer as mi
from ml4ep.errors import Ml4epError, UnsupportedOperatorError
from opcheck import check_model, graph_model, rand, run_ort

RNG = np.random.default_rng(7)


def _ints(low, high, *shape, dtype=np.int64):
    return RNG.integers(low, high, size=shape).astype(dtype)


_model = partial(graph_model, name="indexing", opset=21)
_check = partial(check_model, rtol=1e-5, atol=1e-6)


def test_gather_elements_and_gathernd():
    n = 3  # the run-time value of N (declared 1 in no place: the graph only says "N")
    x = rand(n, 5, 4)
    feeds = {
        "x": x,
        "i0": _ints(-n, n, 2, 5, 3),  # axis 0, smaller than the data on axes 0 and 2
        "i1": _ints(-5, 5, n, 7, 4, dtype=np.int32),  # axis 1, more indices than the axis is long
        "i2": _ints(-4, 4, n, 5, 4),
        "q0": np.stack([_ints(-n, n, 6), _ints(-5, 5, 6)], axis=-1),  # (6, 2): rows of 4
        "q1": _ints(-5, 5, n, 2, 1),  # batch_dims 1: (N, 2, 1) -> (N, 2, 4)
        "q2": np.stack([_ints(-5, 5, n, 3), _ints(-4, 4, n, 3)], axis=-1),  # batch_dims 1: elements
    }
    sym = {"x": {0: "N"}, "i1": {0: "N"}, "i2": {0: "N"}, "q1": {0: "N"}, "q2": {0: "N"}}
    nodes = [
        ("GatherElements", ["x", "i0"], ["y0"], {"axis": 0}),
        ("GatherElements", ["x", "i1"], ["y1"], {"axis": 1}),
        ("GatherElements", ["x", "i2"], ["y2"], {"axis": -1}),
        ("GatherND", ["x", "q0"], ["y3"], {}),
        ("GatherND", ["x", "q1"], ["y4"], {"batch_dims": 1}),
        ("GatherND", ["x", "q2"], ["y5"], {"batch_dims": 1}),
    ]
    model = _model(nodes, feeds, [f"y{k}" for k in range(6)], sym=sym)
    compiled = _check(model, feeds)
    # out-of-range indices at run time: an exception naming the node, no crash
    bad = dict(feeds, i1=np.full_like(feeds["i1"], 5))
    with pytest.raises(Ml4epError, match="gatherelements_1.*out of range"):
        compiled.run(bad)
    bad = dict(feeds, q1=np.full_like(feeds["q1"], -6))
    with pytest.raises(Ml4epError, match="gathernd_4.*out of range"):
        compiled.run(bad)


def test_scatter_reductions_repeated_indices():
    n = 4
    data = rand(n, 6)
    # ScatterElements along axis 0 with many repeated indices (message aggregation onto nodes)
    e_idx = _ints(-n, n, 9, 6)
    e_upd = rand(9, 6)
    # ScatterND: rows (indices (10, 1), updates (10, 6)) and single elements (indices (7, 2))
    nd_rows = _ints(-n, n, 10, 1)
    nd_elem = np.stack([_ints(-n, n, 7), _ints(-6, 6, 7)], axis=-1)
    feeds = {"x": data, "ei": e_idx, "eu": e_upd, "ri": nd_rows, "ru": rand(10, 6), "si": nd_elem,
             "su": rand(7), "ui": np.array([[1, 0], [0, -1]], np.int64), "uu": rand(2, 2), "un": rand(2)}
    sym = {"x": {0: "N"}}
    nodes = [("ScatterElements", ["x", "ui", "uu"], ["y0"], {"axis": 1})]  # none: unique indices
    outs = ["y0"]
    for r in ("add", "mul", "max", "min"):
        nodes += [
            ("ScatterElements", ["x", "ei", "eu"], [f"e_{r}"], {"axis": 0, "reduction": r}),
            ("ScatterND", ["x", "ri", "ru"], [f"r_{r}"], {"reduction": r}),
            ("ScatterND", ["x", "si", "su"], [f"s_{r}"], {"reduction": r}),
        ]
        outs += [f"e_{r}", f"r_{r}", f"s_{r}"]
    nodes.append(("ScatterND", ["x", "ui", "un"], ["nd_none"], {}))
    outs.append("nd_none")
    model = _model(nodes, feeds, outs, sym=sym)
    compiled = _check(model, feeds, rtol=1e-5, atol=1e-5)
    bad = dict(feeds, ei=np.full_like(e_idx, n))
    with pytest.raises(Ml4epError, match="scatterelements_1.*out of range"):
        compiled.run(bad)


def test_scatter_opset10_and_int_data():
    feeds = {"x": _ints(-9, 9, 3, 5, dtype=np.int32), "i": _ints(-5, 5, 3, 2), "u": _ints(-9, 9, 3, 2, dtype=np.int32)}
    feeds["i"][:, 1] = (feeds["i"][:, 0] + 1) % 5  # unique per row
    model = _model([("Scatter", ["x", "i", "u"], ["y"], {"axis": 1})], feeds, ["y"], opset=10)
    _check(model, feeds)


def test_onehot_trilu_eyelike():
    n = 3
    feeds = {
        "ind": _ints(-6, 7, n, 4),  # some beyond depth 5: rows of off values
        "ind32": _ints(-5, 5, n, dtype=np.int32),
        "vals": np.array([-1.5, 2.0], np.float32),
        "m": rand(n, 4, 6),
        "sq": rand(5, 5),
    }
    inits = {"depth": np.array(5, np.int64), "depthf": np.array([4.0], np.float32), "kp": np.array(2, np.int64), "kn": np.array(-1, np.int64),
             "ivals": np.array([0, 7], np.int64)}
    sym = {"ind": {0: "N"}, "ind32": {0: "N"}, "m": {0: "N"}}
    nodes = [
        ("OneHot", ["ind", "depth", "vals"], ["o0"], {}),
        ("OneHot", ["ind", "depth", "vals"], ["o1"], {"axis": 0}),
        ("OneHot", ["ind32", "depthf", "vals"], ["o2"], {"axis": -2}),
        ("OneHot", ["ind", "depth", "ivals"], ["o3"], {"axis": 1}),
        ("Trilu", ["m"], ["t0"], {}),
        ("Trilu", ["m", "kp"], ["t1"], {"upper": 0}),
        ("Trilu", ["m", "kn"], ["t2"], {"upper": 1}),
        ("Trilu", ["sq", "kn"], ["t3"], {"upper": 0}),
        ("EyeLike", ["sq"], ["e0"], {"k": 1}),
        ("EyeLike", ["m3"], ["e1"], {"k": -2, "dtype": TensorProto.INT32}),
    ]
    feeds["m3"] = rand(n, 6)
    sym["m3"] = {0: "N"}
    model = _model(nodes, feeds, ["o0", "o1", "o2", "o3", "t0", "t1", "t2", "t3", "e0", "e1"], inits=inits, sym=sym)
    _check(model, feeds)


def test_cumsum_cumprod():
    n = 3
    feeds = {"x": rand(n, 5, 4, low=0.5, high=1.5), "xi": _ints(-3, 4, n, 6, dtype=np.int32),
             "xd": rand(n, 7).astype(np.float64)}
    inits = {"a0": np.array(0, np.int64), "a1": np.array(1, np.int32), "am1": np.array(-1, np.int64)}
    sym = {"x": {0: "N"}, "xi": {0: "N"}, "xd": {0: "N"}}
    nodes, outs = [], []
    for op in ("CumSum", "CumProd"):
        for k, (src, ax, ex, rev) in enumerate([("x", "a1", 0, 0), ("x", "a0", 1, 0), ("x", "am1", 1, 1),
                                                ("xi", "am1", 0, 1), ("xi", "a1", 1, 0), ("xd", "a0", 0, 1)]):
            name = f"{op}_{k}"
            nodes.append((op, [src, ax], [name], {"exclusive": ex, "reverse": rev}))
            outs.append(name)
    model = _model(nodes, feeds, outs, inits=inits, sym=sym, opset=26)
    _check(model, feeds, rtol=1e-5, atol=1e-5)


def test_topk_knn_and_variants():
    n = 37
    # ParticleNet kNN: k = 16 nearest of 128 points per row; integer-valued distances make many ties
    d = np.round(rand(n, 128, low=0.0, high=20.0)).astype(np.float32)
    feeds = {"d": d, "c": rand(n, 5, 3), "w": rand(n, 100), "i": _ints(-50, 50, n, 9, dtype=np.int32)}
    feeds["c"][0, 2, 1] = np.nan  # NaN counts as the largest
    inits = {"k16": np.array([16], np.int64), "k3": np.array([3], np.int64), "k80": np.array([80], np.int64),
             "k4": np.array([4], np.int64)}
    sym = {name: {0: "N"} for name in feeds}
    nodes = [
        ("TopK", ["d", "k16"], ["v0", "i0"], {"largest": 0}),
        ("TopK", ["d", "k16"], ["v1", "i1"], {}),
        ("TopK", ["c", "k3"], ["v2", "i2"], {"axis": 1}),  # strided rows
        ("TopK", ["w", "k80"], ["v3", "i3"], {"axis": -1, "largest": 0}),  # partial_sort path
        ("TopK", ["i", "k4"], ["v4", "i4"], {}),
    ]
    outs = [f"{p}{k}" for k in range(5) for p in ("v", "i")]
    model = _model(nodes, feeds, outs, inits=inits, sym=sym)
    _check(model, feeds)


def test_large_problems():
    """Sizes past the thresholds where the CUDA code changes its structure (scatters: one thread per line or per
    element of a slice instead of per output element; TopK: one thread per row instead of per element), which the
    host build (ML4EP_DEVICE=cuda-host) then runs; the CPU code is the same at every size."""
    n = 37
    d3 = np.round(rand(n, 60, 128, low=0.0, high=20.0)).astype(np.float32)  # ties
    d3[0, 3, 7] = np.nan
    feeds = {
        "d3": d3, "long": rand(n, 2000),
        "x": rand(8, 270000), "ei": _ints(-270000, 270000, 8, 900), "eu": rand(8, 900),  # 8 lines of 900 updates
        "y": rand(40000, 64), "ri": _ints(-40000, 40000, 600, 1), "ru": rand(600, 64),  # rows of 64
        "z": rand(1500, 1500), "si": np.stack([_ints(-1500, 1500, 600), _ints(-1500, 1500, 600)], axis=-1),
        "su": rand(600),  # single elements
    }
    inits = {"k16": np.array([16], np.int64), "k3": np.array([3], np.int64), "k80": np.array([80], np.int64),
             "k5": np.array([5], np.int64)}
    sym = {"d3": {0: "N"}, "long": {0: "N"}}
    nodes = [
        ("TopK", ["d3", "k16"], ["v0", "i0"], {"largest": 0}),
        ("TopK", ["d3", "k3"], ["v1", "i1"], {"axis": 1}),  # strided rows
        ("TopK", ["d3", "k80"], ["v2", "i2"], {}),
        ("TopK", ["long", "k5"], ["v3", "i3"], {}),  # rows longer than the rank kernel takes
        ("ScatterElements", ["x", "ei", "eu"], ["e_add"], {"axis": 1, "reduction": "add"}),
        ("ScatterElements", ["x", "ei", "eu"], ["e_max"], {"axis": 1, "reduction": "max"}),
        ("ScatterND", ["y", "ri", "ru"], ["r_add"], {"reduction": "add"}),
        ("ScatterND", ["z", "si", "su"], ["s_min"], {"reduction": "min"}),
    ]
    outs = [f"{p}{k}" for k in range(4) for p in ("v", "i")] + ["e_add", "e_max", "r_add", "s_min"]
    model = _model(nodes, feeds, outs, inits=inits, sym=sym)
    _check(model, feeds, rtol=1e-5, atol=1e-5)


def test_hardmax_reversesequence():
    n = 3
    h = np.round(rand(n, 4, 6) * 2).astype(np.float32)  # ties: the first maximum wins
    feeds = {"h": h, "s": rand(5, n, 2), "lens": np.array([5, 0, 3], np.int64)[:n], "sb": rand(n, 6),
             "lb": _ints(1, 7, n)}
    sym = {"h": {0: "N"}, "s": {1: "N"}, "lens": {0: "N"}, "sb": {0: "N"}, "lb": {0: "N"}}
    nodes = [
        ("Hardmax", ["h"], ["h0"], {}),
        ("Hardmax", ["h"], ["h1"], {"axis": 1}),
        ("Hardmax", ["h"], ["h2"], {"axis": 0}),
        ("ReverseSequence", ["s", "lens"], ["r0"], {"time_axis": 0, "batch_axis": 1}),
        ("ReverseSequence", ["sb", "lb"], ["r1"], {"time_axis": 1, "batch_axis": 0}),
    ]
    model = _model(nodes, feeds, ["h0", "h1", "h2", "r0", "r1"], sym=sym)
    _check(model, feeds)


def test_bad_models_name_the_node():
    x, i, u = rand(4, 3), _ints(0, 3, 4, 3), rand(4, 2)
    model = _model([("ScatterElements", ["x", "i", "u"], ["y"], {"axis": 1})], {"x": x, "i": i, "u": u}, ["y"])
    with pytest.raises(UnsupportedOperatorError, match="scatterelements_0.*updates shape"):
        mi.compile(model)
    model = _model([("TopK", ["x", "k"], ["v", "j"], {})], {"x": x}, ["v", "j"], inits={"k": np.array([5], np.int64)})
    with pytest.raises(UnsupportedOperatorError, match="topk_0.*exceeds"):
        mi.compile(model)
    model = _model([("ScatterND", ["x", "i", "u"], ["y"], {"reduction": "sub"})],
                   {"x": x, "i": _ints(0, 3, 2, 1), "u": rand(2, 3)}, ["y"])
    problems = mi.check(model)
    assert [p.node for p in problems] == ["scatternd_0"] and "reduction 'sub'" in str(problems[0])


def test_other_dtypes():
    n = 3
    feeds = {
        "b": RNG.random((n, 4)) > 0.5,
        "i8": _ints(-100, 100, n, 4, dtype=np.int8),
        "u8": _ints(0, 250, n, 4, dtype=np.uint8),
        "f64": rand(n, 4).astype(np.float64),
        "i64": _ints(-9, 9, n, 4),
        "gi": _ints(-4, 4, n, 3),
        "si": _ints(-n, n, 5, 4),
    }
    feeds["u8_upd"] = _ints(0, 250, 5, 4, dtype=np.uint8)
    feeds["i8_upd"] = _ints(-100, 100, 5, 4, dtype=np.int8)
    feeds["f64_upd"] = rand(5, 4).astype(np.float64)
    feeds["b_upd"] = RNG.random((n, 3)) > 0.5
    inits = {"k2": np.array([2], np.int64), "kk": np.array(1, np.int64), "ax": np.array(0, np.int64)}
    sym = {k: {0: "N"} for k in ("b", "i8", "u8", "f64", "i64", "gi", "b_upd")}
    nodes = [
        ("GatherElements", ["b", "gi"], ["g_b"], {"axis": 1}),
        ("GatherElements", ["i8", "gi"], ["g_i8"], {"axis": 1}),
        ("GatherElements", ["f64", "gi"], ["g_f64"], {"axis": -1}),
        ("ScatterElements", ["u8", "si", "u8_upd"], ["s_u8"], {"axis": 0, "reduction": "add"}),  # wraps
        ("ScatterElements", ["i8", "si", "i8_upd"], ["s_i8"], {"axis": 0, "reduction": "max"}),
        ("ScatterElements", ["f64", "si", "f64_upd"], ["s_f64"], {"axis": 0, "reduction": "mul"}),
        ("ScatterElements", ["b", "gi", "b_upd"], ["s_b"], {"axis": 1}),
        ("TopK", ["f64", "k2"], ["t_f64", "ti_f64"], {"axis": 0}),
        ("TopK", ["i64", "k2"], ["t_i64", "ti_i64"], {"largest": 0}),
        ("Trilu", ["b", "kk"], ["tr_b"], {}),
        ("Trilu", ["i64", "kk"], ["tr_i64"], {"upper": 0}),
        ("CumSum", ["i64", "ax"], ["c_i64"], {"reverse": 1}),
        ("EyeLike", ["i64"], ["e_i32"], {"dtype": TensorProto.INT32}),
        ("EyeLike", ["f64"], ["e_f64"], {"k": 2}),
    ]
    outs = [o for _, _, os_, _ in nodes for o in os_]
    model = _model(nodes, feeds, outs, inits=inits, sym=sym)
    _check(model, feeds)


def test_float16():
    n = 3
    h = rand(n, 6).astype(np.float16)
    feeds = {"h": h, "gi": _ints(-6, 6, n, 4), "si": _ints(-n, n, 5, 6), "su": rand(5, 6).astype(np.float16),
             "qi": np.array([[0], [2], [-2]], np.int64), "qu": rand(3, 6).astype(np.float16), "lens": _ints(0, 7, n)}
    inits = {"k3": np.array([3], np.int64), "depth": np.array(4, np.int64),
             "vals": np.array([0.5, -2.0], np.float16)}
    sym = {"h": {0: "N"}, "gi": {0: "N"}, "lens": {0: "N"}}
    nodes = [
        ("GatherElements", ["h", "gi"], ["g"], {"axis": 1}),
        ("ScatterND", ["h", "qi", "qu"], ["nd"], {}),
        ("GatherND", ["h", "qi"], ["gnd"], {}),
        ("Trilu", ["h"], ["tri"], {"upper": 0}),
        ("OneHot", ["gi", "depth", "vals"], ["oh"], {}),
        ("ReverseSequence", ["h", "lens"], ["rs"], {"time_axis": 1, "batch_axis": 0}),
        ("EyeLike", ["h"], ["eye"], {"k": -1}),
    ]
    outs = [o for _, _, os_, _ in nodes for o in os_]
    _check(_model(nodes, feeds, outs, inits=inits, sym=sym), feeds, rtol=2e-3, atol=2e-3)
    # no float16 kernels in onnxruntime for these: float32 results are the reference
    nodes = [("TopK", ["h", "k3"], ["tv", "ti"], {"largest": 0}), ("CumSum", ["h", "ax"], ["cs"], {}),
             ("Hardmax", ["h"], ["hm"], {}),
             ("ScatterElements", ["h", "si", "su"], ["s_add"], {"axis": 0, "reduction": "add"}),
             ("ScatterElements", ["h", "si", "su"], ["s_max"], {"axis": 0, "reduction": "max"}),
             ("ScatterND", ["h", "qi", "qu"], ["nd_mul"], {"reduction": "mul"})]
    outs = ["tv", "ti", "cs", "hm", "s_add", "s_max", "nd_mul"]
    ins = {"h": h, "si": feeds["si"], "su": feeds["su"], "qi": feeds["qi"], "qu": feeds["qu"]}
    inits = {"k3": inits["k3"], "ax": np.array(1, np.int64)}
    got = mi.compile(_model(nodes, ins, outs, inits=inits, sym={"h": {0: "N"}})).run(ins)
    ins32 = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in ins.items()}
    want = run_ort(_model(nodes, ins32, outs, inits=inits), ins32)
    for name, w in zip(outs, want):
        assert got[name].dtype == (np.int64 if name == "ti" else np.float16)
        np.testing.assert_allclose(got[name].astype(w.dtype), w, rtol=5e-3, atol=1e-2, err_msg=name)
