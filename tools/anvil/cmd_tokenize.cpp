// anvil tokenize: text to token ids with a model's tokenizer, and a throughput benchmark.
#include <fmt/format.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "formats/gguf_checkpoint.h"
#include "model/load_checkpoint.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace anvil::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string file;
  std::string text;
  bool no_bos = false;
  bool parse_special = false;
  bool pieces = false;
  bool benchmark = false;
  bool chat = false;
  std::string chat_template;  // a format name (implies chat)
};

// Only the vocabulary: a GGUF's tokenizer.* metadata (vocab-only files work) or a Hugging Face
// directory's tokenizer.json; anything else goes through the full checkpoint loader.
Result<Vocab> load_vocab(const std::string& spec) {
  struct stat st {};
  if (spec.rfind("dummy:", 0) != 0 && ::stat(spec.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      ANVIL_ASSIGN_OR_RETURN(Vocab vocab, load_hf_tokenizer(spec));
      if (!vocab.empty()) return vocab;
    } else {
      char magic[4] = {};
      std::ifstream in(spec, std::ios::binary);
      in.read(magic, 4);
      if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf_vocab(spec);
    }
  }
  ANVIL_ASSIGN_OR_RETURN(Checkpoint checkpoint, load_checkpoint(spec));
  return std::move(checkpoint.vocab);
}

Result<std::string> read_input(const TokenizeOptions& options) {
  std::string text = options.text;
  std::string source = "--text";
  if (!options.file.empty()) {
    std::ifstream in(options.file, std::ios::binary);
    if (!in) return Status::error(fmt::format("{}: cannot open the file", options.file));
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    source = options.file;
  }
  const size_t bad = utf8::find_invalid(text);
  if (bad != std::string::npos)
    return Status::error(fmt::format("{}: invalid UTF-8 at byte {} (0x{:02X})", source, bad,
                                     static_cast<unsigned char>(text[bad])));
  return text;
}

int benchmark(const Tokenizer& tokenizer, const std::string& text, const TokenizeOptions& options) {
  using Clock = std::chrono::steady_clock;
  // The first pass starts with an empty word cache (the honest figure for new text); later passes
  // find every word cached, as a server does for common words. Repeat for at least a second.
  double first = 0, best = 1e30, total = 0;
  size_t n_tokens = 0;
  int passes = 0;
  while (total < 1.0 || passes < 3) {
    const auto start = Clock::now();
    Result<std::vector<int32_t>> ids = tokenizer.encode(text, !options.no_bos, options.parse_special);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!ids) return fail(ids.status().message());
    n_tokens = ids->size();
    if (passes == 0) first = seconds;
    best = std::min(best, seconds);
    total += seconds;
    ++passes;
  }
  const Vocab& v = tokenizer.vocab();
  fmt::print("model {} ({}{}), {:.2f} MB, {} tokens ({:.2f} bytes/token), 1 thread: first pass {:.1f} MB/s "
             "({:.2f} M tokens/s); warm cache best of {} passes {:.1f} MB/s\n",
             v.model, v.model == "llama" ? "SentencePiece BPE" : v.model == "bert" ? "WordPiece" : "BPE",
             v.pre.empty() ? "" : ", pre " + v.pre, text.size() / 1e6, n_tokens,
             static_cast<double>(text.size()) / std::max<size_t>(n_tokens, 1), text.size() / first / 1e6,
             n_tokens / first / 1e6, passes, text.size() / best / 1e6);
  return 0;
}

int tokenize(const TokenizeOptions& options) {
  Result<std::string> text = read_input(options);
  if (!text) return fail(text.status().message());
  Result<Vocab> vocab = load_vocab(options.model);
  if (!vocab) return fail(vocab.status().message());
  if (vocab->empty()) return fail(fmt::format("{}: this model carries no tokenizer", options.model));
  Result<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::create(*vocab);
  if (!tokenizer) return fail(fmt::format("{}: {}", options.model, tokenizer.status().message()));
  if (options.benchmark) return benchmark(**tokenizer, *text, options);

  bool parse_special = options.parse_special;
  if (options.chat || !options.chat_template.empty()) {
    // The text is one user message in the model's chat format, ready for the reply.
    Result<std::string> prompt = apply_chat_template(*vocab, {{"user", *text}}, true, options.chat_template);
    if (!prompt) return fail(fmt::format("{}: {}", options.model, prompt.status().message()));
    *text = std::move(prompt).value();
    parse_special = true;
  }
  Result<std::vector<int32_t>> ids = (*tokenizer)->encode(*text, !options.no_bos, parse_special);
  if (!ids) return fail(ids.status().message());
  std::string out;
  if (options.pieces) {
    for (int32_t id : *ids) out += fmt::format("{}\t{}\n", id, (*tokenizer)->vocab().tokens[id]);
  } else {
    for (size_t i = 0; i < ids->size(); ++i) out += (i ? " " : "") + std::to_string((*ids)[i]);
    out += '\n';
  }
  fmt::print("{}", out);
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text (or benchmark the tokenizer)");
  cmd->add_option("-m,--model", options->model,
                  "GGUF file (vocab-only files too), Hugging Face directory, llama2.c checkpoint, or dummy:<preset>")
      ->required();
  auto* file = cmd->add_option("-f,--file", options->file, "Read the text from this file");
  auto* text = cmd->add_option("--text", options->text, "The text to tokenize");
  file->excludes(text);
  cmd->add_flag("--no-bos", options->no_bos, "Do not add BOS (or the other tokens the vocabulary adds)");
  cmd->add_flag("--parse-special", options->parse_special,
                "Match control tokens written in the text (\"<|im_start|>\") as those tokens");
  cmd->add_flag("--pieces", options->pieces, "Print one 'id<TAB>piece' line per token instead of the ids");
  cmd->add_flag("--benchmark", options->benchmark, "Report encode throughput (MB/s) on the text instead");
  cmd->add_flag("--chat", options->chat, "Format the text as a user message with the model's chat template");
  cmd->add_option("--chat-template", options->chat_template,
                  "Chat format for --chat: llama2, llama3, mistral, chatml, phi3, zephyr, gemma (implies --chat)");
  cmd->callback([options, file, text, &exit_code] {
    if (file->count() == 0 && text->count() == 0) {
      exit_code = fail("tokenize: give the text with --file or --text");
      return;
    }
    exit_code = tokenize(*options);
  });
}

}  // namespace anvil::cli
