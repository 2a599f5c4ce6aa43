"""Batch chunking (passes/batching.py): separable models run their batch in chunks and give the same outputs;
graphs that mix samples are never chunked. ``-DML4EP_CHUNK_BYTES=1`` makes every chunk one sample, so each
batch size crosses chunk boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import ml4ep.infer as mi
from ml4ep.bench import zoo

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

ONE_SAMPLE = ["-DML4EP_CHUNK_BYTES=1"]


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString() if hasattr(model, "SerializeToString") else str(model),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.mark.parametrize("name", ["gnn", "interaction", "transformer", "diffusion", "cnn"])
def test_separable_models_are_chunked(name, tmp_path):
    """The zoo's models are batch-separable (the interaction network's edge list is shared, not batched): run one
    sample per chunk, they agree with onnxruntime at every batch size."""
    m = zoo.bench_model(name, "small")
    path = tmp_path / f"{name}.onnx"
    m.export(path)
    compiled = mi.compile(path, cache=False, extra_flags=ONE_SAMPLE)
    assert compiled.meta["batch_chunks"] == "N"
    assert "infer_block_" in compiled.source
    for batch in (1, 3, 8):
        feeds = m.inputs(batch, seed=batch)
        ref = _ort(path, feeds)[0]
        got = compiled(*[feeds[k] for k in m.input_names])
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(ref).max())),
                                   err_msg=f"{name} batch {batch}")


def _graph(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _x(name="x", shape=("N", 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _ints(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


MIXING = {
    # each output sample depends on other samples
    "batch mean": ([helper.make_node("ReduceMean", ["x"], ["m"], axes=[0]), helper.make_node("Sub", ["x", "m"], ["y"])],
                   [_x()], [_x("y")], []),
    "softmax over the batch": ([helper.make_node("Softmax", ["x"], ["y"], axis=0)], [_x()], [_x("y")], []),
    "contraction over the batch": ([helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
                                    helper.make_node("MatMul", ["xt", "x"], ["g"]),
                                    helper.make_node("MatMul", ["x", "g"], ["y"])], [_x()], [_x("y")], []),
    "reversed batch": ([helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])], [_x()], [_x("y")],
                       [_ints("s", [-1]), _ints("e", [-(2**62)]), _ints("a", [0]), _ints("st", [-1])]),
    "gather along the batch": ([helper.make_node("Gather", ["x", "i"], ["y"], axis=0)],
                               [_x(), helper.make_tensor_value_info("i", TensorProto.INT64, ["N"])], [_x("y")], []),
    "cumulative sum over the batch": ([helper.make_node("CumSum", ["x", "ax"], ["y"])], [_x()], [_x("y")],
                                      [helper.make_tensor("ax", TensorProto.INT64, [], [0])]),
    "first sample broadcast to all": ([helper.make_node("GatherElements", ["x", "i"], ["f"], axis=1),
                                       helper.make_node("Add", ["x", "f"], ["y"])], [_x()], [_x("y")],
                                      [helper.make_tensor("i", TensorProto.INT64, [1, 4], [3, 2, 1, 0])]),
    "rows swapped with columns": ([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                                   helper.make_node("Reshape", ["t", "shape"], ["y"])], [_x(shape=("N", 2))],
                                  [_x("y", ("N", 2))], [_ints("shape", [-1, 2])]),
}


@pytest.mark.parametrize("case", sorted(MIXING))
def test_graphs_that_mix_samples_are_not_chunked(case):
    nodes, inputs, outputs, inits = MIXING[case]
    model = _graph(nodes, inputs, outputs, inits)
    compiled = mi.compile(model, cache=False, extra_flags=ONE_SAMPLE)
    assert compiled.meta["batch_chunks"] is None, case
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in inputs:
        width = vi.type.tensor_type.shape.dim[-1].dim_value if len(vi.type.tensor_type.shape.dim) > 1 else 0
        if vi.type.tensor_type.elem_type == TensorProto.INT64:
            feeds[vi.name] = rng.permutation(6).astype(np.int64)
        else:
            feeds[vi.name] = rng.normal(size=(6, width)).astype(np.float32)
    ref = _ort(model, feeds)[0]
    got = compiled(*[feeds[vi.name] for vi in inputs])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=case)
