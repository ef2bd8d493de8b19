// SentencePiece BPE encoding over piece scores with byte fallback (GGUF tokenizer.ggml.model = llama):
// spaces become "▁", then the highest-scoring adjacent pair that forms a piece is merged until
// none does, ties going to the leftmost pair (llama.cpp's order).
#include <algorithm>
#include <array>

#include "tokenizer/encoder.h"
#include "tokenizer/sentencepiece_text.h"
#include "tokenizer/utf8.h"

namespace anvil {
namespace {


class SentencePieceEncoder final : public Encoder {
 public:
  explicit SentencePieceEncoder(const Vocab& vocab);
  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const;
  void merge_chunk(std::string_view chunk, std::vector<int32_t>& out) const;

  uint64_t cache_owner_ = WordCache::new_owner();
  TokenMap piece_to_id_;
  std::vector<float> scores_;
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
  bool add_space_prefix_ = true;
  bool remove_extra_whitespaces_ = false;
  // True when no piece has a "▁" after a non-"▁" character: then no piece can span the start of
  // a word, and words can be encoded one at a time with the same result (much less work).
  bool split_at_words_ = false;
};

SentencePieceEncoder::SentencePieceEncoder(const Vocab& vocab)
    : scores_(vocab.scores), unk_id_(vocab.unk_id), add_space_prefix_(vocab.add_space_prefix),
      remove_extra_whitespaces_(vocab.remove_extra_whitespaces) {
  byte_ids_.fill(-1);
  scores_.resize(vocab.tokens.size(), 0.0f);
  piece_to_id_.reserve(vocab.tokens.size());
  split_at_words_ = true;
  for (int32_t id = 0; id < static_cast<int32_t>(vocab.tokens.size()); ++id) {
    const std::string& piece = vocab.tokens[id];
    piece_to_id_.emplace(piece, id);
    if (vocab.type(id) == TokenType::Byte && piece.size() == 6 && piece.rfind("<0x", 0) == 0) {
      const int value = std::stoi(piece.substr(3, 2), nullptr, 16);
      if (byte_ids_[value] < 0) byte_ids_[value] = id;
    }
    size_t lead = 0;
    while (piece.compare(lead, kSpaceMark.size(), kSpaceMark) == 0) lead += kSpaceMark.size();
    if (piece.find(kSpaceMark, lead) != std::string::npos) split_at_words_ = false;
  }
}

void SentencePieceEncoder::encode(std::string_view raw, bool after_special, std::vector<int32_t>& out) const {
  const std::string text = sentencepiece_escape(raw, add_space_prefix_ && after_special, remove_extra_whitespaces_);
  if (text.empty()) return;
  if (!split_at_words_) {
    encode_chunk(text, out);
    return;
  }
  // Cut before each "▁" that follows another character, so "▁▁▁the" stays one chunk.
  size_t start = 0;
  for (size_t i = 1; i + kSpaceMark.size() <= text.size(); ++i) {
    if (text.compare(i, kSpaceMark.size(), kSpaceMark) != 0) continue;
    const bool after_mark = i >= kSpaceMark.size() && text.compare(i - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark) == 0;
    if (!after_mark && i > start) {
      encode_chunk(std::string_view(text).substr(start, i - start), out);
      start = i;
    }
    i += kSpaceMark.size() - 1;
  }
  encode_chunk(std::string_view(text).substr(start), out);
}

void SentencePieceEncoder::encode_chunk(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (const std::vector<int32_t>* cached = WordCache::find(cache_owner_, text)) {
    out.insert(out.end(), cached->begin(), cached->end());
    return;
  }
  const size_t start = out.size();
  merge_chunk(text, out);
  WordCache::store(cache_owner_, text, out.data() + start, out.size() - start);
}

void SentencePieceEncoder::merge_chunk(std::string_view text, std::vector<int32_t>& out) const {  struct Symbol {
    uint32_t begin, length;
    int32_t prev, next;
  };
  struct Bigram {
    float score;
    int32_t left;
    uint32_t length;  // merged length when queued: detects stale entries
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Bigram> heap;
  symbols.clear();
  heap.clear();

  // Start from single UTF-8 characters (a stray byte stands alone).
  for (size_t i = 0; i < text.size();) {
    const size_t length = std::min(utf8::sequence_length(static_cast<unsigned char>(text[i])), text.size() - i);
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(length), n - 1, n + 1});
    i += length;
  }
  symbols.back().next = -1;

  auto try_add = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const uint32_t length = symbols[left].length + symbols[right].length;
    auto it = piece_to_id_.find(text.substr(symbols[left].begin, length));
    if (it == piece_to_id_.end()) return;
    heap.push_back({scores_[it->second], left, length});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) try_add(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Bigram top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.left];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.length + right.length != top.length) continue;  // stale
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    try_add(left.prev);
    try_add(top.left);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    auto it = piece_to_id_.find(text.substr(s.begin, s.length));
    if (it != piece_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (uint32_t k = 0; k < s.length; ++k) {  // byte fallback
      const int32_t byte_id = byte_ids_[static_cast<unsigned char>(text[s.begin + k])];
      if (byte_id >= 0) out.push_back(byte_id);
      else if (unk_id_ >= 0 && (k == 0 || byte_ids_[static_cast<unsigned char>(text[s.begin + k - 1])] >= 0))
        out.push_back(unk_id_);  // one <unk> per character when the vocabulary has no byte tokens
    }
  }
}

}  // namespace

Result<std::unique_ptr<Encoder>> make_sentencepiece_encoder(const Vocab& vocab) {
  return std::unique_ptr<Encoder>(new SentencePieceEncoder(vocab));
}

}  // namespace anvil
