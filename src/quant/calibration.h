// Calibration data for the calibrated quantizers (GPTQ, SmoothQuant): a text or a token-id file cut
// into N sequences of L tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "model/checkpoint.h"

namespace anvil {

// llm-compressor's and AutoGPTQ's usual calibration set: 128 sequences of 512 tokens.
constexpr int64_t kDefaultCalibrationSeqLen = 512;
struct CalibrationOptions {
  int64_t samples = 128;  // sequences (fewer when the text is too short)
  int64_t seq_len = 0;    // tokens per sequence; 0: 512, or the model's context length when shorter
};

// Where the tokens come from: exactly one of the two is set.
struct CalibrationSource {
  std::string text_file;    // --calib: text, tokenized with the model's tokenizer (BOS added)
  std::string tokens_file;  // --calib-tokens: token ids separated by spaces, newlines or commas
};

struct CalibrationSet {
  std::string source;                         // the file, for messages
  int64_t stream_tokens = 0;                  // tokens the file gave
  std::vector<std::vector<int32_t>> samples;  // each seq_len ids

  int64_t seq_len() const { return samples.empty() ? 0 : static_cast<int64_t>(samples.front().size()); }
  int64_t tokens() const { return static_cast<int64_t>(samples.size()) * seq_len(); }
};

// Token ids separated by whitespace and/or commas ("1 450 4996" or "1,450,4996"); `path` names
// the file in messages.
Result<std::vector<int32_t>> parse_token_ids(const std::string& path, const std::string& text);

// Cuts `stream` into min(options.samples, tokens / seq_len) windows of seq_len tokens, spread
// evenly over the stream (window i starts at i * (tokens / n)), so a long text is sampled from
// end to end rather than only its beginning. Each window's first token becomes `bos_id` when it
// is >= 0, so every sample reads like the start of a document (as `anvil perplexity` chunks do).
// Fails when the stream is shorter than one window or holds an id outside [0, vocab_size).
Result<CalibrationSet> make_calibration_set(const std::vector<int32_t>& stream, const CalibrationOptions& options,
                                            int32_t bos_id, int64_t vocab_size, const std::string& source);

// Reads the source (tokenizing text with the checkpoint's tokenizer: BOS added, special tokens not
// parsed) and cuts it with make_calibration_set. A seq_len given must fit the model's context
// length; the default (0) is 512 or the context length, whichever is shorter.
Result<CalibrationSet> load_calibration_set(const CalibrationSource& source, const CalibrationOptions& options,
                                            const Checkpoint& checkpoint);

}  // namespace anvil
