// anvil run: generate from a prompt (text or token ids) and stream the output.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "commands.h"
#include "core/process_stats.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/kv_block_pool.h"
#include "model/decoder_model.h"
#include "model/kv_store.h"
#include "model/load_checkpoint.h"
#include "quantize_at_load.h"

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
  std::string kv_dtype = "auto";
  std::string quantization;
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
  std::vector<int32_t> prompt;
  if (!options.prompt_tokens.empty()) {
    Result<std::vector<int32_t>> ids = parse_token_ids(options.prompt_tokens);
    if (!ids) return fail(ids.status().message());
    prompt = std::move(ids).value();
  }

  Result<std::optional<QuantizeOptions>> quantization = parse_quantization_flag(options.quantization);
  if (!quantization) return fail(quantization.status().message());

  const auto load_start = Clock::now();
  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  if (*quantization) {
    Status quantized = apply_online_quantization(*checkpoint, **quantization, options.threads);
    if (!quantized) return fail(quantized.message());
  }
  repack_for_decode(*checkpoint, options.threads);
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
    prompt = std::move(ids).value();
  }
  const ModelConfig& c = config;
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());

  // --logits-out is a scoring pass of its own (every prompt position's logits), before generation.
  if (!options.logits_out.empty()) {
    if (prompt_len > c.context_length)
      return fail(fmt::format("the prompt has {} tokens, more than the model's context length of {}", prompt_len,
                              c.context_length));
    SequenceKvCache cache = (*model)->make_cache(prompt_len);
    std::vector<float> logits(static_cast<size_t>(prompt_len * c.vocab_size));
    Status scored = (*model)->forward(prompt, cache, pool, logits.data(), /*all_logits=*/true);
    if (!scored) return fail(scored.message());
    std::ofstream out(options.logits_out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
    if (!out) return fail(fmt::format("{}: cannot write logits", options.logits_out));
  }

  // Generation runs on the same continuous-batching engine as `anvil serve`, sized for this one
  // request: one sequence, a KV cache of exactly prompt + n_predict tokens (whole blocks).
  const Result<DType> kv_dtype = kv_cache_dtype_for(options.kv_dtype, shared_checkpoint->has_f32_layer_weights());
  if (!kv_dtype) return fail(kv_dtype.status().message());
  EngineOptions engine_options;
  engine_options.max_num_seqs = 1;
  engine_options.max_num_batched_tokens = std::clamp<int64_t>(prompt_len, 16, 2048);
  engine_options.kv_dtype = *kv_dtype;
  engine_options.enable_prefix_caching = false;
  const int64_t sequence_tokens = std::min<int64_t>(prompt_len + std::max<int64_t>(options.n_predict, 1), c.context_length);
  const int64_t blocks = (sequence_tokens + engine_options.block_size - 1) / engine_options.block_size;
  engine_options.kv_cache_bytes = blocks * static_cast<int64_t>(KvBlockPool::block_bytes(c, *kv_dtype, engine_options.block_size));

  const bool stream_text = tokenizer && !options.print_token_ids;
  if (stream_text && options.prompt_tokens.empty()) fmt::print("{}", options.prompt);
  std::vector<int32_t> generated;
  std::string finish = "length";
  double prompt_seconds = 0.0, generate_seconds = 0.0;
  if (options.n_predict > 0) {
    Result<std::unique_ptr<Engine>> engine =
        Engine::create(**model, stream_text ? tokenizer.get() : nullptr, pool, engine_options);
    if (!engine) return fail(engine.status().message());
    RequestParams params;
    params.prompt = prompt;
    params.sampling = options.sampling;
    params.max_tokens = options.n_predict;
    params.stop = options.stop;
    params.ignore_eos = options.ignore_eos;
    params.detokenize = stream_text;
    const auto submitted = Clock::now();
    Clock::time_point first_token, last_token;
    std::string error;
    auto on_output = [&](const RequestOutput& out) {
      const auto now = Clock::now();
      if (!out.new_tokens.empty()) {
        if (generated.empty()) first_token = now;
        last_token = now;
      }
      generated.insert(generated.end(), out.new_tokens.begin(), out.new_tokens.end());
      if (stream_text && !out.new_text.empty()) {
        fmt::print("{}", out.new_text);
        std::fflush(stdout);
      }
      if (out.finished()) {
        finish = finish_reason_name(out.finish);
        error = out.error;
      }
    };
    Result<RequestId> id = (*engine)->submit(std::move(params), on_output);
    if (!id) return fail(id.status().message());
    Status ran = (*engine)->run_until_idle();
    if (!ran) return fail(ran.message());
    if (!error.empty()) return fail(error);
    if (!generated.empty()) {
      prompt_seconds = std::chrono::duration<double>(first_token - submitted).count();
      generate_seconds = std::chrono::duration<double>(last_token - first_token).count();
    }
  }
  if (stream_text) fmt::print("\n");
  if (options.print_token_ids) {
    std::string line;
    for (size_t i = 0; i < generated.size(); ++i) line += (i ? "," : "") + std::to_string(generated[i]);
    fmt::print("{}\n", line);
  }

  std::fflush(stdout);  // the text ends before the statistics on stderr begin
  const int64_t decode_steps = static_cast<int64_t>(generated.size()) - 1;
  if (generated.empty())
    fmt::print(stderr, "anvil: prompt {} tokens; generated 0 tokens", prompt_len);
  else
    fmt::print(stderr, "anvil: prompt {} tokens in {:.3f} s ({:.1f} tok/s); generated {} tokens", prompt_len,
               prompt_seconds, prompt_len / std::max(prompt_seconds, 1e-9), generated.size());
  if (decode_steps > 0) fmt::print(stderr, ", decode {:.1f} tok/s", decode_steps / std::max(generate_seconds, 1e-9));
  fmt::print(stderr, " (finish: {}); {} threads; KV {}; peak RSS {:.0f} MiB\n", finish, pool.thread_count(),
             dtype_name(*kv_dtype), peak_rss_bytes() / 1048576.0);
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
                  "Write the prompt's logits (n_prompt x vocab, float32 little-endian) to this file (a scoring pass before generation)");
  cmd->add_option("--quantization,-q", options->quantization, kOnlineQuantizationHelp);
  cmd->add_option("--kv-dtype", options->kv_dtype,
                  "KV cache dtype: auto (f32 for f32 weights, else f16), f32, f16, bf16, fp8 (E4M3) or int8 "
                  "(1 byte per element and a scale per token and KV head)")->capture_default_str();
  cmd->callback([options, &exit_code] {
    if (options->prompt.empty() && options->prompt_tokens.empty()) {
      exit_code = fail("run: give a prompt with --prompt or --prompt-tokens");
      return;
    }
    exit_code = run(*options);
  });
}

}  // namespace anvil::cli
