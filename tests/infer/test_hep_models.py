"""Particle-physics architectures (tests/infer/hep_models.py) exported from PyTorch, compiled once by ml4ep
and run at several batch sizes and lengths from the one compiled model, against onnxruntime.

A model whose graph ml4ep cannot compile yet fails here with the full list of problems (not skipped)."""

from __future__ import annotations

import numpy as np
import pytest

import hep_models as H
import ml4ep.infer as mi
from ml4ep.errors import InputError, Ml4epError

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

NAMES = sorted(H.MODELS)
BATCHES = (1, 7, 32)


def _grid(spec):
    lengths = spec.lengths if not spec.quantized else (1,)
    return [(b, n) for b in BATCHES for n in lengths]


@pytest.mark.parametrize("name", NAMES)
def test_export_is_sane(name, hep_exported):
    """onnxruntime on the export agrees with PyTorch at every batch size and length (the export is dynamic)."""
    spec = H.MODELS[name]
    path = hep_exported(name)
    sess = H.ort_session(path, optimize=False)
    rng = np.random.default_rng(11)
    if spec.quantized:
        ref = H.ort_session(path.with_name(f"{name}_float.onnx"), optimize=False)
        step = H.output_step(path)
        assert step > 0, "the QDQ model's output is not produced by a DequantizeLinear"
        for b, n in _grid(spec):
            feeds = spec.inputs(rng, b, n)
            q, f = H.ort_run(sess, feeds)[0], H.ort_run(ref, feeds)[0]
            assert q.shape == f.shape
            assert np.abs(q - f).mean() < 3 * step, f"{name} batch {b}: int8 model far from the float model"
        return
    module = H.build(name)
    for b, n in _grid(spec):
        feeds = spec.inputs(rng, b, n)
        got = H.ort_run(sess, feeds)
        ref = H.torch_run(module, spec, feeds)
        for g, r in zip(got, ref):
            assert g.shape == r.shape, f"{name} batch {b} length {n}"
            np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-4, err_msg=f"{name} batch {b} length {n}: ORT vs torch")


@pytest.mark.parametrize("name", NAMES)
def test_ml4ep_matches_onnxruntime(name, hep_exported):
    spec = H.MODELS[name]
    path = hep_exported(name)
    try:
        problems = [str(p) for p in mi.check(path)]
    except Ml4epError as exc:  # shape errors and the like: raised, not listed
        problems = [f"{type(exc).__name__}: {exc}"]
    if problems:
        pytest.fail(f"{name}: ml4ep cannot compile the model yet:\n  " + "\n  ".join(problems), pytrace=False)
    model = mi.compile(path)
    sess = H.ort_session(path, optimize=False)
    step = H.output_step(path) if spec.quantized else 0.0
    rng = np.random.default_rng(7)
    for b, n in _grid(spec):
        feeds = spec.inputs(rng, b, n)
        expected = H.ort_run(sess, feeds)
        got = model.run(feeds)
        for out_name, e in zip(spec.output_names, expected):
            g = got[out_name]
            assert g.shape == e.shape, f"{name} batch {b} length {n}: shape {g.shape} != onnxruntime {e.shape}"
            msg = f"{name} batch {b} length {n}: {out_name} vs onnxruntime"
            if spec.quantized:  # within one quantisation step of the output
                np.testing.assert_allclose(g, e, rtol=0, atol=step * 1.001, err_msg=msg)
            else:
                np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=msg)
    if spec.input_names:  # a wrong input shape is refused, naming the model and the input
        first = spec.input_names[0]
        feeds = spec.inputs(rng, 2, spec.lengths[0])
        feeds[first] = feeds[first][..., :1] if feeds[first].ndim > 1 else feeds[first][:, None]
        # the message names the input that disagrees (with the first, or the first itself)
        names = "|".join(spec.input_names)
        with pytest.raises(InputError, match=f"model '{name}': input '({names})'"):
            model.run(feeds)
