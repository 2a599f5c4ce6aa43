"""The whole pipeline of ``make demo`` sized down: simulate -> train both models -> export and compile (C++ hooks,
the flow hook built and run) -> generate with the compiled models -> evaluate -> report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml4ep.fastsim import io
from ml4ep.fastsim.pipeline import PipelineError, run


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    s = run(out, geometry="ds1-photons", n_train=500, n_reference=200, energy=(1.0, 100.0), vae_epochs=2,
            flow_epochs=3, flow_seconds=60, flow_options={"dim": 16, "depth": 1, "heads": 2, "warmup": 5},
            classifier={"hidden": 16, "n_hidden_layers": 1, "epochs": 2, "device": "cpu", "standardise": True},
            progress=False, threads=1)
    return out, s


def test_every_stage_leaves_its_output(summary):
    out, s = summary
    for name in ("train.h5", "reference.h5", "gflash.h5", "vae/best.pt", "flow/best.pt", "vae/decoder.onnx",
                 "flow/denoiser.onnx", "flow/postprocess.onnx", "cpp_vae/shower_hook.hpp",
                 "cpp_flow/shower_hook.hpp", "cpp_flow/denoiser.hpp", "cpp_flow/postprocess.hpp", "report.md",
                 "pipeline.json", "report_vae/index.html", "report_flow/index.html", "report_gflash/index.html"):
        assert (out / name).exists(), name
    assert s["flow"]["epochs_run"] == 3 and s["vae"]["epochs_run"] >= 1
    assert json.loads((out / "pipeline.json").read_text())["samples"].keys() == s["samples"].keys()


def test_generated_samples_match_the_reference_energies(summary):
    out, s = summary
    e_ref, _ = io.read(out / "reference.h5")
    for name in ("vae", "flow"):
        e, showers = io.read(out / f"generated_{name}.h5")
        np.testing.assert_array_equal(e, e_ref)
        assert showers.shape == (200, 368) and (showers >= 0).all() and np.isfinite(showers).all()
    for label in ("GFlash (ideal)", "VAE", "flow model"):
        row = s["samples"][label]
        assert 0.0 <= row["auc_low"] <= 1.0 and 0.0 <= row["auc_high"] <= 1.0 and row["fpd_x1e3"] >= 0


def test_the_cpp_hook_ran(summary):
    _, s = summary
    lines = s["hook"]["output"]
    assert len(lines) == 3 and all("E_dep" in line for line in lines)
    assert [float(line.split("E_inc ")[1].split()[0]) for line in lines] == [1.0, 10.0, 100.0]


def test_report_table(summary):
    out, _ = summary
    text = (out / "report.md").read_text()
    for label in ("GFlash (ideal)", "VAE", "flow model"):
        assert f"| {label} |" in text


def test_bad_settings(tmp_path):
    with pytest.raises(PipelineError, match="n_train"):
        run(tmp_path, n_train=0)
