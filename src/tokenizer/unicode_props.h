// Unicode character properties and mappings the BERT normalizer needs.
#pragma once

#include <cstdint>
#include <string>

namespace anvil::unicode {

bool is_punctuation(uint32_t cp);      // general category P*
bool is_other(uint32_t cp);            // general category C* (controls, format, unassigned, ...)
bool is_nonspacing_mark(uint32_t cp);  // general category Mn
bool is_white_space(uint32_t cp);      // the White_Space property
bool is_cjk_ideograph(uint32_t cp);    // the blocks BERT isolates as single-character words
// Appends the full lowercase mapping of cp.
void append_lowercase(std::string& out, uint32_t cp);
// Appends cp decomposed (NFD) without its nonspacing marks ("é" -> "e", "가" -> "ᄀ" + "ᅡ").
void append_without_accents(std::string& out, uint32_t cp);

}  // namespace anvil::unicode
