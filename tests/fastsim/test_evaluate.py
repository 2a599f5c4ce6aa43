"""``ml4ep fastsim simulate`` and ``evaluate`` end to end: a second sample of the same generator is not told
apart, distorted samples (energy x1.1, radial profile x1.3) are; the report holds every metric by name."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ml4ep.cli import main
from ml4ep.fastsim import gflash, io
from ml4ep.fastsim.evaluate import EvaluationError, evaluate
from ml4ep.fastsim.geometry import get

N = 1500
# a quick classifier: small, standardised inputs (the challenge's is 3 x 2048 wide, raw inputs, 50 epochs)
SMALL = {"hidden": 64, "n_hidden_layers": 2, "epochs": 40, "lr": 1e-3, "batch_size": 100, "device": "cpu",
         "standardise": True}
FPD_KPD = {"min_samples": 500, "max_samples": 1500, "num_batches": 5, "num_points": 4, "batch_size": 500}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("showers")
    geo = get("ds2")
    paths = {}
    ref = gflash.simulate(geo, N, energy=(5.0, 50.0), seed=1)
    io.write(d / "ref.h5", *ref, geometry=geo)
    paths["ref"] = d / "ref.h5"
    io.write(d / "same.h5", *gflash.simulate(geo, N, energy=(5.0, 50.0), seed=2), geometry=geo)
    paths["same"] = d / "same.h5"
    e, s = gflash.simulate(geo, N, energy=(5.0, 50.0), seed=3)
    io.write(d / "energy.h5", e, s * 1.1, geometry=geo)
    paths["energy"] = d / "energy.h5"
    cal = gflash.Calorimeter.par04_siw()
    wide = dataclasses.replace(cal, R_M_eff=cal.R_M_eff * 1.3)  # the radial profile 1.3 times wider
    io.write(d / "radial.h5", *gflash.simulate(geo, N, energy=(5.0, 50.0), seed=4, calorimeter=wide), geometry=geo)
    paths["radial"] = d / "radial.h5"
    return paths


def run(samples, key, tmp_path, metrics=("hist", "fpd", "kpd", "cls-high"), plots=False):
    return evaluate(samples["ref"], samples[key], "ds2", tmp_path / key, metrics=metrics, classifier=SMALL,
                    fpd_kpd=FPD_KPD, plots=plots)


def test_same_generator_is_not_told_apart(samples, tmp_path):
    r = run(samples, "same", tmp_path, plots=True)
    auc, n_val = r["classifier_high"]["auc"], r["classifier_high"]["n_val"]
    sigma = np.sqrt((N + N + 1) / (12 * (n_val / 2) ** 2))  # AUC under the null (Mann-Whitney), equal classes
    assert abs(auc - 0.5) < 4 * sigma + 0.03, (auc, sigma)
    assert r["separation_power"]["e_ratio"] < 0.03
    assert r["separation_power_summary"]["e_layer"] < 0.05
    saved = json.loads((tmp_path / "same" / "metrics.json").read_text())
    for key in ("separation_power", "fpd", "kpd", "classifier_high", "n_reference", "geometry"):
        assert key in saved
    assert (tmp_path / "same" / "index.html").exists()
    assert (tmp_path / "same" / "mean_shower.png").stat().st_size > 1000
    assert len(list((tmp_path / "same").glob("*.png"))) >= 8


def test_energy_scale_is_flagged(samples, tmp_path):
    same = run(samples, "same", tmp_path, metrics=("hist", "fpd", "kpd"))
    r = run(samples, "energy", tmp_path, metrics=("hist", "fpd", "kpd"))
    assert r["separation_power"]["e_ratio"] > 10 * max(same["separation_power"]["e_ratio"], 1e-3)
    # FPD and KPD are computed, but with 1500 showers a 10% scale is below their finite-sample floor (the log10
    # layer energies move by 0.04 while the features are scaled by max |value| ~ 8); tests/fastsim/test_metrics.py
    # checks their sensitivity on shifted Gaussians
    assert np.isfinite([r["fpd"]["value"], r["fpd"]["error"], r["kpd"]["value"], r["kpd"]["error"]]).all()


def test_radial_width_is_flagged(samples, tmp_path):
    same = run(samples, "same", tmp_path, metrics=("hist",))
    r = run(samples, "radial", tmp_path, metrics=("hist", "cls-high"))
    assert r["classifier_high"]["auc"] > 0.9
    assert r["separation_power_summary"]["width_r"] > 2.5 * same["separation_power_summary"]["width_r"]
    assert r["separation_power_summary"]["ec_r"] > 2.5 * same["separation_power_summary"]["ec_r"]


def test_low_level_classifier_and_sizes(samples, tmp_path):
    r = evaluate(samples["ref"], samples["energy"], "ds2", None, metrics=("cls-low",), classifier=SMALL,
                 max_showers=800, plots=False)
    assert r["classifier_low"]["auc"] > 0.6 and r["n_reference"] == 800
    with pytest.raises(EvaluationError, match="6480"):
        evaluate(samples["ref"], samples["same"], "ds3", None, metrics=("hist",), plots=False)
    with pytest.raises(EvaluationError, match="unknown metric"):
        evaluate(samples["ref"], samples["same"], "ds2", None, metrics=("nope",), plots=False)


def test_cli_simulate_and_evaluate(tmp_path, capsys):
    out = tmp_path / "a.h5"
    assert main(["fastsim", "simulate", "--geometry", "ds1-photons", "--n", "300", "--energy", "10:10",
                 "--seed", "5", "-o", str(out)]) == 0
    e, s = io.read(out, "ds1-photons")
    assert e.shape == (300, 1) and s.shape == (300, 368) and np.allclose(e, 10000.0)
    assert "seed 5" in capsys.readouterr().out
    assert main(["fastsim", "simulate", "--geometry", "ds1-photons", "--n", "300", "--energy", "10:10",
                 "--seed", "6", "-o", str(tmp_path / "b.h5")]) == 0
    assert main(["fastsim", "evaluate", "--reference", str(out), "--generated", str(tmp_path / "b.h5"),
                 "--geometry", "ds1-photons", "-o", str(tmp_path / "rep"), "--metrics", "hist", "--no-plots"]) == 0
    assert "separation power" in capsys.readouterr().out
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["n_generated"] == 300
    assert main(["fastsim", "simulate", "--n", "3", "--energy", "5:1", "-o", str(tmp_path / "c.h5")]) == 2
    assert "--energy" in capsys.readouterr().err
