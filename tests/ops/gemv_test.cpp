// gemv for every weight dtype x every ISA path on this CPU x 1..8(+) tokens x odd shapes x 1 and 2
// threads, against a double-precision reference over the dequantized weights and the ORIGINAL
// float activations. Prints the normalized error (max|y-ref| / max|ref|) per dtype and path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/gemv.h"
#include "compute/cpu/isa.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "quant/ggml_panels.h"

namespace anvil {
namespace {

struct Path {
  std::string name;
  Isa cap;
  bool subfeatures;
};

// Every path this CPU can run (under any ANVIL_ISA cap), including AVX-512 without VNNI.
std::vector<Path> available_paths() {
  std::vector<Path> candidates = {{"scalar", Isa::Scalar, true}, {"avx2", Isa::Avx2, true}};
  if (cpu_features().avx512_vnni) candidates.push_back({"avx512-novnni", Isa::Avx512, false});
  candidates.push_back({cpu_features().avx512_vnni ? "avx512-vnni" : "avx512", Isa::Avx512, true});
  std::vector<Path> paths;
  for (const Path& p : candidates) {
    set_isa_cap(p.cap, p.subfeatures);
    if (active_isa() == p.cap) paths.push_back(p);
  }
  set_isa_cap(Isa::Avx512);
  return paths;
}

bool is_float(DType dtype) { return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16; }

// Column counts per dtype: odd and several-block widths (odd block counts for the 32-blocks).
std::vector<int64_t> widths(DType dtype) {
  if (is_float(dtype)) return {67, 200};
  // 32-blocks: 3, 7, 8 and 11 blocks (the AVX-512 Q8_0/Q4_0 kernels take 4 at a time, then 2, then 1).
  // Panels: 3 and 11 blocks (one partial superblock), 16 (one whole), 33 (two whole + 1 block);
  // Q4_K_R4: one Q4_K block (half a superblock), two (one whole), five (two whole + a half).
  if (dtype == DType::Q4_K_R4) return {256, 512, 1280};
  if (dtype_is_panels(dtype)) return {96, 352, 512, 1056};
  if (dtype_info(dtype).block_elems == 32) return {96, 224, 256, 352};
  return {256, 768};
}

struct Weights {
  std::vector<std::byte> bytes;
  std::vector<float> dequantized;
  Tensor tensor;
};

// Panel dtypes: quantized as their GGML type, then repacked (as at load).
Weights make_weights(DType dtype, int64_t rows, int64_t k, std::mt19937& rng) {
  if (dtype_is_panels(dtype)) {
    Weights w = make_weights(ggml_dtype_of_panels(dtype), rows, k, rng);
    const std::vector<std::byte> rows_bytes = w.bytes;
    repack_to_panels(ggml_dtype_of_panels(dtype), rows_bytes.data(), rows, k, 0, (rows + 3) / 4, w.bytes.data());
    w.tensor.dtype = dtype;
    return w;
  }
  const DTypeInfo& info = dtype_info(dtype);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> values(rows * k);
  for (float& v : values) v = dist(rng);
  Weights w;
  w.bytes.resize(dtype_bytes(dtype, rows * k));
  const size_t row_bytes = dtype_bytes(dtype, k);
  for (int64_t r = 0; r < rows; ++r) info.from_float(&values[r * k], w.bytes.data() + r * row_bytes, k);
  w.tensor = Tensor{"w", dtype, {rows, k}, w.bytes.data(), w.bytes.size(), {}};
  w.dequantized.resize(rows * k);
  for (int64_t r = 0; r < rows; ++r) info.to_float(w.tensor.row(r), &w.dequantized[r * k], k);
  return w;
}

// Gaussian activations, optionally with one 20x entry per token as real hidden states have
// (the outlier coarsens its whole 32-block's int8 step: the worst case for int8 activations).
std::vector<float> make_activations(int64_t n_tokens, int64_t k, std::mt19937& rng, bool outliers = true) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n_tokens * k);
  for (float& v : x) v = dist(rng);
  if (outliers)
    for (int64_t t = 0; t < n_tokens; ++t) x[t * k + (7 * t + 3) % k] *= 20.0f;
  return x;
}

struct Outcome {
  double normalized_error = 0;  // max |y - ref| / max |ref|
  double bound_ratio = 0;       // max |y - ref| / rigorous bound (quantized activations only)
};

// Runs gemv with rows split over `threads` the way matmul splits them, into a strided y whose
// padding must stay untouched; checks every output against the reference.
Outcome run_case(const Weights& w, const std::vector<float>& x, int64_t n_tokens, int threads) {
  const Tensor& tensor = w.tensor;
  const int64_t rows = tensor.rows(), k = tensor.cols();
  const int64_t y_stride = rows + 5;
  GemvActivations act;
  gemv_prepare(tensor.dtype, x.data(), n_tokens, k, act);
  const float sentinel = -12345.0f;
  std::vector<float> y(n_tokens * y_stride, sentinel);
  ThreadPool pool(threads);
  pool.run([&](int index, int count) {
    const int64_t chunk = (rows + count - 1) / count;
    const int64_t begin = std::min(rows, index * chunk), end = std::min(rows, begin + chunk);
    gemv_rows(tensor, act, begin, end, y.data(), y_stride);
  });

  Outcome out;
  double max_err = 0, max_ref = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = &x[t * k];
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, abs_products = 0, act_rounding = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double wi = w.dequantized[r * k + i];
        ref += wi * xt[i];
        abs_products += std::fabs(wi * xt[i]);
      }
      if (!is_float(tensor.dtype)) {
        // Each activation is off by at most half its block's step amax/127.
        for (int64_t b = 0; b < k / 32; ++b) {
          double amax = 0, abs_w = 0;
          for (int i = 0; i < 32; ++i) {
            amax = std::max(amax, std::fabs(static_cast<double>(xt[b * 32 + i])));
            abs_w += std::fabs(w.dequantized[r * k + b * 32 + i]);
          }
          act_rounding += abs_w * amax / 127.0 / 2.0;
        }
      }
      const double err = std::fabs(y[t * y_stride + r] - ref);
      max_err = std::max(max_err, err);
      max_ref = std::max(max_ref, std::fabs(ref));
      if (!is_float(tensor.dtype)) {
        // Rigorous: activation rounding plus f32 accumulation/scaling slack.
        const double bound = act_rounding * 1.001 + 1e-5 * abs_products;
        EXPECT_LE(err, bound) << "row " << r << " token " << t;
        out.bound_ratio = std::max(out.bound_ratio, err / bound);
      }
    }
    for (int64_t r = rows; r < y_stride; ++r) EXPECT_EQ(y[t * y_stride + r], sentinel) << "padding written";
  }
  out.normalized_error = max_err / max_ref;
  return out;
}

TEST(Gemv, EveryDtypePathTokensShapeAndThreadCountMatchesReference) {
  std::mt19937 rng(7);
  const std::vector<Path> paths = available_paths();
  std::printf("%-6s %-14s %12s %12s %10s  (max over tokens {1,2,3,8,11}, widths, threads {1,2})\n", "dtype", "path",
              "err_gauss", "err_outlier", "err/bound");
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K,
                      DType::Q8_0_R4, DType::Q4_0_R4, DType::Q4_K_R4}) {
    // 13 rows: not a multiple of any kernel's row blocking (4, 2), and uneven across 2 threads.
    std::vector<Weights> weights;
    for (int64_t k : widths(dtype)) weights.push_back(make_weights(dtype, 13, k, rng));
    for (const Path& path : paths) {
      set_isa_cap(path.cap, path.subfeatures);
      Outcome worst[2];  // gaussian, with outliers
      for (const Weights& w : weights)
        for (int64_t n_tokens : {1, 2, 3, 8, 11})
          for (bool outliers : {false, true}) {
            const std::vector<float> x = make_activations(n_tokens, w.tensor.cols(), rng, outliers);
            for (int threads : {1, 2}) {
              SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + path.name + " k=" + std::to_string(w.tensor.cols()) +
                           " tokens=" + std::to_string(n_tokens) + " threads=" + std::to_string(threads) +
                           (outliers ? " outliers" : " gaussian"));
              const Outcome o = run_case(w, x, n_tokens, threads);
              // Float weights: exact f32 products, only accumulation rounding. Int8 activations
              // (checked element by element against their rigorous bound in run_case) add about
              // step/sqrt(12) per element with step = amax/127 ~ 3/127 for gaussian blocks, i.e.
              // ~0.6% of max|y| here (up to ~1.3% seen: max|ref| of 13 short rows is noisy); a 20x
              // outlier makes its block's step 20x coarser.
              const double limit = is_float(dtype) ? 1e-5 : outliers ? 5e-2 : 2e-2;
              EXPECT_LT(o.normalized_error, limit);
              worst[outliers].normalized_error = std::max(worst[outliers].normalized_error, o.normalized_error);
              worst[outliers].bound_ratio = std::max(worst[outliers].bound_ratio, o.bound_ratio);
            }
          }
      std::printf("%-7s %-14s %12.3e %12.3e %10.3f\n", dtype_name(dtype), path.name.c_str(), worst[0].normalized_error,
                  worst[1].normalized_error, std::max(worst[0].bound_ratio, worst[1].bound_ratio));
    }
  }
  set_isa_cap(Isa::Avx512);
}

// Every SIMD path reproduces the scalar path's arithmetic (same int8 codes, exact integer dots),
// so they agree far more tightly than either agrees with the float reference.
TEST(Gemv, SimdPathsAgreeWithScalarPath) {
  std::mt19937 rng(11);
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K,
                      DType::Q8_0_R4, DType::Q4_0_R4, DType::Q4_K_R4}) {
    const int64_t k = widths(dtype).back(), rows = 9, n_tokens = 3;
    const Weights w = make_weights(dtype, rows, k, rng);
    const std::vector<float> x = make_activations(n_tokens, k, rng);
    std::vector<std::vector<float>> results;
    for (const Path& path : available_paths()) {
      set_isa_cap(path.cap, path.subfeatures);
      GemvActivations act;
      gemv_prepare(dtype, x.data(), n_tokens, k, act);
      std::vector<float> y(n_tokens * rows);
      gemv_rows(w.tensor, act, 0, rows, y.data(), rows);
      results.push_back(y);
    }
    set_isa_cap(Isa::Avx512);
    double max_ref = 0;
    for (float v : results[0]) max_ref = std::max(max_ref, std::fabs(static_cast<double>(v)));
    for (size_t p = 1; p < results.size(); ++p)
      for (size_t i = 0; i < results[0].size(); ++i)
        EXPECT_NEAR(results[p][i], results[0][i], 2e-6 * max_ref) << dtype_name(dtype) << " path " << p;
  }
}

// A panel layout multiplies as its GGML type does (same codes, exact integer dots): only the f32
// order of summing blocks differs.
TEST(Gemv, PanelsGiveTheResultsOfTheirGgmlRows) {
  std::mt19937 rng(13);
  for (DType dtype : {DType::Q8_0_R4, DType::Q4_0_R4, DType::Q4_K_R4}) {
    for (int64_t k : widths(dtype)) {
      const int64_t rows = 13;
      const DType ggml = ggml_dtype_of_panels(dtype);
      std::mt19937 same = rng;
      const Weights w = make_weights(ggml, rows, k, same);
      const Weights p = make_weights(dtype, rows, k, rng);
      for (int64_t n_tokens : {1, 3, 5}) {
        const std::vector<float> x = make_activations(n_tokens, k, rng);
        GemvActivations a_rows, a_panels;
        gemv_prepare(ggml, x.data(), n_tokens, k, a_rows);
        gemv_prepare(dtype, x.data(), n_tokens, k, a_panels);
        std::vector<float> y_rows(n_tokens * rows), y_panels(n_tokens * rows);
        gemv_rows(w.tensor, a_rows, 0, rows, y_rows.data(), rows);
        gemv_rows(p.tensor, a_panels, 0, rows, y_panels.data(), rows);
        float max_abs = 0;
        for (float v : y_rows) max_abs = std::max(max_abs, std::fabs(v));
        for (size_t i = 0; i < y_rows.size(); ++i)
          ASSERT_NEAR(y_panels[i], y_rows[i], 2e-6f * max_abs)
              << dtype_name(dtype) << " k=" << k << " tokens=" << n_tokens << " i=" << i;
      }
    }
  }
}

// The prepared activations are identical whichever ISA quantized them.
TEST(Gemv, PreparedActivationsIdenticalAcrossPaths) {
  std::mt19937 rng(3);
  const std::vector<float> x = make_activations(3, 512, rng);
  for (DType dtype :
       {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::Q8_0_R4, DType::Q4_0_R4, DType::Q4_K_R4}) {
    std::vector<GemvActivations> prepared;
    for (const Path& path : available_paths()) {
      set_isa_cap(path.cap, path.subfeatures);
      prepared.emplace_back();
      gemv_prepare(dtype, x.data(), 3, 512, prepared.back());
    }
    set_isa_cap(Isa::Avx512);
    for (size_t p = 1; p < prepared.size(); ++p) {
      EXPECT_TRUE(prepared[p].q == prepared[0].q) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].scale == prepared[0].scale) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].bias == prepared[0].bias) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].min_term == prepared[0].min_term) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].q_grouped == prepared[0].q_grouped) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].scale_grouped == prepared[0].scale_grouped) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].bias_grouped == prepared[0].bias_grouped) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].q_panel == prepared[0].q_panel) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].scale_panel == prepared[0].scale_panel) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].bias_panel == prepared[0].bias_panel) << dtype_name(dtype);
      EXPECT_TRUE(prepared[p].min_panel == prepared[0].min_panel) << dtype_name(dtype);
    }
  }
}

// Batched decode (more tokens than one kernel call takes, over more rows than one cache block):
// the row-blocked passes give each token exactly what it gets alone.
TEST(Gemv, ManyTokensOverManyRowBlocksEqualOneTokenAtATime) {
  std::mt19937 rng(5);
  for (DType dtype :
       {DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q8_0_R4, DType::Q4_0_R4, DType::Q4_K_R4}) {
    const int64_t k = 2048, rows = 700, n_tokens = 21;
    const Weights w = make_weights(dtype, rows, k, rng);
    const std::vector<float> x = make_activations(n_tokens, k, rng);
    GemvActivations act;
    gemv_prepare(dtype, x.data(), n_tokens, k, act);
    std::vector<float> y(n_tokens * rows);
    gemv_rows(w.tensor, act, 5, rows, y.data(), rows);
    for (int64_t t = 0; t < n_tokens; ++t) {
      GemvActivations one;
      gemv_prepare(dtype, x.data() + t * k, 1, k, one);
      std::vector<float> y1(rows);
      gemv_rows(w.tensor, one, 5, rows, y1.data(), rows);
      for (int64_t r = 5; r < rows; ++r) ASSERT_EQ(y[t * rows + r], y1[r]) << dtype_name(dtype) << " t=" << t << " r=" << r;
    }
  }
}

}  // namespace
}  // namespace anvil
