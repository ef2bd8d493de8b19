// EngineCore: the engine loop's state and one step of work: schedule, run the batched forward
// pass over the paged KV cache, sample per request, deliver outputs. Single-threaded by design
// (only the engine loop calls it); Engine adds the thread-safe front.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "engine/block_manager.h"
#include "engine/engine.h"
#include "engine/engine_request.h"
#include "engine/kv_block_pool.h"
#include "engine/scheduler.h"
#include "model/decoder_model.h"

namespace anvil {

class EngineCore {
 public:
  static Result<std::unique_ptr<EngineCore>> create(const DecoderModel& model, const Tokenizer* tokenizer,
                                                    ThreadPool& pool, const EngineOptions& options);

  // Request checks that need no loop state (safe from any thread).
  Status validate(const RequestParams& params) const;
  // The longest sequence (prompt + generated) a request may reach: the context length, or the
  // whole KV cache if that is smaller.
  int64_t max_sequence_tokens() const { return max_sequence_tokens_; }
  int64_t capacity_tokens() const { return pool_blocks_.n_blocks() * pool_blocks_.block_size(); }

  void add(RequestId id, RequestParams params, OutputCallback on_output);
  void cancel(RequestId id);  // delivers FinishReason::Abort
  void abort_all();
  // One step. False when there was nothing to run.
  Result<bool> step();
  bool has_work() const { return !requests_.empty(); }
  // Calls the callbacks of the outputs produced since the last call. Kept apart from step() so
  // that Engine publishes its metrics first: a client that saw a token sees its step counted.
  void deliver_outputs();
  void fill_metrics(EngineMetrics& m) const;

 private:
  EngineCore(const DecoderModel& model, const Tokenizer* tokenizer, ThreadPool& pool, const EngineOptions& options,
             KvBlockPool kv, std::unique_ptr<SchedulingPolicy> policy);
  // Appends a sampled token and checks every end condition; fills `out`.
  void accept_token(EngineRequest& r, int32_t id, std::optional<TokenLogprobs> logprobs, RequestOutput& out);
  void finish(EngineRequest& r, FinishReason reason, RequestOutput& out);
  void deliver_and_retire(EngineRequest& r, RequestOutput& out);
  RequestOutput new_output(const EngineRequest& r) const;

  const DecoderModel& model_;
  const Tokenizer* tokenizer_;
  ThreadPool& pool_;
  EngineOptions options_;
  KvBlockPool pool_blocks_;
  BlockManager blocks_;
  Scheduler scheduler_;
  int64_t max_sequence_tokens_;
  std::unordered_map<RequestId, std::unique_ptr<EngineRequest>> requests_;
  uint64_t arrivals_ = 0;
  std::vector<float> logits_;
  std::vector<std::pair<std::shared_ptr<OutputCallback>, RequestOutput>> pending_;
  EngineMetrics counters_;  // cumulative counters and last-step figures
};

}  // namespace anvil
