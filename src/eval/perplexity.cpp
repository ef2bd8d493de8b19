// Perplexity over chunks, llama.cpp's method.
#include "eval/perplexity.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "eval/logprob_file.h"

namespace anvil {

void accumulate_chunk_nll(std::span<const float> logprobs, std::span<const int32_t> chunk, const ChunkPlan& plan,
                          int64_t vocab_size, MeanStats& stats) {
  for (int64_t r = 0; r < plan.scored_per_chunk(); ++r) {
    const int32_t target = chunk[plan.first + r + 1];
    stats.add(-static_cast<double>(logprobs[r * vocab_size + target]));
  }
}

PerplexityResult perplexity_from_nll(const MeanStats& nll, const ChunkPlan& plan) {
  PerplexityResult result;
  result.n_ctx = plan.n_ctx;
  result.n_chunks = plan.n_chunks;
  result.n_tokens_scored = nll.count();
  result.mean_nll = nll.mean();
  result.ppl = std::exp(result.mean_nll);
  result.ppl_stderr = result.ppl * nll.stderr_of_mean();
  return result;
}

Result<PerplexityResult> evaluate_perplexity(const DecoderModel& model, std::span<const int32_t> tokens,
                                             const ChunkPlan& plan, ThreadPool& pool, LogprobFileWriter* base_out,
                                             const ChunkProgressCallback& on_chunk) {
  if (static_cast<int64_t>(tokens.size()) != plan.n_chunks * plan.n_ctx)
    return Status::error(fmt::format("internal: {} tokens for {} chunks of {}", tokens.size(), plan.n_chunks,
                                     plan.n_ctx));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<ChunkScorer> scorer, ChunkScorer::create(model, plan.n_ctx));
  const auto start = std::chrono::steady_clock::now();
  MeanStats nll;
  PerplexityResult result;
  for (int64_t c = 0; c < plan.n_chunks; ++c) {
    std::span<const int32_t> chunk = tokens.subspan(c * plan.n_ctx, plan.n_ctx);
    Result<std::span<const float>> logprobs = scorer->score(chunk, pool);
    if (!logprobs) return logprobs.status().with_context(fmt::format("chunk {}", c + 1));
    accumulate_chunk_nll(*logprobs, chunk, plan, scorer->vocab_size(), nll);
    if (base_out) ANVIL_RETURN_IF_ERROR(base_out->write_chunk(*logprobs));
    result = perplexity_from_nll(nll, plan);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_chunk) {
      ChunkProgress progress;
      progress.chunks_done = c + 1;
      progress.n_chunks = plan.n_chunks;
      progress.ppl = result.ppl;
      progress.ppl_stderr = result.ppl_stderr;
      progress.seconds = result.seconds;
      on_chunk(progress);
    }
  }
  return result;
}

}  // namespace anvil
