// anvil run: generate from a prompt (text or token ids) and stream the output.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "core/process_stats.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "engine/generate.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"

namespace anvil::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_tokens;
  int64_t n_predict = 128;
  int threads = 0;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool print_token_ids = false;
  bool no_bos = false;
  std::string logits_out;
};

Result<std::vector<int32_t>> parse_token_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    while (used < item.size() && std::isspace(static_cast<unsigned char>(item[used]))) ++used;
    if (item.empty() || used != item.size() || value < 0 || value > INT32_MAX)
      return Status::error(fmt::format("--prompt-tokens: '{}' is not a token id (expected ids like 1,450,4996)", item));
    ids.push_back(static_cast<int32_t>(value));
  }
  if (ids.empty()) return Status::error("--prompt-tokens: no token ids given");
  return ids;
}

int run(const RunOptions& options) {
  using Clock = std::chrono::steady_clock;
  // Check what needs no model first, so a typo fails before a long load.
  Status sampling_ok = options.sampling.validate();
  if (!sampling_ok) return fail(sampling_ok.message());
  GenerationRequest request;
  if (!options.prompt_tokens.empty()) {
    Result<std::vector<int32_t>> ids = parse_token_ids(options.prompt_tokens);
    if (!ids) return fail(ids.status().message());
    request.prompt = std::move(ids).value();
  }

  const auto load_start = Clock::now();
  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  auto shared_checkpoint = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(shared_checkpoint);
  if (!model) return fail(model.status().message());
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  const ModelConfig& config = (*model)->config();
  fmt::print(stderr, "anvil: loaded {} ({}, {} parameters) in {:.2f} s\n", options.model, config.arch,
             format_count(config.parameter_count()), load_seconds);

  std::unique_ptr<Tokenizer> tokenizer;
  if (!shared_checkpoint->vocab.empty()) {
    Result<std::unique_ptr<Tokenizer>> created = Tokenizer::create(shared_checkpoint->vocab);
    if (created) tokenizer = std::move(created).value();
    else if (options.prompt_tokens.empty()) return fail(created.status().message());
  }

  if (options.prompt_tokens.empty()) {
    if (!tokenizer) return fail(fmt::format("{}: this model carries no tokenizer; give token ids with --prompt-tokens",
                                            options.model));
    // Special tokens typed in the prompt (chat markers such as <|im_start|>) become their ids, as
    // in llama.cpp's CLI.
    Result<std::vector<int32_t>> ids = tokenizer->encode(options.prompt, !options.no_bos, /*parse_special=*/true);
    if (!ids) return fail(ids.status().message());
    request.prompt = std::move(ids).value();
  }
  request.max_new_tokens = options.n_predict;
  request.sampling = options.sampling;
  request.stop_strings = options.stop;
  request.ignore_eos = options.ignore_eos;
  std::vector<float> prompt_logits;
  if (!options.logits_out.empty()) request.prompt_logits = &prompt_logits;

  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());
  const bool stream_text = tokenizer && !options.print_token_ids;
  GenerationCallbacks callbacks;
  if (stream_text) {
    if (options.prompt_tokens.empty()) fmt::print("{}", options.prompt);
    callbacks.on_text = [](const std::string& text) {
      fmt::print("{}", text);
      std::fflush(stdout);
    };
  }
  Result<GenerationResult> result = generate(**model, pool, stream_text ? tokenizer.get() : nullptr, request, callbacks);
  if (!result) return fail(result.status().message());
  if (stream_text) fmt::print("\n");
  if (options.print_token_ids) {
    std::string line;
    for (size_t i = 0; i < result->tokens.size(); ++i) line += (i ? "," : "") + std::to_string(result->tokens[i]);
    fmt::print("{}\n", line);
  }
  if (!options.logits_out.empty()) {
    std::ofstream out(options.logits_out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(prompt_logits.data()),
              static_cast<std::streamsize>(prompt_logits.size() * sizeof(float)));
    if (!out) return fail(fmt::format("{}: cannot write logits", options.logits_out));
  }

  std::fflush(stdout);  // the text ends before the statistics on stderr begin
  const GenerationResult& r = *result;
  const int64_t decode_steps = static_cast<int64_t>(r.tokens.size()) - 1;
  fmt::print(stderr, "anvil: prompt {} tokens in {:.3f} s ({:.1f} tok/s); generated {} tokens", r.prompt_tokens,
             r.prompt_seconds, r.prompt_tokens / std::max(r.prompt_seconds, 1e-9), r.tokens.size());
  if (decode_steps > 0)
    fmt::print(stderr, ", decode {:.1f} tok/s", decode_steps / std::max(r.generate_seconds, 1e-9));
  fmt::print(stderr, " (finish: {}); {} threads; peak RSS {:.0f} MiB\n", r.finish_reason, pool.thread_count(),
             peak_rss_bytes() / 1048576.0);
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  cmd->add_option("-m,--model", options->model,
                  "GGUF file, Hugging Face directory, llama2.c checkpoint, or dummy:<preset>[:dtype]")
      ->required();
  auto* prompt = cmd->add_option("-p,--prompt", options->prompt, "Prompt text");
  auto* tokens = cmd->add_option("--prompt-tokens", options->prompt_tokens,
                                 "Prompt as comma-separated token ids, used as given (no BOS added)");
  prompt->excludes(tokens);
  cmd->add_option("-n,--n-predict", options->n_predict, "Tokens to generate")->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("-t,--threads", options->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--temperature,--temp", options->sampling.temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", options->sampling.top_k, "Top-k (<= 0: off)")->capture_default_str();
  cmd->add_option("--top-p", options->sampling.top_p, "Top-p / nucleus (1: off)")->capture_default_str();
  cmd->add_option("--min-p", options->sampling.min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", options->sampling.repetition_penalty, "Repetition penalty (1: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", options->sampling.penalty_last_n, "Window of the repetition penalty")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", options->sampling.presence_penalty, "Presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", options->sampling.frequency_penalty, "Frequency penalty")
      ->capture_default_str();
  cmd->add_option("-s,--seed", options->sampling.seed, "Random seed (same seed, same output)")->capture_default_str();
  cmd->add_option("--stop", options->stop, "Stop string (repeatable)");
  cmd->add_flag("--ignore-eos", options->ignore_eos, "Keep generating after EOS");
  cmd->add_flag("--no-bos", options->no_bos, "Do not add BOS to a text prompt");
  cmd->add_flag("--print-token-ids", options->print_token_ids,
                "Print the generated ids, comma-separated, on one line (instead of text)");
  cmd->add_option("--logits-out", options->logits_out,
                  "Write the prompt's logits (n_prompt x vocab, float32 little-endian) to this file");
  cmd->callback([options, &exit_code] {
    if (options->prompt.empty() && options->prompt_tokens.empty()) {
      exit_code = fail("run: give a prompt with --prompt or --prompt-tokens");
      return;
    }
    exit_code = run(*options);
  });
}

}  // namespace anvil::cli
