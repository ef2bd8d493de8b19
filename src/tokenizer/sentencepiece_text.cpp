// SentencePiece whitespace normalization and escaping.
#include "tokenizer/sentencepiece_text.h"

namespace anvil {

std::string sentencepiece_escape(std::string_view raw, bool add_space_prefix, bool remove_extra_whitespaces) {
  std::string text;
  if (raw.empty()) return text;
  if (remove_extra_whitespaces) {
    const size_t begin = raw.find_first_not_of(' ');
    if (begin == std::string_view::npos) return text;
    raw = raw.substr(begin, raw.find_last_not_of(' ') - begin + 1);
  }
  text.reserve(raw.size() + raw.size() / 2 + 3);
  if (add_space_prefix) text += kSpaceMark;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != ' ') {
      text += raw[i];
    } else if (!remove_extra_whitespaces || i == 0 || raw[i - 1] != ' ') {
      text += kSpaceMark;
    }
  }
  return text;
}

}  // namespace anvil
