// SmoothQuant: the factor formula and its clamps, the W8A8 error with and without smoothing on
// activations with outlier channels, and a smoothed checkpoint computing the same float function.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "quant/calibration.h"
#include "quant/int8_w8a8.h"
#include "quant/smoothquant.h"

namespace anvil {
namespace {

TEST(SmoothQuant, FactorsFollowTheFormulaAndItsClamps) {
  const std::vector<float> act = {4.0f, 0.0f, 1e-12f, 9.0f, 1.0f};
  const std::vector<float> weight = {0.25f, 0.3f, 1.0f, 0.0f, 1e30f};
  const std::vector<float> s = smoothing_factors(act, weight, 0.5);
  EXPECT_FLOAT_EQ(s[0], 4.0f);                     // sqrt(4) / sqrt(0.25)
  EXPECT_EQ(s[1], 1.0f);                           // never active: left alone
  EXPECT_FLOAT_EQ(s[2], 1e-5f);                    // clamped from below
  EXPECT_FLOAT_EQ(s[3], 3.0f / std::sqrt(1e-5f));  // weight range clamped to 1e-5
  EXPECT_FLOAT_EQ(s[4], 1e-5f);                    // 1 / 1e15 clamped
  const std::vector<float> all_to_weights = smoothing_factors({8.0f}, {2.0f}, 1.0);
  EXPECT_FLOAT_EQ(all_to_weights[0], 8.0f);
  const std::vector<float> none = smoothing_factors({8.0f}, {2.0f}, 0.0);
  EXPECT_FLOAT_EQ(none[0], 0.5f);
}

// y = x W^T through the W8A8 path: int8 weights per row, int8 activations per token, int32 dots.
std::vector<double> w8a8_matmul(const std::vector<float>& x, const std::vector<float>& w, int64_t n, int64_t rows,
                                int64_t cols, ThreadPool& pool) {
  Result<QuantizedMatrix> q = quantize_int8_per_channel("w", w.data(), rows, cols, pool);
  EXPECT_TRUE(q.is_ok());
  std::vector<int8_t> xq(static_cast<size_t>(n * cols));
  std::vector<float> xs(static_cast<size_t>(n));
  quantize_int8_per_token(x.data(), n, cols, xq.data(), xs.data());
  const auto* wq = reinterpret_cast<const int8_t*>(q->codes.data());
  std::vector<double> y(static_cast<size_t>(n * rows));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      int32_t dot = 0;
      for (int64_t c = 0; c < cols; ++c) dot += int32_t{xq[t * cols + c]} * wq[r * cols + c];
      y[t * rows + r] = static_cast<double>(dot) * xs[t] * q->scale[r];
    }
  return y;
}

TEST(SmoothQuant, SmoothingReducesTheW8A8ErrorOfOutlierChannels) {
  ThreadPool pool(2);
  const int64_t n = 256, rows = 96, cols = 128;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols)), w(static_cast<size_t>(rows * cols));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c) x[t * cols + c] = normal(rng) * (c == 3 || c == 50 || c == 97 ? 60.0f : 1.0f);
  for (float& v : w) v = 0.02f * normal(rng);
  std::vector<double> reference(static_cast<size_t>(n * rows));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) reference[t * rows + r] += static_cast<double>(x[t * cols + c]) * w[r * cols + c];

  ChannelAbsMax act(cols);
  act.add(x.data(), n);
  std::vector<float> weight_absmax(static_cast<size_t>(cols), 0.0f);
  fold_column_absmax(w.data(), rows, cols, weight_absmax);
  const std::vector<float> s = smoothing_factors(act.values(), weight_absmax, 0.5);
  std::vector<float> xs = x, ws = w;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c) xs[t * cols + c] /= s[c];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ws[r * cols + c] *= s[c];

  auto relative = [&](const std::vector<double>& y) {
    double e = 0, ref = 0;
    for (size_t i = 0; i < y.size(); ++i) e += (y[i] - reference[i]) * (y[i] - reference[i]), ref += reference[i] * reference[i];
    return std::sqrt(e / ref);
  };
  const double before = relative(w8a8_matmul(x, w, n, rows, cols, pool));
  const double after = relative(w8a8_matmul(xs, ws, n, rows, cols, pool));
  std::printf("  W8A8 relative output error with outlier channels: plain %.4e, smoothed (alpha 0.5) %.4e\n", before,
              after);
  EXPECT_LT(after, 0.5 * before);
}

std::vector<float> all_logits(std::shared_ptr<const Checkpoint> checkpoint, const std::vector<int32_t>& tokens) {
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(std::move(checkpoint));
  EXPECT_TRUE(model.is_ok()) << model.status().message();
  if (!model) return {};
  ThreadPool pool(1);
  SequenceKvCache cache = (*model)->make_cache(static_cast<int64_t>(tokens.size()));
  std::vector<float> logits(tokens.size() * (*model)->config().vocab_size);
  EXPECT_TRUE((*model)->forward(tokens, cache, pool, logits.data(), true).is_ok());
  return logits;
}

CalibrationSet random_calibration(int64_t vocab, int64_t samples, int64_t seq_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> stream(static_cast<size_t>(samples * seq_len));
  for (int32_t& t : stream) t = id(rng);
  Result<CalibrationSet> set = make_calibration_set(stream, {samples, seq_len}, 1, vocab, "random");
  EXPECT_TRUE(set.is_ok()) << set.status().message();
  return std::move(set).value();
}

TEST(SmoothQuant, FoldedCheckpointComputesTheSameFloatFunction) {
  for (const char* spec : {"dummy:tiny-llama", "dummy:tiny-llama:bf16"}) {
    SCOPED_TRACE(spec);
    Result<Checkpoint> loaded = load_checkpoint(spec);
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
    auto original = std::make_shared<Checkpoint>(std::move(loaded).value());
    auto smoothed = std::make_shared<Checkpoint>(*original);
    ThreadPool pool(2);
    const CalibrationSet calibration = random_calibration(original->config.vocab_size, 4, 32, 5);
    Result<std::vector<SmoothingReport>> reports = smooth_checkpoint(*smoothed, calibration, 0.5, pool);
    ASSERT_TRUE(reports.is_ok()) << reports.status().message();
    ASSERT_EQ(static_cast<int64_t>(reports->size()), 2 * original->config.n_layers);
    EXPECT_EQ((*reports)[0].norm, "blk.0.attn_norm.weight");
    EXPECT_EQ((*reports)[1].norm, "blk.0.ffn_norm.weight");
    for (const SmoothingReport& r : *reports) {
      EXPECT_GT(r.factor_max, r.factor_min) << r.norm;  // the factors are not all the same
      EXPECT_LT(r.activation_absmax_after, r.activation_absmax_before) << r.norm;
    }
    // The smoothed tensors changed (and are F32); attn_output and ffn_down are untouched.
    for (const char* name : {"blk.0.attn_q.weight", "blk.1.ffn_up.weight", "blk.0.attn_norm.weight"}) {
      EXPECT_EQ(smoothed->tensors.at(name).dtype, DType::F32) << name;
      EXPECT_NE(smoothed->tensors.at(name).data, original->tensors.at(name).data) << name;
    }
    for (const char* name : {"blk.0.attn_output.weight", "blk.1.ffn_down.weight"}) {
      EXPECT_EQ(smoothed->tensors.at(name).data, original->tensors.at(name).data) << name;
      EXPECT_EQ(smoothed->tensors.at(name).dtype, original->tensors.at(name).dtype) << name;
    }
    // 12 tokens: the GEMV path, where bf16 weights meet f32 activations exactly as their f32 copies do.
    const std::vector<int32_t> prompt = {1, 70, 80, 90, 100, 7, 300, 12, 44, 45, 46, 47};
    const std::vector<float> a = all_logits(original, prompt), b = all_logits(smoothed, prompt);
    ASSERT_EQ(a.size(), b.size());
    float scale = 0, worst = 0;
    for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(a[i]));
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    EXPECT_LT(worst / scale, 1e-4) << "max |logit difference| " << worst << " of max |logit| " << scale;
  }
}

TEST(SmoothQuant, RejectsAlphaOutsideTheUnitInterval) {
  Result<Checkpoint> ckpt = load_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(ckpt.is_ok());
  ThreadPool pool(1);
  const CalibrationSet calibration = random_calibration(ckpt->config.vocab_size, 1, 8, 1);
  Result<std::vector<SmoothingReport>> r = smooth_checkpoint(*ckpt, calibration, 1.5, pool);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("alpha 1.5 is outside [0, 1]"), std::string::npos);
}

}  // namespace
}  // namespace anvil
