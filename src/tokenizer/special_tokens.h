// SpecialTokenMatcher: finds control and added tokens in input text as whole tokens.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace anvil {

class SpecialTokenMatcher {
 public:
  struct Match {
    size_t begin = 0, end = 0;  // the token's text in the input
    int32_t id = -1;
  };

  // Control and unknown tokens match only when parse_special is set; user-defined (added) tokens
  // always do, as in Hugging Face tokenizers and llama.cpp.
  explicit SpecialTokenMatcher(const Vocab& vocab);

  // The leftmost match at or after `from`, the longest token winning at one position (Hugging
  // Face's leftmost-longest rule); id -1 when there is none.
  Match find(std::string_view text, size_t from, bool parse_special) const;
  bool empty(bool parse_special) const { return candidates_[parse_special].empty(); }

 private:
  const Vocab& vocab_;
  // [parse_special]: token ids by the first byte of their text, longest first.
  std::array<std::vector<int32_t>, 256> by_first_byte_[2];
  std::array<bool, 256> first_byte_[2]{};
  std::vector<int32_t> candidates_[2];
};

}  // namespace anvil
