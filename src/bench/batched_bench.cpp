// llama-batched-bench on the engine: one warm-up batch, then each batch size once.
#include "bench/batched_bench.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

namespace anvil {

namespace {

using Clock = std::chrono::steady_clock;

Result<BatchedBenchRow> run_one(const DecoderModel& model, ThreadPool& pool, const BatchedBenchOptions& options,
                                int64_t batch, std::mt19937_64& rng) {
  EngineOptions eo = options.engine;
  eo.max_num_seqs = std::max(eo.max_num_seqs, batch);
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(model, nullptr, pool, eo));
  const int64_t vocab = model.config().vocab_size;
  int64_t first_tokens = 0, generated_after_prefill = 0;
  bool prefill_done = false;
  const auto on_output = [&](const RequestOutput& out) {
    if (out.completion_tokens == 1) ++first_tokens;
    else if (prefill_done) generated_after_prefill += static_cast<int64_t>(out.new_tokens.size());
  };
  for (int64_t b = 0; b < batch; ++b) {
    RequestParams p;
    for (int64_t i = 0; i < options.prompt_tokens; ++i) p.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    p.sampling.temperature = 0.0f;
    p.max_tokens = options.generate_tokens;
    p.ignore_eos = true;
    p.detokenize = false;
    ANVIL_ASSIGN_OR_RETURN(RequestId id, engine->submit(std::move(p), on_output));
    (void)id;
  }
  BatchedBenchRow row;
  row.batch = batch;
  const auto start = Clock::now();
  auto prefill_end = start;
  while (engine->has_work()) {
    ANVIL_ASSIGN_OR_RETURN(bool ran, engine->step());
    if (!ran) return Status::error("the engine made no progress (KV cache too small for one sequence?)");
    if (!prefill_done && first_tokens == batch) {
      prefill_done = true;
      prefill_end = Clock::now();
    }
  }
  const auto end = Clock::now();
  row.prompt_seconds = std::chrono::duration<double>(prefill_end - start).count();
  row.generate_seconds = std::chrono::duration<double>(end - prefill_end).count();
  row.total_seconds = std::chrono::duration<double>(end - start).count();
  row.pp_tok_s = batch * options.prompt_tokens / row.prompt_seconds;
  row.tg_tok_s = row.generate_seconds > 0 ? generated_after_prefill / row.generate_seconds : 0;
  row.total_tok_s = batch * (options.prompt_tokens + options.generate_tokens) / row.total_seconds;
  const EngineMetrics m = engine->metrics();
  row.steps = m.steps;
  row.forward_seconds = m.forward_seconds_total;
  row.step_seconds = m.step_seconds_total;
  if (m.preemptions > 0)
    return Status::error(fmt::format("batch {} preempted {} times: the KV cache is too small for this benchmark",
                                     batch, m.preemptions));
  return row;
}

}  // namespace

Result<std::vector<BatchedBenchRow>> run_batched_bench(const DecoderModel& model, ThreadPool& pool,
                                                       const BatchedBenchOptions& options,
                                                       const ProgressCallback& progress) {
  if (options.prompt_tokens < 1 || options.generate_tokens < 2)
    return Status::error("the prompt needs >= 1 token and generation >= 2 tokens");
  if (options.batch_sizes.empty()) return Status::error("no batch sizes given");
  for (int64_t b : options.batch_sizes)
    if (b < 1) return Status::error(fmt::format("batch size {} must be at least 1", b));
  if (options.prompt_tokens + options.generate_tokens > model.config().context_length)
    return Status::error(fmt::format("{} + {} tokens exceed the model's context length of {}", options.prompt_tokens,
                                     options.generate_tokens, model.config().context_length));
  std::mt19937_64 rng(options.seed);
  // Warm-up: first-touch of the KV pages and oneDNN's primitive caches, not measured.
  ANVIL_ASSIGN_OR_RETURN(BatchedBenchRow warm, run_one(model, pool, options, options.batch_sizes.front(), rng));
  (void)warm;
  std::vector<BatchedBenchRow> rows;
  for (size_t i = 0; i < options.batch_sizes.size(); ++i) {
    if (progress) progress(static_cast<int64_t>(i), static_cast<int64_t>(options.batch_sizes.size()));
    ANVIL_ASSIGN_OR_RETURN(BatchedBenchRow row, run_one(model, pool, options, options.batch_sizes[i], rng));
    rows.push_back(row);
  }
  if (progress) progress(static_cast<int64_t>(options.batch_sizes.size()), static_cast<int64_t>(options.batch_sizes.size()));
  return rows;
}

}  // namespace anvil
