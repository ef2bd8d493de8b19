// Chunked scoring: chunk planning and the per-chunk forward pass.
#include "eval/chunked_scoring.h"

#include <fmt/format.h>

#include <algorithm>

#include "eval/log_softmax.h"

namespace anvil {

Result<ChunkPlan> plan_chunks(int64_t n_tokens, int64_t n_ctx, int64_t max_chunks) {
  if (n_ctx < 4)
    return Status::error(fmt::format("a context of {} tokens is too small to score (use at least 4; 512 is usual)", n_ctx));
  if (n_tokens < 2 * n_ctx)
    return Status::error(fmt::format("the input is {} tokens long, but a context of {} needs at least {} "
                                     "(2 x ctx, as llama.cpp requires); give a longer text or a smaller --ctx",
                                     n_tokens, n_ctx, 2 * n_ctx));
  ChunkPlan plan;
  plan.n_ctx = n_ctx;
  plan.first = n_ctx / 2;
  plan.n_chunks = n_tokens / n_ctx;
  if (max_chunks > 0) plan.n_chunks = std::min(plan.n_chunks, max_chunks);
  return plan;
}

std::vector<int32_t> chunk_tokens(std::span<const int32_t> tokens, const ChunkPlan& plan, int32_t bos_id) {
  std::vector<int32_t> out(tokens.begin(), tokens.begin() + plan.n_chunks * plan.n_ctx);
  if (bos_id >= 0)
    for (int64_t c = 0; c < plan.n_chunks; ++c) out[c * plan.n_ctx] = bos_id;
  return out;
}

Result<std::unique_ptr<ChunkScorer>> ChunkScorer::create(const DecoderModel& model, int64_t n_ctx) {
  const ModelConfig& config = model.config();
  if (n_ctx < 4) return Status::error(fmt::format("--ctx {} is too small to score (use at least 4; 512 is usual)", n_ctx));
  if (n_ctx > config.context_length)
    return Status::error(fmt::format("--ctx {} is larger than the model's context length of {}", n_ctx,
                                     config.context_length));
  return std::unique_ptr<ChunkScorer>(new ChunkScorer(model, n_ctx));
}

ChunkScorer::ChunkScorer(const DecoderModel& model, int64_t n_ctx)
    : model_(model), vocab_size_(model.config().vocab_size), cache_(model.make_cache(n_ctx)),
      logits_(static_cast<size_t>(n_ctx * model.config().vocab_size)) {
  shape_.n_ctx = n_ctx;
  shape_.first = n_ctx / 2;
}

Result<std::span<const float>> ChunkScorer::score(std::span<const int32_t> chunk, ThreadPool& pool) {
  if (static_cast<int64_t>(chunk.size()) != shape_.n_ctx)
    return Status::error(fmt::format("internal: a chunk of {} tokens given to a scorer of n_ctx {}", chunk.size(),
                                     shape_.n_ctx));
  cache_.set_length(0);  // a fresh sequence: earlier chunks' keys and values are overwritten
  ANVIL_RETURN_IF_ERROR(model_.forward(chunk, cache_, pool, logits_.data(), /*all_logits=*/true));
  const int64_t vocab = vocab_size_;
  float* scored = logits_.data() + shape_.first * vocab;
  pool.parallel_for(shape_.scored_per_chunk(), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::span<float> row(scored + r * vocab, static_cast<size_t>(vocab));
      log_softmax(row, row);
    }
  });
  return std::span<const float>(scored, static_cast<size_t>(shape_.scored_per_chunk() * vocab));
}

}  // namespace anvil
