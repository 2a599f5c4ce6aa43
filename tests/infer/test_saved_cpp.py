"""The saved C++ compiled on its own, without Python: g++ -Wall -Wextra -Werror, outputs vs onnxruntime."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import pytest

import ml4ep.infer as mi
from ml4ep.bench import zoo
from ml4ep._native import build
from opcheck import run_ort


def _build_and_run(outdir, name, x, batch, blas: bool):
    exe = outdir / f"example_{'blas' if blas else 'noblas'}"
    cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", str(outdir / "example.cpp"), "-o", str(exe)]
    if blas:
        b = build.blas()
        cmd[1:1] = b["defines"]
        cmd += b["link"]
    else:
        cmd.insert(1, "-DML4EP_NO_BLAS")
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr  # warning-free
    inp = outdir / f"inputs_{batch}.raw"
    inp.write_bytes(x.tobytes())
    run = subprocess.run([str(exe), str(outdir / f"{name}.bin"), str(inp), str(batch)], capture_output=True,
                         text=True, env={"OPENBLAS_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    return np.fromfile(str(inp) + ".out", dtype=np.float32)


@pytest.mark.parametrize("family", ["mlp", "cnn2d", "vae_decoder"])
def test_saved_model_standalone(family, tmp_path):
    data = zoo.family_onnx(family)
    model = mi.compile(data, name=family)
    out = model.save(tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir()) == sorted(["CMakeLists.txt", "example.cpp", f"{family}.bin",
                                                             f"{family}.hpp"])
    rng = np.random.default_rng(1)
    for blas, batch in ((True, 1), (True, 33), (False, 5)):
        x = rng.normal(size=(batch, *zoo.FAMILIES[family].input_shape)).astype(np.float32)
        got = _build_and_run(out, family, x, batch, blas)
        ref = run_ort(onnx.load_from_string(data), {"x": x})[0]
        np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-4, atol=2e-5)


def test_weights_file_layout(tmp_path):
    """4 bytes per float parameter after a 64-byte header, tensors 64-byte aligned: loadable by np.memmap."""
    model = mi.compile(zoo.family_onnx("vae_decoder"), name="vae")
    raw = (model.directory / "vae.bin").read_bytes()
    assert raw[:8] == b"ML4EPW01"
    n_params = sum(p.numel() for p in zoo.build("vae_decoder").parameters())
    payload = len(raw) - 64
    assert n_params * 4 <= payload < n_params * 4 + 64 * 6
    mm = np.memmap(model.directory / "vae.bin", dtype=np.float32, mode="r", offset=64)
    w_last = zoo.build("vae_decoder")[4].bias.detach().numpy()
    # the 6480 biases of the last layer are stored verbatim somewhere in the blob
    idx = np.flatnonzero(mm == w_last[0])
    assert any(np.array_equal(mm[i:i + w_last.size], w_last) for i in idx)


_ALLOC_CHECK = r"""
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>
#include "@NAME@.hpp"

static std::atomic<long> g_allocs{0};
void* operator new(std::size_t n) { ++g_allocs; if (void* p = std::malloc(n ? n : 1)) return p; throw std::bad_alloc(); }
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocs;
  if (void* p = std::aligned_alloc(std::size_t(a), (n + std::size_t(a) - 1) / std::size_t(a) * std::size_t(a))) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

int main(int, char** argv) {
  @NAME@::Model m(argv[1]);
  std::vector<float> x(64 * @IN@, 0.5f), y(64 * @OUT@);
  m.infer(x.data(), y.data(), 64);  // first call: the workspace grows to batch 64
  const long before = g_allocs.load();
  for (int64_t b : {64, 1, 7, 64, 33}) m.infer(x.data(), y.data(), b);
  std::printf("%ld\n", g_allocs.load() - before);
  return 0;
}
"""


@pytest.mark.parametrize("family", ["cnn2d", "vae_decoder"])
def test_infer_allocates_nothing_after_the_first_call(family, tmp_path):
    """Counted by replacing the global operator new in a standalone program (no BLAS: OpenBLAS's own
    buffers are not ours to count)."""
    model = mi.compile(zoo.family_onnx(family), name=family)
    out = model.save(tmp_path / "saved")
    in_size = int(np.prod(zoo.FAMILIES[family].input_shape))
    out_size = int(np.prod(model(np.zeros((1, *zoo.FAMILIES[family].input_shape), np.float32)).shape[1:]))
    src = out / "alloc_check.cpp"
    src.write_text(_ALLOC_CHECK.replace("@NAME@", family).replace("@IN@", str(in_size)).replace("@OUT@", str(out_size)))
    exe = out / "alloc_check"
    res = subprocess.run(["g++", "-std=c++17", "-O2", "-DML4EP_NO_BLAS", str(src), "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe), str(out / f"{family}.bin")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.strip()) == 0
