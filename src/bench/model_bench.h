// Model benchmark with llama-bench's semantics: pp (prompt processing) and tg (token generation).
#pragma once

#include <cstdint>
#include <vector>

#include "anvil/status.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "model/decoder_model.h"

namespace anvil {

struct ModelBenchOptions {
  int64_t prompt_tokens = 512;    // pp: one forward pass over this many tokens after `depth` cached ones
  int64_t generate_tokens = 128;  // tg: this many single-token forward passes after `depth` cached ones
  int64_t depth = 0;              // llama-bench's -d: tokens in the KV cache before each test (filled untimed)
  int repetitions = 5;            // timed runs of each test, after one warm-up run
  DType kv_dtype = DType::F16;    // the KV cache, as the engine keeps it (f32, f16, bf16, fp8, int8)
  uint64_t seed = 1234;           // random token ids
};

struct BenchStat {
  int64_t tokens = 0;
  std::vector<double> seconds;  // one per repetition
  double mean_tokens_per_second() const;
  double stddev_tokens_per_second() const;
};

struct ModelBenchResult {
  BenchStat prompt;    // empty when prompt_tokens == 0
  BenchStat generate;  // empty when generate_tokens == 0
  uint64_t weight_bytes_per_token = 0;  // what one decode step reads (see weight_bytes_per_token())
};

// Bytes of weights one decode step reads: every layer matrix and norm, the final norm and the
// output projection (token_embd when tied); an untied embedding table contributes one row only.
uint64_t weight_bytes_per_token(const Checkpoint& checkpoint);

Result<ModelBenchResult> run_model_bench(const DecoderModel& model, ThreadPool& pool,
                                         const ModelBenchOptions& options, const ProgressCallback& progress = {});

}  // namespace anvil
