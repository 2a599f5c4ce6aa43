"""The progress bars of the fastsim commands (simulate, train, generate, evaluate): drawn on a terminal, silent with
``-q``, ``progress=False`` or a stream that is not a terminal; and the report page's headline table."""

from __future__ import annotations

import io as stdio
import json
import re
import sys

import pytest

from ml4ep.cli import main
from ml4ep.fastsim import gflash, io, report
from ml4ep.fastsim.train import train

GEO = "ds1-photons"
TINY_VAE = dict(epochs=2, hidden=(32, 16), latent=4, device="cpu", batch_size=64, seed=1)


class Terminal(stdio.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(text: str) -> list[str]:
    """What a terminal showed, one entry per redraw of the bar or printed line."""
    return [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]


def _bar_drawn(text: str) -> bool:
    return re.search(r"\d+%\|", text) is not None


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    e, s = gflash.simulate(GEO, 300, energy=(1.0, 100.0), seed=5)
    return io.write(tmp_path_factory.mktemp("showers") / "showers.h5", e, s, geometry=GEO)


@pytest.fixture(scope="module")
def vae_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "run"
    train(data, run, progress=False, **TINY_VAE)
    return run


def _simulate(tmp_path, *extra):
    return main(["fastsim", "simulate", "--geometry", GEO, "--n", "300", "--energy", "1:100", "--seed", "3",
                 "--chunk-size", "100", "-o", str(tmp_path / "sim.h5"), *extra])


def test_simulate_draws_a_bar_in_showers_on_a_terminal(tmp_path, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert _simulate(tmp_path) == 0
    lines = _lines(term.getvalue())
    assert lines[-1].startswith("simulate: 100%") and "300/300" in lines[-1] and "shower/s" in lines[-1]
    assert io.info(tmp_path / "sim.h5")["n_showers"] == 300


def test_simulate_quiet_or_not_a_terminal_draws_nothing(tmp_path, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert _simulate(tmp_path, "-q") == 0
    assert term.getvalue() == ""
    log = stdio.StringIO()  # a log file or a pipe
    monkeypatch.setattr(sys, "stderr", log)
    assert _simulate(tmp_path) == 0
    assert log.getvalue() == ""


def test_train_bar_per_epoch_with_the_running_loss(data, tmp_path, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    r = train(data, tmp_path / "run", progress=True, **TINY_VAE)
    text = term.getvalue()
    steps = r["steps"] // 2  # steps per epoch
    assert steps >= 2
    lines = _lines(text)
    for epoch in (1, 2):
        bars = [ln for ln in lines if ln.startswith(f"epoch {epoch}/2:") and "%|" in ln]
        assert bars and ("step/s" in bars[-1] or "s/step" in bars[-1])
        # the last draw of the epoch's bar: every step, the running mean loss and its terms
        assert f"{steps}/{steps}" in bars[-1]
        assert re.search(r"loss -?[\d.]+(e[-+]\d+)? \(recon [\d.e+-]+, kl [\d.e+-]+\)", bars[-1])
        # the summary line, whole on a line of its own
        summary = [ln for ln in lines if ln.startswith(f"epoch {epoch}/2: train ")]
        assert len(summary) == 1 and "val " in summary[0]
    # the bar's mean loss of the epoch is the one of the summary and history.json
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    last_bar = [ln for ln in lines if ln.startswith("epoch 2/2:") and "%|" in ln][-1]
    assert f"loss {hist[-1]['train_loss']:.4g} " in last_bar
    # the same run without the bar gives the same history
    r2 = train(data, tmp_path / "quiet", progress=False, **TINY_VAE)
    assert term.getvalue() == text
    assert [h["train_loss"] for h in r2["history"]] == [h["train_loss"] for h in hist]


def test_train_draws_no_bar_when_not_a_terminal(data, tmp_path, monkeypatch):
    log = stdio.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    train(data, tmp_path / "run", progress=True, **{**TINY_VAE, "epochs": 1})
    lines = log.getvalue().splitlines()  # only the summary line, as before
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1: train ") and not _bar_drawn(log.getvalue())


def test_generate_bar_and_quiet(vae_run, tmp_path, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    cmd = ["fastsim", "generate", str(vae_run), "--n", "250", "--energy", "1:100", "--batch-size", "100"]
    assert main([*cmd, "-o", str(tmp_path / "a.h5")]) == 0
    lines = _lines(term.getvalue())
    assert lines[-1].startswith("generate: 100%") and "250/250" in lines[-1] and "shower/s" in lines[-1]
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main([*cmd, "-q", "-o", str(tmp_path / "b.h5")]) == 0
    assert term.getvalue() == ""
    assert io.info(tmp_path / "b.h5")["n_showers"] == 250


def test_evaluate_bars_and_quiet(data, tmp_path, monkeypatch):
    e, s = gflash.simulate(GEO, 300, energy=(1.0, 100.0), seed=6)
    gen = io.write(tmp_path / "gen.h5", e, s, geometry=GEO)
    cmd = ["fastsim", "evaluate", "--reference", str(data), "--generated", str(gen), "--geometry", GEO,
           "--metrics", "hist,kpd,cls-high", "--cls-hidden", "16", "--cls-layers", "1", "--cls-epochs", "3",
           "--device", "cpu", "--no-plots"]
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main([*cmd, "-o", str(tmp_path / "rep")]) == 0
    text = term.getvalue()
    # each stage's bar, drawn as it starts: the showers of each sample, the KPD batches, the classifier's epochs
    for start in ("reference:   0%", "generated:   0%", "KPD:   0%", "classifier, high-level:   0%"):
        assert start in text
    assert "0/300 [" in text and "0/10 [" in text and "0/3 [" in text
    assert not _bar_drawn(text.split("\r")[-1])  # the bars are cleared at the end
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main([*cmd, "-q", "-o", str(tmp_path / "rep2")]) == 0
    assert term.getvalue() == ""


def test_report_page_puts_the_headline_first(tmp_path):
    sp = {"e_ratio": 0.012, "e_layer_0": 0.02, "e_layer_1": 0.04, "voxel": float("nan")}
    result = {"geometry": GEO, "reference": "ref.h5", "generated": "gen.h5", "n_reference": 300,
              "n_generated": 300, "separation_power": sp, "separation_power_summary": {"e_layer": 0.03},
              "fpd": {"value_x1e3": 1.5, "error_x1e3": 0.25}, "kpd": {"value_x1e3": 0.02, "error_x1e3": 0.01},
              "classifier_high": {"auc": 0.5321, "jsd": 0.01}}
    report.write_index(tmp_path, result, ["energy_and_voxels.png", "mean_shower.png"])
    page = (tmp_path / "index.html").read_text()
    head_at, details_at, img_at = page.index("id='headline'"), page.index("id='details'"), page.index("<img")
    assert head_at < details_at < img_at
    head = page[head_at:page.index("</table>", head_at)]
    assert "E_tot / E_inc</td><td>0.012<" in head
    assert "mean over 3 histograms</td><td>0.024<" in head  # the NaN of an empty histogram left out
    assert "FPD x 1e3</td><td>1.5 &plusmn; 0.25" in head and "KPD x 1e3</td><td>0.02 &plusmn; 0.01" in head
    assert "high-level classifier</td><td>0.5321<" in head and "low-level" not in head
    # a result without any of the headline numbers: no headline table
    report.write_index(tmp_path, {k: result[k] for k in ("geometry", "n_reference", "n_generated")}, [])
    assert "headline" not in (tmp_path / "index.html").read_text()
