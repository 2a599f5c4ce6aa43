"""Time and memory of ``ml4ep fastsim evaluate`` on DS2-sized samples, everything but the classifier.

The target (issue: fastsim part 1): 100k reference and 100k generated ds2 showers in under 60 s on 2 cores with
bounded memory. The samples are two independent GFlash-type samples (log-uniform 1 GeV - 1 TeV, as DS2); they
are generated once into ``--workdir`` (about 1 GB each, a few minutes on 2 cores) and reused.

    python benchmarks/fastsim_evaluate.py [--n 100000] [--workdir /tmp/ml4ep-fastsim-bench] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _docs import cpu_model, write_section

from ml4ep.bench.progress import progress
from ml4ep.fastsim import io
from ml4ep.fastsim.evaluate import evaluate


def ensure(path: Path, n: int, seed: int) -> subprocess.Popen | None:
    if path.exists() and io.info(path)["n_showers"] == n:
        return None
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "ml4ep.cli", "fastsim", "simulate", "--geometry", "ds2",
                             "--n", str(n), "--energy", "1:1000", "--seed", str(seed), "-o", str(path)], env=env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ml4ep-fastsim-bench"))
    ap.add_argument("--reference", type=Path, help="use this file instead of generating one")
    ap.add_argument("--generated", type=Path, help="use this file instead of generating one")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    ref = args.reference or args.workdir / f"ref_{args.n}.h5"
    gen = args.generated or args.workdir / f"gen_{args.n}.h5"
    bar = progress(total=2, desc="fastsim_evaluate", unit="stage")
    bar.set_postfix_str("samples")
    t0 = time.perf_counter()
    procs = [p for p in (None if args.reference else ensure(ref, args.n, 1),
                         None if args.generated else ensure(gen, args.n, 2)) if p]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("generating the samples failed")
    sim_s = time.perf_counter() - t0 if procs else None
    sizes = {k: io.info(p) for k, p in (("ref", ref), ("gen", gen))}
    bar.update()
    bar.set_postfix_str("evaluate")
    t1 = time.perf_counter()
    result = evaluate(ref, gen, "ds2", args.workdir / "report", metrics=("hist", "fpd", "kpd"))
    wall = time.perf_counter() - t1
    bar.update()
    bar.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    t = result["timing"]
    lines = ["### `ml4ep fastsim evaluate` (`benchmarks/fastsim_evaluate.py`)", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores; {datetime.date.today()}; command: "
             f"`python benchmarks/fastsim_evaluate.py --n {args.n}`. Two independent GFlash-type ds2 samples of "
             f"{sizes['ref']['n_showers']} and {sizes['gen']['n_showers']} showers (log-uniform 1 GeV-1 TeV, gzip, "
             f"{(ref.stat().st_size + gen.stat().st_size) / 1e9:.2f} GB on disk); every metric but the classifiers, "
             "and the plots. Target: under 60 s on 2 cores, bounded memory.", "",
             "| step | seconds |", "|---|---|",
             f"| reference: read, threshold, features, histograms | {t['reference_s']:.1f} |",
             f"| generated: read, threshold, features, histograms | {t['generated_s']:.1f} |",
             f"| FPD + KPD (362 features) | {t['fpd_kpd_s']:.1f} |",
             f"| plots (drawn by a worker during FPD + KPD): waiting for them afterwards | "
             f"{t.get('plots_wait_s', t.get('plots_s', 0.0)):.1f} |",
             f"| **total** | **{wall:.1f}** |", "",
             f"Peak resident memory: {peak_mb:.0f} MB in the main process (the per-shower features of both samples, "
             f"the FPD/KPD inputs), {child_mb:.0f} MB in the largest worker (a chunk of 10k showers and its "
             f"temporaries); the showers alone would be {2 * args.n * 6480 * 4 / 1e9:.1f} GB. FPD x 1e3 = {result['fpd']['value_x1e3']:.3g} +- "
             f"{result['fpd']['error_x1e3']:.2g}, KPD x 1e3 = {result['kpd']['value_x1e3']:.3g} +- "
             f"{result['kpd']['error_x1e3']:.2g}, separation power of E_tot/E_inc "
             f"{result['separation_power']['e_ratio']:.2g} (same generator, independent seeds)."]
    if sim_s is not None:
        lines.append(f"Generating the two samples (two processes, one thread each) took {sim_s:.0f} s.")
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "fastsim_evaluate", lines, heading="## ml4ep.fastsim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
