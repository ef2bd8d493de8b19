// run_kernel_bench on tiny shapes: every requested row present, positive finite figures, shares
// computed from the limits given, and the list parsers. No timing assertions: CI machines are noisy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "bench/kernel_bench.h"

namespace anvil {
namespace {

MachineLimits fake_limits() {
  MachineLimits limits;
  limits.cpu_model = "test";
  limits.threads = 2;
  limits.read_bandwidth_gbs = 10.0;
  limits.f32.gflops = 100.0;
  limits.bf16.gflops = 200.0;
  limits.int8.gflops = 400.0;
  return limits;
}

KernelBenchOptions tiny_options() {
  KernelBenchOptions o;
  o.model.dim = 256;
  o.model.hidden_dim = 512;
  o.model.n_heads = 4;
  o.model.n_kv_heads = 2;
  o.model.head_dim = 16;
  o.model.vocab_size = 320;
  o.shapes = {{64, 256}, {48, 512}};
  o.gemv_tokens = {1, 3};
  o.gemm_tokens = {5};
  o.providers = {"gemv", "reference"};
  o.op_tokens = 7;
  o.decode_context = 33;
  o.min_seconds = 0;
  o.working_set_bytes = size_t{1} << 20;
  return o;
}

void expect_sane(const KernelBenchRow& r, const MachineLimits& limits) {
  const std::string what = r.kernel + " " + r.dtype + " " + r.shape + " t" + std::to_string(r.tokens) + " " + r.provider;
  EXPECT_GE(r.repetitions, 1) << what;
  EXPECT_TRUE(std::isfinite(r.median_seconds) && r.median_seconds > 0) << what;
  EXPECT_TRUE(std::isfinite(r.value) && r.value > 0) << what;
  EXPECT_GT(r.bytes, 0) << what;
  EXPECT_GT(r.flops, 0) << what;
  EXPECT_FALSE(r.isa.empty()) << what;
  if (r.unit == "GB/s") {
    EXPECT_EQ(r.limit, "read bandwidth") << what;
    EXPECT_DOUBLE_EQ(r.limit_value, limits.read_bandwidth_gbs) << what;
    EXPECT_NEAR(r.value, r.bytes / r.median_seconds / 1e9, 1e-9 * r.value) << what;
  } else {
    ASSERT_EQ(r.unit, "GFLOP/s") << what;
    const double peak = r.compute == "bf16" ? limits.bf16.gflops : r.compute == "int8" ? limits.int8.gflops
                                                                                      : limits.f32.gflops;
    EXPECT_EQ(r.limit, r.compute + " peak") << what;
    EXPECT_DOUBLE_EQ(r.limit_value, peak) << what;
    EXPECT_NEAR(r.value, r.flops / r.median_seconds / 1e9, 1e-9 * r.value) << what;
  }
  EXPECT_NEAR(r.percent_of_limit, 100.0 * r.value / r.limit_value, 1e-9 * r.percent_of_limit) << what;
}

TEST(KernelBench, TinyRunHasEveryRowWithSaneFigures) {
  const MachineLimits limits = fake_limits();
  const KernelBenchOptions options = tiny_options();
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    uint64_t last_done = 0, last_total = 0;
    int progress_calls = 0;
    auto result = run_kernel_bench(pool, options, limits, [&](uint64_t done, uint64_t total) {
      EXPECT_LE(done, total);
      EXPECT_GE(done, last_done);
      last_done = done;
      last_total = total;
      ++progress_calls;
    });
    ASSERT_TRUE(result) << result.status().message();
    EXPECT_GT(progress_calls, 1);
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(result->working_set_bytes, size_t{1} << 20);

    std::map<std::string, int> per_kernel;
    std::set<std::string> matrix_rows;
    for (const KernelBenchRow& r : result->rows) {
      expect_sane(r, limits);
      ++per_kernel[r.kernel];
      if (r.kernel == "gemv" || r.kernel == "gemm")
        matrix_rows.insert(r.kernel + "|" + r.provider + "|" + r.dtype + "|" + r.shape + "|" + std::to_string(r.tokens));
    }
    // Every dtype fits both shapes (256 and 512 columns are multiples of every block size).
    const size_t combos = options.dtypes.size() * options.shapes.size();
    EXPECT_EQ(per_kernel["gemv"], static_cast<int>(combos * options.gemv_tokens.size()));
    EXPECT_EQ(per_kernel["gemm"], static_cast<int>(combos * options.providers.size() * options.gemm_tokens.size()));
    EXPECT_EQ(matrix_rows.size(), static_cast<size_t>(per_kernel["gemv"] + per_kernel["gemm"]));  // no duplicates
    EXPECT_EQ(per_kernel["rmsnorm"], 1);
    EXPECT_EQ(per_kernel["rope"], 1);
    EXPECT_EQ(per_kernel["softmax"], 1);
    EXPECT_EQ(per_kernel["attention"], 2);
    EXPECT_TRUE(result->skipped.empty());
    for (const KernelBenchRow& r : result->rows) {
      if (r.kernel == "gemv") {
        EXPECT_EQ(r.unit, "GB/s");
        const MatrixShape s = r.shape == "64x256" ? MatrixShape{64, 256} : MatrixShape{48, 512};
        // Codes, plus the scaled types' f32 scales: one per row (F8_E4M3, I8), per 128 (I4, symmetric).
        const DType dtype = *dtype_from_name(r.dtype, /*panels=*/true);
        const int64_t scales = dtype == DType::I4 ? s.rows * s.cols / 128
                               : dtype_info(dtype).external_scales ? s.rows : 0;
        EXPECT_DOUBLE_EQ(r.bytes, static_cast<double>(dtype_bytes(dtype, s.rows * s.cols) + 4 * scales));
      }
      if (r.kernel == "gemm") {
        EXPECT_EQ(r.unit, "GFLOP/s");
      }
      if (r.kernel == "attention" && r.tokens == 1) {  // decode: 1 query x 4 heads x 33 keys x 4 x 16
        EXPECT_DOUBLE_EQ(r.flops, 4.0 * 16 * 4 * 33);
      }
      if (r.kernel == "attention" && r.tokens == 7) {  // causal prefill: 7 x 8 / 2 keys per head
        EXPECT_DOUBLE_EQ(r.flops, 4.0 * 16 * 4 * 28);
      }
      const nlohmann::json j = kernel_bench_row_to_json(r);
      EXPECT_EQ(j.at("kernel"), r.kernel);
      EXPECT_DOUBLE_EQ(j.at("percent_of_limit").get<double>(), r.percent_of_limit);
    }
    const std::string csv = kernel_bench_csv(*result);
    EXPECT_EQ(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')), result->rows.size() + 1);
  }
}

TEST(KernelBench, DefaultMatricesAreLlama32_1B) {
  const std::vector<MatrixShape> m = KernelBenchModel{}.matrices();
  const std::vector<MatrixShape> expected = {{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}, {128256, 2048}};
  EXPECT_EQ(m, expected);
  EXPECT_GE(default_kernel_bench_working_set(MachineLimits{}), size_t{256} << 20);
  MachineLimits limits;
  limits.bandwidth_bytes = size_t{3} << 30;
  EXPECT_EQ(default_kernel_bench_working_set(limits), size_t{3} << 30);
}

TEST(KernelBench, SkipsWhatCannotRunAndLeavesSharesEmptyWithoutLimits) {
  KernelBenchOptions o = tiny_options();
  o.kernels = {"gemv"};
  o.dtypes = {DType::Q4_K, DType::Q8_0};
  o.shapes = {{16, 96}};  // 96: a multiple of 32, not of 256
  o.gemv_tokens = {1};
  ThreadPool pool(1);
  auto result = run_kernel_bench(pool, o, MachineLimits{});
  ASSERT_TRUE(result) << result.status().message();
  ASSERT_EQ(result->rows.size(), 1u);
  EXPECT_EQ(result->rows[0].dtype, "Q8_0");
  EXPECT_EQ(result->rows[0].limit_value, 0.0);
  EXPECT_EQ(result->rows[0].percent_of_limit, 0.0);
  EXPECT_TRUE(kernel_bench_row_to_json(result->rows[0]).at("percent_of_limit").is_null());
  ASSERT_EQ(result->skipped.size(), 1u);
  EXPECT_NE(result->skipped[0].find("Q4_K"), std::string::npos) << result->skipped[0];
}

TEST(KernelBench, RejectsBadOptions) {
  ThreadPool pool(1);
  KernelBenchOptions o = tiny_options();
  o.kernels = {"gemv", "fft"};
  auto r = run_kernel_bench(pool, o, fake_limits());
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("fft"), std::string::npos);
  o = tiny_options();
  o.providers = {"nope"};
  EXPECT_FALSE(run_kernel_bench(pool, o, fake_limits()));
  o = tiny_options();
  o.gemm_tokens = {0};
  EXPECT_FALSE(run_kernel_bench(pool, o, fake_limits()));
}

TEST(KernelBench, ParsesLists) {
  auto dtypes = parse_dtype_list("f32, Q4_0,q6_k");
  ASSERT_TRUE(dtypes);
  EXPECT_EQ(*dtypes, (std::vector<DType>{DType::F32, DType::Q4_0, DType::Q6_K}));
  auto bad_dtype = parse_dtype_list("f32,q3_k");
  ASSERT_FALSE(bad_dtype);
  EXPECT_NE(bad_dtype.status().message().find("q3_k"), std::string::npos);

  auto shapes = parse_shape_list("2048x8192,8192X2048");
  ASSERT_TRUE(shapes);
  EXPECT_EQ(*shapes, (std::vector<MatrixShape>{{2048, 8192}, {8192, 2048}}));
  for (const char* bad : {"2048", "0x5", "5x", "x5", "-1x4", "3x4x5", ""}) EXPECT_FALSE(parse_shape_list(bad)) << bad;

  auto tokens = parse_token_list("1,8,512");
  ASSERT_TRUE(tokens);
  EXPECT_EQ(*tokens, (std::vector<int64_t>{1, 8, 512}));
  EXPECT_FALSE(parse_token_list("1,0"));
  EXPECT_FALSE(parse_token_list("two"));

  EXPECT_TRUE(parse_kernel_list("gemv,attention"));
  EXPECT_FALSE(parse_kernel_list("gemv,conv"));
  EXPECT_TRUE(parse_provider_list("gemv,onednn"));
  EXPECT_FALSE(parse_provider_list("cublas"));
}

}  // namespace
}  // namespace anvil
