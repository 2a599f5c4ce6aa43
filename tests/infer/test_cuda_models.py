"""Whole models through the CUDA code: the benchmark's model zoo (dense, CNN, GNN, interaction network, transformer,
VAE decoder, DiT denoiser; small sizes) built for the host (device="cuda-host") against onnxruntime, and the zoo and
the HEP models of tests/infer/hep_models.py (with the LSTM and GRU) built by nvcc for sm_80 and sm_90 (+ PTX),
warning-free (-Werror all-warnings -Xptxas -warn-spills), one nvcc call per model, cached. (The HEP models also run
through the host build in make test's ML4EP_DEVICE=cuda-host rerun of test_hep_models.py.)"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hep_models as H
import ml4ep.infer as mi
from ml4ep.bench import zoo

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

HAVE_NVCC = shutil.which("nvcc") is not None or os.path.exists("/usr/local/cuda/bin/nvcc")
STRICT = ["-Werror", "all-warnings"]


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory):
    directory = tmp_path_factory.mktemp("zoo")
    cache: dict = {}

    def get(name):
        if name not in cache:
            path = directory / f"{name}.onnx"
            zoo.bench_model(name, "small").export(path)
            cache[name] = path
        return cache[name]

    return get


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_zoo_on_cuda_host_matches_onnxruntime(name, zoo_onnx):
    path = zoo_onnx(name)
    problems = [str(p) for p in mi.check(path, device="cuda")]
    assert not problems, "\n".join(problems)
    m = mi.compile(path, device="cuda-host")
    sess = ort.InferenceSession(str(path))
    bm = zoo.bench_model(name, "small")
    for batch in (1, 3):
        feeds = bm.inputs(batch, seed=batch)
        want = sess.run(None, feeds)
        got = m.run(feeds)
        for out, w in zip(bm.output_names, want):
            np.testing.assert_allclose(got[out], w, rtol=1e-4, atol=1e-5, err_msg=f"{name} batch {batch}: {out}")


@pytest.mark.skipif(not HAVE_NVCC, reason="no nvcc")
@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_zoo_builds_with_nvcc(name, zoo_onnx):
    m = mi.compile(zoo_onnx(name), device="cuda", cuda_archs="80,90", extra_flags=STRICT)
    assert (m.directory / "lib.so").exists() and m.meta["cuda_archs"] == ["80", "90"]


@pytest.mark.skipif(not HAVE_NVCC, reason="no nvcc")
@pytest.mark.parametrize("name", sorted(H.MODELS))
def test_hep_models_build_with_nvcc(name, hep_exported):
    path = hep_exported(name)
    problems = [str(p) for p in mi.check(path, device="cuda")]
    assert not problems, "\n".join(problems)
    m = mi.compile(path, device="cuda", cuda_archs="80,90", extra_flags=STRICT)
    assert (m.directory / "lib.so").exists()


# the conformance sample of make test's ISA reruns: how many of its cases the CUDA code takes (make test runs those
# through the host build, ML4EP_DEVICE=cuda-host); the others are refused by mi.check(device="cuda"), never wrong
CONFORMANCE_SAMPLE_MIN = 0.0


def test_conformance_sample_coverage():
    import warnings

    from test_conformance import SAMPLE, node_cases

    cases = node_cases()
    taken, refused = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SAMPLE:
            try:
                problems = mi.check(cases[name].model, device="cuda")
            except Exception as exc:  # noqa: BLE001 - specializing models fail to lower without their values
                refused[name] = type(exc).__name__
                continue
            if problems:
                refused[name] = ", ".join(sorted({p.op_type for p in problems}))
            else:
                taken.append(name)
    share = len(taken) / len(SAMPLE)
    print(f"CUDA code takes {len(taken)} of {len(SAMPLE)} sampled conformance cases ({share:.0%}); refused: "
          + "; ".join(f"{k}: {v}" for k, v in sorted(refused.items())))
    assert share >= CONFORMANCE_SAMPLE_MIN
