// Every GEMM provider x every weight dtype x odd shapes x 1 and 2 threads against a double-precision
// reference over the scalar-dequantized weights (so the check isolates the provider, not the format).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <random>
#include <vector>

#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/matmul.h"
#include "compute/cpu/onednn_gemm.h"
#include "core/thread_pool.h"
#include "quant/fp8.h"
#include "quant/int4_rtn.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

struct Problem {
  DType dtype;
  int64_t m, n, k;
  std::vector<std::byte> bytes;
  std::vector<float> x;
  std::vector<double> reference;  // (m, n)
  Tensor weight() const { return Tensor{"w", dtype, {n, k}, bytes.data(), bytes.size(), {}}; }
};

Problem make_problem(DType dtype, int64_t m, int64_t n, int64_t k, std::mt19937& rng) {
  const DTypeInfo& info = dtype_info(dtype);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Problem p{dtype, m, n, k, {}, std::vector<float>(m * k), std::vector<double>(m * n, 0.0)};
  std::vector<float> w(n * k);
  for (float& v : w) v = dist(rng);
  for (float& v : p.x) v = dist(rng);
  p.bytes.resize(dtype_bytes(dtype, n * k));
  const size_t row_bytes = dtype_bytes(dtype, k);
  for (int64_t r = 0; r < n; ++r) info.from_float(&w[r * k], p.bytes.data() + row_bytes * r, k);
  std::vector<float> row(k);
  for (int64_t r = 0; r < n; ++r) {
    info.to_float(p.bytes.data() + row_bytes * r, row.data(), k);
    for (int64_t t = 0; t < m; ++t) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += static_cast<double>(row[i]) * p.x[t * k + i];
      p.reference[t * n + r] = acc;
    }
  }
  return p;
}

// max |y - ref| / max |ref|
double normalized_error(const Problem& p, const std::vector<float>& y) {
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    max_err = std::max(max_err, std::fabs(p.reference[i] - y[i]));
    max_ref = std::max(max_ref, std::fabs(p.reference[i]));
  }
  return max_ref > 0 ? max_err / max_ref : max_err;
}

TEST(GemmProvider, RegistryHasReferenceAndOneDnn) {
  ASSERT_FALSE(gemm_providers().empty());
  EXPECT_STREQ(gemm_providers().front()->name(), "reference");
  EXPECT_NE(find_gemm_provider("reference"), nullptr);
  EXPECT_NE(find_gemm_provider("onednn"), nullptr);
  EXPECT_NE(find_gemm_provider("gemv"), nullptr);
  EXPECT_EQ(find_gemm_provider("no-such-provider"), nullptr);
}

TEST(GemmProvider, EveryProviderEveryDtypeMatchesReference) {
  std::mt19937 rng(7);
  const std::vector<DType> dtypes = {DType::F32, DType::F16, DType::BF16, DType::Q8_0,
                                     DType::Q4_0, DType::Q4_K, DType::Q6_K};
  ThreadPool pool1(1), pool2(2);
  for (DType dtype : dtypes) {
    const int64_t block = dtype_info(dtype).block_elems;
    const int64_t k = block == 256 ? 512 : block == 32 ? 96 : 67;  // odd where the format allows
    std::vector<Problem> problems;
    for (int64_t m : {1, 7, 64, 130}) problems.push_back(make_problem(dtype, m, m == 130 ? 301 : 37, k, rng));
    for (GemmProvider* provider : gemm_providers()) {
      const double bound = provider->compute(dtype) == GemmCompute::F32 ? 1e-5 : 3e-2;
      double worst = 0;
      int checked = 0;
      for (const Problem& p : problems) {
        if (!provider->supports(dtype, p.m, p.n, p.k)) continue;
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<float> y(p.m * p.n, std::nanf(""));
          const Status status = provider->run(*pool, p.weight(), p.x.data(), p.m, y.data());
          ASSERT_TRUE(status.is_ok()) << status.message();
          const double err = normalized_error(p, y);
          EXPECT_LT(err, bound) << provider->name() << " " << dtype_name(dtype) << " m=" << p.m << " n=" << p.n
                                << " k=" << p.k << " threads=" << pool->thread_count();
          worst = std::max(worst, err);
          ++checked;
        }
      }
      const GemmCompute compute = provider->compute(dtype);
      const char* compute_name = compute == GemmCompute::F32 ? "f32" : compute == GemmCompute::BF16 ? "bf16" : "int8";
      std::printf("[ gemm     ] %-12s %-5s compute %-4s  %2d cases  max normalized error %.2e (bound %.0e)\n",
                  provider->name(), dtype_name(dtype), compute_name, checked, worst, bound);
    }
  }
}

// The bf16 providers' direct F8_E4M3 / I8 / I4 row converters round the same f32 the generic
// path dequantizes (weight_row_to_f32, then f32 -> bf16), bit for bit but for the sign of zero.
TEST(GemmProvider, ScaledTypesConvertToBf16AsThroughF32) {
  std::mt19937 rng(9);
  ThreadPool pool(1);
  const int64_t rows = 5, k = 384 + 16 + 8;  // whole 32-runs, a 16-run and a tail for F8 / I8
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(rows * k);
  for (float& v : w) v = dist(rng);
  w[7] = 2.0f;
  w[9] = 1e-6f;  // an F8 subnormal after scaling
  std::vector<std::pair<std::string, std::shared_ptr<QuantizedMatrix>>> cases;
  auto add = [&](std::string label, Result<QuantizedMatrix> q) {
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    cases.emplace_back(std::move(label), std::make_shared<QuantizedMatrix>(std::move(q).value()));
  };
  add("F8_E4M3", quantize_fp8("w", w.data(), rows, k, Fp8Granularity::PerChannel, pool));
  add("I8", quantize_int8_per_channel("w", w.data(), rows, 384, pool));
  for (int64_t group : {32, 64, 128})
    for (bool symmetric : {true, false})
      add("I4 g" + std::to_string(group) + (symmetric ? " sym" : " asym"),
          quantize_int4_rtn("w", w.data(), rows, 384, {group, symmetric}, pool));
  for (const auto& [label, matrix] : cases) {
    const Tensor t = matrix->view("w");
    const int64_t cols = t.cols();
    std::vector<float> f32(cols), scratch(cols);
    std::vector<uint16_t> direct(cols), via_f32(cols);
    for (int64_t r = 0; r < rows; ++r) {
      onednn_weight_row_to_bf16(t, r, direct.data(), scratch.data());
      weight_row_to_f32(t, r, f32.data());
      const Tensor f32_row{"row", DType::F32, {1, cols}, reinterpret_cast<const std::byte*>(f32.data()),
                           f32.size() * sizeof(float), {}};
      onednn_weight_row_to_bf16(f32_row, 0, via_f32.data(), scratch.data());
      for (int64_t i = 0; i < cols; ++i) {
        const bool both_zero = (direct[i] & 0x7FFF) == 0 && (via_f32[i] & 0x7FFF) == 0;
        ASSERT_TRUE(both_zero || direct[i] == via_f32[i])
            << label << " row " << r << " col " << i << ": " << direct[i] << " vs " << via_f32[i];
      }
    }
  }
}

TEST(GemmProvider, ReportsBadArgumentsAsStatus) {
  std::vector<float> w(4 * 6, 1.0f), x(6, 1.0f), y(4);
  Tensor weight{"w", DType::F32, {4, 6}, reinterpret_cast<const std::byte*>(w.data()), w.size() * sizeof(float), {}};
  Tensor flat = weight;
  flat.shape = {24};
  ThreadPool pool(1);
  for (GemmProvider* provider : gemm_providers()) {
    EXPECT_FALSE(provider->run(pool, weight, x.data(), 0, y.data()).is_ok()) << provider->name();
    EXPECT_FALSE(provider->run(pool, flat, x.data(), 1, y.data()).is_ok()) << provider->name();
    EXPECT_FALSE(provider->run(pool, weight, nullptr, 1, y.data()).is_ok()) << provider->name();
  }
}

TEST(GemmProvider, AmxPermissionMatchesCpu) {
  const AmxPermission permission = request_amx_permission();
  std::printf("[ gemm     ] AMX permission: %s\n", amx_permission_name(permission));
  EXPECT_EQ(permission == AmxPermission::Granted, amx_permission_granted());
}

}  // namespace
}  // namespace anvil
