// Benchmark statistics on known answers (numpy's mean, std and linear percentiles) and the cost formula.
#include "bench/bench_stats.h"

#include <gtest/gtest.h>

#include <vector>

namespace anvil {
namespace {

TEST(BenchStats, MeanAndPopulationStd) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(mean(v), 2.5);
  EXPECT_NEAR(stddev(v), 1.118033988749895, 1e-12);  // numpy.std([1,2,3,4])
  const std::vector<double> one = {7.5};
  EXPECT_DOUBLE_EQ(mean(one), 7.5);
  EXPECT_DOUBLE_EQ(stddev(one), 0.0);
}

TEST(BenchStats, PercentilesInterpolateLinearlyLikeNumpy) {
  const std::vector<double> v = {4, 1, 3, 2};  // order must not matter
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
  EXPECT_NEAR(percentile(v, 90), 3.7, 1e-12);   // numpy.percentile([1,2,3,4], 90)
  EXPECT_NEAR(percentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4.0);
  const std::vector<double> w = {15, 20, 35, 40, 50};
  EXPECT_NEAR(percentile(w, 40), 29.0, 1e-12);  // numpy.percentile(w, 40)
  EXPECT_NEAR(percentile(w, 90), 46.0, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(w, 50), 35.0);
  const std::vector<double> one = {3.0};
  EXPECT_DOUBLE_EQ(percentile(one, 99), 3.0);
  EXPECT_DOUBLE_EQ(percentile(v, 150), 4.0);  // clamped
  EXPECT_DOUBLE_EQ(percentile(v, -5), 1.0);
}

TEST(BenchStats, EmptyInputsReportZero) {
  const std::vector<double> none;
  EXPECT_EQ(mean(none), 0.0);
  EXPECT_EQ(stddev(none), 0.0);
  EXPECT_EQ(percentile(none, 50), 0.0);
}

TEST(BenchStats, TimePerOutputTokenExcludesTheFirstToken) {
  RequestTiming t;
  t.ttft_s = 0.1;
  t.e2e_s = 1.0;
  t.output_tokens = 10;
  ASSERT_TRUE(time_per_output_token_s(t).has_value());
  EXPECT_NEAR(*time_per_output_token_s(t), 0.1, 1e-12);  // 9 intervals over 0.9 s
  t.output_tokens = 2;
  EXPECT_NEAR(*time_per_output_token_s(t), 0.9, 1e-12);
  t.output_tokens = 1;  // one token: no inter-token interval, no TPOT
  EXPECT_FALSE(time_per_output_token_s(t).has_value());
  t.output_tokens = 0;
  EXPECT_FALSE(time_per_output_token_s(t).has_value());
}

TEST(BenchStats, CostPerMillionTokens) {
  // $1.55/h at 71 tok/s: 1.55 / (71 * 3600) * 1e6 = $6.06 per 1M tokens.
  EXPECT_NEAR(usd_per_million_tokens(1.55, 71.0), 6.06, 0.005);
  EXPECT_NEAR(usd_per_million_tokens(3.6, 1000.0), 1.0, 1e-12);
  EXPECT_EQ(usd_per_million_tokens(1.55, 0.0), 0.0);
}

}  // namespace
}  // namespace anvil
