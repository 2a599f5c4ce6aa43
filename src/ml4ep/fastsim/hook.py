"""A Geant4-style fast-simulation hook for an exported shower model, as plain C++ (no Geant4 needed).

>>> from ml4ep.fastsim.hook import export_cpp
>>> export_cpp("runs/flow/denoiser.onnx", "cpp")                                  # doctest: +SKIP

:func:`export_cpp` compiles the exported graphs with ``ml4ep.infer`` (the VAE's ``decoder.onnx``, or the flow model's
``denoiser.onnx`` and ``postprocess.onnx``) into one folder, each as ``<name>.hpp`` / ``<name>.bin`` (a second model's
example program as ``<name>_example.cpp``), and writes beside them:

* ``shower_hook.hpp``: ``ml4ep_fastsim::ShowerGenerator``, which owns the compiled model(s), a ``std::mt19937_64`` and
  a ``std::normal_distribution``. ``generate(energies_mev, [conds,] n, showers_out)`` draws the noise and makes ``n``
  showers; ``generate_with_noise(noise, energies_mev, [conds,] n, showers_out)`` takes given noise. ``conds`` (``n x
  kConditions`` floats) only for a model trained with extra conditions. The VAE decodes latent noise ``(n, kLatent)``;
  the flow model integrates ``dx/dt = v`` from ``x ~ N(0, 1)`` ``(n, kNoise)`` (its state) with the sampler loop of
  :func:`ml4ep.fastsim.models.diffusion.integrate` (euler, midpoint or heun; network evaluations and sampler stored
  with the model, changed by ``set_sampler``), then runs the postprocessing model. Buffers are members grown on
  demand, so calls allocate nothing once the largest ``n`` was seen: the shape of a
  ``G4VFastSimulationModel::DoIt`` that calls it once per particle.
* ``hook_main.cpp``: a driver. ``shower_hook [--weights F] [--seed S] [--z F] [--cond F] [--out F] [E_GeV ...]``
  (the flow model also ``--post-weights F --steps K --sampler NAME``) generates one shower per incident energy (GeV;
  default 1 10 100), prints each shower's deposited energy and number of hit voxels, and writes the showers as raw
  float32 ``(N, n_voxels)`` to ``--out``. ``--z`` reads the noise as raw float32 ``(N, noise)`` instead of drawing
  it (for comparing with the Python backends); ``--cond`` the conditions as raw float32 ``(N, k)``.
* a ``shower_hook`` target appended to ``CMakeLists.txt`` (between marker lines, replaced when written again;
  a standalone ``CMakeLists.txt`` is written where there is none).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from ..errors import Ml4epError
from ..infer.names import printf_text
from .sampler import MAX_STEPS, DiffusionConfigError
from .sampler import check_sampler as _check_sampler

log = logging.getLogger(__name__)

CMAKE_BEGIN = "# >>> ml4ep.fastsim shower_hook >>>"
CMAKE_END = "# <<< ml4ep.fastsim shower_hook <<<"


class HookError(Ml4epError, ValueError):
    """Invalid hook-example arguments."""


_HPP_HEAD = """\
// Geant4-style fast-simulation hook for the ml4ep shower @WHAT@ (written by ml4ep.fastsim.hook).
// In a G4VFastSimulationModel, hold one ShowerGenerator per worker thread and call generate() from DoIt().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

@INCLUDES@
namespace ml4ep_fastsim {
"""

_HPP_VAE = """\
class ShowerGenerator {
 public:
  static constexpr int64_t kLatent = @LATENT@;
  static constexpr int64_t kNoise = kLatent;  // noise floats per shower
  static constexpr int64_t kVoxels = @VOXELS@;
  static constexpr int64_t kConditions = @NCOND@;  // extra condition columns besides the incident energy

  explicit ShowerGenerator(const std::string& weights_path, std::uint64_t seed = 1)
      : model_(weights_path), rng_(seed), normal_(0.0f, 1.0f) {}

  // n showers (energies_mev: n incident energies in MeV@CDOC@) -> showers_out: n * kVoxels floats in MeV.
  void generate(const float* energies_mev, @CPARAM@int64_t n, float* showers_out) {
    check(n);
    if (n == 0) return;
    reserve(n);
    const size_t m = static_cast<size_t>(n * kLatent);
    for (size_t i = 0; i < m; ++i) z_[i] = normal_(rng_);
    model_.infer(z_.data(), energies_mev, @CARG@showers_out, n);
  }

  // The same with given latent noise z (n * kLatent floats, standard normal).
  void generate_with_noise(const float* z, const float* energies_mev, @CPARAM@int64_t n, float* showers_out) {
    check(n);
    if (n == 0) return;
    model_.infer(z, energies_mev, @CARG@showers_out, n);
  }

  void seed(std::uint64_t s) {
    rng_.seed(s);
    normal_.reset();
  }

 private:
  static void check(int64_t n) {
    if (n < 0) throw std::invalid_argument("ShowerGenerator: negative number of showers");
  }

  void reserve(int64_t n) {  // grows only: no allocation once the largest n was seen
    if (static_cast<size_t>(n) > capacity_) {
      z_.resize(static_cast<size_t>(n * kLatent));
      capacity_ = static_cast<size_t>(n);
    }
  }

  @NAME@::Model model_;
  std::mt19937_64 rng_;
  std::normal_distribution<float> normal_;
  std::vector<float> z_;
  size_t capacity_ = 0;
};

}  // namespace ml4ep_fastsim
"""

_HPP_FLOW = """\
class ShowerGenerator {
 public:
  static constexpr int64_t kVoxels = @VOXELS@;
  // floats per shower of the flow's state (the voxel shapes and one energy per layer) and of its starting noise
  static constexpr int64_t kNoise = @STATE@;
  static constexpr int64_t kConditions = @NCOND@;  // extra condition columns besides the incident energy
  static constexpr int kMaxSteps = @MAXSTEPS@;
  static constexpr int kDefaultSteps = @STEPS@;  // network evaluations per shower
  static constexpr const char* kDefaultSampler = "@SAMPLER@";

  ShowerGenerator(const std::string& denoiser_weights, const std::string& postprocess_weights,
                  std::uint64_t seed = 1)
      : denoiser_(denoiser_weights), post_(postprocess_weights), rng_(seed), normal_(0.0f, 1.0f) {
    set_sampler(kDefaultSampler, kDefaultSteps);
  }

  // The ODE sampler ("euler", "midpoint" or "heun") and its number of network evaluations (1..kMaxSteps; even for
  // midpoint and heun, which evaluate the network twice per step).
  void set_sampler(const std::string& sampler, int steps) {
    int per = 0;
    if (sampler == "euler") {
      per = 1;
    } else if (sampler == "midpoint" || sampler == "heun") {
      per = 2;
    } else {
      throw std::invalid_argument("ShowerGenerator: sampler must be euler, midpoint or heun, got '" + sampler + "'");
    }
    if (steps < 1 || steps > kMaxSteps) {
      throw std::invalid_argument("ShowerGenerator: steps (network evaluations) must be in 1.." +
                                  std::to_string(kMaxSteps) + ", got " + std::to_string(steps));
    }
    if (steps % per) {
      throw std::invalid_argument("ShowerGenerator: the " + sampler + " sampler takes 2 network evaluations per "
                                  "step: steps must be even, got " + std::to_string(steps));
    }
    sampler_ = sampler;
    steps_ = steps;
  }
  int steps() const { return steps_; }
  const std::string& sampler() const { return sampler_; }

  // n showers (energies_mev: n incident energies in MeV@CDOC@) -> showers_out: n * kVoxels floats in MeV.
  void generate(const float* energies_mev, @CPARAM@int64_t n, float* showers_out) {
    check(n);
    if (n == 0) return;
    reserve(n);
    const size_t m = static_cast<size_t>(n * kNoise);
    for (size_t i = 0; i < m; ++i) x_[i] = normal_(rng_);
    run(energies_mev, @CARG@n, showers_out);
  }

  // The same from given starting noise x0 (n * kNoise floats, standard normal).
  void generate_with_noise(const float* x0, const float* energies_mev, @CPARAM@int64_t n, float* showers_out) {
    check(n);
    if (n == 0) return;
    reserve(n);
    std::copy(x0, x0 + n * kNoise, x_.begin());
    run(energies_mev, @CARG@n, showers_out);
  }

  void seed(std::uint64_t s) {
    rng_.seed(s);
    normal_.reset();
  }

 private:
  static void check(int64_t n) {
    if (n < 0) throw std::invalid_argument("ShowerGenerator: negative number of showers");
  }

  void reserve(int64_t n) {  // grows only: no allocation once the largest n was seen
    if (static_cast<size_t>(n) > capacity_) {
      const size_t m = static_cast<size_t>(n * kNoise);
      x_.resize(m);
      xt_.resize(m);
      k1_.resize(m);
      k2_.resize(m);
      t_.resize(static_cast<size_t>(n));
      capacity_ = static_cast<size_t>(n);
    }
  }

  // v = the denoiser's velocity at (x, t) for the n showers
  void velocity(const float* x, double t, const float* e, @CPARAM@int64_t n, float* v) {
    std::fill(t_.begin(), t_.begin() + n, static_cast<float>(t));
    denoiser_.infer(x, t_.data(), e, @CARG@v, n);
  }

  // x_ (the noise) -> showers: the sampler loop of ml4ep.fastsim.models.diffusion.integrate, then postprocessing
  void run(const float* e, @CPARAM@int64_t n, float* showers_out) {
    const int n_steps = sampler_ == "euler" ? steps_ : steps_ / 2;
    const double h = 1.0 / n_steps;
    const float hf = static_cast<float>(h), half = static_cast<float>(0.5 * h);
    const size_t m = static_cast<size_t>(n * kNoise);
    float* x = x_.data();
    float* xt = xt_.data();
    float* k1 = k1_.data();
    float* k2 = k2_.data();
    for (int i = 0; i < n_steps; ++i) {
      const double t0 = i * h;
      if (sampler_ == "euler") {
        velocity(x, t0, e, @CARG@n, k1);
        for (size_t j = 0; j < m; ++j) x[j] = x[j] + hf * k1[j];
      } else if (sampler_ == "midpoint") {
        velocity(x, t0, e, @CARG@n, k1);
        for (size_t j = 0; j < m; ++j) xt[j] = x[j] + half * k1[j];
        velocity(xt, t0 + 0.5 * h, e, @CARG@n, k2);
        for (size_t j = 0; j < m; ++j) x[j] = x[j] + hf * k2[j];
      } else {  // heun
        velocity(x, t0, e, @CARG@n, k1);
        for (size_t j = 0; j < m; ++j) xt[j] = x[j] + hf * k1[j];
        velocity(xt, t0 + h, e, @CARG@n, k2);
        for (size_t j = 0; j < m; ++j) x[j] = x[j] + half * (k1[j] + k2[j]);
      }
    }
    post_.infer(x, e, showers_out, n);
  }

  @DENOISER@::Model denoiser_;
  @POST@::Model post_;
  std::mt19937_64 rng_;
  std::normal_distribution<float> normal_;
  std::string sampler_;
  int steps_ = 0;
  std::vector<float> x_, xt_, k1_, k2_, t_;
  size_t capacity_ = 0;
};

}  // namespace ml4ep_fastsim
"""

_MAIN = """\
// Driver of the ml4ep fast-simulation hook for @WHAT@ (written by ml4ep.fastsim.hook).
// Usage: shower_hook @USAGE@
//   one shower per incident energy in GeV (default: 1 10 100); --z: raw float32 noise (N, @NOISE@);
//   --cond: raw float32 extra conditions (N, @NCOND@); --out: raw float32 showers (N, @VOXELS@) in MeV.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "shower_hook.hpp"

using ml4ep_fastsim::ShowerGenerator;

static int usage() {
  std::fprintf(stderr, "usage: shower_hook @USAGE@\\n");
  return 2;
}

// exactly count floats from a raw float32 file
static bool read_floats(const std::string& path, size_t count, const char* what, std::vector<float>& v) {
  v.resize(count);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!f) {
    std::fprintf(stderr, "%s: cannot read %lld %s floats\\n", path.c_str(), static_cast<long long>(count), what);
    return false;
  }
  if (f.peek() != std::char_traits<char>::eof()) {
    std::fprintf(stderr, "%s: more than the %lld %s floats expected\\n", path.c_str(), static_cast<long long>(count),
                 what);
    return false;
  }
  return true;
}

int main(int argc, char** argv) {
  std::string weights = "@WEIGHTS@", z_path, cond_path, out_path;
@FLOW_DECL@  std::uint64_t seed = 1;
  std::vector<float> energies_gev;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool takes_value = a == "--weights" || a == "--seed" || a == "--z" || a == "--cond" || a == "--out"@FLOW_OPTS@;
    if (takes_value && i + 1 >= argc) return usage();
    if (a == "--weights") {
      weights = argv[++i];
    } else if (a == "--seed") {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--z") {
      z_path = argv[++i];
    } else if (a == "--cond") {
      cond_path = argv[++i];
    } else if (a == "--out") {
      out_path = argv[++i];
@FLOW_PARSE@    } else if (a == "-h" || a == "--help") {
      return usage();
    } else {
      char* end = nullptr;
      const double e = std::strtod(a.c_str(), &end);
      if (end == a.c_str() || *end != '\\0' || !std::isfinite(e) || e <= 0) {
        std::fprintf(stderr, "not a positive energy in GeV: %s\\n", a.c_str());
        return 2;
      }
      energies_gev.push_back(static_cast<float>(e));
    }
  }
  if (energies_gev.empty()) energies_gev = {1.0f, 10.0f, 100.0f};
  const int64_t n = static_cast<int64_t>(energies_gev.size());
  const int64_t nz = ShowerGenerator::kNoise, nv = ShowerGenerator::kVoxels, nc = ShowerGenerator::kConditions;
  if (nc > 0 && cond_path.empty()) {
    std::fprintf(stderr, "this model takes %lld extra condition column(s) (@CNAMES@): give --cond\\n",
                 static_cast<long long>(nc));
    return 2;
  }
  if (nc == 0 && !cond_path.empty()) {
    std::fprintf(stderr, "this model takes no extra conditions: --cond is not allowed\\n");
    return 2;
  }

  std::vector<float> z, conds;
  if (!z_path.empty() && !read_floats(z_path, static_cast<size_t>(n * nz), "noise", z)) return 1;
  if (!cond_path.empty() && !read_floats(cond_path, static_cast<size_t>(n * nc), "condition", conds)) return 1;

  std::vector<float> showers(static_cast<size_t>(n * nv));
  try {
    ShowerGenerator gen(@CTOR@);
@FLOW_SET@    for (int64_t i = 0; i < n; ++i) {  // one call per particle, as a G4VFastSimulationModel::DoIt would
      const float e_mev = energies_gev[static_cast<size_t>(i)] * 1000.0f;
      float* out = showers.data() + i * nv;
@COND_PTR@      if (z.empty()) {
        gen.generate(&e_mev, @CARG@1, out);
      } else {
        gen.generate_with_noise(z.data() + i * nz, &e_mev, @CARG@1, out);
      }
    }
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "error: %s\\n", ex.what());
    return 1;
  }

  for (int64_t i = 0; i < n; ++i) {
    double total = 0.0;
    long long hit = 0;
    for (int64_t j = 0; j < nv; ++j) {
      const float v = showers[static_cast<size_t>(i * nv + j)];
      total += v;
      if (v > 0.0f) ++hit;
    }
    std::printf("shower %lld: E_inc %g GeV, E_dep %.6g MeV, voxels > 0: %lld of %lld\\n", static_cast<long long>(i),
                static_cast<double>(energies_gev[static_cast<size_t>(i)]), total, hit, static_cast<long long>(nv));
  }
  if (!out_path.empty()) {
    std::ofstream f(out_path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(showers.data()),
            static_cast<std::streamsize>(showers.size() * sizeof(float)));
    if (!f) {
      std::fprintf(stderr, "%s: cannot write\\n", out_path.c_str());
      return 1;
    }
  }
  return 0;
}
"""

_FLOW_DECL = "  std::string post_weights = \"@POST@.bin\", sampler;\n  int steps = 0;\n"
_FLOW_OPTS = " ||\n                             a == \"--post-weights\" || a == \"--steps\" || a == \"--sampler\""
_FLOW_PARSE = """\
    } else if (a == "--post-weights") {
      post_weights = argv[++i];
    } else if (a == "--steps") {
      steps = std::atoi(argv[++i]);
      if (steps <= 0) {
        std::fprintf(stderr, "--steps: not a positive integer: %s\\n", argv[i]);
        return 2;
      }
    } else if (a == "--sampler") {
      sampler = argv[++i];
"""
_FLOW_SET = """\
    if (steps > 0 || !sampler.empty()) {
      gen.set_sampler(sampler.empty() ? gen.sampler() : sampler, steps > 0 ? steps : gen.steps());
    }
"""

_CMAKE_TARGET = """\
@BEGIN@
# The Geant4-style fast-simulation hook example (shower_hook.hpp, hook_main.cpp).
add_executable(shower_hook hook_main.cpp)
if(ML4EP_USE_BLAS)
  find_package(BLAS REQUIRED)
  target_link_libraries(shower_hook PRIVATE ${BLAS_LIBRARIES})
else()
  target_compile_definitions(shower_hook PRIVATE ML4EP_NO_BLAS)
endif()
@END@
"""

_CMAKE_EXAMPLE = """\
@BEGIN@
# The example program of the ml4ep model '@NAME@'.
add_executable(@NAME@_example @NAME@_example.cpp)
if(ML4EP_USE_BLAS)
  find_package(BLAS REQUIRED)
  target_link_libraries(@NAME@_example PRIVATE ${BLAS_LIBRARIES})
else()
  target_compile_definitions(@NAME@_example PRIVATE ML4EP_NO_BLAS)
endif()
@END@
"""

_CMAKE_HEAD = """\
# Builds the fast-simulation hook example of the ml4ep model '@NAME@'. The model itself is header-only.
cmake_minimum_required(VERSION 3.16)
project(@NAME@_hook CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
option(ML4EP_USE_BLAS "link the large matrix products against a CBLAS" ON)
"""


def _fill(text: str, **subs) -> str:
    for k, v in subs.items():
        text = text.replace(f"@{k}@", str(v))
    return text


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HookError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HookError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _identifier(name, what: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise HookError(f"{what} must be a C++ identifier (the namespace of <name>.hpp), got {name!r}")
    return name


def check_sampler(sampler, steps) -> None:
    """A :class:`HookError` unless ``sampler`` with ``steps`` network evaluations is valid
    (:func:`ml4ep.fastsim.sampler.check_sampler`)."""
    try:
        _check_sampler(sampler, steps)
    except DiffusionConfigError as exc:
        raise HookError(str(exc)) from None


def _cmake_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with the block between ``begin`` and ``end`` replaced by ``block`` (appended when absent)."""
    text = re.sub(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", "", text, flags=re.S)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


def _write_cmake(out: Path, project: str) -> Path:
    cmake = out / "CMakeLists.txt"
    text = cmake.read_text() if cmake.exists() else _fill(_CMAKE_HEAD, NAME=project)
    cmake.write_text(_cmake_block(text, CMAKE_BEGIN, CMAKE_END, _fill(_CMAKE_TARGET, BEGIN=CMAKE_BEGIN, END=CMAKE_END)))
    return cmake


def _cond_subs(n_conditions: int) -> dict:
    if n_conditions:
        return dict(NCOND=n_conditions, CPARAM="const float* conds, ", CARG="conds, ",
                    CDOC=f"; conds: n * {n_conditions} extra condition values")
    return dict(NCOND=0, CPARAM="", CARG="", CDOC="")


def _main_text(what: str, weights: str, noise: int, n_voxels: int, n_conditions: int, condition_names: str,
               flow_post: str | None) -> str:
    usage = "[--weights F.bin] "
    if flow_post:
        usage += "[--post-weights F.bin] [--steps K] [--sampler euler|midpoint|heun] "
    usage += "[--seed S] [--z noise.f32] " + ("--cond conds.f32 " if n_conditions else "") + \
        "[--out showers.f32] [E_GeV ...]"
    subs = dict(WHAT=what, USAGE=usage, NOISE=noise, NCOND=n_conditions, VOXELS=n_voxels, WEIGHTS=f"{weights}.bin",
                CNAMES=printf_text(condition_names or "see the model"), CARG="c, " if n_conditions else "",
                COND_PTR="      const float* c = conds.data() + i * nc;\n" if n_conditions else "")
    if flow_post:
        subs.update(FLOW_DECL=_fill(_FLOW_DECL, POST=flow_post), FLOW_OPTS=_FLOW_OPTS, FLOW_PARSE=_FLOW_PARSE,
                    FLOW_SET=_FLOW_SET, CTOR="weights, post_weights, seed")
    else:
        subs.update(FLOW_DECL="", FLOW_OPTS="", FLOW_PARSE="", FLOW_SET="", CTOR="weights, seed")
    return _fill(_MAIN, **subs)


def write_hook_example(cpp_dir, model_name: str, latent: int, n_voxels: int, *, n_conditions: int = 0,
                       condition_names=()) -> dict[str, Path]:
    """Write the VAE hook: ``shower_hook.hpp`` and ``hook_main.cpp`` into ``cpp_dir`` (where ``<model_name>.hpp``
    lives) and a ``shower_hook`` target into its ``CMakeLists.txt``; returns ``{"header", "main", "cmake"}`` paths.
    ``n_conditions``: the decoder's extra ``cond`` columns (0: none)."""
    model_name = _identifier(model_name, "model_name")
    latent = _positive_int(latent, "latent")
    n_voxels = _positive_int(n_voxels, "n_voxels")
    n_conditions = _count(n_conditions, "n_conditions")
    out = Path(cpp_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = dict(NAME=model_name, LATENT=latent, VOXELS=n_voxels, **_cond_subs(n_conditions))
    header = out / "shower_hook.hpp"
    main = out / "hook_main.cpp"
    head = _fill(_HPP_HEAD, WHAT=f"decoder '{model_name}'", INCLUDES=f'#include "{model_name}.hpp"\n')
    header.write_text(head + "\n" + _fill(_HPP_VAE, **subs))
    main.write_text(_main_text(f"the decoder '{model_name}'", model_name, latent, n_voxels, n_conditions,
                               ",".join(condition_names), None))
    cmake = _write_cmake(out, model_name)
    return {"header": header, "main": main, "cmake": cmake}


def write_flow_hook_example(cpp_dir, denoiser_name: str, postprocess_name: str, n_voxels: int, *, steps: int = 20,
                            sampler: str = "midpoint", n_conditions: int = 0, condition_names=(),
                            state_size: int | None = None) -> dict[str, Path]:
    """Write the flow-model hook: ``shower_hook.hpp`` (the sampler loop around ``<denoiser_name>.hpp``, then
    ``<postprocess_name>.hpp``) and ``hook_main.cpp`` into ``cpp_dir`` and a ``shower_hook`` target into its
    ``CMakeLists.txt``; ``steps``/``sampler`` are the defaults of the generator, ``state_size`` the floats of the
    flow's state per shower (default ``n_voxels``). Returns ``{"header", "main", "cmake"}`` paths."""
    denoiser_name = _identifier(denoiser_name, "denoiser_name")
    postprocess_name = _identifier(postprocess_name, "postprocess_name")
    if denoiser_name == postprocess_name:
        raise HookError(f"the denoiser and the postprocessing model need distinct names, both are {denoiser_name!r}")
    n_voxels = _positive_int(n_voxels, "n_voxels")
    state_size = n_voxels if state_size is None else _positive_int(state_size, "state_size")
    n_conditions = _count(n_conditions, "n_conditions")
    check_sampler(sampler, steps)
    out = Path(cpp_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = dict(DENOISER=denoiser_name, POST=postprocess_name, VOXELS=n_voxels, STATE=state_size, STEPS=steps,
                SAMPLER=sampler,
                MAXSTEPS=MAX_STEPS, **_cond_subs(n_conditions))
    header = out / "shower_hook.hpp"
    main = out / "hook_main.cpp"
    head = _fill(_HPP_HEAD, WHAT=f"flow model '{denoiser_name}' + '{postprocess_name}'",
                 INCLUDES=f'#include "{denoiser_name}.hpp"\n#include "{postprocess_name}.hpp"\n')
    header.write_text(head + "\n" + _fill(_HPP_FLOW, **subs))
    main.write_text(_main_text(f"the flow model '{denoiser_name}' + '{postprocess_name}'", denoiser_name, state_size,
                               n_voxels, n_conditions, ",".join(condition_names), postprocess_name))
    cmake = _write_cmake(out, denoiser_name)
    return {"header": header, "main": main, "cmake": cmake}


def save_models(cpp_dir, models) -> Path:
    """Save compiled ``ml4ep.infer`` models into one folder without clashes: the first with its ``save`` (header,
    weights, ``example.cpp``, ``CMakeLists.txt``), each further one as ``<name>.hpp``, ``<name>.bin`` and
    ``<name>_example.cpp`` with an ``<name>_example`` target added to the ``CMakeLists.txt``."""
    models = list(models)
    if not models:
        raise HookError("no compiled models to save")
    names = [getattr(m, "name", None) for m in models]
    for m, name in zip(models, names):
        if not hasattr(m, "directory") or not hasattr(m, "save"):
            raise HookError(f"model {name!r} is not a compiled ml4ep.infer model (fix its shape inputs with "
                            "constants= to get one)")
    if len(set(names)) != len(names):
        raise HookError(f"compiled models need distinct names to share a folder, got {names}")
    out = Path(models[0].save(cpp_dir))
    cmake = out / "CMakeLists.txt"
    for m in models[1:]:
        src = Path(m.directory)
        shutil.copyfile(src / f"{m.name}.hpp", out / f"{m.name}.hpp")
        shutil.copyfile(src / f"{m.name}.bin", out / f"{m.name}.bin")
        shutil.copyfile(src / "example.cpp", out / f"{m.name}_example.cpp")
        begin, end = f"# >>> ml4ep model {m.name} >>>", f"# <<< ml4ep model {m.name} <<<"
        block = _fill(_CMAKE_EXAMPLE, BEGIN=begin, END=end, NAME=m.name)
        cmake.write_text(_cmake_block(cmake.read_text(), begin, end, block))
    return out


def _onnx_meta(path: Path) -> tuple[dict[str, list[int]], dict]:
    """``({input: its dims (0 where symbolic)}, metadata)`` of an ONNX file."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise HookError(f"{path}: not a readable ONNX file ({exc})") from None
    inputs = {i.name: [int(d.dim_value) for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    return inputs, {p.key: p.value for p in proto.metadata_props}


def _check_io(compiled, path: Path, inputs: list[str], outputs: list[str]) -> None:
    if list(compiled.input_names) != inputs or list(compiled.output_names) != outputs:
        raise HookError(f"{path}: the compiled model takes {compiled.input_names} -> {compiled.output_names}, "
                        f"the hook needs {inputs} -> {outputs}")
    if len(compiled.symbols) != 1:
        raise HookError(f"{path}: the compiled model has the dimensions {compiled.symbols}; the hook needs one, the "
                        "batch size")


def _int_meta(meta: dict, key: str, path: Path) -> int:
    try:
        return int(meta[key])
    except (KeyError, ValueError):
        raise HookError(f"{path}: metadata '{key}' missing or not an integer (export it with "
                        "ml4ep.fastsim.generate.export)") from None


def export_cpp(onnx_path, cpp_dir, *, steps: int | None = None, sampler: str | None = None,
               march: str | None = None) -> dict:
    """Compile an exported fastsim graph with ``ml4ep.infer`` into ``cpp_dir`` and write the hook beside it.

    ``onnx_path``: a VAE's ``decoder.onnx`` or a flow model's ``denoiser.onnx`` (its ``postprocess.onnx``, named in
    its metadata, is compiled too). ``steps``/``sampler``: the flow generator's defaults (otherwise those stored
    with the model). ``march``: the target ISA of the compiled models (default ``$ML4EP_MARCH``, else native).
    Returns ``{"kind", "dir", "models" (C++ names), "header", "main", "cmake"}``.
    """
    import ml4ep.infer as mi

    path = Path(onnx_path)
    if not path.is_file():
        raise HookError(f"{path}: file not found")
    inputs, meta = _onnx_meta(path)
    conds = [c for c in meta.get("conditions", "").split(",") if c]
    n_cond = 0
    if "cond" in inputs:
        shape = inputs["cond"]
        if len(shape) != 2 or shape[1] < 1:
            raise HookError(f"{path}: input 'cond' must have the static shape (N, k), got {shape}")
        n_cond = shape[1]
    kind = meta.get("ml4ep.model")
    if kind == "fastsim.vae":
        if steps is not None or sampler is not None:
            raise HookError(f"{path}: steps and sampler apply to the flow model, not a VAE decoder")
        latent, n_voxels = _int_meta(meta, "latent", path), _int_meta(meta, "n_voxels", path)
        compiled = mi.compile(str(path), march=march)
        _check_io(compiled, path, ["z", "incident_energy"] + (["cond"] if n_cond else []), ["showers"])
        out = save_models(cpp_dir, [compiled])
        paths = write_hook_example(out, compiled.name, latent, n_voxels, n_conditions=n_cond, condition_names=conds)
        models = [compiled.name]
    elif kind == "fastsim.diffusion":
        n_voxels = _int_meta(meta, "n_voxels", path)
        state = _int_meta(meta, "state_size", path) if "state_size" in meta else n_voxels
        steps = _int_meta(meta, "steps", path) if steps is None else steps
        sampler = meta.get("sampler", "midpoint") if sampler is None else sampler
        check_sampler(sampler, steps)
        post_path = path.with_name(meta.get("postprocess", "postprocess.onnx"))
        if not post_path.is_file():
            raise HookError(f"{path}: its postprocessing graph {post_path} is missing (export again)")
        den = mi.compile(str(path), march=march)
        post = mi.compile(str(post_path), march=march)
        if post.name == den.name:  # e.g. denoiser 'a-b.onnx' and postprocessing 'a_b.onnx'
            post = mi.compile(str(post_path), name=f"{den.name}_post", march=march)
        _check_io(den, path, ["x", "t", "incident_energy"] + (["cond"] if n_cond else []), ["v"])
        _check_io(post, post_path, ["x", "incident_energy"], ["showers"])
        out = save_models(cpp_dir, [den, post])
        paths = write_flow_hook_example(out, den.name, post.name, n_voxels, steps=steps, sampler=sampler,
                                        n_conditions=n_cond, condition_names=conds, state_size=state)
        models = [den.name, post.name]
    else:
        raise HookError(f"{path}: not an exported fastsim VAE decoder or flow denoiser (metadata ml4ep.model = "
                        f"{kind!r}; export it with ml4ep.fastsim.generate.export)")
    log.info("C++ hook of %s (%s) written to %s", path, ", ".join(models), out)
    return {"kind": "vae" if kind == "fastsim.vae" else "diffusion", "dir": out, "models": models, **paths}
