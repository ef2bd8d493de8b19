// KL divergence of a model against a base model's stored log-probabilities (llama.cpp's
// --kl-divergence): what quantization costs in accuracy, position by position.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "eval/chunked_scoring.h"
#include "eval/eval_stats.h"
#include "model/decoder_model.h"

namespace anvil {

class LogprobFileReader;
struct LogprobFileHeader;

// One scored position: the base distribution P (stored) against the model's Q, both as log-probs.
struct TokenComparison {
  double kld = 0.0;        // KL(P || Q) = sum_i P(i) (log P(i) - log Q(i)), nats
  double nll_model = 0.0;  // -log Q(target)
  double nll_base = 0.0;   // -log P(target)
  double p_diff = 0.0;     // Q(target) - P(target): how much more (or less) likely the right token got
  bool same_top = false;   // argmax P == argmax Q (lowest index on ties)
};

// KL(P || Q) in double. Entries where P underflows to 0 contribute nothing (0 log 0 = 0).
double kl_divergence(std::span<const float> base_logprobs, std::span<const float> model_logprobs);
TokenComparison compare_token(std::span<const float> base_logprobs, std::span<const float> model_logprobs,
                              int32_t target);

struct KlDivergenceResult {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  int64_t n_tokens_scored = 0;
  // Perplexity of the model (Q) and of the base (P) over the same positions, and their ratio with
  // the uncertainty propagated through the covariance of the paired NLLs (llama.cpp's statistics).
  double ppl = 0.0, ppl_stderr = 0.0;
  double ppl_base = 0.0, ppl_base_stderr = 0.0;
  double ln_ppl_ratio = 0.0, ln_ppl_ratio_stderr = 0.0;
  double ppl_ratio = 0.0, ppl_ratio_stderr = 0.0;
  double ln_ppl_correlation = 0.0;
  // KL divergence per position.
  double kld_mean = 0.0, kld_stderr = 0.0;
  double kld_median = 0.0, kld_p90 = 0.0, kld_p95 = 0.0, kld_p99 = 0.0, kld_p999 = 0.0;
  double kld_max = 0.0, kld_min = 0.0;
  // Top-1 agreement: fraction of positions where both pick the same most likely token.
  double top1_agreement = 0.0, top1_stderr = 0.0;
  // Δp = Q(target) - P(target).
  double dp_mean = 0.0, dp_stderr = 0.0, dp_rms = 0.0, dp_rms_stderr = 0.0;
  double dp_median = 0.0, dp_p01 = 0.0, dp_p99 = 0.0, dp_min = 0.0, dp_max = 0.0;
  double seconds = 0.0;
};

// Accumulates TokenComparisons; keeps one KLD and one Δp float per position for the quantiles.
class KlDivergenceStats {
 public:
  void add(const TokenComparison& token);
  int64_t count() const { return nll_.count(); }
  double kld_mean() const { return kld_.mean(); }
  double ppl() const;
  double ppl_stderr() const;
  KlDivergenceResult summarize(const ChunkPlan& plan) const;

 private:
  MeanStats nll_, nll_base_, kld_, p_diff_, p_diff_squared_;
  double sum_nll_nll_base_ = 0.0;
  int64_t same_top_ = 0;
  std::vector<float> kld_values_, p_diff_values_;
};

// Whether a base file can be compared with `model`: the same vocabulary (size, and the tokenizer's
// pieces when both carry one) and a context the model can run. `path` names the file in messages.
Status check_base_compatible(const LogprobFileHeader& base, const std::string& path, const ModelConfig& config,
                             uint64_t model_vocab_fingerprint);

// Runs `model` over the base file's chunks (the first max_chunks when > 0) and compares every
// scored position with the stored base log-probs.
Result<KlDivergenceResult> evaluate_kl_divergence(const DecoderModel& model, LogprobFileReader& base,
                                                  int64_t max_chunks, ThreadPool& pool,
                                                  const ChunkProgressCallback& on_chunk);

}  // namespace anvil
