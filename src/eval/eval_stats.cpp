// Summary statistics of per-token evaluation values.
#include "eval/eval_stats.h"

#include <algorithm>
#include <cmath>

namespace anvil {

double MeanStats::mean() const { return count_ > 0 ? sum_ / static_cast<double>(count_) : 0.0; }

double MeanStats::stderr_of_mean() const {
  if (count_ < 2) return 0.0;
  const double m = mean();
  const double variance = sum2_ / static_cast<double>(count_) - m * m;
  return variance > 0.0 ? std::sqrt(variance / static_cast<double>(count_ - 1)) : 0.0;
}

double covariance_of_means(double sum_a, double sum_b, double sum_ab, int64_t count) {
  if (count < 2) return 0.0;
  const double n = static_cast<double>(count);
  return (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0);
}

double sorted_quantile(std::span<const float> sorted, double fraction) {
  if (sorted.empty()) return 0.0;
  if (fraction <= 0.0) return sorted.front();
  if (fraction >= 1.0) return sorted.back();
  const double position = fraction * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(position);
  const double weight = position - static_cast<double>(below);
  const size_t above = std::min(below + 1, sorted.size() - 1);
  return (1.0 - weight) * sorted[below] + weight * sorted[above];
}

double sorted_median(std::span<const float> sorted) {
  if (sorted.empty()) return 0.0;
  const size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : 0.5 * (static_cast<double>(sorted[n / 2 - 1]) + sorted[n / 2]);
}

}  // namespace anvil
