"""Whole models through the CUDA code: the benchmark's model zoo (dense, CNN, GNN, interaction network, transformer,
VAE decoder, DiT denoiser; small sizes) built for the host (device="cuda-host") against onnxruntime, and the zoo and
the HEP models of tests/infer/hep_models.py (with the LSTM and GRU) built by nvcc for sm_80 and sm_90 (+ PTX),
warning-free (-Werror all-warnings -Xptxas -warn-spills), one nvcc call per model, cached. (The HEP models also run
through the host build in make test's ML4EP_DEVICE=cuda-host rerun of test_hep_models.py.)"""

from __future__ import annotations

import os
import re
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
CONFORMANCE_SAMPLE_MIN = 0.95  # 98% when set (refused: control flow, data-dependent sizes)


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


# --------------------------------------------------------------------------------------------------------------------
# Host code never dereferences device memory: in the generated run function, everything outside the kernels' lambdas
# runs on the host, where the tensors' pointers are device addresses (the host build cannot catch such a read)

_DEREF = re.compile(r"\b(?:v_|w_|in_|out_)\w*\s*\[|(?<!sizeof\()\*\s*(?:v_|w_|in_|out_)\w+|\b(?:v_|w_|in_|out_)\w*\s*->")


def _host_code(source: str) -> str:
    """The body of ``detail::run`` with the body of every kernel lambda removed."""
    start = source.index("inline void run(")
    body = source[source.index("{", start) + 1:source.index("}  // namespace detail", start)]
    out, i = [], 0
    while (j := body.find("ML4EP_HD (", i)) >= 0:
        k = body.index("{", j)
        out.append(body[i:k])
        depth = 0
        for p in range(k, len(body)):
            depth += {"{": 1, "}": -1}.get(body[p], 0)
            if depth == 0:
                break
        i = p + 1
    out.append(body[i:])
    return "".join(out)


def _host_reads(model, name: str) -> list[str] | None:
    from ml4ep.infer import dims as D
    from ml4ep.infer.cuda import codegen as cc
    from ml4ep.infer.pipeline import lower

    g, plan = lower(model, name)
    if cc.problems(g):
        return None
    with D.scope(g.derived):
        source = cc.generate(g, name, plan, "m", ("90",), False).source
    return [ln.strip() for ln in _host_code(source).splitlines() if _DEREF.search(ln.split("//")[0])]


def test_host_code_never_reads_device_memory(zoo_onnx):
    import warnings

    from test_conformance import SAMPLE, node_cases

    cases = node_cases()
    assert _host_code("inline void run(int* v_x) {\n  n = v_x[0];\n  ml4ep_cu::launch(stream, 4, [=] ML4EP_HD "
                      "(int64_t i) { v_x[i] = 0; });\n}\n}  // namespace detail").count("v_x[") == 1  # the checker
    found, checked = {}, 0
    models = [(str(zoo_onnx(n)), n) for n in zoo.MODEL_NAMES] + [(cases[n].model, re.sub(r"\W", "_", n)) for n in SAMPLE]
    for model, name in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                reads = _host_reads(model, name)
            except Exception:  # noqa: BLE001 - models with shape inputs lower per value, at run time
                continue
        if reads is not None:
            checked += 1
            if reads:
                found[name] = reads[:3]
    assert checked >= 140 and not found, found  # (about 150 of the sample and zoo today)
