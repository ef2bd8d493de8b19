// run_model_bench returns one timing per repetition and the decode weight traffic.
#include <gtest/gtest.h>

#include <memory>

#include "bench/model_bench.h"
#include "model/presets.h"

namespace anvil {
namespace {

std::unique_ptr<DecoderModel> tiny_llama() {
  auto checkpoint = create_dummy_checkpoint("dummy:tiny-llama");
  if (!checkpoint) return nullptr;
  auto model = DecoderModel::create(std::make_shared<const Checkpoint>(std::move(checkpoint).value()));
  return model ? std::move(model).value() : nullptr;
}

TEST(ModelBench, MeasuresPromptAndGeneration) {
  const std::unique_ptr<DecoderModel> model = tiny_llama();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  ModelBenchOptions options;
  options.prompt_tokens = 16;
  options.generate_tokens = 4;
  options.repetitions = 2;
  auto result = run_model_bench(*model, pool, options);
  ASSERT_TRUE(result) << result.status().message();
  EXPECT_EQ(result->prompt.seconds.size(), 2u);
  EXPECT_EQ(result->generate.seconds.size(), 2u);
  EXPECT_GT(result->prompt.mean_tokens_per_second(), 0.0);
  EXPECT_GT(result->generate.mean_tokens_per_second(), 0.0);

  // tiny-llama is untied: every matrix and norm, plus one embedding row (F32).
  const ModelConfig& c = model->config();
  const uint64_t matrices = static_cast<uint64_t>(c.matmul_parameter_count()) * 4;
  const uint64_t norms = static_cast<uint64_t>((2 * c.n_layers + 1) * c.dim) * 4;
  EXPECT_EQ(result->weight_bytes_per_token, matrices + norms + c.dim * 4);
}

// llama-bench's -d: the tests run after `depth` cached tokens, on every KV dtype the engine keeps.
TEST(ModelBench, MeasuresAtADepthOnEveryKvDtype) {
  const std::unique_ptr<DecoderModel> model = tiny_llama();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  for (DType kv : {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I8}) {
    ModelBenchOptions options;
    options.prompt_tokens = 8;
    options.generate_tokens = 3;
    options.depth = 200;  // 200 + 8 of the preset's 256 positions
    options.repetitions = 1;
    options.kv_dtype = kv;
    auto result = run_model_bench(*model, pool, options);
    ASSERT_TRUE(result) << dtype_name(kv) << ": " << result.status().message();
    EXPECT_EQ(result->prompt.seconds.size(), 1u);
    EXPECT_EQ(result->generate.seconds.size(), 1u);
  }
  ModelBenchOptions too_deep;
  too_deep.prompt_tokens = 64;
  too_deep.depth = 200;  // 264 > 256
  const auto rejected = run_model_bench(*model, pool, too_deep);
  ASSERT_FALSE(rejected);
  EXPECT_NE(rejected.status().message().find("depth 200 included"), std::string::npos) << rejected.status().message();
}

TEST(ModelBench, RejectsMoreTokensThanTheContext) {
  const std::unique_ptr<DecoderModel> model = tiny_llama();
  ASSERT_TRUE(model);
  ThreadPool pool(1);
  ModelBenchOptions options;
  options.prompt_tokens = 100000;
  EXPECT_FALSE(run_model_bench(*model, pool, options));
}

}  // namespace
}  // namespace anvil
