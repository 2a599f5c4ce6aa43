"""The Geant4-style C++ hook (ml4ep.fastsim.hook): tiny VAEs and flow models -> ONNX -> ml4ep.infer C++ ->
shower_hook, checked against the torch models for the same noise (and conditions)."""

from __future__ import annotations

import shutil
import subprocess

import h5py
import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.fastsim import gflash, io
from ml4ep.fastsim.generate import export, generate
from ml4ep.fastsim.hook import (CMAKE_BEGIN, HookError, export_cpp, save_models, write_flow_hook_example,
                                write_hook_example)
from ml4ep.fastsim.train import train

LATENT, N_VOXELS = 4, 368
N_STATE = N_VOXELS + 5  # the flow state: ds1-photons has 5 layers, one energy each beside the voxel shapes
CXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="needs g++")


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """(run dir, C++ dir, hook binary) for a 1-epoch VAE."""
    root = tmp_path_factory.mktemp("hook")
    e, s = gflash.simulate("ds1-photons", 300, energy=(1.0, 100.0), seed=5)
    data = io.write(root / "showers.h5", e, s, geometry="ds1-photons")
    run = root / "run"
    train(data, run, epochs=1, hidden=(32, 16), latent=LATENT, progress=False, device="cpu", batch_size=128, seed=1)
    onnx_path = export(run, root / "vae_decoder.onnx")
    compiled = mi.compile(str(onnx_path))
    cpp = compiled.save(root / "cpp")
    paths = write_hook_example(cpp, compiled.name, LATENT, N_VOXELS)
    assert paths["header"].exists() and paths["main"].exists()
    exe = root / "shower_hook"
    subprocess.run([CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS", f"-I{cpp}",
                    str(paths["main"]), "-o", str(exe)], check=True, capture_output=True, text=True)
    return run, cpp, exe, compiled.name


def _run(exe, cpp, name, *args):
    res = subprocess.run([str(exe), "--weights", str(cpp / f"{name}.bin"), *map(str, args)], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_hook_matches_torch_for_the_same_noise(hook, tmp_path):
    run, cpp, exe, name = hook
    energies_gev = np.array([2.0, 20.0, 80.0])
    z = np.random.default_rng(7).standard_normal((3, LATENT)).astype(np.float32)
    z.tofile(tmp_path / "z.f32")
    out = _run(exe, cpp, name, "--z", tmp_path / "z.f32", "--out", tmp_path / "s.f32", *energies_gev)
    showers = np.fromfile(tmp_path / "s.f32", dtype=np.float32)
    assert showers.size == 3 * N_VOXELS
    showers = showers.reshape(3, N_VOXELS)
    assert np.all(np.isfinite(showers)) and showers.min() >= 0
    ref = generate(run, energies_gev * 1000.0, backend="torch", noise=z)
    assert ref.shape == showers.shape
    np.testing.assert_allclose(showers, ref, rtol=0, atol=1e-4 * float(np.abs(ref).max()))
    # the printed summary: one line per shower with its deposited energy and hit-voxel count
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        dep = float(line.split("E_dep ")[1].split(" MeV")[0])
        hit = int(line.split("voxels > 0: ")[1].split(" of")[0])
        assert dep == pytest.approx(float(showers[i].sum()), rel=1e-4)
        assert hit == int((showers[i] > 0).sum())


def test_hook_draws_noise_from_its_seed(hook, tmp_path):
    _, cpp, exe, name = hook
    a = _run(exe, cpp, name, "--seed", 3, "--out", tmp_path / "a.f32")
    b = _run(exe, cpp, name, "--seed", 3, "--out", tmp_path / "b.f32")
    _run(exe, cpp, name, "--seed", 4, "--out", tmp_path / "c.f32")
    assert a == b and len(a.strip().splitlines()) == 3  # the default 1, 10, 100 GeV
    sa, sc = (np.fromfile(tmp_path / f, dtype=np.float32).reshape(3, N_VOXELS) for f in ("a.f32", "c.f32"))
    assert sa.min() >= 0 and not np.array_equal(sa, sc)
    res = subprocess.run([str(exe), "--weights", str(cpp / f"{name}.bin"), "-5"], capture_output=True, text=True)
    assert res.returncode == 2 and "positive energy" in res.stderr


def test_cmake_target_written_once(hook):
    _, cpp, _, name = hook
    write_hook_example(cpp, name, LATENT, N_VOXELS)  # again: the target block is replaced, not duplicated
    text = (cpp / "CMakeLists.txt").read_text()
    assert text.count(CMAKE_BEGIN) == 1 and text.count("add_executable(shower_hook") == 1
    assert f"add_executable({name}_example" in text


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_builds_the_hook(hook, tmp_path):
    _, cpp, _, _ = hook
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(cpp), "-B", str(build), "-DML4EP_USE_BLAS=OFF",
                    "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "shower_hook"], check=True, capture_output=True)
    assert (build / "shower_hook").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(HookError, match="identifier"):
        write_hook_example(tmp_path, "bad-name", LATENT, N_VOXELS)
    # the names ml4ep.infer gives a compiled model (ml4ep._native.names.identifier), nothing else: no keyword, no
    # reserved leading underscore, no non-string
    for bad in ("int", "_m", "1m", "m\n#error", None):
        with pytest.raises(HookError, match="must be a C\\+\\+ identifier"):
            write_hook_example(tmp_path, bad, LATENT, N_VOXELS)
    with pytest.raises(HookError, match="latent"):
        write_hook_example(tmp_path, "m", 0, N_VOXELS)
    paths = write_hook_example(tmp_path / "fresh", "m", 2, 10)  # no CMakeLists.txt yet: a standalone one
    text = paths["cmake"].read_text()
    assert "project(m_hook CXX)" in text and "add_executable(shower_hook" in text


# ---------------------------------------------------------------------------------------------------------------
# the flow model (and the VAE with an extra condition column)

FLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS"]
ENERGIES_GEV = np.array([2.0, 20.0, 80.0])
CONDS = np.array([[0.0], [0.12], [0.28]], dtype=np.float32)


def _gxx(cpp, main, exe, *extra):
    res = subprocess.run([CXX, *FLAGS, *extra, f"-I{cpp}", str(main), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    return exe


@pytest.fixture(scope="module")
def angled(tmp_path_factory):
    """300 ds1-photons showers with an extra 'angle' dataset (the condition column)."""
    root = tmp_path_factory.mktemp("angled")
    angles = np.random.default_rng(2).uniform(0.0, 0.3, 300)
    e, s = gflash.simulate("ds1-photons", 300, energy=(1.0, 100.0), seed=1, angle=angles)
    path = io.write(root / "angled.h5", e, s, geometry="ds1-photons")
    with h5py.File(path, "a") as f:
        f["angle"] = angles.astype(np.float32)
    return path


def _train_flow(data, run, **kw):
    # no warm-up and no EMA, so that 4 optimiser steps give a velocity that depends on x and t (with the zero-initialised
    # output layers barely moved, every sampler would give the same showers and the sampler checks could not fail)
    train(data, run, model="diffusion", epochs=1, batch_size=64, dim=16, depth=1, heads=2, geometry="ds1-photons",
          progress=False, device="cpu", seed=3, lr=1e-2, warmup=0, ema_decay=0.0, **kw)
    return run


@pytest.fixture(scope="module")
def flow(angled, tmp_path_factory):
    """A flow model without conditions (default sampler: midpoint, 20 evaluations) exported by the CLI."""
    from ml4ep.cli import main

    root = tmp_path_factory.mktemp("flow")
    run = _train_flow(angled, root / "run")
    cpp = root / "cpp"
    assert main(["fastsim", "export", str(run), "--cpp", str(cpp)]) == 0
    return run, cpp, _gxx(cpp, cpp / "hook_main.cpp", root / "shower_hook")


@pytest.fixture(scope="module")
def flow_cond(angled, tmp_path_factory):
    """A flow model with the 'angle' condition (stored sampler: heun, 6 evaluations) through export_cpp."""
    root = tmp_path_factory.mktemp("flow_cond")
    run = _train_flow(angled, root / "run", conditions=["angle"], steps=6, sampler="heun")
    res = export_cpp(export(run), root / "cpp")
    assert res["kind"] == "diffusion" and res["models"] == ["denoiser", "postprocess"]
    return run, res["dir"], _gxx(res["dir"], res["main"], root / "shower_hook")


def _flow_run(exe, cpp, *args, check=True):
    res = subprocess.run([str(exe), "--weights", str(cpp / "denoiser.bin"), "--post-weights",
                          str(cpp / "postprocess.bin"), *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def _noise(tmp_path, n_voxels=N_VOXELS, seed=7):
    z = np.random.default_rng(seed).standard_normal((len(ENERGIES_GEV), n_voxels)).astype(np.float32)
    z.tofile(tmp_path / "z.f32")
    return z


def _close(got, ref):
    assert got.shape == ref.shape and np.all(np.isfinite(got)) and got.min() >= 0
    assert (ref > 0).sum() > 20  # a real shower, not an all-zero comparison
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * float(np.abs(ref).max()))


def test_cli_export_writes_the_flow_hook(flow, capsys):
    run, cpp, _ = flow
    names = {p.name for p in cpp.iterdir()}
    assert {"denoiser.hpp", "denoiser.bin", "postprocess.hpp", "postprocess.bin", "example.cpp",
            "postprocess_example.cpp", "shower_hook.hpp", "hook_main.cpp", "CMakeLists.txt"} <= names
    assert (run / "denoiser.onnx").exists() and (run / "postprocess.onnx").exists()
    text = (cpp / "CMakeLists.txt").read_text()
    for target in ("denoiser_example example.cpp", "postprocess_example postprocess_example.cpp",
                   "shower_hook hook_main.cpp"):
        assert text.count(f"add_executable({target})") == 1
    header = (cpp / "shower_hook.hpp").read_text()
    assert '#include "denoiser.hpp"' in header and '#include "postprocess.hpp"' in header
    assert "kDefaultSteps = 20;" in header and 'kDefaultSampler = "midpoint"' in header
    # exporting again (here with the hook's sampler changed) replaces the blocks instead of adding to them
    from ml4ep.cli import main

    capsys.readouterr()
    assert main(["fastsim", "export", str(run), "--cpp", str(cpp), "--steps", "8", "--sampler", "euler"]) == 0
    out = capsys.readouterr().out
    assert "denoiser ONNX" in out and "postprocess" in out and "shower_hook" in out
    text = (cpp / "CMakeLists.txt").read_text()
    assert text.count("add_executable(postprocess_example") == 1 and text.count(CMAKE_BEGIN) == 1
    assert "kDefaultSteps = 8;" in (cpp / "shower_hook.hpp").read_text()
    assert main(["fastsim", "export", str(run), "--cpp", str(cpp)]) == 0  # back to the model's own sampler
    assert main(["fastsim", "export", str(run), "--cpp", str(cpp), "--steps", "7"]) == 2  # midpoint: odd steps
    assert "steps must be even" in capsys.readouterr().err
    assert main(["fastsim", "export", str(run), "--steps", "4"]) == 2  # --steps without --cpp
    assert "need --cpp" in capsys.readouterr().err
    # the models of the hook built for another ISA level: its CMake build targets that level too
    v2 = cpp.parent / "cpp_v2"
    assert main(["fastsim", "export", str(run), "--cpp", str(v2), "--march", "x86-64-v2"]) == 0
    assert 'set(ML4EP_MARCH "x86-64-v2"' in (v2 / "CMakeLists.txt").read_text()
    assert main(["fastsim", "export", str(run), "--cpp", str(v2), "--march", "no-such-cpu"]) != 0
    assert "no-such-cpu" in capsys.readouterr().err


def test_flow_hook_matches_torch_for_the_same_noise(flow, tmp_path):
    run, cpp, exe = flow
    z = _noise(tmp_path, N_STATE)
    out = _flow_run(exe, cpp, "--z", tmp_path / "z.f32", "--out", tmp_path / "s.f32", *ENERGIES_GEV).stdout
    got = np.fromfile(tmp_path / "s.f32", dtype=np.float32).reshape(3, N_VOXELS)
    ref = generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z)
    _close(got, ref)
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert float(line.split("E_dep ")[1].split(" MeV")[0]) == pytest.approx(float(got[i].sum()), rel=1e-4)
        assert int(line.split("voxels > 0: ")[1].split(" of")[0]) == int((got[i] > 0).sum())


@pytest.mark.parametrize("steps, sampler", [(3, "euler"), (4, "heun"), (2, "midpoint")])
def test_flow_hook_sampler_override(flow, tmp_path, steps, sampler):
    run, cpp, exe = flow
    z = _noise(tmp_path, N_STATE, seed=steps)
    _flow_run(exe, cpp, "--steps", steps, "--sampler", sampler, "--z", tmp_path / "z.f32", "--out",
              tmp_path / "s.f32", *ENERGIES_GEV)
    got = np.fromfile(tmp_path / "s.f32", dtype=np.float32).reshape(3, N_VOXELS)
    _close(got, generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z, steps=steps, sampler=sampler))
    # the samplers really differ: the default (20 midpoint evaluations) gives other showers for the same noise, by
    # far more than the hook's agreement with torch (about 1e-6 of the largest voxel)
    default = generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z)
    assert np.abs(default - got).max() > 1e-4 * np.abs(default).max()
    np.testing.assert_allclose(got, generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z, steps=steps,
                                             sampler=sampler), rtol=0, atol=1e-5 * float(np.abs(got).max()))


def test_flow_hook_with_a_condition_matches_torch(flow_cond, tmp_path):
    run, cpp, exe = flow_cond
    z = _noise(tmp_path, N_STATE)
    CONDS.tofile(tmp_path / "c.f32")
    _flow_run(exe, cpp, "--z", tmp_path / "z.f32", "--cond", tmp_path / "c.f32", "--out", tmp_path / "s.f32",
              *ENERGIES_GEV)
    got = np.fromfile(tmp_path / "s.f32", dtype=np.float32).reshape(3, N_VOXELS)
    ref = generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z, conditions=CONDS)
    _close(got, ref)
    other = generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z, conditions=CONDS + 0.2)
    assert np.abs(other - ref).max() > 1e-4 * np.abs(ref).max()  # the condition matters
    # the driver's checks: the condition file is required, of the right size, and so is the noise file
    res = _flow_run(exe, cpp, "--z", tmp_path / "z.f32", *ENERGIES_GEV, check=False)
    assert res.returncode == 2 and "give --cond" in res.stderr and "angle" in res.stderr
    res = _flow_run(exe, cpp, "--cond", tmp_path / "c.f32", 1.0, 2.0, check=False)
    assert res.returncode == 1 and "more than the 2 condition floats" in res.stderr
    res = _flow_run(exe, cpp, "--cond", tmp_path / "c.f32", "--z", tmp_path / "c.f32", *ENERGIES_GEV, check=False)
    assert res.returncode == 1 and f"cannot read {3 * N_STATE} noise floats" in res.stderr
    res = _flow_run(exe, cpp, "--cond", tmp_path / "c.f32", "--steps", 3, *ENERGIES_GEV, check=False)
    assert res.returncode == 1 and "steps must be even" in res.stderr  # the stored sampler is heun


def test_flow_hook_draws_noise_from_its_seed(flow, tmp_path):
    _, cpp, exe = flow
    a = _flow_run(exe, cpp, "--seed", 3, "--steps", 2, "--out", tmp_path / "a.f32").stdout
    b = _flow_run(exe, cpp, "--seed", 3, "--steps", 2, "--out", tmp_path / "b.f32").stdout
    _flow_run(exe, cpp, "--seed", 4, "--steps", 2, "--out", tmp_path / "c.f32")
    assert a == b and len(a.strip().splitlines()) == 3
    sa, sc = (np.fromfile(tmp_path / f, dtype=np.float32).reshape(3, N_VOXELS) for f in ("a.f32", "c.f32"))
    assert sa.min() >= 0 and not np.array_equal(sa, sc)
    res = _flow_run(exe, cpp, "--cond", tmp_path / "a.f32", check=False)
    assert res.returncode == 2 and "no extra conditions" in res.stderr
    res = _flow_run(exe, cpp, "--sampler", "rk4", check=False)
    assert res.returncode == 1 and "euler, midpoint or heun" in res.stderr


_ALLOC_MAIN = r"""
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>
#include "shower_hook.hpp"

static std::atomic<long> g_allocs{0};
void* operator new(std::size_t n) {
  ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocs;
  if (void* p = std::aligned_alloc(static_cast<std::size_t>(a), (n + static_cast<std::size_t>(a) - 1) /
                                   static_cast<std::size_t>(a) * static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// argv: denoiser.bin postprocess.bin noise.f32 conds.f32 out.f32 -- prints the allocations of later calls
int main(int, char** argv) {
  using ml4ep_fastsim::ShowerGenerator;
  const int64_t n = 3, nv = ShowerGenerator::kVoxels;
  std::vector<float> z(n * ShowerGenerator::kNoise), c(n), e = {2000.0f, 20000.0f, 80000.0f}, out(n * nv), tmp(n * nv);
  std::FILE* f = std::fopen(argv[3], "rb");
  if (!f || std::fread(z.data(), sizeof(float), z.size(), f) != z.size()) return 1;
  std::fclose(f);
  f = std::fopen(argv[4], "rb");
  if (!f || std::fread(c.data(), sizeof(float), c.size(), f) != c.size()) return 1;
  std::fclose(f);
  ShowerGenerator gen(argv[1], argv[2], 5);
  gen.generate_with_noise(z.data(), e.data(), c.data(), n, out.data());  // all three in one batch
  const long before = g_allocs.load();
  for (int k = 0; k < 3; ++k) {
    gen.generate(e.data(), c.data(), 1 + k % 3, tmp.data());
    gen.generate_with_noise(z.data(), e.data(), c.data(), n, tmp.data());
  }
  std::printf("%ld\n", g_allocs.load() - before);
  f = std::fopen(argv[5], "wb");
  if (!f || std::fwrite(out.data(), sizeof(float), out.size(), f) != out.size()) return 1;
  std::fclose(f);
  return 0;
}
"""


def test_flow_generator_batches_without_allocating(flow_cond, tmp_path):
    """The C++ API itself: a batch of 3 in one call matches torch, and no call allocates once n = 3 was seen."""
    run, cpp, _ = flow_cond
    z = _noise(tmp_path, N_STATE)
    CONDS.tofile(tmp_path / "c.f32")
    (tmp_path / "alloc.cpp").write_text(_ALLOC_MAIN)
    # (the warning is about the replaced global new/delete of this test program, malloc/free by design)
    exe = _gxx(cpp, tmp_path / "alloc.cpp", tmp_path / "alloc", "-Wno-mismatched-new-delete")
    res = subprocess.run([str(exe), str(cpp / "denoiser.bin"), str(cpp / "postprocess.bin"), str(tmp_path / "z.f32"),
                          str(tmp_path / "c.f32"), str(tmp_path / "s.f32")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == 0
    got = np.fromfile(tmp_path / "s.f32", dtype=np.float32).reshape(3, N_VOXELS)
    _close(got, generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z, conditions=CONDS))


def test_conditional_vae_hook_matches_torch(angled, tmp_path):
    run = tmp_path / "run"
    train(angled, run, epochs=1, hidden=(32, 16), latent=LATENT, progress=False, device="cpu", batch_size=128,
          seed=1, conditions=["angle"])
    res = export_cpp(export(run), tmp_path / "cpp")
    assert res["kind"] == "vae" and len(res["models"]) == 1
    assert "const float* conds, int64_t n" in res["header"].read_text()
    exe = _gxx(res["dir"], res["main"], tmp_path / "shower_hook")
    z = np.random.default_rng(3).standard_normal((3, LATENT)).astype(np.float32)
    z.tofile(tmp_path / "z.f32")
    CONDS.tofile(tmp_path / "c.f32")
    weights = res["dir"] / f"{res['models'][0]}.bin"
    out = subprocess.run([str(exe), "--weights", str(weights), "--z", str(tmp_path / "z.f32"), "--cond",
                          str(tmp_path / "c.f32"), "--out", str(tmp_path / "s.f32"), *map(str, ENERGIES_GEV)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = np.fromfile(tmp_path / "s.f32", dtype=np.float32).reshape(3, N_VOXELS)
    _close(got, generate(run, ENERGIES_GEV * 1e3, backend="torch", noise=z, conditions=CONDS))
    with pytest.raises(HookError, match="flow model"):
        export_cpp(run / "decoder.onnx", tmp_path / "cpp2", steps=4)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_builds_the_flow_hook(flow_cond, tmp_path):
    _, cpp, _ = flow_cond
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(cpp), "-B", str(build), "-DML4EP_USE_BLAS=OFF",
                    "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror"], check=True, capture_output=True)
    for target in ("shower_hook", "postprocess_example"):
        subprocess.run(["cmake", "--build", str(build), "--target", target], check=True, capture_output=True)
        assert (build / target).exists()


def test_flow_bad_arguments(flow, tmp_path):
    run, _, _ = flow
    with pytest.raises(HookError, match="distinct names"):
        write_flow_hook_example(tmp_path, "m", "m", 10)
    with pytest.raises(HookError, match="sampler must be one of"):
        write_flow_hook_example(tmp_path, "d", "p", 10, sampler="rk4")
    with pytest.raises(HookError, match="must be even"):
        write_flow_hook_example(tmp_path, "d", "p", 10, steps=5, sampler="heun")
    with pytest.raises(HookError, match=r"1\.\.20"):
        write_flow_hook_example(tmp_path, "d", "p", 10, steps=21, sampler="euler")
    with pytest.raises(HookError, match="postprocess_name"):
        write_flow_hook_example(tmp_path, "d", "p-q", 10)
    with pytest.raises(HookError, match="n_conditions"):
        write_flow_hook_example(tmp_path, "d", "p", 10, n_conditions=-1)
    with pytest.raises(HookError, match="n_conditions"):
        write_hook_example(tmp_path, "m", 2, 10, n_conditions=1.5)
    with pytest.raises(HookError, match="file not found"):
        export_cpp(tmp_path / "missing.onnx", tmp_path / "cpp")
    lone = tmp_path / "lone" / "denoiser.onnx"  # the denoiser without its postprocessing graph
    lone.parent.mkdir()
    shutil.copyfile(run / "denoiser.onnx", lone)
    with pytest.raises(HookError, match="postprocessing graph .* is missing"):
        export_cpp(lone, tmp_path / "cpp")
    with pytest.raises(HookError, match="not an exported fastsim"):
        export_cpp(run / "postprocess.onnx", tmp_path / "cpp")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(HookError, match="not a readable ONNX"):
        export_cpp(tmp_path / "junk.onnx", tmp_path / "cpp")
    with pytest.raises(HookError, match="no compiled models"):
        save_models(tmp_path, [])
    with pytest.raises(HookError, match="not a compiled"):
        save_models(tmp_path, [object()])


def test_hostile_condition_names_stay_text(angled, tmp_path):
    """Condition names come from the ONNX file's metadata (untrusted): they reach the hook's C++ only escaped, so
    a name holding a newline, quotes or printf directives neither breaks the build nor the message that shows it."""
    import onnx

    run = tmp_path / "run"
    train(angled, run, epochs=1, hidden=(16,), latent=LATENT, progress=False, device="cpu", batch_size=128,
          seed=2, conditions=["angle"])
    path = export(run, tmp_path / "decoder.onnx")
    model = onnx.load(str(path))
    hostile = 'angle\n#error INJECTED\n" %n%s \\'
    for p in model.metadata_props:
        if p.key == "conditions":
            p.value = hostile
    onnx.save(model, str(path))
    res = export_cpp(path, tmp_path / "cpp")
    exe = _gxx(res["dir"], res["main"], tmp_path / "shower_hook")
    out = subprocess.run([str(exe), "--weights", str(res["dir"] / f"{res['models'][0]}.bin"), "10"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and hostile in out.stderr  # the message asking for --cond names it as it is
