"""`ml4ep bench`'s GPU backends (ml4ep-cuda, torch-cuda): skipped with their reason where there is no GPU, and their
code path (the runner, the worker's timing of device inputs) through the cuda-host build."""

from __future__ import annotations

import pytest

from ml4ep.bench import backends as B
from ml4ep.bench import report as R
from ml4ep.bench import run as runmod
from ml4ep.bench import zoo

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

GPU = ["ml4ep-cuda", "torch-cuda"]


def test_gpu_backends_are_opt_in():
    assert all(B.BACKENDS[b].gpu for b in GPU)
    assert not set(GPU) & set(B.DEFAULT_BACKENDS)
    assert runmod.Config().backends == list(B.DEFAULT_BACKENDS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the backends run")
def test_without_a_gpu_they_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(B.GPU_ENV, raising=False)
    for b in GPU:
        why = B.missing_dependency(b)
        assert why and why.startswith("no CUDA GPU") and "\n" not in why, why
    rep = runmod.run(runmod.Config(models=["dense"], backends=GPU, batches=[1], size="small", repeats=1,
                                   block_s=0.001, work=str(tmp_path)), bar=False)
    entry = rep["models"]["dense"]["backends"]
    for b in GPU:
        assert entry[b]["status"] == "unavailable" and entry[b]["reason"].startswith("no CUDA GPU"), entry[b]
        assert not (tmp_path / "dense" / f"{b}-r0").exists()  # no worker was started
    assert rep["machine"]["gpu"].startswith("none (no CUDA GPU")
    table = R.table(rep)
    assert "ml4ep-cuda  unavailable: no CUDA GPU" in table and "torch-cuda  unavailable: no CUDA GPU" in table


def _job(tmp_path, backend: str) -> dict:
    zoo.bench_model("dense", "small").export(tmp_path / "dense.onnx")
    job = {"model": "dense", "size": "small", "onnx": str(tmp_path / "dense.onnx"), "check_batch": 3,
           "batches": [1, 4], "repeats": 2, "block_s": 0.001, "rtol": 2e-3, "reference": str(tmp_path / "ref.npz"),
           "work": str(tmp_path), "backend": backend}
    ref = runmod._worker({**job, "reference_only": True}, tmp_path / "ref.json", 300)
    assert ref["status"] == "ok", ref
    return job


@pytest.mark.parametrize("backend", GPU)
def test_code_path_on_the_host_build(backend, tmp_path, monkeypatch):
    """ML4EP_BENCH_GPU=cuda-host: ml4ep-cuda builds the CUDA source for the host and runs on CPU tensors,
    torch-cuda runs torch on the CPU; the check and the device-input timing are those of a GPU run."""
    monkeypatch.setenv(B.GPU_ENV, "cuda-host")
    assert B.missing_dependency(backend) is None
    job = _job(tmp_path, backend)
    res = runmod._worker(job, tmp_path / "job.json", 300)
    assert res["status"] == "ok", res
    assert res["max_diff"] <= 2e-3
    for b in ("1", "4"):
        assert len(res["batches"][b]["ms"]) == 2 and min(res["batches"][b]["ms"]) > 0
    assert res["load_s"] > 0 and res["first_s"] > 0
