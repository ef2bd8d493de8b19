// anvil bench model (llama-bench's pp/tg throughput) and anvil bench kernels (each CPU kernel vs the machine limits).
#include <fmt/format.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "bench/kernel_bench.h"
#include "bench/machine_limits.h"
#include "bench/model_bench.h"
#include "commands.h"
#include "compute/cpu/isa.h"
#include "core/cpu_features.h"
#include "core/progress.h"
#include "model/decoder_model.h"
#include "model/kv_store.h"
#include "model/load_checkpoint.h"
#include "model/repack_weights.h"

namespace anvil::cli {
namespace {

struct BenchModelOptions {
  std::string model;
  ModelBenchOptions bench;
  std::string kv_dtype = "auto";
  int threads = 0;
  bool json = false;
};

int bench_model(BenchModelOptions options) {
  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  const Result<DType> kv_dtype = kv_cache_dtype_for(options.kv_dtype, checkpoint->has_f32_layer_weights());
  if (!kv_dtype) return fail(kv_dtype.status().message());
  options.bench.kv_dtype = *kv_dtype;
  repack_weights_for_decode(*checkpoint, options.threads);
  auto shared = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(shared);
  if (!model) return fail(model.status().message());

  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());
  TerminalProgress bench_progress("benchmarking", false);
  Result<ModelBenchResult> result = run_model_bench(**model, pool, options.bench, bench_progress.callback());
  bench_progress.finish();
  if (!result) return fail(result.status().message());

  const ModelConfig& c = shared->config;
  const double pp = result->prompt.mean_tokens_per_second(), tg = result->generate.mean_tokens_per_second();
  const double bytes = static_cast<double>(result->weight_bytes_per_token);
  // pp computes logits for the last prompt token only (as llama-bench does), so a prompt token
  // costs the layers' matmuls: 2 FLOPs per layer weight (attention scores left out).
  const double pp_flops_per_token = 2.0 * static_cast<double>(c.matmul_parameter_count() - c.vocab_size * c.dim);
  if (options.json) {
    nlohmann::json out = {
        {"model", options.model},
        {"arch", c.arch},
        {"parameters", c.parameter_count()},
        {"threads", pool.thread_count()},
        {"cpu", cpu_features().model_name},
        {"n_prompt", options.bench.prompt_tokens},
        {"n_gen", options.bench.generate_tokens},
        {"n_depth", options.bench.depth},
        {"kv_dtype", kv_cache_dtype_name(options.bench.kv_dtype)},
        {"repetitions", options.bench.repetitions},
        {"weight_bytes_per_token", result->weight_bytes_per_token},
        {"pp_tok_s", pp},
        {"pp_tok_s_stddev", result->prompt.stddev_tokens_per_second()},
        {"tg_tok_s", tg},
        {"tg_tok_s_stddev", result->generate.stddev_tokens_per_second()},
        {"tg_weight_gb_s", tg * bytes / 1e9},
        {"pp_gflop_s", pp * pp_flops_per_token / 1e9},
    };
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("| model | params | weights/token | threads | test | t/s |\n|---|---|---|---|---|---|\n");
  auto row = [&](const std::string& test, const BenchStat& stat) {
    fmt::print("| {} | {} | {:.2f} GiB | {} | {} | {:.2f} ± {:.2f} |\n", options.model,
               format_count(c.parameter_count()), bytes / 1073741824.0, pool.thread_count(), test,
               stat.mean_tokens_per_second(), stat.stddev_tokens_per_second());
  };
  // llama-bench's test names: "pp512", "tg128 @ d4096" after a depth of cached tokens.
  const std::string at_depth = options.bench.depth > 0 ? fmt::format(" @ d{}", options.bench.depth) : "";
  if (options.bench.prompt_tokens > 0) row(fmt::format("pp{}{}", options.bench.prompt_tokens, at_depth), result->prompt);
  if (options.bench.generate_tokens > 0)
    row(fmt::format("tg{}{}", options.bench.generate_tokens, at_depth), result->generate);
  if (options.bench.generate_tokens > 0)
    fmt::print("\ndecode reads {:.2f} GB of weights per token: {:.1f} GB/s at tg\n", bytes / 1e9, tg * bytes / 1e9);
  if (options.bench.prompt_tokens > 0)
    fmt::print("prefill: {:.1f} GFLOP/s in the layers' matmuls (2 x layer weights x tokens/s)\n",
               pp * pp_flops_per_token / 1e9);
  return 0;
}


struct BenchKernelsOptions {
  std::string kernels, dtypes, shapes, tokens, providers, isa, csv;
  int threads = 0;
  bool json = false;
  bool no_measure = false;
  bool remeasure = false;
  double min_seconds = 0.3;
  double working_set_mib = 0;
};

std::string format_seconds(double s) {
  if (s < 1e-3) return fmt::format("{:.1f} µs", s * 1e6);
  if (s < 1.0) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.3f} s", s);
}

std::string format_mib(size_t bytes) { return fmt::format("{:.0f} MiB", static_cast<double>(bytes) / 1048576.0); }

// Turns the CLI strings into library options; the first bad item is the error.
Result<KernelBenchOptions> kernel_options(const BenchKernelsOptions& cli) {
  KernelBenchOptions o;
  if (!cli.kernels.empty()) { ANVIL_ASSIGN_OR_RETURN(o.kernels, parse_kernel_list(cli.kernels)); }
  if (!cli.dtypes.empty()) { ANVIL_ASSIGN_OR_RETURN(o.dtypes, parse_dtype_list(cli.dtypes)); }
  if (!cli.shapes.empty()) { ANVIL_ASSIGN_OR_RETURN(o.shapes, parse_shape_list(cli.shapes)); }
  if (!cli.providers.empty()) { ANVIL_ASSIGN_OR_RETURN(o.providers, parse_provider_list(cli.providers)); }
  if (!cli.tokens.empty()) {
    ANVIL_ASSIGN_OR_RETURN(std::vector<int64_t> tokens, parse_token_list(cli.tokens));
    o.gemm_tokens = tokens;
    o.gemv_tokens.clear();
    for (int64_t t : tokens)
      if (t <= kKernelBenchMaxGemvTokens) o.gemv_tokens.push_back(t);
  }
  o.min_seconds = cli.min_seconds;
  o.working_set_bytes = static_cast<size_t>(cli.working_set_mib * 1048576.0);
  ANVIL_RETURN_IF_ERROR(validate_kernel_bench_options(o));
  return o;
}

int bench_kernels(const BenchKernelsOptions& cli) {
  Result<KernelBenchOptions> options = kernel_options(cli);
  if (!options) return fail(options.status().message());
  if (!cli.isa.empty()) {
    std::optional<Isa> isa = isa_from_name(cli.isa.c_str());
    if (!isa) return fail("unknown ISA '" + cli.isa + "' (known: scalar, avx2, avx512)");
    set_isa_cap(*isa);
  }
  ThreadPool pool(cli.threads > 0 ? cli.threads : default_thread_count());

  // The denominators: cached limits for this CPU and thread count, measured when absent.
  MachineLimits limits;
  std::string limits_source;
  std::optional<MachineLimits> cached = cli.remeasure ? std::nullopt : cached_machine_limits(pool.thread_count());
  if (cached) {
    limits = *cached;
    limits_source = "cached in " + machine_limits_cache_path();
  } else if (cli.no_measure) {
    limits_source = "none cached for this CPU and thread count (--no-measure): shares not computed";
  } else {
    MeasureOptions measure;
    TerminalProgress progress(
        fmt::format("measuring bandwidth and peak GEMM FLOP/s ({} threads, a few seconds)", pool.thread_count()), false);
    measure.progress = progress.callback();
    Result<MachineLimits> measured = machine_limits(pool, measure, true);
    progress.finish();
    if (!measured) return fail(measured.status().message());
    limits = std::move(measured).value();
    limits_source = "measured now, cached in " + machine_limits_cache_path();
  }

  TerminalProgress progress("benchmarking kernels", false);
  Result<KernelBenchResult> result = run_kernel_bench(pool, *options, limits, progress.callback());
  progress.finish();
  if (!result) return fail(result.status().message());

  if (!cli.csv.empty()) {
    std::ofstream out(cli.csv, std::ios::trunc);
    if (!out) return fail(cli.csv + ": cannot write");
    out << kernel_bench_csv(*result);
    if (!out) return fail(cli.csv + ": write failed");
  }
  if (cli.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const KernelBenchRow& row : result->rows) rows.push_back(kernel_bench_row_to_json(row));
    fmt::print("{}\n", rows.dump(2));
    for (const std::string& s : result->skipped) fmt::print(stderr, "anvil: note: skipped {}\n", s);
    return 0;
  }

  fmt::print("anvil bench kernels: {}, {} threads, isa {}\n", cpu_features().model_name, pool.thread_count(),
             isa_name(active_isa()));
  if (limits.read_bandwidth_gbs > 0) {
    fmt::print("limits ({}, measured {}): read bandwidth {:.1f} GB/s; oneDNN peak GFLOP/s f32 {:.1f}, bf16 {:.1f}, "
               "int8 {:.1f} ({})\n",
               limits_source, limits.measured_at, limits.read_bandwidth_gbs, limits.f32.gflops, limits.bf16.gflops,
               limits.int8.gflops, limits.gemm_shape);
  } else {
    fmt::print("limits: {}\n", limits_source);
  }
  fmt::print("weights cycled over {} of copies per measurement; median call after 1 warm-up, calls for >= {} s\n\n",
             format_mib(result->working_set_bytes), options->min_seconds);
  fmt::print("| kernel | dtype | shape | tokens | provider | isa | time | throughput | % of limit |\n"
             "|---|---|---|---:|---|---|---:|---:|---:|\n");
  for (const KernelBenchRow& r : result->rows) {
    const std::string share =
        r.limit_value > 0 ? fmt::format("{:.1f}% {}", r.percent_of_limit, r.limit) : std::string("-");
    fmt::print("| {} | {} | {} | {} | {} | {} | {} | {:.1f} {} | {} |\n", r.kernel, r.dtype, r.shape, r.tokens,
               r.provider == r.kernel ? std::string("-") : r.provider + (r.kernel == "gemm" ? " (" + r.compute + ")" : ""),
               r.isa, format_seconds(r.median_seconds), r.value, r.unit, share);
  }
  fmt::print("\nshapes are out x in features (rows x cols of W). gemv: weight bytes per call / time (one decode "
             "step streams each weight once); gemm: 2 x rows x cols x tokens FLOPs. rmsnorm/rope/softmax: f32 bytes "
             "read + written once (activations sit in cache, so these may exceed DRAM bandwidth). attention: "
             "4 x head_dim FLOPs per (query head, attended key), causal prefill attends T(T+1)/2 keys per head.\n");
  for (const std::string& s : result->skipped) fmt::print("skipped: {}\n", s);
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  add_bench_batched_command(*bench, exit_code);
  add_bench_serve_command(*bench, exit_code);
  add_bench_engine_commands(*bench, exit_code);
  add_bench_sweep_command(*bench, exit_code);
  add_bench_quant_command(*bench, exit_code);
  auto options = std::make_shared<BenchModelOptions>();
  CLI::App* model = bench->add_subcommand("model", "Prompt processing (pp) and generation (tg) tokens/s, "
                                                   "with llama-bench's semantics");
  model->add_option("-m,--model", options->model, "Model (file, directory or dummy:<preset>[:dtype])")->required();
  model->add_option("-p,--n-prompt", options->bench.prompt_tokens, "Prompt tokens (0: skip pp)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  model->add_option("-n,--n-gen", options->bench.generate_tokens, "Generated tokens (0: skip tg)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  model->add_option("-d,--n-depth", options->bench.depth,
                    "Tokens already in the KV cache when pp and tg start (filled first, untimed)")
      ->check(CLI::NonNegativeNumber);
  model->add_option("--kv-dtype", options->kv_dtype,
                    "KV cache dtype: auto (f32 for f32 weights, else f16), f32, f16, bf16, fp8 or int8");
  model->add_option("-r,--repetitions", options->bench.repetitions, "Timed repetitions")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  model->add_option("-t,--threads", options->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  model->add_flag("--json", options->json, "Print one JSON object");
  model->callback([options, &exit_code] { exit_code = bench_model(*options); });

  auto kernel_opts = std::make_shared<BenchKernelsOptions>();
  CLI::App* kernels = bench->add_subcommand(
      "kernels", "Each CPU kernel per shape and weight type: GB/s or GFLOP/s and the share of the measured limit");
  kernels->add_option("--kernels", kernel_opts->kernels,
                      "Kernels (default: gemv,gemm,rmsnorm,rope,softmax,attention)");
  std::string default_dtypes;  // the help lists KernelBenchOptions' defaults, lower-case as typed
  for (DType dtype : KernelBenchOptions{}.dtypes) {
    if (!default_dtypes.empty()) default_dtypes += ',';
    for (const char* c = dtype_name(dtype); *c; ++c) default_dtypes += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
  }
  kernels->add_option("--dtypes", kernel_opts->dtypes, "Weight types (default: " + default_dtypes + ")");
  kernels->add_option("--shapes", kernel_opts->shapes,
                      "Matrices as OUTxIN (default: the Llama-3.2-1B q/k/v/o, gate/up, down and output matrices)");
  kernels->add_option("--tokens", kernel_opts->tokens,
                      "Token counts (default: gemv 1, gemm 512); gemv runs the counts up to 8, gemm all");
  kernels->add_option("--providers", kernel_opts->providers, "GEMM providers for the gemm kernel (default: onednn)");
  kernels->add_option("-t,--threads", kernel_opts->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  kernels->add_option("--isa", kernel_opts->isa, "Cap the kernels' instruction set: scalar, avx2 or avx512");
  kernels->add_option("--min-seconds", kernel_opts->min_seconds, "Time each measurement for at least this long")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  kernels->add_option("--working-set-mib", kernel_opts->working_set_mib,
                      "Weight copies cycled per measurement (default: max(256 MiB, 4 x the largest CPU cache, the "
                      "bandwidth measurement's buffer))")
      ->check(CLI::Range(0.0, 1048576.0));
  kernels->add_flag("--json", kernel_opts->json, "Print one JSON array of row objects");
  kernels->add_option("--csv", kernel_opts->csv, "Also write the rows to this CSV file");
  kernels->add_flag("--no-measure", kernel_opts->no_measure, "Use cached machine limits only (shares empty if none)");
  kernels->add_flag("--remeasure", kernel_opts->remeasure, "Measure the machine limits again (and cache them)");
  kernels->callback([kernel_opts, &exit_code] { exit_code = bench_kernels(*kernel_opts); });
}

}  // namespace anvil::cli
