// Machine-limit measurements on a tiny configuration: positive finite numbers, a JSON round trip,
// and the cache file (in a private directory). No timing assertions: CI machines are noisy.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bench/machine_limits.h"

namespace anvil {
namespace {

MeasureOptions tiny_options() {
  MeasureOptions options;
  options.bandwidth_bytes = size_t{8} << 20;
  options.bandwidth_runs = 2;
  options.gemm_m = 32;
  options.gemm_k = 64;
  options.gemm_n = 128;
  options.gemm_runs = 2;
  return options;
}

TEST(MachineLimits, ReadBandwidthIsPositiveAndFinite) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    std::string isa;
    Result<double> gbs = measure_read_bandwidth(pool, size_t{4} << 20, 2, &isa);
    ASSERT_TRUE(gbs.is_ok()) << gbs.status().message();
    EXPECT_TRUE(std::isfinite(*gbs));
    EXPECT_GT(*gbs, 0.0);
    EXPECT_FALSE(isa.empty());
  }
}

TEST(MachineLimits, GemmPeakIsPositiveAndFiniteForF32) {
  ThreadPool pool(2);
  const GemmPeak f32 = measure_gemm_peak(pool, "f32", 32, 128, 64, 2);
  EXPECT_TRUE(std::isfinite(f32.gflops));
  EXPECT_GT(f32.gflops, 0.0) << f32.impl;
  // bf16 and int8 may be unavailable on old CPUs; when present they are positive and finite.
  for (const char* type : {"bf16", "int8"}) {
    const GemmPeak peak = measure_gemm_peak(pool, type, 32, 128, 64, 2);
    EXPECT_TRUE(std::isfinite(peak.gflops)) << type;
    EXPECT_GE(peak.gflops, 0.0) << type;
    std::printf("[ limits   ] %s tiny GEMM: %.1f GFLOP/s (%s)\n", type, peak.gflops, peak.impl.c_str());
  }
  EXPECT_EQ(measure_gemm_peak(pool, "fp4", 32, 128, 64, 2).gflops, 0.0);
}

TEST(MachineLimits, MeasureRoundTripsThroughJsonAndCache) {
  const std::filesystem::path dir = std::filesystem::path(ANVIL_TEST_TMP) / "machine_limits_cache";
  std::filesystem::remove_all(dir);
  ASSERT_EQ(setenv("ANVIL_CACHE_DIR", dir.c_str(), 1), 0);
  ThreadPool pool(2);
  int progress_calls = 0;
  MeasureOptions options = tiny_options();
  options.progress = [&](uint64_t, uint64_t) { ++progress_calls; };
  Result<MachineLimits> limits = machine_limits(pool, options, /*remeasure=*/false);
  ASSERT_TRUE(limits.is_ok()) << limits.status().message();
  EXPECT_GT(limits->read_bandwidth_gbs, 0.0);
  EXPECT_GT(limits->f32.gflops, 0.0);
  EXPECT_EQ(limits->threads, 2);
  EXPECT_GT(progress_calls, 0);
  EXPECT_TRUE(std::filesystem::exists(machine_limits_cache_path()));

  // Second call: served from the cache without measuring.
  progress_calls = 0;
  Result<MachineLimits> again = machine_limits(pool, options, /*remeasure=*/false);
  ASSERT_TRUE(again.is_ok()) << again.status().message();
  EXPECT_EQ(progress_calls, 0);
  EXPECT_DOUBLE_EQ(again->read_bandwidth_gbs, limits->read_bandwidth_gbs);
  EXPECT_DOUBLE_EQ(again->bf16.gflops, limits->bf16.gflops);

  const nlohmann::json j = machine_limits_to_json(*limits);
  EXPECT_TRUE(j.contains("read_bandwidth_gbs"));
  EXPECT_TRUE(j["peak_gflops"].contains("bf16"));
  EXPECT_FALSE(machine_limits_from_json(nlohmann::json::object()).is_ok());
  unsetenv("ANVIL_CACHE_DIR");
}

TEST(MachineLimits, ReadsCpuCaches) {
  for (const CpuCache& c : read_cpu_caches()) {
    EXPECT_GE(c.level, 1);
    EXPECT_GT(c.size_bytes, 0u);
  }
}

}  // namespace
}  // namespace anvil
