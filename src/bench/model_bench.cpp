// pp/tg measurement loops (random prompt ids, one warm-up run) on the engine's paged KV cache:
// `depth` cached tokens (filled once, untimed), then each run writes its tokens after them.
#include "bench/model_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <span>

#include "engine/kv_block_pool.h"
#include "model/forward_batch.h"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

double BenchStat::mean_tokens_per_second() const {
  if (seconds.empty()) return 0.0;
  double sum = 0;
  for (double s : seconds) sum += tokens / s;
  return sum / static_cast<double>(seconds.size());
}

double BenchStat::stddev_tokens_per_second() const {
  if (seconds.size() < 2) return 0.0;
  const double mean = mean_tokens_per_second();
  double sum = 0;
  for (double s : seconds) sum += (tokens / s - mean) * (tokens / s - mean);
  return std::sqrt(sum / static_cast<double>(seconds.size() - 1));
}

// Codes and, for the scaled types (F8_E4M3, I8, I4), their scales and zero points, which a
// decode step streams as well.
uint64_t weight_bytes_per_token(const Checkpoint& checkpoint) {
  uint64_t bytes = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (name == "token_embd.weight" && !checkpoint.config.tied_embeddings) {
      bytes += tensor.row_bytes() + tensor.scale_bytes() / static_cast<uint64_t>(std::max<int64_t>(1, tensor.rows()));
      continue;
    }
    bytes += tensor.nbytes + tensor.scale_bytes();
  }
  return bytes;
}

Result<ModelBenchResult> run_model_bench(const DecoderModel& model, ThreadPool& pool, const ModelBenchOptions& options,
                                         const ProgressCallback& progress) {
  const ModelConfig& c = model.config();
  if (options.prompt_tokens < 0 || options.generate_tokens < 0 || options.depth < 0 || options.repetitions < 1)
    return Status::error("bench: token counts and the depth must be >= 0, repetitions >= 1");
  const int64_t needed = options.depth + std::max(options.prompt_tokens, options.generate_tokens);
  if (needed > c.context_length)
    return Status::error(fmt::format("bench: {} tokens{} exceed the model's context length of {}", needed,
                                     options.depth > 0 ? fmt::format(" (depth {} included)", options.depth) : "",
                                     c.context_length));

  // One sequence's blocks of the engine's pool, in order.
  constexpr int64_t kBlockSize = 16;
  const int64_t n_blocks = std::max<int64_t>(1, (needed + kBlockSize - 1) / kBlockSize);
  ANVIL_ASSIGN_OR_RETURN(KvBlockPool kv, KvBlockPool::create(c, options.kv_dtype, kBlockSize, n_blocks));
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int64_t b = 0; b < n_blocks; ++b) table[b] = static_cast<int32_t>(b);
  std::vector<float> logits(c.vocab_size);
  // The chunk of tokens at [first, first + tokens.size()), logits of its last token.
  auto forward = [&](std::span<const int32_t> tokens, int64_t first) {
    ForwardBatch batch;
    batch.tokens.assign(tokens.begin(), tokens.end());
    SequenceChunk& chunk = batch.chunks.emplace_back();
    chunk.first_position = first;
    chunk.n_tokens = static_cast<int64_t>(tokens.size());
    chunk.block_table = table;
    chunk.want_logits = true;
    return model.forward_batch(batch, kv.view(), pool, logits.data());
  };

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  std::vector<int32_t> depth(options.depth), prompt(options.prompt_tokens);
  for (int32_t& id : depth) id = token(rng);
  for (int32_t& id : prompt) id = token(rng);
  // The depth's rows, written once in prefill-sized chunks: later runs write only after them.
  constexpr int64_t kDepthChunk = 512;
  for (int64_t at = 0; at < options.depth; at += kDepthChunk)
    ANVIL_RETURN_IF_ERROR(forward(std::span<const int32_t>(depth).subspan(at, std::min(kDepthChunk, options.depth - at)), at));

  ModelBenchResult result;
  result.weight_bytes_per_token = weight_bytes_per_token(model.checkpoint());
  result.prompt.tokens = options.prompt_tokens;
  result.generate.tokens = options.generate_tokens;
  const int runs = options.repetitions + 1;  // the first is a warm-up
  const uint64_t total_steps = static_cast<uint64_t>(runs) * ((options.prompt_tokens > 0) + (options.generate_tokens > 0));
  uint64_t steps = 0;

  if (options.prompt_tokens > 0) {
    for (int run = 0; run < runs; ++run) {
      const auto start = Clock::now();
      ANVIL_RETURN_IF_ERROR(forward(prompt, options.depth));
      if (run > 0) result.prompt.seconds.push_back(seconds_since(start));
      if (progress) progress(++steps, total_steps);
    }
  }
  if (options.generate_tokens > 0) {
    for (int run = 0; run < runs; ++run) {
      int32_t next[1] = {token(rng)};
      const auto start = Clock::now();
      for (int64_t i = 0; i < options.generate_tokens; ++i) {
        ANVIL_RETURN_IF_ERROR(forward(next, options.depth + i));
        next[0] = token(rng);  // the ids do not change the work; sampling is not what tg measures
      }
      if (run > 0) result.generate.seconds.push_back(seconds_since(start));
      if (progress) progress(++steps, total_steps);
    }
  }
  return result;
}

}  // namespace anvil
