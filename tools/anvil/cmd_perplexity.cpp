// anvil perplexity: llama.cpp-style perplexity of a model over a text, and KL divergence against a base model.
#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "commands.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "eval/chunked_scoring.h"
#include "eval/kl_divergence.h"
#include "eval/logprob_file.h"
#include "eval/perplexity.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "model/repack_weights.h"
#include "quant/calibration.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {
namespace {

struct PerplexityOptions {
  std::string model;
  std::string text_file;
  std::string tokens_file;
  int64_t ctx = 512;
  bool ctx_given = false;
  int64_t chunks = 0;
  int threads = 0;
  bool json = false;
  std::string kl_base;
  bool kl_divergence = false;
  std::string kl_base_dtype = "f32";
};

Result<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(fmt::format("{}: cannot open the {} (no such file or not readable)", path, what));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return Status::error(fmt::format("{}: cannot read the {}", path, what));
  return contents.str();
}

// The id that replaces each chunk's first token: BOS when the model adds one (llama.cpp's
// llama_vocab_get_add_bos); a model without a vocabulary (llama2.c) uses its config's BOS.
int32_t chunk_bos_id(const Checkpoint& checkpoint) {
  if (!checkpoint.vocab.empty()) return checkpoint.vocab.add_bos ? checkpoint.vocab.bos_id : -1;
  return checkpoint.config.bos_token_id;
}

// The evaluation stream: ids from --tokens-file used as given (parsed before the model loads, so
// a typo fails fast; checked against its vocabulary here) or the text tokenized as llama.cpp does
// (BOS added, special tokens not parsed, one trailing newline dropped).
Result<std::vector<int32_t>> input_tokens(const PerplexityOptions& options, const std::string& contents,
                                          std::vector<int32_t> ids, const Checkpoint& checkpoint) {
  if (!options.tokens_file.empty()) {
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] >= checkpoint.config.vocab_size)
        return Status::error(fmt::format("{}: token {} is id {}, outside the model's vocabulary of {}",
                                         options.tokens_file, i + 1, ids[i], checkpoint.config.vocab_size));
    return ids;
  }
  if (checkpoint.vocab.empty())
    return Status::error(fmt::format("{}: this model carries no tokenizer; give token ids with --tokens-file",
                                     options.model));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::create(checkpoint.vocab));
  std::string_view text = contents;
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return tokenizer->encode(text, /*add_special=*/true, /*parse_special=*/false);
}

// Per-chunk running estimate on stderr (a line per chunk, as llama.cpp prints [i]ppl), with the
// progress bar redrawn under it on a terminal.
class ChunkReporter {
 public:
  explicit ChunkReporter(const char* label) : progress_(label, false), terminal_(::isatty(STDERR_FILENO) == 1) {}
  void start(int64_t n_chunks) { progress_.callback()(0, static_cast<uint64_t>(n_chunks)); }
  void operator()(const ChunkProgress& p) {
    const double per_chunk = p.seconds / static_cast<double>(p.chunks_done);
    const double eta = per_chunk * static_cast<double>(p.n_chunks - p.chunks_done);
    std::string line = fmt::format("anvil: [{}/{}] PPL {:.4f} ± {:.4f}", p.chunks_done, p.n_chunks, p.ppl, p.ppl_stderr);
    if (p.kld_mean >= 0.0) line += fmt::format(", mean KLD {:.6f}", p.kld_mean);
    line += fmt::format("  ({:.2f} s/chunk, ETA {:.0f} s)", per_chunk, eta);
    fmt::print(stderr, "{}{}\n", terminal_ ? "\r\033[K" : "", line);
    progress_.callback()(static_cast<uint64_t>(p.chunks_done), static_cast<uint64_t>(p.n_chunks));
  }
  void finish() { progress_.finish(); }

 private:
  TerminalProgress progress_;
  bool terminal_;
};

nlohmann::json common_json(const PerplexityOptions& options, int64_t ctx, int64_t n_chunks, int64_t scored,
                           double seconds, int threads) {
  nlohmann::json j;
  j["model"] = options.model;
  j["ctx"] = ctx;
  j["n_chunks"] = n_chunks;
  j["n_tokens_scored"] = scored;
  j["n_tokens_evaluated"] = ctx * n_chunks;
  j["seconds"] = seconds;
  j["tokens_per_second"] = seconds > 0.0 ? static_cast<double>(ctx * n_chunks) / seconds : 0.0;
  j["threads"] = threads;
  return j;
}

int run_perplexity(const PerplexityOptions& options, const Checkpoint& checkpoint, const DecoderModel& model,
                   const std::vector<int32_t>& tokens, ThreadPool& pool) {
  Result<ChunkPlan> plan = plan_chunks(static_cast<int64_t>(tokens.size()), options.ctx, options.chunks);
  if (!plan) return fail(plan.status().message());
  const std::vector<int32_t> evaluated = chunk_tokens(tokens, *plan, chunk_bos_id(checkpoint));
  std::unique_ptr<LogprobFileWriter> base_out;
  if (!options.kl_base.empty()) {
    LogprobFileHeader header;
    header.dtype = *dtype_from_name(options.kl_base_dtype);
    header.vocab_size = checkpoint.config.vocab_size;
    header.n_ctx = plan->n_ctx;
    header.n_chunks = plan->n_chunks;
    header.vocab_fingerprint = vocab_fingerprint(checkpoint.vocab);
    header.model = options.model;
    Result<std::unique_ptr<LogprobFileWriter>> writer = LogprobFileWriter::create(options.kl_base, header, evaluated);
    if (!writer) return fail(writer.status().message());
    base_out = std::move(writer).value();
    fmt::print(stderr, "anvil: saving base log-probs ({}, {:.1f} MiB) to {}\n", options.kl_base_dtype,
               static_cast<double>(header.chunk_bytes() * header.n_chunks) / 1048576.0, options.kl_base);
  }
  fmt::print(stderr, "anvil: {} tokens; {} chunks of {} ({} scored per chunk), {} threads\n", tokens.size(),
             plan->n_chunks, plan->n_ctx, plan->scored_per_chunk(), pool.thread_count());

  ChunkReporter reporter("perplexity");
  reporter.start(plan->n_chunks);
  Result<PerplexityResult> result =
      evaluate_perplexity(model, evaluated, *plan, pool, base_out.get(), [&](const ChunkProgress& p) { reporter(p); });
  reporter.finish();
  Status saved = !result ? result.status() : base_out ? base_out->close() : Status::ok();
  if (!saved) {
    // A partial base file would only fail later as truncated: remove it now.
    if (base_out) {
      base_out.reset();
      std::error_code ignored;
      std::filesystem::remove(options.kl_base, ignored);
    }
    return fail(saved.message());
  }

  if (options.json) {
    nlohmann::json j = common_json(options, result->n_ctx, result->n_chunks, result->n_tokens_scored, result->seconds,
                                   pool.thread_count());
    j["ppl"] = result->ppl;
    j["ppl_stderr"] = result->ppl_stderr;
    j["mean_nll"] = result->mean_nll;
    if (!options.kl_base.empty()) {
      j["kl_divergence_base"] = options.kl_base;
      j["kl_base_dtype"] = options.kl_base_dtype;
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f}\n", result->ppl, result->ppl_stderr);
  }
  fmt::print(stderr, "anvil: {} tokens scored over {} chunks in {:.2f} s ({:.1f} tokens/s evaluated)\n",
             result->n_tokens_scored, result->n_chunks, result->seconds,
             static_cast<double>(result->n_chunks * result->n_ctx) / std::max(result->seconds, 1e-9));
  return 0;
}

void print_kl_text(const KlDivergenceResult& r, const std::string& base_model) {
  fmt::print("====== Perplexity statistics ======\n");
  fmt::print("Mean PPL(Q)                   : {:10.6f} ± {:10.6f}\n", r.ppl, r.ppl_stderr);
  fmt::print("Mean PPL(base)                : {:10.6f} ± {:10.6f}   ({})\n", r.ppl_base, r.ppl_base_stderr, base_model);
  fmt::print("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%\n", 100.0 * r.ln_ppl_correlation);
  fmt::print("Mean ln(PPL(Q)/PPL(base))     : {:10.6f} ± {:10.6f}\n", r.ln_ppl_ratio, r.ln_ppl_ratio_stderr);
  fmt::print("Mean PPL(Q)/PPL(base)         : {:10.6f} ± {:10.6f}\n\n", r.ppl_ratio, r.ppl_ratio_stderr);
  fmt::print("====== KL divergence statistics ======\n");
  fmt::print("Mean    KLD: {:10.6f} ± {:10.6f}\n", r.kld_mean, r.kld_stderr);
  fmt::print("Maximum KLD: {:10.6f}\n", r.kld_max);
  fmt::print("99.9%   KLD: {:10.6f}\n", r.kld_p999);
  fmt::print("99.0%   KLD: {:10.6f}\n", r.kld_p99);
  fmt::print("95.0%   KLD: {:10.6f}\n", r.kld_p95);
  fmt::print("90.0%   KLD: {:10.6f}\n", r.kld_p90);
  fmt::print("Median  KLD: {:10.6f}\n", r.kld_median);
  fmt::print("Minimum KLD: {:10.6f}\n\n", r.kld_min);
  fmt::print("====== Token probability statistics ======\n");
  fmt::print("Mean    Δp: {:6.3f} ± {:5.3f} %\n", 100.0 * r.dp_mean, 100.0 * r.dp_stderr);
  fmt::print("Maximum Δp: {:6.3f}%\n", 100.0 * r.dp_max);
  fmt::print("99.0%   Δp: {:6.3f}%\n", 100.0 * r.dp_p99);
  fmt::print("Median  Δp: {:6.3f}%\n", 100.0 * r.dp_median);
  fmt::print(" 1.0%   Δp: {:6.3f}%\n", 100.0 * r.dp_p01);
  fmt::print("Minimum Δp: {:6.3f}%\n", 100.0 * r.dp_min);
  fmt::print("RMS Δp    : {:6.3f} ± {:5.3f} %\n", 100.0 * r.dp_rms, 100.0 * r.dp_rms_stderr);
  fmt::print("Same top p: {:6.3f} ± {:5.3f} %\n", 100.0 * r.top1_agreement, 100.0 * r.top1_stderr);
}

nlohmann::json kl_json(const PerplexityOptions& options, const KlDivergenceResult& r, const std::string& base_model,
                       int threads) {
  nlohmann::json j = common_json(options, r.n_ctx, r.n_chunks, r.n_tokens_scored, r.seconds, threads);
  j["base_model"] = base_model;
  j["kl_divergence_base"] = options.kl_base;
  j["ppl"] = r.ppl;
  j["ppl_stderr"] = r.ppl_stderr;
  j["ppl_base"] = r.ppl_base;
  j["ppl_base_stderr"] = r.ppl_base_stderr;
  j["ppl_ratio"] = r.ppl_ratio;
  j["ppl_ratio_stderr"] = r.ppl_ratio_stderr;
  j["ln_ppl_ratio"] = r.ln_ppl_ratio;
  j["ln_ppl_ratio_stderr"] = r.ln_ppl_ratio_stderr;
  j["ln_ppl_correlation"] = r.ln_ppl_correlation;
  j["kld_mean"] = r.kld_mean;
  j["kld_stderr"] = r.kld_stderr;
  j["kld_median"] = r.kld_median;
  j["kld_p90"] = r.kld_p90;
  j["kld_p95"] = r.kld_p95;
  j["kld_p99"] = r.kld_p99;
  j["kld_p999"] = r.kld_p999;
  j["kld_max"] = r.kld_max;
  j["kld_min"] = r.kld_min;
  j["top1_agreement"] = r.top1_agreement;
  j["top1_stderr"] = r.top1_stderr;
  j["dp_mean"] = r.dp_mean;
  j["dp_stderr"] = r.dp_stderr;
  j["dp_rms"] = r.dp_rms;
  j["dp_rms_stderr"] = r.dp_rms_stderr;
  j["dp_median"] = r.dp_median;
  j["dp_p01"] = r.dp_p01;
  j["dp_p99"] = r.dp_p99;
  j["dp_min"] = r.dp_min;
  j["dp_max"] = r.dp_max;
  return j;
}

int run_kl_divergence(const PerplexityOptions& options, const Checkpoint& checkpoint, const DecoderModel& model,
                      LogprobFileReader& base, const std::optional<std::vector<int32_t>>& tokens, ThreadPool& pool) {
  const LogprobFileHeader& header = base.header();
  Status compatible = check_base_compatible(header, options.kl_base, checkpoint.config, vocab_fingerprint(checkpoint.vocab));
  if (!compatible) return fail(compatible.message());
  if (options.ctx_given && options.ctx != header.n_ctx)
    return fail(fmt::format("{} was scored with --ctx {}, not {}: KL divergence compares the same chunks (leave "
                            "--ctx out to use the file's)",
                            options.kl_base, header.n_ctx, options.ctx));
  // With the text (or ids) given again, check that it is what the base model scored.
  if (tokens) {
    const int64_t needed = header.n_chunks * header.n_ctx;
    const std::string& source = options.tokens_file.empty() ? options.text_file : options.tokens_file;
    if (static_cast<int64_t>(tokens->size()) < needed)
      return fail(fmt::format("{} tokenizes to {} tokens, but {} holds {} chunks of {} ({} tokens): not the text "
                              "the base model scored",
                              source, tokens->size(), options.kl_base, header.n_chunks, header.n_ctx, needed));
    ChunkPlan plan = header.plan();
    const std::vector<int32_t> evaluated = chunk_tokens(*tokens, plan, chunk_bos_id(checkpoint));
    for (int64_t i = 0; i < needed; ++i)
      if (evaluated[i] != base.tokens()[i])
        return fail(fmt::format("{} differs from the tokens in {} at chunk {}, position {} (id {} vs {}): a different "
                                "text, tokenizer or BOS handling than the base run's",
                                source, options.kl_base, i / header.n_ctx + 1, i % header.n_ctx, evaluated[i],
                                base.tokens()[i]));
  }
  const int64_t n_chunks = options.chunks > 0 ? std::min(options.chunks, header.n_chunks) : header.n_chunks;
  fmt::print(stderr, "anvil: comparing with {} (base {}, {}): {} chunks of {} ({} scored per chunk), {} threads\n",
             options.kl_base, header.model.empty() ? "?" : header.model, dtype_name(header.dtype), n_chunks,
             header.n_ctx, header.plan().scored_per_chunk(), pool.thread_count());

  ChunkReporter reporter("kl-divergence");
  reporter.start(n_chunks);
  Result<KlDivergenceResult> result =
      evaluate_kl_divergence(model, base, options.chunks, pool, [&](const ChunkProgress& p) { reporter(p); });
  reporter.finish();
  if (!result) return fail(result.status().message());
  if (options.json)
    fmt::print("{}\n", kl_json(options, *result, header.model, pool.thread_count()).dump(2));
  else
    print_kl_text(*result, header.model);
  fmt::print(stderr, "anvil: {} tokens compared over {} chunks in {:.2f} s\n", result->n_tokens_scored,
             result->n_chunks, result->seconds);
  return 0;
}

int perplexity_command(const PerplexityOptions& options) {
  // Everything that needs no model is checked first, so a typo fails before a long load.
  if (options.kl_divergence && options.kl_base.empty())
    return fail("--kl-divergence needs --kl-divergence-base FILE (written by an earlier run of the base model)");
  const bool have_input = !options.text_file.empty() || !options.tokens_file.empty();
  if (!options.kl_divergence && !have_input)
    return fail("perplexity: give the text with -f/--file (or token ids with --tokens-file)");
  std::optional<DType> base_dtype = dtype_from_name(options.kl_base_dtype);
  if (!base_dtype || (*base_dtype != DType::F32 && *base_dtype != DType::F16))
    return fail(fmt::format("--kl-base-dtype '{}': base log-probs are stored as f32 or f16", options.kl_base_dtype));
  std::string contents;
  std::vector<int32_t> file_ids;
  if (have_input) {
    const bool ids = !options.tokens_file.empty();
    Result<std::string> read = read_file(ids ? options.tokens_file : options.text_file, ids ? "token id file" : "text file");
    if (!read) return fail(read.status().message());
    contents = std::move(read).value();
    if (ids) {
      Result<std::vector<int32_t>> parsed = parse_token_ids(options.tokens_file, contents);  // quant/calibration.h
      if (!parsed) return fail(parsed.status().message());
      file_ids = std::move(parsed).value();
    }
  }
  std::unique_ptr<LogprobFileReader> base;
  if (options.kl_divergence) {
    // A missing, foreign or truncated base file fails before the model loads.
    Result<std::unique_ptr<LogprobFileReader>> opened = LogprobFileReader::open(options.kl_base);
    if (!opened) return fail(opened.status().message());
    base = std::move(opened).value();
  }

  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  repack_weights_for_decode(*checkpoint, options.threads);
  auto shared_checkpoint = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(shared_checkpoint);
  if (!model) return fail(model.status().message());
  const ModelConfig& config = (*model)->config();
  fmt::print(stderr, "anvil: loaded {} ({}, {} parameters, context {})\n", options.model, config.arch,
             format_count(config.parameter_count()), config.context_length);
  if (!options.kl_divergence && options.ctx > config.context_length)
    return fail(fmt::format("--ctx {} is larger than the model's context length of {}", options.ctx,
                            config.context_length));

  std::optional<std::vector<int32_t>> tokens;
  if (have_input) {
    Result<std::vector<int32_t>> encoded = input_tokens(options, contents, std::move(file_ids), *shared_checkpoint);
    if (!encoded) return fail(encoded.status().message());
    tokens = std::move(encoded).value();
  }
  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());
  if (base) return run_kl_divergence(options, *shared_checkpoint, **model, *base, tokens, pool);
  return run_perplexity(options, *shared_checkpoint, **model, *tokens, pool);
}

}  // namespace

void add_perplexity_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Perplexity over a text (llama.cpp's method), or KL divergence against a base model's log-probs");
  cmd->add_option("-m,--model", options->model,
                  "GGUF file, Hugging Face directory, llama2.c checkpoint, or dummy:<preset>[:dtype]")
      ->required();
  auto* file = cmd->add_option("-f,--file", options->text_file,
                               "Text to score (tokenized whole, with BOS; one trailing newline dropped)");
  auto* ids = cmd->add_option("--tokens-file", options->tokens_file,
                              "Token ids to score instead of text (separated by spaces, newlines or commas; used as "
                              "given, for models without a tokenizer)");
  file->excludes(ids);
  auto* ctx = cmd->add_option("-c,--ctx", options->ctx, "Tokens per chunk; the second half of each is scored")
                  ->capture_default_str()
                  ->check(CLI::Range(int64_t{4}, int64_t{1} << 24));
  cmd->add_option("--chunks", options->chunks, "Score at most this many chunks (default: every whole chunk)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("-t,--threads", options->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", options->json, "Print one JSON object with the results");
  cmd->add_option("--kl-divergence-base", options->kl_base,
                  "Without --kl-divergence: also save this model's log-probs of every scored position to FILE. "
                  "With it: the file to compare against");
  cmd->add_flag("--kl-divergence", options->kl_divergence,
                "Compare this model with the base log-probs in --kl-divergence-base (KLD, top-1 agreement, PPL "
                "ratio); -f is then optional and, when given, checked against the file's tokens");
  cmd->add_option("--kl-base-dtype", options->kl_base_dtype,
                  "Storage of saved base log-probs: f32 (exact) or f16 (half the size, KLD error ~1e-4)")
      ->capture_default_str();
  cmd->callback([options, ctx, &exit_code] {
    options->ctx_given = ctx->count() > 0;
    exit_code = perplexity_command(*options);
  });
}

}  // namespace anvil::cli
