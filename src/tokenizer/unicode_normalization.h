// Unicode normalization forms NFC, NFD, NFKC and NFKD (UAX #15) over UTF-8, without ICU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace anvil {

enum class UnicodeNormalForm { NFC, NFD, NFKC, NFKD };

// Returns `utf8` in the requested normal form. Bytes that are not valid UTF-8 are copied through
// unchanged and act as hard boundaries (nothing reorders or composes across them). Text already
// in the form (all ASCII, say) is recognized by the quick check and copied in one go.
std::string normalize_unicode(std::string_view utf8, UnicodeNormalForm form);

// The Unicode version the tables were generated from (Python's unicodedata.unidata_version).
const char* unicode_normalization_version();

// Generated data (unicode_normalization_tables.cpp, written by
// gen_unicode_normalization_tables.py). Internal to normalize_unicode; declared here so the
// generated file needs no header of its own.
namespace unicode_normalization_tables {

// Per-code-point record: combining class in bits 0-7, then these flags.
inline constexpr uint32_t kCanonicalDecomposition = 1u << 8;  // one-level canonical mapping exists
inline constexpr uint32_t kCompatDecomposition = 1u << 9;     // one-level compatibility mapping exists
inline constexpr unsigned kNfcQcShift = 10;                   // 2 bits: 0 yes, 1 maybe, 2 no
inline constexpr unsigned kNfkcQcShift = 12;
inline constexpr uint32_t kNfdQcNo = 1u << 14;
inline constexpr uint32_t kNfkdQcNo = 1u << 15;
// Normalization may restart before this code point in the given form (it is a starter whose
// decomposition begins with a starter that never composes with what precedes it).
inline constexpr uint32_t kBoundaryNfc = 1u << 16;
inline constexpr uint32_t kBoundaryNfd = 1u << 17;
inline constexpr uint32_t kBoundaryNfkc = 1u << 18;
inline constexpr uint32_t kBoundaryNfkd = 1u << 19;
inline constexpr uint32_t kComposesBackward = 1u << 20;  // second element of some primary composite

struct CompositionPair {
  uint32_t first, second, composite;
};

extern const char kUnicodeVersion[];
extern const uint32_t kInfoLimit;  // code points at or above it have record 0
extern const unsigned kInfoShift;
extern const uint32_t kInfoRecords[];
extern const uint8_t kInfoStage1[];
extern const uint8_t kInfoStage2[];
extern const size_t kDecompositionCount;
extern const uint32_t kDecompositionKeys[];
extern const uint32_t kDecompositionValues[];  // pool offset << 8 | length << 1 | is compatibility
extern const uint32_t kDecompositionPool[];
extern const size_t kCompositionCount;
extern const CompositionPair kCompositions[];

}  // namespace unicode_normalization_tables
}  // namespace anvil
