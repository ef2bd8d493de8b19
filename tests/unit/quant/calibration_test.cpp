// Calibration sets (token files, windows, BOS, errors) and the layer-by-layer runner, which must
// reproduce the model's own forward pass and show the observer every linear input.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <vector>

#include "compute/cpu/matmul.h"
#include "compute/cpu/vector_ops.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "quant/calibration.h"
#include "quant/calibration_runner.h"
#include "test_paths.h"

namespace anvil {
namespace {

TEST(Calibration, ParsesTokenIdFiles) {
  Result<std::vector<int32_t>> ids = parse_token_ids("f", "1 2,3\n 40\t\n5,");
  ASSERT_TRUE(ids.is_ok()) << ids.status().message();
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 2, 3, 40, 5}));
  Result<std::vector<int32_t>> bad = parse_token_ids("ids.txt", "1 2 x3 4");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message(),
            "ids.txt: 'x3' (token 3) is not a token id; the file holds ids separated by spaces, newlines or commas");
  EXPECT_FALSE(parse_token_ids("f", "12a").is_ok());
  EXPECT_FALSE(parse_token_ids("f", "-1").is_ok());
}

TEST(Calibration, WindowsSpreadOverTheStreamWithBos) {
  std::vector<int32_t> stream(100);
  for (int i = 0; i < 100; ++i) stream[i] = i + 10;
  Result<CalibrationSet> set = make_calibration_set(stream, {3, 20}, 1, 512, "s");
  ASSERT_TRUE(set.is_ok()) << set.status().message();
  ASSERT_EQ(set->samples.size(), 3u);
  EXPECT_EQ(set->seq_len(), 20);
  EXPECT_EQ(set->tokens(), 60);
  EXPECT_EQ(set->stream_tokens, 100);
  // stride 100 / 3 = 33: windows at 0, 33, 66, their first token replaced by BOS.
  EXPECT_EQ(set->samples[1][0], 1);
  EXPECT_EQ(set->samples[1][1], 10 + 34);
  EXPECT_EQ(set->samples[2][19], 10 + 66 + 19);
  // Asking for more samples than the stream holds gives as many whole windows as fit.
  Result<CalibrationSet> fewer = make_calibration_set(stream, {128, 30}, -1, 512, "s");
  ASSERT_TRUE(fewer.is_ok());
  EXPECT_EQ(fewer->samples.size(), 3u);
  EXPECT_EQ(fewer->samples[0][0], 10);  // no BOS: kept as is

  Result<CalibrationSet> short_stream = make_calibration_set(stream, {4, 101}, 1, 512, "text.txt");
  ASSERT_FALSE(short_stream.is_ok());
  EXPECT_EQ(short_stream.status().message(),
            "text.txt: 100 tokens, fewer than one calibration sample of --calib-seq-len 101; give a longer text or "
            "a smaller --calib-seq-len");
  stream[7] = 600;
  Result<CalibrationSet> outside = make_calibration_set(stream, {1, 10}, 1, 512, "ids.txt");
  ASSERT_FALSE(outside.is_ok());
  EXPECT_EQ(outside.status().message(), "ids.txt: token 8 is id 600, outside the model's vocabulary of 512");
}

TEST(Calibration, LoadsTextAndTokenFiles) {
  Result<Checkpoint> ckpt = load_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(ckpt.is_ok());
  const std::string dir = testing::scratch_dir("calibration_files");
  {
    std::ofstream ids(dir + "/ids.txt");
    for (int i = 0; i < 64; ++i) ids << (i * 7) % 500 << (i % 10 == 9 ? "\n" : " ");
  }
  CalibrationSource tokens;
  tokens.tokens_file = dir + "/ids.txt";
  Result<CalibrationSet> set = load_calibration_set(tokens, {2, 32}, *ckpt);
  ASSERT_TRUE(set.is_ok()) << set.status().message();
  EXPECT_EQ(set->samples.size(), 2u);
  EXPECT_EQ(set->samples[1][5], (37 * 7) % 500);

  CalibrationSource text;
  text.text_file = testing::shared_data("text/tinyshakespeare.txt");
  set = load_calibration_set(text, {4, 64}, *ckpt);
  ASSERT_TRUE(set.is_ok()) << set.status().message();
  EXPECT_EQ(set->samples.size(), 4u);
  EXPECT_GT(set->stream_tokens, 100000);
  EXPECT_EQ(set->samples[3][0], ckpt->vocab.bos_id);

  // The default length is 512, or the model's context when shorter (tiny-llama: 256).
  set = load_calibration_set(text, {2, 0}, *ckpt);
  ASSERT_TRUE(set.is_ok()) << set.status().message();
  EXPECT_EQ(set->seq_len(), std::min<int64_t>(512, ckpt->config.context_length));
  Result<CalibrationSet> too_long = load_calibration_set(text, {4, 100000}, *ckpt);
  ASSERT_FALSE(too_long.is_ok());
  EXPECT_NE(too_long.status().message().find("--calib-seq-len 100000 exceeds the model's context length"),
            std::string::npos);
  CalibrationSource missing;
  missing.text_file = dir + "/nope.txt";
  Result<CalibrationSet> none = load_calibration_set(missing, {4, 64}, *ckpt);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("nope.txt: cannot open the calibration text"), std::string::npos);

  Result<Checkpoint> stories = load_checkpoint(testing::shared_data("models/stories260K.bin"));
  ASSERT_TRUE(stories.is_ok());
  Result<CalibrationSet> no_tokenizer = load_calibration_set(text, {4, 64}, *stories);
  ASSERT_FALSE(no_tokenizer.is_ok());
  EXPECT_NE(no_tokenizer.status().message().find("carries no tokenizer; give calibration token ids with --calib-tokens"),
            std::string::npos);
}

// Records the shape of every observed input.
class ShapeObserver final : public LinearInputObserver {
 public:
  void observe(int64_t layer, LinearInputSite site, const float* x, int64_t n_tokens, int64_t cols) override {
    calls.push_back({layer, static_cast<int>(site), n_tokens, cols});
    EXPECT_TRUE(std::isfinite(x[0]) && std::isfinite(x[n_tokens * cols - 1]));
  }
  struct Call {
    int64_t layer;
    int site;
    int64_t n_tokens, cols;
  };
  std::vector<Call> calls;
};

TEST(LayerByLayerRunner, ReproducesTheForwardPassAndObservesEveryLinearInput) {
  Result<Checkpoint> loaded = load_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(loaded.is_ok());
  auto ckpt = std::make_shared<const Checkpoint>(std::move(loaded).value());
  const ModelConfig& c = ckpt->config;
  std::vector<int32_t> stream;
  for (int i = 0; i < 40; ++i) stream.push_back((i * 31 + 5) % 512);
  Result<CalibrationSet> set = make_calibration_set(stream, {2, 20}, -1, c.vocab_size, "s");
  ASSERT_TRUE(set.is_ok());
  ThreadPool pool(2);
  Result<std::unique_ptr<LayerByLayerRunner>> runner = LayerByLayerRunner::create(*ckpt, *set, pool);
  ASSERT_TRUE(runner.is_ok()) << runner.status().message();
  ShapeObserver observer;
  for (int64_t l = 0; l < c.n_layers; ++l) (*runner)->run_layer(l, &observer, true);
  ASSERT_EQ(static_cast<int64_t>(observer.calls.size()), c.n_layers * 2 * 4);
  const int64_t expected_cols[] = {c.dim, c.n_heads * c.head_dim, c.dim, c.hidden_dim};
  for (size_t i = 0; i < observer.calls.size(); ++i) {
    const ShapeObserver::Call& call = observer.calls[i];
    EXPECT_EQ(call.layer, static_cast<int64_t>(i / 8));
    EXPECT_EQ(call.site, static_cast<int>(i % 4));
    EXPECT_EQ(call.n_tokens, 20);
    EXPECT_EQ(call.cols, expected_cols[call.site]);
  }
  // Final norm and output projection of the runner's last hidden states = the model's logits.
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(ckpt);
  ASSERT_TRUE(model.is_ok());
  std::vector<float> output_norm(static_cast<size_t>(c.dim));
  const Tensor& norm = ckpt->tensors.at("output_norm.weight");
  dtype_info(norm.dtype).to_float(norm.data, output_norm.data(), c.dim);
  const Tensor& output = ckpt->find("output.weight") ? *ckpt->find("output.weight") : ckpt->tensors.at("token_embd.weight");
  for (int64_t s = 0; s < 2; ++s) {
    SequenceKvCache cache = (*model)->make_cache(20);
    std::vector<float> expected(20 * c.vocab_size), got(20 * c.vocab_size), normed(20 * c.dim);
    ASSERT_TRUE((*model)->forward(set->samples[s], cache, pool, expected.data(), true).is_ok());
    const std::vector<float>& hidden = (*runner)->hidden(s);
    for (int64_t t = 0; t < 20; ++t)
      rms_norm(hidden.data() + t * c.dim, output_norm.data(), normed.data() + t * c.dim, c.dim, c.rms_norm_eps);
    matmul(pool, output, normed.data(), 20, got.data());
    float worst = 0, scale = 0;
    for (size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::fabs(got[i] - expected[i])), scale = std::max(scale, std::fabs(expected[i]));
    EXPECT_LT(worst, 1e-5f * scale) << "sample " << s;
  }
}

TEST(LayerByLayerRunner, RefusesSamplesLongerThanTheContext) {
  Result<Checkpoint> ckpt = load_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(ckpt.is_ok());
  CalibrationSet set;
  set.samples.push_back(std::vector<int32_t>(static_cast<size_t>(ckpt->config.context_length + 1), 3));
  ThreadPool pool(1);
  Result<std::unique_ptr<LayerByLayerRunner>> runner = LayerByLayerRunner::create(*ckpt, set, pool);
  ASSERT_FALSE(runner.is_ok());
  EXPECT_NE(runner.status().message().find("exceed the model's context length"), std::string::npos);
}

}  // namespace
}  // namespace anvil
