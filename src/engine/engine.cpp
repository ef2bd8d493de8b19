// Engine: the thread-safe front of EngineCore (submission and cancellation queues, the loop
// thread, metric snapshots).
#include "engine/engine.h"

#include "engine/engine_core.h"

namespace anvil {

Engine::Engine(const DecoderModel& model, const Tokenizer* tokenizer, ThreadPool& pool, const EngineOptions& options)
    : model_(model), tokenizer_(tokenizer), options_(options) {}

Result<std::unique_ptr<Engine>> Engine::create(const DecoderModel& model, const Tokenizer* tokenizer,
                                               ThreadPool& pool, const EngineOptions& options) {
  std::unique_ptr<Engine> engine(new Engine(model, tokenizer, pool, options));
  ANVIL_ASSIGN_OR_RETURN(engine->core_, EngineCore::create(model, tokenizer, pool, options));
  engine->core_->fill_metrics(engine->metrics_snapshot_);
  return engine;
}

Engine::~Engine() { stop(); }

Result<RequestId> Engine::submit(RequestParams params, OutputCallback on_output) {
  ANVIL_RETURN_IF_ERROR(core_->validate(params));
  const RequestId id = next_id_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_requested_) return Status::error("the engine is shutting down");
    submitted_.push_back({id, std::move(params), std::move(on_output)});
    ++metrics_snapshot_.waiting;  // visible before the loop picks it up
  }
  wake_.notify_one();
  return id;
}

void Engine::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_.push_back(id);
  }
  wake_.notify_one();
}

Result<bool> Engine::step() {
  std::deque<Submission> submitted;
  std::vector<RequestId> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    submitted.swap(submitted_);
    cancelled.swap(cancelled_);
  }
  for (Submission& s : submitted) core_->add(s.id, std::move(s.params), std::move(s.on_output));
  for (RequestId id : cancelled) core_->cancel(id);
  Result<bool> ran = core_->step();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    core_->fill_metrics(metrics_snapshot_);
    metrics_snapshot_.waiting += static_cast<int64_t>(submitted_.size());
  }
  core_->deliver_outputs();  // after the metrics: what a client sees is already counted
  return ran;
}

Status Engine::run_until_idle() {
  while (has_work()) {
    ANVIL_ASSIGN_OR_RETURN(bool ran, step());
    (void)ran;
  }
  return Status::ok();
}

bool Engine::has_work() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !submitted_.empty() || !cancelled_.empty() || metrics_snapshot_.running > 0 || metrics_snapshot_.waiting > 0;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return metrics_snapshot_;
}

int64_t Engine::kv_cache_capacity_tokens() const { return core_->capacity_tokens(); }

void Engine::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { loop(); });
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_requested_ || !submitted_.empty() || !cancelled_.empty() || metrics_snapshot_.running > 0 ||
               metrics_snapshot_.waiting > 0;
      });
      if (stop_requested_) return;
    }
    Result<bool> ran = step();
    (void)ran;  // step() reports request failures through the requests themselves
  }
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_requested_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!core_) return;  // create() failed before the core existed
  // The loop is gone: this thread may touch the core. Everything unfinished ends with Abort.
  std::deque<Submission> submitted;
  std::vector<RequestId> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    submitted.swap(submitted_);
    cancelled.swap(cancelled_);
  }
  for (Submission& s : submitted) core_->add(s.id, std::move(s.params), std::move(s.on_output));
  core_->abort_all();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    core_->fill_metrics(metrics_snapshot_);
  }
  core_->deliver_outputs();
}

}  // namespace anvil
