// Presets: real shapes, deterministic random weights, finite non-uniform logits, and clear
// errors for unknown presets and plans that do not fit in memory.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/decoder_model.h"
#include "model/presets.h"

namespace anvil {
namespace {

TEST(Presets, RealShapesAndParameterCounts) {
  // Published parameter counts (billions), within 1%.
  const std::vector<std::pair<const char*, double>> expected = {
      {"llama-2-7b", 6.74}, {"llama-2-13b", 13.02}, {"llama-2-70b", 68.98}, {"llama-3.1-8b", 8.03},
      {"llama-3.1-70b", 70.55}, {"llama-3.1-405b", 405.85}, {"llama-3.2-1b", 1.236}, {"tinyllama-1.1b", 1.10},
      {"mistral-7b", 7.24}, {"qwen2-0.5b", 0.494}};
  for (const auto& [name, billions] : expected) {
    const ModelPreset* preset = find_model_preset(name);
    ASSERT_NE(preset, nullptr) << name;
    EXPECT_NEAR(preset->config.parameter_count() / 1e9, billions, billions * 0.01) << name;
  }
}

TEST(Presets, DummyWeightsAreDeterministicAndLogitsFiniteAndPeaked) {
  for (const char* spec : {"dummy:tiny-llama", "dummy:tiny-qwen2", "dummy:tiny-mistral", "dummy:tiny-llama3",
                           "dummy:tiny-llama:q8_0", "dummy:tiny-llama:bf16"}) {
    Result<Checkpoint> a = create_dummy_checkpoint(spec);
    Result<Checkpoint> b = create_dummy_checkpoint(spec);
    ASSERT_TRUE(a && b) << spec;
    const Tensor& wa = a->tensors.at("blk.1.ffn_up.weight");
    const Tensor& wb = b->tensors.at("blk.1.ffn_up.weight");
    ASSERT_EQ(wa.nbytes, wb.nbytes);
    EXPECT_EQ(std::memcmp(wa.data, wb.data, wa.nbytes), 0) << spec;

    auto model = DecoderModel::create(std::make_shared<const Checkpoint>(std::move(a).value()));
    ASSERT_TRUE(model) << model.status().message();
    ThreadPool pool(2);
    auto cache = (*model)->make_cache(8);
    std::vector<float> logits((*model)->config().vocab_size);
    const std::vector<int32_t> prompt = {1, 72, 101, 108};
    ASSERT_TRUE((*model)->forward(prompt, cache, pool, logits.data(), false));
    double max_logit = -1e30, sum_exp = 0;
    for (float v : logits) {
      ASSERT_TRUE(std::isfinite(v)) << spec;
      max_logit = std::max<double>(max_logit, v);
    }
    for (float v : logits) sum_exp += std::exp(v - max_logit);
    // Far from uniform: the top token has much more than 1/vocab of the mass.
    EXPECT_GT(1.0 / sum_exp, 20.0 / logits.size()) << spec;
  }
}

TEST(Presets, UnknownPresetAndDtypeAreClearErrors) {
  Result<Checkpoint> unknown = create_dummy_checkpoint("dummy:llama-9");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.status().message().find("unknown preset 'llama-9'"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("llama-3.2-1b"), std::string::npos);
  Result<Checkpoint> dtype = create_dummy_checkpoint("dummy:tiny-llama:q5_1");
  ASSERT_FALSE(dtype);
  EXPECT_NE(dtype.status().message().find("q5_1"), std::string::npos);
}

TEST(Presets, PlansThatDoNotFitInMemoryAreRefused) {
  Result<Checkpoint> huge = create_dummy_checkpoint("dummy:llama-3.1-405b");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.status().message().find("GiB"), std::string::npos) << huge.status().message();
  EXPECT_GT(dummy_weight_bytes(find_model_preset("llama-3.1-405b")->config, DType::BF16), 800e9);
}

TEST(Presets, SyntheticVocabularyIsSentencePieceWithByteTokens) {
  Vocab v = synthetic_byte_vocab(1000);
  EXPECT_EQ(v.size(), 1000);
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.tokens[3 + 0x41], "<0x41>");
  EXPECT_EQ(v.token_types[3], static_cast<int32_t>(TokenType::Byte));
}

}  // namespace
}  // namespace anvil
