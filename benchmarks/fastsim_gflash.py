"""Throughput of the GFlash-type shower generator (ml4ep.fastsim.gflash), one thread.

Cases: ds2 at fixed 1, 10 and 100 GeV, ds2 log-uniform 1 GeV-1 TeV (the dataset's spectrum), ds3 at 10 GeV.
Every case is run ``--repeats`` times after one warm-up call; the table gives the median showers per second (and
the spread: min-max), the mean number of spots per shower and the mean E_tot/E_inc (after the threshold), as a
markdown table on stdout.

    python benchmarks/fastsim_gflash.py [--repeats 5] [--scale 1.0] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from pathlib import Path  # noqa: E402

from _docs import cpu_model, write_section  # noqa: E402

from ml4ep.bench.progress import progress, write  # noqa: E402
from ml4ep.fastsim import gflash  # noqa: E402
from ml4ep.fastsim.geometry import get  # noqa: E402

# (geometry, energy argument in GeV, label, showers per repeat at --scale 1)
CASES = [
    ("ds2", (1.0, 1.0), "1 GeV", 4000),
    ("ds2", (10.0, 10.0), "10 GeV", 2000),
    ("ds2", (100.0, 100.0), "100 GeV", 400),
    ("ds2", (1.0, 1000.0), "1 GeV-1 TeV log-uniform", 400),
    ("ds3", (10.0, 10.0), "10 GeV", 1000),
]


def run_case(geo_name: str, energy, n: int, repeats: int, bar=None) -> dict:
    geo = get(geo_name)
    cal = gflash.Calorimeter.par04_siw()
    gflash.simulate(geo, min(n, 128), energy=energy, seed=0)  # warm-up
    rates, ratios = [], []
    for rep in range(repeats):
        t0 = time.perf_counter()
        e, s = gflash.simulate(geo, n, energy=energy, seed=rep + 1)
        rates.append(n / (time.perf_counter() - t0))
        ratios.append(float(np.mean(s.sum(axis=1, dtype=np.float64) / e[:, 0])))
        if bar is not None:
            bar.update()
    spots = float(np.mean(gflash.spot_count(e[:, 0].astype(np.float64), cal)))
    return {"median": float(np.median(rates)), "min": min(rates), "max": max(rates), "spots": spots,
            "ratio": float(np.mean(ratios))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the showers per repeat")
    ap.add_argument("--write", type=Path, help="also write the table into this markdown file's section")
    args = ap.parse_args()
    lines = ["### Parameterised showers (`benchmarks/fastsim_gflash.py`)", "",
             f"GFlash-type generator throughput, one thread; CPU: {cpu_model()}, {os.cpu_count()} cores; "
             f"Python {platform.python_version()}, NumPy {np.__version__}; median of {args.repeats} repeats; "
             f"command: `python benchmarks/fastsim_gflash.py --repeats {args.repeats}`. Target: 1000 ds2 showers/s "
             "at 10 GeV.", "",
             "| geometry | E_inc | showers / repeat | showers/s (median) | min-max | spots / shower | E_tot/E_inc |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines))
    bar = progress(total=len(CASES) * args.repeats, desc="fastsim_gflash", unit="repeat")
    for geo_name, energy, label, n in CASES:
        n = max(1, int(n * args.scale))
        bar.set_postfix_str(f"{geo_name} {label}")
        r = run_case(geo_name, energy, n, args.repeats, bar)
        lines.append(f"| {geo_name} | {label} | {n} | {r['median']:.0f} | {r['min']:.0f}-{r['max']:.0f} | "
                     f"{r['spots']:.0f} | {r['ratio']:.3f} |")
        write(lines[-1])
    bar.close()
    if args.write:
        write_section(args.write, "fastsim_gflash", lines, heading="## ml4ep.fastsim")


if __name__ == "__main__":
    main()
