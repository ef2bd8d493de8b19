// Scheduler: each step decides how many tokens each request computes, under a token budget and
// a sequence limit. There are no separate prefill and decode phases: running requests go first
// (so decodes keep their pace), then waiting requests are admitted, their prompts chunked to the
// budget that is left. When the KV cache runs out, the lowest-priority running request is
// preempted: its blocks are freed and it goes back to waiting, to be recomputed later.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "engine/block_manager.h"
#include "engine/engine_request.h"

namespace anvil {

// The order of admission and of preemption: small and swappable.
class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  // True when a should be admitted before b (and preempted after it).
  virtual bool before(const EngineRequest& a, const EngineRequest& b) const = 0;
};

// "fcfs": arrival order. "sjf": shortest remaining prompt first, arrival order on ties.
Result<std::unique_ptr<SchedulingPolicy>> make_scheduling_policy(const std::string& name);

struct ScheduledChunk {
  EngineRequest* request;
  int64_t n_tokens;  // tokens [request->n_computed, + n_tokens) run this step
};

struct SchedulerLimits {
  int64_t max_num_seqs = 64;
  int64_t max_num_batched_tokens = 512;
  bool chunked_prefill = true;
};

class Scheduler {
 public:
  Scheduler(SchedulerLimits limits, std::unique_ptr<SchedulingPolicy> policy, BlockManager& blocks);

  void add(EngineRequest* request);     // a new request, waiting
  void remove(EngineRequest* request);  // finished or cancelled: leaves the queues, frees its blocks

  // One step's work. Preempted requests are appended to `preempted` (already back in waiting).
  std::vector<ScheduledChunk> schedule(std::vector<EngineRequest*>& preempted);

  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t running() const { return static_cast<int64_t>(running_.size()); }

 private:
  void insert_waiting(EngineRequest* request);
  void preempt(EngineRequest* victim);

  SchedulerLimits limits_;
  std::unique_ptr<SchedulingPolicy> policy_;
  BlockManager& blocks_;
  std::deque<EngineRequest*> waiting_;   // policy order
  std::vector<EngineRequest*> running_;  // policy order: the last is preempted first
};

}  // namespace anvil
