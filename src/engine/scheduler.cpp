// Token-budget scheduling with chunked prefill and preemption by recomputation.
#include "engine/scheduler.h"

#include <fmt/format.h>

#include <algorithm>

namespace anvil {

namespace {

class FcfsPolicy : public SchedulingPolicy {
 public:
  bool before(const EngineRequest& a, const EngineRequest& b) const override { return a.arrival < b.arrival; }
};

class ShortestPromptFirstPolicy : public SchedulingPolicy {
 public:
  bool before(const EngineRequest& a, const EngineRequest& b) const override {
    if (a.uncomputed() != b.uncomputed()) return a.uncomputed() < b.uncomputed();
    return a.arrival < b.arrival;
  }
};

}  // namespace

Result<std::unique_ptr<SchedulingPolicy>> make_scheduling_policy(const std::string& name) {
  if (name == "fcfs") return std::unique_ptr<SchedulingPolicy>(new FcfsPolicy());
  if (name == "sjf") return std::unique_ptr<SchedulingPolicy>(new ShortestPromptFirstPolicy());
  return Status::error(fmt::format("unknown scheduling policy '{}': use fcfs or sjf", name));
}

Scheduler::Scheduler(SchedulerLimits limits, std::unique_ptr<SchedulingPolicy> policy, BlockManager& blocks)
    : limits_(limits), policy_(std::move(policy)), blocks_(blocks) {}

void Scheduler::insert_waiting(EngineRequest* request) {
  request->state = RequestState::Waiting;
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), request,
                             [&](const EngineRequest* a, const EngineRequest* b) { return policy_->before(*a, *b); });
  waiting_.insert(it, request);
}

void Scheduler::add(EngineRequest* request) { insert_waiting(request); }

void Scheduler::remove(EngineRequest* request) {
  std::erase(waiting_, request);
  std::erase(running_, request);
  blocks_.release(request->table);
}

void Scheduler::preempt(EngineRequest* victim) {
  std::erase(running_, victim);
  blocks_.release(victim->table);  // its full blocks stay in the prefix cache until reused
  victim->n_computed = 0;
  insert_waiting(victim);
}

std::vector<ScheduledChunk> Scheduler::schedule(std::vector<EngineRequest*>& preempted) {
  std::vector<ScheduledChunk> out;
  int64_t budget = limits_.max_num_batched_tokens;

  // Running requests first, in priority order; each takes its next chunk (a decode token, or the
  // next piece of a chunked prompt). Out of blocks: preempt from the back until it fits.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    EngineRequest* r = running_[i];
    const int64_t n = std::min(r->uncomputed(), budget);
    if (n <= 0) {
      ++i;
      continue;
    }
    bool fits = blocks_.allocate(r->table, r->n_computed + n);
    while (!fits && running_.back() != r) {
      EngineRequest* victim = running_.back();
      // A victim scheduled earlier in this step would lose its chunk: never the case, since
      // victims come from the back and requests are scheduled from the front.
      preempt(victim);
      preempted.push_back(victim);
      fits = blocks_.allocate(r->table, r->n_computed + n);
    }
    if (!fits) {  // r itself is the lowest priority: it waits for blocks
      preempt(r);
      preempted.push_back(r);
      break;
    }
    out.push_back({r, n});
    budget -= n;
    ++i;
  }
  if (!preempted.empty()) return out;  // memory is tight: admit nothing new this step

  // Then waiting requests, while there is budget, a sequence slot and KV memory.
  while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < limits_.max_num_seqs) {
    EngineRequest* r = waiting_.front();
    if (r->table.blocks.empty()) {
      // At least one token is always computed, so that the step yields the next token's logits.
      const int64_t cached = blocks_.acquire_cached_prefix(r->tokens, r->uncomputed() - 1, r->table);
      r->n_computed = cached;
      if (r->generated() == 0) r->cached_prompt_tokens = cached;
    }
    int64_t n = r->uncomputed();
    if (n > budget) {
      if (!limits_.chunked_prefill) {
        // Whole prompts only: wait for a step with room (an empty step always has the full budget,
        // and submit() rejects prompts longer than the budget).
        if (!out.empty()) break;
      }
      n = budget;
    }
    if (!blocks_.allocate(r->table, r->n_computed + n)) {
      blocks_.release(r->table);  // give back the prefix hits; try again when blocks free up
      r->n_computed = 0;
      break;
    }
    waiting_.pop_front();
    r->state = RequestState::Running;
    running_.insert(std::upper_bound(running_.begin(), running_.end(), r,
                                     [&](const EngineRequest* a, const EngineRequest* b) { return policy_->before(*a, *b); }),
                    r);
    out.push_back({r, n});
    budget -= n;
  }
  return out;
}

}  // namespace anvil
