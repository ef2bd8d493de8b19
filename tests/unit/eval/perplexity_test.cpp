// Perplexity: NLL/PPL math on hand-made log-probs, chunk planning and boundaries, and the scorer
// on a dummy model against a direct forward pass.
#include "eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "eval/chunked_scoring.h"
#include "eval/eval_stats.h"
#include "eval/log_softmax.h"
#include "model/presets.h"

namespace anvil {
namespace {

std::unique_ptr<DecoderModel> dummy_model(const std::string& spec) {
  Result<Checkpoint> checkpoint = create_dummy_checkpoint(spec);
  EXPECT_TRUE(checkpoint) << checkpoint.status().message();
  auto model = DecoderModel::create(std::make_shared<const Checkpoint>(std::move(checkpoint).value()));
  EXPECT_TRUE(model) << model.status().message();
  return std::move(model).value();
}

// Log-prob rows for every scored position of one chunk, each row the log-softmax of `logits`.
std::vector<float> rows_from_logits(const ChunkPlan& plan, const std::vector<float>& logits) {
  std::vector<float> rows;
  std::vector<float> row(logits.size());
  log_softmax(logits, row);
  for (int64_t r = 0; r < plan.scored_per_chunk(); ++r) rows.insert(rows.end(), row.begin(), row.end());
  return rows;
}

TEST(PerplexityMath, LogSoftmaxNormalizesAndWorksInPlace) {
  std::vector<float> logits = {1000.0f, 1001.0f, 999.0f, 1000.5f};  // stable despite the offset
  std::vector<float> out(logits.size());
  log_softmax(logits, out);
  double total = 0.0;
  for (float v : out) total += std::exp(static_cast<double>(v));
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_NEAR(out[1] - out[0], 1.0, 1e-5);
  log_softmax(logits, logits);  // aliasing: the scorer converts its logits in place
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(logits[i], out[i]);

  std::vector<float> wide(128256);  // a Llama 3 row: the double normalizer keeps it exact
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = static_cast<float>(i % 7) * 0.25f;
  log_softmax(wide, wide);
  total = 0.0;
  for (float v : wide) total += std::exp(static_cast<double>(v));
  EXPECT_NEAR(total, 1.0, 1e-5);
}

TEST(PerplexityMath, UniformLogitsGivePplEqualToVocabSize) {
  for (int64_t vocab : {2, 10, 512, 32000}) {
    Result<ChunkPlan> plan = plan_chunks(64, 16, 0);
    ASSERT_TRUE(plan);
    std::vector<int32_t> chunk(16);
    std::iota(chunk.begin(), chunk.end(), 0);
    for (int32_t& t : chunk) t %= static_cast<int32_t>(vocab);
    const std::vector<float> rows = rows_from_logits(*plan, std::vector<float>(vocab, 3.5f));
    MeanStats nll;
    accumulate_chunk_nll(rows, chunk, *plan, vocab, nll);
    accumulate_chunk_nll(rows, chunk, *plan, vocab, nll);
    PerplexityResult result = perplexity_from_nll(nll, *plan);
    EXPECT_NEAR(result.ppl, static_cast<double>(vocab), 1e-5 * vocab) << vocab;
    EXPECT_EQ(result.n_tokens_scored, 2 * 7);
    EXPECT_NEAR(result.ppl_stderr, 0.0, 1e-6 * vocab);  // every NLL is the same
  }
}

TEST(PerplexityMath, PeakedDistributionGivesKnownPpl) {
  // Target logit L, the other V-1 logits 0: p = e^L / (e^L + V - 1), PPL = 1 / p.
  const int64_t vocab = 100;
  const float peak = 8.0f;
  Result<ChunkPlan> plan = plan_chunks(16, 8, 0);
  ASSERT_TRUE(plan);
  std::vector<int32_t> chunk(8, 42);  // every target is 42
  std::vector<float> logits(vocab, 0.0f);
  logits[42] = peak;
  MeanStats nll;
  accumulate_chunk_nll(rows_from_logits(*plan, logits), chunk, *plan, vocab, nll);
  const double p = std::exp(8.0) / (std::exp(8.0) + 99.0);
  EXPECT_NEAR(perplexity_from_nll(nll, *plan).ppl, 1.0 / p, 1e-5);
  EXPECT_LT(perplexity_from_nll(nll, *plan).ppl, 1.05);
}

TEST(PerplexityMath, MixedNllGivesKnownPplAndStandardError) {
  // NLLs ln 2 and ln 4: PPL = exp((ln 2 + ln 4) / 2) = sqrt(8); the standard error of the mean of
  // two values a, b is |a - b| / 2, propagated through exp: sqrt(8) * ln(2) / 2.
  MeanStats nll;
  nll.add(std::log(2.0));
  nll.add(std::log(4.0));
  ChunkPlan plan;
  PerplexityResult result = perplexity_from_nll(nll, plan);
  EXPECT_NEAR(result.ppl, std::sqrt(8.0), 1e-12);
  EXPECT_NEAR(result.ppl_stderr, std::sqrt(8.0) * std::log(2.0) / 2.0, 1e-12);
}

TEST(PerplexityStats, QuantilesAndMedianInterpolate) {
  const std::vector<float> sorted = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(sorted_quantile(sorted, 0.9), 3.6);
  EXPECT_DOUBLE_EQ(sorted_quantile(sorted, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(sorted_quantile(sorted, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(sorted_median(sorted), 2.0);
  const std::vector<float> even = {1.0f, 2.0f, 4.0f, 8.0f};
  EXPECT_DOUBLE_EQ(sorted_median(even), 3.0);
  EXPECT_DOUBLE_EQ(sorted_quantile({}, 0.5), 0.0);
  MeanStats one;
  one.add(5.0);
  EXPECT_EQ(one.stderr_of_mean(), 0.0);
}

TEST(PerplexityChunks, ScoredPositionsForCtx8) {
  // 20 tokens, n_ctx 8: two whole chunks (tokens 16..19 unused); first = 4, so logits at
  // positions 4, 5, 6 score the tokens at positions 5, 6, 7 of each chunk.
  Result<ChunkPlan> plan = plan_chunks(20, 8, 0);
  ASSERT_TRUE(plan) << plan.status().message();
  EXPECT_EQ(plan->n_chunks, 2);
  EXPECT_EQ(plan->first, 4);
  EXPECT_EQ(plan->scored_per_chunk(), 3);
  EXPECT_EQ(plan->scored_tokens(), 6);

  std::vector<int32_t> tokens(20);
  std::iota(tokens.begin(), tokens.end(), 100);
  const std::vector<int32_t> evaluated = chunk_tokens(tokens, *plan, /*bos_id=*/1);
  ASSERT_EQ(evaluated.size(), 16u);
  EXPECT_EQ(evaluated[0], 1);  // BOS replaces each chunk's first token
  EXPECT_EQ(evaluated[8], 1);
  EXPECT_EQ(evaluated[1], 101);
  EXPECT_EQ(evaluated[15], 115);
  EXPECT_EQ(chunk_tokens(tokens, *plan, -1)[8], 108);  // no BOS: ids used as given

  // Row r's log-prob at id v is -v / 1000: the NLL sum names exactly which ids were scored.
  const int64_t vocab = 200;
  std::vector<float> rows(plan->scored_per_chunk() * vocab);
  for (int64_t r = 0; r < plan->scored_per_chunk(); ++r)
    for (int64_t v = 0; v < vocab; ++v) rows[r * vocab + v] = -static_cast<float>(v) / 1000.0f;
  MeanStats nll;
  accumulate_chunk_nll(rows, std::span<const int32_t>(evaluated).subspan(8, 8), *plan, vocab, nll);
  EXPECT_NEAR(nll.sum(), (113 + 114 + 115) / 1000.0, 1e-6);
  EXPECT_EQ(nll.count(), 3);
}

TEST(PerplexityChunks, PlanLimitsAndErrors) {
  Result<ChunkPlan> limited = plan_chunks(1000, 64, 3);
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->n_chunks, 3);
  EXPECT_EQ(plan_chunks(1000, 64, 0)->n_chunks, 15);
  EXPECT_EQ(plan_chunks(1000, 64, 100)->n_chunks, 15);
  EXPECT_EQ(plan_chunks(512, 256, 0)->scored_per_chunk(), 127);
  EXPECT_EQ(plan_chunks(1024, 512, 0)->scored_per_chunk(), 255);  // llama.cpp's 255 at 512

  Result<ChunkPlan> short_text = plan_chunks(127, 64, 0);  // llama.cpp needs 2 x ctx tokens
  ASSERT_FALSE(short_text);
  EXPECT_NE(short_text.status().message().find("at least 128"), std::string::npos) << short_text.status().message();
  EXPECT_TRUE(plan_chunks(128, 64, 0));
  EXPECT_FALSE(plan_chunks(100, 2, 0));
}

TEST(PerplexityScorer, RowsAreLogSoftmaxOfAFreshForwardPass) {
  std::unique_ptr<DecoderModel> model = dummy_model("dummy:tiny-llama");
  ASSERT_TRUE(model);
  const ModelConfig& config = model->config();
  ThreadPool pool(2);
  Result<std::unique_ptr<ChunkScorer>> too_long = ChunkScorer::create(*model, config.context_length + 1);
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.status().message().find("larger than the model's context length"), std::string::npos);

  const int64_t n_ctx = 16, vocab = config.vocab_size;
  Result<std::unique_ptr<ChunkScorer>> scorer = ChunkScorer::create(*model, n_ctx);
  ASSERT_TRUE(scorer) << scorer.status().message();
  std::vector<int32_t> a(n_ctx), b(n_ctx);
  for (int64_t i = 0; i < n_ctx; ++i) {
    a[i] = static_cast<int32_t>((i * 37 + 5) % vocab);
    b[i] = static_cast<int32_t>((i * 91 + 11) % vocab);
  }
  a[0] = b[0] = 1;

  // Reference: a forward pass in a brand-new cache, log-softmax of rows first .. n_ctx-2.
  SequenceKvCache cache = model->make_cache(n_ctx);
  std::vector<float> logits(n_ctx * vocab);
  ASSERT_TRUE(model->forward(a, cache, pool, logits.data(), true));
  std::vector<float> expected;
  for (int64_t p = n_ctx / 2; p < n_ctx - 1; ++p) {
    std::vector<float> row(logits.begin() + p * vocab, logits.begin() + (p + 1) * vocab);
    log_softmax(row, row);
    expected.insert(expected.end(), row.begin(), row.end());
  }

  // Scoring another chunk in between must not leak into the next: every chunk is a fresh sequence.
  ASSERT_TRUE((*scorer)->score(a, pool));
  ASSERT_TRUE((*scorer)->score(b, pool));
  Result<std::span<const float>> rows = (*scorer)->score(a, pool);
  ASSERT_TRUE(rows) << rows.status().message();
  ASSERT_EQ(rows->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) ASSERT_FLOAT_EQ((*rows)[i], expected[i]) << i;
  EXPECT_FALSE((*scorer)->score(std::vector<int32_t>(n_ctx - 1, 3), pool));  // wrong length
}

TEST(PerplexityEvaluate, MatchesManualAccumulationAndReportsProgress) {
  std::unique_ptr<DecoderModel> model = dummy_model("dummy:tiny-llama");
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  const int64_t vocab = model->config().vocab_size;
  std::vector<int32_t> tokens(70);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 13 + 7) % vocab);
  Result<ChunkPlan> plan = plan_chunks(static_cast<int64_t>(tokens.size()), 16, 3);
  ASSERT_TRUE(plan);
  const std::vector<int32_t> evaluated = chunk_tokens(tokens, *plan, 1);

  std::vector<ChunkProgress> seen;
  Result<PerplexityResult> result =
      evaluate_perplexity(*model, evaluated, *plan, pool, nullptr, [&](const ChunkProgress& p) { seen.push_back(p); });
  ASSERT_TRUE(result) << result.status().message();
  EXPECT_EQ(result->n_chunks, 3);
  EXPECT_EQ(result->n_tokens_scored, 3 * 7);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.back().chunks_done, 3);
  EXPECT_DOUBLE_EQ(seen.back().ppl, result->ppl);

  Result<std::unique_ptr<ChunkScorer>> scorer = ChunkScorer::create(*model, 16);
  ASSERT_TRUE(scorer);
  MeanStats nll;
  for (int64_t c = 0; c < 3; ++c) {
    std::span<const int32_t> chunk = std::span<const int32_t>(evaluated).subspan(c * 16, 16);
    Result<std::span<const float>> rows = (*scorer)->score(chunk, pool);
    ASSERT_TRUE(rows);
    accumulate_chunk_nll(*rows, chunk, *plan, vocab, nll);
  }
  EXPECT_DOUBLE_EQ(result->ppl, std::exp(nll.mean()));
  EXPECT_TRUE(std::isfinite(result->ppl));
  EXPECT_GT(result->ppl_stderr, 0.0);

  // Thread count does not change the result.
  ThreadPool one(1);
  Result<PerplexityResult> single = evaluate_perplexity(*model, evaluated, *plan, one, nullptr, {});
  ASSERT_TRUE(single);
  EXPECT_NEAR(single->ppl, result->ppl, 1e-6 * result->ppl);
}

}  // namespace
}  // namespace anvil
