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
