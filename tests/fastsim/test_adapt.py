"""MetaHEP-style adaptation: the lead/scintillator GFlash calorimeter, and fine-tuning against training from scratch
(ml4ep.fastsim.adapt) on tiny ds1-photons samples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ml4ep.errors import Ml4epError
from ml4ep.fastsim import features, gflash, io
from ml4ep.fastsim.adapt import AdaptError, compare, target_geometry, to_markdown
from ml4ep.fastsim.geometry import get
from ml4ep.fastsim.train import load_checkpoint, train

GEO = "ds1-photons"
PBSC = gflash.Calorimeter.pb_scintillator()
VAE_KW = dict(batch_size=64, latent=4, hidden=(32, 16), seed=0, device="cpu", progress=False)
CLS = {"hidden": 16, "epochs": 2, "standardise": True}


# ------------------------------------------------------------------------------------------- the calorimeter
def test_material_constants_and_effective_numbers():
    assert (gflash.LEAD.Z, gflash.LEAD.A, gflash.LEAD.density, gflash.LEAD.X0_mm) == (82.0, 207.2, 11.35, 5.612)
    sc = gflash.POLYSTYRENE
    assert (sc.density, sc.X0_mm) == (1.032, 413.1)
    # (C8H8)n: mass-weighted Z and A
    w_c = 8 * 12.011 / (8 * 12.011 + 8 * 1.008)
    assert sc.Z == pytest.approx(6 * w_c + (1 - w_c), abs=0.05)
    assert sc.A == pytest.approx(12.011 * w_c + 1.008 * (1 - w_c), abs=0.1)
    # X0 of a stack: the thickness-weighted harmonic mean (2.0 mm Pb + 1.4 mm scintillator)
    assert PBSC.X0_eff == pytest.approx(3.4 / (2.0 / 5.612 + 1.4 / 413.1), rel=1e-12)
    assert PBSC.layer_thickness_mm == pytest.approx(3.4)
    # MIP sampling fraction from the energy lost per layer (MeV): scintillator / (lead + scintillator)
    loss_sc, loss_pb = 0.14 * 1.032 * 1.956, 0.20 * 11.35 * 1.122
    assert PBSC.sampling_fraction == pytest.approx(loss_sc / (loss_sc + loss_pb), rel=1e-12)
    assert PBSC.stochastic_term == pytest.approx(0.13 * math.sqrt(1.4 / PBSC.sampling_fraction / (0.3 / 0.033)))
    siw = gflash.Calorimeter.par04_siw()
    assert PBSC.X0_eff > 2 * siw.X0_eff and PBSC.R_M_eff > 1.7 * siw.R_M_eff
    assert gflash.Calorimeter.pb_scintillator(sampling_fraction=0.05).sampling_fraction == 0.05
    with pytest.raises(gflash.GFlashError):
        gflash.Calorimeter.pb_scintillator(d_lead_mm=0.0)


def test_pb_scintillator_showers_are_deeper_and_wider_in_ds2():
    geo = get("ds2")
    tgt = target_geometry(geo, PBSC)
    assert tgt.n_voxels == geo.n_voxels and tgt.meta["sampling_fraction_applied"] == PBSC.sampling_fraction
    assert geo.meta["sampling_fraction_applied"] == 0.033  # the original is untouched
    e, s_siw = gflash.simulate(geo, 60, energy=10.0, seed=4)
    _, s_pb = gflash.simulate(tgt, 60, energy=10.0, seed=4, calorimeter=PBSC)
    _, s_raw = gflash.simulate(geo, 60, energy=10.0, seed=4, calorimeter=PBSC)
    z = (np.arange(geo.n_layers) + 0.5) * geo.z_cell_mm

    def depth_and_width(s):
        h = features.compute(e, s, geo)
        depth = (h.e_layer * z).sum(1) / h.e_layer.sum(1)
        width = np.nansum(h.width_r * h.e_layer, 1) / h.e_layer.sum(1)
        return depth.mean(), width.mean(), np.median(h.e_tot / h.e_inc)

    d_siw, w_siw, r_siw = depth_and_width(s_siw)
    d_pb, w_pb, r_pb = depth_and_width(s_pb)
    # mean depth scales with X0_eff (shower maximum T_mm from the parameterisation)
    t = [gflash.longitudinal_parameters(1e4, c)["T_mm"] for c in (gflash.Calorimeter.par04_siw(), PBSC)]
    assert d_pb / d_siw == pytest.approx(float(t[1] / t[0]), rel=0.25) and d_pb > 1.6 * d_siw
    assert w_pb > 1.3 * w_siw
    assert 0.85 < r_pb < 1.05 and 0.9 < r_siw < 1.05  # calibrated: little leakage at 10 GeV
    # the plain ds2 geometry divides by 0.033 instead: the same deposits, scaled by f / 0.033
    scale = PBSC.sampling_fraction / 0.033
    assert np.median(s_raw.sum(1) / s_pb.sum(1)) == pytest.approx(scale, rel=1e-3)


# ------------------------------------------------------------------------------------------- the comparison
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapt")
    e, s = gflash.simulate(GEO, 600, energy=(1.0, 100.0), seed=1)
    src = io.write(d / "siw.h5", e, s, geometry=GEO)
    e, s = gflash.simulate(GEO, 300, energy=(1.0, 100.0), seed=2, calorimeter=PBSC)
    tgt = io.write(d / "pbsc_train.h5", e, s, geometry=GEO)
    e, s = gflash.simulate(GEO, 200, energy=(1.0, 100.0), seed=3, calorimeter=PBSC)
    ref = io.write(d / "pbsc_ref.h5", e, s, geometry=GEO)
    torch.set_num_threads(1)
    train(src, d / "vae", epochs=3, geometry=GEO, **VAE_KW)
    return d, src, tgt, ref


@pytest.fixture(scope="module")
def vae_result(files):
    d, _, tgt, ref = files
    return compare(d / "vae", tgt, ref, d / "cmp", epochs=2, batch_size=64, lr=2e-3, seed=5, backend="ml4ep",
                   metrics=("hist", "kpd", "cls-high"), classifier=CLS, fpd_kpd={"batch_size": 100})


def _flat(state, skip=("voxel_scale", "log_e_range", "cond_")):
    return torch.cat([v.reshape(-1).float() for k, v in state.items() if not any(s in k for s in skip)])


def test_vae_compare_result_and_equal_budget(files, vae_result):
    d = files[0]
    r = vae_result
    assert set(r) >= {"model", "geometry", "pretrained", "train_file", "reference_file", "n_train", "n_reference",
                      "budget", "seed", "backend", "arms"}
    assert r["model"] == "vae" and r["n_train"] == 300 and r["n_reference"] == 200 and r["budget"]["epochs"] == 2
    assert list(r["arms"]) == ["finetune", "scratch", "pretrained"]
    # 240 training showers (validation split 0.2) in batches of 64: 4 steps per epoch, the same for both arms
    assert r["arms"]["finetune"]["steps"] == r["arms"]["scratch"]["steps"] == 2 * math.ceil(240 / 64)
    assert r["arms"]["pretrained"]["steps"] == 0
    for a in r["arms"].values():
        assert set(a) >= {"steps", "epochs", "train_seconds", "best_val_loss", "generate_seconds", "metrics",
                          "evaluation", "generated", "run"}
        assert set(a["metrics"]) >= {"auc_high", "fpd_x1e3", "kpd_x1e3", "sep_e_ratio", "sep_mean"}
        assert 0.0 <= a["metrics"]["auc_high"] <= 1.0 and 0.0 <= a["metrics"]["sep_e_ratio"] <= 1.0
        assert a["metrics"]["fpd_x1e3"] is None and a["metrics"]["kpd_x1e3"] is not None
        e_gen, s_gen = io.read(a["generated"])
        np.testing.assert_allclose(e_gen, io.read(files[3])[0], rtol=1e-6)  # the reference's energies
        assert s_gen.shape == (200, 368)
    saved = json.loads((d / "cmp" / "adapt.json").read_text())
    assert saved["arms"]["scratch"]["steps"] == r["arms"]["scratch"]["steps"]
    table = to_markdown(r).splitlines()
    assert len(table) == 5 and table[2].startswith("| fine-tuned | 8 | 2 |") and "from scratch" in table[3]


def test_finetuning_starts_from_the_pretrained_model(files, vae_result):
    pre = load_checkpoint(files[0] / "vae")["model"]
    ft = load_checkpoint(vae_result["arms"]["finetune"]["run"])["model"]
    sc = load_checkpoint(vae_result["arms"]["scratch"]["run"])["model"]
    # the preprocessing is the pretrained model's, not recomputed from the target samples
    for key in ("voxel_scale", "log_e_range"):
        names = [k for k in pre if k.endswith(key)]
        assert names
        for k in names:
            assert torch.equal(ft[k], pre[k])
    assert not torch.equal(sc["voxel_scale"], pre["voxel_scale"])
    # 8 Adam steps of lr 2e-3 stay near the pretrained weights; a fresh initialisation does not
    w_pre, w_ft, w_sc = _flat(pre), _flat(ft), _flat(sc)
    assert torch.linalg.norm(w_ft - w_pre) < 0.3 * torch.linalg.norm(w_sc - w_pre)
    assert torch.max(torch.abs(w_ft - w_pre)) <= 8 * 2e-3 * 1.01  # Adam moves a weight by at most ~lr per step


def test_diffusion_compare_with_a_time_budget(files, tmp_path):
    d, src, tgt, ref = files
    train(src, tmp_path / "flow", model="diffusion", epochs=1, batch_size=64, dim=16, depth=1, heads=2, steps=2,
          geometry=GEO, progress=False, device="cpu")
    r = compare(tmp_path / "flow", tgt, ref, tmp_path / "cmp", max_seconds=1e-3, batch_size=64, backend="torch",
                zero_shot=False, metrics=("hist",), n_generate=50, warmup=4)
    assert r["model"] == "diffusion" and list(r["arms"]) == ["finetune", "scratch"]
    assert r["budget"] == {"epochs": None, "max_seconds": 1e-3}
    # the budget is passed after the first epoch: one epoch each
    assert r["arms"]["finetune"]["epochs"] == r["arms"]["scratch"]["epochs"] == 1
    assert r["arms"]["finetune"]["steps"] == r["arms"]["scratch"]["steps"] == 4
    assert r["arms"]["finetune"]["metrics"]["auc_high"] is None and r["n_reference"] == 50
    pre = load_checkpoint(tmp_path / "flow")
    ft = load_checkpoint(r["arms"]["finetune"]["run"])
    sc = load_checkpoint(r["arms"]["scratch"]["run"])
    assert ft["config"] == pre["config"] == sc["config"]
    for k in ("y_coef", "y_var", "l_coef", "l_var", "log_e_range"):
        keys = [n for n in pre["model"] if n.endswith(k)]
        assert keys and all(torch.equal(ft["model"][n], pre["model"][n]) for n in keys)


def test_errors_name_the_file(files, tmp_path):
    d, _, tgt, ref = files
    missing = tmp_path / "nothing"
    with pytest.raises(AdaptError, match="nothing"):
        compare(missing, tgt, ref, tmp_path / "out")
    rng = np.random.default_rng(0)
    wrong = io.write(tmp_path / "wrong.h5", np.full((5, 1), 1e4), rng.random((5, 533)))
    with pytest.raises(AdaptError, match=r"wrong\.h5.*533 voxels.*368"):
        compare(d / "vae", wrong, ref, tmp_path / "out")
    with pytest.raises(AdaptError, match=r"wrong\.h5"):
        compare(d / "vae", tgt, wrong, tmp_path / "out")
    with pytest.raises(AdaptError, match="latent"):
        compare(d / "vae", tgt, ref, tmp_path / "out", latent=8)
    with pytest.raises(AdaptError, match="n_generate"):
        compare(d / "vae", tgt, ref, tmp_path / "out", n_generate=201)
    with pytest.raises(AdaptError, match="ds2"):
        compare(d / "vae", tgt, ref, tmp_path / "out", geometry="ds2")
    assert issubclass(AdaptError, Ml4epError)
    assert not (tmp_path / "out" / "finetune").exists()
