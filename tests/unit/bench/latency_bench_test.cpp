// Latency benchmark on the tiny preset: shape of the results (not timings), option checks,
// interruption, and batch-size parsing.
#include "bench/latency_bench.h"

#include <gtest/gtest.h>

#include "model/presets.h"

namespace anvil {
namespace {

struct TinyEngine {
  std::unique_ptr<DecoderModel> model;
  ThreadPool pool{2};
  std::unique_ptr<Engine> engine;
};

std::unique_ptr<TinyEngine> tiny_engine(int64_t max_num_seqs = 8) {
  auto t = std::make_unique<TinyEngine>();
  Result<Checkpoint> ckpt = create_dummy_checkpoint("dummy:tiny-llama");
  EXPECT_TRUE(ckpt);
  auto shared = std::make_shared<const Checkpoint>(std::move(ckpt).value());
  t->model = std::move(DecoderModel::create(shared).value());
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  o.max_num_seqs = max_num_seqs;
  t->engine = std::move(Engine::create(*t->model, nullptr, t->pool, o).value());
  return t;
}

LatencyBenchOptions small_options() {
  LatencyBenchOptions o;
  o.input_len = 8;
  o.output_len = 4;
  o.batch_sizes = {1, 3};
  o.num_iters_warmup = 1;
  o.num_iters = 2;
  return o;
}

TEST(LatencyBench, OneResultPerBatchSizeWithEveryRequestTimed) {
  auto t = tiny_engine();
  LatencyBenchOptions o = small_options();
  uint64_t last_done = 0, last_total = 0;
  int batches_reported = 0;
  o.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  };
  o.on_batch_done = [&](const LatencyBatchResult&) { ++batches_reported; };
  Result<LatencyBenchResult> r = run_latency_bench(*t->engine, o);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_FALSE(r->interrupted);
  ASSERT_EQ(r->batches.size(), 2u);
  EXPECT_EQ(batches_reported, 2);
  EXPECT_EQ(last_total, (1u + 3u) * 4u * 3u);  // batch sizes x output tokens x (warm-up + timed)
  EXPECT_EQ(last_done, last_total);
  for (size_t i = 0; i < 2; ++i) {
    const LatencyBatchResult& b = r->batches[i];
    EXPECT_EQ(b.batch_size, o.batch_sizes[i]);
    ASSERT_EQ(b.latencies_s.size(), 2u);
    ASSERT_EQ(b.requests.size(), static_cast<size_t>(2 * b.batch_size));
    for (const RequestTiming& req : b.requests) {
      EXPECT_EQ(req.output_tokens, 4);
      EXPECT_EQ(req.prompt_tokens, 8);
      EXPECT_GT(req.ttft_s, 0.0);
      EXPECT_LE(req.ttft_s, req.e2e_s);
    }
    EXPECT_EQ(b.preemptions, 0);
    EXPECT_EQ(b.prefix_hit_rate, 0.0);  // fresh prompts every iteration
    const LatencySummary s = b.summary();
    EXPECT_GT(s.avg_latency_s, 0.0);
    EXPECT_LE(s.p50_latency_s, s.p99_latency_s);
    EXPECT_GT(s.output_tok_s, 0.0);
    EXPECT_GT(s.tpot_ms_mean, 0.0);
  }
  EXPECT_FALSE(t->engine->has_work());
}

TEST(LatencyBench, RejectsWhatCannotRun) {
  auto t = tiny_engine(4);
  LatencyBenchOptions o = small_options();
  o.input_len = 250;
  o.output_len = 10;  // tiny-llama's context is 256
  Result<LatencyBenchResult> r = run_latency_bench(*t->engine, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("context length of 256"), std::string::npos) << r.status().message();
  o = small_options();
  o.batch_sizes = {8};
  r = run_latency_bench(*t->engine, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("--max-num-seqs 4"), std::string::npos) << r.status().message();
  o = small_options();
  o.num_iters = 0;
  EXPECT_FALSE(run_latency_bench(*t->engine, o));
}

TEST(LatencyBench, InterruptionKeepsFinishedBatchSizesAndLeavesTheEngineIdle) {
  auto t = tiny_engine();
  std::atomic<bool> stop{false};
  LatencyBenchOptions o = small_options();
  o.interrupt = &stop;
  o.on_batch_done = [&](const LatencyBatchResult&) { stop = true; };  // Ctrl-C after the first batch size
  Result<LatencyBenchResult> r = run_latency_bench(*t->engine, o);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_TRUE(r->interrupted);
  ASSERT_EQ(r->batches.size(), 1u);
  EXPECT_EQ(r->batches[0].batch_size, 1);
  EXPECT_FALSE(t->engine->has_work());
}

TEST(LatencyBench, ParseBatchSizes) {
  EXPECT_EQ(*parse_batch_sizes("1,2,4,8"), (std::vector<int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(*parse_batch_sizes(" 16 , 3"), (std::vector<int64_t>{16, 3}));
  for (const char* bad : {"", "1,,2", "0", "-1", "2x", "1,1", "a"}) EXPECT_FALSE(parse_batch_sizes(bad)) << bad;
}

}  // namespace
}  // namespace anvil
