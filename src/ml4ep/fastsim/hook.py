"""A Geant4-style fast-simulation hook for an exported shower decoder, as plain C++ (no Geant4 needed).

>>> from ml4ep.fastsim.hook import write_hook_example
>>> write_hook_example("cpp", "decoder", latent=10, n_voxels=368)                 # doctest: +SKIP

Written beside the ``<model_name>.hpp`` / ``<model_name>.bin`` of ``ml4ep.infer``'s ``save``:

* ``shower_hook.hpp``: ``ml4ep_fastsim::ShowerGenerator``, which owns the compiled model, a ``std::mt19937_64`` and
  a ``std::normal_distribution``; ``generate(energies_mev, n, showers_out)`` draws the latent noise and decodes
  ``n`` showers. Its buffers are members grown on demand, so calls allocate nothing once the largest ``n`` was
  seen: the shape of a ``G4VFastSimulationModel::DoIt`` that calls it once per particle.
* ``hook_main.cpp``: a driver. ``hook_main [--weights F] [--seed S] [--z F] [--out F] [E_GeV ...]`` generates one
  shower per incident energy (GeV; default 1 10 100), prints each shower's deposited energy and number of hit
  voxels, and writes the showers as raw float32 ``(N, n_voxels)`` to ``--out``. ``--z`` reads the latent noise as
  raw float32 ``(N, latent)`` instead of drawing it (for comparing with the Python backends).
* a ``shower_hook`` target appended to ``CMakeLists.txt`` (between marker lines, replaced when written again;
  a standalone ``CMakeLists.txt`` is written where there is none).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import Ml4epError

CMAKE_BEGIN = "# >>> ml4ep.fastsim shower_hook >>>"
CMAKE_END = "# <<< ml4ep.fastsim shower_hook <<<"


class HookError(Ml4epError, ValueError):
    """Invalid hook-example arguments."""


_HPP = """\
// Geant4-style fast-simulation hook for the ml4ep shower decoder '@NAME@' (written by ml4ep.fastsim.hook).
// In a G4VFastSimulationModel, hold one ShowerGenerator per worker thread and call generate() from DoIt().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "@NAME@.hpp"

namespace ml4ep_fastsim {

class ShowerGenerator {
 public:
  static constexpr int64_t kLatent = @LATENT@;
  static constexpr int64_t kVoxels = @VOXELS@;

  explicit ShowerGenerator(const std::string& weights_path, std::uint64_t seed = 1)
      : model_(weights_path), rng_(seed), normal_(0.0f, 1.0f) {}

  // n showers (energies_mev: n incident energies in MeV) -> showers_out: n * kVoxels floats in MeV.
  void generate(const float* energies_mev, int64_t n, float* showers_out) {
    if (n < 0) throw std::invalid_argument("ShowerGenerator: negative number of showers");
    if (n == 0) return;
    reserve(n);
    const size_t m = static_cast<size_t>(n * kLatent);
    for (size_t i = 0; i < m; ++i) z_[i] = normal_(rng_);
    model_.infer(z_.data(), energies_mev, showers_out, n);
  }

  // The same with given latent noise z (n * kLatent floats, standard normal).
  void generate_with_noise(const float* z, const float* energies_mev, int64_t n, float* showers_out) {
    if (n < 0) throw std::invalid_argument("ShowerGenerator: negative number of showers");
    if (n == 0) return;
    model_.infer(z, energies_mev, showers_out, n);
  }

  void seed(std::uint64_t s) {
    rng_.seed(s);
    normal_.reset();
  }

 private:
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

_MAIN = """\
// Driver of the ml4ep fast-simulation hook for '@NAME@' (written by ml4ep.fastsim.hook).
// Usage: shower_hook [--weights @NAME@.bin] [--seed S] [--z noise.f32] [--out showers.f32] [E_GeV ...]
//   one shower per incident energy in GeV (default: 1 10 100); --z: raw float32 latent noise (N, @LATENT@);
//   --out: raw float32 showers (N, @VOXELS@) in MeV.
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
  std::fprintf(stderr,
               "usage: shower_hook [--weights @NAME@.bin] [--seed S] [--z noise.f32] [--out showers.f32] "
               "[E_GeV ...]\\n");
  return 2;
}

int main(int argc, char** argv) {
  std::string weights = "@NAME@.bin", z_path, out_path;
  std::uint64_t seed = 1;
  std::vector<float> energies_gev;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--weights" || a == "--seed" || a == "--z" || a == "--out") && i + 1 >= argc) return usage();
    if (a == "--weights") {
      weights = argv[++i];
    } else if (a == "--seed") {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--z") {
      z_path = argv[++i];
    } else if (a == "--out") {
      out_path = argv[++i];
    } else if (a == "-h" || a == "--help") {
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
  const int64_t nz = ShowerGenerator::kLatent, nv = ShowerGenerator::kVoxels;

  std::vector<float> z;
  if (!z_path.empty()) {
    z.resize(static_cast<size_t>(n * nz));
    std::ifstream f(z_path, std::ios::binary);
    f.read(reinterpret_cast<char*>(z.data()), static_cast<std::streamsize>(z.size() * sizeof(float)));
    if (!f) {
      std::fprintf(stderr, "%s: cannot read %lld latent floats\\n", z_path.c_str(),
                   static_cast<long long>(z.size()));
      return 1;
    }
  }

  std::vector<float> showers(static_cast<size_t>(n * nv));
  try {
    ShowerGenerator gen(weights, seed);
    for (int64_t i = 0; i < n; ++i) {  // one call per particle, as a G4VFastSimulationModel::DoIt would
      const float e_mev = energies_gev[static_cast<size_t>(i)] * 1000.0f;
      float* out = showers.data() + i * nv;
      if (z.empty()) {
        gen.generate(&e_mev, 1, out);
      } else {
        gen.generate_with_noise(z.data() + i * nz, &e_mev, 1, out);
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


def write_hook_example(cpp_dir, model_name: str, latent: int, n_voxels: int) -> dict[str, Path]:
    """Write ``shower_hook.hpp`` and ``hook_main.cpp`` into ``cpp_dir`` (where ``<model_name>.hpp`` lives) and add a
    ``shower_hook`` target to its ``CMakeLists.txt``; returns ``{"header", "main", "cmake"}`` paths."""
    if not isinstance(model_name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", model_name):
        raise HookError(f"model_name must be a C++ identifier (the namespace of <name>.hpp), got {model_name!r}")
    latent = _positive_int(latent, "latent")
    n_voxels = _positive_int(n_voxels, "n_voxels")
    out = Path(cpp_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = dict(NAME=model_name, LATENT=latent, VOXELS=n_voxels)
    header = out / "shower_hook.hpp"
    main = out / "hook_main.cpp"
    header.write_text(_fill(_HPP, **subs))
    main.write_text(_fill(_MAIN, **subs))
    cmake = out / "CMakeLists.txt"
    block = _fill(_CMAKE_TARGET, BEGIN=CMAKE_BEGIN, END=CMAKE_END)
    if cmake.exists():
        text = cmake.read_text()
        text = re.sub(re.escape(CMAKE_BEGIN) + r".*?" + re.escape(CMAKE_END) + r"\n?", "", text, flags=re.S)
        if not text.endswith("\n"):
            text += "\n"
    else:
        text = _fill(_CMAKE_HEAD, **subs)
    cmake.write_text(text + block)
    return {"header": header, "main": main, "cmake": cmake}
