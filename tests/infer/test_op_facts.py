"""Operator facts (ops/__init__.py): what each op's ``register(...)`` call states for the passes (how it treats
the batch axis, whether its output is a view of its input, which inputs are shapes), and that the passes act on
them: batch chunking, memory aliasing."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import ml4ep.infer as mi
from ml4ep.infer import ops as O
from ml4ep.infer.ops import batch_rules as BR
from ml4ep.infer.ops import gemm, indexing, normalization, reduce, shape_ops, softmax
from ml4ep.infer.passes import batching


def _op(name: str) -> O.OpDef:
    opdef = O.get(name)
    assert opdef is not None, name
    return opdef


@pytest.mark.parametrize("name, rule", [
    ("Add", BR.broadcast), ("Relu", BR.broadcast), ("Where", BR.broadcast), ("Cast", BR.broadcast),
    ("Tanh", BR.broadcast), ("Identity", BR.broadcast), ("Expand", BR.broadcast_data),
    ("Conv", BR.nchw), ("MaxPool", BR.nchw), ("BatchNormalization", BR.nchw), ("LRN", BR.nchw),
    ("Reshape", BR.reshape), ("Flatten", BR.reshape), ("Squeeze", BR.reshape), ("Unsqueeze", BR.reshape),
    ("ConstantOfShape", BR.constant),
    ("Softmax", softmax._batch_softmax), ("LogSoftmax", softmax._batch_softmax), ("Hardmax", softmax._batch_softmax),
    ("ReduceSum", reduce._batch_reduce), ("ReduceLogSumExp", reduce._batch_reduce),
    ("LayerNormalization", normalization._batch_ln), ("MatMul", gemm._batch_matmul), ("Gemm", gemm._batch_gemm),
    ("Gather", shape_ops._batch_gather), ("Slice", shape_ops._batch_slice), ("Concat", shape_ops._batch_concat),
    ("Split", shape_ops._batch_split), ("Transpose", shape_ops._batch_transpose),
    ("TopK", indexing._batch_topk), ("GatherElements", indexing._batch_gather_elements),
    ("ScatterElements", indexing._batch_scatter_elements),
])
def test_batch_rules(name, rule):
    assert _op(name).batch is rule


@pytest.mark.parametrize("name, view", [
    ("Reshape", "reshape"), ("Flatten", "reshape"), ("Squeeze", "reshape"), ("Unsqueeze", "reshape"),
    ("Identity", "same"), ("Dropout", "same"),
    ("Add", None), ("Transpose", None), ("Expand", None), ("Conv", None),
])
def test_views(name, view):
    assert _op(name).view == view


def test_only_the_listed_ops_are_views():
    views = {k: v.view for k, v in O.OPS.items() if v.view is not None}
    assert views == {"Reshape": "reshape", "Flatten": "reshape", "Squeeze": "reshape", "Unsqueeze": "reshape",
                     "Identity": "same", "Dropout": "same"}


@pytest.mark.parametrize("name, inputs", [
    ("Slice", {1, 2, 3, 4}), ("Expand", {1}), ("TopK", {1}), ("Split", {1}), ("ConstantOfShape", {0}),
    ("Reshape", {1}), ("Squeeze", {1}), ("Unsqueeze", {1}),
    # compile-time inputs that are values or axes, not shapes: the batch size there stops chunking
    ("Trilu", set()), ("CumSum", set()), ("ReduceSum", set()), ("Range", set()),
    ("Add", set()),
])
def test_shape_inputs(name, inputs):
    assert set(_op(name).shape_inputs) == inputs


def test_shape_inputs_default_to_const_inputs():
    opdef = O.OpDef("Test", infer=lambda n, g: [], emit=None, const_inputs=(1, 2))
    assert opdef.shape_inputs == (1, 2) and opdef.batch is None and opdef.view is None
    assert O.OpDef("Test", infer=lambda n, g: [], emit=None, const_inputs=(1,), shape_inputs=()).shape_inputs == ()
    with pytest.raises(ValueError):
        O.OpDef("Test", infer=lambda n, g: [], emit=None, view="alias")


# Operators without a batch rule: a model with one of them is never run in batch chunks. An operator added
# without deciding lands here (the test fails until it is listed, or given a rule).
NOT_BATCH_SEPARABLE = {
    # control flow, data-dependent sizes, values of the batch size
    "If", "Loop", "Scan", "NonZero", "Unique", "Compress", "NonMaxSuppression", "Shape", "Size", "SymConst",
    "Constant", "Range", "EyeLike", "MelWeightMatrix", "BlackmanWindow", "HammingWindow", "HannWindow",
    # not (yet) given a rule
    "AffineGrid", "ArgMax", "ArgMin", "Attention", "BitCast", "Col2Im", "ConvInteger", "CumProd", "CumSum", "DFT",
    "DeformConv", "DequantizeLinear", "Det", "Dropout", "DynamicQuantizeLinear", "Einsum", "GRU", "GatherND",
    "GridSample", "LSTM", "LpNormalization", "MatMulInteger", "MaxUnpool", "OneHot", "Pad", "QLinearConv",
    "QLinearMatMul", "QuantizeLinear", "RMSNormalization", "RNN", "Resize", "ReverseSequence", "RoiAlign",
    "RotaryEmbedding", "STFT", "Scatter", "ScatterND", "Swish", "Tile", "Trilu",
}


def test_ops_with_the_default_batch_fact():
    O.get("Add")  # loads the families
    assert {k for k, v in O.OPS.items() if v.batch is None} == NOT_BATCH_SEPARABLE


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "facts", inputs, outputs, list(inits))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _separable_model():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        # the target shape (N, 2, 2) computed from x's shape: the batch size in a shape input of Reshape
        helper.make_node("Shape", ["x"], ["n"], end=1),
        helper.make_node("Concat", ["n", "two_two"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["rs"]),
        helper.make_node("Softmax", ["rs"], ["s"], axis=-1),
        helper.make_node("ReduceSum", ["s", "axes"], ["y"], keepdims=0),
    ]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
             helper.make_tensor("b", TensorProto.FLOAT, b.shape, b),
             helper.make_tensor("two_two", TensorProto.INT64, [2], [2, 2]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)


def test_separable_graph_is_chunked():
    """MatMul, Add, Relu, Reshape, Softmax and ReduceSum keep samples apart: compiled to run one sample per chunk,
    the model agrees with the ONNX reference at every batch size; the Reshape shares its input's storage."""
    model = _separable_model()
    g, plan = mi.lower(model)
    layout = batching.batch_layout(g)
    assert layout is not None and layout.symbol == "N" and layout.batched_inputs == (True,)
    reshape = next(n for n in g.nodes if n.op_type == "Reshape")
    assert plan.storage_of[reshape.inputs[0]] is plan.storage_of[reshape.outputs[0]]

    compiled = mi.compile(model, cache=False, extra_flags=["-DML4EP_CHUNK_BYTES=1"])
    assert compiled.meta["batch_chunks"] == "N"
    ref = ReferenceEvaluator(model)
    rng = np.random.default_rng(0)
    for batch in (1, 3, 7):
        x = rng.standard_normal((batch, 8)).astype(np.float32)
        np.testing.assert_allclose(compiled(x), ref.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["softmax over the batch", "op without a batch rule"])
def test_inseparable_graph_is_not_chunked(case):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    inits = []
    if case == "softmax over the batch":
        nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=0)]
    else:  # CumSum along the features would keep samples apart, but its registration states no batch rule
        nodes = [helper.make_node("CumSum", ["x", "ax"], ["y"])]
        inits = [helper.make_tensor("ax", TensorProto.INT64, [], [1])]
    g, _ = mi.lower(_model(nodes, [x], [y], inits))
    assert batching.batch_layout(g) is None


def test_batch_size_as_data_is_not_chunked():
    """x * N: the batch size reaches Mul as data (a SymConst node writes it at run time, where in a chunk it
    would be the chunk's size), so the model runs unchunked and multiplies by the whole batch size."""
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 4])
    nodes = [helper.make_node("Shape", ["x"], ["s"], end=1), helper.make_node("Mul", ["x", "s"], ["y"])]
    model = _model(nodes, [x], [y])
    g, _ = mi.lower(model)
    assert batching.batch_layout(g) is None
    compiled = mi.compile(model, cache=False, extra_flags=["-DML4EP_CHUNK_BYTES=1"])
    assert compiled.meta["batch_chunks"] is None
    np.testing.assert_array_equal(compiled(np.ones((3, 4), np.int64)), np.full((3, 4), 3, np.int64))
