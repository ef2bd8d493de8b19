// Throughput benchmark on the tiny preset: token accounting, scenarios, datasets, length checks.
#include "bench/throughput_bench.h"

#include <gtest/gtest.h>

#include <fstream>

#include "model/presets.h"
#include "test_paths.h"

namespace anvil {
namespace {

struct TinySetup {
  std::unique_ptr<DecoderModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  ThreadPool pool{2};
  std::unique_ptr<Engine> engine;
};

std::unique_ptr<TinySetup> tiny_setup() {
  auto t = std::make_unique<TinySetup>();
  Result<Checkpoint> ckpt = create_dummy_checkpoint("dummy:tiny-llama");
  EXPECT_TRUE(ckpt);
  auto shared = std::make_shared<const Checkpoint>(std::move(ckpt).value());
  t->model = std::move(DecoderModel::create(shared).value());
  t->tokenizer = std::move(Tokenizer::create(shared->vocab).value());
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  o.max_num_seqs = 4;  // fewer than the prompts: later requests wait for a slot
  t->engine = std::move(Engine::create(*t->model, t->tokenizer.get(), t->pool, o).value());
  return t;
}

TEST(ThroughputBench, CountsEveryTokenOfEveryRequest) {
  auto t = tiny_setup();
  ThroughputBenchOptions o;
  o.name = "tiny";
  o.input_len = 8;
  o.output_len = 5;
  o.num_prompts = 6;
  Result<ThroughputResult> r = run_throughput_bench(*t->engine, o);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->name, "tiny");
  EXPECT_EQ(r->completed, 6);
  EXPECT_EQ(r->prompt_tokens, 48);
  EXPECT_EQ(r->output_tokens, 30);
  EXPECT_DOUBLE_EQ(r->input_len, 8.0);
  EXPECT_GT(r->elapsed_s, 0.0);
  EXPECT_NEAR(r->requests_per_s, 6 / r->elapsed_s, 1e-9);
  EXPECT_NEAR(r->total_tok_s, 78 / r->elapsed_s, 1e-9);
  EXPECT_NEAR(r->output_tok_s, 30 / r->elapsed_s, 1e-9);
  EXPECT_GT(r->steps, 0);
  EXPECT_FALSE(r->interrupted);
  EXPECT_FALSE(t->engine->has_work());
}

TEST(ThroughputBench, Scenarios) {
  ASSERT_EQ(throughput_scenarios().size(), 4u);
  Result<ThroughputScenario> chat = find_throughput_scenario("chat");
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->input_len, 128);
  EXPECT_EQ(chat->output_len, 128);
  EXPECT_EQ(find_throughput_scenario("summarization-generation")->output_len, 2048);
  Result<ThroughputScenario> bad = find_throughput_scenario("poetry");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("generation-heavy (128/2048)"), std::string::npos);
}

TEST(ThroughputBench, RejectsRequestsOverTheContext) {
  auto t = tiny_setup();
  ThroughputBenchOptions o;
  o.name = "summarization";
  o.input_len = 2048;
  o.output_len = 128;
  Result<ThroughputResult> r = run_throughput_bench(*t->engine, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("2176 tokens per request exceed the model's context length of 256"),
            std::string::npos)
      << r.status().message();
}

TEST(ThroughputBench, DatasetPromptsAreTokenizedLines) {
  auto t = tiny_setup();
  const std::string dir = testing::scratch_dir("throughput_bench_test");
  const std::string path = dir + "/prompts.txt";
  std::ofstream(path) << "Once upon a time\n\n   \nThe cat sat on the mat\r\n";
  Result<std::vector<std::vector<int32_t>>> prompts = read_prompt_dataset(path, t->tokenizer.get());
  ASSERT_TRUE(prompts) << prompts.status().message();
  ASSERT_EQ(prompts->size(), 2u);
  EXPECT_EQ((*prompts)[0], *t->tokenizer->encode("Once upon a time", true));

  ThroughputBenchOptions o;
  o.name = "dataset";
  o.output_len = 3;
  o.num_prompts = 5;  // wraps around the two lines
  o.prompts = *prompts;
  Result<ThroughputResult> r = run_throughput_bench(*t->engine, o);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->completed, 5);
  EXPECT_EQ(r->output_tokens, 15);

  std::ofstream(dir + "/empty.txt") << "\n\n";
  EXPECT_FALSE(read_prompt_dataset(dir + "/empty.txt", t->tokenizer.get()));
  EXPECT_FALSE(read_prompt_dataset(dir + "/missing.txt", t->tokenizer.get()));
  Result<std::vector<std::vector<int32_t>>> no_tokenizer = read_prompt_dataset(path, nullptr);
  ASSERT_FALSE(no_tokenizer);
  EXPECT_NE(no_tokenizer.status().message().find("tokenizer"), std::string::npos);
}

TEST(ThroughputBench, RandomPromptsAreReproducible) {
  const auto a = random_prompts(3, 10, 512, 7), b = random_prompts(3, 10, 512, 7), c = random_prompts(3, 10, 512, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const auto& p : a) {
    ASSERT_EQ(p.size(), 10u);
    for (int32_t id : p) EXPECT_TRUE(id >= 0 && id < 512);
  }
}

}  // namespace
}  // namespace anvil
