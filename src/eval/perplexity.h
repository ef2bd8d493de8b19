// Perplexity the way llama.cpp's perplexity tool computes it (chunks of n_ctx, second half scored).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "eval/chunked_scoring.h"
#include "eval/eval_stats.h"
#include "model/decoder_model.h"

namespace anvil {

class LogprobFileWriter;

struct PerplexityResult {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  int64_t n_tokens_scored = 0;
  double mean_nll = 0.0;   // nats per scored token
  double ppl = 0.0;        // exp(mean_nll)
  double ppl_stderr = 0.0; // ppl * standard error of mean_nll (first-order propagation through exp)
  double seconds = 0.0;    // forward passes and scoring, from the first chunk to the last
};

// Negative log-likelihoods of one scored chunk: row r of `logprobs` (log-softmax over the
// vocabulary) scores chunk[first + r + 1]. Added to `stats` in row order.
void accumulate_chunk_nll(std::span<const float> logprobs, std::span<const int32_t> chunk, const ChunkPlan& plan,
                          int64_t vocab_size, MeanStats& stats);

// PPL and its uncertainty from accumulated NLL statistics.
PerplexityResult perplexity_from_nll(const MeanStats& nll, const ChunkPlan& plan);

// Scores every chunk of `tokens` (plan.n_chunks * plan.n_ctx ids as evaluated, from chunk_tokens())
// with `model`. When `base_out` is given, each chunk's log-prob rows are also written to it (the
// base file of a later KL-divergence run); the caller closes it.
Result<PerplexityResult> evaluate_perplexity(const DecoderModel& model, std::span<const int32_t> tokens,
                                             const ChunkPlan& plan, ThreadPool& pool, LogprobFileWriter* base_out,
                                             const ChunkProgressCallback& on_chunk);

}  // namespace anvil
