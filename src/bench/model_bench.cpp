// pp/tg measurement loops (random prompt ids, empty KV cache per run, one warm-up run).
#include "bench/model_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

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
  if (options.prompt_tokens < 0 || options.generate_tokens < 0 || options.repetitions < 1)
    return Status::error("bench: token counts must be >= 0 and repetitions >= 1");
  const int64_t needed = std::max(options.prompt_tokens, options.generate_tokens);
  if (needed > c.context_length)
    return Status::error(fmt::format("bench: {} tokens exceed the model's context length of {}", needed,
                                     c.context_length));

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  std::vector<int32_t> prompt(options.prompt_tokens);
  for (int32_t& id : prompt) id = token(rng);
  std::vector<float> logits(c.vocab_size);
  ModelBenchResult result;
  result.weight_bytes_per_token = weight_bytes_per_token(model.checkpoint());
  result.prompt.tokens = options.prompt_tokens;
  result.generate.tokens = options.generate_tokens;
  const int runs = options.repetitions + 1;  // the first is a warm-up
  const uint64_t total_steps = static_cast<uint64_t>(runs) * ((options.prompt_tokens > 0) + (options.generate_tokens > 0));
  uint64_t steps = 0;

  if (options.prompt_tokens > 0) {
    for (int run = 0; run < runs; ++run) {
      SequenceKvCache cache = model.make_cache(options.prompt_tokens);
      const auto start = Clock::now();
      ANVIL_RETURN_IF_ERROR(model.forward(prompt, cache, pool, logits.data(), false));
      if (run > 0) result.prompt.seconds.push_back(seconds_since(start));
      if (progress) progress(++steps, total_steps);
    }
  }
  if (options.generate_tokens > 0) {
    for (int run = 0; run < runs; ++run) {
      SequenceKvCache cache = model.make_cache(options.generate_tokens);
      int32_t next[1] = {token(rng)};
      const auto start = Clock::now();
      for (int64_t i = 0; i < options.generate_tokens; ++i) {
        ANVIL_RETURN_IF_ERROR(model.forward(next, cache, pool, logits.data(), false));
        next[0] = token(rng);  // the ids do not change the work; sampling is not what tg measures
      }
      if (run > 0) result.generate.seconds.push_back(seconds_since(start));
      if (progress) progress(++steps, total_steps);
    }
  }
  return result;
}

}  // namespace anvil
