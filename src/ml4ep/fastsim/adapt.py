"""Adaptation after MetaHEP: fine-tune a shower model pretrained on one calorimeter (geometry or material) to
another with few samples, and compare it with training from scratch on the same samples and budget.

>>> from ml4ep.fastsim.adapt import compare, to_markdown
>>> result = compare("runs/siw", "pbsc_1k.h5", "pbsc_ref.h5", "runs/adapt", epochs=20)  # doctest: +SKIP
>>> print(to_markdown(result))                                                         # doctest: +SKIP

Arms: ``finetune`` (``train(..., init_from=pretrained)``: the pretrained weights *and* preprocessing, or with
``refit_preprocessing=True`` the pretrained weights and a preprocessing fitted to the target showers),
``scratch`` (a fresh model of the pretrained model's architecture, preprocessing from the target samples) and,
optionally, ``pretrained`` (the pretrained model as is, zero-shot). Both trained arms get the same training
settings, seed, data and budget (``epochs`` or ``max_seconds``). Every arm generates showers for the incident
energies of the reference sample (same noise for all arms) with the chosen backend (default the compiled
``ml4ep`` one) and is compared with the reference by :func:`ml4ep.fastsim.evaluate.evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from ..errors import Ml4epError
from . import io
from .evaluate import jsonable
from .geometry import BUILTIN
from .geometry import get as get_geometry

log = logging.getLogger(__name__)

ARMS = ("finetune", "scratch", "pretrained")
#: training arguments fixed by the pretrained model's architecture, per model kind
ARCHITECTURE = {"vae": ("latent", "hidden", "beta", "loss"),
                "diffusion": ("dim", "depth", "heads", "mlp_ratio", "tokens", "steps", "sampler")}
RESULT = "adapt.json"


class AdaptError(Ml4epError, ValueError):
    """Invalid adaptation input: a missing or unusable pretrained checkpoint, files of different voxel counts."""


def target_geometry(geometry, calorimeter):
    """``geometry`` with ``meta["sampling_fraction_applied"]`` set to the calorimeter's sampling fraction, so that
    :func:`ml4ep.fastsim.gflash.simulate` stores calibrated energies (the deposited ones) for another sampling
    calorimeter with the same voxelisation (ds2 and ds3 say Par04's 0.033)."""
    geo = get_geometry(geometry)
    return dataclasses.replace(geo, meta={**geo.meta, "sampling_fraction_applied": float(calorimeter.sampling_fraction)})


def _geometry_for(geometry, n_voxels: int, source: str):
    if geometry is not None:
        return get_geometry(geometry)
    for name in BUILTIN:
        geo = get_geometry(name)
        if geo.n_voxels == n_voxels:
            return geo
    raise AdaptError(f"{source}: {n_voxels} voxels match no built-in geometry; pass geometry=")


def _architecture(ck: dict) -> dict:
    """The training arguments that rebuild the pretrained model's architecture from scratch."""
    cfg = ck["config"]
    if ck["kind"] == "vae":
        return {"latent": int(cfg["latent"]), "hidden": tuple(cfg["hidden"]), "beta": float(cfg["beta"]),
                "loss": cfg["loss"]}
    return {"dim": int(cfg["dim"]), "depth": int(cfg["depth"]), "heads": int(cfg["heads"]),
            "mlp_ratio": float(cfg["mlp_ratio"]), "tokens": int(cfg["n_tokens"]), "steps": int(cfg["steps"]),
            "sampler": cfg["sampler"]}


def _summary(ev: dict) -> dict:
    """The headline numbers of an evaluation (None where a metric was not asked for)."""
    sp = ev.get("separation_power")
    return {"auc_high": ev["classifier_high"]["auc"] if "classifier_high" in ev else None,
            "auc_low": ev["classifier_low"]["auc"] if "classifier_low" in ev else None,
            "fpd_x1e3": ev["fpd"]["value_x1e3"] if "fpd" in ev else None,
            "fpd_error_x1e3": ev["fpd"]["error_x1e3"] if "fpd" in ev else None,
            "kpd_x1e3": ev["kpd"]["value_x1e3"] if "kpd" in ev else None,
            "kpd_error_x1e3": ev["kpd"]["error_x1e3"] if "kpd" in ev else None,
            "sep_e_ratio": float(sp["e_ratio"]) if sp and "e_ratio" in sp else None,
            "sep_mean": float(np.mean(list(sp.values()))) if sp else None}


def compare(pretrained, train_file, reference_file, out_dir, *, epochs: int | None = None,
            max_seconds: float | None = None, n_generate: int | None = None, geometry=None, seed: int = 0,
            backend: str = "ml4ep", zero_shot: bool = True, metrics=("hist", "fpd", "kpd", "cls-high"),
            classifier: dict | None = None, fpd_kpd: dict | None = None, workers: int | None = 1,
            batch_size: int = 256, lr: float = 1e-3, patience: int | None = None, validation_split: float = 0.2,
            device="cpu", refit_preprocessing: bool = False, **train_kwargs) -> dict:
    """Fine-tune ``pretrained`` (a run directory or ``.pt``) on ``train_file`` and train the same architecture from
    scratch on it with the same settings and budget; evaluate both (and, with ``zero_shot``, the pretrained model
    unchanged) against ``reference_file``. Everything is written under ``out_dir`` (``<arm>/`` run, generated
    showers, ``metrics.json``; ``adapt.json`` the result).

    Budget: ``epochs`` (default 10) or ``max_seconds`` (each trained arm stops after the epoch that passes it;
    then ``epochs`` is only an upper bound). ``patience`` defaults to None (no early stop) so that an epoch budget
    gives both arms the same number of optimizer steps. The architecture is the pretrained model's; further
    ``train_kwargs`` (e.g. ``ema_decay``, ``warmup``) go to both arms. ``n_generate``: how many reference showers
    (the first ones) to compare with (default all); as many are generated, for their incident energies.
    ``metrics``, ``classifier``, ``fpd_kpd``, ``workers``: see :func:`ml4ep.fastsim.evaluate.evaluate`.

    Returns ``{"model", "geometry", "pretrained", "train_file", "reference_file", "n_train", "n_reference",
    "budget", "seed", "backend", "arms": {arm: {"steps", "epochs", "train_seconds", "best_val_loss", "best_epoch",
    "first_epoch_loss", "generate_seconds", "run", "generated", "metrics" (auc_high, auc_low, fpd_x1e3,
    fpd_error_x1e3, kpd_x1e3, kpd_error_x1e3, sep_e_ratio, sep_mean), "evaluation" (the full result)}}}``.
    """
    from .evaluate import evaluate
    from .generate import generate
    from .train import TrainError, load_checkpoint, train

    try:
        ck = load_checkpoint(pretrained)
    except TrainError as exc:
        raise AdaptError(f"pretrained model: {exc}") from None
    kind = ck["kind"]
    if ck["config"].get("condition_names"):
        raise AdaptError(f"{ck['path']}: models with extra conditions are not supported by the comparison")
    n_vox = int(ck["config"]["n_voxels"])
    infos = {}
    for what, path in (("train_file", train_file), ("reference_file", reference_file)):
        infos[what] = io.info(path)  # names the file when it is missing or malformed
        if infos[what]["n_voxels"] != n_vox:
            raise AdaptError(f"{path}: {infos[what]['n_voxels']} voxels per shower, but the pretrained model "
                             f"{ck['path']} has {n_vox}")
    geo = _geometry_for(geometry, n_vox, ck["path"])
    if geo.n_voxels != n_vox:
        raise AdaptError(f"geometry {geo.name!r} has {geo.n_voxels} voxels, but the pretrained model {ck['path']} "
                         f"has {n_vox}")
    n_ref = infos["reference_file"]["n_showers"]
    n = n_ref if n_generate is None else int(n_generate)
    if not 1 <= n <= n_ref:
        raise AdaptError(f"n_generate must be in 1..{n_ref} (the showers of {reference_file}), got {n_generate!r}")
    clash = sorted(set(train_kwargs) & set(ARCHITECTURE[kind]))
    if clash:
        raise AdaptError(f"{', '.join(clash)}: the architecture is the pretrained model's ({ck['path']}); "
                         "do not pass it")
    if epochs is None:
        epochs = 10 if max_seconds is None else 1_000_000
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(model=kind, epochs=int(epochs), max_seconds=max_seconds, batch_size=batch_size, lr=lr,
                  patience=patience, validation_split=validation_split, seed=int(seed), device=device,
                  progress=False, geometry=geo, conditions=list(ck["config"].get("condition_names", [])),
                  **train_kwargs)
    e_ref = io.read(reference_file, geo, stop=n, check=False)[0]
    result = {"model": kind, "geometry": geo.name, "pretrained": ck["path"], "train_file": str(train_file),
              "reference_file": str(reference_file), "n_train": infos["train_file"]["n_showers"],
              "n_reference": n, "budget": {"epochs": None if max_seconds is not None else int(epochs),
                                            "max_seconds": max_seconds},
              "seed": int(seed), "backend": backend, "refit_preprocessing": bool(refit_preprocessing), "arms": {}}
    arms = [a for a in ARMS if zero_shot or a != "pretrained"]
    for arm in arms:
        arm_dir = out / arm
        entry: dict = {"steps": 0, "epochs": 0, "train_seconds": 0.0, "best_val_loss": None, "best_epoch": None,
                       "first_epoch_loss": None}
        if arm == "pretrained":
            source = Path(ck["path"])
        else:
            arm_dir.mkdir(parents=True, exist_ok=True)
            kw = dict(common, init_from=ck["path"], refit_preprocessing=bool(refit_preprocessing)) \
                if arm == "finetune" else dict(common, **_architecture(ck))
            log.info("adapt: training the %s arm on %s", arm, train_file)
            res = train(train_file, arm_dir / "run", **kw)
            entry.update(steps=res["steps"], epochs=res["epochs_run"], train_seconds=res["seconds"],
                         best_val_loss=res["best_val_loss"], best_epoch=res["best_epoch"],
                         first_epoch_loss=res["history"][0]["train_loss"] if res["history"] else None)
            source = arm_dir / "run"
        arm_dir.mkdir(parents=True, exist_ok=True)
        gen_path = arm_dir / "generated.h5"
        t0 = time.perf_counter()
        generate(source, e_ref, backend=backend, seed=int(seed) + 1, output=gen_path, geometry=geo)
        entry["generate_seconds"] = time.perf_counter() - t0
        ev = evaluate(reference_file, gen_path, geo, outdir=arm_dir / "evaluation", metrics=metrics,
                      classifier=classifier, fpd_kpd=fpd_kpd, seed=int(seed), plots=False, max_showers=n,
                      workers=workers)
        entry.update(run=str(source), generated=str(gen_path), metrics=_summary(ev), evaluation=ev)
        result["arms"][arm] = entry
        log.info("adapt: %s: %d steps, %.1f s, %s", arm, entry["steps"], entry["train_seconds"], entry["metrics"])
    (out / RESULT).write_text(json.dumps(jsonable(result), indent=1, sort_keys=True))
    return result


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}"


def to_markdown(result: dict) -> str:
    """A markdown table of a :func:`compare` result: one row per arm."""
    lines = ["| arm | steps | epochs | train s | best val loss | AUC (high-level) | FPD x1e3 | KPD x1e3 | "
             "sep. power E_tot/E_inc | mean sep. power |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"finetune": "fine-tuned", "scratch": "from scratch", "pretrained": "pretrained, not tuned"}
    for arm, a in result["arms"].items():
        m = a["metrics"]
        fpd = "-" if m["fpd_x1e3"] is None else f"{m['fpd_x1e3']:.3g} +- {m['fpd_error_x1e3']:.2g}"
        kpd = "-" if m["kpd_x1e3"] is None else f"{m['kpd_x1e3']:.3g} +- {m['kpd_error_x1e3']:.2g}"
        lines.append(f"| {names.get(arm, arm)} | {a['steps']} | {a['epochs']} | {a['train_seconds']:.1f} | "
                     f"{_fmt(a['best_val_loss'], 4)} | {_fmt(m['auc_high'])} | {fpd} | {kpd} | "
                     f"{_fmt(m['sep_e_ratio'])} | {_fmt(m['sep_mean'])} |")
    return "\n".join(lines)
