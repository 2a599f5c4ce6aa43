"""The ONNX -> JAX translator of the benchmark (ml4ep.bench.jax_onnx) against onnxruntime, the oracle:
whole models (tests/infer/hep_models.py, ml4ep.bench.zoo families) and single-operator graphs for the
trickier operators, always through ``jax.jit`` with JAX's default 32-bit types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import hep_models as H  # noqa: E402
from ml4ep.bench import zoo  # noqa: E402
from ml4ep.bench.jax_onnx import OPS, to_jax  # noqa: E402
from ml4ep.errors import Ml4epError, UnsupportedOperatorError  # noqa: E402

HEP = sorted(n for n in H.MODELS if n != "mlp_qdq")


def _ort(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if isinstance(model, bytes):
        data = model
    elif isinstance(model, onnx.ModelProto):
        data = model.SerializeToString()
    else:
        data = Path(model).read_bytes()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _check(model, feeds: dict[str, np.ndarray], rtol: float = 1e-4, label: str = "") -> None:
    """jax.jit of the translation == onnxruntime, within rtol relative to each output's scale."""
    assert not jax.config.jax_enable_x64
    fn, ins, outs = to_jax(model)
    got = jax.jit(fn)(*[feeds[n] for n in ins])
    ref = _ort(model, feeds)
    assert len(got) == len(ref) == len(outs)
    for name, g, r in zip(outs, got, ref):
        g = np.asarray(g)
        assert g.shape == r.shape, f"{label} {name}: shape {g.shape} != {r.shape}"
        if r.dtype == bool or np.issubdtype(r.dtype, np.integer):
            np.testing.assert_array_equal(g, r, err_msg=f"{label} {name}")
        else:
            scale = max(float(np.abs(r).max(initial=0.0)), 1e-6)
            np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * scale, err_msg=f"{label} {name}")


# ------------------------------------------------------------------------------------------------------
# Whole models
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HEP)
def test_hep_model(name, hep_exported):
    spec = H.MODELS[name]
    path = hep_exported(name)
    rng = np.random.default_rng(0)
    for batch, length in ((1, spec.lengths[0]), (6, spec.lengths[1])):
        _check(path, spec.inputs(rng, batch, length), label=f"{name} batch {batch} length {length}")


@pytest.mark.parametrize("name", sorted(zoo.FAMILIES))
def test_zoo_family(name):
    data = zoo.family_onnx(name)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.normal(size=(batch, *zoo.FAMILIES[name].input_shape)).astype(np.float32)
        _check(data, {"x": x}, label=f"{name} batch {batch}")


def test_translated_function_runs_without_jit():
    data = zoo.family_onnx("cnn1d")
    fn, ins, outs = to_jax(onnx.load_from_string(data))
    assert ins == ["x"] and outs == ["y"]
    x = np.random.default_rng(1).normal(size=(2, 2, 64)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(fn(x)[0]), _ort(data, {"x": x})[0], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# Single operators
# ------------------------------------------------------------------------------------------------------
_NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
            np.dtype(np.int32): TensorProto.INT32, np.dtype(bool): TensorProto.BOOL}


def _model(op: str, inputs: dict, consts: dict | None = None, attrs: dict | None = None, n_out: int = 1,
           opset: int = 17, order: list | None = None):
    """A one-node model: ``inputs`` are graph inputs (traced under jit), ``consts`` initializers (static).
    ``order`` gives the node's input names ("" for an omitted optional input)."""
    consts = consts or {}
    names = order if order is not None else [*inputs, *consts]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info(n, _NP2ONNX[a.dtype], a.shape) for n, a in inputs.items()],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


R = np.random.default_rng(42)


def f32(*shape):
    return R.normal(size=shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


CASES = {
    # convolution
    "conv2d_groups_dil_pads": ("Conv", {"x": f32(2, 4, 9, 8), "w": f32(6, 2, 3, 2), "b": f32(6)}, {},
                               dict(group=2, dilations=[2, 1], pads=[1, 0, 2, 1], strides=[2, 1])),
    "conv1d_same_upper": ("Conv", {"x": f32(1, 3, 10), "w": f32(4, 3, 4)}, {}, dict(auto_pad="SAME_UPPER", strides=[3])),
    "conv2d_same_lower": ("Conv", {"x": f32(1, 2, 7, 6), "w": f32(3, 2, 2, 3)}, {}, dict(auto_pad="SAME_LOWER")),
    "conv3d_bias": ("Conv", {"x": f32(2, 2, 5, 6, 4), "w": f32(3, 2, 3, 3, 2), "b": f32(3)}, {},
                    dict(pads=[1, 1, 0, 1, 0, 1])),
    "conv_depthwise": ("Conv", {"x": f32(1, 4, 6, 6), "w": f32(4, 1, 3, 3)}, {}, dict(group=4, strides=[2, 2])),
    "convT2d_groups_outpad": ("ConvTranspose", {"x": f32(2, 4, 5, 4), "w": f32(4, 3, 3, 2), "b": f32(6)}, {},
                              dict(group=2, strides=[2, 3], pads=[1, 0, 0, 1], output_padding=[1, 2])),
    "convT1d_dilated": ("ConvTranspose", {"x": f32(1, 3, 7), "w": f32(3, 2, 3)}, {},
                        dict(dilations=[2], strides=[2], pads=[1, 2])),
    "convT3d": ("ConvTranspose", {"x": f32(1, 2, 3, 4, 3), "w": f32(2, 3, 2, 2, 2)}, {}, dict(strides=[2, 2, 1])),
    "convT_output_shape": ("ConvTranspose", {"x": f32(1, 2, 4, 4), "w": f32(2, 2, 3, 3)}, {},
                           dict(strides=[2, 2], output_shape=[9, 8])),
    # pooling
    "maxpool2d_ceil_dil": ("MaxPool", {"x": f32(2, 3, 9, 8)}, {},
                           dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], dilations=[1, 2], ceil_mode=1)),
    "maxpool3d": ("MaxPool", {"x": f32(1, 2, 6, 5, 4)}, {}, dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2])),
    "maxpool1d_same": ("MaxPool", {"x": f32(1, 2, 11)}, {}, dict(kernel_shape=[3], strides=[2], auto_pad="SAME_UPPER")),
    "avgpool_pads_excl": ("AveragePool", {"x": f32(1, 2, 7, 7)}, {},
                          dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "avgpool_pads_incl": ("AveragePool", {"x": f32(1, 2, 7, 7)}, {},
                          dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2], count_include_pad=1)),
    "avgpool_ceil": ("AveragePool", {"x": f32(1, 2, 8, 7)}, {}, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    "avgpool1d_same_lower": ("AveragePool", {"x": f32(2, 3, 10)}, {},
                             dict(kernel_shape=[4], strides=[3], auto_pad="SAME_LOWER")),
    "globalmaxpool": ("GlobalMaxPool", {"x": f32(2, 3, 4, 5)}, {}, {}),
    "globalavgpool3d": ("GlobalAveragePool", {"x": f32(2, 3, 4, 5, 2)}, {}, {}),
    # top-k
    "topk_largest_ties": ("TopK", {"x": np.round(f32(3, 10)).astype(np.float32)}, {"k": i64(4)}, dict(axis=-1), 2),
    "topk_smallest_axis1": ("TopK", {"x": np.round(f32(2, 9, 3)).astype(np.float32)}, {"k": i64(3)},
                            dict(axis=1, largest=0), 2),
    "topk_largest_axis0": ("TopK", {"x": f32(6, 4)}, {"k": i64(2)}, dict(axis=0), 2),
    # gather / scatter
    "gather_neg": ("Gather", {"x": f32(5, 4)}, {"i": i64(-1, 0, 3, -2)}, dict(axis=0)),
    "gather_axis1_traced": ("Gather", {"x": f32(3, 6), "i": np.array([[0, -1], [5, 2]], np.int64)}, {}, dict(axis=1)),
    "gatherelements_neg": ("GatherElements", {"x": f32(3, 4), "i": np.array([[0, -1, 2], [1, 1, -4], [3, 0, 0]])},
                           {}, dict(axis=1)),
    "gathernd": ("GatherND", {"x": f32(3, 4, 5), "i": np.array([[0, 1], [2, -1], [1, 3]], np.int64)}, {}, {}),
    "gathernd_batch": ("GatherND", {"x": f32(2, 3, 4), "i": np.array([[[1], [2]], [[0], [-1]]], np.int64)}, {},
                       dict(batch_dims=1)),
    "scatternd_add": ("ScatterND", {"x": f32(4, 3), "i": np.array([[1], [3], [1]], np.int64), "u": f32(3, 3)}, {},
                      dict(reduction="add")),
    "scatternd_set": ("ScatterND", {"x": f32(4, 3, 2), "i": np.array([[1, 2], [3, 0]], np.int64), "u": f32(2, 2)},
                      {}, {}),
    # slicing, splitting, layout
    "slice_neg_step": ("Slice", {"x": f32(6, 7)}, {"s": i64(-1, 5), "e": i64(-100, 1), "a": i64(0, 1),
                                                    "t": i64(-2, -1)}, {}),
    "slice_clamp": ("Slice", {"x": f32(5, 6, 4)}, {"s": i64(1, -100), "e": i64(2**62, 3), "a": i64(2, 0),
                                                    "t": i64(1, 2)}, {}),
    "split_input": ("Split", {"x": f32(3, 10)}, {"s": i64(2, 5, 3)}, dict(axis=1), 3),
    "split_equal": ("Split", {"x": f32(6, 2)}, {}, {}, 3),
    "split_num_outputs": ("Split", {"x": f32(2, 7)}, {}, dict(axis=-1, num_outputs=3), 3, 18),
    "split_attr_opset11": ("Split", {"x": f32(5, 2)}, {}, dict(split=[1, 4]), 2, 11),
    "squeeze_unsqueeze": ("Unsqueeze", {"x": f32(3, 4)}, {"a": i64(-1, 0)}, {}),
    "squeeze": ("Squeeze", {"x": f32(1, 3, 1, 4)}, {"a": i64(-2)}, {}),
    "expand": ("Expand", {"x": f32(3, 1)}, {"s": i64(2, 1, 4)}, {}),
    "tile": ("Tile", {"x": f32(2, 3)}, {"r": i64(2, 3)}, {}),
    "flatten_axis2": ("Flatten", {"x": f32(2, 3, 4, 5)}, {}, dict(axis=2)),
    "reshape_zero_neg": ("Reshape", {"x": f32(2, 3, 4)}, {"s": i64(0, -1, 2)}, {}),
    "transpose_default": ("Transpose", {"x": f32(2, 3, 4)}, {}, {}),
    "trilu_lower": ("Trilu", {"x": f32(2, 4, 5)}, {"k": i64(-1)}, dict(upper=0)),
    # resize
    "resize_nearest_asym_floor": ("Resize", {"x": f32(1, 2, 3, 4)},
                                  {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 1.5], np.float32)},
                                  dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                       nearest_mode="floor")),
    "resize_nearest_half_pixel": ("Resize", {"x": f32(1, 1, 5, 5)},
                                  {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 0.6], np.float32)},
                                  dict(mode="nearest")),
    "resize_linear_half_pixel": ("Resize", {"x": f32(2, 2, 4, 3)},
                                 {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 3], np.float32)},
                                 dict(mode="linear")),
    "resize_linear_align_sizes": ("Resize", {"x": f32(1, 2, 4, 5)},
                                  {"roi": np.zeros(0, np.float32), "sc": np.zeros(0, np.float32),
                                   "sz": i64(1, 2, 7, 3)},
                                  dict(mode="linear", coordinate_transformation_mode="align_corners")),
    "resize_linear_pytorch_1d": ("Resize", {"x": f32(2, 3, 6)},
                                 {"roi": np.zeros(0, np.float32), "sc": np.zeros(0, np.float32), "sz": i64(2, 3, 11)},
                                 dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
    # einsum
    "einsum_bmm": ("Einsum", {"a": f32(2, 3, 4), "b": f32(2, 4, 5)}, {}, dict(equation="bij,bjk->bik")),
    "einsum_attention": ("Einsum", {"a": f32(2, 2, 3, 4), "b": f32(2, 2, 5, 4)}, {}, dict(equation="bhqd,bhkd->bhqk")),
    "einsum_trace_sum": ("Einsum", {"a": f32(4, 4, 3)}, {}, dict(equation="iij->j")),
    # pad
    "pad_constant": ("Pad", {"x": f32(2, 3)}, {"p": i64(1, 0, 2, 3), "v": np.array(1.5, np.float32)}, {}),
    "pad_reflect": ("Pad", {"x": f32(1, 2, 4, 5)}, {"p": i64(0, 0, 2, 1, 0, 0, 1, 3)}, dict(mode="reflect")),
    "pad_edge_negative": ("Pad", {"x": f32(4, 5)}, {"p": i64(2, -1, -1, 3)}, dict(mode="edge")),
    "pad_wrap_axes": ("Pad", {"x": f32(3, 4)}, {"p": i64(1, 2), "v": np.array(0, np.float32), "a": i64(-1)},
                      dict(mode="wrap"), 1, 19),
    # cumsum
    "cumsum": ("CumSum", {"x": f32(3, 5)}, {"a": i64(1)}, {}),
    "cumsum_exclusive": ("CumSum", {"x": f32(3, 5)}, {"a": i64(1)}, dict(exclusive=1)),
    "cumsum_reverse": ("CumSum", {"x": f32(4, 3)}, {"a": i64(0)}, dict(reverse=1)),
    "cumsum_exclusive_reverse": ("CumSum", {"x": f32(2, 6)}, {"a": i64(-1)}, dict(exclusive=1, reverse=1)),
    # normalisation, softmax, reductions
    "layernorm_axis1": ("LayerNormalization", {"x": f32(2, 3, 4), "s": f32(3, 4), "b": f32(3, 4)}, {},
                        dict(axis=1, epsilon=1e-3)),
    "instancenorm": ("InstanceNormalization", {"x": f32(2, 3, 5, 4), "s": f32(3), "b": f32(3)}, {}, {}),
    "batchnorm": ("BatchNormalization", {"x": f32(2, 3, 4)},
                  {"s": f32(3), "b": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.5}, {}),
    "softmax_legacy_axis": ("Softmax", {"x": f32(2, 3, 4)}, {}, dict(axis=1), 1, 11),
    "logsoftmax_axis0": ("LogSoftmax", {"x": f32(3, 4)}, {}, dict(axis=0)),
    "reducesum_axes_input": ("ReduceSum", {"x": f32(2, 3, 4)}, {"a": i64(0, -1)}, dict(keepdims=0)),
    "reducemean_attr": ("ReduceMean", {"x": f32(2, 3, 4)}, {}, dict(axes=[1])),
    "reducemax_18": ("ReduceMax", {"x": f32(2, 3, 4)}, {"a": i64(1)}, {}, 1, 18),
    "reducemin_all": ("ReduceMin", {"x": f32(2, 3, 4)}, {}, dict(keepdims=0), 1, 18),
    "reduceprod_noop": ("ReduceProd", {"x": f32(2, 3)}, {}, dict(noop_with_empty_axes=1), 1, 18),
    "reducel2": ("ReduceL2", {"x": f32(2, 3, 4)}, {"a": i64(2)}, {}, 1, 18),
    "argmax_last": ("ArgMax", {"x": np.round(f32(3, 6))}, {}, dict(axis=1, select_last_index=1)),
    "argmin_nokeep": ("ArgMin", {"x": f32(4, 5)}, {}, dict(axis=0, keepdims=0)),
    # elementwise odds and ends
    "gelu_tanh": ("Gelu", {"x": f32(3, 4)}, {}, dict(approximate="tanh"), 1, 20),
    "gelu_erf": ("Gelu", {"x": f32(3, 4)}, {}, {}, 1, 20),
    "hardsigmoid": ("HardSigmoid", {"x": f32(10) * 4}, {}, dict(alpha=0.3, beta=0.4)),
    "clip_inputs": ("Clip", {"x": f32(3, 4)}, {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, {}),
    "div_int_trunc": ("Div", {"a": np.array([7, -7, 7, -7, 6], np.int32), "b": np.array([2, 2, -2, -2, 3], np.int32)},
                      {}, {}),
    "mod_python": ("Mod", {"a": np.array([7, -7, 7, -7], np.int32), "b": np.array([3, 3, -3, -3], np.int32)}, {}, {}),
    "mod_fmod": ("Mod", {"a": f32(6), "b": np.abs(f32(6)) + 0.5}, {}, dict(fmod=1)),
    "pow_int_exp": ("Pow", {"a": np.abs(f32(5)) + 0.1}, {"b": np.array(3, np.int64)}, {}),
    "cast_int64": ("Cast", {"x": f32(5) * 10}, {}, dict(to=TensorProto.INT64)),
    "where_less": ("Where", {"c": R.normal(size=(3, 4)) > 0, "a": f32(3, 4), "b": f32(1, 4)}, {}, {}),
    "elu_selu": ("Elu", {"x": f32(8)}, {}, dict(alpha=0.7)),
    "scatter_none_dup_free": ("ScatterElements", {"x": f32(3, 4), "i": np.array([[3, 0], [1, 2]], np.int64),
                                                  "u": f32(2, 2)}, {}, dict(axis=1)),
}
for _red in ("add", "mul", "max", "min"):
    CASES[f"scatterelements_{_red}"] = (
        "ScatterElements", {"x": f32(4, 3), "i": np.array([[1, 0, 3], [1, 2, -1], [0, 0, 3]], np.int64),
                            "u": f32(3, 3)}, {}, dict(axis=0, reduction=_red), 1, 18)


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op(case):
    op, inputs, consts, attrs, *rest = CASES[case]
    n_out = rest[0] if rest else 1
    opset = rest[1] if len(rest) > 1 else 17
    _check(_model(op, inputs, consts, attrs, n_out, opset), inputs, label=case)


def _rnn_case(op: str, gates: int, direction: str, layout: int, extra: dict) -> tuple:
    dirs, hid, inp, seq, batch = (2 if direction == "bidirectional" else 1), 4, 3, 5, 2
    x = f32(batch, seq, inp) if layout else f32(seq, batch, inp)
    consts = {"W": f32(dirs, gates * hid, inp) * 0.5, "R": f32(dirs, gates * hid, hid) * 0.5,
              "B": f32(dirs, 2 * gates * hid) * 0.5}
    init = f32(dirs, batch, hid) if not layout else f32(batch, dirs, hid)
    inputs = {"x": x, "h0": init}
    order = ["x", "W", "R", "B", "", "h0"]
    if op == "LSTM":
        inputs["c0"] = f32(*init.shape)
        consts["P"] = f32(dirs, 3 * hid) * 0.5
        order += ["c0", "P"]
    attrs = dict(hidden_size=hid, direction=direction, layout=layout, **extra)
    return _model(op, inputs, consts, attrs, 3 if op == "LSTM" else 2, 17, order), inputs


@pytest.mark.parametrize("op,direction,layout,extra", [
    ("LSTM", "bidirectional", 0, {}),
    ("LSTM", "reverse", 0, {"clip": 0.8}),
    ("GRU", "bidirectional", 0, {"linear_before_reset": 1}),
    ("GRU", "forward", 0, {}),
    ("RNN", "bidirectional", 0, {"activations": ["Relu", "Tanh"]}),
])
def test_recurrent(op, direction, layout, extra):
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    model, inputs = _rnn_case(op, gates, direction, layout, extra)
    _check(model, inputs, label=f"{op} {direction} layout {layout}")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_recurrent_batch_first_layout(op):
    """layout=1 (onnxruntime has no kernel for it): the same as layout=0 on transposed tensors."""
    gates = {"LSTM": 4, "GRU": 3}[op]
    m0, in0 = _rnn_case(op, gates, "bidirectional", 0, {})
    m1 = onnx.ModelProto()
    m1.CopyFrom(m0)
    next(a for a in m1.graph.node[0].attribute if a.name == "layout").i = 1
    in1 = {k: np.swapaxes(v, 0, 1) for k, v in in0.items()}
    f0, names, _ = to_jax(m0)
    f1, _, _ = to_jax(m1)
    r0 = jax.jit(f0)(*[in0[n] for n in names])
    r1 = jax.jit(f1)(*[in1[n] for n in names])
    np.testing.assert_allclose(np.asarray(r1[0]), np.transpose(np.asarray(r0[0]), (2, 0, 1, 3)), rtol=1e-5, atol=1e-6)
    for a, b in zip(r0[1:], r1[1:]):
        np.testing.assert_allclose(np.swapaxes(np.asarray(b), 0, 1), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_static_shape_chain_under_jit():
    """Shape -> Gather -> Concat -> Reshape and Range/ConstantOfShape stay NumPy inside jit."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Shape", ["flat"], ["fs"], start=1),
        helper.make_node("Squeeze", ["fs"], ["m"]),
        helper.make_node("Range", ["zero", "m", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("ConstantOfShape", ["fs"], ["c"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
        helper.make_node("Mul", ["rf", "c"], ["w"]),
        helper.make_node("Add", ["flat", "w"], ["y"]),
    ]
    consts = [numpy_helper.from_array(v, n) for n, v in (
        ("zero", np.array(0, np.int64)), ("zero1", i64(0)), ("minus1", i64(-1)), ("one", np.array(1, np.int64)))]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = f32(2, 3, 4)
    _check(model, {"x": x})


def test_unsupported_operators_listed_at_once():
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"], name="nz"),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Unique", ["r"], ["u"], name="uniq"),
        helper.make_node("FancyOp", ["r"], ["f"], name="fancy"),
        helper.make_node("Resize", ["r", "", "sc"], ["rs"], name="cubic", mode="cubic"),
        helper.make_node("MyOp", ["x"], ["c"], name="custom", domain="my.domain"),
    ]
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("f", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones(2, np.float32), "sc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)])
    with pytest.raises(UnsupportedOperatorError) as info:
        to_jax(model)
    assert isinstance(info.value, Ml4epError)
    ops = [p[1] for p in info.value.problems]
    assert ops == ["NonZero", "Unique", "FancyOp", "Resize", "my.domain.MyOp"]
    for word in ("NonZero", "Unique", "FancyOp", "cubic", "MyOp", "jax.jit"):
        assert word in str(info.value)


def test_required_ops_are_registered():
    required = """Gemm MatMul Add Sub Mul Div Pow Sqrt Exp Log Neg Abs Reciprocal Relu LeakyRelu Sigmoid Tanh Erf
    Softplus Gelu HardSigmoid Elu Cos Sin Softmax LogSoftmax LayerNormalization BatchNormalization
    InstanceNormalization ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 Conv ConvTranspose MaxPool
    AveragePool GlobalAveragePool GlobalMaxPool Flatten Reshape Transpose Concat Split Slice Squeeze Unsqueeze Gather
    GatherElements GatherND ScatterElements ScatterND TopK Expand Tile Shape Size ConstantOfShape Constant Cast
    CastLike Where Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor Range Identity Min Max Sum Mean Clip
    Einsum Pad ArgMax ArgMin Dropout Resize Trilu CumSum Floor Ceil Sign Mod IsNaN LSTM GRU""".split()
    assert not [op for op in required if op not in OPS]
    assert "NonZero" not in OPS
    assert all(f.__name__ == op for op, f in OPS.items())
