// Tokenizer: text <-> token ids for a model's vocabulary, plus UTF-8-safe streaming decode.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "anvil/status.h"
#include "tokenizer/unicode_normalization.h"
#include "tokenizer/vocab.h"

namespace anvil {

class Encoder;
class SpecialTokenMatcher;

class Tokenizer {
 public:
  // Chooses the algorithm from vocab.model: "llama" (SentencePiece BPE), "gpt2" (BPE over merges,
  // pre-tokenized by the vocab.pre family's regexes) or "bert" (WordPiece). Fails for others (the
  // message says so and points at --prompt-tokens).
  static Result<std::unique_ptr<Tokenizer>> create(const Vocab& vocab);
  ~Tokenizer();

  const Vocab& vocab() const { return vocab_; }
  // add_special: add what the vocabulary asks for (BOS, EOS, BERT's [CLS]/[SEP]).
  // parse_special: control tokens written in the text ("<|im_start|>") become those tokens;
  // otherwise they are encoded as ordinary text. Added (user-defined) tokens always match.
  // Invalid UTF-8 never fails: byte-level and byte-fallback vocabularies encode the raw bytes.
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special, bool parse_special) const;
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special) const {
    return encode(text, add_special, false);
  }
  // The bytes a token stands for (SentencePiece "▁" -> " ", "<0x0A>" -> "\n", GPT-2 "Ġ" -> " ",
  // control tokens -> ""); "" for ids outside the vocabulary.
  const std::string& token_bytes(int32_t id) const;
  // The text of a whole sequence: token bytes joined, the space prefix that encoding added
  // removed, and bytes that are not valid UTF-8 replaced by U+FFFD.
  std::string decode(const std::vector<int32_t>& ids) const;
  // EOS, and the end-of-turn tokens chat models stop on (<|eot_id|>, <|im_end|>, <|end|>, ...).
  bool is_end_of_generation(int32_t id) const;

 private:
  explicit Tokenizer(const Vocab& vocab);
  // Runs the vocabulary's Unicode normalizer (if any) and the encoder on text between specials.
  void encode_text(std::string_view text, bool after_special, std::vector<int32_t>& ids) const;

  Vocab vocab_;
  std::optional<UnicodeNormalForm> normal_form_;
  std::unique_ptr<Encoder> encoder_;
  std::unique_ptr<SpecialTokenMatcher> specials_;
  std::vector<std::string> token_bytes_;
  std::vector<int32_t> end_of_generation_;
  bool strip_leading_space_ = false;
};

// Accumulates token bytes and releases only complete UTF-8 sequences, so a character split
// across tokens is never printed in halves.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);  // text that became complete with this token
  std::string flush();           // whatever remains (invalid bytes become U+FFFD)

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace anvil
