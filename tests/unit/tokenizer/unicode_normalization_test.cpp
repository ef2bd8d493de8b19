// normalize_unicode against Python's unicodedata.normalize, plus idempotence and invalid UTF-8 passthrough.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_paths.h"
#include "tokenizer/unicode_normalization.h"

namespace anvil {
namespace {

constexpr UnicodeNormalForm kForms[] = {UnicodeNormalForm::NFC, UnicodeNormalForm::NFD, UnicodeNormalForm::NFKC,
                                        UnicodeNormalForm::NFKD};
constexpr const char* kFormNames[] = {"NFC", "NFD", "NFKC", "NFKD"};

// Writes one line per case: source, NFC, NFD, NFKC, NFKD, tab-separated. The cases are every code
// point with a decomposition, a non-zero combining class or a part in Hangul composition, then
// random strings built to make reordering and composition interact (fixed seed).
constexpr const char* kReferenceScript = R"PY(
import random, sys, unicodedata as u
cases, marks, decomposable, firsts, seconds = [], [], [], set(), set()
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    c = chr(cp)
    d = u.decomposition(c)
    if d:
        decomposable.append(c)
        parts = d.split()
        if not parts[0].startswith('<') and len(parts) == 2:
            firsts.add(chr(int(parts[0], 16)))
            seconds.add(chr(int(parts[1], 16)))
    if u.combining(c):
        marks.append(c)
    if d or u.combining(c) or 0x1100 <= cp <= 0x11FF or 0xAC00 <= cp <= 0xD7A3:
        cases.append(c)
rng = random.Random(1234)
hangul = [chr(cp) for cp in range(0xAC00, 0xD7A4)]
jamo = [chr(cp) for cp in list(range(0x1100, 0x1113)) + list(range(0x1161, 0x1176)) + list(range(0x11A7, 0x11C3))]
firsts, seconds = sorted(firsts), sorted(seconds)
pools = [list('aeoucAEOUC .z'), marks, decomposable, hangul, jamo, firsts, seconds, seconds, marks]
for n in range(6000):
    length = rng.randint(1, 40 if n % 10 == 0 else 10)
    cases.append(''.join(rng.choice(rng.choice(pools)) for _ in range(length)))
with open(sys.argv[1], 'w', encoding='utf-8', newline='\n') as f:
    for s in cases:
        f.write('\t'.join([s] + [u.normalize(form, s) for form in ('NFC', 'NFD', 'NFKC', 'NFKD')]) + '\n')
)PY";

bool python_available() {
  const std::string python = ANVIL_PYTHON;
  return !python.empty() && python.find("NOTFOUND") == std::string::npos;
}

std::vector<std::vector<std::string>> reference_cases() {
  const std::string dir = anvil::testing::scratch_dir("unicode_normalization");
  const std::string script = dir + "/reference.py", data = dir + "/cases.tsv";
  std::ofstream(script) << kReferenceScript;
  const std::string cmd = std::string("\"") + ANVIL_PYTHON + "\" \"" + script + "\" \"" + data + "\"";
  std::vector<std::vector<std::string>> cases;
  if (std::system(cmd.c_str()) != 0) return cases;
  std::ifstream in(data, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) fields.push_back(field);
    if (fields.size() == 4) fields.emplace_back();  // getline drops a trailing empty field
    cases.push_back(std::move(fields));
  }
  return cases;
}

std::string hex_of(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) std::snprintf(buf, sizeof buf, "%02X", c), out += buf;
  return out;
}

TEST(UnicodeNormalization, VersionIsPythons) {
  // The tables come from the Python 3.11 that the tests also use as the reference.
  const std::string version = unicode_normalization_version();
  EXPECT_TRUE(version == "14.0.0" || version == "15.0.0") << version;
}

TEST(UnicodeNormalization, MatchesPythonUnicodedataAndIsIdempotent) {
  if (!python_available()) GTEST_SKIP() << "no python3 to produce the reference";
  const auto cases = reference_cases();
  ASSERT_GT(cases.size(), 20000u) << "reference script failed";
  int failures = 0;
  for (const auto& c : cases) {
    ASSERT_EQ(c.size(), 5u) << hex_of(c[0]);
    for (int f = 0; f < 4; ++f) {
      const std::string got = normalize_unicode(c[0], kForms[f]);
      if (got != c[f + 1] && ++failures <= 20) {
        ADD_FAILURE() << kFormNames[f] << "(" << hex_of(c[0]) << ") = " << hex_of(got) << ", want " << hex_of(c[f + 1]);
      }
      // Normalizing a normalized string changes nothing (it also exercises the quick check's
      // "yes" path on non-ASCII text).
      if (normalize_unicode(got, kForms[f]) != got && ++failures <= 20) {
        ADD_FAILURE() << kFormNames[f] << " not idempotent on " << hex_of(c[0]);
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(UnicodeNormalization, KnownExamples) {
  using F = UnicodeNormalForm;
  EXPECT_EQ(normalize_unicode("e\xCC\x81", F::NFC), "\xC3\xA9");                 // e + acute -> é
  EXPECT_EQ(normalize_unicode("\xC3\xA9", F::NFD), "e\xCC\x81");
  EXPECT_EQ(normalize_unicode("\xEF\xAC\x81", F::NFKC), "fi");                   // ﬁ ligature
  EXPECT_EQ(normalize_unicode("\xEF\xAC\x81", F::NFC), "\xEF\xAC\x81");
  EXPECT_EQ(normalize_unicode("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", F::NFC), "\xEA\xB0\x81");  // ᄀ+ᅡ+ᆨ -> 각
  EXPECT_EQ(normalize_unicode("\xEA\xB0\x81", F::NFD), "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8");
  // Canonical ordering puts dot below (220) before acute (230); a + dot below composes to U+1EA1,
  // which has no composite with acute.
  EXPECT_EQ(normalize_unicode("a\xCC\x81\xCC\xA3", F::NFC), "\xE1\xBA\xA1\xCC\x81");
  EXPECT_EQ(normalize_unicode("\xE2\x84\xA6", F::NFC), "\xCE\xA9");  // OHM SIGN is a singleton exclusion
}

TEST(UnicodeNormalization, AsciiAndNormalizedTextComeBackUnchanged) {
  const std::string ascii = "The quick brown fox, 1234567890 !@#$%^&*() \t\n";
  const std::string nfc = "caf\xC3\xA9 \xEA\xB0\x81 \xE4\xB8\xAD\xE6\x96\x87";
  for (auto form : kForms) EXPECT_EQ(normalize_unicode(ascii, form), ascii);
  EXPECT_EQ(normalize_unicode(nfc, UnicodeNormalForm::NFC), nfc);
  EXPECT_EQ(normalize_unicode(nfc, UnicodeNormalForm::NFKC), nfc);
  EXPECT_EQ(normalize_unicode("", UnicodeNormalForm::NFC), "");
}

TEST(UnicodeNormalization, InvalidUtf8PassesThrough) {
  using F = UnicodeNormalForm;
  const std::vector<std::string> invalid = {"\xFF", "a\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                            "\x80\x80", "\xE2\x82", "x\xF0\x9F\x98"};
  for (const auto& s : invalid) {
    for (auto form : kForms) EXPECT_EQ(normalize_unicode(s, form), s) << hex_of(s);
  }
  // Valid text around invalid bytes is still normalized; the bytes are barriers, never glue.
  EXPECT_EQ(normalize_unicode("e\xCC\x81\xFF" "e\xCC\x81", F::NFC), "\xC3\xA9\xFF\xC3\xA9");
  EXPECT_EQ(normalize_unicode("e\xFF\xCC\x81", F::NFC), "e\xFF\xCC\x81");
  EXPECT_EQ(normalize_unicode("\xC3\xA9\xC3", F::NFD), "e\xCC\x81\xC3");
  EXPECT_EQ(normalize_unicode("\xEF\xAC\x81\x80", F::NFKD), "fi\x80");

  // Random bytes (biased toward UTF-8 lead and continuation bytes): no crash, idempotent, and
  // every byte that was not part of a valid sequence survives.
  std::mt19937 rng(7);
  const unsigned char alphabet[] = {'a', 'e', 0x80, 0x81, 0xA1, 0xA9, 0xBF, 0xC3, 0xCC, 0xCD, 0xE1, 0xEA,
                                    0xEF, 0xF0, 0x9F, 0xFF, 0xC0, 0xED, 0xB0, 0x84, 0x85, 0x86};
  for (int n = 0; n < 3000; ++n) {
    std::string s(rng() % 24, '\0');
    for (char& c : s) c = static_cast<char>(alphabet[rng() % sizeof alphabet]);
    for (auto form : kForms) {
      const std::string once = normalize_unicode(s, form);
      EXPECT_EQ(normalize_unicode(once, form), once) << hex_of(s);
      size_t invalid_in = 0, invalid_out = 0;
      for (unsigned char c : s) invalid_in += (c == 0xFF || c == 0xC0);
      for (unsigned char c : once) invalid_out += (c == 0xFF || c == 0xC0);
      EXPECT_EQ(invalid_in, invalid_out) << hex_of(s);
    }
  }
}

TEST(UnicodeNormalization, LongRunOfCombiningMarksIsSortedStably) {
  // Long runs take the stable_sort path; reversed classes must come out ordered, equal classes in
  // their original order.
  std::string s = "a", want_nfd = "a";
  for (int i = 0; i < 50; ++i) s += "\xCC\x81\xCC\xA3";  // acute (230), dot below (220)
  for (int i = 0; i < 50; ++i) want_nfd += "\xCC\xA3";
  for (int i = 0; i < 50; ++i) want_nfd += "\xCC\x81";
  EXPECT_EQ(normalize_unicode(s, UnicodeNormalForm::NFD), want_nfd);
  std::string want_nfc = "\xE1\xBA\xA1";  // a + dot below
  for (int i = 0; i < 49; ++i) want_nfc += "\xCC\xA3";
  for (int i = 0; i < 50; ++i) want_nfc += "\xCC\x81";  // U+1EA1 has no composite with acute
  EXPECT_EQ(normalize_unicode(s, UnicodeNormalForm::NFC), want_nfc);
}

}  // namespace
}  // namespace anvil
