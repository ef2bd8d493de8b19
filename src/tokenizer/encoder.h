// Encoder: one tokenization algorithm (SentencePiece BPE, byte-level BPE, WordPiece) behind the
// Tokenizer facade, which handles special tokens, BOS/EOS and decoding.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "anvil/status.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Piece -> id with lookups by string_view (no temporary strings on the hot path).
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

// Per-thread memo of short words' ids for one encoder: natural text repeats its words, and a
// lookup is several times cheaper than merging. Each encoder has a unique owner id, so a cache
// never serves ids of an encoder that has since been destroyed and replaced at the same address.
class WordCache {
 public:
  static uint64_t new_owner();
  // The cached ids of `word`, or nullptr; owner switches clear the cache.
  static const std::vector<int32_t>* find(uint64_t owner, std::string_view word);
  static void store(uint64_t owner, std::string_view word, const int32_t* ids, size_t count);
  static constexpr size_t kMaxWordBytes = 48;
};

class Encoder {
 public:
  virtual ~Encoder() = default;
  // Appends the ids of `text`, which contains no special token. `after_special` is true for the
  // first fragment of an input and for a fragment that follows a special token (SentencePiece
  // then adds its space prefix).
  virtual void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const = 0;
};

Result<std::unique_ptr<Encoder>> make_sentencepiece_encoder(const Vocab& vocab);
Result<std::unique_ptr<Encoder>> make_bpe_encoder(const Vocab& vocab);
Result<std::unique_ptr<Encoder>> make_wordpiece_encoder(const Vocab& vocab);

}  // namespace anvil
