"""Conv and ConvTranspose against onnxruntime.

1-D/2-D/3-D, groups (depthwise included), strides, dilations, asymmetric pads, every auto_pad, output_padding
and output_shape, with and without bias, batch 1 and more, symbolic batch, run-time weights, fused
activations. To keep the file fast, most cases are compiled several to a model (one node each, independent
inputs and outputs) and every output is compared with onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ml4ep.infer as mi
from ml4ep.infer.ops import conv as C
from opcheck import OPSET, check_op, rand, run_ort

TOL = {"rtol": 1e-4, "atol": 1e-4}


def multi_model(cases, symbolic_batch: bool = False,
                activation: str | None = None) -> tuple[onnx.ModelProto, dict]:
    """One node per case ``(op, [x, w, b], attrs)``, each with its own inputs; w and b are initializers.

    ``activation`` appends that op after every node (fusion target). Returns the model and the feeds.
    """
    nodes, inputs, inits, outputs, feeds = [], [], [], [], {}
    for k, (op, (x, w, b), attrs) in enumerate(cases):
        shape = list(x.shape)
        if symbolic_batch:
            shape[0] = "N"
        inputs.append(helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, shape))
        feeds[f"x{k}"] = x
        inits.append(numpy_helper.from_array(w, f"w{k}"))
        names = [f"x{k}", f"w{k}"]
        if b is not None:
            inits.append(numpy_helper.from_array(b, f"b{k}"))
            names.append(f"b{k}")
        out = f"y{k}"
        if activation:
            nodes.append(helper.make_node(op, names, [f"t{k}"], name=f"{op.lower()}{k}", **attrs))
            nodes.append(helper.make_node(activation, [f"t{k}"], [out], name=f"act{k}"))
        else:
            nodes.append(helper.make_node(op, names, [out], name=f"{op.lower()}{k}", **attrs))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "convs", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model, feeds


def check_cases(cases, symbolic_batch: bool = False, activation: str | None = None) -> mi.CompiledModel:
    model, feeds = multi_model(cases, symbolic_batch, activation)
    expected = run_ort(model, feeds)
    got = mi.compile(model).run(feeds)
    for k, e in enumerate(expected):
        op, (x, w, b), attrs = cases[k]
        what = f"case {k}: {op} x{x.shape} w{w.shape} bias={b is not None} {attrs}"
        assert got[f"y{k}"].shape == e.shape, f"{what}: shape {got[f'y{k}'].shape} != onnxruntime {e.shape}"
        np.testing.assert_allclose(got[f"y{k}"], e, err_msg=what, **TOL)
    return model


def conv(xshape, wshape, bias=True, **attrs):
    x, w = rand(*xshape), rand(*wshape, low=-1, high=1)
    return ("Conv", (x, w, rand(wshape[0]) if bias else None), attrs)


def convt(xshape, wshape, bias=True, **attrs):
    x, w = rand(*xshape), rand(*wshape, low=-1, high=1)
    m = wshape[1] * attrs.get("group", 1)
    return ("ConvTranspose", (x, w, rand(m) if bias else None), attrs)


# ------------------------------------------------------------------------------------------------------
# Conv

CONV_GROUPS = {
    "2d": [
        conv((1, 3, 8, 8), (4, 3, 3, 3), pads=[1, 1, 1, 1]),
        conv((1, 3, 9, 7), (5, 3, 3, 3), bias=False, strides=[2, 2], pads=[0, 1, 2, 0]),
        conv((1, 2, 11, 10), (3, 2, 3, 2), dilations=[2, 3], pads=[2, 1, 1, 3]),
        conv((1, 2, 6, 7), (3, 2, 2, 3), strides=[3, 2], dilations=[2, 1]),
        conv((1, 16, 12, 12), (32, 16, 3, 3), pads=[1, 1, 1, 1]),  # many channels
        conv((1, 8, 8, 8), (16, 8, 3, 3), pads=[1, 1, 1, 1]),  # small image: im2col
        conv((1, 2, 30, 30), (8, 2, 3, 3), pads=[1, 1, 1, 1]),  # large image: padded input read directly
        conv((1, 20, 5, 6), (13, 20, 1, 1), kernel_shape=[1, 1]),  # pointwise; 13 = 8 + a partial block
        conv((1, 6, 7, 5), (20, 6, 2, 2), bias=False, strides=[1, 2]),
        conv((1, 1, 2, 2), (2, 1, 3, 3), pads=[1, 1, 1, 1]),  # kernel larger than the input
        conv((1, 3, 5, 5), (2, 3, 5, 5)),  # one output position
    ],
    "groups": [
        conv((1, 4, 9, 11), (6, 2, 3, 3), group=2, strides=[2, 1], pads=[1, 0, 2, 1]),
        conv((1, 8, 10, 10), (8, 1, 3, 3), group=8, pads=[1, 1, 1, 1]),  # depthwise
        # depthwise with channel multiplier 2
        conv((1, 4, 12, 9), (8, 1, 5, 3), group=4, pads=[2, 1, 2, 1], strides=[2, 1]),
        conv((1, 6, 6, 6), (9, 2, 3, 3), bias=False, group=3, dilations=[2, 2], pads=[2, 2, 2, 2]),
        conv((1, 32, 7, 7), (32, 1, 3, 3), group=32, strides=[2, 2], pads=[1, 1, 1, 1]),
        conv((1, 3, 4, 4, 4), (6, 1, 3, 3, 3), group=3, pads=[1] * 6),
    ],
    "auto_pad": [
        conv((1, 2, 9, 8), (3, 2, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
        conv((1, 2, 9, 8), (3, 2, 4, 3), auto_pad="SAME_LOWER", strides=[2, 3]),
        conv((1, 2, 7, 7), (3, 2, 2, 2), auto_pad="SAME_UPPER"),
        conv((1, 2, 7, 7), (3, 2, 2, 2), bias=False, auto_pad="SAME_LOWER"),
        conv((1, 2, 10, 9), (3, 2, 3, 2), auto_pad="VALID", strides=[3, 2]),
        conv((1, 2, 10), (4, 2, 4), auto_pad="SAME_UPPER", strides=[3]),
        conv((1, 2, 5, 6, 7), (4, 2, 3, 2, 3), auto_pad="SAME_LOWER", strides=[1, 2, 2]),
    ],
    "1d_3d": [
        conv((1, 2, 17), (4, 2, 3)),
        conv((1, 3, 40), (8, 3, 5), pads=[2, 1], strides=[2]),
        conv((1, 2, 64), (8, 2, 5), pads=[2, 2]),
        conv((1, 4, 30), (6, 4, 3), bias=False, dilations=[3], pads=[0, 4]),
        conv((1, 1, 8, 8, 8), (4, 1, 3, 3, 3), pads=[1] * 6),
        conv((1, 4, 4, 4, 4), (8, 4, 3, 3, 3), pads=[1] * 6),
        conv((1, 2, 6, 5, 7), (4, 2, 3, 2, 3), strides=[1, 2, 2], pads=[0, 1, 1, 1, 0, 2]),
        conv((1, 3, 5, 6, 5), (2, 3, 2, 2, 2), bias=False, dilations=[2, 1, 2]),
    ],
}


@pytest.mark.parametrize("group", sorted(CONV_GROUPS))
def test_conv(group):
    check_cases(CONV_GROUPS[group])


@pytest.mark.parametrize("group", ["2d", "1d_3d"])
def test_conv_batch(group):
    """Batch 3, declared with a symbolic batch axis."""
    cases = []
    for op, (x, w, b), attrs in CONV_GROUPS[group][:6]:
        cases.append((op, (rand(3, *x.shape[1:]), w, b), attrs))
    check_cases(cases, symbolic_batch=True)


def test_conv_static_batch():
    check_op("Conv", [rand(2, 4, 9, 11), rand(6, 2, 3, 3), rand(6)], {"group": 2, "pads": [1, 0, 2, 1]},
             const=(1, 2), **TOL)


def test_conv_runtime_weights():
    """Weights and bias as graph inputs: im2col + GEMM instead of packed weights."""
    check_op("Conv", [rand(2, 4, 7, 6), rand(6, 2, 3, 3), rand(6)], {"group": 2, "strides": [2, 1],
             "pads": [1, 1, 0, 1]}, symbolic={0: {0: "N"}}, **TOL)
    check_op("Conv", [rand(1, 3, 5, 5), rand(4, 3, 1, 1)], **TOL)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Sigmoid"])
def test_conv_fused_activation(activation):
    cases = [conv((1, 3, 8, 8), (4, 3, 3, 3), pads=[1, 1, 1, 1]),
             conv((1, 8, 8, 8), (16, 8, 3, 3), bias=False, pads=[1, 1, 1, 1]),
             conv((1, 4, 9), (6, 4, 3), strides=[2]),
             convt((1, 4, 5, 5), (4, 3, 3, 3), strides=[2, 2])]
    model = check_cases(cases, symbolic_batch=True, activation=activation)
    g, _ = mi.lower(model)
    assert [n.op_type for n in g.nodes] == ["Conv", "Conv", "Conv", "ConvTranspose"]
    assert all(n.fused and n.fused[0][0] == activation for n in g.nodes)


def test_conv_kernel_paths_covered():
    """The cases above exercise both ways the vector kernel reads its input."""
    from ml4ep.infer.graph import Graph, Node

    seen = set()
    for cases in CONV_GROUPS.values():
        for op, (x, w, _b), attrs in cases:
            if op != "Conv":
                continue
            g = Graph("t", OPSET)
            g.add_tensor("x", np.float32, x.shape)
            g.add_tensor("w", np.float32, w.shape, w)
            node = Node("Conv", "c", ["x", "w"], ["y"], dict(attrs))
            geo = C.conv_geometry(node, g)
            seen.add("wide" if C._use_wide(geo) else "im2col")
    assert seen == {"wide", "im2col"}


# ------------------------------------------------------------------------------------------------------
# ConvTranspose

CONVT_GROUPS = {
    "basic": [
        convt((1, 4, 5), (4, 2, 3), strides=[2]),
        convt((1, 3, 4, 5), (3, 2, 3, 3)),
        convt((1, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0]),
        convt((1, 4, 4, 4), (4, 1, 2, 2), group=2, dilations=[2, 1]),
        convt((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), strides=[2, 2, 1]),
        convt((1, 6, 4, 5), (6, 2, 3, 2), bias=False, group=3, strides=[1, 2], pads=[1, 1, 0, 1]),
        convt((1, 32, 8, 8), (32, 16, 4, 4), strides=[2, 2], pads=[1, 1, 1, 1]),  # decoder-style upsampling
        convt((1, 3, 7), (3, 5, 4), strides=[3], dilations=[2], pads=[2, 3]),
    ],
    "output_shape": [
        convt((1, 1, 5), (1, 2, 3), strides=[2], output_shape=[10]),  # odd total padding
        convt((1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_shape=[8, 9]),
        convt((1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_shape=[8, 7], auto_pad="SAME_UPPER"),
        convt((1, 1, 5), (1, 1, 3), strides=[2], output_shape=[12]),  # larger than the input covers
        convt((1, 2, 5, 3), (2, 3, 3, 2), strides=[2, 1], output_shape=[10, 4], output_padding=[1, 0]),
    ],
    "auto_pad": [
        convt((1, 2, 5), (2, 3, 3), strides=[2], auto_pad="SAME_UPPER"),
        convt((1, 2, 5), (2, 3, 3), strides=[2], auto_pad="SAME_LOWER"),
        convt((1, 2, 4, 5), (2, 2, 3, 4), bias=False, strides=[2, 3], auto_pad="SAME_LOWER"),
        convt((1, 2, 6, 4), (2, 1, 1, 1), strides=[2, 1], auto_pad="SAME_UPPER"),  # kernel < stride
        convt((1, 2, 3, 3), (2, 2, 2, 2), strides=[2, 2], auto_pad="VALID"),
    ],
}


@pytest.mark.parametrize("group", sorted(CONVT_GROUPS))
def test_conv_transpose(group):
    check_cases(CONVT_GROUPS[group])


def test_conv_transpose_batch():
    cases = [(op, (rand(2, *x.shape[1:]), w, b), a) for op, (x, w, b), a in CONVT_GROUPS["basic"]]
    check_cases(cases, symbolic_batch=True)


def test_conv_transpose_runtime_weights():
    check_op("ConvTranspose", [rand(2, 4, 5, 6), rand(4, 3, 3, 3), rand(6)],
             {"group": 2, "strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 0]},
             symbolic={0: {0: "N"}}, **TOL)


# ------------------------------------------------------------------------------------------------------
# the ways the CUDA code runs a convolution (conv.py, "CUDA"; under ML4EP_DEVICE=cuda-host these run through them,
# on the CPU they are more cases of the CPU kernels)

CUDA_PATHS = [
    conv((2, 4, 5, 6), (6, 2, 1, 1), group=2),  # pointwise, grouped: a cuBLAS product per group
    conv((2, 16, 4, 4), (16, 1, 1, 1), group=16),  # pointwise, many groups: the direct kernel
    conv((2, 3, 7, 7), (4, 3, 1, 1), strides=[2, 2], pads=[1, 1, 1, 1]),  # 1x1 reading padding: direct
    conv((2, 3, 6, 5), (13, 3, 3, 3), pads=[1, 1, 1, 1]),  # 13 = 3 blocks of 4 + a padded one
    convt((2, 4, 5, 6), (4, 3, 1, 1)),  # pointwise transposed: a cuBLAS product (transposed weights)
    convt((2, 4, 5, 6), (4, 3, 1, 1), bias=False, group=2),
    convt((2, 2, 3, 3), (2, 2, 1, 1), pads=[1, 1, 0, 0]),  # 1x1 transposed, cropped: direct
]

# batch 1024 of small images: enough threads for the direct kernel's widest channel blocks (conv.CU_WIDE_THREADS)
CUDA_WIDE = [
    conv((1024, 3, 8, 8), (13, 3, 3, 3), pads=[1, 1, 1, 1]),
    conv((1024, 4, 12, 12), (8, 2, 3, 3), group=2, strides=[2, 1], pads=[1, 0, 1, 1]),
    convt((1024, 4, 7, 7), (4, 6, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
]


@pytest.mark.parametrize("symbolic", [False, True])
def test_conv_cuda_paths(symbolic):
    check_cases(CUDA_PATHS, symbolic_batch=symbolic, activation="Relu" if symbolic else None)


@pytest.mark.parametrize("symbolic", [False, True])
def test_conv_cuda_wide_blocks(symbolic):
    check_cases(CUDA_WIDE, symbolic_batch=symbolic)
    check_op("Conv", [rand(1024, 4, 8, 8), rand(8, 4, 3, 3), rand(8)], {"pads": [1, 1, 1, 1]},
             symbolic={0: {0: "N"}} if symbolic else None, **TOL)


# ------------------------------------------------------------------------------------------------------
# what check() and shape inference reject


def _problems(op, inputs, attrs, const=(1,)):
    from opcheck import make_model

    return mi.check(make_model(op, inputs, attrs, const=const))


def test_rejections():
    [p] = _problems("Conv", [rand(1, 2, 5, 5, dtype=np.float64), rand(3, 2, 3, 3, dtype=np.float64)], {})
    assert "float32 only" in p.reason and p.op_type == "Conv"
    [p] = _problems("Conv", [rand(1, 1, 3, 3, 3, 3), rand(1, 1, 2, 2, 2, 2)], {})
    assert "rank 6" in p.reason
    [p] = _problems("Conv", [rand(1, 2, 5, 5), rand(3, 2, 3, 3)], {"auto_pad": "SAME"})
    assert "auto_pad 'SAME'" in p.reason
    [p] = _problems("Conv", [rand(1, 4, 5, 5), rand(3, 2, 3, 3)], {"group": 2})
    assert "group=2" in p.reason
    [p] = _problems("Conv", [rand(1, 2, 2, 2), rand(3, 2, 3, 3)], {})
    assert "kernel extent 3 exceeds" in p.reason
    [p] = _problems("ConvTranspose", [rand(1, 2, 4, 4), rand(3, 2, 3, 3)], {})
    assert "expect 3 input channels" in p.reason


def test_output_shape_formulas():
    """Spot checks of the ONNX output-size formulas (no compilation)."""
    from ml4ep.infer.graph import Graph, Node

    def out(op, xshape, wshape, **attrs):
        g = Graph("t", OPSET)
        g.add_tensor("x", np.float32, xshape)
        g.add_tensor("w", np.float32, wshape, np.zeros(wshape, np.float32))
        node = Node(op, "n", ["x", "w"], ["y"], attrs)
        infer = C._infer_conv if op == "Conv" else C._infer_convt
        return infer(node, g)[0][1][2:]

    assert out("Conv", (1, 1, 7), (1, 1, 3), strides=[2], pads=[1, 0]) == (3,)  # floor((7+1-3)/2)+1
    assert out("Conv", (1, 1, 7), (1, 1, 3), strides=[2], auto_pad="SAME_UPPER") == (4,)
    assert out("Conv", (1, 1, 7), (1, 1, 3), strides=[2], auto_pad="VALID") == (3,)
    assert out("Conv", (1, 1, 7), (1, 1, 3), dilations=[3]) == (1,)
    assert out("ConvTranspose", (1, 1, 5), (1, 1, 3), strides=[2], output_padding=[1]) == (12,)
    assert out("ConvTranspose", (1, 1, 5), (1, 1, 3), strides=[2], pads=[1, 2]) == (8,)
    assert out("ConvTranspose", (1, 1, 5), (1, 1, 3), strides=[2], auto_pad="SAME_LOWER") == (10,)
    assert out("ConvTranspose", (1, 1, 5), (1, 1, 3), strides=[2], output_shape=[9]) == (9,)
