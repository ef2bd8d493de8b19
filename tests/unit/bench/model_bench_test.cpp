// run_model_bench returns one timing per repetition and the decode weight traffic.
#include <gtest/gtest.h>

#include "bench/model_bench.h"
#include "model/presets.h"

namespace anvil {
namespace {

TEST(ModelBench, MeasuresPromptAndGeneration) {
  auto checkpoint = create_dummy_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(checkpoint);
  auto model = DecoderModel::create(std::make_shared<const Checkpoint>(std::move(checkpoint).value()));
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  ModelBenchOptions options;
  options.prompt_tokens = 16;
  options.generate_tokens = 4;
  options.repetitions = 2;
  auto result = run_model_bench(**model, pool, options);
  ASSERT_TRUE(result) << result.status().message();
  EXPECT_EQ(result->prompt.seconds.size(), 2u);
  EXPECT_EQ(result->generate.seconds.size(), 2u);
  EXPECT_GT(result->prompt.mean_tokens_per_second(), 0.0);
  EXPECT_GT(result->generate.mean_tokens_per_second(), 0.0);

  // tiny-llama is untied: every matrix and norm, plus one embedding row (F32).
  const ModelConfig& c = (*model)->config();
  const uint64_t matrices = static_cast<uint64_t>(c.matmul_parameter_count()) * 4;
  const uint64_t norms = static_cast<uint64_t>((2 * c.n_layers + 1) * c.dim) * 4;
  EXPECT_EQ(result->weight_bytes_per_token, matrices + norms + c.dim * 4);
}

TEST(ModelBench, RejectsMoreTokensThanTheContext) {
  auto checkpoint = create_dummy_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(checkpoint);
  auto model = DecoderModel::create(std::make_shared<const Checkpoint>(std::move(checkpoint).value()));
  ASSERT_TRUE(model);
  ThreadPool pool(1);
  ModelBenchOptions options;
  options.prompt_tokens = 100000;
  EXPECT_FALSE(run_model_bench(**model, pool, options));
}

}  // namespace
}  // namespace anvil
