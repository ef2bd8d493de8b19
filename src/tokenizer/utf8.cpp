// UTF-8 decoding, encoding and validation.
#include "tokenizer/utf8.h"

namespace anvil::utf8 {

size_t decode(std::string_view s, size_t i, uint32_t* cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return *cp = c, 1;
  size_t length;
  uint32_t value, min;
  if ((c & 0xE0) == 0xC0) length = 2, value = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) length = 3, value = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) length = 4, value = c & 0x07, min = 0x10000;
  else return 0;
  if (i + length > s.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    value = (value << 6) | (cc & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return length;
}

bool is_incomplete_prefix(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t length = sequence_length(c);
  if (length == 1 || i + length <= s.size()) return false;
  // Pad the available bytes with the smallest continuation byte and check the result would be
  // valid, so that e.g. E0 80 (an overlong form) is rejected at once rather than held back.
  std::string padded(s.substr(i));
  for (size_t k = 1; k < padded.size(); ++k)
    if ((static_cast<unsigned char>(padded[k]) & 0xC0) != 0x80) return false;
  uint32_t cp;
  for (unsigned char fill : {0x80, 0xBF}) {
    std::string candidate = padded;
    candidate.resize(length, static_cast<char>(fill));
    if (decode(candidate, 0, &cp) == length) return true;
  }
  return false;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t find_invalid(std::string_view s) {
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t length = decode(s, i, &cp);
    if (length == 0) return i;
    i += length;
  }
  return std::string_view::npos;
}

std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t length = decode(s, i, &cp);
    if (length == 0) {
      append(out, kReplacement);
      ++i;
    } else {
      out.append(s.substr(i, length));
      i += length;
    }
  }
  return out;
}

}  // namespace anvil::utf8
