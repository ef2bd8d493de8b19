// Special-token matching by first byte, then longest-first comparison.
#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace anvil {

SpecialTokenMatcher::SpecialTokenMatcher(const Vocab& vocab) : vocab_(vocab) {
  for (int32_t id = 0; id < static_cast<int32_t>(vocab.tokens.size()); ++id) {
    const std::string& text = vocab.tokens[id];
    if (text.empty()) continue;
    const TokenType type = vocab.type(id);
    const bool always = type == TokenType::UserDefined;
    const bool when_parsing = always || type == TokenType::Control || type == TokenType::Unknown;
    if (!when_parsing) continue;
    for (int parse = 0; parse < 2; ++parse) {
      if (!parse && !always) continue;
      const auto first = static_cast<unsigned char>(text[0]);
      by_first_byte_[parse][first].push_back(id);
      first_byte_[parse][first] = true;
      candidates_[parse].push_back(id);
    }
  }
  for (auto& table : by_first_byte_)
    for (auto& ids : table)
      std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
        return vocab.tokens[a].size() > vocab.tokens[b].size();
      });
}

SpecialTokenMatcher::Match SpecialTokenMatcher::find(std::string_view text, size_t from, bool parse_special) const {
  const auto& firsts = first_byte_[parse_special];
  const auto& table = by_first_byte_[parse_special];
  for (size_t i = from; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (!firsts[c]) continue;
    for (int32_t id : table[c]) {
      const std::string& token = vocab_.tokens[id];
      if (text.compare(i, token.size(), token) == 0) return {i, i + token.size(), id};
    }
  }
  return {};
}

}  // namespace anvil
