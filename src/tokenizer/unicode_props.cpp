// Lookups in the generated Unicode tables.
#include "tokenizer/unicode_props.h"

#include <algorithm>

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace anvil::unicode {
namespace {

using unicode_tables::Mapping;
using unicode_tables::Range;

bool in_ranges(const Range* ranges, size_t count, uint32_t cp) {
  const Range* end = ranges + count;
  const Range* it = std::upper_bound(ranges, end, cp, [](uint32_t c, const Range& r) { return c < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

const char* find_mapping(const Mapping* table, size_t count, uint32_t cp) {
  const Mapping* end = table + count;
  const Mapping* it = std::lower_bound(table, end, cp, [](const Mapping& m, uint32_t c) { return m.codepoint < c; });
  return it != end && it->codepoint == cp ? it->utf8 : nullptr;
}

}  // namespace

bool is_punctuation(uint32_t cp) {
  return in_ranges(unicode_tables::kPunctuation, unicode_tables::kPunctuationCount, cp);
}
bool is_other(uint32_t cp) { return in_ranges(unicode_tables::kOther, unicode_tables::kOtherCount, cp); }
bool is_nonspacing_mark(uint32_t cp) {
  return in_ranges(unicode_tables::kNonspacingMark, unicode_tables::kNonspacingMarkCount, cp);
}

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

bool is_cjk_ideograph(uint32_t cp) {
  // The ranges of Hugging Face's BertNormalizer (its 0x2B920 start is kept as it is there).
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

void append_lowercase(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  if (const char* mapped = find_mapping(unicode_tables::kLowercase, unicode_tables::kLowercaseCount, cp)) {
    out += mapped;
    return;
  }
  utf8::append(out, cp);
}

void append_without_accents(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
    return;
  }
  if (cp >= 0xAC00 && cp <= 0xD7A3) {  // Hangul syllable: leading consonant, vowel, optional trailing
    const uint32_t index = cp - 0xAC00;
    utf8::append(out, 0x1100 + index / (21 * 28));
    utf8::append(out, 0x1161 + (index % (21 * 28)) / 28);
    if (index % 28 != 0) utf8::append(out, 0x11A7 + index % 28);
    return;
  }
  if (is_nonspacing_mark(cp)) return;
  if (const char* mapped = find_mapping(unicode_tables::kStripAccents, unicode_tables::kStripAccentsCount, cp)) {
    out += mapped;
    return;
  }
  utf8::append(out, cp);
}

}  // namespace anvil::unicode
