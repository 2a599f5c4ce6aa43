"""Throughput and latency of ml4ep.bdt against XGBoost's own prediction, one thread.

Models (trained here on generated data with 10% missing values, 30 features): a binary:logistic model of 500
trees of depth 6 and a 3-class multi:softprob model of 3 x 150 trees of depth 6.
Contenders: ``xgboost`` (``Booster.inplace_predict``, nthread 1), ``ml4ep-numpy`` (the NumPy evaluator),
``ml4ep`` (the generated C++ compiled behind ``predict``), and ``ml4ep-cpp`` (the saved header timed in a C++ loop,
one row per call). Measures: bulk rows/s on 100k rows, microseconds per single-row Python call, nanoseconds per
single-row C++ call. Python contenders run in alternating blocks (A B C C B A ...), medians of the blocks;
outputs are checked against XGBoost before timing.

    python benchmarks/bdt.py [--rows 100000] [--rounds 5] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# a fresh build cache: the compile time measured is a real compile, not a cache hit
os.environ["ML4EP_CACHE_DIR"] = tempfile.mkdtemp(prefix="ml4ep-bdt-bench-")

import numpy as np  # noqa: E402
from _docs import cpu_model, write_section  # noqa: E402

import ml4ep.bdt as mb  # noqa: E402

HARNESS = r"""
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
#include "model.hpp"
int main() {
  const int n = 2000;
  std::vector<double> x(size_t(n) * model::N_FEATURES);
  unsigned s = 12345;
  for (auto& v : x) { s = s * 1103515245u + 12345u; v = ((s >> 8) % 20000) / 5000.0 - 2.0; }
  std::vector<double> y(model::OUTPUTS_PER_ROW);
  std::vector<double> t(5);
  double sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) { model::predict(x.data() + size_t(i) * model::N_FEATURES, 1, y.data()); sink += y[0]; }
    auto t1 = std::chrono::steady_clock::now();
    t[rep] = std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
  }
  std::sort(t.begin(), t.end());
  std::printf("%.1f %g\n", t[2], sink);
  return 0;
}
"""


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}"


def train(kind: str, n_train: int = 20000):
    import xgboost as xgb

    rng = np.random.default_rng(7)
    X = rng.normal(size=(n_train, 30)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    z = np.nan_to_num(X[:, :6]) @ rng.normal(size=6)
    if kind == "binary":
        params, rounds, y = {"objective": "binary:logistic"}, 500, (z + rng.normal(size=n_train) > 0).astype(float)
    else:
        params, rounds, y = {"objective": "multi:softprob", "num_class": 3}, 150, np.digitize(z, [-1, 1])
    params |= {"max_depth": 6, "eta": 0.1, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(X, label=y), rounds)


def cpp_ns(forest, workdir: Path) -> float:
    forest.save(workdir, name="model")
    (workdir / "bench.cpp").write_text(HARNESS)
    exe = workdir / "bench"
    subprocess.run(["g++", "-std=c++17", "-O3", "-march=native", "-pthread", str(workdir / "bench.cpp"), "-o", str(exe)],
                   check=True, capture_output=True)
    return float(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()[0])


def measure(kind: str, rows: int, rounds: int) -> dict:

    booster = train(kind)
    booster.set_param({"nthread": 1})
    forest = mb.from_xgboost(booster)
    t0 = time.perf_counter()
    fast = forest.compile(name=f"bench_{kind}")
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(11)
    X = rng.normal(size=(rows, 30)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    ref = booster.inplace_predict(X)
    assert np.abs(fast.predict(X) - ref).max() <= 1e-6, "ml4ep disagrees with xgboost"
    assert np.abs(forest.predict(X[:2000]) - ref[:2000]).max() <= 1e-6
    bulk = {
        "xgboost": lambda: booster.inplace_predict(X),
        "ml4ep": lambda: fast.predict(X),
        "ml4ep-numpy": lambda: forest.predict(X[:5000]),
    }
    sizes = {"xgboost": rows, "ml4ep": rows, "ml4ep-numpy": 5000}
    x1 = X[3:4]
    single = {"xgboost": lambda: booster.inplace_predict(x1), "ml4ep": lambda: fast.predict(x1)}
    names = list(bulk)
    times = {n: [] for n in names}
    stimes = {n: [] for n in single}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t = time.perf_counter()
            bulk[n]()
            times[n].append(sizes[n] / (time.perf_counter() - t))
        for n in (list(single) if r % 2 == 0 else list(single)[::-1]):
            f = single[n]
            f()
            t = time.perf_counter()
            for _ in range(300):
                f()
            stimes[n].append((time.perf_counter() - t) / 300 * 1e6)
    with tempfile.TemporaryDirectory() as d:
        ns = cpp_ns(forest, Path(d))
    return {"kind": kind, "trees": len(forest.trees), "compile_s": compile_s,
            "bulk": {n: float(np.median(v)) for n, v in times.items()},
            "single_us": {n: float(np.median(v)) for n, v in stimes.items()}, "cpp_ns": ns}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args(argv)
    results = [measure(k, args.rows, args.rounds) for k in ("binary", "multiclass")]
    lines = ["### BDT inference (`benchmarks/bdt.py`)", "",
             f"Machine: {machine()}; {datetime.date.today()}; one thread; command: "
             f"`python benchmarks/bdt.py --rows {args.rows} --rounds {args.rounds}`. XGBoost "
             f"{__import__('xgboost').__version__}; 30 features, 10% missing values; medians of alternating blocks.",
             "", "| model | trees | xgboost rows/s | ml4ep rows/s | ml4ep / xgboost | NumPy evaluator rows/s | "
             "single row from Python: xgboost us | ml4ep us | C++ ns per row | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b, s = r["bulk"], r["single_us"]
        lines.append(f"| {r['kind']} | {r['trees']} | {b['xgboost']:.0f} | {b['ml4ep']:.0f} | "
                     f"{b['ml4ep'] / b['xgboost']:.2f}x | {b['ml4ep-numpy']:.0f} | {s['xgboost']:.1f} | "
                     f"{s['ml4ep']:.1f} | {r['cpp_ns']:.0f} | {r['compile_s']:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.write, "bdt", lines, heading="## ml4ep.bdt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
