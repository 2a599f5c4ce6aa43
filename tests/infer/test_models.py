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
