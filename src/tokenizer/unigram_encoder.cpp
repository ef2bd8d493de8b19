// Unigram encoding (SentencePiece's UNIGRAM model): spaces become "▁", then the segmentation
// with the highest total piece score wins (Viterbi over a byte trie of the pieces). Ties and the
// <unk> penalty follow SentencePiece so that ids match its output exactly.
//
// The whole text is one lattice, never split into words: path scores are float sums from the
// start of the text, and segmentations whose totals tie in exact arithmetic (I+II vs II+I) are
// told apart by their rounding, so only the same summation reproduces SentencePiece's choice.
#include "tokenizer/unigram_encoder.h"

#include <algorithm>
#include <array>
#include <cfloat>

#include "tokenizer/sentencepiece_text.h"
#include "tokenizer/utf8.h"

namespace anvil {
namespace {

constexpr float kUnkPenalty = 10.0f;                      // SentencePiece's: <unk> scores min_score - 10

// Pieces by their bytes. The root has a direct table (it is visited once per character); deeper
// nodes keep their edges sorted in one shared array.
class PieceTrie {
 public:
  void insert(std::string_view piece, int32_t id) {
    int32_t node = 0;
    for (unsigned char c : piece) {
      auto& edges = build_[node];
      auto it = std::find_if(edges.begin(), edges.end(), [c](const auto& e) { return e.first == c; });
      if (it != edges.end()) {
        node = it->second;
        continue;
      }
      const auto child = static_cast<int32_t>(build_.size());
      edges.emplace_back(c, child);
      build_.emplace_back();
      ids_.push_back(-1);
      node = child;
    }
    if (ids_[node] < 0) ids_[node] = id;  // the first of duplicate pieces wins, as in lookups by text
  }

  void finish() {
    root_.fill(-1);
    first_edge_.assign(build_.size() + 1, 0);
    for (size_t node = 0; node < build_.size(); ++node) {
      auto& edges = build_[node];
      std::sort(edges.begin(), edges.end());
      first_edge_[node] = static_cast<uint32_t>(edge_bytes_.size());
      for (const auto& [byte, child] : edges) {
        edge_bytes_.push_back(byte);
        edge_children_.push_back(child);
        if (node == 0) root_[byte] = child;
      }
    }
    first_edge_[build_.size()] = static_cast<uint32_t>(edge_bytes_.size());
    build_.clear();
    build_.shrink_to_fit();
  }

  // The child of `node` along byte `c`, or -1.
  int32_t child(int32_t node, unsigned char c) const {
    if (node == 0) return root_[c];
    const uint8_t* begin = edge_bytes_.data() + first_edge_[node];
    const uint8_t* end = edge_bytes_.data() + first_edge_[node + 1];
    const uint8_t* it = std::lower_bound(begin, end, c);
    return it != end && *it == c ? edge_children_[it - edge_bytes_.data()] : -1;
  }
  int32_t id(int32_t node) const { return ids_[node]; }

 private:
  std::vector<std::vector<std::pair<uint8_t, int32_t>>> build_{1};
  std::vector<int32_t> ids_{-1};
  std::array<int32_t, 256> root_{};
  std::vector<uint32_t> first_edge_;
  std::vector<uint8_t> edge_bytes_;
  std::vector<int32_t> edge_children_;
};

class UnigramEncoder final : public Encoder {
 public:
  explicit UnigramEncoder(const Vocab& vocab);
  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  void encode_text(std::string_view text, bool after_special, std::vector<int32_t>& out) const;
  void segment(std::string_view chunk, std::vector<int32_t>& out) const;
  void append_unknown(std::string_view character, std::vector<int32_t>& out) const;

  PieceTrie trie_;
  std::vector<double> scores_;  // per id, as the lattice uses them (user-defined pieces boosted)
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
  float unk_score_ = 0.0f;
  bool add_space_prefix_ = true;
  bool remove_extra_whitespaces_ = false;
};

UnigramEncoder::UnigramEncoder(const Vocab& vocab)
    : unk_id_(vocab.unk_id), add_space_prefix_(vocab.add_space_prefix),
      remove_extra_whitespaces_(vocab.remove_extra_whitespaces) {
  byte_ids_.fill(-1);
  const auto n = static_cast<int32_t>(vocab.tokens.size());
  scores_.assign(n, 0.0f);
  // SentencePiece takes the score range over normal pieces only, starting the maximum from
  // FLT_MIN (the smallest positive float), which only matters for the user-defined bonus.
  float min_score = FLT_MAX, max_score = FLT_MIN;
  for (int32_t id = 0; id < n; ++id) {
    if (vocab.type(id) != TokenType::Normal || vocab.scores.empty()) continue;
    min_score = std::min(min_score, vocab.scores[id]);
    max_score = std::max(max_score, vocab.scores[id]);
  }
  if (min_score == FLT_MAX) min_score = 0.0f;  // no normal pieces
  unk_score_ = min_score - kUnkPenalty;

  for (int32_t id = 0; id < n; ++id) {
    const std::string& piece = vocab.tokens[id];
    const TokenType type = vocab.type(id);
    if (type == TokenType::Byte && piece.size() == 6 && piece.rfind("<0x", 0) == 0) {
      const int value = std::stoi(piece.substr(3, 2), nullptr, 16);
      if (byte_ids_[value] < 0) byte_ids_[value] = id;
      continue;
    }
    // Control, unknown and unused pieces are never produced by segmentation.
    if ((type != TokenType::Normal && type != TokenType::UserDefined) || piece.empty()) continue;
    if (type == TokenType::UserDefined) {
      // Always preferred over a split: SentencePiece's bonus of bytes * max_score - 0.1, in double.
      scores_[id] = static_cast<double>(piece.size()) * max_score - 0.1;
    } else {
      scores_[id] = vocab.scores.empty() ? 0.0 : vocab.scores[id];
    }
    trie_.insert(piece, id);
  }
  trie_.finish();
}

void UnigramEncoder::encode(std::string_view raw, bool after_special, std::vector<int32_t>& out) const {
  const size_t start = out.size();
  encode_text(raw, after_special, out);
  // SentencePiece merges a run of unknown characters into one <unk>.
  if (unk_id_ < 0) return;
  auto last = std::unique(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
                          [unk = unk_id_](int32_t a, int32_t b) { return a == unk && b == unk; });
  out.erase(last, out.end());
}

void UnigramEncoder::encode_text(std::string_view raw, bool after_special, std::vector<int32_t>& out) const {
  const std::string text = sentencepiece_escape(raw, add_space_prefix_ && after_special, remove_extra_whitespaces_);
  if (text.empty()) return;
  segment(text, out);
}

void UnigramEncoder::segment(std::string_view text, std::vector<int32_t>& out) const {
  // best[i]: the best path over text[0, i): its score, and where and with which id it ends.
  struct Best {
    float score;
    int32_t start;  // -1: not reached yet
    int32_t id;     // -1: an unknown character
  };
  thread_local std::vector<Best> best;
  thread_local std::vector<uint8_t> boundary;
  const size_t n = text.size();
  best.assign(n + 1, Best{0.0f, -1, -1});
  best[0].start = 0;
  // Character starts. A byte that is not valid UTF-8 stands alone; pieces may only end on a
  // boundary, so a malformed piece or input can never leave the end unreached.
  boundary.assign(n + 1, 0);
  for (size_t i = 0; i < n;) {
    boundary[i] = 1;
    uint32_t cp;
    const size_t length = utf8::decode(text, i, &cp);
    i += length > 0 ? length : 1;
  }
  boundary[n] = 1;

  for (size_t begin = 0; begin < n;) {
    size_t char_end = begin + 1;
    while (!boundary[char_end]) ++char_end;
    const float base = best[begin].score;
    bool has_single = false;
    int32_t node = 0;
    for (size_t end = begin; end < n;) {
      node = trie_.child(node, static_cast<unsigned char>(text[end]));
      if (node < 0) break;
      ++end;
      const int32_t id = trie_.id(node);
      if (id < 0 || !boundary[end]) continue;
      // Summed in double, compared with the stored float and rounded when stored: SentencePiece's
      // expression mixes a double (the user-defined bonus) into every piece's score, and near
      // ties fall the way that rounding makes them fall.
      const double score = scores_[id] + static_cast<double>(base);
      Best& b = best[end];
      // Strictly greater: among equal scores the path found first, whose last piece starts
      // earliest, stays (SentencePiece's order).
      if (b.start < 0 || score > static_cast<double>(b.score))
        b = Best{static_cast<float>(score), static_cast<int32_t>(begin), id};
      if (end == char_end) has_single = true;
    }
    if (!has_single) {
      const float score = base + unk_score_;
      Best& b = best[char_end];
      if (b.start < 0 || score > b.score) b = Best{score, static_cast<int32_t>(begin), -1};
    }
    begin = char_end;
  }

  // Walk back from the end, then emit in order.
  struct Step {
    size_t begin, end;
    int32_t id;
  };
  thread_local std::vector<Step> path;
  path.clear();
  for (size_t end = n; end > 0;) {
    const Best& b = best[end];
    path.push_back({static_cast<size_t>(b.start), end, b.id});
    end = static_cast<size_t>(b.start);
  }
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    if (it->id >= 0) out.push_back(it->id);
    else append_unknown(text.substr(it->begin, it->end - it->begin), out);
  }
}

void UnigramEncoder::append_unknown(std::string_view character, std::vector<int32_t>& out) const {
  // Byte fallback when the vocabulary has byte pieces; otherwise one <unk> for the character.
  bool all_bytes = true;
  for (unsigned char c : character) all_bytes = all_bytes && byte_ids_[c] >= 0;
  if (all_bytes) {
    for (unsigned char c : character) out.push_back(byte_ids_[c]);
  } else if (unk_id_ >= 0) {
    out.push_back(unk_id_);
  }
}

}  // namespace

Result<std::unique_ptr<Encoder>> make_unigram_encoder(const Vocab& vocab) {
  return std::unique_ptr<Encoder>(new UnigramEncoder(vocab));
}

}  // namespace anvil
