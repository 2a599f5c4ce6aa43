"""The Geant4-style C++ hook (ml4ep.fastsim.hook): a tiny VAE -> ONNX -> ml4ep.infer C++ -> shower_hook, checked
against the torch decoder for the same latent noise."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.fastsim import gflash, io
from ml4ep.fastsim.generate import export, generate
from ml4ep.fastsim.hook import CMAKE_BEGIN, HookError, write_hook_example
from ml4ep.fastsim.train import train

LATENT, N_VOXELS = 4, 368
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
    with pytest.raises(HookError, match="latent"):
        write_hook_example(tmp_path, "m", 0, N_VOXELS)
    paths = write_hook_example(tmp_path / "fresh", "m", 2, 10)  # no CMakeLists.txt yet: a standalone one
    text = paths["cmake"].read_text()
    assert "project(m_hook CXX)" in text and "add_executable(shower_hook" in text
