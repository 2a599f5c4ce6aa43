"""`ml4ep bench`: the model zoo, the cross-check, the workers and what a run writes (a small configuration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ml4ep import cli
from ml4ep.bench import backends as B
from ml4ep.bench import report as R
from ml4ep.bench import run as runmod
from ml4ep.bench import worker, zoo

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


# ------------------------------------------------------------------------------------------------------
# the zoo
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_small_models_export_with_dynamic_batch(name, tmp_path):
    """The export runs in onnxruntime at other batch sizes than the traced one and agrees with PyTorch."""
    m = zoo.bench_model(name, "small")
    path = tmp_path / f"{name}.onnx"
    m.export(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = m.module()
    for batch in (1, 5):
        feeds = m.inputs(batch, seed=batch)
        got = sess.run(None, feeds)
        with torch.no_grad():
            ref = module(*[torch.from_numpy(feeds[n]) for n in m.input_names])
        assert got[0].shape[0] == batch
        np.testing.assert_allclose(got[0], ref.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"{name} batch {batch}")


def test_full_models_have_realistic_sizes():
    """The full models are those the issue names: k=16 and 2 EdgeConv blocks, about 2M transformer parameters,
    64-128 particles, a Par04 mesh of 40500 voxels."""
    gnn = zoo.bench_model("gnn")
    pn = gnn.module()
    assert len(pn.blocks) == 2 and all(b.k == 16 for b in pn.blocks)
    assert 64 <= gnn.inputs(1)["points"].shape[2] <= 128
    params = zoo.bench_model("transformer").n_parameters()
    assert 1.5e6 <= params <= 2.5e6, params
    assert zoo.bench_model("vae").module()(torch.zeros(2, 14)).shape == (2, 40500)
    feeds = zoo.bench_model("interaction").inputs(2)
    n = feeds["nodes"].shape[1]
    assert feeds["edges"].shape == (2, n * (n - 1))  # every ordered pair of distinct nodes
    assert not np.any(feeds["edges"][0] == feeds["edges"][1])


def test_unknown_model_and_size():
    with pytest.raises(KeyError, match="unknown benchmark model 'bdt'"):
        zoo.bench_model("bdt")
    with pytest.raises(ValueError, match="'full' or 'small'"):
        zoo.bench_model("vae", "huge")


# ------------------------------------------------------------------------------------------------------
# the cross-check
# ------------------------------------------------------------------------------------------------------
def test_compare():
    ref = [np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32)]
    assert worker.compare([ref[0] + 1e-4], ref, 1e-3)[0]
    ok, diff, msg = worker.compare([ref[0] * 1.01], ref, 1e-3)
    assert not ok and diff == pytest.approx(0.01, rel=1e-5) and "1.00e-02" in msg
    assert not worker.compare([np.full((2, 2), np.nan)], ref, 1e-3)[0]
    assert not worker.compare([ref[0][:1]], ref, 1e-3)[0]
    assert not worker.compare([], ref, 1e-3)[0]


def _job(tmp_path: Path, backend: str, model: str = "dense") -> dict:
    m = zoo.bench_model(model, "small")
    m.export(tmp_path / f"{model}.onnx")
    job = {"model": model, "size": "small", "onnx": str(tmp_path / f"{model}.onnx"), "check_batch": 3,
           "batches": [2], "repeats": 2, "block_s": 0.001, "rtol": 2e-3, "reference": str(tmp_path / "ref.npz"),
           "work": str(tmp_path), "backend": backend}
    ref = runmod._worker({**job, "reference_only": True}, tmp_path / "ref.json", 300)
    assert ref["status"] == "ok", ref
    return job


@pytest.mark.parametrize("backend", ["ml4ep", "ml4ep-cpp"])
def test_a_backend_that_disagrees_is_not_timed(backend, tmp_path):
    """A reference off by 5% (as a wrong engine would be) stops the worker before any timing."""
    job = _job(tmp_path, backend)
    ok = runmod._worker(job, tmp_path / "job.json", 300)
    assert ok["status"] == "ok" and ok["batches"]["2"]["ms"][0] > 0, ok
    with np.load(job["reference"]) as z:
        np.savez(job["reference"], out0=z["out0"] * 1.05)
    bad = runmod._worker(job, tmp_path / "job.json", 300)
    assert bad["status"] == "mismatch", bad
    assert "outputs differ from onnxruntime at batch 3" in bad["reason"]
    assert "batches" not in bad


def test_chunked_model_memory_is_bounded(tmp_path):
    """ml4ep runs a batch-separable model's batch in chunks: the C++ program's memory for 512 jets is far below
    512 jets' worth of the edge features it computes."""
    job = _job(tmp_path, "ml4ep-cpp", "gnn")
    res = runmod._worker({**job, "batches": [512], "repeats": 1}, tmp_path / "job.json", 300)
    assert res["status"] == "ok", res
    src = (tmp_path / "bench_gnn.hpp").read_text()
    per_sample = int(src.split("const int64_t per_sample_ = ")[1].split(";")[0])
    model_bytes = (res["peak_kb"] - res["base_kb"]) * 1024
    assert model_bytes < 512 * per_sample / 8, (model_bytes, per_sample)


def test_worker_failure_is_reported(tmp_path):
    job = _job(tmp_path, "ml4ep")
    job["onnx"] = str(tmp_path / "missing.onnx")
    res = runmod._worker(job, tmp_path / "job.json", 300)
    assert res["status"] == "failed" and "missing.onnx" in res["reason"]


# ------------------------------------------------------------------------------------------------------
# a whole run, through the command line
# ------------------------------------------------------------------------------------------------------
BACKENDS = ["ml4ep", "ml4ep-cpp", "sofie", "onnxruntime", "onnxruntime-mt", "torch", "jax"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    pytest.importorskip("jax")
    pytest.importorskip("matplotlib")
    d = tmp_path_factory.mktemp("bench")
    md = d / "docs" / "benchmarks.md"
    md.parent.mkdir()
    md.write_text("# Benchmarks\n\nkept text\n")
    argv = ["bench", "--models", "dense,interaction,gnn", "--backends", ",".join(BACKENDS), "--size", "small",
            "--batch", "1,8", "--repeats", "2", "--block", "0.01", "--json", str(d / "out.json"), "--write", str(md),
            "--work", str(d / "work"), "-q"]
    return d, argv


def test_run_table_json_and_markdown(small_run, capsys):
    d, argv = small_run
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    rep = json.loads((d / "out.json").read_text())
    assert list(rep["models"]) == ["dense", "interaction", "gnn"]
    has_sofie = B.missing_dependency("sofie") is None
    for name, entry in rep["models"].items():
        assert entry["parameters"] == zoo.bench_model(name, "small").n_parameters()
        for b in BACKENDS:
            r = entry["backends"][b]
            if b == "sofie" and name == "gnn":
                # SOFIE cannot parse the EdgeConv graph: the reason is SOFIE's own message
                assert r["status"] == "failed" and ("GatherElements" in r["reason"] or not has_sofie), r
                continue
            if b == "sofie" and not has_sofie:
                assert r["status"] == "unavailable" and "pip install 'ml4ep[bench]'" in r["reason"]
                continue
            assert r["status"] == "ok", (name, b, r)
            assert r["max_diff"] <= 2e-3
            for batch in ("1", "8"):
                s = r["batches"][batch]
                assert 0 < s["min_ms"] <= s["q25_ms"] <= s["median_ms"] <= s["q75_ms"] <= s["max_ms"]
                assert s["per_s"] == pytest.approx(int(batch) / s["median_ms"] * 1e3)
                assert s["blocks"] == 2
            assert r["peak_mb"] >= r["model_mb"] > 0
            assert r["load_s"] > 0 and r["first_s"] > 0
        # the C++ programs are small processes: far below a Python interpreter with an engine loaded
        assert entry["backends"]["ml4ep-cpp"]["peak_mb"] < entry["backends"]["onnxruntime"]["peak_mb"]
        assert "build_s" in entry["backends"]["ml4ep-cpp"]
    for b in BACKENDS:
        assert b in table
    assert "b=1 ms/call" in table and "b=8 /s" in table
    text = (d / "docs" / "benchmarks.md").read_text()
    assert "kept text" in text and "<!-- bench:begin -->" in text and "| ml4ep-cpp | ok |" in text
    for name in rep["models"]:
        assert f"![{name}](figures/bench_{name}.png)" in text
        png = d / "docs" / "figures" / f"bench_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run replaces the section instead of appending another
    R.write_markdown(rep, d / "docs" / "benchmarks.md")
    assert (d / "docs" / "benchmarks.md").read_text().count("<!-- bench:begin -->") == 1


def test_torch_compile_backend(tmp_path):
    """torch.compile (inductor on the CPU, with the C++ compiler) agrees with onnxruntime and is timed."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    job = _job(tmp_path, "torch-compile")
    res = runmod._worker(job, tmp_path / "job.json", 600)
    assert res["status"] == "ok", res
    assert res["first_s"] > res["batches"]["2"]["ms"][0] / 1e3  # the first call compiles


def test_unavailable_backend_names_the_extra(monkeypatch, tmp_path):
    fake = B.Backend("jax", "x", "python", (("no_such_module_for_ml4ep", "jax"),))
    monkeypatch.setitem(B.BACKENDS, "jax", fake)
    assert B.missing_dependency("jax") == \
        "the 'no_such_module_for_ml4ep' package is not installed (pip install 'ml4ep[jax]')"
    rep = runmod.run(runmod.Config(models=["dense"], backends=["onnxruntime", "jax"], batches=[1], size="small",
                                   repeats=1, block_s=0.001, work=str(tmp_path)))
    assert rep["models"]["dense"]["backends"]["jax"]["status"] == "unavailable"
    assert rep["models"]["dense"]["backends"]["onnxruntime"]["status"] == "ok"
    assert "jax  unavailable: the 'no_such_module_for_ml4ep' package" in R.table(rep)


@pytest.mark.parametrize("argv, message", [
    (["--models", "vae,bdt"], "unknown bench models ['bdt']"),
    (["--backends", "tensorrt"], "unknown bench backends ['tensorrt']"),
    (["--batch", "1,x"], "--batch takes comma-separated integers"),
    (["--batch", "0"], "must be at least 1"),
])
def test_bad_arguments(argv, message, capsys):
    assert cli.main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
