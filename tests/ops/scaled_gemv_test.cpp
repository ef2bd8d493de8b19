// The scaled weight types (F8_E4M3 W8A16, I8 W8A8, I4 W4A16) through every GEMV path of this CPU
// and every GEMM provider: W8A16/W4A16 against matmul_reference (dequantize, f32 dot) of x rounded
// to bf16 within f32 accumulation error; W8A8 bit-exactly against an independent integer reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/gemv.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/matmul.h"
#include "core/cpu_features.h"
#include "quant/fp8.h"
#include "quant/fp8_e4m3.h"
#include "quant/int4_rtn.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

struct Case {
  std::string label;
  std::shared_ptr<QuantizedMatrix> matrix;
  std::shared_ptr<std::vector<int32_t>> input_order;  // GPTQ act-order I4: stored column order
  Tensor tensor() const {
    Tensor t = matrix->view("w");
    if (input_order) t.quant.input_order = input_order->data();
    return t;
  }
};

std::vector<float> gaussian(int64_t n, std::mt19937& rng, float std = 1.0f) {
  std::normal_distribution<float> dist(0.0f, std);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Every scaled layout at an awkward shape: 13 rows, k with several groups of each size.
std::vector<Case> make_cases(int64_t rows, int64_t k, std::mt19937& rng) {
  ThreadPool pool(1);
  std::vector<float> w = gaussian(rows * k, rng, 0.05f);
  w[3] = 1.5f;  // an outlier
  std::vector<Case> cases;
  auto add = [&](std::string label, Result<QuantizedMatrix> q) {
    EXPECT_TRUE(q.is_ok()) << q.status().message();
    cases.push_back({std::move(label), std::make_shared<QuantizedMatrix>(std::move(q).value()), nullptr});
  };
  add("F8_E4M3 per-channel", quantize_fp8("w", w.data(), rows, k, Fp8Granularity::PerChannel, pool));
  add("F8_E4M3 per-tensor", quantize_fp8("w", w.data(), rows, k, Fp8Granularity::PerTensor, pool));
  add("I8", quantize_int8_per_channel("w", w.data(), rows, k, pool));
  for (int64_t group : {32, 64, 128})
    for (bool symmetric : {true, false})
      if (k % group == 0)
      add("I4 g" + std::to_string(group) + (symmetric ? " sym" : " asym"),
          quantize_int4_rtn("w", w.data(), rows, k, {group, symmetric}, pool));
  return cases;
}

// A GPTQ act-order I4 weight: w's columns stored in a shuffled order (QuantScales::input_order)
// and quantized in that order, so each group gathers columns from all over the row.
Case act_order_case(int64_t rows, int64_t k, int64_t group, bool symmetric, std::mt19937& rng) {
  ThreadPool pool(1);
  const std::vector<float> w = gaussian(rows * k, rng, 0.05f);
  auto order = std::make_shared<std::vector<int32_t>>(k);
  for (int64_t j = 0; j < k; ++j) (*order)[j] = static_cast<int32_t>(j);
  std::shuffle(order->begin(), order->end(), rng);
  std::vector<float> stored(rows * k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) stored[r * k + j] = w[r * k + (*order)[j]];
  Result<QuantizedMatrix> q = quantize_int4_rtn("w", stored.data(), rows, k, {group, symmetric}, pool);
  EXPECT_TRUE(q.is_ok()) << q.status().message();
  return {"I4 g" + std::to_string(group) + (symmetric ? " sym" : " asym") + " act-order",
          std::make_shared<QuantizedMatrix>(std::move(q).value()), order};
}

// An ISA level, and whether its optional sub-features (VNNI, BF16) are on.
struct IsaPath {
  Isa cap;
  bool subfeatures;
  std::string name() const { return std::string(isa_name(cap)) + (subfeatures ? "" : "-nosub"); }
  void apply() const { set_isa_cap(cap, subfeatures); }
};

// Every path this CPU can run, AVX-512 without VNNI (I8 then runs the AVX2 kernel) included.
std::vector<IsaPath> isa_caps() {
  std::vector<IsaPath> caps;
  for (IsaPath path : {IsaPath{Isa::Scalar, true}, IsaPath{Isa::Avx2, true}, IsaPath{Isa::Avx512, false},
                       IsaPath{Isa::Avx512, true}}) {
    path.apply();
    if (active_isa() == path.cap) caps.push_back(path);
  }
  set_isa_cap(Isa::Avx512);
  return caps;
}

std::vector<float> run_gemv(const Tensor& w, const std::vector<float>& x, int64_t n_tokens, int threads) {
  const int64_t rows = w.rows();
  GemvActivations act;
  gemv_prepare(w.dtype, x.data(), n_tokens, w.cols(), act);
  std::vector<float> y(n_tokens * rows, std::nanf(""));
  ThreadPool pool(threads);
  pool.run([&](int index, int count) {
    const int64_t chunk = (rows + count - 1) / count;
    const int64_t begin = std::min(rows, index * chunk), end = std::min(rows, begin + chunk);
    gemv_rows(w, act, begin, end, y.data(), rows);
  });
  return y;
}

// W8A8 from first principles: per-token amax/127 codes (round half to even), int64 dot of the
// int8 codes, then the kernels' float scaling float(dot) * (w_scale * x_scale).
std::vector<float> w8a8_integer_reference(const QuantizedMatrix& w, const std::vector<float>& x, int64_t n_tokens) {
  const int64_t k = w.cols;
  std::vector<float> y(n_tokens * w.rows);
  for (int64_t t = 0; t < n_tokens; ++t) {
    float amax = 0;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[t * k + i]));
    const float x_scale = amax / 127.0f;
    const float inv = x_scale != 0 ? 1.0f / x_scale : 0.0f;
    std::vector<int64_t> q(k);
    for (int64_t i = 0; i < k; ++i) q[i] = std::clamp<int64_t>(std::llrint(x[t * k + i] * inv), -127, 127);
    for (int64_t r = 0; r < w.rows; ++r) {
      const auto* codes = reinterpret_cast<const int8_t*>(w.codes.data()) + r * k;
      int64_t dot = 0;
      for (int64_t i = 0; i < k; ++i) dot += codes[i] * q[i];
      y[t * w.rows + r] = static_cast<float>(dot) * (w.scale[r] * x_scale);
    }
  }
  return y;
}

TEST(ScaledGemv, W8A16AndW4A16MatchTheReferenceOnEveryPath) {
  std::mt19937 rng(21);
  ThreadPool ref_pool(1);
  // 352 and 320: I4 blocks of 128 plus a tail of 32- or 64-groups; 200 and 72: F8_E4M3 tails.
  for (int64_t k : {128, 384, 352, 320, 200, 72}) {
    for (const Case& c : make_cases(13, k, rng)) {
      const Tensor w = c.tensor();
      if (w.dtype == DType::I8) continue;
      for (int64_t n_tokens : {1, 2, 3, 8, 11}) {
        const std::vector<float> x = gaussian(n_tokens * k, rng);
        // The GEMV kernels take W8A16 / W4A16 activations in bf16: the reference gets them so.
        std::vector<float> x_bf16(x);
        for (float& v : x_bf16) v = bf16_to_float(float_to_bf16(v));
        std::vector<float> ref(n_tokens * w.rows());
        matmul_reference(ref_pool, w, x_bf16.data(), n_tokens, ref.data());
        // |sum| of the products bounds f32 accumulation error in any order.
        std::vector<float> row(k);
        std::vector<double> abs_products(n_tokens * w.rows());
        for (int64_t r = 0; r < w.rows(); ++r) {
          weight_row_to_f32(w, r, row.data());
          for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t i = 0; i < k; ++i) abs_products[t * w.rows() + r] += std::fabs(row[i] * x[t * k + i]);
        }
        for (const IsaPath& path : isa_caps()) {
          path.apply();
          for (int threads : {1, 2}) {
            const std::vector<float> y = run_gemv(w, x, n_tokens, threads);
            for (size_t i = 0; i < y.size(); ++i)
              ASSERT_LE(std::fabs(y[i] - ref[i]), 2e-6 * abs_products[i] + 1e-30)
                  << c.label << " k=" << k << " tokens=" << n_tokens << " isa=" << path.name() << " out " << i;
          }
        }
        set_isa_cap(Isa::Avx512);
      }
    }
  }
}

TEST(ScaledGemv, W8A8EqualsTheIntegerReferenceExactly) {
  std::mt19937 rng(22);
  ThreadPool ref_pool(1);
  for (int64_t k : {96, 200, 512}) {
    for (const Case& c : make_cases(13, k, rng)) {
      if (c.matrix->dtype != DType::I8) continue;
      const Tensor w = c.tensor();
      for (int64_t n_tokens : {1, 3, 8, 11}) {
        std::vector<float> x = gaussian(n_tokens * k, rng);
        x[k / 2] *= 20.0f;  // an activation outlier coarsens token 0's step
        const std::vector<float> exact = w8a8_integer_reference(*c.matrix, x, n_tokens);
        for (const IsaPath& path : isa_caps()) {
          path.apply();
          for (int threads : {1, 2})
            ASSERT_EQ(run_gemv(w, x, n_tokens, threads), exact)
                << "k=" << k << " tokens=" << n_tokens << " isa=" << path.name() << " threads=" << threads;
        }
        set_isa_cap(Isa::Avx512);
        // Against the float reference: each activation is off by at most half its token's step.
        std::vector<float> ref(n_tokens * w.rows()), row(k);
        matmul_reference(ref_pool, w, x.data(), n_tokens, ref.data());
        for (int64_t t = 0; t < n_tokens; ++t) {
          float amax = 0;
          for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[t * k + i]));
          for (int64_t r = 0; r < w.rows(); ++r) {
            weight_row_to_f32(w, r, row.data());
            double abs_w = 0, abs_products = 0;
            for (int64_t i = 0; i < k; ++i) abs_w += std::fabs(row[i]), abs_products += std::fabs(row[i] * x[t * k + i]);
            const double bound = abs_w * amax / 127.0 / 2.0 * 1.001 + 1e-5 * abs_products;
            EXPECT_LE(std::fabs(exact[t * w.rows() + r] - ref[t * w.rows() + r]), bound) << "row " << r << " token " << t;
          }
        }
      }
    }
  }
}

// Batched decode: more tokens than one kernel call over several row blocks gives each token
// exactly what it gets alone (per-token activation scales follow their token).
TEST(ScaledGemv, ManyTokensEqualOneTokenAtATime) {
  std::mt19937 rng(23);
  const int64_t k = 256, rows = 40, n_tokens = 19;
  for (const Case& c : make_cases(rows, k, rng)) {
    const Tensor w = c.tensor();
    const std::vector<float> x = gaussian(n_tokens * k, rng);
    const std::vector<float> all = run_gemv(w, x, n_tokens, 2);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const std::vector<float> one(x.begin() + t * k, x.begin() + (t + 1) * k);
      const std::vector<float> y1 = run_gemv(w, one, 1, 1);
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(all[t * rows + r], y1[r]) << c.label << " t=" << t << " r=" << r;
    }
  }
}

// (The reference dequantizes rows in input order, weight_row_to_f32, and multiplies x as given:
// act-order weights' gathering of x is checked on every provider and matmul.)
TEST(ScaledGemv, EveryProviderAndMatmulMatchTheDequantizedReference) {
  std::mt19937 rng(24);
  ThreadPool pool1(1), pool2(2);
  const int64_t k = 256;
  std::vector<Case> cases = make_cases(37, k, rng);
  cases.push_back(act_order_case(37, k, 64, false, rng));
  cases.push_back(act_order_case(37, k, 128, true, rng));
  for (const Case& c : cases) {
    const Tensor w = c.tensor();
    double worst = 0;
    for (int64_t m : {1, 7, 20, 130}) {
      const std::vector<float> x = gaussian(m * k, rng);
      // In double, over x as given and over x rounded to bf16 (what W8A16 / W4A16 multiply).
      std::vector<float> x_bf16(x);
      for (float& v : x_bf16) v = bf16_to_float(float_to_bf16(v));
      std::vector<double> ref(m * w.rows()), ref_bf16(m * w.rows());
      std::vector<float> row(k);
      double max_ref = 0;
      for (int64_t r = 0; r < w.rows(); ++r) {
        weight_row_to_f32(w, r, row.data());
        for (int64_t t = 0; t < m; ++t) {
          double acc = 0, acc_bf16 = 0;
          for (int64_t i = 0; i < k; ++i) {
            acc += static_cast<double>(row[i]) * x[t * k + i];
            acc_bf16 += static_cast<double>(row[i]) * x_bf16[t * k + i];
          }
          ref[t * w.rows() + r] = acc;
          ref_bf16[t * w.rows() + r] = acc_bf16;
          max_ref = std::max(max_ref, std::fabs(acc));
        }
      }
      auto normalized_error = [&](const std::vector<float>& y, const std::vector<double>& against) {
        double e = 0;
        for (size_t i = 0; i < y.size(); ++i) e = std::max(e, std::fabs(y[i] - against[i]));
        return e / max_ref;
      };
      for (GemmProvider* provider : gemm_providers()) {
        if (!provider->supports(w.dtype, m, w.rows(), k)) continue;
        const GemmCompute compute = provider->compute(w.dtype);
        // Bf16Activations: exact products of the rounded x, so f32 accumulation error only.
        const bool exact = compute == GemmCompute::F32 || compute == GemmCompute::Bf16Activations;
        const std::vector<double>& against = compute == GemmCompute::Bf16Activations ? ref_bf16 : ref;
        const double bound = exact ? 1e-5 : 3e-2;
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<float> y(m * w.rows(), std::nanf(""));
          const Status status = provider->run(*pool, w, x.data(), m, y.data());
          ASSERT_TRUE(status.is_ok()) << status.message();
          const double err = normalized_error(y, against);
          EXPECT_LT(err, bound) << provider->name() << " " << c.label << " m=" << m;
          worst = std::max(worst, err);
        }
      }
      std::vector<float> y(m * w.rows());
      matmul(pool2, w, x.data(), m, y.data());
      EXPECT_LT(normalized_error(y, ref), 3e-2) << "matmul " << c.label << " m=" << m;
    }
    std::printf("[ scaled   ] %-20s worst provider normalized error %.2e\n", c.label.c_str(), worst);
  }
}

// Extreme codes: I8 -128 (loaders accept it) and +-127 against +-127 activations, exact on every
// path; long rows whose flipped-code lanes wrap int32 on the way (the dot itself fits).
TEST(ScaledGemv, W8A8ExtremeCodesAndLongRowsStayExact) {
  std::mt19937 rng(26);
  ThreadPool pool(1);
  for (int64_t k : {64, 4160, 130048}) {
    const int64_t rows = 17;
    std::vector<float> w = gaussian(rows * k, rng, 0.05f);
    Result<QuantizedMatrix> q = quantize_int8_per_channel("w", w.data(), rows, k, pool);
    ASSERT_TRUE(q.is_ok());
    QuantizedMatrix& m = q.value();
    auto* codes = reinterpret_cast<int8_t*>(m.codes.data());
    for (int64_t i = 0; i < k; ++i) {
      codes[0 * k + i] = -128;                   // row 0: every code -128
      codes[1 * k + i] = 127;                    // row 1: every code +127
      codes[2 * k + i] = i % 2 ? 127 : -128;     // row 2: alternating
    }
    std::vector<float> x(2 * k);
    for (int64_t i = 0; i < k; ++i) {
      x[i] = 1.0f;                    // token 0: every code +127
      x[k + i] = i % 3 ? -1.0f : 1.0f;  // token 1: mostly -127
    }
    const std::vector<float> exact = w8a8_integer_reference(m, x, 2);
    const Tensor t = m.view("w");
    for (const IsaPath& path : isa_caps()) {
      path.apply();
      EXPECT_EQ(run_gemv(t, x, 2, 2), exact) << "k=" << k << " isa=" << path.name();
    }
    set_isa_cap(Isa::Avx512);
  }
}

// The SIMD per-token quantizer reproduces the scalar one bit for bit: ties, NaN, infinity,
// zero tokens, denormals and lengths that are not a multiple of the vector width.
TEST(ScaledGemv, PerTokenQuantizerSimdEqualsScalar) {
  std::mt19937 rng(27);
  for (int64_t k : {1, 15, 16, 17, 100, 2048}) {
    const int64_t n_tokens = 6;
    std::vector<float> x = gaussian(n_tokens * k, rng, 3.0f);
    // token 1: exact ties after scaling (amax 127 -> scale 1: x.5 values round to even)
    for (int64_t i = 0; i < k; ++i) x[k + i] = static_cast<float>(i % 254) - 126.5f;
    x[k] = 127.0f;
    for (int64_t i = 0; i < k; ++i) x[2 * k + i] = 0.0f;  // token 2: all zero
    x[3 * k + k / 2] = std::nanf("");                     // token 3: a NaN (ignored by amax, code 0)
    x[4 * k] = std::numeric_limits<float>::infinity();    // token 4: infinity (scale inf)
    x[5 * k + k - 1] = 1e-41f;                             // token 5: a denormal
    std::vector<int8_t> simd(n_tokens * k), scalar(n_tokens * k);
    std::vector<float> simd_scale(n_tokens), scalar_scale(n_tokens);
    for (const IsaPath& path : isa_caps()) {
      path.apply();
      quantize_int8_per_token(x.data(), n_tokens, k, simd.data(), simd_scale.data());
      quantize_int8_per_token_scalar(x.data(), n_tokens, k, scalar.data(), scalar_scale.data());
      EXPECT_EQ(simd, scalar) << "k=" << k << " isa=" << path.name();
      for (int64_t t = 0; t < n_tokens; ++t)
        EXPECT_EQ(std::memcmp(&simd_scale[t], &scalar_scale[t], 4), 0) << "k=" << k << " token " << t;
    }
    set_isa_cap(Isa::Avx512);
  }
}

// F8_E4M3's NaN codes (S.1111.111) make their row NaN on every path, as the decode table does;
// every other code, subnormals and +-448 included, decodes exactly.
TEST(ScaledGemv, F8NanCodesGiveNanAndEveryOtherCodeIsExact) {
  const int64_t rows = 6, k = 256 + 32 + 8;  // the 64-code loop, a 32-block and a tail
  std::vector<uint8_t> codes(rows * k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i) codes[r * k + i] = static_cast<uint8_t>((r * 97 + i * 31) % 256);
  for (uint8_t& c : codes)
    if ((c & 0x7F) == 0x7F) c ^= 0x01;  // no NaN codes yet
  codes[1 * k + 5] = 0x7F;               // row 1: +NaN in the 64-code loop
  codes[3 * k + 256 + 7] = 0xFF;         // row 3: -NaN in the 32-block
  codes[4 * k + k - 1] = 0x7F;           // row 4: NaN in the tail
  std::vector<float> scale(rows, 0.5f);
  Tensor w{"w", DType::F8_E4M3, {rows, k}, reinterpret_cast<const std::byte*>(codes.data()), codes.size(), {}};
  w.quant = {scale.data(), nullptr, k};
  std::mt19937 rng(28);
  const std::vector<float> x = gaussian(2 * k, rng);
  for (const IsaPath& path : isa_caps()) {
    path.apply();
    const std::vector<float> y = run_gemv(w, x, 2, 1);
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        const float v = y[t * rows + r];
        if (r == 1 || r == 3 || r == 4) {
          EXPECT_TRUE(std::isnan(v)) << "row " << r << " isa=" << path.name();
        } else {
          double ref = 0, abs_sum = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double p = static_cast<double>(e4m3_to_float(codes[r * k + i])) *
                             bf16_to_float(float_to_bf16(x[t * k + i]));  // W8A16: bf16 activations
            ref += p;
            abs_sum += std::fabs(p);
          }
          EXPECT_LE(std::fabs(v - 0.5 * ref), 2e-6 * 0.5 * abs_sum) << "row " << r << " isa=" << path.name();
        }
      }
  }
  set_isa_cap(Isa::Avx512);
}

// Act-order weights in one shared-input call. q/k/v (and gate/up) of a GPTQ act-order layer share
// one column order (equal arrays at different addresses): decode sizes fuse them into one GEMV
// dispatch, prefill sizes gather x once and run each weight on it. A set that mixes orders (or a
// weight without one) runs each weight on its own. Every result equals its separate matmul()
// exactly, and matmul the reference over x in input order.
TEST(ScaledGemv, SharedInputWithActOrderWeightsEqualsSeparateCalls) {
  std::mt19937 rng(26);
  const int64_t k = 256;
  std::vector<Case> shared;
  for (int i = 0; i < 3; ++i) shared.push_back(act_order_case(16 * (i + 1) + 5, k, 32, i != 1, rng));
  for (int i = 1; i < 3; ++i) shared[i].input_order = std::make_shared<std::vector<int32_t>>(*shared[0].input_order);
  std::vector<Case> mixed = {shared[0], act_order_case(19, k, 64, true, rng), make_cases(13, k, rng).back()};
  ThreadPool ref_pool(1);
  for (const std::vector<Case>* cases : {&shared, &mixed}) {
    for (int64_t tokens : {1, 3, 20}) {  // 20: past kPrefillGemmMinTokens, the oneDNN GEMM
      for (int threads : {1, 2}) {
        SCOPED_TRACE(testing::Message() << (cases == &shared ? "one order" : "mixed orders") << " tokens=" << tokens
                                        << " threads=" << threads);
        ThreadPool pool(threads);
        const std::vector<float> x = gaussian(tokens * k, rng);
        std::vector<Tensor> weights;
        for (const Case& c : *cases) weights.push_back(c.tensor());
        std::vector<std::vector<float>> fused(weights.size()), separate(weights.size());
        std::vector<MatmulOutput> outputs;
        for (size_t i = 0; i < weights.size(); ++i) {
          fused[i].assign(tokens * weights[i].rows(), -1.0f);
          separate[i].assign(tokens * weights[i].rows(), -2.0f);
          outputs.push_back({&weights[i], fused[i].data()});
          matmul(pool, weights[i], x.data(), tokens, separate[i].data());
        }
        matmul_shared_input(pool, outputs, x.data(), tokens);
        for (size_t i = 0; i < weights.size(); ++i) {
          EXPECT_EQ(fused[i], separate[i]) << "w" << i;
          // Against dequantized rows in input order times x as given (bf16-level agreement).
          std::vector<float> row(k);
          for (int64_t r = 0; r < weights[i].rows(); ++r) {
            weight_row_to_f32(weights[i], r, row.data());
            for (int64_t t = 0; t < tokens; ++t) {
              double want = 0, scale = 0;
              for (int64_t j = 0; j < k; ++j) {
                want += static_cast<double>(row[j]) * x[t * k + j];
                scale += std::fabs(static_cast<double>(row[j]) * x[t * k + j]);
              }
              ASSERT_NEAR(separate[i][t * weights[i].rows() + r], want, 1e-2 * scale) << "w" << i << " row " << r;
            }
          }
        }
      }
    }
  }
}

TEST(ScaledGemv, ProvidersRejectInconsistentScalesAsStatus) {
  std::mt19937 rng(25);
  ThreadPool pool(1);
  const std::vector<Case> cases = make_cases(8, 128, rng);
  std::vector<float> x(128, 1.0f), y(8);
  for (const Case& c : cases) {
    Tensor w = c.tensor();
    w.quant.scale = nullptr;
    for (GemmProvider* provider : gemm_providers()) {
      const Status st = provider->run(pool, w, x.data(), 1, y.data());
      EXPECT_FALSE(st.is_ok()) << provider->name() << " " << c.label;
      EXPECT_NE(st.message().find("has no scales"), std::string::npos) << st.message();
    }
  }
}

}  // namespace
}  // namespace anvil
