"""Train variants of the fastsim flow model side by side on one CUDA GPU, then judge the best with the
CaloChallenge's own classifier size (issue 7 quality; for a GPU machine, a long run outside CI).

1. Simulate ``--n-train`` training and ``--n-ref`` reference showers (parameterised ds2, 1-1000 GeV
   log-uniform) in ``--jobs`` processes, written uncompressed (a GPU trains faster than gzip decompresses).
2. Train every ``--variant NAME:BATCH:LR[:DIM:DEPTH]`` at the same time, each in its own process with
   ``--workers`` reading processes, all for ``--seconds`` of training.
3. Copy every variant's ``best.pt`` to ``--out/NAME/``, without the optimizer state (it can be generated from and
   evaluated, ``benchmarks/fastsim_quality.py --flow-run``, but not resumed); its history is the whole run's.
4. The variant of the lowest validation loss generates as many showers as the reference holds (torch backend;
   the compiled backends agree with it within 1e-4 of the largest voxel), and the challenge's classifier
   (3 x 2048, 50 epochs, on the GPU) compares low- and high-level features; the separation powers beside.
   Skipped when less than ``--eval-seconds`` of ``--deadline`` is left.
5. ``--out/results.json``: per variant the training history's end; the evaluation.

    python benchmarks/fastsim_gpu.py --work /tmp/gpu --out OUT --seconds 380 --deadline 540 \\
        --variant a:256:5e-4 --variant b:1024:1e-3 --variant c:512:5e-4:128:4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ml4ep.bench.progress import progress, write

T0 = time.perf_counter()


def log(msg: str) -> None:
    write(f"[{time.perf_counter() - T0:6.1f} s] {msg}")


def _simulate_block(args):
    from ml4ep.fastsim import geometry, gflash

    n, seed = args
    return gflash.simulate(geometry.get("ds2"), n, energy=(1.0, 1000.0), seed=seed)


def simulate(path: Path, n: int, seed: int, jobs: int) -> None:
    """``n`` ds2 showers from ``jobs`` blocks of independent streams of ``SeedSequence(seed)``, uncompressed."""
    from ml4ep.fastsim import geometry, io

    if path.exists():
        return
    sizes = [n // jobs + (i < n % jobs) for i in range(jobs)]
    seeds = np.random.SeedSequence(seed).spawn(jobs)
    with ProcessPoolExecutor(jobs) as pool:
        parts = list(pool.map(_simulate_block, zip(sizes, seeds)))
    e = np.concatenate([p[0] for p in parts])
    s = np.concatenate([p[1] for p in parts])
    io.write(path, e, s, geometry=geometry.get("ds2"), compression=None)
    log(f"simulated {n} showers into {path}")


def parse_variant(text: str) -> dict:
    f = text.split(":")
    if len(f) not in (3, 5):
        raise SystemExit(f"--variant {text!r}: expected NAME:BATCH:LR or NAME:BATCH:LR:DIM:DEPTH")
    v = {"name": f[0], "batch_size": int(f[1]), "lr": float(f[2]), "dim": 64, "depth": 4}
    if len(f) == 5:
        v["dim"], v["depth"] = int(f[3]), int(f[4])
    return v


def train_one(args) -> int:
    """Worker mode: train one variant (the arguments of this process's parent)."""
    import torch

    from ml4ep.fastsim.train import train

    torch.set_num_threads(args.threads)
    v = parse_variant(args.train_one)
    r = train(args.work / "train.h5", args.work / v["name"], model="diffusion", epochs=100_000,
              batch_size=v["batch_size"], lr=v["lr"], dim=v["dim"], depth=v["depth"], warmup=500, seed=1,
              validation_split=0.05, patience=None, geometry="ds2", progress=True, max_seconds=args.seconds,
              device=args.device, resume=True, workers=args.workers)
    print(json.dumps({k: r[k] for k in ("epoch", "steps", "best_epoch", "best_val_loss", "seconds")}), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="data and runs")
    ap.add_argument("--out", type=Path, required=True, help="checkpoints and results.json (at most 8 files)")
    ap.add_argument("--variant", action="append", default=[], help="NAME:BATCH:LR[:DIM:DEPTH] (repeatable)")
    ap.add_argument("--n-train", type=int, default=100_000)
    ap.add_argument("--n-ref", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=380.0, help="training time of each variant")
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds after the start to be done by")
    ap.add_argument("--eval-seconds", type=float, default=100.0, help="the evaluation's expected duration")
    ap.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1), help="simulation processes")
    ap.add_argument("--workers", type=int, default=3, help="reading processes per variant")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads per variant")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cls-hidden", type=int, default=2048)
    ap.add_argument("--cls-layers", type=int, default=3)
    ap.add_argument("--cls-epochs", type=int, default=50)
    ap.add_argument("--train-one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.train_one:
        return train_one(args)

    import torch

    variants = [parse_variant(t) for t in args.variant] or [parse_variant("a:256:5e-4")]
    if args.device == "cuda" and not torch.cuda.is_available():
        log("no CUDA device")
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    simulate(args.work / "train.h5", args.n_train, 11, args.jobs)
    if args.device == "cuda":  # after the simulation's fork
        log(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    procs = {}
    for v in variants:
        spec = f"{v['name']}:{v['batch_size']}:{v['lr']}:{v['dim']}:{v['depth']}"
        cmd = [sys.executable, __file__, "--work", str(args.work), "--out", str(args.out), "--train-one", spec,
               "--seconds", str(args.seconds), "--workers", str(args.workers), "--threads", str(args.threads),
               "--device", args.device]
        fh = open(args.work / f"{v['name']}.log", "w")  # noqa: SIM115 - closed after the process ends
        procs[v["name"]] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT), fh)
        log(f"started variant {spec}")
    # the reference while the variants train (the CPU has room: each variant uses threads + workers)
    simulate(args.work / "reference.h5", args.n_ref, 12, max(1, args.jobs // 2))
    results: dict = {"variants": {}, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"}
    for name, (p, fh) in progress(procs.items(), total=len(procs), desc="variants trained", unit="variant"):
        rc = p.wait()
        fh.close()
        text = (args.work / f"{name}.log").read_text()
        write(f"--- {name} (rc {rc}) ---\n" + "\n".join(text.splitlines()[-6:]))
        hist_path = args.work / name / "history.json"
        hist = json.loads(hist_path.read_text()) if hist_path.exists() else []
        spec = next(v for v in variants if v["name"] == name)
        results["variants"][name] = {**spec, "rc": rc, "epochs": len(hist), "steps": hist[-1]["step"] if hist else 0,
                                     "train_seconds": sum(h["seconds"] for h in hist),
                                     "best_val_loss": min((h["val_loss"] for h in hist), default=None),
                                     "val_loss_tail": [round(h["val_loss"], 5) for h in hist[-5:]]}
        if (args.work / name / "best.pt").exists():  # without the optimizer and raw weights: a quarter the size
            ck = torch.load(args.work / name / "best.pt", map_location="cpu", weights_only=False)
            for k in ("optimizer", "model_raw"):
                ck.pop(k, None)
            ck["state"]["history"] = hist
            (args.out / name).mkdir(exist_ok=True)
            torch.save(ck, args.out / name / "best.pt")
    log("training done: " + json.dumps(results["variants"]))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    done = {k: v for k, v in results["variants"].items() if v["best_val_loss"] is not None}
    if not done:
        return 1
    best = min(done, key=lambda k: done[k]["best_val_loss"])
    left = args.deadline - (time.perf_counter() - T0)
    if left < args.eval_seconds:
        log(f"{left:.0f} s left: no evaluation")
        return 0
    from ml4ep.fastsim import geometry, io
    from ml4ep.fastsim.evaluate import evaluate
    from ml4ep.fastsim.generate import generate

    torch.set_num_threads(args.jobs)
    geo = geometry.get("ds2")
    ref = args.work / "reference.h5"
    e_ref = np.concatenate([e.reshape(-1) for e, _ in io.iter_chunks(ref, chunk_size=5000)])
    t = time.perf_counter()
    gen = args.work / f"generated_{best}.h5"
    generate(args.work / best, e_ref, backend="torch", seed=7, output=gen, geometry=geo, batch_size=2000)
    log(f"generated {len(e_ref)} showers with variant {best} in {time.perf_counter() - t:.0f} s")
    cls = {"hidden": args.cls_hidden, "n_hidden_layers": args.cls_layers, "epochs": args.cls_epochs,
           "device": args.device}
    r = evaluate(ref, gen, geo, args.work / f"report_{best}", metrics=("hist", "cls-low", "cls-high"),
                 classifier=cls, seed=0, plots=False)
    results["evaluation"] = {"variant": best, "n": int(len(e_ref)), "classifier": cls,
                             "auc_low": r["classifier_low"]["auc"], "auc_high": r["classifier_high"]["auc"],
                             "epochs_low": r["classifier_low"].get("epochs_run"),
                             "epochs_high": r["classifier_high"].get("epochs_run"),
                             "sep_e_ratio": r["separation_power"]["e_ratio"],
                             "sep_mean": float(np.mean(list(r["separation_power"].values())))}
    log("evaluation: " + json.dumps(results["evaluation"]))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
