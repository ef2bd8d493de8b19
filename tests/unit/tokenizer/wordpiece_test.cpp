// WordPiece over a GGUF-style bert vocabulary ("▁" starts a word, continuations are bare).
#include <gtest/gtest.h>

#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

Vocab bert_vocab() {
  Vocab v;
  v.model = "bert";
  v.add_space_prefix = false;
  const std::string sp = "\xE2\x96\x81";
  v.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", sp + "hello", sp + "world", "s", sp + "cafe", sp + ".", sp + "\xC3\xA9"};
  v.token_types = {3, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  v.bos_id = 2;
  return v;
}

TEST(WordPiece, LowercasesStripsAccentsAndFindsUnkAndSepByText) {
  auto t = Tokenizer::create(bert_vocab());
  ASSERT_TRUE(t) << t.status().message();
  auto ids = (*t)->encode("Hello WORLDS. Caf\xC3\xA9 zz", false);
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::vector<int32_t>{4, 5, 6, 8, 7, 1}));
  EXPECT_EQ((*t)->vocab().sep_id, 3);
  EXPECT_EQ((*t)->decode(*ids), "hello worlds . cafe");
}

TEST(WordPiece, KeepsCaseAndAccentsWhenTheVocabularySaysSo) {
  Vocab v = bert_vocab();
  v.lowercase = false;
  v.strip_accents = false;
  v.add_sep = true;
  v.sep_id = 3;
  auto t = Tokenizer::create(v);
  ASSERT_TRUE(t);
  auto ids = (*t)->encode("hello \xC3\xA9 Hello", true);
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::vector<int32_t>{2, 4, 9, 1, 3}));
}

}  // namespace
}  // namespace anvil
