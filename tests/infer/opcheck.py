"""Single-node ONNX models compiled by ml4ep and compared with onnxruntime (the independent oracle)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import ml4ep.infer as mi

OPSET = 21
RNG = np.random.default_rng(12345)


def rand(*shape, dtype=np.float32, low=-2.0, high=2.0) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(int(low), int(high), size=shape).astype(dtype)
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) > 0.5
    return RNG.uniform(low, high, size=shape).astype(dtype)


def make_model(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attrs: dict | None = None,
    *,
    const: Sequence[int] = (),
    n_outputs: int = 1,
    opset: int = OPSET,
    symbolic: dict[int, dict[int, str]] | None = None,
    domain: str = "",
) -> onnx.ModelProto:
    """One node; inputs listed in ``const`` become initializers, ``None`` inputs are omitted (empty name).

    ``symbolic`` maps an input index to {axis: symbol name} to declare symbolic dimensions.
    """
    names, graph_inputs, inits = [], [], []
    for k, x in enumerate(inputs):
        if x is None:
            names.append("")
            continue
        name = f"x{k}"
        names.append(name)
        if k in const:
            inits.append(numpy_helper.from_array(np.asarray(x), name))
        else:
            shape: list = list(np.shape(x))
            for ax, sym in (symbolic or {}).get(k, {}).items():
                shape[ax] = sym
            elem = helper.np_dtype_to_tensor_dtype(np.asarray(x).dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, shape))
    outs = [f"y{k}" for k in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, name=f"{op_type.lower()}_node", domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], f"test_{op_type.lower()}", graph_inputs,
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs], inits,
    )
    return finish_model(graph, opset)


def finish_model(graph: onnx.GraphProto, opset: int = OPSET) -> onnx.ModelProto:
    """The model of ``graph``, its untyped outputs given the element types ONNX shape inference finds
    (onnxruntime refuses outputs of undefined type)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(model)
    for out, inf in zip(model.graph.output, inferred.graph.output):
        if inf.type.tensor_type.elem_type:
            out.type.tensor_type.elem_type = inf.type.tensor_type.elem_type
    return model


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check_op(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attrs: dict | None = None,
    *,
    const: Sequence[int] = (),
    n_outputs: int = 1,
    opset: int = OPSET,
    symbolic: dict[int, dict[int, str]] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> list[np.ndarray]:
    """Compile the single-node model with ml4ep, run both engines on ``inputs``, assert they agree."""
    model = make_model(op_type, inputs, attrs, const=const, n_outputs=n_outputs, opset=opset, symbolic=symbolic)
    feeds = {f"x{k}": np.asarray(x) for k, x in enumerate(inputs) if x is not None and k not in const}
    expected = run_ort(model, feeds)
    compiled = mi.compile(model)
    got = compiled.run(feeds)
    got_list = [got[f"y{k}"] for k in range(n_outputs)]
    for k, (e, g) in enumerate(zip(expected, got_list)):
        assert g.shape == e.shape, f"{op_type} output {k}: shape {g.shape} != onnxruntime {e.shape}"
        assert g.dtype == e.dtype, f"{op_type} output {k}: dtype {g.dtype} != onnxruntime {e.dtype}"
        if e.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"{op_type} output {k}")
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"{op_type} output {k}")
    return got_list


def graph_model(
    nodes: Sequence[tuple],
    inputs: dict[str, np.ndarray],
    outputs: Sequence[str],
    inits: dict | None = None,
    sym: dict[str, dict[int, str]] | None = None,
    opset: int = OPSET,
    *,
    name: str = "graph",
) -> onnx.ModelProto:
    """A model of several nodes ``(op, inputs, outputs, attrs)``; graph inputs ``{name: array}`` (``sym`` =
    {name: {axis: symbol}} declares symbolic dimensions), initializers ``inits`` = {name: array}, untyped
    ``outputs`` typed by :func:`finish_model`."""
    vis = []
    for in_name, x in inputs.items():
        shape: list = list(np.shape(x))
        for ax, s in (sym or {}).get(in_name, {}).items():
            shape[ax] = s
        vis.append(helper.make_tensor_value_info(in_name, helper.np_dtype_to_tensor_dtype(x.dtype), shape))
    onodes = [helper.make_node(op, ins, outs, name=f"{op.lower()}_{k}", **(attrs or {}))
              for k, (op, ins, outs, attrs) in enumerate(nodes)]
    graph = helper.make_graph(
        onodes, name, vis,
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    return finish_model(graph, opset)


def check_model(model: onnx.ModelProto, feeds: dict, compiled=None, rtol: float = 1e-5,
                atol: float | dict[str, float] = 1e-5):
    """Run ``model`` (compiled with ml4ep unless ``compiled`` is given) and onnxruntime on ``feeds`` and assert
    they agree output by output: same shape and dtype, floats within ``rtol``/``atol`` (``atol`` may map output
    names to tolerances), other types exactly. Returns the compiled model, for a rerun on other feeds."""
    expected = run_ort(model, feeds)
    compiled = compiled or mi.compile(model)
    got = compiled.run(feeds)
    for out, e in zip(model.graph.output, expected):
        g = got[out.name]
        assert g.shape == e.shape, f"{out.name}: shape {g.shape} != onnxruntime {e.shape}"
        assert g.dtype == e.dtype, f"{out.name}: dtype {g.dtype} != onnxruntime {e.dtype}"
        if e.dtype.kind in "fc":
            tol = atol[out.name] if isinstance(atol, dict) else atol
            np.testing.assert_allclose(g, e, rtol=rtol, atol=tol, err_msg=out.name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=out.name)
    return compiled
