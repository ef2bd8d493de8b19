// BPE over merge ranks (GGUF tokenizer.ggml.model = gpt2, tokenizer.json "BPE"): regex
// pre-tokenization, then within each pre-token the lowest-ranked adjacent pair is merged until
// none is left, ties going to the leftmost pair (Hugging Face's and llama.cpp's order).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <unordered_map>

#include "tokenizer/byte_level.h"
#include "tokenizer/encoder.h"
#include "tokenizer/pretokenizer_patterns.h"
#include "tokenizer/regex_splitter.h"
#include "tokenizer/sentencepiece_text.h"
#include "tokenizer/utf8.h"

namespace anvil {
namespace {


struct Merge {
  int32_t rank;
  int32_t result;
};

class BpeEncoder final : public Encoder {
 public:
  static Result<std::unique_ptr<Encoder>> create(const Vocab& vocab);
  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  explicit BpeEncoder(RegexSplitter splitter) : splitter_(std::move(splitter)) {}
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  RegexSplitter splitter_;
  uint64_t cache_owner_ = WordCache::new_owner();
  bool byte_level_ = true;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool escape_whitespace_ = false;
  bool add_space_prefix_ = false;
  int32_t unk_id_ = -1;
  // byte_level_: id of the piece for each byte; otherwise the <0xXX> fallback tokens. -1 if absent.
  std::array<int32_t, 256> byte_ids_{};
  TokenMap raw_to_id_;  // the bytes a piece stands for -> id (initial symbols, ignore_merges)
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank and merged id
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

Result<std::unique_ptr<Encoder>> BpeEncoder::create(const Vocab& vocab) {
  PreTokenizerSpec spec;
  if (!vocab.split_regexes.empty()) {
    spec.regexes = vocab.split_regexes;
    spec.ignore_merges = vocab.bpe_ignore_merges;
  } else if (vocab.bpe_byte_level) {
    ANVIL_ASSIGN_OR_RETURN(spec, pretokenizer_for(vocab.pre));
    spec.ignore_merges = spec.ignore_merges || vocab.bpe_ignore_merges;
  } else {
    spec.ignore_merges = vocab.bpe_ignore_merges;
  }
  ANVIL_ASSIGN_OR_RETURN(RegexSplitter splitter, RegexSplitter::create(spec.regexes));
  std::unique_ptr<BpeEncoder> e(new BpeEncoder(std::move(splitter)));
  e->byte_level_ = vocab.bpe_byte_level;
  e->byte_fallback_ = vocab.bpe_byte_fallback;
  e->ignore_merges_ = spec.ignore_merges;
  e->escape_whitespace_ = vocab.escape_whitespace;
  e->add_space_prefix_ = vocab.escape_whitespace && vocab.add_space_prefix;
  e->unk_id_ = vocab.unk_id;
  e->byte_ids_.fill(-1);

  TokenMap piece_to_id;
  piece_to_id.reserve(vocab.tokens.size());
  for (int32_t id = 0; id < static_cast<int32_t>(vocab.tokens.size()); ++id) {
    const std::string& piece = vocab.tokens[id];
    piece_to_id.emplace(piece, id);
    const TokenType type = vocab.type(id);
    if (type == TokenType::Control || type == TokenType::Unknown || type == TokenType::Unused) continue;
    if (!e->byte_level_) {
      if (type == TokenType::Byte && piece.size() == 6 && piece.rfind("<0x", 0) == 0) {
        const int value = std::stoi(piece.substr(3, 2), nullptr, 16);
        if (e->byte_ids_[value] < 0) e->byte_ids_[value] = id;
        continue;
      }
      e->raw_to_id_.emplace(piece, id);
      continue;
    }
    std::optional<std::string> raw = byte_level::decode(piece);
    if (!raw) continue;  // an added token stored as plain text; only matched as a special token
    if (raw->size() == 1 && e->byte_ids_[static_cast<uint8_t>((*raw)[0])] < 0)
      e->byte_ids_[static_cast<uint8_t>((*raw)[0])] = id;
    e->raw_to_id_.emplace(std::move(*raw), id);
  }

  e->merges_.reserve(vocab.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& merge = vocab.merges[rank];
    const size_t space = merge.find(' ', 1);  // the first piece may itself be a space
    if (space == std::string::npos)
      return Status::error(fmt::format("BPE merge {} ('{}') is not two pieces separated by a space", rank, merge));
    const std::string_view left(merge.data(), space), right(merge.data() + space + 1, merge.size() - space - 1);
    joined.assign(left);
    joined += right;
    auto l = piece_to_id.find(left), r = piece_to_id.find(right), m = piece_to_id.find(joined);
    // Merges whose pieces are missing can never apply; tokenizer.json files do carry a few.
    if (l == piece_to_id.end() || r == piece_to_id.end() || m == piece_to_id.end()) continue;
    e->merges_.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), m->second});
  }
  return std::unique_ptr<Encoder>(std::move(e));
}

void BpeEncoder::encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const {
  std::string escaped;
  if (escape_whitespace_) {
    if (add_space_prefix_ && after_special) escaped += kSpaceMark;
    for (char c : text) {
      if (c == ' ') escaped += kSpaceMark;
      else escaped += c;
    }
    text = escaped;
  }
  if (splitter_.empty()) {
    encode_word(text, out);
    return;
  }
  thread_local std::vector<std::string_view> words;
  words.clear();
  splitter_.split(text, words);
  for (std::string_view word : words) encode_word(word, out);
}

void BpeEncoder::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = raw_to_id_.find(word);
    if (it != raw_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (const std::vector<int32_t>* cached = WordCache::find(cache_owner_, word)) {
    out.insert(out.end(), cached->begin(), cached->end());
    return;
  }
  const size_t start = out.size();
  merge_word(word, out);
  WordCache::store(cache_owner_, word, out.data() + start, out.size() - start);
}

void BpeEncoder::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;  // -1: not in the vocabulary (never merges; byte fallback or unk at the end)
    int32_t prev, next;
    uint32_t begin, length;
  };
  struct Candidate {
    int32_t rank, left, left_id, right_id;
    // std::push_heap keeps the largest on top: invert so the lowest rank, then leftmost, wins.
    bool operator<(const Candidate& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();

  if (byte_level_) {
    for (size_t i = 0; i < word.size(); ++i)
      symbols.push_back({byte_ids_[static_cast<uint8_t>(word[i])], static_cast<int32_t>(i) - 1,
                         static_cast<int32_t>(i) + 1, static_cast<uint32_t>(i), 1});
  } else {
    for (size_t i = 0; i < word.size();) {
      const size_t length = std::min(utf8::sequence_length(static_cast<unsigned char>(word[i])), word.size() - i);
      auto it = raw_to_id_.find(word.substr(i, length));
      const int32_t n = static_cast<int32_t>(symbols.size());
      symbols.push_back({it == raw_to_id_.end() ? -1 : it->second, n - 1, n + 1, static_cast<uint32_t>(i),
                         static_cast<uint32_t>(length)});
      i += length;
    }
  }
  symbols.back().next = -1;

  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0 || symbols[left].id < 0 || symbols[right].id < 0) return;
    auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, symbols[left].id, symbols[right].id});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    if (left.length == 0 || left.id != c.left_id || left.next < 0) continue;  // stale
    Symbol& right = symbols[left.next];
    if (right.id != c.right_id) continue;
    left.id = merges_.find(pair_key(c.left_id, c.right_id))->second.result;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    if (byte_level_) {
      // A byte whose piece the vocabulary lacks (StarCoder has no piece for some lead bytes) is
      // dropped, as llama.cpp and Hugging Face do; emitting <unk> would inject a control token.
      for (uint32_t k = 0; k < s.length; ++k)
        if (const int32_t id = byte_ids_[static_cast<uint8_t>(word[s.begin + k])]; id >= 0) out.push_back(id);
      continue;
    }
    bool fell_back = byte_fallback_;
    for (uint32_t k = 0; fell_back && k < s.length; ++k)
      fell_back = byte_ids_[static_cast<uint8_t>(word[s.begin + k])] >= 0;
    if (fell_back)
      for (uint32_t k = 0; k < s.length; ++k) out.push_back(byte_ids_[static_cast<uint8_t>(word[s.begin + k])]);
    else if (unk_id_ >= 0)
      out.push_back(unk_id_);
  }
}

}  // namespace

Result<std::unique_ptr<Encoder>> make_bpe_encoder(const Vocab& vocab) { return BpeEncoder::create(vocab); }

}  // namespace anvil
