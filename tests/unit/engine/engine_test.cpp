// Engine: batch invariance (alone vs inside a mixed batch, chunked prefill on/off, prefix-cache
// hits, preemption), KV block accounting, end conditions and a cancellation stress test.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "engine/generate.h"
#include "model/presets.h"

namespace anvil {
namespace {

struct TinyModel {
  std::unique_ptr<DecoderModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

const TinyModel& tiny_model() {
  static TinyModel m = [] {
    TinyModel t;
    Result<Checkpoint> ckpt = create_dummy_checkpoint("dummy:tiny-llama");
    EXPECT_TRUE(ckpt);
    auto shared = std::make_shared<const Checkpoint>(std::move(ckpt).value());
    t.model = std::move(DecoderModel::create(shared).value());
    t.tokenizer = std::move(Tokenizer::create(shared->vocab).value());
    return t;
  }();
  return m;
}

RequestParams greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  RequestParams p;
  p.prompt = std::move(prompt);
  p.sampling.temperature = 0.0f;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

// Prompts of varied lengths; `shared` leading tokens common to all (prefix-cache hits).
std::vector<std::vector<int32_t>> make_prompts(int count, int shared, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> prefix;
  for (int i = 0; i < shared; ++i) prefix.push_back(3 + static_cast<int32_t>(rng() % 500));
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> p = prefix;
    const int len = 1 + static_cast<int>(rng() % 70);
    for (int j = 0; j < len; ++j) p.push_back(3 + static_cast<int32_t>(rng() % 500));
    prompts.push_back(p);
  }
  return prompts;
}

struct Collected {
  std::mutex mutex;
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, RequestOutput> last;
  std::map<RequestId, int> finals;
  OutputCallback callback() {
    return [this](const RequestOutput& out) {
      std::lock_guard<std::mutex> lock(mutex);
      auto& t = tokens[out.id];
      t.insert(t.end(), out.new_tokens.begin(), out.new_tokens.end());
      if (out.finished()) {
        ++finals[out.id];
        last[out.id] = out;
      }
    };
  }
};

std::vector<int32_t> run_alone(const std::vector<int32_t>& prompt, int64_t max_tokens, DType kv_dtype) {
  ThreadPool pool(2);
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  o.kv_dtype = kv_dtype;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  EXPECT_TRUE(engine) << engine.status().message();
  Collected c;
  auto id = (*engine)->submit(greedy(prompt, max_tokens), c.callback());
  EXPECT_TRUE(id);
  EXPECT_TRUE((*engine)->run_until_idle());
  return c.tokens[*id];
}

TEST(Engine, AloneMatchesTheSingleSequencePath) {
  const auto prompts = make_prompts(3, 0, 7);
  ThreadPool pool(2);
  for (const auto& prompt : prompts) {
    GenerationRequest req;
    req.prompt = prompt;
    req.max_new_tokens = 12;
    req.sampling.temperature = 0.0f;
    req.ignore_eos = true;
    auto reference = generate(*tiny_model().model, pool, nullptr, req, {});
    ASSERT_TRUE(reference);
    EXPECT_EQ(run_alone(prompt, 12, DType::F32), reference->tokens);
  }
}

struct BatchCase {
  const char* name;
  int64_t budget;
  bool chunked;
  bool prefix_caching;
  int64_t kv_bytes;
  DType kv_dtype;
  int shared_prefix;
};

class EngineBatchInvariance : public ::testing::TestWithParam<BatchCase> {};

TEST_P(EngineBatchInvariance, GreedyTokensEqualRunningAlone) {
  const BatchCase bc = GetParam();
  const auto prompts = make_prompts(32, bc.shared_prefix, 11);
  std::vector<int64_t> max_tokens;
  for (size_t i = 0; i < prompts.size(); ++i) max_tokens.push_back(4 + static_cast<int64_t>(i % 5) * 5);

  ThreadPool pool(2);
  EngineOptions o;
  o.max_num_batched_tokens = bc.budget;
  o.enable_chunked_prefill = bc.chunked;
  o.enable_prefix_caching = bc.prefix_caching;
  o.kv_cache_bytes = bc.kv_bytes;
  o.kv_dtype = bc.kv_dtype;
  o.max_num_seqs = 32;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  ASSERT_TRUE(engine) << engine.status().message();
  Collected c;
  std::vector<RequestId> ids;
  // Half submitted at once, the rest while the first ones decode: prefills and decodes mix.
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto id = (*engine)->submit(greedy(prompts[i], max_tokens[i]), c.callback());
    ASSERT_TRUE(id) << id.status().message();
    ids.push_back(*id);
    if (i % 2 == 1) {
      ASSERT_TRUE((*engine)->step());
    }
  }
  ASSERT_TRUE((*engine)->run_until_idle());
  const EngineMetrics m = (*engine)->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0) << "blocks leaked";
  EXPECT_EQ(m.running + m.waiting, 0);
  EXPECT_EQ(m.requests_finished, 32);
  if (bc.shared_prefix > 0 && bc.prefix_caching) {
    EXPECT_GT(m.prefix_hits, 0);
  }
  if (bc.kv_bytes < (1 << 20)) {
    EXPECT_GT(m.preemptions, 0) << "the small cache should force preemption";
  }
  std::printf("[%s] steps %lld, preemptions %lld, prefix hit rate %.2f\n", bc.name, (long long)m.steps,
              (long long)m.preemptions, m.prefix_hit_rate());

  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(c.finals[ids[i]], 1);
    EXPECT_EQ(c.last[ids[i]].finish, FinishReason::Length);
    EXPECT_EQ(c.tokens[ids[i]], run_alone(prompts[i], max_tokens[i], bc.kv_dtype)) << "request " << i;
  }
}

// tiny-llama: 2 layers x 2 KV heads x 16 dims: 512 bytes per token at f32, 256 at f16.
// fp8/int8 (160 bytes per token with their scales): a row's codes and scales depend on that row
// alone, so batching, prefix hits and preemption leave the greedy tokens as they are alone.
INSTANTIATE_TEST_SUITE_P(
    Cases, EngineBatchInvariance,
    ::testing::Values(BatchCase{"chunked", 64, true, true, 8 << 20, DType::F16, 0},
                      BatchCase{"whole-prompts", 512, false, true, 8 << 20, DType::F16, 0},
                      BatchCase{"prefix-hits", 96, true, true, 8 << 20, DType::F32, 40},
                      BatchCase{"no-prefix-cache", 96, true, false, 8 << 20, DType::BF16, 40},
                      BatchCase{"preemption", 128, true, true, 600 * 128, DType::F16, 20},
                      BatchCase{"fp8-prefix-hits", 96, true, true, 8 << 20, DType::F8_E4M3, 40},
                      BatchCase{"int8-whole-prompts", 512, false, true, 8 << 20, DType::I8, 0},
                      BatchCase{"int8-preemption", 128, true, true, 300 * 160, DType::I8, 20}),
    [](const auto& info) {
      std::string n = info.param.name;
      for (char& ch : n) if (ch == '-') ch = '_';
      return n;
    });

// Options that cannot work fail create() with a message (the half-built engine must not crash).
TEST(Engine, RejectsBadOptionsAtCreate) {
  ThreadPool pool(1);
  auto expect_error = [&](EngineOptions o, const std::string& needle) {
    auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
    ASSERT_FALSE(engine);
    EXPECT_NE(engine.status().message().find(needle), std::string::npos) << engine.status().message();
  };
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  o.scheduling_policy = "lifo";
  expect_error(o, "unknown scheduling policy");
  o = {};
  o.max_num_seqs = 0;
  expect_error(o, "max-num-seqs");
  o = {};
  o.kv_dtype = DType::Q4_0;
  expect_error(o, "KV cache dtype");
}

TEST(Engine, RejectsBadRequestsAtSubmit) {
  ThreadPool pool(1);
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  ASSERT_TRUE(engine);
  Collected c;
  auto expect_error = [&](RequestParams p, const std::string& needle) {
    auto id = (*engine)->submit(std::move(p), c.callback());
    ASSERT_FALSE(id);
    EXPECT_NE(id.status().message().find(needle), std::string::npos) << id.status().message();
  };
  expect_error(greedy({}, 4), "empty");
  expect_error(greedy({1, 9999}, 4), "out of range");
  expect_error(greedy({1, 2}, 0), "max_tokens");
  expect_error(greedy(std::vector<int32_t>(256, 5), 4), "context length of 256");
  RequestParams bad = greedy({1, 2}, 4);
  bad.sampling.temperature = -1.0f;
  expect_error(bad, "temperature");
  EXPECT_FALSE((*engine)->has_work());
}

TEST(Engine, StopsAtTheContextLengthAndAtStopStrings) {
  ThreadPool pool(2);
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  ASSERT_TRUE(engine);
  Collected c;
  auto id = (*engine)->submit(greedy(std::vector<int32_t>(250, 7), 100), c.callback());
  ASSERT_TRUE(id);
  ASSERT_TRUE((*engine)->run_until_idle());
  EXPECT_EQ(c.tokens[*id].size(), 6u);  // 250 + 6 = the context length
  EXPECT_EQ(c.last[*id].finish, FinishReason::Length);

  // A stop string taken from the text the model generates anyway: generation ends before it.
  std::string text;
  RequestParams p = greedy({1, 300, 301}, 24);
  auto full = (*engine)->submit(p, [&](const RequestOutput& out) { text += out.new_text; });
  ASSERT_TRUE(full);
  ASSERT_TRUE((*engine)->run_until_idle());
  ASSERT_GT(text.size(), 6u);
  const std::string stop = text.substr(text.size() / 2, 3);
  p.stop = {stop};
  std::string stopped_text;
  RequestOutput last;
  auto stopped = (*engine)->submit(p, [&](const RequestOutput& out) {
    stopped_text += out.new_text;
    if (out.finished()) last = out;
  });
  ASSERT_TRUE(stopped);
  ASSERT_TRUE((*engine)->run_until_idle());
  EXPECT_EQ(last.finish, FinishReason::Stop);
  EXPECT_EQ(last.stop_reason, stop);
  EXPECT_EQ(stopped_text, text.substr(0, text.find(stop)));
}

TEST(Engine, LogprobsAreNormalizedAndTopFirstIsGreedyChoice) {
  ThreadPool pool(1);
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  ASSERT_TRUE(engine);
  RequestParams p = greedy({1, 40, 41, 42}, 5);
  p.logprobs = 3;
  std::vector<TokenLogprobs> lps;
  std::vector<int32_t> ids;
  ASSERT_TRUE((*engine)->submit(p, [&](const RequestOutput& out) {
    lps.insert(lps.end(), out.new_logprobs.begin(), out.new_logprobs.end());
    ids.insert(ids.end(), out.new_tokens.begin(), out.new_tokens.end());
  }));
  ASSERT_TRUE((*engine)->run_until_idle());
  ASSERT_EQ(lps.size(), 5u);
  for (size_t i = 0; i < lps.size(); ++i) {
    ASSERT_EQ(lps[i].top.size(), 3u);
    EXPECT_EQ(lps[i].top[0].id, ids[i]);
    EXPECT_EQ(lps[i].chosen.id, ids[i]);
    EXPECT_LE(lps[i].chosen.logprob, 0.0f);
    EXPECT_GE(lps[i].top[0].logprob, lps[i].top[1].logprob);
  }
}

TEST(Engine, StressRandomRequestsAndCancellationsOnTheLoopThread) {
  ThreadPool pool(2);
  EngineOptions o;
  o.kv_cache_bytes = 400 * 128;  // small: preemptions happen too
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 48;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  ASSERT_TRUE(engine) << engine.status().message();
  (*engine)->start();
  Collected c;
  std::mt19937_64 rng(5);
  const auto prompts = make_prompts(200, 8, 3);
  std::vector<RequestId> ids;
  for (int i = 0; i < 200; ++i) {
    RequestParams p = greedy(prompts[i], 1 + static_cast<int64_t>(rng() % 20));
    p.sampling.temperature = (i % 3) ? 0.8f : 0.0f;
    p.sampling.seed = i;
    auto id = (*engine)->submit(p, c.callback());
    ASSERT_TRUE(id);
    ids.push_back(*id);
    if (rng() % 4 == 0) (*engine)->cancel(ids[rng() % ids.size()]);
    if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  (*engine)->cancel(12345678);  // unknown: ignored
  for (int i = 0; i < 4000 && (*engine)->has_work(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_FALSE((*engine)->has_work());
  (*engine)->stop();
  const EngineMetrics m = (*engine)->metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  int aborted = 0;
  for (RequestId id : ids) {
    EXPECT_EQ(c.finals[id], 1) << "request " << id << " must end exactly once";
    aborted += c.last[id].finish == FinishReason::Abort;
  }
  std::printf("200 requests: %d cancelled, %lld preemptions, %lld steps\n", aborted, (long long)m.preemptions,
              (long long)m.steps);
}

TEST(Engine, StopAbortsWhatIsLeft) {
  ThreadPool pool(1);
  EngineOptions o;
  o.kv_cache_bytes = 8 << 20;
  auto engine = Engine::create(*tiny_model().model, tiny_model().tokenizer.get(), pool, o);
  ASSERT_TRUE(engine);
  Collected c;
  auto id = (*engine)->submit(greedy({1, 2, 3}, 50), c.callback());
  ASSERT_TRUE(id);
  ASSERT_TRUE((*engine)->step());
  (*engine)->stop();
  EXPECT_EQ(c.finals[*id], 1);
  EXPECT_EQ(c.last[*id].finish, FinishReason::Abort);
  EXPECT_EQ((*engine)->metrics().kv_blocks_used, 0);
  EXPECT_FALSE((*engine)->submit(greedy({1}, 2), c.callback()));
}

}  // namespace
}  // namespace anvil
