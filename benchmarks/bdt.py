"""Throughput and latency of ml4ep.bdt against the libraries that trained the models and the other engines, one
thread.

Models (trained here on generated data with 10% missing values, 30 features, depth 6):
- ``xgboost binary``: binary:logistic, 500 trees; ``xgboost multiclass``: multi:softprob, 3 x 150 trees;
- ``lightgbm binary``: 500 trees (max_depth 6, 63 leaves at most);
- ``sklearn hgb binary``: HistGradientBoostingClassifier, 300 iterations, max_depth 6.
Contenders, where they install: the training library's own predict (the anchor of the ratios: XGBoost
``Booster.inplace_predict``, LightGBM ``Booster.predict``, scikit-learn ``predict_proba``), ONNX Runtime on the
model converted by onnxmltools/skl2onnx (TreeEnsemble), tl2cgen (treelite's compiled C), ``ml4ep`` (the
generated C++ compiled behind ``predict``), ``ml4ep-numpy`` (the NumPy evaluator, on 5000 rows), and
``ml4ep C++`` (the saved header in a C++ loop, one row per call). Measures: bulk rows/s on 100k rows,
microseconds per single-row Python call, nanoseconds per single-row C++ call, compile seconds. Contenders run in
alternating blocks (A B C C B A ...), medians of the blocks; every output is checked against the anchor first.

ISA levels: the same forest is also compiled for each ``--isa`` level this CPU can run (``native``, and by
default ``x86-64-v4``, ``x86-64-v3``, ``x86-64-v2``, ``x86-64``: AVX-512 without VBMI, AVX2, SSE4.2, baseline),
each a bulk and single-row contender in the same alternating blocks, with its own single-row C++ loop; every
level's outputs must equal the native build's bit for bit.

    python benchmarks/bdt.py [--rows 100000] [--rounds 5] [--models xgboost-binary,...] [--isa native,x86-64-v3]
                             [--write docs/benchmarks.md]
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
from ml4ep.bdt import codegen  # noqa: E402
from ml4ep.errors import UnsupportedCPUError  # noqa: E402
from ml4ep._native import build  # noqa: E402
from ml4ep.bench.progress import progress, write  # noqa: E402

N_FEATURES = 30
MODELS = ("xgboost-binary", "xgboost-multiclass", "lightgbm-binary", "sklearn-hgb-binary")
ISAS = ("native", "x86-64-v4", "x86-64-v3", "x86-64-v2", "x86-64")

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


def data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X, np.nan_to_num(X[:, :6]) @ np.random.default_rng(7).normal(size=6)


def train(name: str, n_train: int = 20000):
    """(trained model, ml4ep forest, anchor predict, extra contenders builder)"""
    X, z = data(n_train, 7)
    noise = np.random.default_rng(8).normal(size=n_train)
    yb = (z + noise > 0).astype(int)
    if name.startswith("xgboost"):
        import xgboost as xgb

        if name == "xgboost-binary":
            params, rounds, y = {"objective": "binary:logistic"}, 500, yb
        else:
            params, rounds, y = {"objective": "multi:softprob", "num_class": 3}, 150, np.digitize(z, [-1, 1])
        booster = xgb.train(params | {"max_depth": 6, "eta": 0.1, "nthread": 1}, xgb.DMatrix(X, label=y), rounds)
        booster.set_param({"nthread": 1})
        return booster, mb.from_xgboost(booster), ("xgboost", booster.inplace_predict)
    if name == "lightgbm-binary":
        import lightgbm as lgb

        booster = lgb.train({"objective": "binary", "max_depth": 6, "num_leaves": 63, "learning_rate": 0.1,
                             "num_threads": 1, "verbose": -1}, lgb.Dataset(X, label=yb), 500)
        return booster, mb.from_lightgbm(booster), ("lightgbm", lambda x: booster.predict(x, num_threads=1))
    if name == "sklearn-hgb-binary":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(max_iter=300, max_depth=6, early_stopping=False,
                                               random_state=0).fit(X, yb)
        return model, mb.from_sklearn(model), ("scikit-learn", model.predict_proba)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def onnxruntime_contender(name: str, model):
    """ONNX Runtime on the model converted to ONNX-ML (TreeEnsemble), or the reason it is absent."""
    try:
        import onnxruntime as ort

        if name.startswith("xgboost") or name.startswith("lightgbm"):
            import onnxmltools
            from onnxmltools.convert.common.data_types import FloatTensorType

            convert = onnxmltools.convert_xgboost if name.startswith("xgboost") else onnxmltools.convert_lightgbm
            onx = convert(model, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], target_opset=15)
        else:
            from skl2onnx import to_onnx

            onx = to_onnx(model, np.zeros((1, N_FEATURES), np.float32), options={"zipmap": False},
                          target_opset={"": 15, "ai.onnx.ml": 3})
    except Exception as e:  # noqa: BLE001 - a missing or failing converter only drops this contender
        return None, f"onnxruntime ({type(e).__name__}: {str(e).splitlines()[0][:90]})"
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out = sess.get_outputs()[-1].name  # the probabilities (or the value)

    def run(x):
        p = sess.run([out], {"input": x})[0]
        if isinstance(p, list):  # a ZipMap: list of dicts
            p = np.array([[d[k] for k in sorted(d)] for d in p])
        return p[:, 1] if name.endswith("binary") and p.ndim == 2 and p.shape[1] == 2 else p

    return run, ""


def tl2cgen_contender(name: str, model, workdir: Path):
    """treelite + tl2cgen's compiled C library, its compile seconds, or the reason it is absent."""
    try:
        import tl2cgen
        import treelite

        if name.startswith("xgboost"):
            tm = treelite.frontend.from_xgboost(model)
        elif name.startswith("lightgbm"):
            tm = treelite.frontend.from_lightgbm(model)
        else:
            tm = treelite.sklearn.import_model(model)
        lib = workdir / f"{name}.so"
        t0 = time.perf_counter()
        tl2cgen.export_lib(tm, toolchain="gcc", libpath=str(lib), params={"parallel_comp": os.cpu_count() or 1},
                           nthread=os.cpu_count() or 1)
        seconds = time.perf_counter() - t0
        pred = tl2cgen.Predictor(str(lib), nthread=1)
    except Exception as e:  # noqa: BLE001 - as above
        return None, 0.0, f"tl2cgen ({type(e).__name__}: {str(e).splitlines()[0][:90]})"

    def run(x):
        p = pred.predict(tl2cgen.DMatrix(x))
        p = p.reshape(len(x), -1)
        return p[:, -1] if name.endswith("binary") else p

    return run, seconds, ""


def cpp_ns(forest, workdir: Path, march: str = "native") -> float:
    forest.save(workdir, name="model")
    (workdir / "bench.cpp").write_text(HARNESS)
    exe = workdir / f"bench-{march}"
    subprocess.run([build.compiler(), "-std=c++17", "-O3", f"-march={march}", "-pthread", str(workdir / "bench.cpp"),
                    "-o", str(exe)], check=True, capture_output=True)
    return float(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()[0])


def runnable_isas(requested: list[str]) -> tuple[list[str], list[str]]:
    """The ISA levels of ``requested`` this CPU runs (only native off x86-64), and why the others are left out."""
    import platform as _platform

    keep, why = [], []
    for march in requested:
        if march != "native" and _platform.machine().lower() not in ("x86_64", "amd64"):
            why.append(f"{march} (not an x86-64 machine)")
            continue
        try:
            build.check_cpu(build.target(march).features, f"-march={march}")
        except UnsupportedCPUError as exc:
            why.append(f"{march} ({str(exc).split(' was built for a CPU with ')[-1].split(',')[0]} missing)")
            continue
        keep.append(march)
    return keep, why


def kernel_name(forest, march: str) -> str:
    """The kernel a build of ``forest`` for ``march`` runs (as the header's preprocessor picks it)."""
    tb = codegen.tables(forest)
    if codegen.ranked_tables(forest, tb) is None:
        return "padded walk" if tb["padded"] else "child-index walk"
    f = set(build.target(march).features)
    if {"AVX512BW", "AVX512VBMI"} <= f:
        return "ranked: vpermb (AVX-512 VBMI)"
    if "AVX512BW" in f:
        return "ranked: vpshufb zmm (AVX-512BW)"
    if "AVX2" in f:
        return "ranked: vpshufb ymm (AVX2)"
    if {"SSSE3", "POPCNT"} <= f:
        return "ranked: pshufb xmm (SSSE3)"
    return "padded walk"


def _positive(f):
    def g(x):
        p = np.asarray(f(x))
        return p[:, 1] if p.ndim == 2 and p.shape[1] == 2 else p.reshape(len(p))

    return g


def isa_label(march: str) -> str:
    return f"ml4ep -march={march}"


def measure(name: str, rows: int, rounds: int, isas: list[str]) -> dict:
    model, forest, (anchor, anchor_fn) = train(name)
    t0 = time.perf_counter()
    fast = forest.compile(name=name.replace("-", "_"), march="native")
    compile_s = {"ml4ep": time.perf_counter() - t0}
    X, _ = data(rows, 11)
    ref = np.asarray(anchor_fn(X))
    notes = []
    bulk = {anchor: anchor_fn, "ml4ep": fast.predict}
    for march in isas:  # the same forest for each ISA level ("native" is "ml4ep" itself)
        if march != "native":
            t0 = time.perf_counter()
            bulk[isa_label(march)] = forest.compile(name=name.replace("-", "_"), march=march).predict
            compile_s[isa_label(march)] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        ort_fn, why = onnxruntime_contender(name, model)
        tl_fn, tl_s, why2 = tl2cgen_contender(name, model, Path(d))
        if ort_fn:
            bulk["onnxruntime"] = ort_fn
        if tl_fn:
            bulk["tl2cgen"] = tl_fn
            compile_s["tl2cgen"] = tl_s
        notes += [f"{name}: {w}" for w in (why, why2) if w]
        if name.endswith("binary"):  # every contender as the probability of class 1
            bulk = {n: _positive(f) for n, f in bulk.items()}
            ref = _positive(lambda x: ref)(None)
        diffs = {}
        for n, f in bulk.items():
            diffs[n] = float(np.abs(np.asarray(f(X[:5000])).reshape(ref[:5000].shape) - ref[:5000]).max())
        numpy_fn = _positive(forest.predict) if name.endswith("binary") else forest.predict
        diffs["ml4ep-numpy"] = float(np.abs(numpy_fn(X[:5000]) - ref[:5000]).max())
        assert diffs["ml4ep"] <= 1e-6 and diffs["ml4ep-numpy"] <= 1e-6, f"ml4ep disagrees with {anchor}: {diffs}"
        native_out = bulk["ml4ep"](X[:5000])
        for march in isas:  # every ISA level: the same sums, bit for bit
            if march != "native":
                assert np.array_equal(bulk[isa_label(march)](X[:5000]), native_out), f"{name}: {march} != native"
        bulk["ml4ep-numpy"] = numpy_fn
        sizes = {n: (5000 if n == "ml4ep-numpy" else rows) for n in bulk}
        x1 = X[3:4]
        single = {n: f for n, f in bulk.items() if n != "ml4ep-numpy"}
        times = {n: [] for n in bulk}
        stimes = {n: [] for n in single}
        names = list(bulk)
        for r in range(rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                xs = X[: sizes[n]]
                t = time.perf_counter()
                bulk[n](xs)
                times[n].append(sizes[n] / (time.perf_counter() - t))
            for n in (list(single) if r % 2 == 0 else list(single)[::-1]):
                f = single[n]
                f(x1)
                reps = 300 if n.startswith("ml4ep") or n in ("onnxruntime", "tl2cgen") else 50
                t = time.perf_counter()
                for _ in range(reps):
                    f(x1)
                stimes[n].append((time.perf_counter() - t) / reps * 1e6)
        isa_ns = {march: cpp_ns(forest, Path(d), march) for march in isas}
        ns = isa_ns["native"] if "native" in isa_ns else cpp_ns(forest, Path(d))
    kernels = {march: kernel_name(forest, march) for march in isas}
    return {"model": name, "trees": len(forest.trees), "anchor": anchor, "compile_s": compile_s, "diff": diffs,
            "bulk": {n: float(np.median(v)) for n, v in times.items()},
            "single_us": {n: float(np.median(v)) for n, v in stimes.items()}, "cpp_ns": ns, "notes": notes,
            "isas": list(isas), "isa_ns": isa_ns, "kernels": kernels}


def isa_table(results: list[dict]) -> list[str]:
    lines = ["| model | -march | kernel | bulk rows/s | vs anchor | one row in C++, us | one row from Python, us "
             "| compile s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["bulk"][r["anchor"]]
        for march in r["isas"]:
            n = "ml4ep" if march == "native" else isa_label(march)
            lines.append(f"| {r['model']} ({r['trees']} trees) | {march} | {r['kernels'][march]} | {r['bulk'][n]:.0f} "
                         f"| {r['bulk'][n] / a:.2f}x | {r['isa_ns'][march] / 1000:.2f} | {r['single_us'][n]:.1f} "
                         f"| {r['compile_s'][n]:.2f} |")
    return lines


def table(results: list[dict]) -> list[str]:
    lines = ["| model | contender | bulk rows/s | vs anchor | single row from Python, us | max abs diff vs anchor "
             "| compile s |", "|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["bulk"][r["anchor"]]
        order = [r["anchor"], "onnxruntime", "tl2cgen", "ml4ep", "ml4ep-numpy"]
        for n in [n for n in order if n in r["bulk"]]:
            label = f"{n} (anchor)" if n == r["anchor"] else n
            single = f"{r['single_us'][n]:.1f}" if n in r["single_us"] else "-"
            comp = f"{r['compile_s'][n]:.2f}" if n in r["compile_s"] else "-"
            lines.append(f"| {r['model']} ({r['trees']} trees) | {label} | {r['bulk'][n]:.0f} | "
                         f"{r['bulk'][n] / a:.2f}x | {single} | {r['diff'][n]:.1e} | {comp} |")
        lines.append(f"| {r['model']} ({r['trees']} trees) | ml4ep C++, one row per call | "
                     f"{1e9 / r['cpp_ns']:.0f} | - | {r['cpp_ns'] / 1000:.2f} (in C++) | - | - |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--isa", default=",".join(ISAS), help="ISA levels (-march values) to compare; native first")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args(argv)
    isas, isa_why = runnable_isas([m for m in args.isa.split(",") if m])
    results = []
    for name in progress(args.models.split(","), desc="bdt", unit="model"):
        results.append(measure(name, args.rows, args.rounds, isas))
        write("\n".join(table(results[-1:]) + [""] + isa_table(results[-1:])))
    versions = []
    for mod in ("xgboost", "lightgbm", "sklearn", "onnxruntime", "treelite", "tl2cgen"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    lines = ["### BDT inference (`benchmarks/bdt.py`)", "",
             f"Machine: {machine()}; {datetime.date.today()}; one thread; command: "
             f"`OMP_NUM_THREADS=1 python benchmarks/bdt.py --rows {args.rows} --rounds {args.rounds}"
             f"{'' if args.isa == ','.join(ISAS) else ' --isa ' + args.isa}"
             f"{'' if args.models == ','.join(MODELS) else ' --models ' + args.models}`; {', '.join(versions)}. "
             f"{N_FEATURES} features, 10% missing values, depth 6; medians of alternating blocks. "
             "Ratios are to the model's own library in the same run; the single-row C++ line is one "
             "`predict(x, 1, y)` call on double input in a loop.", "", *table(results), "",
             "#### By ISA level", "",
             "The same forests compiled for each `-march` this CPU runs (`forest.compile(march=...)`; `native` is "
             "the `ml4ep` line above), timed in the same alternating blocks against the same anchor; every level's "
             "outputs equal the native build's bit for bit. The kernel is what the header's preprocessor picks for "
             "that level; `x86-64` (baseline SSE2) shows the padded walk that every level without VBMI ran before.",
             "", *isa_table(results)]
    if isa_why:
        lines += ["", "ISA levels not run on this CPU: " + "; ".join(isa_why)]
    notes = sorted({n for r in results for n in r["notes"]})
    if notes:
        lines += ["", "Not run: " + "; ".join(notes)]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.write, "bdt", lines, heading="## ml4ep.bdt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
