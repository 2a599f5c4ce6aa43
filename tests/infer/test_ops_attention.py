"""Attention, RotaryEmbedding and RMSNormalization against onnxruntime (and the ONNX reference where the two
differ on purpose). Several variants share one model so that one compilation checks them all."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import ml4ep.infer as mi
from ml4ep.errors import ShapeError, UnsupportedOperatorError
from ml4ep.infer import ops as O
from ml4ep.infer.graph import Graph, Node
from opcheck import finish_model, rand, run_ort

FLOAT = TensorProto.FLOAT

pytestmark = pytest.mark.usefixtures("strict_warnings")


def _model(inputs: dict, nodes: list, opset: int, sym: dict | None = None) -> onnx.ModelProto:
    """Graph inputs ``{name: array}`` (``sym`` = {name: {axis: symbol}}), nodes ``(op, ins, outs, attrs)``."""
    gin = []
    for name, x in inputs.items():
        shape: list = list(np.shape(x))
        for ax, s in (sym or {}).get(name, {}).items():
            shape[ax] = s
        gin.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), shape))
    made, outs = [], []
    for k, (op, ins, o, attrs) in enumerate(nodes):
        made.append(helper.make_node(op, ins, o, name=f"{op.lower()}_{k}", **attrs))
        elem = helper.np_dtype_to_tensor_dtype(inputs[ins[0]].dtype)  # every output has the type of input 0
        outs += [helper.make_tensor_value_info(n, elem, None) for n in o if n]
    graph = helper.make_graph(made, "m", gin, outs)
    return finish_model(graph, opset)


def _check(model: onnx.ModelProto, feeds: dict, *, reference: bool = False, rtol=2e-5, atol=2e-5, **kw):
    want = ReferenceEvaluator(model).run(None, feeds) if reference else run_ort(model, feeds)
    got = mi.compile(model, **kw).run(feeds)
    for out, w in zip(model.graph.output, want):
        g = got[out.name]
        assert g.shape == w.shape and g.dtype == w.dtype, out.name
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=out.name)
    return got


# ------------------------------------------------------------------------------------------------------
# Attention


def test_attention_4d_variants_symbolic_batch():
    # GQA (4 query heads on 2 kv heads), value head size != key head size, batch "N"
    n = 3
    x = {
        "q": rand(n, 4, 6, 16), "k": rand(n, 2, 9, 16), "v": rand(n, 2, 9, 8),
        "fmask": rand(6, 9), "bmask": rand(4, 6, 9, dtype=np.bool_),
        "pk": rand(n, 2, 5, 16), "pv": rand(n, 2, 5, 8), "pmask": rand(n, 1, 6, 14),
    }
    x["bmask"][:, :, 0] = True  # every row keeps a key (onnxruntime differs on fully masked rows)
    qkv = ["q", "k", "v"]
    nodes = [
        ("Attention", qkv, ["y_plain"], {}),
        ("Attention", qkv, ["y_causal"], {"is_causal": 1, "scale": 0.2}),
        ("Attention", qkv + ["fmask"], ["y_fmask", "", "", "qk_bias"], {"softcap": 3.0, "qk_matmul_output_mode": 2}),
        ("Attention", qkv + ["bmask"], ["y_bmask", "", "", "qk_soft"], {"qk_matmul_output_mode": 3}),
        ("Attention", qkv, ["y_raw", "", "", "qk_raw"], {"softcap": 2.0}),  # mode 0: before the softcap
        ("Attention", qkv, ["y_cap", "", "", "qk_cap"], {"softcap": 2.0, "qk_matmul_output_mode": 1}),
        ("Attention", qkv + ["pmask", "pk", "pv"], ["y_past", "present_k", "present_v"], {"is_causal": 1}),
        ("Attention", qkv, ["y_pres", "pres_k", "pres_v"], {}),
    ]
    sym = {k: {0: "N"} for k in ("q", "k", "v", "pk", "pv", "pmask")}
    _check(_model(x, nodes, 23, sym), x)


def test_attention_3d_heads_and_nonpad_kv():
    x = {"q": rand(2, 5, 32), "k": rand(2, 7, 16), "v": rand(2, 7, 24),
         "nonpad": np.array([7, 4], dtype=np.int64)}
    h = {"q_num_heads": 4, "kv_num_heads": 2}
    nodes = [
        ("Attention", ["q", "k", "v"], ["y"], h),
        ("Attention", ["q", "k", "v"], ["y_causal"], {**h, "is_causal": 1}),
        ("Attention", ["q", "k", "v", "", "", "", "nonpad"], ["y_nonpad"], h),
    ]
    _check(_model(x, nodes, 24, {"q": {1: "S"}}), x)


@pytest.mark.parametrize("flags", [None, ["-DML4EP_NO_BLAS"]])
def test_attention_long_sequences(flags):
    # long enough for the BLAS path (a partial block of query rows); the loop path without BLAS
    x = {"q": rand(2, 4, 300, 32), "k": rand(2, 2, 150, 32), "v": rand(2, 2, 150, 24),
         "bias": rand(2, 1, 300, 190), "pk": rand(2, 2, 40, 32), "pv": rand(2, 2, 40, 24),
         "q3": rand(1, 100, 128), "kv3": rand(1, 100, 128)}
    nodes = [
        ("Attention", ["q", "k", "v", "bias", "pk", "pv"], ["y", "present_k", "present_v"], {}),
        ("Attention", ["q", "k", "v"], ["y_p", "", "", "p"], {"qk_matmul_output_mode": 3}),
        ("Attention", ["q3", "kv3", "kv3"], ["y3"], {"q_num_heads": 2, "kv_num_heads": 2, "is_causal": 1}),
    ]
    _check(_model(x, nodes, 23), x, rtol=1e-4, atol=1e-5, extra_flags=flags)


def test_attention_fully_masked_rows_and_window():
    # rows with no allowed key give zeros (the ONNX specification; the reference implements it); windows
    # are opset 25
    x = {"q": rand(1, 2, 4, 8), "k": rand(1, 2, 6, 8), "v": rand(1, 2, 6, 8),
         "bmask": np.array([[True] * 6, [False] * 6, [True, False] * 3, [False] * 5 + [True]]),
         "fmask": np.where(rand(4, 6) > 0, 0.0, -np.inf).astype(np.float32),
         "pk": rand(1, 2, 3, 8), "pv": rand(1, 2, 3, 8)}
    x["fmask"][1] = -np.inf
    nodes = [
        ("Attention", ["q", "k", "v", "bmask"], ["y_b", "k_b", "v_b", "p_b"], {"qk_matmul_output_mode": 3}),
        ("Attention", ["q", "k", "v", "fmask"], ["y_f"], {"softcap": 0.5}),
        ("Attention", ["q", "k", "v"], ["y_w"], {"left_window_size": 1, "right_window_size": 2}),
        ("Attention", ["q", "k", "v", "bmask"], ["y_wc"], {"is_causal": 1, "left_window_size": 1}),
        # a past without present outputs (onnxruntime refuses it): the concatenation goes to scratch
        ("Attention", ["q", "k", "v", "", "pk", "pv"], ["y_past"], {"is_causal": 1}),
    ]
    # (no empty output names: the reference evaluator would feed them to the omitted inputs)
    got = _check(_model(x, nodes, 25), x, reference=True)
    assert np.all(got["y_b"][:, :, 1] == 0) and np.all(got["p_b"][:, :, 1] == 0)


@pytest.mark.slow  # the dynamo export takes ~5-10 s
def test_attention_from_torch_sdpa():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    import logging
    import warnings

    class M(torch.nn.Module):
        def forward(self, q, k, v, m):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)

    q, k, v, m = (torch.from_numpy(rand(*s)) for s in ((2, 4, 10, 16), (2, 4, 12, 16), (2, 4, 12, 16),
                                                        (2, 1, 10, 12)))
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(M(), (q, k, v, m), None, opset_version=23, dynamo=True,
                                     input_names=["q", "k", "v", "m"], output_names=["y"],
                                     dynamic_shapes={n: {0: "N"} for n in "qkvm"})
    finally:
        logging.disable(logging.NOTSET)
    model = prog.model_proto
    assert [n.op_type for n in model.graph.node] == ["Attention"]
    got = mi.compile(model).run({"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "m": m.numpy()})["y"]
    np.testing.assert_allclose(got, M()(q, k, v, m).numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# RotaryEmbedding


def test_rotary_embedding_variants():
    n = 3
    x = {"x4": rand(n, 4, 5, 8), "x3": rand(n, 5, 4 * 8), "cos": rand(20, 4), "sin": rand(20, 4),
         "cos2": rand(20, 2), "sin2": rand(20, 2), "cosb": rand(n, 5, 4), "sinb": rand(n, 5, 4),
         "pos": rand(n, 5, dtype=np.int64, low=0, high=20)}
    nodes = [
        ("RotaryEmbedding", ["x4", "cos", "sin", "pos"], ["y"], {}),
        ("RotaryEmbedding", ["x4", "cos", "sin", "pos"], ["y_int"], {"interleaved": 1}),
        ("RotaryEmbedding", ["x4", "cos2", "sin2", "pos"], ["y_rd"], {"rotary_embedding_dim": 4}),
        ("RotaryEmbedding", ["x4", "cos2", "sin2", "pos"], ["y_rdi"], {"rotary_embedding_dim": 4, "interleaved": 1}),
        ("RotaryEmbedding", ["x3", "cos", "sin", "pos"], ["y3"], {"num_heads": 4}),
        ("RotaryEmbedding", ["x4", "cosb", "sinb"], ["y_nopos"], {}),
    ]
    sym = {k: {0: "N"} for k in ("x4", "x3", "cosb", "sinb", "pos")}
    model = _model(x, nodes, 23, sym)
    _check(model, x)
    bad = dict(x, pos=np.full((n, 5), 20, dtype=np.int64))
    with pytest.raises(Exception, match="rotaryembedding_0"):
        mi.compile(model).run(bad)


# ------------------------------------------------------------------------------------------------------
# RMSNormalization


def test_rms_normalization_variants():
    x = {"x": rand(3, 4, 5, low=-3.0, high=5.0), "w": rand(5), "w2": rand(4, 5), "wb": rand(1, 5)}
    nodes = [
        ("RMSNormalization", ["x", "w"], ["y"], {}),
        ("RMSNormalization", ["x", "w2"], ["y1"], {"axis": 1, "epsilon": 0.1}),
        ("RMSNormalization", ["x", "wb"], ["y_bcast"], {"axis": -2}),
    ]
    model = _model(x, nodes, 23, {"x": {0: "N"}})
    w_const = helper.make_tensor("wc", FLOAT, [4, 5], rand(4, 5).reshape(-1).tolist())
    model.graph.initializer.append(w_const)
    model.graph.node.append(helper.make_node("RMSNormalization", ["x", "wc"], ["y_const"], name="rms_const",
                                             axis=1))
    model.graph.output.append(helper.make_tensor_value_info("y_const", FLOAT, None))
    _check(model, x, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# errors


def _infer_error(op: str, inputs: dict, attrs: dict) -> str:
    """The message of the ShapeError the op's own shape inference raises (the compiler reports it, or, where
    it replaces a refused node by the operator's ONNX function, the function's first failing node)."""
    g = Graph("g", 23)
    for name, x in inputs.items():
        g.add_tensor(name, x.dtype, x.shape)
    node = Node(op, f"{op.lower()}_0", list(inputs), ["y"], attrs)
    with pytest.raises(ShapeError) as exc:
        O.get(op).infer(node, g)
    return str(exc.value)


@pytest.mark.parametrize("op,inputs,attrs,match", [
    ("Attention", {"q": rand(1, 2, 3, 8), "k": rand(1, 2, 4, 6), "v": rand(1, 2, 4, 6)}, {}, "head sizes differ"),
    ("Attention", {"q": rand(1, 3, 3, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}, {}, "multiple of kv heads"),
    ("Attention", {"q": rand(1, 3, 24), "k": rand(1, 4, 24), "v": rand(1, 4, 24)}, {}, "q_num_heads"),
    ("Attention", {"q": rand(1, 2, 3, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 5, 8)}, {}, "sequence lengths differ"),
    ("Attention", {"q": rand(1, 2, 3, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8), "m": rand(3, 5)}, {},
     "exceeds the key length"),
    ("RotaryEmbedding", {"x": rand(1, 3, 16), "c": rand(8, 4), "s": rand(8, 4)}, {}, "num_heads"),
    ("RotaryEmbedding", {"x": rand(1, 2, 3, 8), "c": rand(8, 3), "s": rand(8, 3), "p": rand(1, 3, dtype=np.int64)},
     {}, "expected \\(max_position"),
    ("RMSNormalization", {"x": rand(2, 3, 4), "w": rand(3)}, {}, "does not broadcast"),
])
def test_bad_shapes_give_clear_errors(op, inputs, attrs, match):
    msg = _infer_error(op, inputs, attrs)
    assert f"node '{op.lower()}_0' ({op})" in msg
    assert re.search(match, msg), msg


def test_bad_shapes_fail_compilation_naming_the_node():
    x = {"q": rand(1, 3, 3, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}
    with pytest.raises(UnsupportedOperatorError, match="attention_0"):
        mi.compile(_model(x, [("Attention", list(x), ["y"], {})], 23))
