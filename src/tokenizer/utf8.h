// UTF-8 helpers shared by the tokenizers: decode one code point, encode, validate, sanitize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace anvil::utf8 {

inline constexpr uint32_t kReplacement = 0xFFFD;

// Length of the sequence a lead byte announces (1 for ASCII and for bytes that cannot lead).
inline size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the code point at s[i] into *cp and returns its byte length, or 0 when the bytes there
// are not a valid, complete, shortest-form sequence (surrogates and values above U+10FFFF count
// as invalid).
size_t decode(std::string_view s, size_t i, uint32_t* cp);

// True when the bytes at s[i] are a proper prefix of a valid sequence that more bytes could
// complete (streaming decode waits for those instead of replacing them).
bool is_incomplete_prefix(std::string_view s, size_t i);

void append(std::string& out, uint32_t cp);
inline std::string encode(uint32_t cp) {
  std::string s;
  append(s, cp);
  return s;
}

// Byte offset of the first invalid sequence, or npos when the text is valid UTF-8.
size_t find_invalid(std::string_view s);
// Every invalid byte becomes U+FFFD.
std::string sanitize(std::string_view s);

}  // namespace anvil::utf8
