// The GPT-2 bytes_to_unicode table and its inverse.
#include "tokenizer/byte_level.h"

#include <array>
#include <unordered_map>

#include "tokenizer/utf8.h"

namespace anvil::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> byte_to_utf8;
  std::unordered_map<uint32_t, uint8_t> codepoint_to_byte;
  Tables() {
    // Printable Latin-1 bytes stand for themselves; the rest take code points from U+0100 up.
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? b : next++;
      byte_to_utf8[b] = utf8::encode(cp);
      codepoint_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& encode_byte(uint8_t b) { return tables().byte_to_utf8[b]; }

std::optional<std::string> decode(std::string_view piece) {
  const Tables& t = tables();
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    uint32_t cp = 0;
    const size_t length = utf8::decode(piece, i, &cp);
    if (length == 0) return std::nullopt;
    auto it = t.codepoint_to_byte.find(cp);
    if (it == t.codepoint_to_byte.end()) return std::nullopt;
    out += static_cast<char>(it->second);
    i += length;
  }
  return out;
}

}  // namespace anvil::byte_level
