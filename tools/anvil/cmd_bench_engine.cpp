// anvil bench latency | throughput | compare: the in-process benchmarks on the continuous-batching engine.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "bench/bench_model_loader.h"
#include "bench/bench_report.h"
#include "bench/latency_bench.h"
#include "bench/plot_output.h"
#include "bench/svg_plot.h"
#include "bench/throughput_bench.h"
#include "commands.h"
#include "interrupt_scope.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/memory_plan.h"
#include "model/decoder_model.h"
#include "model/kv_store.h"
#include "model/load_checkpoint.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {
namespace {

// ---- Flags both benchmarks share ----------------------------------------------------------------

struct CommonFlags {
  std::string model;
  int threads = 0;
  int64_t max_num_seqs = 0;            // 0: the benchmark's default
  int64_t max_num_batched_tokens = 0;  // 0: the engine's default
  std::string kv_cache_memory;         // "" : the engine's default share of free memory
  std::string kv_dtype = "f16";
  bool no_prefix_caching = false;
  uint64_t seed = 0;
  double price_per_hour = 0;
  std::string output_json;
};

void add_common_flags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("-m,--model", f.model, "Model (file, directory or dummy:<preset>[:dtype])")->required();
  cmd->add_option("-t,--threads", f.threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--max-num-seqs", f.max_num_seqs, "Sequences per engine step at most")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--max-num-batched-tokens", f.max_num_batched_tokens, "Tokens per engine step at most (default: 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--kv-cache-memory", f.kv_cache_memory,
                  "KV cache size, e.g. 2GiB or 500MiB (default: 40% of the available memory, capped at what "
                  "max-num-seqs full-context sequences use)");
  cmd->add_option("--kv-dtype", f.kv_dtype, "KV cache dtype: f32, f16, bf16, fp8 (E4M3) or int8")->capture_default_str();
  cmd->add_flag("--no-prefix-caching", f.no_prefix_caching, "Turn the engine's prefix cache off");
  cmd->add_option("--seed", f.seed, "Seed of the random prompt ids")->capture_default_str();
  cmd->add_option("--price-per-hour", f.price_per_hour, "Machine price in $/hour: adds $ per 1M output tokens")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--output-json", f.output_json, "Write the report (schema: docs/BENCHMARKS.md) to this file");
}

Result<EngineOptions> engine_options(const CommonFlags& f, int64_t default_max_num_seqs) {
  EngineOptions o;
  o.max_num_seqs = f.max_num_seqs > 0 ? f.max_num_seqs : default_max_num_seqs;
  if (f.max_num_batched_tokens > 0) o.max_num_batched_tokens = f.max_num_batched_tokens;
  std::optional<DType> kv = kv_cache_dtype_from_name(f.kv_dtype);
  if (!kv)
    return Status::error(fmt::format("--kv-dtype '{}' is not a KV cache dtype the engine runs (f32, f16, bf16, fp8, int8)",
                                     f.kv_dtype));
  o.kv_dtype = *kv;
  if (!f.kv_cache_memory.empty()) {
    Result<int64_t> bytes = parse_byte_size(f.kv_cache_memory);
    if (!bytes) return bytes.status().with_context("--kv-cache-memory");
    if (*bytes < 1) return Status::error("--kv-cache-memory must be positive");
    o.kv_cache_bytes = *bytes;
  }
  o.enable_prefix_caching = !f.no_prefix_caching;
  ANVIL_RETURN_IF_ERROR(o.validate());
  return o;
}

using LoadedModel = BenchModel;

Result<LoadedModel> load_model(const std::string& spec) {
  TerminalProgress progress("loading " + spec, true);
  Result<LoadedModel> loaded = load_bench_model(spec, progress.callback());
  progress.finish();
  return loaded;
}

std::string join(const std::vector<int64_t>& values) {
  std::string out;
  for (int64_t v : values) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

// --plot PATH: a .svg file, or a directory that gets latency.svg.
std::string plot_path(const std::string& path) {
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".svg") == 0) return path;
  return (std::filesystem::path(path) / "latency.svg").string();
}

Status write_report(const std::string& path, const nlohmann::json& report) {
  return write_text_file(path, report.dump(2) + "\n");
}

// ---- bench latency ------------------------------------------------------------------------------

struct LatencyFlags {
  CommonFlags common;
  int64_t input_len = 128, output_len = 128;
  std::string batch_sizes = "1,2,4,8";
  int num_iters_warmup = 1, num_iters = 3;
  std::string plot;
};

int bench_latency(const LatencyFlags& cli) {
  Result<std::vector<int64_t>> batch_sizes = parse_batch_sizes(cli.batch_sizes);
  if (!batch_sizes) return fail(batch_sizes.status().message());
  LatencyBenchOptions options;
  options.input_len = cli.input_len;
  options.output_len = cli.output_len;
  options.batch_sizes = *batch_sizes;
  options.num_iters_warmup = cli.num_iters_warmup;
  options.num_iters = cli.num_iters;
  options.seed = cli.common.seed;
  // Every batch must run at once, so by default the engine takes as many sequences as the largest.
  Result<EngineOptions> engine_opts =
      engine_options(cli.common, *std::max_element(batch_sizes->begin(), batch_sizes->end()));
  if (!engine_opts) return fail(engine_opts.status().message());

  Result<LoadedModel> loaded = load_model(cli.common.model);
  if (!loaded) return fail(loaded.status().message());
  const DecoderModel& model = *loaded->model;
  Status checked = check_latency_options(options, model.config(), *engine_opts);
  if (!checked) return fail(checked.message());
  ThreadPool pool(cli.common.threads > 0 ? cli.common.threads : default_thread_count());
  Result<std::unique_ptr<Engine>> engine = Engine::create(model, loaded->tokenizer.get(), pool, *engine_opts);
  if (!engine) return fail(engine.status().message());

  TerminalProgress progress(fmt::format("latency, batch sizes {}", join(options.batch_sizes)), false);
  options.progress = progress.callback();
  options.on_batch_done = [&](const LatencyBatchResult& b) {
    const LatencySummary s = b.summary();
    progress.finish();
    fmt::print(stderr, "anvil: batch size {}: avg latency {:.4g} s, {:.1f} output tok/s\n", b.batch_size,
               s.avg_latency_s, s.output_tok_s);
  };
  options.interrupt = InterruptScope::flag();
  Result<LatencyBenchResult> result = [&] {
    InterruptScope interrupt_scope;
    return run_latency_bench(**engine, options);
  }();
  progress.finish();
  if (!result) return fail(result.status().message());

  nlohmann::json results = nlohmann::json::array();
  for (const LatencyBatchResult& b : result->batches) results.push_back(latency_batch_json(b, cli.common.price_per_hour));
  nlohmann::json report = bench_report_head("latency", cli.common.model, model, pool.thread_count());
  report["config"] = {{"input_len", options.input_len},
                      {"output_len", options.output_len},
                      {"batch_sizes", options.batch_sizes},
                      {"num_iters_warmup", options.num_iters_warmup},
                      {"num_iters", options.num_iters},
                      {"seed", options.seed},
                      {"threads", pool.thread_count()},
                      {"sampling", "greedy"},
                      {"engine", engine_options_json(*engine_opts, (*engine)->kv_cache_capacity_tokens())}};
  report["interrupted"] = result->interrupted;
  report["notes"] = result->notes;
  report["results"] = results;

  fmt::print("anvil bench latency: {}, input {} / output {} tokens, {} threads, KV {}, {} warm-up + {} timed "
             "iterations\n\n",
             cli.common.model, options.input_len, options.output_len, pool.thread_count(), cli.common.kv_dtype,
             options.num_iters_warmup, options.num_iters);
  fmt::print("{}", latency_markdown(results));
  for (const std::string& note : result->notes) fmt::print(stderr, "anvil: note: {}\n", note);
  if (!cli.common.output_json.empty()) {
    Status written = write_report(cli.common.output_json, report);
    if (!written) return fail(written.message());
    fmt::print("\nreport: {}\n", cli.common.output_json);
  }
  if (!cli.plot.empty()) {
    const std::string path = plot_path(cli.plot);
    std::error_code ec;  // a directory that cannot be made shows up as the write's error
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    const std::string caption =
        fmt::format("anvil bench latency: {}, input {} / output {} tokens, {} threads, {}", cli.common.model,
                    options.input_len, options.output_len, pool.thread_count(), report["date"].get<std::string>());
    Result<std::vector<std::string>> written = write_plot_files(path, render_svg(latency_charts(results), 3, caption));
    if (!written) return fail(written.status().message());
    fmt::print("plot: {}\n", fmt::join(*written, ", "));
  }
  if (result->interrupted) {
    fmt::print("\ninterrupted: partial results ({} of {} batch sizes finished)\n", result->batches.size(),
               options.batch_sizes.size());
    fmt::print(stderr, "anvil: interrupted (Ctrl-C); the results above are partial\n");
    return kInterruptedExitCode;
  }
  return 0;
}

// ---- bench throughput ---------------------------------------------------------------------------

struct ThroughputFlags {
  CommonFlags common;
  std::string scenarios;  // comma-separated names
  int64_t input_len = 0, output_len = 0;  // 0: not given (128 each without a scenario)
  int64_t num_prompts = 64;
  std::string dataset;
};

// The runs the flags ask for: scenarios, explicit lengths, or a dataset (one run each).
Result<std::vector<ThroughputBenchOptions>> throughput_runs(const ThroughputFlags& cli) {
  std::vector<ThroughputBenchOptions> runs;
  ThroughputBenchOptions base;
  base.num_prompts = cli.num_prompts;
  base.seed = cli.common.seed;
  if (!cli.scenarios.empty()) {
    if (cli.input_len > 0 || cli.output_len > 0 || !cli.dataset.empty())
      return Status::error("--scenario sets the input and output lengths; give it, or --input-len/--output-len "
                           "(or --dataset), not both");
    std::string rest = cli.scenarios;
    while (true) {
      const size_t comma = rest.find(',');
      const std::string name = rest.substr(0, comma);
      ANVIL_ASSIGN_OR_RETURN(ThroughputScenario s, find_throughput_scenario(name));
      ThroughputBenchOptions o = base;
      o.name = s.name;
      o.input_len = s.input_len;
      o.output_len = s.output_len;
      runs.push_back(o);
      if (comma == std::string::npos) break;
      rest = rest.substr(comma + 1);
    }
    return runs;
  }
  ThroughputBenchOptions o = base;
  o.output_len = cli.output_len > 0 ? cli.output_len : 128;
  if (!cli.dataset.empty()) {
    if (cli.input_len > 0) return Status::error("--input-len does not apply to --dataset (its lines are the prompts)");
    o.name = "dataset:" + std::filesystem::path(cli.dataset).filename().string();
  } else {
    o.input_len = cli.input_len > 0 ? cli.input_len : 128;
    o.name = "custom";
  }
  runs.push_back(o);
  return runs;
}

int bench_throughput(const ThroughputFlags& cli) {
  Result<std::vector<ThroughputBenchOptions>> runs = throughput_runs(cli);
  if (!runs) return fail(runs.status().message());
  Result<EngineOptions> engine_opts = engine_options(cli.common, EngineOptions{}.max_num_seqs);
  if (!engine_opts) return fail(engine_opts.status().message());
  Result<LoadedModel> loaded = load_model(cli.common.model);
  if (!loaded) return fail(loaded.status().message());
  const DecoderModel& model = *loaded->model;
  if (!cli.dataset.empty()) {
    Result<std::vector<std::vector<int32_t>>> prompts = read_prompt_dataset(cli.dataset, loaded->tokenizer.get());
    if (!prompts) return fail(prompts.status().message());
    runs->front().prompts = std::move(prompts).value();
  }
  // Every run's lengths are checked before the first one starts, so a bad one costs no waiting.
  for (const ThroughputBenchOptions& r : *runs) {
    if (!r.prompts.empty()) continue;  // dataset prompts are checked one by one by the run
    Status ok = check_sequence_lengths(model.config(), r.input_len, r.output_len,
                                       fmt::format("scenario {} (input {}, output {})", r.name, r.input_len, r.output_len));
    if (!ok) return fail(ok.message());
  }
  ThreadPool pool(cli.common.threads > 0 ? cli.common.threads : default_thread_count());
  Result<std::unique_ptr<Engine>> engine = Engine::create(model, loaded->tokenizer.get(), pool, *engine_opts);
  if (!engine) return fail(engine.status().message());

  nlohmann::json results = nlohmann::json::array();
  bool interrupted = false;
  {
    InterruptScope interrupt_scope;
    for (ThroughputBenchOptions& r : *runs) {
      TerminalProgress progress(fmt::format("throughput, {} ({} prompts)", r.name, r.num_prompts), false);
      r.progress = progress.callback();
      r.interrupt = InterruptScope::flag();
      Result<ThroughputResult> result = run_throughput_bench(**engine, r);
      progress.finish();
      if (!result) return fail(result.status().message());
      results.push_back(throughput_result_json(*result, cli.common.price_per_hour));
      fmt::print(stderr, "anvil: {}: {:.2f} requests/s, {:.1f} output tok/s\n", r.name, result->requests_per_s,
                 result->output_tok_s);
      if (result->interrupted) {
        interrupted = true;
        break;
      }
    }
  }

  nlohmann::json scenarios = nlohmann::json::array();
  for (const ThroughputBenchOptions& r : *runs)
    scenarios.push_back({{"scenario", r.name}, {"input_len", r.prompts.empty() ? nlohmann::json(r.input_len) : nullptr},
                         {"output_len", r.output_len}});
  nlohmann::json report = bench_report_head("throughput", cli.common.model, model, pool.thread_count());
  report["config"] = {{"scenarios", scenarios},
                      {"num_prompts", cli.num_prompts},
                      {"dataset", cli.dataset.empty() ? nlohmann::json(nullptr) : nlohmann::json(cli.dataset)},
                      {"seed", cli.common.seed},
                      {"threads", pool.thread_count()},
                      {"sampling", "greedy"},
                      {"engine", engine_options_json(*engine_opts, (*engine)->kv_cache_capacity_tokens())}};
  report["interrupted"] = interrupted;
  report["results"] = results;

  fmt::print("anvil bench throughput: {}, {} threads, KV {}, max {} sequences and {} tokens per step\n\n",
             cli.common.model, pool.thread_count(), cli.common.kv_dtype, engine_opts->max_num_seqs,
             engine_opts->max_num_batched_tokens);
  fmt::print("{}", throughput_markdown(results));
  if (!cli.common.output_json.empty()) {
    Status written = write_report(cli.common.output_json, report);
    if (!written) return fail(written.message());
    fmt::print("\nreport: {}\n", cli.common.output_json);
  }
  if (interrupted) {
    fmt::print("\ninterrupted: partial results\n");
    fmt::print(stderr, "anvil: interrupted (Ctrl-C); the results above are partial\n");
    return kInterruptedExitCode;
  }
  return 0;
}

// ---- bench compare ------------------------------------------------------------------------------

int bench_compare(const std::string& a_path, const std::string& b_path) {
  Result<nlohmann::json> a = read_bench_report(a_path);
  if (!a) return fail(a.status().message());
  Result<nlohmann::json> b = read_bench_report(b_path);
  if (!b) return fail(b.status().message());
  Result<std::vector<MetricComparison>> rows = compare_bench_reports(*a, *b);
  if (!rows) return fail(fmt::format("{} vs {}: {}", a_path, b_path, rows.status().message()));
  auto describe = [](const std::string& path, const nlohmann::json& r) {
    const nlohmann::json& m = r.value("model", nlohmann::json::object());
    const nlohmann::json& machine = r.value("machine", nlohmann::json::object());
    return fmt::format("{} ({}, {}, {} threads, {})", path, m.value("spec", std::string("?")),
                       machine.value("cpu_model", std::string("?")), machine.value("threads", 0),
                       r.value("date", std::string("?")));
  };
  fmt::print("anvil bench compare: {} reports, B/A per metric\n\n", (*a)["bench"].get<std::string>());
  fmt::print("{}", comparison_markdown(*rows, describe(a_path, *a), describe(b_path, *b)));
  return 0;
}

}  // namespace

void add_bench_engine_commands(CLI::App& bench, int& exit_code) {
  auto latency = std::make_shared<LatencyFlags>();
  CLI::App* lat = bench.add_subcommand(
      "latency", "Per batch size: time until B requests submitted at once all finish (vLLM benchmark_latency), "
                 "with TTFT and TPOT");
  add_common_flags(lat, latency->common);
  lat->add_option("--input-len", latency->input_len, "Prompt tokens per request (random ids)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  lat->add_option("--output-len", latency->output_len, "Generated tokens per request (EOS ignored)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  lat->add_option("--batch-sizes", latency->batch_sizes, "Batch sizes, a comma-separated list")->capture_default_str();
  lat->add_option("--num-iters-warmup", latency->num_iters_warmup, "Untimed iterations per batch size")
      ->capture_default_str()->check(CLI::Range(0, 100000));
  lat->add_option("--num-iters", latency->num_iters, "Timed iterations per batch size")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  lat->add_option("--plot", latency->plot, "Write SVG and PNG plots of latency, throughput, TTFT and TPOT vs batch size "
                                           "(a .svg path, or a directory that gets latency.svg and latency.png)");
  lat->callback([latency, &exit_code] { exit_code = bench_latency(*latency); });

  auto throughput = std::make_shared<ThroughputFlags>();
  CLI::App* thr = bench.add_subcommand(
      "throughput", "Offline throughput: N requests submitted at once, run to completion (vLLM benchmark_throughput)");
  add_common_flags(thr, throughput->common);
  thr->add_option("--scenario", throughput->scenarios,
                  "chat (128/128), generation-heavy (128/2048), summarization (2048/128), summarization-generation "
                  "(2048/2048); a comma-separated list runs each");
  thr->add_option("--input-len", throughput->input_len, "Prompt tokens per request (random ids; default 128)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  thr->add_option("--output-len", throughput->output_len, "Generated tokens per request (default 128)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  thr->add_option("--num-prompts", throughput->num_prompts, "Requests")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  thr->add_option("--dataset", throughput->dataset,
                  "Text file, one prompt per line, tokenized with the model's tokenizer (reused in order when "
                  "--num-prompts is larger)");
  thr->callback([throughput, &exit_code] { exit_code = bench_throughput(*throughput); });

  auto paths = std::make_shared<std::vector<std::string>>();
  CLI::App* cmp = bench.add_subcommand("compare", "Ratios B/A of two --output-json reports' metrics, per batch "
                                                  "size (latency) or scenario (throughput)");
  cmp->add_option("reports", *paths, "A.json B.json")->required()->expected(2);
  cmp->callback([paths, &exit_code] { exit_code = bench_compare((*paths)[0], (*paths)[1]); });
}

}  // namespace anvil::cli
