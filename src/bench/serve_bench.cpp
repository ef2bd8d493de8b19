// The serving benchmark's driver: a test request, then per concurrency level a warm-up and a timed
// run whose requests a dispatcher releases on the arrival schedule to a pool of worker threads.
//
//   dispatcher (caller's thread)          workers (one per in-flight request)
//   sleep until offsets[i] ──queue i──>   pop i ─> send_streaming_request ─> records[i]
//   poll: progress, Ctrl-C, grace          ...
#include "bench/serve_bench.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "anvil/version.h"
#include "bench/bench_report.h"
#include "bench/serve_client.h"
#include "bench/serve_metrics.h"
#include "bench/serve_workload.h"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

// Unbounded concurrency still needs a thread per in-flight request; past this many, requests that
// are due wait for a free worker (so "unbounded" means at most this many in flight).
constexpr int64_t kMaxWorkers = 1024;
constexpr auto kPollInterval = std::chrono::milliseconds(50);
// After the grace period, stop() is retried this long; a worker still stuck then is detached.
constexpr double kAbandonSeconds = 5.0;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

bool interrupted(const ServeBenchOptions& options) {
  return options.interrupt && options.interrupt->load(std::memory_order_relaxed);
}

int64_t worker_count(int64_t concurrency, int64_t requests) {
  const int64_t cap = concurrency > 0 ? concurrency : kMaxWorkers;
  return std::max<int64_t>(1, std::min(cap, requests));
}

nlohmann::json rate_json(double rate) { return std::isfinite(rate) ? nlohmann::json(rate) : nlohmann::json("inf"); }

Status validate(const ServeBenchOptions& o) {
  if (o.endpoint.empty() || o.endpoint.front() != '/')
    return Status::error(fmt::format("--endpoint '{}' must be a path starting with '/' (e.g. /v1/completions)",
                                     o.endpoint));
  if (o.concurrency.empty()) return Status::error("--concurrency needs at least one level");
  for (int64_t c : o.concurrency)
    if (c < 0) return Status::error(fmt::format("--concurrency {} is negative (0 means unbounded)", c));
  if (std::isnan(o.request_rate) || o.request_rate <= 0)
    return Status::error("--request-rate must be a positive number of requests/s, or inf");
  if (!std::isfinite(o.burstiness) || o.burstiness <= 0) return Status::error("--burstiness must be positive");
  if (o.num_prompts < 1) return Status::error("--num-prompts must be at least 1");
  if (o.warmup < 0) return Status::error("--warmup must not be negative");
  if (o.input_len < 1 || o.output_len < 1) return Status::error("--input-len and --output-len must be at least 1");
  if (!(o.range_ratio >= 0 && o.range_ratio < 1)) return Status::error("--range-ratio must be in [0, 1)");
  for (double p : o.percentiles)
    if (!(p >= 0 && p <= 100)) return Status::error(fmt::format("--percentiles: {} is not in [0, 100]", p));
  for (const std::optional<double>& bound : {o.slo.ttft_ms, o.slo.tpot_ms, o.slo.e2el_ms})
    if (bound && !(*bound > 0)) return Status::error("--slo bounds must be positive milliseconds");
  if (!std::isfinite(o.request_timeout_s) || o.request_timeout_s <= 0)
    return Status::error("--timeout must be a positive number of seconds");
  if (o.random_vocab_size < 1) return Status::error("--random-vocab-size must be at least 1");
  if (!o.extra_body.is_object()) return Status::error("--extra-body must be a JSON object");
  if (!(o.interrupt_grace_s >= 0)) return Status::error("the interrupt grace period must not be negative");
  return Status::ok();
}

// ---- One batch of requests on worker threads ----------------------------------------------------

// Everything the workers touch lives here, owned jointly, so a worker detached after Ctrl-C (stuck
// in a connect that stop() cannot reach) never outlives what it uses.
struct BatchState {
  ServeTarget target;
  std::string path;
  bool chat = false;
  double timeout_s = 0;
  std::vector<std::string> bodies;
  Clock::time_point run_start;

  std::mutex mutex;
  std::condition_variable work_ready, worker_done;
  std::deque<size_t> queue;
  bool closed = false;
  int64_t finished_workers = 0;
  std::vector<std::optional<ServeRequestRecord>> records;  // none: not sent, or abandoned
  int64_t done = 0;
  Clock::time_point last_finish;

  std::atomic<bool> cancel{false};
  std::mutex clients_mutex;
  std::vector<httplib::Client*> clients;  // per worker: its request's client while one runs

  void stop_clients() {
    std::lock_guard<std::mutex> lock(clients_mutex);
    for (httplib::Client* client : clients)
      if (client) client->stop();
  }
};

void worker_loop(const std::shared_ptr<BatchState>& state, size_t slot) {
  while (true) {
    size_t index = 0;
    {
      std::unique_lock<std::mutex> lock(state->mutex);
      state->work_ready.wait(lock, [&] { return !state->queue.empty() || state->closed; });
      if (state->queue.empty()) break;
      index = state->queue.front();
      state->queue.pop_front();
    }
    StreamRequestOptions request;
    request.path = state->path;
    request.body = state->bodies[index];
    request.chat = state->chat;
    request.timeout_s = state->timeout_s;
    request.run_start = state->run_start;
    request.cancel = &state->cancel;
    request.on_client = [&state, slot](httplib::Client* client) {
      std::lock_guard<std::mutex> lock(state->clients_mutex);
      state->clients[slot] = client;
      if (client && state->cancel.load()) client->stop();
    };
    bool abandoned = false;
    ServeRequestRecord record = send_streaming_request(state->target, request, &abandoned);
    record.index = static_cast<int64_t>(index);
    std::lock_guard<std::mutex> lock(state->mutex);
    if (!abandoned) state->records[index] = std::move(record);
    ++state->done;
    state->last_finish = std::max(state->last_finish, Clock::now());
  }
  std::lock_guard<std::mutex> lock(state->mutex);
  ++state->finished_workers;
  state->worker_done.notify_all();
}

struct BatchOutcome {
  std::vector<ServeRequestRecord> records;  // finished requests (successful or failed), by index
  double duration_s = 0;                    // run start to the last finish (or to Ctrl-C, if later)
  bool interrupted = false;
};

// Sends `bodies[i]` at run start + offsets[i], at most `concurrency` at a time (0: unbounded).
BatchOutcome run_batch(const ServeTarget& target, const ServeBenchOptions& options, bool chat,
                       std::vector<std::string> bodies, const std::vector<double>& offsets, int64_t concurrency) {
  auto state = std::make_shared<BatchState>();
  state->target = target;
  state->path = options.endpoint;
  state->chat = chat;
  state->timeout_s = options.request_timeout_s;
  state->bodies = std::move(bodies);
  const size_t total = state->bodies.size();
  state->records.resize(total);
  const auto workers = static_cast<size_t>(worker_count(concurrency, static_cast<int64_t>(total)));
  state->clients.assign(workers, nullptr);
  state->run_start = state->last_finish = Clock::now();

  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t slot = 0; slot < workers; ++slot) threads.emplace_back(worker_loop, state, slot);

  auto report_progress = [&] {
    if (!options.progress) return;
    int64_t done = 0;
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      done = state->done;
    }
    options.progress(static_cast<uint64_t>(done), total);
  };
  std::optional<Clock::time_point> interrupted_at;
  auto note_interrupt = [&] {
    if (!interrupted_at && interrupted(options)) interrupted_at = Clock::now();
    return interrupted_at.has_value();
  };

  // Dispatch on the arrival schedule.
  for (size_t i = 0; i < total && !note_interrupt(); ++i) {
    const Clock::time_point due =
        state->run_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(offsets[i]));
    while (Clock::now() < due && !note_interrupt()) {
      std::this_thread::sleep_for(std::min<Clock::duration>(due - Clock::now(), kPollInterval));
      report_progress();
    }
    if (interrupted_at) break;
    std::lock_guard<std::mutex> lock(state->mutex);
    state->queue.push_back(i);
    state->work_ready.notify_one();
  }
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    state->closed = true;
    state->work_ready.notify_all();
  }

  // Wait for the workers; on Ctrl-C drop what is queued, give in-flight requests the grace period,
  // then cut their connections.
  bool detached = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(state->mutex);
      if (state->worker_done.wait_for(lock, kPollInterval,
                                      [&] { return state->finished_workers == static_cast<int64_t>(workers); }))
        break;
      if (note_interrupt()) state->queue.clear();
    }
    report_progress();
    if (!interrupted_at) continue;
    const double since = seconds_between(*interrupted_at, Clock::now());
    if (since >= options.interrupt_grace_s) {
      state->cancel.store(true);
      state->stop_clients();
    }
    if (since >= options.interrupt_grace_s + kAbandonSeconds) {
      detached = true;
      break;
    }
  }
  for (std::thread& thread : threads) {
    if (detached) {
      thread.detach();
    } else {
      thread.join();
    }
  }
  report_progress();

  BatchOutcome outcome;
  outcome.interrupted = interrupted_at.has_value();
  std::lock_guard<std::mutex> lock(state->mutex);
  for (std::optional<ServeRequestRecord>& record : state->records)
    if (record) outcome.records.push_back(std::move(*record));
  Clock::time_point end = state->last_finish;
  if (interrupted_at) end = std::max(end, *interrupted_at);
  outcome.duration_s = seconds_between(state->run_start, end);
  return outcome;
}

std::vector<std::string> request_bodies(const std::vector<ServeRequestSpec>& requests, const std::string& model,
                                        bool chat, const ServeBenchOptions& options) {
  std::vector<std::string> bodies;
  bodies.reserve(requests.size());
  for (const ServeRequestSpec& r : requests)
    bodies.push_back(serve_request_body(r, model, chat, options.ignore_eos, options.extra_body).dump());
  return bodies;
}

nlohmann::json config_json(const ServeBenchOptions& o, const std::string& model, bool chat) {
  nlohmann::json slo = nullptr;
  if (!o.slo.empty()) {
    slo = nlohmann::json::object();
    if (o.slo.ttft_ms) slo["ttft_ms"] = *o.slo.ttft_ms;
    if (o.slo.tpot_ms) slo["tpot_ms"] = *o.slo.tpot_ms;
    if (o.slo.e2el_ms) slo["e2el_ms"] = *o.slo.e2el_ms;
  }
  return {{"base_url", o.base_url},
          {"endpoint", o.endpoint},
          {"api", chat ? "chat" : "completions"},
          {"model", model},
          {"concurrency", o.concurrency},
          {"request_rate", rate_json(o.request_rate)},
          {"burstiness", o.burstiness},
          {"num_prompts", o.num_prompts},
          {"warmup", o.warmup},
          {"input_len", o.dataset_path.empty() ? nlohmann::json(o.input_len) : nlohmann::json(nullptr)},
          {"output_len", o.output_len},
          {"range_ratio", o.range_ratio},
          {"dataset", o.dataset_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.dataset_path)},
          {"random_vocab_size", o.random_vocab_size},
          {"ignore_eos", o.ignore_eos},
          {"temperature", o.extra_body.value("temperature", nlohmann::json(0.0))},
          {"extra_body", o.extra_body},
          {"percentiles", o.percentiles},
          {"slo", slo},
          {"seed", o.seed},
          {"request_timeout_s", o.request_timeout_s},
          {"max_workers", kMaxWorkers}};
}

Status append_jsonl(const std::string& path, const std::vector<ServeRequestRecord>& records, int64_t concurrency) {
  std::ofstream out(path, std::ios::app);
  if (!out) return Status::error(path + ": cannot write the per-request records");
  for (const ServeRequestRecord& r : records) out << request_record_json(r, concurrency).dump() << '\n';
  if (!out) return Status::error(path + ": write failed");
  return Status::ok();
}

}  // namespace

Result<nlohmann::json> run_serve_bench(const ServeBenchOptions& options) {
  ANVIL_RETURN_IF_ERROR(validate(options));
  ANVIL_ASSIGN_OR_RETURN(ServeTarget target, parse_serve_target(options.base_url, options.api_key));
  const bool chat = is_chat_endpoint(options.endpoint);
  std::vector<ServeDatasetEntry> dataset;
  if (!options.dataset_path.empty()) {
    ANVIL_ASSIGN_OR_RETURN(dataset, read_serve_dataset(options.dataset_path));
    for (size_t i = 0; i < dataset.size(); ++i)
      if (chat && dataset[i].prompt.is_array())
        return Status::error(fmt::format("{}: prompt {} is a list of token ids, which {} (chat) cannot send; use "
                                         "--endpoint /v1/completions or text prompts",
                                         options.dataset_path, i + 1, options.endpoint));
  }
  if (!options.jsonl_path.empty()) {
    std::ofstream probe(options.jsonl_path, std::ios::app);  // fail now, not after a long run
    if (!probe) return Status::error(options.jsonl_path + ": cannot write the per-request records");
  }
  std::string model = options.model;
  if (model.empty()) { ANVIL_ASSIGN_OR_RETURN(model, discover_model_id(target, options.request_timeout_s)); }

  int64_t max_workers = 1;
  for (int64_t c : options.concurrency) max_workers = std::max(max_workers, worker_count(c, options.num_prompts));
  nlohmann::json report = {{"bench", "serve"},
                           {"schema_version", kBenchReportSchemaVersion},
                           {"anvil_version", kAnvilVersion},
                           {"date", utc_timestamp()},
                           {"machine", bench_machine_json(static_cast<int>(max_workers))},
                           {"config", config_json(options, model, chat)},
                           {"results", nlohmann::json::array()},
                           {"interrupted", false}};
  auto phase = [&](const std::string& name) {
    if (options.on_phase) options.on_phase(name);
  };

  // vLLM's initial test run: one request, not measured, whose failure ends the benchmark before
  // hundreds of requests repeat the same error (wrong model name, a rejected field, no server).
  phase("test request");
  {
    const std::vector<ServeRequestSpec> test = make_serve_requests(options, dataset, 1, ServeStream::ServeStreamTest, 0);
    BatchOutcome outcome = run_batch(target, options, chat, request_bodies(test, model, chat, options), {0.0}, 1);
    if (outcome.interrupted && outcome.records.empty()) {
      report["interrupted"] = true;
      return report;
    }
    if (!outcome.records.empty() && !outcome.records.front().success)
      return Status::error(fmt::format("{}{}: the first request failed: {}", options.base_url, options.endpoint,
                                       outcome.records.front().error));
  }

  for (size_t level = 0; level < options.concurrency.size(); ++level) {
    const int64_t concurrency = options.concurrency[level];
    const std::string level_name = concurrency > 0 ? fmt::format("concurrency {}", concurrency)
                                                   : std::string("unbounded concurrency");
    if (options.warmup > 0) {
      phase("warm-up, " + level_name);
      const std::vector<ServeRequestSpec> warm =
          make_serve_requests(options, dataset, options.warmup, ServeStream::ServeStreamWarmup, level);
      BatchOutcome outcome = run_batch(target, options, chat, request_bodies(warm, model, chat, options),
                                       std::vector<double>(warm.size(), 0.0), concurrency);
      if (outcome.interrupted) {
        report["interrupted"] = true;
        break;
      }
    }
    phase(level_name);
    const std::vector<ServeRequestSpec> requests =
        make_serve_requests(options, dataset, options.num_prompts, ServeStream::ServeStreamTimed, level);
    const std::vector<double> offsets =
        arrival_offsets_s(options.num_prompts, options.request_rate, options.burstiness, options.seed + level);
    BatchOutcome outcome =
        run_batch(target, options, chat, request_bodies(requests, model, chat, options), offsets, concurrency);
    for (ServeRequestRecord& record : outcome.records)
      record.known_prompt_tokens = requests[static_cast<size_t>(record.index)].known_prompt_tokens;

    const ServeRunMetrics metrics =
        compute_run_metrics(outcome.records, outcome.duration_s, options.percentiles, options.slo);
    nlohmann::json result = {{"concurrency", concurrency},
                             {"request_rate", rate_json(options.request_rate)},
                             {"burstiness", options.burstiness},
                             {"num_prompts", options.num_prompts},
                             {"warmup", options.warmup},
                             {"interrupted", outcome.interrupted}};
    result.update(run_metrics_json(metrics));
    report["results"].push_back(result);
    if (!options.jsonl_path.empty()) ANVIL_RETURN_IF_ERROR(append_jsonl(options.jsonl_path, outcome.records, concurrency));
    if (options.on_run_done) options.on_run_done(result, outcome.records);
    if (outcome.interrupted) {
      report["interrupted"] = true;
      break;
    }
  }
  return report;
}

}  // namespace anvil
