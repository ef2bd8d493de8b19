// Engine: continuous batching over one model. Requests are submitted from any thread; one engine
// loop (a thread of its own, or the caller through step()) schedules, runs batched forward passes
// over the paged KV cache, samples per request and delivers outputs to each request's callback.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "engine/request.h"
#include "model/decoder_model.h"
#include "tokenizer/tokenizer.h"

namespace anvil {

struct EngineOptions {
  int64_t max_num_seqs = 64;              // sequences per step at most
  int64_t max_num_batched_tokens = 512;   // tokens per step at most (prefill chunks + decodes)
  int64_t block_size = 16;                // KV cache rows per block
  DType kv_dtype = DType::F16;            // F32, F16, BF16, F8_E4M3 (fp8) or I8 (int8): model/kv_store.h
  int64_t kv_cache_bytes = 0;             // the block pool's size; 0: kv_cache_memory_fraction
  double kv_cache_memory_fraction = 0.4;  // of the memory available when the engine starts
  bool enable_prefix_caching = true;
  bool enable_chunked_prefill = true;     // off: a prompt runs whole in one step (it must fit the budget)
  std::string scheduling_policy = "fcfs";

  Status validate() const;
};

// A snapshot for /metrics, benchmarks and logs.
struct EngineMetrics {
  int64_t waiting = 0;             // submitted, not yet scheduled (or preempted)
  int64_t running = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;      // referenced by a live request
  int64_t kv_blocks_cached = 0;    // free but holding a reusable prefix
  int64_t prefix_queries = 0;      // prompt tokens looked up in the prefix cache
  int64_t prefix_hits = 0;         // of which found
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens_total = 0;     // prompt tokens computed (excluding prefix hits)
  int64_t generated_tokens_total = 0;
  int64_t requests_finished = 0;
  int64_t last_step_tokens = 0;
  int64_t last_step_seqs = 0;
  double last_step_seconds = 0.0;
  double forward_seconds_total = 0.0;  // inside the model
  double step_seconds_total = 0.0;     // whole steps (scheduling + forward + sampling + delivery)
  double prefix_hit_rate() const { return prefix_queries ? double(prefix_hits) / double(prefix_queries) : 0.0; }
  double kv_usage() const { return kv_blocks_total ? double(kv_blocks_used) / double(kv_blocks_total) : 0.0; }
};

class EngineCore;  // scheduler + KV + model execution; engine/engine_core.h

class Engine {
 public:
  // The model and tokenizer must outlive the engine. tokenizer may be null (then no stop strings
  // and no text in outputs). The pool runs the kernels; only the engine loop may use it.
  static Result<std::unique_ptr<Engine>> create(const DecoderModel& model, const Tokenizer* tokenizer,
                                                ThreadPool& pool, const EngineOptions& options);
  ~Engine();  // stops the loop; unfinished requests get FinishReason::Abort

  // Thread-safe. Checks the request (empty prompt, ids out of range, prompt + 1 over the context
  // length, bad sampling params, stop strings without a tokenizer) and queues it; errors come
  // back here, never through the callback.
  Result<RequestId> submit(RequestParams params, OutputCallback on_output);
  // Thread-safe. The request's blocks are freed and its callback gets a final FinishReason::Abort
  // output (from the engine loop), unless it already finished. Unknown ids are ignored.
  void cancel(RequestId id);

  // Runs the loop on a thread of its own until stop() (or destruction).
  void start();
  // Finishes nothing more: waits for the loop to exit after aborting every live request.
  void stop();
  // Synchronous use (tests, in-process benchmarks; do not mix with start()): one scheduler step.
  // Returns false when there was nothing to do.
  Result<bool> step();
  // Runs step() until every submitted request has finished.
  Status run_until_idle();

  bool has_work() const;
  EngineMetrics metrics() const;
  const EngineOptions& options() const { return options_; }
  int64_t kv_cache_capacity_tokens() const;  // blocks x block size
  const DecoderModel& model() const { return model_; }
  const Tokenizer* tokenizer() const { return tokenizer_; }

 private:
  Engine(const DecoderModel& model, const Tokenizer* tokenizer, ThreadPool& pool, const EngineOptions& options);
  void loop();

  const DecoderModel& model_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  std::unique_ptr<EngineCore> core_;

  // Submissions and cancellations reach the loop through these (the core is loop-only state).
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  struct Submission {
    RequestId id;
    RequestParams params;
    OutputCallback on_output;
  };
  std::deque<Submission> submitted_;
  std::vector<RequestId> cancelled_;
  std::atomic<RequestId> next_id_{1};
  bool stop_requested_ = false;
  std::thread thread_;
  EngineMetrics metrics_snapshot_;
};

}  // namespace anvil
