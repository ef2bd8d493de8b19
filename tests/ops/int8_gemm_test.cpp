// The W8A8 prefill GEMM ("onednn_int8"): exact int32 sums against a scalar integer reference, and
// y bit-identical to the GEMV W8A8 kernels (decode and prefill agree), at odd shapes and 1-2 threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/matmul.h"
#include "compute/cpu/onednn_int8_gemm.h"
#include "core/thread_pool.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

GemmProvider* int8_provider() { return find_gemm_provider("onednn_int8"); }

// Skips a test on CPUs whose oneDNN int8 kernels would not be exact (no AVX512-VNNI).
#define SKIP_WITHOUT_INT8_GEMM()                                                 \
  if (!int8_provider()->supports(DType::I8, 1, 1, 1))                            \
    GTEST_SKIP() << "onednn_int8 needs AVX512-VNNI, which this CPU lacks"

std::vector<int8_t> random_codes(int64_t n, std::mt19937& rng, int lo = -128, int hi = 127) {
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int8_t> v(n);
  for (int8_t& c : v) c = static_cast<int8_t>(dist(rng));
  return v;
}

std::vector<int32_t> integer_reference(const std::vector<int8_t>& x, int64_t m, const std::vector<int8_t>& w, int64_t n,
                                       int64_t k) {
  std::vector<int32_t> acc(m * n);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t r = 0; r < n; ++r) {
      int64_t dot = 0;
      for (int64_t i = 0; i < k; ++i) dot += int64_t{x[t * k + i]} * w[r * k + i];
      acc[t * n + r] = static_cast<int32_t>(dot);
    }
  return acc;
}

std::vector<float> gaussian(int64_t n, std::mt19937& rng, float std = 1.0f) {
  std::normal_distribution<float> dist(0.0f, std);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(Int8Gemm, RegisteredForI8WeightsOnly) {
  ASSERT_NE(int8_provider(), nullptr);
  EXPECT_EQ(int8_provider()->compute(DType::I8), GemmCompute::Int8Activations);
  for (DType dtype : {DType::F32, DType::BF16, DType::Q8_0, DType::F8_E4M3, DType::I4})
    EXPECT_FALSE(int8_provider()->supports(dtype, 128, 64, 64)) << dtype_name(dtype);
  EXPECT_FALSE(int8_provider()->supports(DType::I8, 128, 64, kMaxI8Cols + 1));
}

// Every code value, shapes that are no multiple of 16/64 (several blocks and a tail block per
// thread with small block sizes), 1 and 2 threads.
TEST(Int8Gemm, Int32SumsEqualTheScalarReferenceExactly) {
  SKIP_WITHOUT_INT8_GEMM();
  std::mt19937 rng(31);
  ThreadPool pool1(1), pool2(2);
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{7, 13, 67}, Shape{33, 77, 200}, Shape{97, 300, 515},
                        Shape{130, 41, 2049}}) {
    const std::vector<int8_t> x = random_codes(s.m * s.k, rng), w = random_codes(s.n * s.k, rng);
    const std::vector<int32_t> exact = integer_reference(x, s.m, w, s.n, s.k);
    for (Isa cap : {Isa::Avx512, Isa::Scalar})  // the weight row sums: AVX-512 and scalar
      for (int64_t block_rows : {256, 16}) {
        set_isa_cap(cap);
        set_onednn_int8_gemm_block_rows(block_rows);
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<int32_t> acc(s.m * s.n, -1);
          const Status status = onednn_int8_matmul_s32(*pool, x.data(), s.m, w.data(), s.n, s.k, acc.data());
          ASSERT_TRUE(status.is_ok()) << status.message();
          ASSERT_EQ(acc, exact) << "m=" << s.m << " n=" << s.n << " k=" << s.k << " block=" << block_rows
                                << " isa=" << isa_name(active_isa()) << " threads=" << pool->thread_count();
        }
      }
  }
  set_isa_cap(Isa::Avx512);
  set_onednn_int8_gemm_block_rows(256);
}

// Extremes: -128 and +127 codes everywhere, and rows so long that the u8-shifted sums wrap int32
// on the way while the true dot fits (and dots beyond 2^24, which oneDNN's own s8 x s8
// compensation, applied in f32, got wrong by a few units).
TEST(Int8Gemm, ExtremeCodesAndLongRowsStayExact) {
  SKIP_WITHOUT_INT8_GEMM();
  ThreadPool pool(2);
  for (int64_t k : {64, 4160, 130048}) {
    const int64_t m = 3, n = 18;
    std::vector<int8_t> w(n * k), x(m * k);
    for (int64_t i = 0; i < k; ++i) {
      x[0 * k + i] = 127;
      x[1 * k + i] = i % 3 ? -127 : 127;
      x[2 * k + i] = -128;
      for (int64_t r = 0; r < n; ++r) w[r * k + i] = r % 3 == 0 ? -128 : r % 3 == 1 ? 127 : (i % 2 ? 127 : -128);
    }
    std::vector<int32_t> acc(m * n);
    const Status status = onednn_int8_matmul_s32(pool, x.data(), m, w.data(), n, k, acc.data());
    ASSERT_TRUE(status.is_ok()) << status.message();
    EXPECT_EQ(acc, integer_reference(x, m, w, n, k)) << "k=" << k;
  }
}

TEST(Int8Gemm, RejectsWhatItCannotRunAsStatus) {
  ThreadPool pool(1);
  std::vector<int8_t> x(8), w(8);
  std::vector<int32_t> acc(1);
  EXPECT_FALSE(onednn_int8_matmul_s32(pool, x.data(), 0, w.data(), 1, 8, acc.data()).is_ok());
  EXPECT_FALSE(onednn_int8_matmul_s32(pool, nullptr, 1, w.data(), 1, 8, acc.data()).is_ok());
  EXPECT_FALSE(onednn_int8_matmul_s32(pool, x.data(), 1, w.data(), 1, kMaxI8Cols + 1, acc.data()).is_ok());
}

// The provider on W8A8 weights (x quantized per token) gives exactly what the GEMV kernels give for
// the same tokens (both: float(dot) * (w_scale * x_scale)), on the AVX-512 and the scalar scaling.
TEST(Int8Gemm, ProviderEqualsTheGemvW8A8PathBitForBit) {
  SKIP_WITHOUT_INT8_GEMM();
  std::mt19937 rng(32);
  ThreadPool pool1(1), pool2(2);
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape s : {Shape{1, 13, 96}, Shape{5, 37, 67}, Shape{96, 300, 200}, Shape{130, 77, 515}}) {
    std::vector<float> wf = gaussian(s.n * s.k, rng, 0.05f);
    wf[3] = 1.5f;  // an outlier row
    Result<QuantizedMatrix> q = quantize_int8_per_channel("w", wf.data(), s.n, s.k, pool1);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    const Tensor w = q->view("w");
    std::vector<float> x = gaussian(s.m * s.k, rng);
    x[s.k / 2] *= 20.0f;  // an activation outlier coarsens token 0's step
    if (s.m > 1) std::fill(x.begin() + (s.m - 1) * s.k, x.end(), 0.0f);  // an all-zero token: scale 0
    std::vector<float> gemv(s.m * s.n);
    matmul_gemv(pool2, w, x.data(), s.m, gemv.data());
    for (Isa cap : {Isa::Avx512, Isa::Scalar}) {
      set_isa_cap(cap);
      for (ThreadPool* pool : {&pool1, &pool2}) {
        std::vector<float> y(s.m * s.n, std::nanf(""));
        const Status status = int8_provider()->run(*pool, w, x.data(), s.m, y.data());
        ASSERT_TRUE(status.is_ok()) << status.message();
        ASSERT_EQ(y, gemv) << "m=" << s.m << " n=" << s.n << " k=" << s.k << " isa=" << isa_name(active_isa())
                           << " threads=" << pool->thread_count();
      }
    }
    set_isa_cap(Isa::Avx512);
  }
}

// matmul() sends prefill-sized I8 calls to the int8 GEMM: the result equals GEMV's exactly.
TEST(Int8Gemm, MatmulRoutesI8PrefillToTheInt8Gemm) {
  SKIP_WITHOUT_INT8_GEMM();
  const char* forced = std::getenv("ANVIL_GEMM");
  if (forced != nullptr && *forced != '\0') GTEST_SKIP() << "ANVIL_GEMM=" << forced << " forces one provider";
  std::mt19937 rng(33);
  ThreadPool pool(2);
  const int64_t n = 64, k = 128;
  Result<QuantizedMatrix> q = quantize_int8_per_channel("w", gaussian(n * k, rng, 0.05f).data(), n, k, pool);
  ASSERT_TRUE(q.is_ok());
  const Tensor w = q->view("w");
  for (int64_t m : {kI8GemmMinTokens, int64_t{200}}) {
    const std::vector<float> x = gaussian(m * k, rng);
    std::vector<float> via_matmul(m * n), via_gemv(m * n);
    matmul(pool, w, x.data(), m, via_matmul.data());
    matmul_gemv(pool, w, x.data(), m, via_gemv.data());
    EXPECT_EQ(via_matmul, via_gemv) << "m=" << m;
  }
}

}  // namespace
}  // namespace anvil
