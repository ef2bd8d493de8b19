// Property tests over random Unicode and random bytes: round trip, streaming decode that never
// emits half a character, and invalid UTF-8 that never crashes.
#include <gtest/gtest.h>

#include <random>

#include "formats/gguf_checkpoint.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace anvil {
namespace {

std::string random_text(std::mt19937& rng, bool allow_invalid) {
  static const uint32_t kPool[] = {'a', 'Z', '0', '9', ' ', ' ', ' ', '\n', '\t', '\'', '.', '!', '<', '>',
                                   0xE9, 0xDF, 0x301, 0x3B1, 0x416, 0x5D0, 0x627, 0x915, 0x1F600, 0x1F999, 0x4E2D,
                                   0x3042, 0xAC00, 0xFF21, 0x2581, 0x200D, 0xFE0F, 0x10FFFF, 0xFFFD, 0x7F, 0x0};
  std::uniform_int_distribution<int> length(0, 40), pick(0, std::size(kPool) - 1), coin(0, 9);
  std::uniform_int_distribution<uint32_t> any(1, 0x3FFFF);  // planes 0-3: every vocabulary here has their bytes
  std::string s;
  for (int n = length(rng); n > 0; --n) {
    const int c = coin(rng);
    if (allow_invalid && c == 0) {
      s += static_cast<char>(std::uniform_int_distribution<int>(0x80, 0xFF)(rng));  // stray byte
    } else if (c == 1) {
      uint32_t cp = any(rng);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      utf8::append(s, cp);
    } else {
      utf8::append(s, kPool[pick(rng)]);
    }
  }
  return s;
}

// SentencePiece writes spaces as "▁", so a literal "▁" in the input decodes as a space; a
// byte-level vocabulary drops the bytes it has no piece for (StarCoder lacks some lead bytes).
std::string expected_text(const Tokenizer& t, std::string text) {
  if (t.vocab().model != "llama") {
    std::string kept;
    for (char c : text) {
      auto ids = t.encode(std::string(1, c), false, false);
      if (ids && !ids->empty()) kept += c;
    }
    return kept;
  }
  for (size_t at; (at = text.find("\xE2\x96\x81")) != std::string::npos;) text.replace(at, 3, " ");
  return text;
}

struct Loaded {
  std::string name;
  std::unique_ptr<Tokenizer> tokenizer;
};

std::vector<Loaded> load_all() {
  std::vector<Loaded> all;
  for (const char* name : {"llama-spm", "phi-3", "gpt-2", "starcoder"}) {
    auto vocab = load_gguf_vocab(testing::shared_data(std::string("tokenizer-vectors/ggml-vocab-") + name + ".gguf"));
    EXPECT_TRUE(vocab) << vocab.status().message();
    if (!vocab) continue;
    auto tokenizer = Tokenizer::create(*vocab);
    EXPECT_TRUE(tokenizer) << tokenizer.status().message();
    if (tokenizer) all.push_back({name, std::move(tokenizer).value()});
  }
  return all;
}

const std::vector<Loaded>& tokenizers() {
  static const std::vector<Loaded> all = load_all();
  return all;
}

TEST(TokenizerProperty, RandomUnicodeRoundTripsAndStreams) {
  std::mt19937 rng(1234);
  for (const Loaded& l : tokenizers()) {
    SCOPED_TRACE(l.name);
    const bool sentencepiece = l.tokenizer->vocab().model == "llama";
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_text(rng, false);
      auto ids = l.tokenizer->encode(text, true, false);
      ASSERT_TRUE(ids);
      const std::string expected = expected_text(*l.tokenizer, text);
      ASSERT_EQ(l.tokenizer->decode(*ids), expected) << "case " << i;
      StreamingDecoder stream(*l.tokenizer);
      std::string streamed;
      for (int32_t id : *ids) {
        const std::string piece = stream.push(id);
        ASSERT_EQ(utf8::find_invalid(piece), std::string::npos) << "half a character streamed, case " << i;
        streamed += piece;
      }
      streamed += stream.flush();
      // Streaming keeps SentencePiece's space prefix (it continues a prompt); decode drops it.
      ASSERT_EQ(streamed, (sentencepiece && !text.empty() ? " " : "") + expected) << "case " << i;
    }
  }
}

TEST(TokenizerProperty, InvalidUtf8IsEncodedLosslesslyAndDecodedWithReplacement) {
  std::mt19937 rng(99);
  for (const Loaded& l : tokenizers()) {
    SCOPED_TRACE(l.name);
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_text(rng, true);
      auto ids = l.tokenizer->encode(text, false, true);
      ASSERT_TRUE(ids);
      // Byte-level and byte-fallback vocabularies keep every byte; decoding replaces the bad ones.
      const bool sentencepiece = l.tokenizer->vocab().model == "llama";
      const std::string expected = sentencepiece ? expected_text(*l.tokenizer, utf8::sanitize(text))
                                                 : utf8::sanitize(expected_text(*l.tokenizer, text));
      EXPECT_EQ(l.tokenizer->decode(*ids), expected) << "case " << i;
    }
  }
}

TEST(TokenizerProperty, RandomBytesNeverCrashAnyAlgorithm) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 64);
  Vocab bert;
  bert.model = "bert";
  bert.tokens = {"[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81" "a", "b", "\xE2\x96\x81" "!"};
  bert.token_types = {2, 3, 3, 1, 1, 1};
  bert.unk_id = 0;
  auto wordpiece = Tokenizer::create(bert);
  ASSERT_TRUE(wordpiece) << wordpiece.status().message();
  for (int i = 0; i < 500; ++i) {
    std::string bytes;
    for (int n = length(rng); n > 0; --n) bytes += static_cast<char>(byte(rng));
    for (const Loaded& l : tokenizers()) {
      auto ids = l.tokenizer->encode(bytes, true, true);
      ASSERT_TRUE(ids);
      EXPECT_EQ(utf8::find_invalid(l.tokenizer->decode(*ids)), std::string::npos);
    }
    auto ids = (*wordpiece)->encode(bytes, false, true);
    ASSERT_TRUE(ids);
    (*wordpiece)->decode(*ids);
  }
}

TEST(Utf8, DecodeRejectsOverlongSurrogatesAndOutOfRange) {
  uint32_t cp = 0;
  EXPECT_EQ(utf8::decode("\xC0\xAF", 0, &cp), 0u);          // overlong '/'
  EXPECT_EQ(utf8::decode("\xED\xA0\x80", 0, &cp), 0u);      // surrogate
  EXPECT_EQ(utf8::decode("\xF4\x90\x80\x80", 0, &cp), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8::decode("\xF0\x9F\x98\x80", 0, &cp), 4u);
  EXPECT_EQ(cp, 0x1F600u);
  EXPECT_TRUE(utf8::is_incomplete_prefix("\xF0\x9F", 0));
  EXPECT_FALSE(utf8::is_incomplete_prefix("\xE0\x80", 0));  // can only become overlong
  EXPECT_EQ(utf8::sanitize("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
}

}  // namespace
}  // namespace anvil
