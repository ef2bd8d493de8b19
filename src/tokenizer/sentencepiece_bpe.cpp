// SentencePiece BPE encoding over piece scores with byte fallback (GGUF tokenizer.ggml.model = llama).
#include <queue>

#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

struct Symbol {
  size_t begin, length;
  int prev, next;
};

struct Bigram {
  float score;
  int left;
  size_t length;  // merged length when queued: detects stale entries
  bool operator<(const Bigram& other) const {
    return score < other.score || (score == other.score && left > other.left);
  }
};

}  // namespace

std::vector<int32_t> Tokenizer::encode_sentencepiece(std::string_view raw) const {
  if (raw.empty()) return {};
  // Normalization: optional leading space, then every space becomes "▁".
  std::string text;
  if (vocab_.add_space_prefix) text += "\xE2\x96\x81";
  for (char c : raw) {
    if (c == ' ') text += "\xE2\x96\x81";
    else text += c;
  }

  // Start from single UTF-8 characters (an invalid byte stands alone).
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    length = std::min(length, text.size() - i);
    symbols.push_back({i, length, static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1});
    i += length;
  }
  symbols.back().next = -1;

  std::priority_queue<Bigram> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    auto it = piece_to_id_.find(text.substr(symbols[left].begin, length));
    if (it == piece_to_id_.end()) return;
    const float score = vocab_.scores.empty() ? 0.0f : vocab_.scores[it->second];
    queue.push({score, left, length});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

  // Greedily merge the highest-scoring adjacent pair until none is in the vocabulary.
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.length + right.length != top.length) continue;  // stale
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    try_add(left.prev, top.left);
    try_add(top.left, left.next);
  }

  std::vector<int32_t> ids;
  for (int i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    auto it = piece_to_id_.find(text.substr(s.begin, s.length));
    if (it != piece_to_id_.end()) {
      ids.push_back(it->second);
      continue;
    }
    for (size_t k = 0; k < s.length; ++k) {  // byte fallback
      const int32_t byte_id = byte_to_id_[static_cast<unsigned char>(text[s.begin + k])];
      if (byte_id >= 0) ids.push_back(byte_id);
      else if (vocab_.unk_id >= 0) ids.push_back(vocab_.unk_id);
    }
  }
  return ids;
}

}  // namespace anvil
