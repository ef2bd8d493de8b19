// KL divergence against stored base log-probabilities.
#include "eval/kl_divergence.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "engine/sampler/sampler.h"
#include "eval/logprob_file.h"

namespace anvil {

double kl_divergence(std::span<const float> base_logprobs, std::span<const float> model_logprobs) {
  double sum = 0.0;
  for (size_t i = 0; i < base_logprobs.size(); ++i) {
    const float log_p = base_logprobs[i];
    const float p = std::exp(log_p);
    if (p == 0.0f) continue;
    sum += static_cast<double>(p) * (static_cast<double>(log_p) - static_cast<double>(model_logprobs[i]));
  }
  return sum;
}

TokenComparison compare_token(std::span<const float> base_logprobs, std::span<const float> model_logprobs,
                              int32_t target) {
  TokenComparison t;
  t.kld = kl_divergence(base_logprobs, model_logprobs);
  t.nll_model = -static_cast<double>(model_logprobs[target]);
  t.nll_base = -static_cast<double>(base_logprobs[target]);
  t.p_diff = std::exp(-t.nll_model) - std::exp(-t.nll_base);
  t.same_top = argmax(base_logprobs) == argmax(model_logprobs);
  return t;
}

void KlDivergenceStats::add(const TokenComparison& token) {
  nll_.add(token.nll_model);
  nll_base_.add(token.nll_base);
  sum_nll_nll_base_ += token.nll_model * token.nll_base;
  kld_.add(token.kld);
  p_diff_.add(token.p_diff);
  p_diff_squared_.add(token.p_diff * token.p_diff);
  same_top_ += token.same_top ? 1 : 0;
  kld_values_.push_back(static_cast<float>(token.kld));
  p_diff_values_.push_back(static_cast<float>(token.p_diff));
}

double KlDivergenceStats::ppl() const { return std::exp(nll_.mean()); }
double KlDivergenceStats::ppl_stderr() const { return ppl() * nll_.stderr_of_mean(); }

KlDivergenceResult KlDivergenceStats::summarize(const ChunkPlan& plan) const {
  KlDivergenceResult r;
  r.n_ctx = plan.n_ctx;
  r.n_chunks = plan.n_chunks;
  r.n_tokens_scored = count();
  if (count() == 0) return r;
  r.ppl = ppl();
  r.ppl_stderr = ppl_stderr();
  r.ppl_base = std::exp(nll_base_.mean());
  r.ppl_base_stderr = r.ppl_base * nll_base_.stderr_of_mean();

  const double se = nll_.stderr_of_mean(), se_base = nll_base_.stderr_of_mean();
  const double cov = covariance_of_means(nll_.sum(), nll_base_.sum(), sum_nll_nll_base_, count());
  r.ln_ppl_ratio = nll_.mean() - nll_base_.mean();
  r.ln_ppl_ratio_stderr = std::sqrt(std::max(0.0, se * se + se_base * se_base - 2.0 * cov));
  r.ppl_ratio = std::exp(r.ln_ppl_ratio);
  r.ppl_ratio_stderr = r.ppl_ratio * r.ln_ppl_ratio_stderr;
  r.ln_ppl_correlation = se > 0.0 && se_base > 0.0 ? cov / (se * se_base) : 0.0;

  std::vector<float> kld = kld_values_;
  std::sort(kld.begin(), kld.end());
  r.kld_mean = kld_.mean();
  r.kld_stderr = kld_.stderr_of_mean();
  r.kld_median = sorted_median(kld);
  r.kld_p90 = sorted_quantile(kld, 0.90);
  r.kld_p95 = sorted_quantile(kld, 0.95);
  r.kld_p99 = sorted_quantile(kld, 0.99);
  r.kld_p999 = sorted_quantile(kld, 0.999);
  r.kld_max = kld.back();
  r.kld_min = kld.front();

  const double n = static_cast<double>(count());
  r.top1_agreement = static_cast<double>(same_top_) / n;
  r.top1_stderr = count() > 1 ? std::sqrt(r.top1_agreement * (1.0 - r.top1_agreement) / (n - 1.0)) : 0.0;

  std::vector<float> dp = p_diff_values_;
  std::sort(dp.begin(), dp.end());
  r.dp_mean = p_diff_.mean();
  r.dp_stderr = p_diff_.stderr_of_mean();
  r.dp_rms = std::sqrt(p_diff_squared_.mean());
  r.dp_rms_stderr = r.dp_rms > 0.0 ? 0.5 / r.dp_rms * p_diff_squared_.stderr_of_mean() : 0.0;
  r.dp_median = sorted_median(dp);
  r.dp_p01 = sorted_quantile(dp, 0.01);
  r.dp_p99 = sorted_quantile(dp, 0.99);
  r.dp_min = dp.front();
  r.dp_max = dp.back();
  return r;
}

Status check_base_compatible(const LogprobFileHeader& base, const std::string& path, const ModelConfig& config,
                             uint64_t model_vocab_fingerprint) {
  const std::string from = base.model.empty() ? "" : fmt::format(" (base model {})", base.model);
  if (base.vocab_size != config.vocab_size)
    return Status::error(fmt::format("{}{} has a vocabulary of {} tokens, but this model has {}: compare models "
                                     "that share a tokenizer",
                                     path, from, base.vocab_size, config.vocab_size));
  if (base.vocab_fingerprint != 0 && model_vocab_fingerprint != 0 && base.vocab_fingerprint != model_vocab_fingerprint)
    return Status::error(fmt::format("{}{} was made with a different tokenizer (same size, different tokens): "
                                     "compare models that share a tokenizer",
                                     path, from));
  if (base.n_ctx > config.context_length)
    return Status::error(fmt::format("{}{} was scored with a context of {}, larger than this model's context "
                                     "length of {}",
                                     path, from, base.n_ctx, config.context_length));
  return Status::ok();
}

Result<KlDivergenceResult> evaluate_kl_divergence(const DecoderModel& model, LogprobFileReader& base,
                                                  int64_t max_chunks, ThreadPool& pool,
                                                  const ChunkProgressCallback& on_chunk) {
  const LogprobFileHeader& header = base.header();
  ANVIL_RETURN_IF_ERROR(check_base_compatible(header, base.path(), model.config(), 0));
  ChunkPlan plan = header.plan();
  if (max_chunks > 0) plan.n_chunks = std::min(plan.n_chunks, max_chunks);
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<ChunkScorer> scorer, ChunkScorer::create(model, plan.n_ctx));
  const int64_t vocab = header.vocab_size;
  const int64_t rows = plan.scored_per_chunk();
  const auto start = std::chrono::steady_clock::now();
  KlDivergenceStats stats;
  std::vector<float> base_rows;
  std::vector<TokenComparison> compared(static_cast<size_t>(rows));
  for (int64_t c = 0; c < plan.n_chunks; ++c) {
    ANVIL_RETURN_IF_ERROR(base.read_chunk(c, base_rows));
    std::span<const int32_t> chunk = std::span<const int32_t>(base.tokens()).subspan(c * plan.n_ctx, plan.n_ctx);
    Result<std::span<const float>> logprobs = scorer->score(chunk, pool);
    if (!logprobs) return logprobs.status().with_context(fmt::format("chunk {}", c + 1));
    // Rows are compared in parallel, then added in order, so results do not depend on the threads.
    pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const size_t offset = static_cast<size_t>(r * vocab);
        compared[r] = compare_token(std::span<const float>(base_rows).subspan(offset, vocab),
                                    logprobs->subspan(offset, vocab), chunk[plan.first + r + 1]);
      }
    });
    for (const TokenComparison& t : compared) stats.add(t);
    if (on_chunk) {
      ChunkProgress progress;
      progress.chunks_done = c + 1;
      progress.n_chunks = plan.n_chunks;
      progress.ppl = stats.ppl();
      progress.ppl_stderr = stats.ppl_stderr();
      progress.kld_mean = stats.kld_mean();
      progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      on_chunk(progress);
    }
  }
  KlDivergenceResult result = stats.summarize(plan);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace anvil
