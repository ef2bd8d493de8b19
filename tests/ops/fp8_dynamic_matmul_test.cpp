// FP8 W8A8 (fp8-dynamic): F8_E4M3 weights whose activations are rounded to E4M3 per token. Every
// matmul path (GEMV kernels at each ISA, every GEMM provider, matmul, matmul_shared_input) against
// an independent reference: x rounded by the scalar E4M3 quantizer, double dot products with the
// dequantized weight, within f32 rounding on every path (oneDNN's bf16 too: it takes the E4M3
// values, exact in bf16, and scales its results). And the flag is no no-op: W8A16 differs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/matmul.h"
#include "core/quant_scales.h"
#include "quant/fp8.h"
#include "quant/fp8_activations.h"

namespace anvil {
namespace {

std::vector<float> gaussian(int64_t n, std::mt19937& rng, float std = 1.0f) {
  std::normal_distribution<float> dist(0.0f, std);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

QuantizedMatrix fp8_matrix(int64_t rows, int64_t k, Fp8Granularity granularity, ActivationQuant activations,
                           std::mt19937& rng) {
  ThreadPool pool(1);
  std::vector<float> w = gaussian(rows * k, rng, 0.05f);
  w[5] = 0.9f;  // an outlier
  Result<QuantizedMatrix> q = quantize_fp8("w", w.data(), rows, k, granularity, pool);
  EXPECT_TRUE(q.is_ok()) << q.status().message();
  QuantizedMatrix m = std::move(q).value();
  m.activations = activations;
  return m;
}

// How the reference rounds x: not at all, to E4M3 per token (FP8 W8A8), or to bf16 (W8A16).
enum class XRounding { None, E4M3, Bf16 };

// y = rounded(x) · Wᵀ in double.
std::vector<double> reference(const Tensor& w, const std::vector<float>& x, int64_t n_tokens, XRounding rounding) {
  const int64_t k = w.cols(), rows = w.rows();
  std::vector<float> xq(x);
  if (rounding == XRounding::E4M3) quantize_dequantize_rows_e4m3_scalar(x.data(), n_tokens, k, xq.data());
  if (rounding == XRounding::Bf16)
    for (float& v : xq) v = bf16_to_float(float_to_bf16(v));
  std::vector<double> y(n_tokens * rows);
  std::vector<float> row(k);
  for (int64_t r = 0; r < rows; ++r) {
    weight_row_to_f32(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += static_cast<double>(row[i]) * xq[t * k + i];
      y[t * rows + r] = acc;
    }
  }
  return y;
}

double normalized_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    e = std::max(e, std::fabs(y[i] - ref[i]));
    m = std::max(m, std::fabs(ref[i]));
  }
  return std::isnan(e) ? 1e30 : e / m;
}

// x with per-token outliers, so each token's E4M3 step differs and rounding is visible.
std::vector<float> activations(int64_t n_tokens, int64_t k, std::mt19937& rng) {
  std::vector<float> x = gaussian(n_tokens * k, rng);
  for (int64_t t = 0; t < n_tokens; ++t) x[t * k + (t * 7) % k] *= 8.0f + static_cast<float>(t);
  return x;
}

TEST(Fp8DynamicMatmul, EveryPathMatchesTheRoundedActivationReference) {
  std::mt19937 rng(31);
  ThreadPool pool1(1), pool2(2);
  for (Fp8Granularity granularity : {Fp8Granularity::PerChannel, Fp8Granularity::PerTensor}) {
    for (int64_t k : {256, 200}) {
      const QuantizedMatrix q = fp8_matrix(37, k, granularity, ActivationQuant::DynamicPerTokenFp8, rng);
      const Tensor w = q.view("w");
      ASSERT_TRUE(check_quant_scale_layout(w).is_ok());
      for (int64_t m : {1, 3, 8, 20, 130}) {
        const std::vector<float> x = activations(m, k, rng);
        const std::vector<double> ref = reference(w, x, m, XRounding::E4M3);
        const std::string what = "k=" + std::to_string(k) + " m=" + std::to_string(m) +
                                 (granularity == Fp8Granularity::PerTensor ? " per-tensor" : " per-channel");
        std::vector<float> y(m * w.rows(), std::nanf(""));
        matmul_reference(pool2, w, x.data(), m, y.data());
        EXPECT_LT(normalized_error(y, ref), 1e-5) << "matmul_reference " << what;
        // The GEMV kernels at every ISA this CPU runs.
        for (Isa cap : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
          set_isa_cap(cap);
          if (active_isa() != cap) continue;
          std::fill(y.begin(), y.end(), std::nanf(""));
          matmul_gemv(pool2, w, x.data(), m, y.data());
          EXPECT_LT(normalized_error(y, ref), 1e-5) << "matmul_gemv isa " << isa_name(cap) << " " << what;
        }
        set_isa_cap(Isa::Avx512);
        // Every provider, bf16 ones included: the products of E4M3 values are exact in them.
        for (GemmProvider* provider : gemm_providers()) {
          if (!provider->supports(w.dtype, m, w.rows(), k)) continue;
          const double bound = 1e-5;
          for (ThreadPool* pool : {&pool1, &pool2}) {
            std::fill(y.begin(), y.end(), std::nanf(""));
            const Status status = provider->run(*pool, w, x.data(), m, y.data());
            ASSERT_TRUE(status.is_ok()) << provider->name() << ": " << status.message();
            EXPECT_LT(normalized_error(y, ref), bound) << provider->name() << " " << what;
          }
        }
        std::fill(y.begin(), y.end(), std::nanf(""));
        matmul(pool2, w, x.data(), m, y.data());
        EXPECT_LT(normalized_error(y, ref), 1e-5) << "matmul " << what;
      }
    }
  }
}

// The same weight without the flag is W8A16: it matches the bf16-activation reference, and the
// two differ by far more than either path's own error.
TEST(Fp8DynamicMatmul, TheFlagIsNotANoOp) {
  std::mt19937 rng(32);
  ThreadPool pool(2);
  const int64_t k = 512, rows = 64;
  const QuantizedMatrix dynamic = fp8_matrix(rows, k, Fp8Granularity::PerChannel, ActivationQuant::DynamicPerTokenFp8, rng);
  QuantizedMatrix plain = dynamic;
  plain.activations = ActivationQuant::None;
  const Tensor wd = dynamic.view("wd"), wp = plain.view("wp");
  for (int64_t m : {1, 4, 64}) {
    const std::vector<float> x = activations(m, k, rng);
    const std::vector<double> ref_rounded = reference(wd, x, m, XRounding::E4M3),
                              ref_bf16 = reference(wd, x, m, XRounding::Bf16),
                              ref_float = reference(wd, x, m, XRounding::None);
    const double gap = normalized_error(std::vector<float>(ref_rounded.begin(), ref_rounded.end()), ref_float);
    EXPECT_GT(gap, 1e-3) << "m=" << m << ": E4M3 activations should move the outputs";
    for (GemmProvider* provider : {find_gemm_provider("reference"), find_gemm_provider("gemv"),
                                   find_gemm_provider("onednn_f32")}) {
      if (!provider || !provider->supports(DType::F8_E4M3, m, rows, k)) continue;
      std::vector<float> yd(m * rows), yp(m * rows);
      ASSERT_TRUE(provider->run(pool, wd, x.data(), m, yd.data()).is_ok());
      ASSERT_TRUE(provider->run(pool, wp, x.data(), m, yp.data()).is_ok());
      EXPECT_LT(normalized_error(yd, ref_rounded), gap / 20) << provider->name() << " fp8-dynamic m=" << m;
      // (The GEMV kernels take W8A16's activations in bf16.)
      const bool bf16_x = provider->compute(DType::F8_E4M3) == GemmCompute::Bf16Activations;
      EXPECT_LT(normalized_error(yp, bf16_x ? ref_bf16 : ref_float), 1e-5) << provider->name() << " fp8 (W8A16) m=" << m;
      EXPECT_GT(normalized_error(yd, ref_float), gap / 2) << provider->name() << " m=" << m;
    }
  }
}

// q/k/v-style calls: fused decode over flagged weights equals separate matmuls exactly, and a
// flagged weight beside an unflagged one keeps each its own activations.
TEST(Fp8DynamicMatmul, SharedInputFollowsEachWeightsActivations) {
  std::mt19937 rng(33);
  ThreadPool pool(2);
  const int64_t k = 128;
  const QuantizedMatrix a = fp8_matrix(48, k, Fp8Granularity::PerChannel, ActivationQuant::DynamicPerTokenFp8, rng);
  const QuantizedMatrix b = fp8_matrix(32, k, Fp8Granularity::PerTensor, ActivationQuant::DynamicPerTokenFp8, rng);
  QuantizedMatrix c = fp8_matrix(16, k, Fp8Granularity::PerChannel, ActivationQuant::None, rng);
  const Tensor wa = a.view("a"), wb = b.view("b"), wc = c.view("c");
  for (int64_t m : {1, 5, 40}) {
    const std::vector<float> x = activations(m, k, rng);
    for (const std::vector<const Tensor*>& weights :
         {std::vector<const Tensor*>{&wa, &wb}, std::vector<const Tensor*>{&wa, &wc, &wb}}) {
      std::vector<std::vector<float>> fused(weights.size()), separate(weights.size());
      std::vector<MatmulOutput> outputs;
      for (size_t i = 0; i < weights.size(); ++i) {
        fused[i].assign(m * weights[i]->rows(), std::nanf(""));
        separate[i].assign(m * weights[i]->rows(), std::nanf(""));
        outputs.push_back({weights[i], fused[i].data()});
        matmul(pool, *weights[i], x.data(), m, separate[i].data());
      }
      matmul_shared_input(pool, outputs, x.data(), m);
      for (size_t i = 0; i < weights.size(); ++i) {
        EXPECT_EQ(fused[i], separate[i]) << weights[i]->name << " of " << weights.size() << " m=" << m;
        const bool rounded = weights[i]->quant.activations == ActivationQuant::DynamicPerTokenFp8;
        // (W8A16: bf16 x and exact weight values, on the GEMV kernels and in oneDNN's bf16 alike.)
        const XRounding rounding = rounded ? XRounding::E4M3 : XRounding::Bf16;
        EXPECT_LT(normalized_error(fused[i], reference(*weights[i], x, m, rounding)), 1e-5)
            << weights[i]->name << " m=" << m;
      }
    }
  }
}

TEST(Fp8DynamicMatmul, OnlyF8WeightsTakeTheFlag) {
  std::mt19937 rng(34);
  const QuantizedMatrix q = fp8_matrix(4, 32, Fp8Granularity::PerChannel, ActivationQuant::DynamicPerTokenFp8, rng);
  EXPECT_TRUE(check_quant_scales(q.view("f8")).is_ok());
  Tensor i8 = q.view("blk.0.attn_q.weight");
  i8.dtype = DType::I8;
  const Status status = check_quant_scale_layout(i8);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("blk.0.attn_q.weight"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("dynamic-per-token-fp8 activations, which only F8_E4M3 weights take"),
            std::string::npos)
      << status.message();
  std::vector<float> f(4 * 32);
  Tensor f32;
  f32.name = "f32";
  f32.dtype = DType::F32;
  f32.shape = {4, 32};
  f32.data = reinterpret_cast<const std::byte*>(f.data());
  f32.nbytes = f.size() * sizeof(float);
  f32.quant.activations = ActivationQuant::DynamicPerTokenFp8;
  EXPECT_FALSE(check_quant_scale_layout(f32).is_ok());
  EXPECT_EQ(activation_quant_from_name("dynamic-per-token-fp8"), ActivationQuant::DynamicPerTokenFp8);
  EXPECT_EQ(activation_quant_from_name("none"), ActivationQuant::None);
  EXPECT_FALSE(activation_quant_from_name("static-fp8").has_value());
}

}  // namespace
}  // namespace anvil
