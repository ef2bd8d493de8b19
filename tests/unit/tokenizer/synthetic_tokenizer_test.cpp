// The presets' synthetic vocabulary through the SentencePiece path, and streaming decode.
#include <gtest/gtest.h>

#include "model/presets.h"
#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

TEST(SyntheticTokenizer, RoundTripsArbitraryBytes) {
  auto tokenizer = Tokenizer::create(synthetic_byte_vocab(512));
  ASSERT_TRUE(tokenizer) << tokenizer.status().message();
  const std::string text = "Hello, world! \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 tabs\tand\nnewlines";
  auto ids = (*tokenizer)->encode(text, true);
  ASSERT_TRUE(ids);
  EXPECT_EQ((*ids)[0], 1);                 // BOS
  EXPECT_EQ((*ids)[1], 3 + 'H');           // byte token
  EXPECT_EQ((*tokenizer)->decode(*ids), text);
}

TEST(StreamingDecoder, NeverEmitsHalfACharacter) {
  auto tokenizer = Tokenizer::create(synthetic_byte_vocab(512));
  ASSERT_TRUE(tokenizer);
  StreamingDecoder decoder(**tokenizer);
  // "€" = E2 82 AC arrives one byte token at a time.
  EXPECT_EQ(decoder.push(3 + 0xE2), "");
  EXPECT_EQ(decoder.push(3 + 0x82), "");
  EXPECT_EQ(decoder.push(3 + 0xAC), "\xE2\x82\xAC");
  // An invalid byte becomes U+FFFD instead of blocking the stream.
  EXPECT_EQ(decoder.push(3 + 0xFF), "\xEF\xBF\xBD");
  EXPECT_EQ(decoder.push(3 + 0xC3), "");
  EXPECT_EQ(decoder.flush(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, MissingOrUnsupportedVocabularyIsAClearError) {
  Vocab empty;
  auto none = Tokenizer::create(empty);
  ASSERT_FALSE(none);
  EXPECT_NE(none.status().message().find("--prompt-tokens"), std::string::npos);
  Vocab rwkv = synthetic_byte_vocab(300);
  rwkv.model = "rwkv";
  auto unsupported = Tokenizer::create(rwkv);
  ASSERT_FALSE(unsupported);
  EXPECT_NE(unsupported.status().message().find("rwkv"), std::string::npos);
}

}  // namespace
}  // namespace anvil
