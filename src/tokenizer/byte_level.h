// GPT-2's byte-level alphabet: every byte maps to one printable code point, so byte-level BPE
// pieces ("Ġthe") are plain Unicode strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace anvil::byte_level {

// The UTF-8 string of the code point that stands for byte b.
const std::string& encode_byte(uint8_t b);
// The raw bytes a byte-level piece stands for; nullopt when a code point is outside the alphabet
// (such pieces are added tokens stored as plain text).
std::optional<std::string> decode(std::string_view piece);

}  // namespace anvil::byte_level
