// anvil bench quant: per quantization scheme, what it costs in accuracy (PPL, KL divergence, top-1
// against the model as loaded) and what it buys in size and speed (pp/tg tok/s, decode GB/s).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bench/bench_report.h"
#include "bench/machine_limits.h"
#include "bench/plot_output.h"
#include "bench/quant_bench.h"
#include "bench/quant_bench_report.h"
#include "bench/svg_plot.h"
#include "commands.h"
#include "core/progress.h"
#include "engine/memory_plan.h"
#include "interrupt_scope.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"

namespace anvil::cli {
namespace {

struct BenchQuantFlags {
  std::string model;
  std::string schemes;
  std::string text_file, tokens_file;
  int64_t ctx = 256;
  int64_t chunks = 0;
  int threads = 0;
  int64_t group = 0;  // 0: not given
  std::string calib, calib_tokens;
  int64_t calib_samples = 0, calib_seq_len = 0;  // 0: not given
  int64_t prompt_tokens = 512, generate_tokens = 128;
  int repetitions = 3;
  std::string logprobs_memory = "1GiB";
  std::string output_json;
  std::string plot;
};

Result<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(fmt::format("{}: cannot open the {} (no such file or not readable)", path, what));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return Status::error(fmt::format("{}: cannot read the {}", path, what));
  return contents.str();
}

// --plot PATH: a .svg file, or a directory that gets quant.svg.
std::string plot_path(const std::string& path) {
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".svg") == 0) return path;
  return (std::filesystem::path(path) / "quant.svg").string();
}

// One progress bar per (row, phase), labelled "[2/5] q4_0: evaluate", on a terminal only.
class PhaseProgress {
 public:
  explicit PhaseProgress(size_t rows) : rows_(rows) {}
  void update(size_t row, const std::string& scheme, QuantBenchPhase phase, uint64_t done, uint64_t total) {
    const std::string label = fmt::format("[{}/{}] {}: {}", row + 1, rows_, scheme, quant_bench_phase_name(phase));
    if (!bar_ || label != label_) {
      if (bar_) bar_->finish();
      bar_ = std::make_unique<TerminalProgress>(label, false);
      label_ = label;
    }
    bar_->callback()(done, total);
  }
  void finish() {
    if (bar_) bar_->finish();
    bar_.reset();
  }
  std::string prefix(size_t row, const std::string& scheme) const {
    return fmt::format("[{}/{}] {}", row + 1, rows_, scheme);
  }

 private:
  size_t rows_;
  std::string label_;
  std::unique_ptr<TerminalProgress> bar_;
};

// One stderr line per finished phase.
void print_phase_done(const std::string& prefix, const QuantBenchRow& row, QuantBenchPhase phase,
                      bool ppl_meaningful) {
  std::string line;
  switch (phase) {
    case QuantBenchPhase::Quantize: {
      std::string types;
      for (const auto& [type, count] : row.weight_types) types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", type, count);
      line = fmt::format("quantized in {:.2f} s: {:.2f} bits per weight, {:.4g} GiB of weights ({})",
                         row.quantize_seconds, bits_per_weight(row.size.linear_bytes, row.size.linear_elements),
                         static_cast<double>(row.size.total_bytes) / 1073741824.0, types);
      break;
    }
    case QuantBenchPhase::Evaluate:
      if (row.base_ppl) {
        line = ppl_meaningful ? fmt::format("PPL {:.4f} ± {:.4f}", row.base_ppl->ppl, row.base_ppl->ppl_stderr)
                              : std::string("base log-probs scored");
        line += fmt::format(" over {} tokens ({:.2f} s)", row.base_ppl->n_tokens_scored, row.eval_seconds);
      } else if (row.kld) {
        line = fmt::format("mean KLD {:.6f}, p99 {:.6f}, top-1 {:.2f} %", row.kld->kld_mean, row.kld->kld_p99,
                           100.0 * row.kld->top1_agreement);
        if (ppl_meaningful)
          line += fmt::format(", PPL {:.4f} ({:+.2f} %)", row.kld->ppl, 100.0 * (row.kld->ppl_ratio - 1.0));
        line += fmt::format(" ({:.2f} s)", row.eval_seconds);
      }
      break;
    case QuantBenchPhase::Speed:
      if (row.speed) {
        if (row.speed->prompt.tokens > 0)
          line += fmt::format("pp{} {:.1f} tok/s", row.speed->prompt.tokens, row.speed->prompt.mean_tokens_per_second());
        if (row.speed->generate.tokens > 0)
          line += fmt::format("{}tg{} {:.1f} tok/s", line.empty() ? "" : ", ", row.speed->generate.tokens,
                              row.speed->generate.mean_tokens_per_second());
      }
      break;
  }
  fmt::print(stderr, "anvil: {}: {}\n", prefix, line);
}

int bench_quant(const BenchQuantFlags& cli) {
  // Everything that needs no model first, so a typo fails before a long load.
  QuantBenchSchemeDefaults defaults;
  if (cli.group != 0) defaults.group = cli.group;
  defaults.calibration_file = cli.calib;
  defaults.calibration_tokens_file = cli.calib_tokens;
  if (cli.calib_samples != 0) defaults.calibration_samples = cli.calib_samples;
  if (cli.calib_seq_len != 0) defaults.calibration_seq_len = cli.calib_seq_len;
  Result<std::vector<QuantBenchScheme>> schemes = parse_quant_bench_schemes(cli.schemes, defaults);
  if (!schemes) return fail(schemes.status().message());
  for (const std::string& path : {cli.calib, cli.calib_tokens})
    if (!path.empty() && !std::filesystem::is_regular_file(path))
      return fail(fmt::format("{}: no such file (calibration data)", path));
  if (cli.text_file.empty() && cli.tokens_file.empty())
    return fail("bench quant: give the evaluation text with -f/--file (or token ids with --tokens-file)");
  Result<int64_t> memory_limit = parse_byte_size(cli.logprobs_memory);
  if (!memory_limit) return fail(memory_limit.status().with_context("--logprobs-memory").message());
  if (*memory_limit < 0) return fail("--logprobs-memory must not be negative");
  const bool ids = !cli.tokens_file.empty();
  Result<std::string> contents = read_file(ids ? cli.tokens_file : cli.text_file, ids ? "token id file" : "text file");
  if (!contents) return fail(contents.status().message());
  std::vector<int32_t> tokens;
  if (ids) {
    Result<std::vector<int32_t>> parsed = parse_token_ids(cli.tokens_file, *contents);  // quant/calibration.h
    if (!parsed) return fail(parsed.status().message());
    tokens = std::move(parsed).value();
  }

  TerminalProgress load_progress("loading " + cli.model, true);
  Result<Checkpoint> loaded = load_checkpoint(cli.model, load_progress.callback());
  load_progress.finish();
  if (!loaded) return fail(loaded.status().message());
  auto checkpoint = std::make_shared<const Checkpoint>(std::move(loaded).value());
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(checkpoint);
  if (!model) return fail(model.status().message());
  const ModelConfig& config = checkpoint->config;
  if (cli.ctx > config.context_length)
    return fail(fmt::format("--ctx {} is larger than the model's context length of {}", cli.ctx, config.context_length));
  if (ids) {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] >= config.vocab_size)
        return fail(fmt::format("{}: token {} is id {}, outside the model's vocabulary of {}", cli.tokens_file, i + 1,
                                tokens[i], config.vocab_size));
  } else {
    Result<std::vector<int32_t>> encoded = tokenize_eval_text(*checkpoint, cli.model, *contents);
    if (!encoded) return fail(encoded.status().message());
    tokens = std::move(encoded).value();
  }
  Result<ChunkPlan> plan = plan_chunks(static_cast<int64_t>(tokens.size()), cli.ctx, cli.chunks);
  if (!plan) return fail(plan.status().message());
  const std::vector<int32_t> evaluated = chunk_tokens(tokens, *plan, chunk_bos_id(*checkpoint));

  ThreadPool pool(cli.threads > 0 ? cli.threads : default_thread_count());
  std::optional<MachineLimits> limits = cached_machine_limits(pool.thread_count());
  QuantBenchReportContext context;
  context.ppl_meaningful = cli.model.rfind("dummy:", 0) != 0;
  context.bandwidth_gbs = limits ? limits->read_bandwidth_gbs : 0.0;

  QuantBenchOptions options;
  options.schemes = *schemes;
  options.speed.prompt_tokens = cli.prompt_tokens;
  options.speed.generate_tokens = cli.generate_tokens;
  options.speed.repetitions = cli.repetitions;
  options.base_memory_limit_bytes = static_cast<uint64_t>(*memory_limit);
  PhaseProgress progress(schemes->size() + 1);
  options.progress = [&](size_t row, const std::string& scheme, QuantBenchPhase phase, uint64_t done, uint64_t total) {
    progress.update(row, scheme, phase, done, total);
  };
  options.on_phase_done = [&](size_t row, const QuantBenchRow& r, QuantBenchPhase phase) {
    progress.finish();
    print_phase_done(progress.prefix(row, r.scheme), r, phase, context.ppl_meaningful);
  };
  options.interrupt = InterruptScope::flag();
  Result<QuantBenchResult> result = [&] {
    InterruptScope interrupt_scope;  // from here on, Ctrl-C stops after the current phase
    fmt::print(stderr, "anvil: {} tokens; {} chunks of {} ({} scored per chunk), {} schemes + base, {} threads\n",
               tokens.size(), plan->n_chunks, plan->n_ctx, plan->scored_per_chunk(), schemes->size(),
               pool.thread_count());
    return run_quant_bench(checkpoint, **model, evaluated, *plan, pool, options);
  }();
  progress.finish();
  if (!result) return fail(result.status().message());

  const std::vector<QuantBenchFigures> figures = quant_bench_figures(*result, context);
  const std::vector<std::string> notes = quant_bench_notes(*result, context);
  nlohmann::json report = bench_report_head("quant", cli.model, **model, pool.thread_count());
  std::vector<std::string> labels;
  for (const QuantBenchScheme& s : *schemes) labels.push_back(s.label);
  report["config"] = {{"schemes", labels},
                      {"file", cli.text_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(cli.text_file)},
                      {"tokens_file", cli.tokens_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(cli.tokens_file)},
                      {"ctx", plan->n_ctx},
                      {"n_chunks", plan->n_chunks},
                      {"n_tokens_scored", plan->scored_tokens()},
                      {"threads", pool.thread_count()},
                      {"n_prompt", cli.prompt_tokens},
                      {"n_gen", cli.generate_tokens},
                      {"repetitions", cli.repetitions},
                      {"group", cli.group != 0 ? nlohmann::json(cli.group) : nlohmann::json(nullptr)},
                      {"calib", cli.calib.empty() ? nlohmann::json(nullptr) : nlohmann::json(cli.calib)},
                      {"calib_tokens", cli.calib_tokens.empty() ? nlohmann::json(nullptr) : nlohmann::json(cli.calib_tokens)},
                      {"ppl_meaningful", context.ppl_meaningful},
                      {"bandwidth_gbs", context.bandwidth_gbs > 0 ? nlohmann::json(context.bandwidth_gbs)
                                                                  : nlohmann::json(nullptr)},
                      {"base_logprobs", result->base_in_memory ? "memory" : "temporary file"}};
  report["interrupted"] = result->interrupted;
  report["notes"] = notes;
  report["base"] = quant_bench_row_json(result->base, figures.front());
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < result->schemes.size(); ++i)
    rows.push_back(quant_bench_row_json(result->schemes[i], figures[i + 1]));
  report["results"] = rows;

  const std::string input = cli.text_file.empty() ? cli.tokens_file : cli.text_file;
  std::string speed_shape = "speed not measured";
  if (cli.prompt_tokens > 0 || cli.generate_tokens > 0)
    speed_shape = fmt::format("pp{} / tg{} x {} runs", cli.prompt_tokens, cli.generate_tokens, cli.repetitions);
  fmt::print("anvil bench quant: {}, {} ({} chunks of {}, {} scored tokens), {} threads, {}\n\n", cli.model, input,
             plan->n_chunks, plan->n_ctx, plan->scored_tokens(), pool.thread_count(), speed_shape);
  fmt::print("{}", quant_bench_markdown(figures));
  if (!notes.empty()) {
    fmt::print("\n");
    for (const std::string& note : notes) fmt::print("- {}\n", note);
  }
  if (!cli.output_json.empty()) {
    Status written = write_text_file(cli.output_json, report.dump(2) + "\n");
    if (!written) return fail(written.message());
    fmt::print("\nreport: {}\n", cli.output_json);
  }
  if (!cli.plot.empty()) {
    const std::string path = plot_path(cli.plot);
    std::error_code ec;  // a directory that cannot be made shows up as the write's error
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    const std::string caption = fmt::format("anvil bench quant: {}, ctx {} x {} chunks, {} threads, {}", cli.model,
                                            plan->n_ctx, plan->n_chunks, pool.thread_count(),
                                            report["date"].get<std::string>());
    const std::vector<LineChart> charts = quant_bench_charts(figures, context.ppl_meaningful);
    Result<std::vector<std::string>> written =
        write_plot_files(path, render_quant_bench_svg(charts, caption));
    if (!written) return fail(written.status().message());
    fmt::print("plot: {}\n", fmt::join(*written, ", "));
  }
  if (result->interrupted) {
    fmt::print("\ninterrupted: partial results ({} of {} schemes started)\n", result->schemes.size(), schemes->size());
    fmt::print(stderr, "anvil: interrupted (Ctrl-C); the results above are partial\n");
    return kInterruptedExitCode;
  }
  return 0;
}

}  // namespace

void add_bench_quant_command(CLI::App& bench, int& exit_code) {
  auto flags = std::make_shared<BenchQuantFlags>();
  CLI::App* cmd = bench.add_subcommand(
      "quant", "Per quantization scheme: accuracy against the model as loaded (PPL, KL divergence, top-1) and "
               "size and speed (bits per weight, pp/tg tok/s, decode GB/s)");
  cmd->add_option("-m,--model", flags->model, "Model (file, directory or dummy:<preset>[:dtype]); the base")
      ->required();
  cmd->add_option("--schemes", flags->schemes,
                  "Comma-separated: f32, f16, bf16, fp8, fp8-dynamic, w8a8, w4a16-rtn, q8_0, q4_0, q4_k, and "
                  "with --calib w4a16-gptq, w8a8-smoothquant; options after a colon (w4a16-rtn:g32,asym, "
                  "fp8:per-tensor)")
      ->required();
  auto* file = cmd->add_option("-f,--file", flags->text_file,
                               "Text to score (tokenized whole, with BOS; one trailing newline dropped)");
  auto* ids = cmd->add_option("--tokens-file", flags->tokens_file,
                              "Token ids to score instead of text (separated by spaces, newlines or commas; for "
                              "models without a tokenizer)");
  file->excludes(ids);
  cmd->add_option("-c,--ctx", flags->ctx, "Tokens per chunk; the second half of each is scored")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{4}, int64_t{1} << 24));
  cmd->add_option("--chunks", flags->chunks, "Score at most this many chunks (default: every whole chunk)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("-t,--threads", flags->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--group", flags->group, "w4a16-rtn, w4a16-gptq: elements per scale, 32, 64 or 128 (default 128)");
  auto* calib = cmd->add_option("--calib", flags->calib,
                                "Calibration text for w4a16-gptq and w8a8-smoothquant (tokenized with the model's "
                                "tokenizer)");
  auto* calib_tokens =
      cmd->add_option("--calib-tokens", flags->calib_tokens, "Calibration token ids, for models without a tokenizer");
  calib->excludes(calib_tokens);
  cmd->add_option("--calib-samples", flags->calib_samples, "Calibration sequences (default 128)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--calib-seq-len", flags->calib_seq_len, "Tokens per calibration sequence (default 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("-p,--n-prompt", flags->prompt_tokens, "pp: prompt tokens (0: skip pp)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-n,--n-gen", flags->generate_tokens, "tg: generated tokens (0: skip tg)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-r,--repetitions", flags->repetitions, "Timed repetitions of pp and tg (after one warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--logprobs-memory", flags->logprobs_memory,
                  "Keep the base log-probs in memory up to this size (beyond: a temporary file under $TMPDIR)")
      ->capture_default_str();
  cmd->add_option("--output-json", flags->output_json, "Write the report (schema: docs/BENCHMARKS.md) to this file");
  cmd->add_option("--plot", flags->plot,
                  "Write SVG and PNG plots of ΔPPL/KLD and decode tok/s vs bits per weight (a .svg path, or a "
                  "directory that gets quant.svg and quant.png)");
  cmd->callback([flags, &exit_code] { exit_code = bench_quant(*flags); });
}

}  // namespace anvil::cli
