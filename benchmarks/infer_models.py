"""Latency of particle-physics architectures (tests/infer/hep_models.py): ml4ep against onnxruntime.

Contenders, both on one thread, both called from Python:
- ``ml4ep``: the compiled model, ``model(*inputs)``;
- ``onnxruntime``: ``InferenceSession.run``, intra- and inter-op threads 1, default graph optimisations.
Each model is exported from PyTorch once, compiled once, and timed at batch 1 and 64 (its benchmark length:
points, nodes, particles, tokens or time steps) in alternating blocks (A B B A ...); the table gives the
medians of the blocks and the ratio onnxruntime / ml4ep (> 1: ml4ep faster). Models ml4ep cannot compile
yet are timed with onnxruntime alone and their problems listed.

    python benchmarks/infer_models.py [--models particlenet,dit_block] [--batches 1,64] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "infer"))
import hep_models as H  # noqa: E402

import ml4ep.infer as mi  # noqa: E402
from ml4ep.bench.progress import progress, write  # noqa: E402
from ml4ep.errors import Ml4epError  # noqa: E402


def time_block(fn, number: int) -> float:
    """Mean microseconds per call over ``number`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number * 1e6


def calibrate(fns, block_s: float) -> int:
    """Calls per block so that the slowest contender's block lasts about ``block_s``."""
    slowest = max(time_block(f, 1) for f in fns)  # after a first warm-up call each
    slowest = max(slowest, max(time_block(f, 1) for f in fns))
    return max(1, min(5000, int(block_s * 1e6 / max(slowest, 1.0))))


def bench_model(name: str, work: Path, batches: list[int], rounds: int, block_s: float, bar=None) -> list[dict]:
    """The rows of one model, one per batch size; ``bar``, a progress bar, counts them."""
    spec = H.MODELS[name]
    path = H.export(name, work)
    try:
        problems = [str(p) for p in mi.check(path)]
    except Ml4epError as exc:
        problems = [f"{type(exc).__name__}: {exc}"]
    model = None
    compile_s = float("nan")
    if not problems:
        t0 = time.perf_counter()
        try:
            model = mi.compile(path, cache=False)
        except Ml4epError as exc:
            problems = [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"]
        compile_s = time.perf_counter() - t0
    sess = H.ort_session(path, threads=1, optimize=True)
    rows = []
    for batch in batches:
        feeds = spec.inputs(np.random.default_rng(batch), batch, spec.bench_length)
        args = [feeds[n] for n in spec.input_names]
        engines = {"onnxruntime": lambda feeds=feeds: sess.run(None, feeds)}
        if model is not None:
            engines = {"ml4ep": lambda args=args: model(*args), **engines}
        names = list(engines)
        number = calibrate([engines[n] for n in names], block_s)
        samples: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            order = names + names[::-1] if r % 2 == 0 else names[::-1] + names
            for n in order:
                samples[n].append(time_block(engines[n], number))
        row = {"model": name, "batch": batch, "length": spec.bench_length, "calls_per_block": number,
               "compile_s": compile_s, "problems": problems}
        for n in names:
            row[f"{n}_us"] = float(np.median(samples[n]))
        rows.append(row)
        write(_fmt_row(row))
        if bar is not None:
            bar.update()
    return rows


def _fmt_row(r: dict) -> str:
    ml = r.get("ml4ep_us")
    ort = r["onnxruntime_us"]
    ratio = f"{ort / ml:6.2f}x" if ml else f"{'-':>7}"
    ml_s = f"{ml:11.1f}" if ml else f"{'unsupported':>11}"
    return f"| {r['model']:<16} | {r['batch']:>5} | {r['length']:>6} | {ml_s} | {ort:11.1f} | {ratio} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(H.MODELS))
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--rounds", type=int, default=3, help="alternation rounds (each A B B A)")
    ap.add_argument("--block-s", type=float, default=0.1, help="seconds per timing block")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--write", help="replace the infer_models section of this markdown file")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ml4ep-models-"))
    batches = [int(b) for b in args.batches.split(",")]
    print("one thread each; medians of alternating blocks; ratio = onnxruntime / ml4ep (> 1: ml4ep faster)")
    print(f"| {'model':<16} | {'batch':>5} | {'length':>6} | {'ml4ep us':>11} | {'ORT us':>11} | {'ratio':>7} |")
    print(f"|{'-' * 18}|{'-' * 7}|{'-' * 8}|{'-' * 13}|{'-' * 13}|{'-' * 8}|")
    rows = []
    models = args.models.split(",")
    for name in models:
        if name not in H.MODELS:
            ap.error(f"unknown model '{name}'; known: {', '.join(H.MODELS)}")
    with progress(total=len(models) * len(batches), desc="infer_models", unit="case") as bar:
        for name in models:
            bar.set_postfix_str(name)
            rows += bench_model(name, work, batches, args.rounds, args.block_s, bar)
    unsupported = {r["model"]: r["problems"] for r in rows if r["problems"]}
    if unsupported:
        print("\nnot compiled by ml4ep:")
        for model, problems in unsupported.items():
            print(f"  {model}:")
            for p in problems:
                print(f"    - {p}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": rows}, indent=1))
    if args.write:
        _write(Path(args.write), rows, unsupported)
    return 0


def _write(path: Path, rows: list[dict], unsupported: dict) -> None:
    from _docs import cpu_model, write_section

    lines = ["### Whole HEP models (`benchmarks/infer_models.py`, also run by `infer_latency.py --hep`)", "",
             f"{cpu_model()}; one thread each (onnxruntime with its default graph optimisations); medians of "
             "alternating blocks; ratio = onnxruntime time / ml4ep time (> 1: ml4ep faster). Models from "
             "`tests/infer/hep_models.py`, exported from PyTorch with dynamic batch and length; the length column "
             "is the number of points, nodes, particles, tokens or time steps.", "",
             "| model | batch | length | ml4ep us | onnxruntime us | ratio |", "|---|---|---|---|---|---|"]
    lines += [_fmt_row(r) for r in rows]
    if unsupported:
        lines += ["", "Not compiled by ml4ep: " + "; ".join(f"{m}: {', '.join(p)}" for m, p in unsupported.items())]
    write_section(path, "infer_models", lines)


if __name__ == "__main__":
    sys.exit(main())
