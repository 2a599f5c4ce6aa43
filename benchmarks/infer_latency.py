"""Latency, throughput, peak memory and compile time of ml4ep.infer against its anchors.

Contenders, all on one thread:
- ``ml4ep-cpp``: ml4ep's generated header timed in a C++ loop (the way experiments call it);
- ``sofie-cpp``: SOFIE's generated header (``pip install sofie``), same flags, same BLAS (the pip
  OpenBLAS), timed in the same kind of C++ loop (src/ml4ep/bench/sofie.py);
- ``ml4ep-py``: ``model(x)`` from Python (ctypes);
- ``onnxruntime``: ``InferenceSession.run`` from Python, intra- and inter-op threads 1;
- ``torch``: PyTorch eager under ``no_grad``, ``torch.set_num_threads(1)``.
Python contenders are timed in alternating blocks (A B C C B A ...) and compared by medians; C++ loops
run back to back in separate processes, alternated the same way. The machine's bounds are measured in the
same run: the sgemm peak (GFLOP/s) and the sgemv streaming rate of the VAE decoder's output layer.

    python benchmarks/infer_latency.py [--models mlp,vae_decoder] [--batches 1,64,1024] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from ml4ep.bench import sofie as sofie_anchor  # noqa: E402
from _docs import cpu_model, write_section  # noqa: E402

import ml4ep.infer as mi  # noqa: E402
from ml4ep.bench import zoo  # noqa: E402
from ml4ep._native import build  # noqa: E402
from ml4ep.bench.progress import progress, write  # noqa: E402

# the same flags for both generated codes: ml4ep's defaults
CXXFLAGS = ["-std=c++17", "-O3", "-march=native", "-fno-math-errno"]

_HARNESS = r"""
#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>
#include "@NAME@.hpp"

static long vm_hwm_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

int main(int argc, char** argv) {
  const int64_t batch = std::atoll(argv[2]);
  const int n_iter = std::atoi(argv[3]);
  std::vector<float> x(size_t(batch) * @IN_SIZE@), y(size_t(batch) * @OUT_SIZE@);
  std::ifstream f(argv[4], std::ios::binary);
  f.read(reinterpret_cast<char*>(x.data()), std::streamsize(x.size() * sizeof(float)));
  @NAME@::Model model(argv[1]);
  for (int i = 0; i < 10; ++i) model.infer(x.data(), y.data(), batch);
  std::vector<double> t(static_cast<size_t>(n_iter));
  for (int i = 0; i < n_iter; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    model.infer(x.data(), y.data(), batch);
    auto t1 = std::chrono::steady_clock::now();
    t[size_t(i)] = std::chrono::duration<double, std::micro>(t1 - t0).count();
  }
  std::sort(t.begin(), t.end());
  double sum = 0;
  for (float v : y) sum += v;
  std::printf("{\"median_us\": %.3f, \"min_us\": %.3f, \"peak_rss_kb\": %ld, \"checksum\": %.9g}\n",
              t[t.size() / 2], t[0], vm_hwm_kb(), sum);
  return 0;
}
"""

_BOUNDS = r"""
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
extern "C" void scipy_cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int,
                                  float, float*, int);
extern "C" void scipy_cblas_sgemv(int, int, int, int, float, const float*, int, const float*, int, float,
                                  float*, int);
extern "C" void scipy_openblas_set_num_threads(int);
template <class F> double median_us(F f, int n) {
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) f();
  for (int i = 0; i < n; ++i) {
    auto a = std::chrono::steady_clock::now(); f(); auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
int main() {
  scipy_openblas_set_num_threads(1);
  const int n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  double t = median_us([&] { scipy_cblas_sgemm(101, 111, 111, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); }, 15);
  // the VAE decoder's output layer: y[6480] = W[6480, 100] x[100]
  const int rows = 6480, cols = 100;
  std::vector<float> w(size_t(rows) * cols, 0.1f), x(cols, 1.f), y(rows);
  double tv = median_us([&] { scipy_cblas_sgemv(101, 111, rows, cols, 1.f, w.data(), cols, x.data(), 1, 0.f, y.data(), 1); }, 2001);
  std::printf("{\"sgemm_gflops\": %.2f, \"sgemv_vae_us\": %.3f, \"sgemv_gbs\": %.2f}\n",
              2.0 * n * n * n / t / 1e3, tv, rows * cols * 4.0 / tv / 1e3);
}
"""


def cxx_link_blas() -> list[str]:
    b = build.blas()
    return b["defines"] + b["link"]


def machine_bounds(work: Path) -> dict:
    src = work / "bounds.cpp"
    src.write_text(_BOUNDS)
    exe = work / "bounds"
    subprocess.run(["g++", *CXXFLAGS, str(src), "-o", str(exe), *cxx_link_blas()], check=True)
    return json.loads(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)


def ml4ep_cpp(model: mi.CompiledModel, family: str, batch: int, x: np.ndarray, n_iter: int, work: Path) -> dict:
    d = work / f"ml4ep_{family}"
    d.mkdir(exist_ok=True)
    model.save(d)
    in_size = int(np.prod(zoo.FAMILIES[family].input_shape))
    out_size = int(np.prod(model(x[:1]).shape[1:]))
    exe = d / "bench"
    if not exe.exists():
        src = d / "bench.cpp"
        src.write_text(_HARNESS.replace("@NAME@", model.name).replace("@IN_SIZE@", str(in_size))
                       .replace("@OUT_SIZE@", str(out_size)))
        subprocess.run(["g++", *CXXFLAGS, str(src), "-o", str(exe), *cxx_link_blas()], check=True)
    inp = d / f"x{batch}.raw"
    inp.write_bytes(np.ascontiguousarray(x).tobytes())
    res = subprocess.run([str(exe), str(d / f"{model.name}.bin"), str(batch), str(n_iter), str(inp)],
                         capture_output=True, text=True, check=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    return json.loads(res.stdout)


def time_block(fn, x, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn(x)
    return (time.perf_counter() - t0) / number * 1e6


def py_contenders(path: Path, family: str, model: mi.CompiledModel):
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    module = zoo.build(family)

    def run_torch(a):
        with torch.no_grad():
            return module(torch.from_numpy(a))

    return {
        "ml4ep-py": model,
        "onnxruntime": lambda a: sess.run(None, {"x": a}),
        "torch": run_torch,
    }


def model_cost(family: str) -> tuple[float, float]:
    """FLOPs per sample (PyTorch's own FLOP counter, an independent count) and bytes of parameters."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = zoo.build(family)
    x = torch.zeros((1, *zoo.FAMILIES[family].input_shape))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    params = sum(p.numel() for p in module.parameters()) * 4
    return float(counter.get_total_flops()), float(params)


def python_peak_mb(engine: str, path: Path, family: str, batch: int) -> float:
    """Peak RSS increase (MB) of a fresh process from before the engine loads the model to after 20 calls."""
    code = f"""
import os, resource, sys, numpy as np
os.environ['OPENBLAS_NUM_THREADS'] = '1'
import onnxruntime, torch, ml4ep.infer as mi
from ml4ep.bench import zoo
torch.set_num_threads(1)
x = np.random.default_rng(0).normal(size=({batch},) + {zoo.FAMILIES[family].input_shape!r}).astype(np.float32)
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])
base = rss()
if '{engine}' == 'ml4ep-py':
    m = mi.compile('{path}'); f = m
elif '{engine}' == 'onnxruntime':
    so = onnxruntime.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    s = onnxruntime.InferenceSession('{path}', so, providers=['CPUExecutionProvider']); f = lambda a: s.run(None, {{'x': a}})
else:
    mod = zoo.build('{family}')
    def f(a):
        with torch.no_grad():
            return mod(torch.from_numpy(a))
peak = base
for _ in range(20):
    f(x); peak = max(peak, rss())
print((peak - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn1d,cnn2d,cnn3d,vae_decoder")
    ap.add_argument("--batches", default="1,64,1024")
    ap.add_argument("--rounds", type=int, default=4, help="alternation rounds (each A B C C B A)")
    ap.add_argument("--no-sofie", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-engine memory subprocesses")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--write", help="replace the infer section of this markdown file")
    ap.add_argument("--hep", action="store_true",
                    help="also time the whole HEP models (ParticleNet, interaction network, ParT, DiT block, LSTM/GRU, "
                         "int8 QDQ MLP) against onnxruntime: benchmarks/infer_models.py")
    ap.add_argument("--hep-only", action="store_true", help="only the HEP models")
    args = ap.parse_args(argv)
    if args.hep or args.hep_only:
        import infer_models

        rc = infer_models.main(["--write", args.write] if args.write else [])
        if args.hep_only or rc:
            return rc

    work = Path(tempfile.mkdtemp(prefix="ml4ep-bench-"))
    blas = sofie_anchor.openblas_from_pip()
    use_sofie = not args.no_sofie and sofie_anchor.sofie_available()
    bounds = machine_bounds(work)
    print(f"machine: sgemm {bounds['sgemm_gflops']:.1f} GFLOP/s, VAE sgemv {bounds['sgemv_vae_us']:.1f} us "
          f"({bounds['sgemv_gbs']:.1f} GB/s), one thread")
    results = []
    families, batches = args.models.split(","), [int(b) for b in args.batches.split(",")]
    bar = progress(total=len(families) * len(batches), desc="infer_latency", unit="row")
    for family in families:
        path = work / f"{family}.onnx"
        zoo.family_onnx(family, path)
        t0 = time.perf_counter()
        model = mi.compile(path, cache=False)
        compile_s = time.perf_counter() - t0
        engines = py_contenders(path, family, model)
        flops, weight_bytes = model_cost(family)
        for batch in batches:
            bar.set_postfix_str(f"{family} batch {batch}")
            x = sofie_anchor.bench_inputs([(batch, *zoo.FAMILIES[family].input_shape)])[0].astype(np.float32)
            number = max(3, min(2000, int(2e5 / (batch * max(1, int(np.prod(zoo.FAMILIES[family].input_shape)))) + 3)))
            # Python contenders: calibrate, then alternating blocks
            names = list(engines)
            for n in names:
                engines[n](x)
            samples: dict[str, list[float]] = {n: [] for n in names}
            for r in range(args.rounds):
                order = names + names[::-1] if r % 2 == 0 else names[::-1] + names
                for n in order:
                    samples[n].append(time_block(engines[n], x, number))
            row = {"model": family, "batch": batch, "compile_s": compile_s, "flops": flops * batch,
                   "weight_bytes": weight_bytes}
            for n in names:
                row[f"{n}_us"] = float(np.median(samples[n]))
            # C++ loops, alternated ml4ep / sofie / sofie / ml4ep
            n_iter = max(20, min(3000, number * 3))
            cpp: dict[str, list[dict]] = {"ml4ep-cpp": [], "sofie-cpp": []}
            for r in range(2):
                order = ["ml4ep-cpp", "sofie-cpp"] if r == 0 else ["sofie-cpp", "ml4ep-cpp"]
                for n in order:
                    if n == "ml4ep-cpp":
                        cpp[n].append(ml4ep_cpp(model, family, batch, x, n_iter, work))
                    elif use_sofie:
                        try:
                            res = sofie_anchor.sofie_bench(str(path), batch, [zoo.FAMILIES[family].input_shape],
                                                           n_iter, CXXFLAGS, blas, str(work / "sofie"))
                            cpp[n].append(res)
                        except RuntimeError as exc:
                            row["sofie_error"] = str(exc).splitlines()[0][:200]
            for n, runs in cpp.items():
                if runs:
                    row[f"{n}_us"] = float(np.median([r["median_us"] for r in runs]))
                    row[f"{n}_rss_mb"] = max(r["peak_rss_kb"] for r in runs) / 1024
            if "sofie-cpp" in cpp and cpp["sofie-cpp"]:
                row["sofie_compile_s"] = cpp["sofie-cpp"][0].get("compile_s")
                ref = model(x)
                row["sofie_checksum_ok"] = bool(np.isclose(cpp["sofie-cpp"][0]["checksum"], float(ref.sum()),
                                                           rtol=1e-3, atol=1e-3))
            if not args.no_memory:
                for n in names:
                    row[f"{n}_mem_mb"] = python_peak_mb(n, path, family, batch)
            results.append(row)
            write(_fmt_row(row))
            bar.update()
    bar.close()
    report = {"machine": _machine(), "bounds": bounds, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.write:
        _write_markdown(Path(args.write), report)
    return 0


def _fmt_row(r: dict) -> str:
    def g(k):
        v = r.get(k)
        return f"{v:9.1f}" if isinstance(v, float) else f"{'-':>9}"

    return (f"{r['model']:<12} b={r['batch']:<5} ml4ep-cpp {g('ml4ep-cpp_us')} sofie-cpp {g('sofie-cpp_us')} "
            f"ml4ep-py {g('ml4ep-py_us')} ort {g('onnxruntime_us')} torch {g('torch_us')}  (us)")


def _machine() -> dict:
    cpu = cpu_model()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "compiler": build.compiler_version(build.compiler()), "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _write_markdown(path: Path, report: dict) -> None:
    b = report["bounds"]
    lines = [
        "## ml4ep.infer latency (`benchmarks/infer_latency.py`)",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, {report['machine']['compiler']}; "
        "one thread everywhere; medians of alternating blocks.",
        f"Bounds measured in the same run: sgemm {b['sgemm_gflops']:.1f} GFLOP/s; sgemv of the VAE decoder's "
        f"6480x100 output layer {b['sgemv_vae_us']:.1f} us ({b['sgemv_gbs']:.1f} GB/s), pip OpenBLAS.",
        "",
        "| model | batch | ml4ep C++ us | SOFIE C++ us | SOFIE/ml4ep | ml4ep Py us | ORT us | ORT/ml4ep-py | torch us "
        "| ml4ep-py events/s | ML4EP/ORT mem MB | C++ RSS ml4ep/SOFIE MB | compile s | ml4ep C++ GFLOP/s (% sgemm) "
        "| weights GB/s (% sgemv) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        def f(k, fmt="{:.1f}", r=r):
            v = r.get(k)
            return fmt.format(v) if isinstance(v, (int, float)) and v == v else "-"

        ratio_s = (f"{r['sofie-cpp_us'] / r['ml4ep-cpp_us']:.2f}x" if r.get("sofie-cpp_us") else
                   ("fails" if r.get("sofie_error") else "-"))
        ratio_o = f"{r['onnxruntime_us'] / r['ml4ep-py_us']:.2f}x"
        tput = f"{r['batch'] / r['ml4ep-py_us'] * 1e6:,.0f}"
        lines.append(
            f"| {r['model']} | {r['batch']} | {f('ml4ep-cpp_us')} | {f('sofie-cpp_us')} | {ratio_s} | "
            f"{f('ml4ep-py_us')} | {f('onnxruntime_us')} | {ratio_o} | {f('torch_us')} | {tput} | "
            f"{f('ml4ep-py_mem_mb')}/{f('onnxruntime_mem_mb')} | {f('ml4ep-cpp_rss_mb')}/{f('sofie-cpp_rss_mb')} | "
            f"{f('compile_s', '{:.2f}')} | {r['flops'] / r['ml4ep-cpp_us'] / 1e3:.1f} "
            f"({100 * r['flops'] / r['ml4ep-cpp_us'] / 1e3 / b['sgemm_gflops']:.0f}%) | "
            f"{r['weight_bytes'] / r['ml4ep-cpp_us'] / 1e3:.1f} "
            f"({100 * r['weight_bytes'] / r['ml4ep-cpp_us'] / 1e3 / b['sgemv_gbs']:.0f}%) |"
        )
    errors = [(r["model"], r["batch"], r["sofie_error"]) for r in report["results"] if r.get("sofie_error")]
    if errors:
        lines += ["", "SOFIE failures: " + "; ".join(f"{m} (batch {b}): {e}" for m, b, e in errors)]
    vae = [r for r in report["results"] if r["model"] == "vae_decoder" and r["batch"] == 1]
    if vae:
        lines += ["", f"VAE decoder, batch 1: ml4ep C++ {vae[0]['ml4ep-cpp_us']:.1f} us = "
                      f"{vae[0]['ml4ep-cpp_us'] / b['sgemv_vae_us']:.2f}x the sgemv time of its output layer."]
    lines += ["", "Distance from the bounds: GFLOP/s from PyTorch's FLOP counter over the ml4ep C++ time (compute-bound "
              "cases approach the sgemm peak at large batch); GB/s = parameter bytes streamed per call over the time "
              "(memory-bound cases, batch 1, approach the sgemv rate)."]
    write_section(path, "infer_latency", lines)


if __name__ == "__main__":
    sys.exit(main())
