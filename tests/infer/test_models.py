"""Whole models exported from PyTorch, compiled once and run at several batch sizes, against onnxruntime
and against PyTorch itself."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import ml4ep.infer as mi
from ml4ep.bench import zoo
from opcheck import run_ort

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("family", sorted(zoo.FAMILIES))
def test_family(family, tmp_path):
    data = zoo.family_onnx(family, tmp_path / f"{family}.onnx")
    model = mi.compile(tmp_path / f"{family}.onnx")
    assert model.symbols == ["N"]
    module = zoo.build(family)
    rng = np.random.default_rng(3)
    for batch in (1, 7, 256):
        x = rng.normal(size=(batch, *zoo.FAMILIES[family].input_shape)).astype(np.float32)
        got = model(x)
        ref = run_ort(onnx.load_from_string(data), {"x": x})[0]
        with torch.no_grad():
            ref_torch = module(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-5, err_msg=f"{family} batch {batch} vs onnxruntime")
        np.testing.assert_allclose(got, ref_torch, rtol=1e-4, atol=2e-5, err_msg=f"{family} batch {batch} vs torch")


def test_fusions_happen():
    g, _plan = mi.lower(zoo.family_onnx("cnn2d"))
    ops = [n.op_type for n in g.nodes]
    assert "BatchNormalization" not in ops and "Relu" not in ops, ops
    conv = [n for n in g.nodes if n.op_type == "Conv"]
    assert conv[0].fused == [("Relu", {})]


def test_memory_plan_reuses_arena():
    g, plan = mi.lower(zoo.family_onnx("mlp"))
    # three hidden activations of (N, 64) floats, two alive at once: the arena holds two, not three
    assert plan.groups[(("N", 1),)] == 2 * 64 * 4


def test_threads_share_one_model():
    from concurrent.futures import ThreadPoolExecutor

    model = mi.compile(zoo.family_onnx("vae_decoder"))
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(b, 14)).astype(np.float32) for b in (1, 3, 64, 1, 5, 130, 2, 9)]
    expected = [model(x) for x in xs]
    with ThreadPoolExecutor(4) as ex:
        for _ in range(5):
            for got, exp in zip(ex.map(model, xs), expected):
                np.testing.assert_array_equal(got, exp)


class _GeluMLP(torch.nn.Module if torch else object):
    def __init__(self, approximate: str, leak: bool = False):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)
        self.act, self.leak = torch.nn.GELU(approximate=approximate), leak

    def forward(self, x):
        h = self.a(x)
        y = self.b(self.act(h))
        # leak: the MatMul's output is used elsewhere too: the Gelu stays a node of its own
        return (y, torch.tanh(0.7978845608028654 * (h + 0.044715 * h * h * h))) if self.leak else y


@pytest.mark.parametrize("approximate,leak", [("none", False), ("tanh", False), ("tanh", True)])
def test_gelu_spelled_out_becomes_one_fused_node(approximate, leak, tmp_path):
    """Below opset 20 exporters write GELU as Div/Erf/Add/Mul/Mul or as the tanh formula in 8 nodes; both become
    one Gelu fused into the MatMul before it (unless an intermediate is used elsewhere), with the same results."""
    import warnings

    module = _GeluMLP(approximate, leak).eval()
    path = tmp_path / "gelu.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, 8),), str(path), input_names=["x"], opset_version=17,
                          dynamic_axes={"x": {0: "N"}}, dynamo=False)
    exported = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ("Erf" if approximate == "none" else "Tanh") in exported and "Gelu" not in exported
    g, _ = mi.lower(str(path))
    ops = [n.op_type for n in g.nodes]
    if leak:
        assert ops.count("Gelu") == 1 and "Tanh" in ops and not any(f[0] == "Gelu" for n in g.nodes for f in n.fused)
    else:
        assert "Erf" not in ops and "Tanh" not in ops and "Gelu" not in ops, ops
        fused = [f for n in g.nodes for f in n.fused]
        assert fused == [("Gelu", {"approximate": approximate})], fused
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32) * 3
    got = mi.compile(str(path))(x)
    ref = run_ort(onnx.load(str(path)), {"x": x})
    for a, b in zip(got if leak else [got], ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gelu_chain_with_a_shared_intermediate_is_kept():
    """0.5 x (1 + erf(x / sqrt 2)) whose erf output is also a graph output: nothing may be removed."""
    from onnx import TensorProto, helper

    def c(name, v):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))

    nodes = [c("s2", 1.4142135623730951), c("one", 1.0), c("half", 0.5),
             helper.make_node("Div", ["x", "s2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("x", "y", "e")]
    model = helper.make_model(helper.make_graph(nodes, "g", [vi[0]], vi[1:]), opset_imports=[helper.make_opsetid("", 17)])
    g, _ = mi.lower(model)
    assert "Erf" in [n.op_type for n in g.nodes] and "Gelu" not in [n.op_type for n in g.nodes]
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(4, 3)
    for a, b in zip(mi.compile(model)(x), run_ort(model, {"x": x})):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
