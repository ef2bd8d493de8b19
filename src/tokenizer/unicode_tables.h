// Unicode data for BERT normalization (generated tables; see gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace anvil::unicode_tables {

struct Range {
  uint32_t first, last;
};
struct Mapping {
  uint32_t codepoint;
  const char* utf8;  // what the code point becomes
};

// Sorted, disjoint ranges of general categories P* (punctuation), C* (other: controls, format,
// unassigned...) and Mn (nonspacing marks).
extern const Range kPunctuation[];
extern const size_t kPunctuationCount;
extern const Range kOther[];
extern const size_t kOtherCount;
extern const Range kNonspacingMark[];
extern const size_t kNonspacingMarkCount;
// Sorted by code point: full lowercase mapping, and NFD with nonspacing marks removed (Hangul
// syllables are decomposed algorithmically, not listed).
extern const Mapping kLowercase[];
extern const size_t kLowercaseCount;
extern const Mapping kStripAccents[];
extern const size_t kStripAccentsCount;

}  // namespace anvil::unicode_tables
