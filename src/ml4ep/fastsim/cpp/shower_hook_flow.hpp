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
