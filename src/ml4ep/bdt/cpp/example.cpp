// Build: g++ -std=c++17 -O3 -march=native example.cpp -o example -lpthread
#include <cstdio>
#include <vector>
#include "@NAME@.hpp"

int main() {
  std::vector<double> x(@NAME@::N_FEATURES, 0.5);     // one row, every feature 0.5
  std::vector<double> y(@NAME@::OUTPUTS_PER_ROW);
  @NAME@::predict(x.data(), 1, y.data());
  for (double v : y) std::printf("%.9g\n", v);
  return 0;
}
