// KL divergence: per-position math on small distributions with known answers, the summary
// statistics, compatibility checks, and a base/compare round trip on dummy models.
#include "eval/kl_divergence.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "eval/log_softmax.h"
#include "eval/logprob_file.h"
#include "eval/perplexity.h"
#include "model/presets.h"
#include "test_paths.h"

namespace anvil {
namespace {

std::vector<float> logs(std::initializer_list<double> probabilities) {
  std::vector<float> out;
  for (double p : probabilities) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

TEST(KlDivergenceMath, IdenticalDistributionsGiveZero) {
  std::vector<float> logits = {0.3f, -1.2f, 2.5f, 0.0f, 7.0f};
  std::vector<float> p(logits.size());
  log_softmax(logits, p);
  EXPECT_EQ(kl_divergence(p, p), 0.0);
  TokenComparison t = compare_token(p, p, 2);
  EXPECT_EQ(t.kld, 0.0);
  EXPECT_TRUE(t.same_top);
  EXPECT_EQ(t.p_diff, 0.0);
  EXPECT_EQ(t.nll_model, t.nll_base);
}

TEST(KlDivergenceMath, KnownValues) {
  // KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3).
  EXPECT_NEAR(kl_divergence(logs({0.5, 0.5}), logs({0.25, 0.75})), 0.5 * std::log(4.0 / 3.0), 1e-7);
  // Not symmetric: KL([1/4, 3/4] || [1/2, 1/2]) = 1/4 ln(1/2) + 3/4 ln(3/2).
  EXPECT_NEAR(kl_divergence(logs({0.25, 0.75}), logs({0.5, 0.5})), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-7);
  // Three outcomes.
  const double expected = 0.7 * std::log(0.7 / 0.5) + 0.2 * std::log(0.2 / 0.3) + 0.1 * std::log(0.1 / 0.2);
  EXPECT_NEAR(kl_divergence(logs({0.7, 0.2, 0.1}), logs({0.5, 0.3, 0.2})), expected, 1e-7);
}

TEST(KlDivergenceMath, ZeroBaseProbabilityContributesNothing) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<float> base = {std::log(0.5f), std::log(0.5f), neg_inf};
  EXPECT_NEAR(kl_divergence(base, logs({0.5, 0.25, 0.25})), 0.5 * std::log(2.0), 1e-7);
  EXPECT_TRUE(std::isinf(kl_divergence(logs({0.5, 0.5}), std::vector<float>{0.0f, neg_inf})));
}

TEST(KlDivergenceMath, TopOneAgreementAndDeltaP) {
  const std::vector<float> base = logs({0.6, 0.3, 0.1});
  TokenComparison same = compare_token(base, logs({0.5, 0.4, 0.1}), 1);
  EXPECT_TRUE(same.same_top);
  EXPECT_NEAR(same.p_diff, 0.4 - 0.3, 1e-6);  // the model gives the right token (1) more mass
  EXPECT_NEAR(same.nll_model, -std::log(0.4), 1e-6);
  EXPECT_NEAR(same.nll_base, -std::log(0.3), 1e-6);
  TokenComparison differ = compare_token(base, logs({0.3, 0.6, 0.1}), 0);
  EXPECT_FALSE(differ.same_top);
  EXPECT_NEAR(differ.p_diff, 0.3 - 0.6, 1e-6);
  // Ties go to the lowest index on both sides.
  EXPECT_TRUE(compare_token(logs({0.4, 0.4, 0.2}), logs({0.45, 0.45, 0.1}), 0).same_top);
}

TEST(KlDivergenceStats, SummaryOfKnownComparisons) {
  KlDivergenceStats stats;
  for (int i = 0; i < 10; ++i) {
    TokenComparison t;
    t.kld = 0.01 * i;              // 0, 0.01, ..., 0.09
    t.nll_model = std::log(4.0);   // PPL(Q) 4
    t.nll_base = std::log(2.0);    // PPL(base) 2
    t.p_diff = i % 2 ? 0.1 : -0.1;
    t.same_top = i < 8;
    stats.add(t);
  }
  ChunkPlan plan;
  plan.n_ctx = 8;
  plan.n_chunks = 1;
  KlDivergenceResult r = stats.summarize(plan);
  EXPECT_EQ(r.n_tokens_scored, 10);
  EXPECT_NEAR(r.kld_mean, 0.045, 1e-12);
  EXPECT_NEAR(r.kld_median, 0.045, 1e-7);
  EXPECT_NEAR(r.kld_max, 0.09, 1e-7);
  EXPECT_NEAR(r.kld_min, 0.0, 1e-12);
  EXPECT_NEAR(r.kld_p90, 0.081, 1e-7);
  EXPECT_NEAR(r.kld_p99, 0.0891, 1e-7);
  EXPECT_NEAR(r.top1_agreement, 0.8, 1e-12);
  EXPECT_NEAR(r.top1_stderr, std::sqrt(0.8 * 0.2 / 9.0), 1e-12);
  EXPECT_NEAR(r.ppl, 4.0, 1e-12);
  EXPECT_NEAR(r.ppl_base, 2.0, 1e-12);
  EXPECT_NEAR(r.ppl_ratio, 2.0, 1e-12);
  EXPECT_NEAR(r.ln_ppl_ratio, std::log(2.0), 1e-12);
  EXPECT_NEAR(r.dp_mean, 0.0, 1e-12);
  EXPECT_NEAR(r.dp_rms, 0.1, 1e-12);
}

TEST(KlDivergenceCompatibility, RejectsOtherVocabulariesAndContexts) {
  ModelConfig config;
  config.vocab_size = 512;
  config.context_length = 256;
  LogprobFileHeader header;
  header.vocab_size = 512;
  header.n_ctx = 64;
  header.n_chunks = 1;
  header.vocab_fingerprint = 1234;
  header.model = "dummy:tiny-llama";
  EXPECT_TRUE(check_base_compatible(header, "base.kld", config, 1234));
  EXPECT_TRUE(check_base_compatible(header, "base.kld", config, 0));  // a model without vocabulary: size only

  Status other_tokenizer = check_base_compatible(header, "base.kld", config, 99);
  ASSERT_FALSE(other_tokenizer);
  EXPECT_NE(other_tokenizer.message().find("different tokenizer"), std::string::npos);

  config.vocab_size = 32000;
  Status other_size = check_base_compatible(header, "base.kld", config, 1234);
  ASSERT_FALSE(other_size);
  EXPECT_NE(other_size.message().find("vocabulary of 512 tokens, but this model has 32000"), std::string::npos)
      << other_size.message();

  config.vocab_size = 512;
  config.context_length = 32;
  Status short_context = check_base_compatible(header, "base.kld", config, 1234);
  ASSERT_FALSE(short_context);
  EXPECT_NE(short_context.message().find("context of 64"), std::string::npos) << short_context.message();
}

class KlDivergenceRoundTrip : public ::testing::Test {
 protected:
  static std::unique_ptr<DecoderModel> load(const std::string& spec, std::shared_ptr<const Checkpoint>* keep) {
    Result<Checkpoint> checkpoint = create_dummy_checkpoint(spec);
    EXPECT_TRUE(checkpoint) << checkpoint.status().message();
    *keep = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
    auto model = DecoderModel::create(*keep);
    EXPECT_TRUE(model) << model.status().message();
    return std::move(model).value();
  }

  // Scores `evaluated` with `spec` and writes the base file; returns its PPL.
  double write_base(const std::string& spec, const std::string& path, DType dtype) {
    std::shared_ptr<const Checkpoint> checkpoint;
    std::unique_ptr<DecoderModel> model = load(spec, &checkpoint);
    LogprobFileHeader header;
    header.dtype = dtype;
    header.vocab_size = checkpoint->config.vocab_size;
    header.n_ctx = plan.n_ctx;
    header.n_chunks = plan.n_chunks;
    header.vocab_fingerprint = vocab_fingerprint(checkpoint->vocab);
    header.model = spec;
    auto writer = LogprobFileWriter::create(path, header, evaluated);
    EXPECT_TRUE(writer) << writer.status().message();
    Result<PerplexityResult> result = evaluate_perplexity(*model, evaluated, plan, pool, writer->get(), {});
    EXPECT_TRUE(result) << result.status().message();
    EXPECT_TRUE((*writer)->close());
    return result->ppl;
  }

  Result<KlDivergenceResult> compare(const std::string& spec, const std::string& path) {
    std::shared_ptr<const Checkpoint> checkpoint;
    std::unique_ptr<DecoderModel> model = load(spec, &checkpoint);
    auto reader = LogprobFileReader::open(path);
    if (!reader) return reader.status();
    return evaluate_kl_divergence(*model, **reader, 0, pool, {});
  }

  void SetUp() override {
    std::vector<int32_t> tokens(100);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(3 + (i * 29 + i / 7) % 256);
    plan = *plan_chunks(static_cast<int64_t>(tokens.size()), 32, 0);
    evaluated = chunk_tokens(tokens, plan, 1);
    dir = testing::scratch_dir("kl_divergence_round_trip");
  }

  ThreadPool pool{2};
  ChunkPlan plan;
  std::vector<int32_t> evaluated;
  std::string dir;
};

TEST_F(KlDivergenceRoundTrip, BaseAgainstItselfIsZeroAndQuantizedIsSmall) {
  const std::string base = dir + "/f32.kld";
  const double ppl = write_base("dummy:tiny-llama:f32", base, DType::F32);

  Result<KlDivergenceResult> self = compare("dummy:tiny-llama:f32", base);
  ASSERT_TRUE(self) << self.status().message();
  EXPECT_EQ(self->n_chunks, 3);
  EXPECT_EQ(self->n_tokens_scored, 3 * 15);
  EXPECT_EQ(self->kld_mean, 0.0);
  EXPECT_EQ(self->kld_max, 0.0);
  EXPECT_EQ(self->top1_agreement, 1.0);
  EXPECT_DOUBLE_EQ(self->ppl, ppl);
  EXPECT_DOUBLE_EQ(self->ppl_base, ppl);
  EXPECT_DOUBLE_EQ(self->ppl_ratio, 1.0);

  Result<KlDivergenceResult> q8 = compare("dummy:tiny-llama:q8_0", base);
  ASSERT_TRUE(q8) << q8.status().message();
  EXPECT_GT(q8->kld_mean, 0.0);
  EXPECT_LT(q8->kld_mean, 0.01);
  EXPECT_GE(q8->kld_max, q8->kld_p99);
  EXPECT_GE(q8->kld_p99, q8->kld_median);
  EXPECT_GT(q8->top1_agreement, 0.8);
  EXPECT_DOUBLE_EQ(q8->ppl_base, ppl);
  EXPECT_NEAR(q8->ppl_ratio, 1.0, 0.05);

  // f16 storage: half the bytes, KLD against itself only as large as f16 rounding makes it.
  const std::string half = dir + "/f16.kld";
  write_base("dummy:tiny-llama:f32", half, DType::F16);
  Result<KlDivergenceResult> self16 = compare("dummy:tiny-llama:f32", half);
  ASSERT_TRUE(self16) << self16.status().message();
  EXPECT_LT(std::abs(self16->kld_mean), 1e-4);
  EXPECT_NEAR(self16->ppl_base, ppl, 1e-3 * ppl);
}

TEST_F(KlDivergenceRoundTrip, ModelWithAnotherVocabularyIsRejected) {
  // A base file of a 300-token vocabulary (rows are uniform log-probs) against a 512-token model.
  const int64_t vocab = 300;
  LogprobFileHeader header;
  header.vocab_size = vocab;
  header.n_ctx = plan.n_ctx;
  header.n_chunks = 1;
  header.model = "other";
  const std::string path = dir + "/other.kld";
  std::vector<int32_t> ids(evaluated.begin(), evaluated.begin() + plan.n_ctx);
  auto writer = LogprobFileWriter::create(path, header, ids);
  ASSERT_TRUE(writer) << writer.status().message();
  ASSERT_TRUE((*writer)->write_chunk(
      std::vector<float>(header.plan().scored_per_chunk() * vocab, -std::log(static_cast<float>(vocab)))));
  ASSERT_TRUE((*writer)->close());
  Result<KlDivergenceResult> r = compare("dummy:tiny-llama", path);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("vocabulary of 300 tokens, but this model has 512"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace anvil
