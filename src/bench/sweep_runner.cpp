// The sweep loop and the two kinds of run: in-process (latency bench) and server (serve bench).
#include "bench/sweep_runner.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "bench/bench_model_loader.h"
#include "bench/bench_report.h"
#include "bench/latency_bench.h"
#include "bench/serve_bench.h"
#include "bench/sweep_record.h"
#include "bench/sweep_server.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "model/kv_store.h"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

// What one run measured, before it becomes a record.
struct Measurement {
  std::vector<SweepPoint> points;
  nlohmann::json extra = nlohmann::json::object();  // machine, model, engine, raw report ...
  bool interrupted = false;
};

std::string join(const std::vector<int64_t>& values) {
  return fmt::format("{}", fmt::join(values, ","));
}

bool interrupted(const SweepRunOptions& options) { return options.interrupt && options.interrupt->load(); }

ProgressCallback begin_phase(const SweepRunOptions& options, const std::string& phase, bool bytes) {
  return options.observer.on_phase ? options.observer.on_phase(phase, bytes) : ProgressCallback();
}

// Consecutive runs of one model reuse it (the runs are ordered model-major).
class ModelCache {
 public:
  Result<const BenchModel*> get(const std::string& spec, const std::string& quantization,
                                const ProgressCallback& progress) {
    const std::string key = spec + "|" + quantization;
    if (key_ != key) {
      model_.reset();  // free the previous model's memory before loading the next
      key_.clear();
      ANVIL_ASSIGN_OR_RETURN(BenchModel loaded, load_bench_model(spec, progress, quantization));
      model_ = std::make_unique<BenchModel>(std::move(loaded));
      key_ = key;
    }
    return model_.get();
  }

 private:
  std::string key_;  // spec|quantization
  std::unique_ptr<BenchModel> model_;
};

Result<Measurement> measure_in_process(const SweepRun& run, ModelCache& models, const SweepRunOptions& options) {
  ANVIL_ASSIGN_OR_RETURN(const BenchModel* model,
                         models.get(run.model_spec, run.quantization,
                                    begin_phase(options, "loading " + run.model_spec, true)));
  EngineOptions engine_options;
  engine_options.max_num_seqs = run.max_batch;
  std::optional<DType> kv = kv_cache_dtype_from_name(run.kv_dtype);
  if (!kv) return Status::error(fmt::format("unknown KV cache dtype '{}' (f32, f16, bf16, fp8, int8)", run.kv_dtype));
  engine_options.kv_dtype = *kv;
  ANVIL_RETURN_IF_ERROR(engine_options.validate());

  LatencyBenchOptions bench;
  bench.input_len = run.workload.input_len;
  bench.output_len = run.workload.output_len;
  bench.batch_sizes = run.workload.batch_sizes;
  bench.num_iters_warmup = run.workload.num_iters_warmup;
  bench.num_iters = run.workload.num_iters;
  bench.seed = run.workload.seed;
  bench.interrupt = options.interrupt;
  ANVIL_RETURN_IF_ERROR(check_latency_options(bench, model->model->config(), engine_options));

  ThreadPool pool(run.threads);
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine,
                         Engine::create(*model->model, model->tokenizer.get(), pool, engine_options));
  bench.progress = begin_phase(options, "batch sizes " + join(bench.batch_sizes), false);
  ANVIL_ASSIGN_OR_RETURN(LatencyBenchResult result, run_latency_bench(*engine, bench));

  Measurement m;
  if (result.interrupted) {
    m.interrupted = true;
    return m;
  }
  nlohmann::json results = nlohmann::json::array();
  for (const LatencyBatchResult& b : result.batches) results.push_back(latency_batch_json(b));
  m.points = points_from_latency_results(results, bench.output_len);
  m.extra["machine"] = bench_machine_json(pool.thread_count());
  m.extra["model"] = bench_model_json(run.model_spec, *model->model);
  m.extra["engine"] = engine_options_json(engine_options, engine->kv_cache_capacity_tokens());
  m.extra["notes"] = result.notes;
  m.extra["raw"] = {{"bench", "latency"}, {"results", results}};
  return m;
}

Result<Measurement> measure_server(const SweepRun& run, const SweepStore& store, const SweepRunOptions& options) {
  ANVIL_ASSIGN_OR_RETURN(int port, pick_free_port());
  ANVIL_ASSIGN_OR_RETURN(std::string command, sweep_server_command(run, port, options.anvil_path));
  const std::string log_path = store.server_log_path(run.id);
  begin_phase(options, fmt::format("starting the server on port {}", port), false);
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<ServerProcess> server, ServerProcess::start(command, log_path));

  Measurement m;
  Status healthy = server->wait_healthy(port, run.server->health, run.server->startup_timeout_s, options.interrupt);
  if (!healthy) {
    server->stop(run.server->stop_grace_s);
    if (interrupted(options)) {
      m.interrupted = true;
      return m;
    }
    return healthy.with_context(fmt::format("server `{}`", command));
  }

  ServeBenchOptions bench;
  bench.base_url = fmt::format("http://127.0.0.1:{}", port);
  bench.concurrency = run.workload.concurrency;
  bench.num_prompts = run.workload.num_prompts;
  bench.warmup = run.workload.num_iters_warmup;
  bench.input_len = run.workload.input_len;
  bench.output_len = run.workload.output_len;
  bench.seed = run.workload.seed;
  bench.interrupt = options.interrupt;
  ProgressCallback phase_progress;
  bench.on_phase = [&](const std::string& phase) { phase_progress = begin_phase(options, phase, false); };
  bench.progress = [&](uint64_t done, uint64_t total) {
    if (phase_progress) phase_progress(done, total);
  };
  Result<nlohmann::json> report = run_serve_bench(bench);
  const std::optional<std::string> ended = server->exit_description();
  server->stop(run.server->stop_grace_s);
  const std::string died = ended ? fmt::format(" (the server {}; last lines of {}:\n{})", *ended, log_path,
                                               server->log_tail(20))
                                 : std::string();
  if (!report) return Status::error(report.status().message() + died);
  if (report->value("interrupted", false)) {
    m.interrupted = true;
    return m;
  }
  m.points = points_from_serve_results(report->value("results", nlohmann::json::array()));
  for (int64_t c : run.workload.concurrency) {
    const bool measured = std::any_of(m.points.begin(), m.points.end(), [&](const SweepPoint& p) { return p.load == c; });
    if (!measured) return Status::error(fmt::format("no request finished at concurrency {}{}", c, died));
  }
  m.extra["machine"] = report->value("machine", nlohmann::json(nullptr));
  m.extra["server"] = {{"command", command}, {"port", port}, {"log", log_path}};
  m.extra["raw"] = std::move(report).value();
  return m;
}

}  // namespace

Result<SweepExecution> run_sweep(const std::vector<SweepRun>& runs, SweepStore& store, const SweepRunOptions& options) {
  SweepExecution execution;
  execution.total = runs.size();
  std::vector<const SweepRun*> todo;
  for (const SweepRun& run : runs) {
    if (!options.force && store.is_finished(run.id)) {
      ++execution.skipped;
    } else {
      todo.push_back(&run);
    }
  }
  if (options.observer.on_plan) options.observer.on_plan(execution.skipped, execution.total);

  ModelCache models;
  for (size_t i = 0; i < todo.size(); ++i) {
    if (interrupted(options)) {
      execution.interrupted = true;
      break;
    }
    const SweepRun& run = *todo[i];
    if (options.observer.on_run_start) options.observer.on_run_start(run, i, todo.size());
    const auto start = Clock::now();
    Result<Measurement> measured = run.kind == SweepRunKind::Server ? measure_server(run, store, options)
                                                                    : measure_in_process(run, models, options);
    const double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
    if (measured && measured->interrupted) {
      execution.interrupted = true;
      break;
    }
    nlohmann::json record;
    if (measured) {
      record = sweep_ok_record(run, measured->points, elapsed_s);
      record.update(measured->extra);
      ++execution.finished;
    } else {
      if (interrupted(options)) {  // the failure may be the interruption itself (a cut connection)
        execution.interrupted = true;
        break;
      }
      record = sweep_failed_record(run, measured.status().message(), elapsed_s);
      ++execution.failed;
    }
    ANVIL_RETURN_IF_ERROR(store.save(record));
    if (options.observer.on_run_done) options.observer.on_run_done(run, record);
  }
  return execution;
}

}  // namespace anvil
