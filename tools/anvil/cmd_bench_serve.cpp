// anvil bench serve: load-test any OpenAI-compatible server (vLLM `bench serve` semantics).
#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "bench/bench_report.h"
#include "bench/serve_bench.h"
#include "bench/serve_metrics.h"
#include "bench/serve_options.h"
#include "bench/serve_report.h"
#include "bench/plot_output.h"
#include "bench/svg_plot.h"
#include "commands.h"
#include "interrupt_scope.h"
#include "core/progress.h"

namespace anvil::cli {
namespace {

// ---- Flags ---------------------------------------------------------------------------------------

struct ServeCliFlags {
  ServeBenchOptions options;
  std::string concurrency = "1", request_rate = "inf", percentiles = "50,90,99", slo, extra_body;
  std::string output_json, plot;
};

Result<ServeBenchOptions> bench_options(const ServeCliFlags& cli) {
  ServeBenchOptions o = cli.options;
  ANVIL_ASSIGN_OR_RETURN(o.concurrency, parse_concurrency_list(cli.concurrency));
  ANVIL_ASSIGN_OR_RETURN(o.request_rate, parse_request_rate(cli.request_rate));
  ANVIL_ASSIGN_OR_RETURN(o.percentiles, parse_percentile_list(cli.percentiles));
  if (!cli.slo.empty()) { ANVIL_ASSIGN_OR_RETURN(o.slo, parse_slo(cli.slo)); }
  if (!cli.extra_body.empty()) {
    o.extra_body = nlohmann::json::parse(cli.extra_body, nullptr, false);
    if (o.extra_body.is_discarded() || !o.extra_body.is_object())
      return Status::error(fmt::format("--extra-body '{}' is not a JSON object", cli.extra_body));
  }
  if (o.api_key.empty()) {
    if (const char* key = std::getenv("OPENAI_API_KEY")) o.api_key = key;
  }
  return o;
}

std::string rate_text(double rate) { return std::isfinite(rate) ? fmt::format("{:g}/s", rate) : "inf"; }

Status write_plots(const std::string& dir, const nlohmann::json& report, const std::vector<ServeRunRecords>& runs,
                   double tail) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::error(fmt::format("--plot {}: cannot create the directory: {}", dir, ec.message()));
  const nlohmann::json& config = report["config"];
  const std::string caption =
      fmt::format("anvil bench serve: {} at {}{}, {} prompts, request rate {}, {}", config["model"].get<std::string>(),
                  config["base_url"].get<std::string>(), config["endpoint"].get<std::string>(),
                  config["num_prompts"].get<int64_t>(),
                  config["request_rate"].is_number() ? fmt::format("{:g}/s", config["request_rate"].get<double>())
                                                     : std::string("inf"),
                  report["date"].get<std::string>());
  const nlohmann::json& results = report["results"];
  const std::filesystem::path base(dir);
  const std::pair<const char*, std::string> plots[] = {
      {"throughput.svg", render_svg(serve_throughput_charts(results), 2, caption)},
      {"latency.svg", render_svg(serve_latency_charts(results, tail), 3, caption)},
      {"distribution.svg", render_svg(serve_distribution_charts(runs), 2, caption)}};
  for (const auto& [name, svg] : plots) {
    Result<std::vector<std::string>> written = write_plot_files((base / name).string(), svg);
    if (!written) return written.status();
  }
  return Status::ok();
}

int bench_serve(const ServeCliFlags& cli) {
  Result<ServeBenchOptions> parsed = bench_options(cli);
  if (!parsed) return fail(parsed.status().message());
  ServeBenchOptions options = std::move(parsed).value();
  // One fresh file per invocation; the library appends each level's records to it.
  if (!options.jsonl_path.empty()) {
    std::ofstream truncate(options.jsonl_path, std::ios::trunc);
    if (!truncate) return fail(options.jsonl_path + ": cannot write the per-request records");
  }

  std::unique_ptr<TerminalProgress> progress;
  options.on_phase = [&](const std::string& phase) {
    progress = std::make_unique<TerminalProgress>("bench serve, " + phase, false);
  };
  options.progress = [&](uint64_t done, uint64_t total) {
    if (progress) progress->callback()(done, total);
  };
  std::vector<ServeRunRecords> runs;
  options.on_run_done = [&](const nlohmann::json& result, const std::vector<ServeRequestRecord>& records) {
    if (progress) progress->finish();
    fmt::print(stderr, "anvil: concurrency {}: {} completed, {} failed, {:.2f} req/s, {:.1f} output tok/s{}\n",
               concurrency_label(result["concurrency"].get<int64_t>()), result["completed"].get<int64_t>(),
               result["failed"].get<int64_t>(), result["request_throughput"].get<double>(),
               result["output_throughput"].get<double>(), result["interrupted"].get<bool>() ? " (interrupted)" : "");
    if (!result["usage_from_server"].get<bool>() && result["completed"].get<int64_t>() > 0)
      fmt::print(stderr, "anvil: note: the server sent no usage for some requests; their output tokens are the "
                         "number of content chunks\n");
    for (const nlohmann::json& e : result["errors"])
      fmt::print(stderr, "anvil: {} request(s) failed: {}\n", e["count"].get<int64_t>(), e["error"].get<std::string>());
    if (!cli.plot.empty()) runs.push_back({result["concurrency"].get<int64_t>(), records});
  };
  options.interrupt = InterruptScope::flag();

  Result<nlohmann::json> report = [&] {
    InterruptScope interrupt_scope;
    return run_serve_bench(options);
  }();
  if (progress) progress->finish();
  if (!report) return fail(report.status().message());

  const nlohmann::json& config = (*report)["config"];
  const nlohmann::json& results = (*report)["results"];
  const bool interrupted = (*report)["interrupted"].get<bool>();
  const double tail = serve_tail_percentile(options.percentiles);
  fmt::print("anvil bench serve: {} at {}{}, {} prompts per level, request rate {}{}\n\n",
             config["model"].get<std::string>(), options.base_url, options.endpoint, options.num_prompts,
             rate_text(options.request_rate),
             options.dataset_path.empty()
                 ? fmt::format(", random input {} / output {} tokens", options.input_len, options.output_len)
                 : ", dataset " + options.dataset_path);
  fmt::print("{}", serve_markdown(results, tail));
  if (!cli.output_json.empty()) {
    Status written = write_text_file(cli.output_json, report->dump(2) + "\n");
    if (!written) return fail(written.message());
    fmt::print("\nreport: {}\n", cli.output_json);
  }
  if (!options.jsonl_path.empty()) fmt::print("per-request records: {}\n", options.jsonl_path);
  if (!cli.plot.empty() && !results.empty()) {
    Status written = write_plots(cli.plot, *report, runs, tail);
    if (!written) return fail(written.message());
    fmt::print("plots: {}/{{throughput,latency,distribution}}.{{svg,png}}\n", cli.plot);
  }
  if (interrupted) {
    fmt::print("\ninterrupted: partial results ({} of {} concurrency levels started)\n", results.size(),
               options.concurrency.size());
    fmt::print(stderr, "anvil: interrupted (Ctrl-C); the results above are partial\n");
    return kInterruptedExitCode;
  }
  return 0;
}

}  // namespace

void add_bench_serve_command(CLI::App& bench, int& exit_code) {
  auto cli = std::make_shared<ServeCliFlags>();
  ServeBenchOptions& o = cli->options;
  CLI::App* cmd = bench.add_subcommand(
      "serve", "Load-test an OpenAI-compatible server (anvil serve, vLLM, llama-server, TGI): TTFT, TPOT, ITL, "
               "E2EL, throughput and goodput per concurrency level (vLLM bench serve)");
  cmd->add_option("--base-url", o.base_url, "Server URL")->capture_default_str();
  cmd->add_option("--endpoint", o.endpoint, "/v1/completions (token-id prompts) or /v1/chat/completions (text)")
      ->capture_default_str();
  cmd->add_option("--model", o.model, "Model id sent in requests (default: the first id of GET /v1/models)");
  cmd->add_option("--api-key", o.api_key, "Bearer token (default: $OPENAI_API_KEY)");
  cmd->add_option("--concurrency", cli->concurrency,
                  "Requests in flight at most; a comma-separated list runs each level (0 or inf: unbounded)")
      ->capture_default_str();
  cmd->add_option("--request-rate", cli->request_rate, "Requests/s (Poisson arrivals), or inf: all at once")
      ->capture_default_str();
  cmd->add_option("--burstiness", o.burstiness, "Gamma shape of the arrival gaps (1: Poisson; <1 burstier)")
      ->capture_default_str()->check(CLI::Range(1e-6, 1e6));
  cmd->add_option("--num-prompts", o.num_prompts, "Timed requests per concurrency level")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  cmd->add_option("--warmup", o.warmup, "Requests sent and discarded before each level")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  cmd->add_option("--input-len", o.input_len, "Random prompt length in tokens")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--output-len", o.output_len, "max_tokens of each request")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--range-ratio", o.range_ratio, "Lengths uniform in [len*(1-r), len*(1+r)]")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999999));
  cmd->add_option("--random-vocab-size", o.random_vocab_size,
                  "Random prompt ids are drawn from [0, N) (512 fits every model; give the model's vocabulary size "
                  "for a realistic spread)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 31));
  cmd->add_option("--dataset", o.dataset_path,
                  "Prompts from a file: text (one prompt per line), or .jsonl ({\"prompt\": ..., \"output_len\": N} "
                  "per line)");
  cmd->add_flag("--ignore-eos,!--no-ignore-eos", o.ignore_eos,
                "Send ignore_eos: true so every request generates max_tokens (default on)");
  cmd->add_option("--extra-body", cli->extra_body, "JSON object merged into every request body");
  cmd->add_option("--seed", o.seed, "Seed of prompts and arrival times")->capture_default_str();
  cmd->add_option("--percentiles", cli->percentiles, "Percentiles reported for each metric")->capture_default_str();
  cmd->add_option("--slo", cli->slo, "Goodput bounds in ms, e.g. ttft:500,tpot:50,e2el:2000");
  cmd->add_option("--timeout", o.request_timeout_s, "Per-request timeout in seconds")
      ->capture_default_str()->check(CLI::Range(0.001, 1e6));
  cmd->add_option("--output-json", cli->output_json, "Write the report (schema: docs/BENCHMARKS.md)");
  cmd->add_option("--jsonl", o.jsonl_path, "Write one JSON record per request");
  cmd->add_option("--plot", cli->plot, "Directory for throughput, latency and distribution plots (.svg and .png each)");
  cmd->callback([cli, &exit_code] { exit_code = bench_serve(*cli); });
}

}  // namespace anvil::cli
