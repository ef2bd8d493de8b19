// Batched decode benchmark with llama-batched-bench's semantics: B sequences, each a prompt of
// PP random tokens then TG generated tokens, all through the continuous-batching engine.
// S_PP = B x PP / T_PP (until every sequence has its first token), S_TG = tokens generated after
// that / the time after that, S = all tokens / total time.
#pragma once

#include <cstdint>
#include <vector>

#include "anvil/status.h"
#include "core/progress.h"
#include "engine/engine.h"

namespace anvil {

struct BatchedBenchOptions {
  int64_t prompt_tokens = 128;
  int64_t generate_tokens = 64;
  std::vector<int64_t> batch_sizes = {1, 4, 16, 32, 64};
  EngineOptions engine;  // max_num_seqs is raised to each batch size
  uint64_t seed = 1234;
};

struct BatchedBenchRow {
  int64_t batch = 0;
  double prompt_seconds = 0, generate_seconds = 0, total_seconds = 0;
  double pp_tok_s = 0, tg_tok_s = 0, total_tok_s = 0;
  int64_t steps = 0;
  double forward_seconds = 0, step_seconds = 0;  // inside the model / whole engine steps
  // Share of step time outside the model forward (scheduling, sampling, delivery).
  double scheduler_overhead() const { return step_seconds > 0 ? (step_seconds - forward_seconds) / step_seconds : 0; }
};

Result<std::vector<BatchedBenchRow>> run_batched_bench(const DecoderModel& model, ThreadPool& pool,
                                                       const BatchedBenchOptions& options,
                                                       const ProgressCallback& progress = {});

}  // namespace anvil
