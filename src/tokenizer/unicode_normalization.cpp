// Unicode normalization (UAX #15): quick-check fast path, then decompose / reorder / compose per segment.
#include "tokenizer/unicode_normalization.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace anvil {
namespace {

namespace t = unicode_normalization_tables;

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;
constexpr uint32_t kInvalid = 0xFFFFFFFF;  // decode result for a byte that starts no valid sequence

inline uint32_t info_of(uint32_t cp) {
  if (cp >= t::kInfoLimit) return t::kInfoRecords[0];
  const uint32_t block = t::kInfoStage1[cp >> t::kInfoShift];
  return t::kInfoRecords[t::kInfoStage2[(block << t::kInfoShift) | (cp & ((1u << t::kInfoShift) - 1))]];
}
inline uint8_t ccc_of(uint32_t info) { return static_cast<uint8_t>(info & 0xFF); }

// Strict decoder (shortest form, no surrogates, <= U+10FFFF). Returns the sequence length and sets
// *cp, or returns 1 with *cp = kInvalid for a byte that must pass through untouched.
inline size_t decode(const unsigned char* s, size_t n, size_t i, uint32_t* cp) {
  const unsigned c = s[i];
  if (c < 0x80) return *cp = c, 1;
  size_t length;
  uint32_t value, min;
  if ((c & 0xE0) == 0xC0) length = 2, value = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) length = 3, value = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) length = 4, value = c & 0x07, min = 0x10000;
  else return *cp = kInvalid, 1;
  if (i + length > n) return *cp = kInvalid, 1;
  for (size_t k = 1; k < length; ++k) {
    const unsigned cc = s[i + k];
    if ((cc & 0xC0) != 0x80) return *cp = kInvalid, 1;
    value = (value << 6) | (cc & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return *cp = kInvalid, 1;
  *cp = value;
  return length;
}

inline void append_utf8(std::string& out, uint32_t cp) {
  char buf[4];
  size_t n;
  if (cp < 0x80) buf[0] = static_cast<char>(cp), n = 1;
  else if (cp < 0x800) buf[0] = static_cast<char>(0xC0 | (cp >> 6)), buf[1] = static_cast<char>(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000)
    buf[0] = static_cast<char>(0xE0 | (cp >> 12)), buf[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
    buf[2] = static_cast<char>(0x80 | (cp & 0x3F)), n = 3;
  else
    buf[0] = static_cast<char>(0xF0 | (cp >> 18)), buf[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
    buf[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), buf[3] = static_cast<char>(0x80 | (cp & 0x3F)), n = 4;
  out.append(buf, n);
}

struct FormTraits {
  bool compat;
  bool compose;
  uint32_t boundary;
  // Quick-check answer for one record: 0 yes, 1 maybe, 2 no.
  unsigned qc(uint32_t info) const {
    switch (form) {
      case UnicodeNormalForm::NFC: return (info >> t::kNfcQcShift) & 3;
      case UnicodeNormalForm::NFKC: return (info >> t::kNfkcQcShift) & 3;
      case UnicodeNormalForm::NFD: return (info & t::kNfdQcNo) ? 2 : 0;
      case UnicodeNormalForm::NFKD: return (info & t::kNfkdQcNo) ? 2 : 0;
    }
    return 2;
  }
  UnicodeNormalForm form;
};

FormTraits traits_of(UnicodeNormalForm form) {
  switch (form) {
    case UnicodeNormalForm::NFC: return {false, true, t::kBoundaryNfc, form};
    case UnicodeNormalForm::NFD: return {false, false, t::kBoundaryNfd, form};
    case UnicodeNormalForm::NFKC: return {true, true, t::kBoundaryNfkc, form};
    case UnicodeNormalForm::NFKD: return {true, false, t::kBoundaryNfkd, form};
  }
  return {false, false, t::kBoundaryNfd, form};
}

struct Unit {
  uint32_t cp;
  uint8_t ccc;
};

// Full (recursive) decomposition of cp appended to out. Recursion depth is bounded by the data
// (mappings nest a few levels at most).
void decompose(uint32_t cp, bool compat, std::vector<Unit>& out) {
  if (cp - kSBase < kSCount) {  // Hangul syllable: algorithmic, never in the tables
    const uint32_t s = cp - kSBase;
    out.push_back({kLBase + s / kNCount, 0});
    out.push_back({kVBase + (s % kNCount) / kTCount, 0});
    if (s % kTCount != 0) out.push_back({kTBase + s % kTCount, 0});
    return;
  }
  const uint32_t info = info_of(cp);
  if ((info & t::kCanonicalDecomposition) || (compat && (info & t::kCompatDecomposition))) {
    const uint32_t* keys = t::kDecompositionKeys;
    const uint32_t* it = std::lower_bound(keys, keys + t::kDecompositionCount, cp);
    if (it != keys + t::kDecompositionCount && *it == cp) {
      const uint32_t value = t::kDecompositionValues[it - keys];
      const uint32_t* parts = t::kDecompositionPool + (value >> 8);
      const uint32_t length = (value >> 1) & 0x7F;
      for (uint32_t k = 0; k < length; ++k) decompose(parts[k], compat, out);
      return;
    }
  }
  out.push_back({cp, ccc_of(info)});
}

// Canonical ordering: stable sort of every run of non-starters by combining class.
void reorder(std::vector<Unit>& units) {
  const size_t n = units.size();
  size_t i = 0;
  while (i < n) {
    if (units[i].ccc == 0) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < n && units[end].ccc != 0) ++end;
    if (end - i > 1) {
      auto by_class = [](const Unit& a, const Unit& b) { return a.ccc < b.ccc; };
      if (end - i <= 16) {  // insertion sort: runs are almost always tiny
        for (size_t k = i + 1; k < end; ++k) {
          const Unit u = units[k];
          size_t j = k;
          while (j > i && units[j - 1].ccc > u.ccc) units[j] = units[j - 1], --j;
          units[j] = u;
        }
      } else {
        std::stable_sort(units.begin() + static_cast<std::ptrdiff_t>(i), units.begin() + static_cast<std::ptrdiff_t>(end),
                         by_class);
      }
    }
    i = end;
  }
}

// The primary composite of (first, second), or kInvalid.
uint32_t compose_pair(uint32_t first, uint32_t second) {
  if (first - kLBase < kLCount && second - kVBase < kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first - kSBase < kSCount && (first - kSBase) % kTCount == 0 && second - kTBase - 1 < kTCount - 1)
    return first + (second - kTBase);
  const t::CompositionPair* begin = t::kCompositions;
  const t::CompositionPair* end = begin + t::kCompositionCount;
  const t::CompositionPair* it = std::lower_bound(begin, end, first, [](const t::CompositionPair& p, uint32_t f) {
    return p.first < f;
  });
  for (; it != end && it->first == first; ++it) {
    if (it->second == second) return it->composite;
  }
  return kInvalid;
}

// Canonical composition in place: each character joins the last starter when it is not blocked
// (no character between them has class 0 or a class >= its own).
void compose(std::vector<Unit>& units) {
  const size_t n = units.size();
  if (n < 2) return;
  size_t starter = 0;
  bool have_starter = units[0].ccc == 0;
  int last_class = have_starter ? 0 : 256;  // class of the last character kept after the starter
  size_t kept = 1;
  for (size_t i = 1; i < n; ++i) {
    const Unit u = units[i];
    if (have_starter && (last_class < u.ccc || last_class == 0) &&
        (info_of(u.cp) & t::kComposesBackward)) {
      const uint32_t composite = compose_pair(units[starter].cp, u.cp);
      if (composite != kInvalid) {
        units[starter].cp = composite;  // composites of starters are starters
        continue;
      }
    }
    if (u.ccc == 0) have_starter = true, starter = kept;
    last_class = u.ccc;
    units[kept++] = u;
  }
  units.resize(kept);
}

class Normalizer {
 public:
  Normalizer(std::string_view in, UnicodeNormalForm form)
      : s_(reinterpret_cast<const unsigned char*>(in.data())), n_(in.size()), in_(in), f_(traits_of(form)) {}

  std::string run() {
    size_t pos = 0;
    const size_t clean = quick_scan(0);
    if (clean == n_) return std::string(in_);
    out_.reserve(n_ + n_ / 8 + 16);
    while (pos < n_) {
      const size_t stop = pos == 0 ? clean : quick_scan(pos);
      out_.append(in_.substr(pos, stop - pos));
      if (stop == n_) break;
      pos = normalize_segment(stop);
    }
    return std::move(out_);
  }

 private:
  // Scans from a boundary at `pos` and returns where normalization must start: n_ when the rest is
  // already normalized, else the last boundary at or before the first character the quick check
  // does not accept. Everything before the returned offset is already in the form.
  size_t quick_scan(size_t pos) const {
    size_t boundary = pos;
    unsigned last_class = 0;
    size_t i = pos;
    while (i < n_) {
      // ASCII runs, eight bytes at a time: every ASCII character is an inert boundary.
      if (s_[i] < 0x80) {
        while (i + 8 <= n_) {
          uint64_t word;
          std::memcpy(&word, s_ + i, 8);
          if (word & 0x8080808080808080ull) break;
          i += 8;
        }
        while (i < n_ && s_[i] < 0x80) ++i;
        boundary = i - 1;  // the last ASCII character may still compose with what follows it
        last_class = 0;
        continue;
      }
      uint32_t cp;
      const size_t length = decode(s_, n_, i, &cp);
      if (cp == kInvalid) {  // passes through and separates segments
        i += length;
        boundary = i;
        last_class = 0;
        continue;
      }
      const uint32_t info = info_of(cp);
      if (info & f_.boundary) boundary = i;
      const unsigned cls = ccc_of(info);
      if ((cls != 0 && last_class > cls) || f_.qc(info) != 0) return boundary;
      last_class = cls;
      i += length;
    }
    return n_;
  }

  // Normalizes from the boundary `start` to the next boundary (or invalid byte) after it and
  // returns where that segment ended.
  size_t normalize_segment(size_t start) {
    units_.clear();
    size_t i = start;
    while (i < n_) {
      uint32_t cp;
      const size_t length = decode(s_, n_, i, &cp);
      if (cp == kInvalid) {
        if (i == start) {  // a lone invalid byte is its own segment
          out_.push_back(static_cast<char>(s_[i]));
          return i + 1;
        }
        break;
      }
      if (i != start && cp < 0x80) break;
      if (i != start && (info_of(cp) & f_.boundary)) break;
      decompose(cp, f_.compat, units_);
      i += length;
    }
    reorder(units_);
    if (f_.compose) compose(units_);
    for (const Unit& u : units_) append_utf8(out_, u.cp);
    return i;
  }

  const unsigned char* s_;
  size_t n_;
  std::string_view in_;
  FormTraits f_;
  std::string out_;
  std::vector<Unit> units_;
};

}  // namespace

std::string normalize_unicode(std::string_view utf8, UnicodeNormalForm form) {
  return Normalizer(utf8, form).run();
}

const char* unicode_normalization_version() { return unicode_normalization_tables::kUnicodeVersion; }

}  // namespace anvil
