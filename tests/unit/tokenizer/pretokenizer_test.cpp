// Pre-tokenizer regexes: every family compiles and splits as its tokenizer.json does.
#include <gtest/gtest.h>

#include "tokenizer/pretokenizer_patterns.h"
#include "tokenizer/regex_splitter.h"

namespace anvil {
namespace {

std::vector<std::string> split(const std::string& family, const std::string& text) {
  auto spec = pretokenizer_for(family);
  EXPECT_TRUE(spec) << spec.status().message();
  auto splitter = RegexSplitter::create(spec->regexes);
  EXPECT_TRUE(splitter) << splitter.status().message();
  std::vector<std::string_view> pieces;
  splitter->split(text, pieces);
  std::string joined;
  for (std::string_view p : pieces) joined += p;
  EXPECT_EQ(joined, text) << "pieces must cover the input";
  return {pieces.begin(), pieces.end()};
}

using Pieces = std::vector<std::string>;

TEST(PreTokenizer, EveryFamilyCompilesAndCoversTheInput) {
  const std::string text = "Hello, y'all! How're you 😁 ?我想在apple工作1314151天～ \n\n  x 3.14 ''\r\n";
  for (const char* family : {"", "default", "gpt2", "gpt-2", "llama3", "llama-bpe", "qwen2", "deepseek-llm",
                             "deepseek-coder", "deepseek-v3", "falcon", "mpt", "starcoder", "refact", "command-r",
                             "smollm", "dbrx", "smaug-bpe", "poro-chat", "bloom", "viking", "tekken", "gpt-4o",
                             "seed-coder", "bailingmoe", "grok-2", "olmo", "stablelm2", "chatglm-bpe", "exaone"}) {
    SCOPED_TRACE(family);
    EXPECT_FALSE(split(family, text).empty());
  }
}

TEST(PreTokenizer, FamiliesSplitLikeTheirTokenizers) {
  EXPECT_EQ(split("gpt2", "Hello world's  123"), (Pieces{"Hello", " world", "'s", " ", " 123"}));
  EXPECT_EQ(split("llama3", "1234567 I'M here\n\n"), (Pieces{"123", "456", "7", " I", "'M", " here", "\n\n"}));
  EXPECT_EQ(split("qwen2", "x123"), (Pieces{"x", "1", "2", "3"}));
  EXPECT_EQ(split("starcoder", "ab 12"), (Pieces{"ab", " ", "1", "2"}));
  EXPECT_EQ(split("deepseek-coder", "ab\n12"), (Pieces{"ab", "\n", "1", "2"}));
  EXPECT_EQ(split("falcon", "a+b 1234"), (Pieces{"a", "+", "b", " ", "123", "4"}));
}

TEST(PreTokenizer, UnknownFamilyAndBadRegexAreClearErrors) {
  auto spec = pretokenizer_for("no-such-family");
  ASSERT_FALSE(spec);
  EXPECT_NE(spec.status().message().find("no-such-family"), std::string::npos);
  auto splitter = RegexSplitter::create({"(unclosed"});
  ASSERT_FALSE(splitter);
  EXPECT_NE(splitter.status().message().find("(unclosed"), std::string::npos);
}

TEST(PreTokenizer, InvalidUtf8StaysInItsOwnPieces) {
  EXPECT_EQ(split("gpt2", "ab\xFF" "cd"), (Pieces{"ab", "\xFF", "cd"}));
}

}  // namespace
}  // namespace anvil
