// anvil bench model: prompt-processing and generation throughput (llama-bench's pp/tg).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "bench/model_bench.h"
#include "commands.h"
#include "core/cpu_features.h"
#include "core/progress.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"

namespace anvil::cli {
namespace {

struct BenchModelOptions {
  std::string model;
  ModelBenchOptions bench;
  int threads = 0;
  bool json = false;
};

int bench_model(const BenchModelOptions& options) {
  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
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
  if (options.bench.prompt_tokens > 0) row(fmt::format("pp{}", options.bench.prompt_tokens), result->prompt);
  if (options.bench.generate_tokens > 0) row(fmt::format("tg{}", options.bench.generate_tokens), result->generate);
  if (options.bench.generate_tokens > 0)
    fmt::print("\ndecode reads {:.2f} GB of weights per token: {:.1f} GB/s at tg\n", bytes / 1e9, tg * bytes / 1e9);
  if (options.bench.prompt_tokens > 0)
    fmt::print("prefill: {:.1f} GFLOP/s in the layers' matmuls (2 x layer weights x tokens/s)\n",
               pp * pp_flops_per_token / 1e9);
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto options = std::make_shared<BenchModelOptions>();
  CLI::App* model = bench->add_subcommand("model", "Prompt processing (pp) and generation (tg) tokens/s, "
                                                   "with llama-bench's semantics");
  model->add_option("-m,--model", options->model, "Model (file, directory or dummy:<preset>[:dtype])")->required();
  model->add_option("-p,--n-prompt", options->bench.prompt_tokens, "Prompt tokens (0: skip pp)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  model->add_option("-n,--n-gen", options->bench.generate_tokens, "Generated tokens (0: skip tg)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  model->add_option("-r,--repetitions", options->bench.repetitions, "Timed repetitions")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  model->add_option("-t,--threads", options->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  model->add_flag("--json", options->json, "Print one JSON object");
  model->callback([options, &exit_code] { exit_code = bench_model(*options); });
}

}  // namespace anvil::cli
