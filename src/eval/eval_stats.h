// Summary statistics of per-token evaluation values (NLL, KL divergence, Δp), as llama.cpp reports them.
#pragma once

#include <cstdint>
#include <span>

namespace anvil {

// Running sum and sum of squares of one value per scored token. The uncertainty is the standard
// error of the mean, sqrt(var / (n - 1)) with var = E[x^2] - E[x]^2 (llama.cpp's formula); it is
// 0 when fewer than two values were added or rounding makes the variance non-positive.
class MeanStats {
 public:
  void add(double value) {
    sum_ += value;
    sum2_ += value * value;
    ++count_;
  }
  void merge(const MeanStats& other) {
    sum_ += other.sum_;
    sum2_ += other.sum2_;
    count_ += other.count_;
  }
  int64_t count() const { return count_; }
  double sum() const { return sum_; }
  double mean() const;
  double stderr_of_mean() const;

 private:
  double sum_ = 0.0;
  double sum2_ = 0.0;
  int64_t count_ = 0;
};

// Covariance of the means of two paired series, from their sums and the sum of their products:
// (E[ab] - E[a]E[b]) / (n - 1). Used to propagate the uncertainty of ln(PPL(Q)/PPL(base)).
double covariance_of_means(double sum_a, double sum_b, double sum_ab, int64_t count);

// The `fraction` quantile of sorted values with linear interpolation between neighbours
// (numpy's default; llama.cpp's percentile()). Empty input gives 0.
double sorted_quantile(std::span<const float> sorted, double fraction);

// The median of sorted values (mean of the two middle ones for an even count). Empty input gives 0.
double sorted_median(std::span<const float> sorted);

}  // namespace anvil
