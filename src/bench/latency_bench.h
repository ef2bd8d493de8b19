// Latency benchmark (vLLM benchmark_latency semantics): per batch size, B requests of random prompt
// ids submitted at once with EOS ignored; latency = time until all B finished; warm-up iterations
// first, then timed ones. Also TTFT and TPOT of every request of the timed iterations.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "bench/bench_stats.h"
#include "core/progress.h"
#include "engine/engine.h"

namespace anvil {

// The figures reports show for one batch size (TTFT: submission to a request's first token; TPOT:
// (e2e - ttft) / (output tokens - 1)).
struct LatencySummary : TtftTpotSummary {
  double avg_latency_s = 0, std_latency_s = 0;
  double p50_latency_s = 0, p90_latency_s = 0, p99_latency_s = 0;
  double output_tok_s = 0;   // batch_size * output_len / avg latency
};

struct LatencyBatchResult {
  int64_t batch_size = 0;
  int64_t output_len = 0;
  std::vector<double> latencies_s;      // one per timed iteration
  std::vector<RequestTiming> requests;  // every request of the timed iterations
  // The engine's counters over the timed iterations.
  int64_t steps = 0;
  int64_t preemptions = 0;
  double prefix_hit_rate = 0;
  LatencySummary summary() const;
};

struct LatencyBenchOptions {
  int64_t input_len = 128;
  int64_t output_len = 128;
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8};
  int num_iters_warmup = 1;
  int num_iters = 3;
  uint64_t seed = 0;  // every iteration draws fresh prompts from it, so the prefix cache never helps
  const std::atomic<bool>* interrupt = nullptr;  // when it turns true: stop, keep the finished batch sizes
  ProgressCallback progress;  // generated tokens done / total, warm-up included
  std::function<void(const LatencyBatchResult&)> on_batch_done;  // after each batch size
};

struct LatencyBenchResult {
  std::vector<LatencyBatchResult> batches;  // finished batch sizes, in the order asked
  std::vector<std::string> notes;           // things a reader should know (the cache forced preemptions)
  bool interrupted = false;
};

// "1,2,4,8" -> {1, 2, 4, 8}; each >= 1, no duplicates.
Result<std::vector<int64_t>> parse_batch_sizes(const std::string& text);

// Checks the options against the model's context, the engine's max_num_seqs (a batch must run at
// once) and the iteration counts, with messages that name the flag to change.
Status check_latency_options(const LatencyBenchOptions& options, const ModelConfig& config,
                             const EngineOptions& engine_options);

// Runs every batch size on `engine` (idle, synchronous mode).
Result<LatencyBenchResult> run_latency_bench(Engine& engine, const LatencyBenchOptions& options);

}  // namespace anvil
