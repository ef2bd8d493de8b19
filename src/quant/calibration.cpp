// Calibration sets: reading, tokenizing and windowing the calibration text.
#include "quant/calibration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

Result<std::string> read_whole_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(fmt::format("{}: cannot open the {} (no such file or not readable)", path, what));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return Status::error(fmt::format("{}: cannot read the {}", path, what));
  return contents.str();
}

// The id that replaces each sample's first token: BOS when the model adds one; a model without a
// vocabulary (llama2.c) uses its config's BOS.
int32_t sample_bos_id(const Checkpoint& checkpoint) {
  if (!checkpoint.vocab.empty()) return checkpoint.vocab.add_bos ? checkpoint.vocab.bos_id : -1;
  return checkpoint.config.bos_token_id;
}

}  // namespace

Result<std::vector<int32_t>> parse_token_ids(const std::string& path, const std::string& text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto is_separator = [&](size_t at) {
    return std::isspace(static_cast<unsigned char>(text[at])) || text[at] == ',';
  };
  while (i < text.size()) {
    if (is_separator(i)) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    if (end == i || (end < text.size() && !is_separator(end)) || end - i > 9) {
      size_t stop = i;
      while (stop < text.size() && !is_separator(stop)) ++stop;
      return Status::error(fmt::format("{}: '{}' (token {}) is not a token id; the file holds ids separated by "
                                       "spaces, newlines or commas",
                                       path, text.substr(i, std::min<size_t>(stop - i, 32)), ids.size() + 1));
    }
    ids.push_back(static_cast<int32_t>(std::stol(text.substr(i, end - i))));
    i = end;
  }
  return ids;
}

Result<CalibrationSet> make_calibration_set(const std::vector<int32_t>& stream, const CalibrationOptions& options,
                                            int32_t bos_id, int64_t vocab_size, const std::string& source) {
  if (options.samples <= 0 || options.seq_len <= 0)
    return Status::error(fmt::format("calibration: {} samples of {} tokens is not a calibration set", options.samples,
                                     options.seq_len));
  const int64_t total = static_cast<int64_t>(stream.size());
  for (int64_t i = 0; i < total; ++i)
    if (stream[i] < 0 || stream[i] >= vocab_size)
      return Status::error(fmt::format("{}: token {} is id {}, outside the model's vocabulary of {}", source, i + 1,
                                       stream[i], vocab_size));
  const int64_t n = std::min(options.samples, total / options.seq_len);
  if (n == 0)
    return Status::error(fmt::format("{}: {} tokens, fewer than one calibration sample of --calib-seq-len {}; give "
                                     "a longer text or a smaller --calib-seq-len",
                                     source, total, options.seq_len));
  CalibrationSet set;
  set.source = source;
  set.stream_tokens = total;
  const int64_t stride = total / n;  // >= seq_len: the windows never overlap
  for (int64_t i = 0; i < n; ++i) {
    const auto first = stream.begin() + i * stride;
    std::vector<int32_t>& sample = set.samples.emplace_back(first, first + options.seq_len);
    if (bos_id >= 0) sample[0] = bos_id;
  }
  return set;
}

Result<CalibrationSet> load_calibration_set(const CalibrationSource& source, const CalibrationOptions& options,
                                            const Checkpoint& checkpoint) {
  if (source.text_file.empty() == source.tokens_file.empty())
    return Status::error("calibration: give either a text file (--calib) or a token-id file (--calib-tokens)");
  CalibrationOptions resolved = options;
  if (resolved.seq_len == 0) resolved.seq_len = std::min(kDefaultCalibrationSeqLen, checkpoint.config.context_length);
  if (resolved.seq_len > checkpoint.config.context_length)
    return Status::error(fmt::format("--calib-seq-len {} exceeds the model's context length of {}", resolved.seq_len,
                                     checkpoint.config.context_length));
  std::vector<int32_t> stream;
  std::string path;
  if (!source.tokens_file.empty()) {
    path = source.tokens_file;
    ANVIL_ASSIGN_OR_RETURN(std::string text, read_whole_file(path, "calibration token ids"));
    ANVIL_ASSIGN_OR_RETURN(stream, parse_token_ids(path, text));
  } else {
    path = source.text_file;
    ANVIL_ASSIGN_OR_RETURN(std::string text, read_whole_file(path, "calibration text"));
    if (checkpoint.vocab.empty())
      return Status::error(fmt::format("{}: this model carries no tokenizer; give calibration token ids with "
                                       "--calib-tokens",
                                       checkpoint.source));
    ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::create(checkpoint.vocab));
    ANVIL_ASSIGN_OR_RETURN(stream, tokenizer->encode(text, /*add_special=*/true, /*parse_special=*/false));
  }
  return make_calibration_set(stream, resolved, sample_bos_id(checkpoint), checkpoint.config.vocab_size, path);
}

}  // namespace anvil
