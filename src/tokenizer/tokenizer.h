// Tokenizer: text <-> token ids for a model's vocabulary, plus UTF-8-safe streaming decode.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "anvil/status.h"
#include "tokenizer/vocab.h"

namespace anvil {

class Tokenizer {
 public:
  // Fails for vocabularies whose algorithm anvil does not implement yet (the message says so
  // and points at --prompt-tokens).
  static Result<std::unique_ptr<Tokenizer>> create(const Vocab& vocab);

  const Vocab& vocab() const { return vocab_; }
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_bos) const;
  // The bytes a token stands for (SentencePiece "▁" -> " ", "<0x0A>" -> "\n", control tokens -> "").
  std::string token_bytes(int32_t id) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  bool is_end_of_generation(int32_t id) const { return id == vocab_.eos_id; }

 private:
  explicit Tokenizer(const Vocab& vocab);
  std::vector<int32_t> encode_sentencepiece(std::string_view text) const;

  Vocab vocab_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  std::vector<int32_t> byte_to_id_;  // SentencePiece byte-fallback tokens <0xXX>, -1 if absent
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
