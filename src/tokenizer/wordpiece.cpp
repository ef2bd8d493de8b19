// WordPiece (GGUF tokenizer.ggml.model = bert): BERT normalization and pre-tokenization, then
// greedy longest-match pieces per word. Pieces follow llama.cpp's GGUF convention: a piece that
// starts a word carries "▁" and a continuation piece is bare (tokenizer.json's "##" pieces are
// converted on loading).
#include <algorithm>

#include "tokenizer/encoder.h"
#include "tokenizer/sentencepiece_text.h"
#include "tokenizer/unicode_props.h"
#include "tokenizer/utf8.h"

namespace anvil {
namespace {

constexpr size_t kMaxWordChars = 100;                       // longer words are [UNK], as in BERT

class WordPieceEncoder final : public Encoder {
 public:
  explicit WordPieceEncoder(const Vocab& vocab);
  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  void encode_word(std::string_view word, size_t n_chars, std::vector<int32_t>& out) const;

  TokenMap piece_to_id_;
  size_t max_piece_bytes_ = 0;
  int32_t unk_id_ = -1;
  bool lowercase_ = false;
  bool strip_accents_ = false;
};

WordPieceEncoder::WordPieceEncoder(const Vocab& vocab)
    : unk_id_(vocab.unk_id), lowercase_(vocab.lowercase), strip_accents_(vocab.strip_accents) {
  piece_to_id_.reserve(vocab.tokens.size());
  for (int32_t id = 0; id < static_cast<int32_t>(vocab.tokens.size()); ++id) {
    piece_to_id_.emplace(vocab.tokens[id], id);
    max_piece_bytes_ = std::max(max_piece_bytes_, vocab.tokens[id].size());
  }
}

bool is_bert_punctuation(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
                        (cp >= 0x7B && cp <= 0x7E);
  return unicode::is_punctuation(cp);
}

void WordPieceEncoder::encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const {
  // BertNormalizer then BertPreTokenizer, in one pass: drop NUL, U+FFFD and control characters,
  // break words at white space, isolate punctuation and CJK ideographs; strip accents, then
  // lowercase, as the vocabulary asks.
  std::string word, mapped;
  size_t word_chars = 0;
  auto finish_word = [&] {
    if (!word.empty()) encode_word(word, word_chars, out);
    word.clear();
    word_chars = 0;
  };
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = utf8::kReplacement;
    size_t length = utf8::decode(text, i, &cp);
    if (length == 0) length = 1;  // an invalid byte reads as U+FFFD, which is dropped
    i += length;
    if (cp == 0 || cp == utf8::kReplacement) continue;
    const bool white = cp == '\t' || cp == '\n' || cp == '\r' || unicode::is_white_space(cp);
    if (!white && unicode::is_other(cp)) continue;
    if (white) {
      finish_word();
      continue;
    }
    mapped.clear();
    if (strip_accents_) unicode::append_without_accents(mapped, cp);
    else utf8::append(mapped, cp);
    if (lowercase_) {
      std::string lowered;
      for (size_t k = 0; k < mapped.size();) {
        uint32_t c = 0;
        const size_t n = utf8::decode(mapped, k, &c);
        unicode::append_lowercase(lowered, c);
        k += n ? n : 1;
      }
      mapped.swap(lowered);
    }
    if (is_bert_punctuation(cp) || unicode::is_cjk_ideograph(cp)) {
      finish_word();
      word = mapped;
      word_chars = 1;
      finish_word();
      continue;
    }
    word += mapped;
    ++word_chars;
  }
  finish_word();
}

void WordPieceEncoder::encode_word(std::string_view word, size_t n_chars, std::vector<int32_t>& out) const {
  if (n_chars > kMaxWordChars) {
    if (unk_id_ >= 0) out.push_back(unk_id_);
    return;
  }
  thread_local std::string marked;
  marked.assign(kSpaceMark);
  marked += word;
  const size_t start_size = out.size();
  for (size_t i = 0; i < marked.size();) {
    bool matched = false;
    for (size_t j = std::min(marked.size(), i + max_piece_bytes_); j > i; --j) {
      if (j < marked.size() && (static_cast<unsigned char>(marked[j]) & 0xC0) == 0x80) continue;  // mid-character
      auto it = piece_to_id_.find(std::string_view(marked).substr(i, j - i));
      if (it == piece_to_id_.end()) continue;
      out.push_back(it->second);
      i = j;
      matched = true;
      break;
    }
    if (!matched) {  // one unmatchable character makes the whole word unknown
      out.resize(start_size);
      if (unk_id_ >= 0) out.push_back(unk_id_);
      return;
    }
  }
}

}  // namespace

Result<std::unique_ptr<Encoder>> make_wordpiece_encoder(const Vocab& vocab) {
  return std::unique_ptr<Encoder>(new WordPieceEncoder(vocab));
}

}  // namespace anvil
