// Offline throughput benchmark (vLLM benchmark_throughput semantics): N requests submitted at once
// to the continuous-batching engine, run to completion; requests/s, total and output tokens/s.
// Also home of the timed "submit these prompts, run them all" loop the latency benchmark repeats.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "bench/bench_stats.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

namespace anvil {

// ---- One offline run ----------------------------------------------------------------------------

struct OfflineRunOptions {
  int64_t output_len = 128;                       // max_tokens, with EOS ignored: every request makes this many
  const std::atomic<bool>* interrupt = nullptr;   // when it turns true: cancel everything, return what finished
  std::function<void(int64_t new_tokens)> on_tokens;  // generated tokens as they arrive (progress)
};

struct OfflineRun {
  std::vector<RequestTiming> finished;  // requests that finished, in finishing order
  int64_t submitted = 0;
  int64_t started_prompt_tokens = 0;    // prompt tokens of the requests that produced a token
  int64_t output_tokens = 0;            // generated tokens delivered, finished requests or not
  double elapsed_s = 0;                 // first submission to the last finish (or the interruption)
  bool interrupted = false;
};

// Submits every prompt at once (greedy sampling, EOS ignored, no detokenization: the engine and the
// model are measured, not the sampler) and steps the engine synchronously until all finish. The
// engine must be idle and not started (no loop thread). A request that ends in an error fails the run.
Result<OfflineRun> run_offline_requests(Engine& engine, std::span<const std::vector<int32_t>> prompts,
                                        const OfflineRunOptions& options);

// ---- Inputs -------------------------------------------------------------------------------------

struct ThroughputScenario {
  std::string name;
  int64_t input_len = 0;
  int64_t output_len = 0;
};

// chat 128/128, generation-heavy 128/2048, summarization 2048/128, summarization-generation 2048/2048.
const std::vector<ThroughputScenario>& throughput_scenarios();
// The scenario by name; the error lists the known names.
Result<ThroughputScenario> find_throughput_scenario(const std::string& name);

// Ok when input_len, output_len >= 1 and a request of input_len + output_len tokens fits the
// model's context; `what` names the request shape in the message ("--input-len 2048 --output-len 128").
Status check_sequence_lengths(const ModelConfig& config, int64_t input_len, int64_t output_len, const std::string& what);

// `count` prompts of `len` ids drawn uniformly from [0, vocab_size) by a generator seeded with `seed`
// (the same seed gives the same prompts; different seeds do not share prefixes in practice).
std::vector<std::vector<int32_t>> random_prompts(int64_t count, int64_t len, int64_t vocab_size, uint64_t seed);

// A text file with one prompt per line (empty lines skipped), each encoded with the model's tokenizer
// (special tokens added as the vocabulary asks).
Result<std::vector<std::vector<int32_t>>> read_prompt_dataset(const std::string& path, const Tokenizer* tokenizer);

// ---- The benchmark ------------------------------------------------------------------------------

struct ThroughputBenchOptions {
  std::string name = "custom";   // the scenario's name (reports match runs by it)
  int64_t input_len = 128;       // random prompts' length; ignored when `prompts` is given
  int64_t output_len = 128;
  int64_t num_prompts = 64;      // with `prompts`: taken in order, wrapping around when there are fewer
  std::vector<std::vector<int32_t>> prompts;  // a dataset's prompts; empty: random ids
  uint64_t seed = 0;
  bool warmup = true;            // one short request first (page faults, caches), left out of the figures
  const std::atomic<bool>* interrupt = nullptr;
  ProgressCallback progress;     // generated tokens done / num_prompts * output_len
};

struct ThroughputResult : TtftTpotSummary {
  std::string name;
  double input_len = 0;          // mean prompt length
  int64_t output_len = 0;
  int64_t num_prompts = 0;
  int64_t completed = 0;         // requests finished (fewer only when interrupted)
  int64_t prompt_tokens = 0;     // of the requests that started generating
  int64_t output_tokens = 0;
  double elapsed_s = 0;
  double requests_per_s = 0;     // completed / elapsed
  double total_tok_s = 0;        // (prompt + output tokens) / elapsed
  double output_tok_s = 0;       // output tokens / elapsed
  double e2e_s_mean = 0;
  // The engine's counters over the timed run.
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prefix_queries = 0, prefix_hits = 0;
  double prefix_hit_rate = 0;    // prefix_hits / prefix_queries (prompt tokens found in the prefix cache)
  bool interrupted = false;
};

// Checks the lengths against the model and the KV cache (one request must fit it), runs the
// warm-up and the timed run on `engine` (idle, synchronous mode).
Result<ThroughputResult> run_throughput_bench(Engine& engine, const ThroughputBenchOptions& options);

}  // namespace anvil
