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
  std::fprintf(stderr, "usage: shower_hook @USAGE@\n");
  return 2;
}

// exactly count floats from a raw float32 file
static bool read_floats(const std::string& path, size_t count, const char* what, std::vector<float>& v) {
  v.resize(count);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!f) {
    std::fprintf(stderr, "%s: cannot read %lld %s floats\n", path.c_str(), static_cast<long long>(count), what);
    return false;
  }
  if (f.peek() != std::char_traits<char>::eof()) {
    std::fprintf(stderr, "%s: more than the %lld %s floats expected\n", path.c_str(), static_cast<long long>(count),
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
      if (end == a.c_str() || *end != '\0' || !std::isfinite(e) || e <= 0) {
        std::fprintf(stderr, "not a positive energy in GeV: %s\n", a.c_str());
        return 2;
      }
      energies_gev.push_back(static_cast<float>(e));
    }
  }
  if (energies_gev.empty()) energies_gev = {1.0f, 10.0f, 100.0f};
  const int64_t n = static_cast<int64_t>(energies_gev.size());
  const int64_t nz = ShowerGenerator::kNoise, nv = ShowerGenerator::kVoxels, nc = ShowerGenerator::kConditions;
  if (nc > 0 && cond_path.empty()) {
    std::fprintf(stderr, "this model takes %lld extra condition column(s) (@CNAMES@): give --cond\n",
                 static_cast<long long>(nc));
    return 2;
  }
  if (nc == 0 && !cond_path.empty()) {
    std::fprintf(stderr, "this model takes no extra conditions: --cond is not allowed\n");
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
    std::fprintf(stderr, "error: %s\n", ex.what());
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
    std::printf("shower %lld: E_inc %g GeV, E_dep %.6g MeV, voxels > 0: %lld of %lld\n", static_cast<long long>(i),
                static_cast<double>(energies_gev[static_cast<size_t>(i)]), total, hit, static_cast<long long>(nv));
  }
  if (!out_path.empty()) {
    std::ofstream f(out_path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(showers.data()),
            static_cast<std::streamsize>(showers.size() * sizeof(float)));
    if (!f) {
      std::fprintf(stderr, "%s: cannot write\n", out_path.c_str());
      return 1;
    }
  }
  return 0;
}
