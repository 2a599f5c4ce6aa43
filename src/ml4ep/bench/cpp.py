"""The timing program of the C++ backends (ml4ep's generated header, SOFIE's generated header).

One program per model and engine, generated from the model's input/output description and compiled with the
same flags for both engines (:data:`CXXFLAGS`, linked to the same pip OpenBLAS) by ml4ep's native build layer
(:func:`ml4ep._native.build.compile_program`: the same compiler as every other build). The program is the whole
process being measured: it reads the feeds the Python side wrote (``in<k>_b<batch>.bin``, raw arrays), notes its
resident memory, loads the model, runs the check batch once and writes its outputs (``out<k>.bin``), then for
each timed batch runs a warm-up call and ``repeats`` blocks of calls, and prints one JSON line (after
:data:`MARKER`) with the per-call time of every block, the load and first-call times and the memory.

ml4ep: ``<name>::Model model(weights)`` once; ``model.infer(inputs..., outputs..., batch)`` into buffers of the
program. SOFIE: ``Session session(weights, batch)`` built for each batch size (its work buffers are sized at
construction), ``session.infer(batch, inputs...)``, which returns the output vector (its allocation is part of
SOFIE's API and of the time).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Ml4epError

CXXFLAGS = ["-std=c++17", "-O3", "-march=native", "-fno-math-errno"]
MARKER = "@@ML4EP_BENCH@@"

_CTYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t", "bool": "unsigned char"}


@dataclass(frozen=True)
class Tensor:
    """An input or output of the program: ONNX name, NumPy dtype name, elements per sample (``batched``) or in
    all (not batched)."""

    name: str
    dtype: str
    size: int
    batched: bool = True


_TEMPLATE = r"""// Timing program of `ml4ep bench` (generated): @ENGINE@
#include "@HEADER@"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
long status_kb(const char* key) {  // VmRSS / VmHWM of /proc/self/status, in kB
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0) return std::atol(line.c_str() + n);
  return -1;
}
template <class T> std::vector<T> load(const std::string& path, std::size_t n) {
  std::vector<T> v(n);
  std::ifstream f(path, std::ios::binary);
  if (!f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)))) {
    std::fprintf(stderr, "cannot read %zu values from %s\n", n, path.c_str());
    std::exit(2);
  }
  return v;
}
template <class T> void save(const std::string& path, const T* data, std::size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
}
struct Feeds {
@FEED_FIELDS@
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s dir check_batch repeats block_seconds batch...\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const long check = std::atol(argv[2]);
  const int repeats = std::atoi(argv[3]);
  const double block_s = std::atof(argv[4]);
  std::vector<long> batches{check};
  for (int i = 5; i < argc; ++i) batches.push_back(std::atol(argv[i]));
  std::vector<Feeds> feeds;
  for (long b : batches) {
    const std::string tag = "_b" + std::to_string(b) + ".bin";
    Feeds f;
@FEED_LOAD@
    feeds.push_back(std::move(f));
  }
  const long base_kb = status_kb("VmRSS:");
  double t0 = now();
@LOAD@
  double load_s = now() - t0, first_s = 0;
  std::string json = "{";
  for (std::size_t i = 0; i < batches.size(); ++i) {
    const long b = batches[i];
    Feeds& f = feeds[i];
    t0 = now();
@SETUP@
    if (i == 0) load_s += now() - t0;
    auto call = [&]() {
@CALL@
    };
    if (i == 0) {  // the check batch: one call, outputs written for the cross-check
      t0 = now();
      call();
      first_s = now() - t0;
@SAVE@
      continue;
    }
    call();  // warm-up
    t0 = now();
    call();
    const double one = now() - t0;
    const long n = std::max(1L, static_cast<long>(block_s / std::max(one, 1e-7)));
    json += (i > 1 ? ",\"" : "\"") + std::to_string(b) + "\":{\"calls\":" + std::to_string(n) + ",\"ms\":[";
    for (int r = 0; r < repeats; ++r) {
      t0 = now();
      for (long k = 0; k < n; ++k) call();
      const double ms = (now() - t0) / static_cast<double>(n) * 1e3;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%.6g", r ? "," : "", ms);
      json += buf;
    }
    json += "]}";
  }
  std::printf("@MARKER@{\"batches\":%s},\"load_s\":%.6g,\"first_s\":%.6g,\"base_kb\":%ld,\"peak_kb\":%ld}\n",
              json.c_str(), load_s, first_s, base_kb, status_kb("VmHWM:"));
  return 0;
}
"""


def _size_expr(t: Tensor, batch: str) -> str:
    return f"static_cast<std::size_t>({batch}) * {t.size}" if t.batched else str(t.size)


def write_program(path: Path, engine: str, header: str, inputs: list[Tensor], outputs: list[Tensor],
                  load: str, setup: str, expr: str, result_vectors: bool) -> None:
    """Write the timing program. ``load`` and ``setup`` are the engine's statements constructing the model
    once and per batch size, ``expr`` the expression of one inference; it sees the feeds as ``f.in<k>`` and,
    unless ``result_vectors`` (the expression returns the outputs), the output buffers ``out<k>``."""
    for t in (*inputs, *outputs):
        if t.dtype not in _CTYPES:
            raise Ml4epError(f"bench: the C++ timing program does not handle the {t.dtype} tensor '{t.name}'")
    fields = "\n".join(f"  std::vector<{_CTYPES[t.dtype]}> in{k};" for k, t in enumerate(inputs))
    loads = "\n".join(
        f'    f.in{k} = load<{_CTYPES[t.dtype]}>(dir + "/in{k}" + tag, {_size_expr(t, "b")});'
        for k, t in enumerate(inputs))
    if result_vectors:
        setup_out = ""
        save = f"      const auto res = {expr};\n"
        if len(outputs) == 1:
            save += '      save(dir + "/out0.bin", res.data(), res.size());'
        else:
            save += "\n".join(f'      save(dir + "/out{k}.bin", res[{k}].data(), res[{k}].size());'
                              for k in range(len(outputs)))
    else:
        setup_out = "\n".join(f"    std::vector<{_CTYPES[t.dtype]}> out{k}({_size_expr(t, 'b')});"
                              for k, t in enumerate(outputs))
        save = "\n".join(f'      save(dir + "/out{k}.bin", out{k}.data(), out{k}.size());' for k in range(len(outputs)))
    text = (_TEMPLATE.replace("@ENGINE@", engine).replace("@HEADER@", header).replace("@FEED_FIELDS@", fields)
            .replace("@FEED_LOAD@", loads).replace("@LOAD@", load).replace("@SETUP@", "\n".join(
                s for s in (setup, setup_out) if s)).replace("@CALL@", f"      (void){expr};").replace("@SAVE@", save)
            .replace("@MARKER@", MARKER))
    path.write_text(text)


def compile_program(src: Path, exe: Path, include: list[str], extra: list[str]) -> float:
    """Compile with :data:`CXXFLAGS` and the pip OpenBLAS; returns the compiler's wall time (a
    :class:`~ml4ep.errors.CompilerError`, an ``Ml4epError``, when it fails)."""
    from .._native import build

    blas = build.blas()
    return build.compile_program(src, exe, CXXFLAGS, include, [*extra, *blas["defines"]], blas["link"])


def write_feeds(directory: Path, feeds_by_batch: dict[int, list[np.ndarray]]) -> None:
    """The raw feed files the program reads: ``in<k>_b<batch>.bin``."""
    for b, arrays in feeds_by_batch.items():
        for k, a in enumerate(arrays):
            np.ascontiguousarray(a).tofile(directory / f"in{k}_b{b}.bin")


def run_program(exe: Path, directory: Path, check: int, batches: list[int], repeats: int, block_s: float,
                timeout: float) -> dict:
    """Run the program pinned to one core's worth of BLAS threads; returns its JSON result."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [str(exe), str(directory), str(check), str(repeats), repr(block_s), *map(str, batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=directory)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise Ml4epError(f"bench: {exe.name} failed (exit code {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1][len(MARKER):])


def read_outputs(directory: Path, outputs: list[Tensor], batch: int) -> list[np.ndarray]:
    res = []
    for k, t in enumerate(outputs):
        a = np.fromfile(directory / f"out{k}.bin", dtype=np.dtype(t.dtype))
        res.append(a.reshape(batch, -1) if t.batched else a)
    return res
