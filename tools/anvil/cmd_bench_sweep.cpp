// anvil bench sweep: run a configuration sweep and name the most cost-effective, highest-throughput
// and lowest-latency deployment (docs/BENCHMARKS.md, "anvil bench sweep").
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "bench/bench_report.h"
#include "bench/sweep_record.h"
#include "bench/sweep_report.h"
#include "bench/sweep_runner.h"
#include "bench/sweep_store.h"
#include "commands.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "interrupt_scope.h"

namespace anvil::cli {
namespace {

struct SweepFlags {
  std::string config;
  std::string output_dir;
  bool force = false;
  bool dry_run = false;
  int64_t cost_at_concurrency = 0;  // 0: each run's highest measured load
};

std::string anvil_executable() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("anvil") : self.string();
}

// Per-run progress on stderr: one line per run start and end, a bar per phase on a terminal.
class SweepProgressDisplay {
 public:
  SweepObserver observer() {
    SweepObserver o;
    o.on_plan = [](size_t skipped, size_t total) {
      if (skipped > 0)
        fmt::print(stderr, "anvil: skipping {} finished runs of {} (--force runs them again)\n", skipped, total);
    };
    o.on_run_start = [this](const SweepRun& run, size_t index, size_t count) {
      prefix_ = fmt::format("[{}/{}]", index + 1, count);
      fmt::print(stderr, "anvil: {} run {}: {}\n", prefix_, run.id, run.label());
    };
    o.on_phase = [this](const std::string& phase, bool bytes) {
      if (bar_) bar_->finish();
      bar_ = std::make_unique<TerminalProgress>(prefix_ + " " + phase, bytes);
      return bar_->callback();
    };
    o.on_run_done = [this](const SweepRun& run, const nlohmann::json& record) {
      if (bar_) bar_->finish();
      bar_.reset();
      const double elapsed = record.value("elapsed_s", 0.0);
      if (record.value("status", std::string()) != "ok") {
        fmt::print(stderr, "anvil: {} failed after {:.1f} s: {}\n", prefix_, elapsed,
                   record.value("error", std::string()));
        return;
      }
      std::string line;
      for (const SweepPoint& p : sweep_points_from_json(record["points"]))
        line += fmt::format("{}{} {:.1f} tok/s", line.empty() ? "" : ", ",
                            run.kind == SweepRunKind::Server ? fmt::format("c{}", p.load) : fmt::format("b{}", p.load),
                            p.output_tok_s);
      fmt::print(stderr, "anvil: {} done in {:.1f} s: {}\n", prefix_, elapsed, line);
    };
    return o;
  }
  void finish() {
    if (bar_) bar_->finish();
  }

 private:
  std::string prefix_;
  std::unique_ptr<TerminalProgress> bar_;
};

int bench_sweep(const SweepFlags& flags) {
  Result<SweepConfig> config = load_sweep_config(flags.config);
  if (!config) return fail(config.status().message());
  Result<std::vector<SweepRun>> runs = expand_sweep(*config, SweepExpandOptions{default_thread_count()});
  if (!runs) return fail(runs.status().message());
  const std::string output_dir = flags.output_dir.empty() ? "sweep-" + config->name : flags.output_dir;
  const std::string anvil_path = anvil_executable();
  const std::optional<int64_t> cost_at =
      flags.cost_at_concurrency > 0 ? std::optional<int64_t>(flags.cost_at_concurrency) : std::nullopt;
  if (flags.dry_run) {
    fmt::print("{}", sweep_plan_markdown(*runs, SweepStore(output_dir), anvil_path));
    return 0;
  }

  Result<SweepStore> store = SweepStore::open(output_dir);
  if (!store) return fail(store.status().message());
  SweepProgressDisplay display;
  SweepRunOptions options;
  options.force = flags.force;
  options.anvil_path = anvil_path;
  options.interrupt = InterruptScope::flag();
  options.observer = display.observer();
  Result<SweepExecution> execution = [&] {
    InterruptScope interrupt_scope;  // Ctrl-C: stop the current run, keep the finished ones
    return run_sweep(*runs, *store, options);
  }();
  display.finish();
  if (!execution) return fail(execution.status().message());

  const SweepReportInput input =
      collect_sweep_report(*config, *runs, *store, cost_at, bench_machine_json(default_thread_count()));
  Result<std::vector<std::string>> written = write_sweep_report(*store, input);
  if (!written) return fail(written.status().message());
  fmt::print("{}\nreport: {}\n", sweep_markdown(input), fmt::join(*written, ", "));
  if (execution->interrupted) {
    fmt::print(stderr, "anvil: interrupted (Ctrl-C): {} runs finished now, {} left; the same command resumes\n",
               execution->finished + execution->failed, input.pending);
    return kInterruptedExitCode;
  }
  if (execution->failed > 0)
    return fail(fmt::format("{} of {} runs failed (their errors are in the report); the same command retries them",
                            execution->failed, execution->total));
  return 0;
}

}  // namespace

void add_bench_sweep_command(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<SweepFlags>();
  CLI::App* cmd = bench.add_subcommand(
      "sweep", "Run every configuration of a sweep (models x weights x KV dtype x threads ...) and name the most "
               "cost-effective, highest-throughput and lowest-latency one");
  cmd->add_option("-c,--config", flags->config, "Sweep configuration, YAML or JSON (docs/BENCHMARKS.md)")->required();
  cmd->add_option("-o,--output-dir", flags->output_dir,
                  "Where run records and the report go (default: sweep-<name>); finished runs found there are skipped");
  cmd->add_flag("--force", flags->force, "Run finished runs again");
  cmd->add_flag("--dry-run", flags->dry_run, "Print the expanded runs and exit");
  cmd->add_option("--cost-at-concurrency", flags->cost_at_concurrency,
                  "Quote $/1M tokens at this concurrency / batch size (default: each run's highest measured)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->callback([flags, &exit_code] { exit_code = bench_sweep(*flags); });
}

}  // namespace anvil::cli
