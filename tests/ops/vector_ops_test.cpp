// Vector kernels against scalar references, for odd lengths (not multiples of the vector width).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <random>
#include <vector>

#include "compute/cpu/attention.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/rope.h"
#include "compute/cpu/vector_ops.h"
#include "core/dtype.h"

namespace anvil {
namespace {

std::vector<float> random_vector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Normalized error: max |a - b| / max |b|, the measure llama.cpp's test-backend-ops uses in spirit.
double normalized_error(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0, max_ref = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  return max_diff / max_ref;
}

TEST(VectorOps, DotMatchesScalarForOddLengths) {
  for (int64_t n : {1, 7, 15, 16, 17, 31, 33, 100, 1023}) {
    auto a = random_vector(n, 1), b = random_vector(n, 2);
    double reference = 0;
    for (int64_t i = 0; i < n; ++i) reference += static_cast<double>(a[i]) * b[i];
    const float got = dot_f32(a.data(), b.data(), n);
    EXPECT_NEAR(got, reference, 1e-5 * std::sqrt(static_cast<double>(n)) + 1e-6) << "n=" << n;
  }
}

TEST(VectorOps, RmsNormMatchesScalar) {
  const int64_t n = 77;
  auto x = random_vector(n, 3), w = random_vector(n, 4);
  std::vector<float> out(n), ref(n);
  rms_norm(x.data(), w.data(), out.data(), n, 1e-5f);
  double ms = 0;
  for (float v : x) ms += static_cast<double>(v) * v;
  const double scale = 1.0 / std::sqrt(ms / n + 1e-5);
  for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<float>(x[i] * scale * w[i]);
  EXPECT_LT(normalized_error(out, ref), 1e-6);
}

TEST(VectorOps, SoftmaxSiluAxpyMatchScalar) {
  const int64_t n = 45;
  auto x = random_vector(n, 5, 3.0f), y = random_vector(n, 6);
  std::vector<float> s = x, ref(n);
  softmax_inplace(s.data(), n);
  double max_x = -1e30, sum = 0;
  for (float v : x) max_x = std::max<double>(max_x, v);
  for (float v : x) sum += std::exp(v - max_x);
  for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<float>(std::exp(x[i] - max_x) / sum);
  EXPECT_LT(normalized_error(s, ref), 1e-6);

  std::vector<float> g = x;
  silu_mul_inplace(g.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<float>(x[i] / (1 + std::exp(-double(x[i]))) * y[i]);
  EXPECT_LT(normalized_error(g, ref), 1e-6);

  std::vector<float> acc = y;
  axpy(0.5f, x.data(), acc.data(), n);
  for (int64_t i = 0; i < n; ++i) ref[i] = y[i] + 0.5f * x[i];
  EXPECT_LT(normalized_error(acc, ref), 1e-7);
}

TEST(VectorOps, HalfRowConversionsMatchScalar) {
  const int64_t n = 37;
  auto x = random_vector(n, 7, 100.0f);
  std::vector<uint16_t> h(n), b(n);
  for (int64_t i = 0; i < n; ++i) {
    h[i] = float_to_fp16(x[i]);
    b[i] = float_to_bf16(x[i]);
  }
  std::vector<float> out(n);
  f16_row_to_f32(h.data(), out.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(out[i], fp16_to_float(h[i]));
  bf16_row_to_f32(b.data(), out.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(out[i], bf16_to_float(b[i]));
}

// f32 -> f16 rows (F16C) give the scalar converter's bits: random bit patterns cover normals,
// subnormals, overflow to inf and rounding ties; NaN stays NaN.
TEST(VectorOps, F32ToF16RowMatchesScalarBits) {
  std::mt19937 rng(11);
  std::vector<float> x;
  for (int i = 0; i < 20000; ++i) {
    const uint32_t bits = rng();
    x.push_back(__builtin_bit_cast(float, bits));
    x.push_back(std::ldexp(static_cast<float>(rng() % 4096) / 2048.0f, static_cast<int>(rng() % 40) - 28));
  }
  for (float v : {0.0f, -0.0f, 65504.0f, 65520.0f, 1e-8f, 5.96e-8f, 2.98e-8f, INFINITY, -INFINITY, NAN}) x.push_back(v);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint16_t> h(n);
  f32_row_to_f16(x.data(), h.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(fp16_to_float(h[i]))) << i;
      continue;
    }
    ASSERT_EQ(h[i], float_to_fp16(x[i])) << "value " << x[i] << " at " << i;
  }
}

// The GEMV kernels' W8A16 / W4A16 activations: float_to_bf16's rounding, kept as floats.
TEST(VectorOps, RoundToBf16MatchesScalarBits) {
  std::vector<float> x = random_vector(1000, 17, 100.0f);
  // Ties both ways (0x3F808000 rounds down to even, 0x3F818000 up), the largest finite value
  // (rounds to inf), subnormals, infinities, NaNs.
  for (uint32_t bits : {0x3F808000u, 0x3F818000u, 0x7F7FFFFFu, 0x00000001u, 0x807FFFFFu, 0x7F800000u, 0xFF800000u,
                        0x7FC00001u, 0x7F800001u, 0xFFFFFFFFu}) {
    float v;
    std::memcpy(&v, &bits, 4);
    x.push_back(v);
  }
  std::vector<float> y(x.size());
  f32_round_to_bf16(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i])) << i;
      continue;
    }
    uint32_t bits;
    std::memcpy(&bits, &y[i], 4);
    ASSERT_EQ(bits, static_cast<uint32_t>(float_to_bf16(x[i])) << 16) << "value " << x[i] << " at " << i;
  }
  f32_round_to_bf16(x.data(), x.data(), static_cast<int64_t>(x.size()));  // in place
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0);
}

TEST(VectorOps, MaxIgnoresNaNAndMatchesScan) {
  for (int64_t n : {0, 1, 5, 31, 32, 33, 1000, 128256}) {
    auto x = random_vector(n, static_cast<uint32_t>(n) + 3, 10.0f);
    float expected = -INFINITY;
    for (float v : x) expected = v > expected ? v : expected;
    EXPECT_EQ(max_f32(x.data(), n), expected) << n;
    if (n > 2) {
      x[n / 2] = NAN;
      x[n - 1] = NAN;
      expected = -INFINITY;
      for (float v : x) expected = v > expected ? v : expected;
      EXPECT_EQ(max_f32(x.data(), n), expected) << n;
    }
  }
  const std::vector<float> all_nan(40, NAN);
  EXPECT_EQ(max_f32(all_nan.data(), 40), -INFINITY);
}

// RoPE: both pairings against a direct complex-rotation reference, and their equivalence
// under the q/k row permutation that GGUF conversion applies.
TEST(Rope, BothStylesMatchReferenceAndEachOther) {
  const int64_t heads = 3, hd = 10, position = 13;
  std::vector<float> inv_freq(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / hd);
  auto x = random_vector(heads * hd, 8);

  std::vector<float> interleaved = x;
  apply_rope(interleaved.data(), heads, hd, position, inv_freq.data(), RopeStyle::Interleaved);
  std::vector<float> ref(heads * hd);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double a = position * static_cast<double>(inv_freq[i]);
      const double x0 = x[h * hd + 2 * i], x1 = x[h * hd + 2 * i + 1];
      ref[h * hd + 2 * i] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
      ref[h * hd + 2 * i + 1] = static_cast<float>(x0 * std::sin(a) + x1 * std::cos(a));
    }
  EXPECT_LT(normalized_error(interleaved, ref), 1e-5);

  // NeoX on the de-interleaved vector equals interleaved RoPE, de-interleaved.
  std::vector<float> neox(heads * hd);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      neox[h * hd + i] = x[h * hd + 2 * i];
      neox[h * hd + i + hd / 2] = x[h * hd + 2 * i + 1];
    }
  apply_rope(neox.data(), heads, hd, position, inv_freq.data(), RopeStyle::NeoX);
  std::vector<float> neox_back(heads * hd);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      neox_back[h * hd + 2 * i] = neox[h * hd + i];
      neox_back[h * hd + 2 * i + 1] = neox[h * hd + i + hd / 2];
    }
  EXPECT_LT(normalized_error(neox_back, interleaved), 1e-6);
}


// Softmax and SwiGLU on every ISA path (scalar std::exp; AVX2/AVX-512 polynomial exp) against
// double, for odd lengths and wide input ranges (softmax spans e^-80..1, SiLU saturates both ways).
TEST(VectorOps, SoftmaxAndSiluEveryPathMatchDouble) {
  for (Isa cap : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(cap);
    if (active_isa() != cap) continue;
    double worst_softmax = 0, worst_silu = 0;
    for (int64_t n : {1, 7, 16, 17, 45, 1000, 4099}) {
      auto x = random_vector(n, 20 + n, 12.0f), y = random_vector(n, 30 + n);
      std::vector<float> s = x, ref(n);
      softmax_inplace(s.data(), n);
      double max_x = -1e30, sum = 0;
      for (float v : x) max_x = std::max<double>(max_x, v);
      for (float v : x) sum += std::exp(v - max_x);
      for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<float>(std::exp(x[i] - max_x) / sum);
      worst_softmax = std::max(worst_softmax, normalized_error(s, ref));
      // Element-wise relative error of SiLU (its output spans many magnitudes).
      std::vector<float> g = x;
      silu_mul_inplace(g.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double r = x[i] / (1 + std::exp(-double(x[i]))) * y[i];
        if (r != 0) worst_silu = std::max(worst_silu, std::fabs(g[i] - r) / std::fabs(r));
      }
    }
    std::printf("%-7s softmax normalized error %.2e, silu*y max relative error %.2e\n", isa_name(cap),
                worst_softmax, worst_silu);
    EXPECT_LT(worst_softmax, 1e-6) << isa_name(cap);
    EXPECT_LT(worst_silu, 1e-6) << isa_name(cap);
  }
  set_isa_cap(Isa::Avx512);
}

// The vectorized RoPE rotation against the scalar reference on every path, both pairings.
TEST(Rope, EveryPathMatchesScalarReference) {
  for (Isa cap : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(cap);
    if (active_isa() != cap) continue;
    double worst = 0;
    for (int64_t hd : {8, 10, 64, 72, 80, 128})
      for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::NeoX}) {
        const int64_t heads = 3, position = 1234;
        std::vector<float> inv_freq(hd / 2), cos_t(hd / 2), sin_t(hd / 2);
        for (int64_t i = 0; i < hd / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / hd);
        rope_angles(position, inv_freq.data(), hd / 2, cos_t.data(), sin_t.data());
        auto x = random_vector(heads * hd, 40 + hd);
        std::vector<float> fast = x, ref = x;
        apply_rope_table(fast.data(), heads, hd, cos_t.data(), sin_t.data(), style);
        apply_rope_reference(ref.data(), heads, hd, cos_t.data(), sin_t.data(), style);
        worst = std::max(worst, normalized_error(fast, ref));
      }
    std::printf("%-7s rope normalized error vs scalar %.2e\n", isa_name(cap), worst);
    EXPECT_LT(worst, 1e-6) << isa_name(cap);
  }
  set_isa_cap(Isa::Avx512);
}

TEST(Attention, OneHeadMatchesScalarReference) {
  const int64_t hd = 24, stride = 3 * hd, rows = 19, first = 5, last = 17;
  auto q = random_vector(hd, 9), keys = random_vector(rows * stride, 10), values = random_vector(rows * stride, 11);
  std::vector<float> out(hd), scores(rows), ref(hd, 0.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  attend_one_head(q.data(), keys.data() + hd, values.data() + hd, stride, first, last, hd, scale, scores.data(),
                  out.data());
  std::vector<double> s;
  double max_s = -1e30, sum = 0;
  for (int64_t j = first; j <= last; ++j) {
    double d = 0;
    for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(q[i]) * keys[j * stride + hd + i];
    s.push_back(d * scale);
    max_s = std::max(max_s, d * scale);
  }
  for (double& v : s) sum += (v = std::exp(v - max_s));
  for (int64_t j = first; j <= last; ++j)
    for (int64_t i = 0; i < hd; ++i) ref[i] += static_cast<float>(s[j - first] / sum * values[j * stride + hd + i]);
  EXPECT_LT(normalized_error(out, ref), 1e-5);
}

}  // namespace
}  // namespace anvil
