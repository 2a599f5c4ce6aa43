"""The whole fast-simulation pipeline on parameterised showers, top to bottom (what ``make demo`` runs).

1. **simulate** training and reference showers with the GFlash-type generator (:mod:`.gflash`), CaloChallenge HDF5;
2. **train** the Par04-style VAE and the CaloDiT-style flow model through ml4ep.data (:func:`.train.train`);
3. **export** both to ONNX and **compile** them with ml4ep.infer, writing the C++ fast-simulation hooks
   (:func:`.hook.export_cpp`); optionally build the flow model's hook with CMake and run it (pure C++);
4. **generate** as many showers as the reference holds, for its incident energies, with the compiled models and, for
   ds2 within 1 GeV - 1 TeV, with the shipped pretrained model ``ds2-default`` (:mod:`.pretrained`; no training);
5. **evaluate** them, and a second GFlash sample as the ideal, against the reference (:func:`.evaluate.evaluate`);
6. **report**: ``report.md`` and ``pipeline.json`` in the output folder, beside one HTML report per sample.

>>> from ml4ep.fastsim.pipeline import run
>>> summary = run("/tmp/demo", n_train=20000, n_reference=10000)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from ..errors import Ml4epError
from . import geometry as geometry_mod
from . import gflash, io

log = logging.getLogger(__name__)

QUICK_CLASSIFIER = {"hidden": 64, "n_hidden_layers": 2, "epochs": 30, "lr": 1e-3, "batch_size": 200, "device": "cpu",
                    "standardise": True}


class PipelineError(Ml4epError, ValueError):
    """Invalid pipeline settings."""


def _say(progress: bool, text: str) -> None:
    log.info(text)
    if progress:
        print(text, flush=True)


def _build_and_run_hook(cpp: Path, energies_gev, progress: bool) -> dict:
    """Build the ``shower_hook`` target with CMake (plain C++17, no BLAS) and generate one shower per energy."""
    if shutil.which("cmake") is None:
        return {"skipped": "cmake not found"}
    build = cpp / "build"
    t0 = time.perf_counter()
    subprocess.run(["cmake", "-S", str(cpp), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DML4EP_USE_BLAS=OFF"], check=True,
                   capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "shower_hook"], check=True, capture_output=True,
                   text=True)
    t_build = time.perf_counter() - t0
    exe = build / "shower_hook"
    out = subprocess.run([str(exe), "--weights", str(cpp / "denoiser.bin"), "--post-weights",
                          str(cpp / "postprocess.bin"), "--seed", "5", *[f"{e:g}" for e in energies_gev]],
                         check=True, capture_output=True, text=True)
    _say(progress, out.stdout.strip())
    return {"build_seconds": t_build, "executable": str(exe), "output": out.stdout.strip().splitlines()}


def run(out_dir, *, geometry="ds2", n_train: int = 20_000, n_reference: int = 10_000, energy=(1.0, 1000.0),
        vae_epochs: int = 8, flow_epochs: int = 1000, flow_seconds: float = 240.0, flow_options: dict | None = None,
        seed: int = 1, classifier: dict | None = None, metrics=("hist", "fpd", "kpd", "cls-low", "cls-high"),
        fpd_kpd: dict | None = None, build_cpp: bool = True, progress: bool = True, threads: int | None = None,
        shipped: str | None = "ds2-default") -> dict:
    """Run the pipeline into ``out_dir``; returns the summary (also written as ``pipeline.json``).

    ``energy``: incident energies in GeV (``(lo, hi)`` log-uniform). ``flow_seconds`` bounds the flow model's
    training time (``flow_epochs`` its epochs); ``flow_options`` go to :func:`.train.train` (e.g. ``dim``).
    ``classifier``: options of the classifier metric (default: a quick 2 x 64 network with standardised inputs; the
    challenge's is 3 x 2048 for 50 epochs). ``build_cpp``: also build and run the flow model's C++ hook.
    ``shipped``: a shipped model also judged when it fits (its geometry, and the energies inside its range).
    """
    import torch

    from .evaluate import evaluate
    from .generate import export, generate
    from .hook import export_cpp
    from .train import train

    for name, v in (("n_train", n_train), ("n_reference", n_reference), ("vae_epochs", vae_epochs)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise PipelineError(f"{name} must be a positive integer, got {v!r}")
    if threads:
        torch.set_num_threads(int(threads))
    geo = geometry_mod.get(geometry)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    files = {"train": out / "train.h5", "reference": out / "reference.h5", "gflash": out / "gflash.h5"}
    sizes = {"train": n_train, "reference": n_reference, "gflash": n_reference}
    for i, (name, path) in enumerate(files.items()):
        e, s = gflash.simulate(geo, sizes[name], energy=energy, seed=seed * 100 + i)
        io.write(path, e, s, geometry=geo)
    timing["simulate_s"] = time.perf_counter() - t0
    _say(progress, f"simulated {n_train} training and 2 x {n_reference} reference showers ({geo.name}, "
                   f"{energy[0]:g}-{energy[1]:g} GeV) in {timing['simulate_s']:.0f} s")

    t0 = time.perf_counter()
    vae = train(files["train"], out / "vae", epochs=vae_epochs, batch_size=256, lr=1e-3, seed=seed,
                validation_split=0.1, patience=3, geometry=geo, progress=False, device="cpu")
    timing["train_vae_s"] = time.perf_counter() - t0
    _say(progress, f"VAE: {vae['epochs_run']} epochs, {vae['steps']} steps, best validation loss "
                   f"{vae['best_val_loss']:.4g}, {timing['train_vae_s']:.0f} s")
    t0 = time.perf_counter()
    flow = train(files["train"], out / "flow", model="diffusion", epochs=flow_epochs, batch_size=256, lr=5e-4,
                 seed=seed, validation_split=0.1, patience=None, geometry=geo, progress=False, device="cpu",
                 max_seconds=flow_seconds, **(flow_options or {}))
    timing["train_flow_s"] = time.perf_counter() - t0
    _say(progress, f"flow model: {flow['epochs_run']} epochs, {flow['steps']} steps, best validation loss "
                   f"{flow['best_val_loss']:.4g}, {timing['train_flow_s']:.0f} s")

    t0 = time.perf_counter()
    cpp = {}
    for name in ("vae", "flow"):
        onnx_path = export(out / name)
        cpp[name] = export_cpp(onnx_path, out / f"cpp_{name}")
    timing["export_compile_s"] = time.perf_counter() - t0
    _say(progress, f"exported and compiled both models with ml4ep.infer, C++ hooks in {out / 'cpp_vae'} and "
                   f"{out / 'cpp_flow'} ({timing['export_compile_s']:.0f} s)")
    hook = None
    if build_cpp:
        t0 = time.perf_counter()
        hook = _build_and_run_hook(out / "cpp_flow", [1.0, 10.0, 100.0], progress)
        timing["hook_s"] = time.perf_counter() - t0

    e_ref = np.concatenate([e.reshape(-1) for e, _ in io.iter_chunks(files["reference"], chunk_size=5000)])
    samples = {"GFlash (ideal)": files["gflash"]}
    gen_seconds = {}
    for name, label in (("vae", "VAE"), ("flow", "flow model")):
        t0 = time.perf_counter()
        path = out / f"generated_{name}.h5"
        generate(out / name, e_ref, backend="ml4ep", seed=seed + 7, output=path, geometry=geo, batch_size=1000)
        gen_seconds[label] = time.perf_counter() - t0
        samples[label] = path
        _say(progress, f"{label}: generated {len(e_ref)} showers with the ml4ep-compiled model in "
                       f"{gen_seconds[label]:.1f} s ({gen_seconds[label] / len(e_ref) * 1e3:.2f} ms per shower)")
    ship = _fitting_shipped(shipped, geo, energy)
    if ship is not None:
        t0 = time.perf_counter()
        path = out / "generated_shipped.h5"
        generate(ship, e_ref, backend="ml4ep", seed=seed + 7, output=path, geometry=geo, batch_size=1000)
        label = f"{ship} (shipped)"
        gen_seconds[label] = time.perf_counter() - t0
        samples[label] = path
        _say(progress, f"{label}: generated {len(e_ref)} showers, no training ({gen_seconds[label]:.1f} s)")
    timing["generate_s"] = float(sum(gen_seconds.values()))

    t0 = time.perf_counter()
    cls = dict(QUICK_CLASSIFIER if classifier is None else classifier)
    small = fpd_kpd if fpd_kpd is not None else (
        None if n_reference >= 10_000 else {"min_samples": max(2, n_reference // 5), "max_samples": n_reference,
                                            "num_batches": 5, "num_points": 5, "batch_size": max(2, n_reference // 2)})
    rows = {}
    for label, path in samples.items():
        key = "shipped" if label.endswith("(shipped)") else label.split()[0].lower()
        r = evaluate(files["reference"], path, geo, out / f"report_{key}", metrics=metrics, classifier=cls,
                     fpd_kpd=small, seed=0)
        row = {"file": str(path), "report": str(out / f"report_{key}" / "index.html")}
        if "classifier_low" in r:
            row["auc_low"] = r["classifier_low"]["auc"]
        if "classifier_high" in r:
            row["auc_high"] = r["classifier_high"]["auc"]
        for k in ("fpd", "kpd"):
            if k in r:
                row[f"{k}_x1e3"], row[f"{k}_err_x1e3"] = r[k]["value_x1e3"], r[k]["error_x1e3"]
        if "separation_power" in r:
            row["sep_e_ratio"] = r["separation_power"]["e_ratio"]
            row["sep_mean"] = float(np.mean(list(r["separation_power"].values())))
        if label in gen_seconds:
            row["generate_ms_per_shower"] = gen_seconds[label] / len(e_ref) * 1e3
        rows[label] = row
        _say(progress, f"{label}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
    timing["evaluate_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_all
    summary = {"geometry": geo.name, "n_train": n_train, "n_reference": n_reference, "energy_gev": list(energy),
               "vae": {k: vae[k] for k in ("epochs_run", "steps", "best_val_loss", "seconds")},
               "flow": {k: flow[k] for k in ("epochs_run", "steps", "best_val_loss", "seconds")},
               "cpp": {k: {"dir": str(v["dir"]), "models": list(v["models"])} for k, v in cpp.items()},
               "hook": hook, "classifier": cls, "samples": rows, "timing": timing}
    (out / "pipeline.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "report.md").write_text(_markdown(summary))
    _say(progress, f"report: {out / 'report.md'} ({timing['total_s']:.0f} s in all)")
    return summary


def _fitting_shipped(name: str | None, geo, energy) -> str | None:
    """``name`` when it is a shipped model for ``geo`` whose energy range holds ``energy`` (GeV); else None."""
    from . import pretrained

    if not name or name not in pretrained.names():
        return None
    meta = pretrained.info(name)
    lo, hi = meta.get("energy_range_gev", (0.0, 0.0))
    if meta.get("geometry") != geo.name or not lo <= float(energy[0]) <= float(energy[-1]) <= hi:
        return None
    return name


def _markdown(s: dict) -> str:
    lines = [f"# ml4ep.fastsim pipeline ({s['geometry']})", "",
             f"{s['n_train']} parameterised training showers, {s['n_reference']} reference showers, "
             f"{s['energy_gev'][0]:g}-{s['energy_gev'][1]:g} GeV. VAE: {s['vae']['epochs_run']} epochs "
             f"({s['vae']['seconds']:.0f} s); flow model: {s['flow']['epochs_run']} epochs, {s['flow']['steps']} steps "
             f"({s['flow']['seconds']:.0f} s). Generated with the ml4ep-compiled models. Classifier: "
             f"{s['classifier'].get('n_hidden_layers', 3)} x {s['classifier'].get('hidden', 2048)}.", "",
             "| sample | AUC low-level | AUC high-level | FPD x 1e3 | KPD x 1e3 | S(E_tot/E_inc) | mean S | ms/shower |",
             "|---|---|---|---|---|---|---|---|"]

    def f(row, k, fmt):
        return format(row[k], fmt) if k in row else "-"

    for label, row in s["samples"].items():
        lines.append(f"| {label} | {f(row, 'auc_low', '.3f')} | {f(row, 'auc_high', '.3f')} | "
                     f"{f(row, 'fpd_x1e3', '.3g')} | {f(row, 'kpd_x1e3', '.3g')} | {f(row, 'sep_e_ratio', '.3g')} | "
                     f"{f(row, 'sep_mean', '.3g')} | {f(row, 'generate_ms_per_shower', '.2f')} |")
    lines += ["", "Timing (s): " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in s["timing"].items()), ""]
    return "\n".join(lines)
