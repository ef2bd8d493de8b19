// SentencePiece's text conventions: "▁" stands for a space, and the whitespace normalizer.
#pragma once

#include <string>
#include <string_view>

namespace anvil {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // "▁"

// SentencePiece's normalizer before encoding: with remove_extra_whitespaces, trim spaces and
// collapse runs into one; with add_space_prefix, start with "▁"; every remaining ' ' becomes
// "▁". Returns "" when nothing is left to encode.
std::string sentencepiece_escape(std::string_view raw, bool add_space_prefix, bool remove_extra_whitespaces);

}  // namespace anvil
