// tokenizer.json loading: small hand-written files per model type, and real GGUF vocabularies
// re-expressed as tokenizer.json giving the same ids as the GGUF path.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/gguf_checkpoint.h"
#include "test_paths.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

using json = nlohmann::json;

std::unique_ptr<Tokenizer> make_tokenizer(const json& tokenizer_json, const json& config = json()) {
  auto vocab = parse_hf_tokenizer(tokenizer_json.dump(), config.is_null() ? "" : config.dump(), "test tokenizer.json");
  EXPECT_TRUE(vocab) << vocab.status().message();
  if (!vocab) return nullptr;
  auto tokenizer = Tokenizer::create(*vocab);
  EXPECT_TRUE(tokenizer) << tokenizer.status().message();
  return tokenizer ? std::move(tokenizer).value() : nullptr;
}

std::vector<int32_t> encode(const Tokenizer& t, const std::string& text, bool add_special = true) {
  auto ids = t.encode(text, add_special, true);
  EXPECT_TRUE(ids) << ids.status().message();
  return ids ? *ids : std::vector<int32_t>{};
}

json special_token(int id, const std::string& content) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
          {"normalized", false}, {"special", true}};
}

TEST(HfTokenizer, WordPieceWithBertNormalizerAndTemplate) {
  const std::vector<std::string> pieces = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s",
                                           "un", "##aff", "##able", ",", "!", "ecole", "\xE4\xB8\xAD", "he", "##llo"};
  json vocab = json::object();
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = i;
  json tj = {
      {"added_tokens", {special_token(0, "[PAD]"), special_token(1, "[UNK]"), special_token(2, "[CLS]"),
                        special_token(3, "[SEP]"), special_token(4, "[MASK]")}},
      {"normalizer", {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                      {"strip_accents", nullptr}, {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                    {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
                            {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}}},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
                 {"max_input_chars_per_word", 100}, {"vocab", vocab}}}};
  auto t = make_tokenizer(tj);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->vocab().model, "bert");
  // "É" loses its accent, "中" is its own word, "x" is unknown; [CLS] ... [SEP] frame the text.
  const std::string text = "Hello, worlds!\tUnaffable \xC3\x89" "COLE\xE4\xB8\xAD" "x";
  EXPECT_EQ(encode(*t, text), (std::vector<int32_t>{2, 5, 11, 6, 7, 12, 8, 9, 10, 13, 14, 1, 3}));
  EXPECT_EQ(encode(*t, text, false), (std::vector<int32_t>{5, 11, 6, 7, 12, 8, 9, 10, 13, 14, 1}));
  EXPECT_EQ(t->decode(encode(*t, "hello worlds")), "hello worlds");
  // A word with an unmatchable character is a single [UNK]; control characters vanish.
  EXPECT_EQ(encode(*t, "helloq he\x01llo", false), (std::vector<int32_t>{1, 5}));
  // Special tokens written in the text are matched whole.
  EXPECT_EQ(encode(*t, "[MASK]hello", false), (std::vector<int32_t>{4, 5}));
}

TEST(HfTokenizer, SentencePieceStyleBpeWithByteFallback) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.push_back(name);
  }
  const std::string sp = "\xE2\x96\x81";
  for (std::string p : {sp, std::string("H"), std::string("e"), std::string("l"), std::string("o"), sp + "H",
                        std::string("ll"), sp + "He", std::string("llo"), sp + "Hello", std::string("w"),
                        std::string("r"), std::string("d"), sp + "w", std::string("or"), sp + "wor", std::string("ld"),
                        sp + "world"})
    pieces.push_back(p);
  json vocab = json::object();
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = i;
  const json merges = {sp + " H", "l l", sp + "H e", "ll o", sp + "He llo", sp + " w", "o r", sp + "w or", "l d",
                       sp + "wor ld"};
  json tj = json::parse(R"({
    "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true}})");
  tj["added_tokens"] = {special_token(0, "<unk>"), special_token(1, "<s>"), special_token(2, "</s>")};
  tj["model"]["vocab"] = vocab;
  tj["model"]["merges"] = merges;
  auto t = make_tokenizer(tj, json{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_bos_token", true}});
  ASSERT_TRUE(t);
  const int32_t base = 3 + 256;
  EXPECT_EQ(encode(*t, "Hello world"), (std::vector<int32_t>{1, base + 9, base + 17}));
  // "i" is not a piece: it falls back to its byte token.
  EXPECT_EQ(encode(*t, "Hi", false), (std::vector<int32_t>{base + 5, 3 + 'i'}));
  EXPECT_EQ(t->decode(encode(*t, "Hello world")), "Hello world");
  EXPECT_EQ(t->decode(encode(*t, "Hi \xE2\x82\xAC!", false)), "Hi \xE2\x82\xAC!");
  EXPECT_EQ(t->vocab().eos_id, 2);
}

// An NFC normalizer makes a decomposed "é" (e + U+0301) encode like the precomposed one.
TEST(HfTokenizer, UnicodeNormalizerIsApplied) {
  const std::string precomposed = "\xC3\xA9", decomposed = "e\xCC\x81";
  json vocab = {{"<unk>", 0}, {"e", 1}, {precomposed, 2}, {"\xCC\x81", 3}, {"x", 4}};
  json tj = {{"normalizer", {{"type", "NFC"}}},
             {"pre_tokenizer", nullptr},
             {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"vocab", vocab}, {"merges", json::array()}}}};
  tj["added_tokens"] = {special_token(0, "<unk>")};
  auto t = make_tokenizer(tj);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->vocab().unicode_normal_form, "NFC");
  EXPECT_EQ(encode(*t, "x" + decomposed, false), (std::vector<int32_t>{4, 2}));
  EXPECT_EQ(encode(*t, "x" + precomposed, false), (std::vector<int32_t>{4, 2}));
  tj["normalizer"] = {{"type", "NFD"}};
  auto nfd = make_tokenizer(tj);
  ASSERT_TRUE(nfd);
  EXPECT_EQ(encode(*nfd, precomposed, false), (std::vector<int32_t>{1, 3}));
}

// Writes a GGUF byte-level vocabulary as tokenizer.json with the given pre-tokenizer and checks
// the HF path produces the llama.cpp vectors too.
void check_gguf_as_tokenizer_json(const std::string& name, const json& pre_tokenizer, const std::string& family) {
  const std::string path = testing::shared_data("tokenizer-vectors/ggml-vocab-" + name + ".gguf");
  auto gguf = load_gguf_vocab(path);
  ASSERT_TRUE(gguf) << gguf.status().message();
  json vocab = json::object(), added = json::array();
  for (int32_t id = 0; id < gguf->size(); ++id) {
    vocab[gguf->tokens[id]] = id;
    if (gguf->type(id) == TokenType::Control) added.push_back(special_token(id, gguf->tokens[id]));
  }
  json tj = {{"added_tokens", added}, {"normalizer", nullptr}, {"pre_tokenizer", pre_tokenizer},
             {"decoder", {{"type", "ByteLevel"}}},
             {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", gguf->merges}}}};
  auto hf = make_tokenizer(tj);
  ASSERT_TRUE(hf);
  EXPECT_EQ(hf->vocab().pre, family);
  auto reference = Tokenizer::create(*gguf);
  ASSERT_TRUE(reference);
  for (const std::string text : {"Hello world", " this is \xF0\x9F\xA6\x99.cpp", "3333333 ------=======",
                                 "I've been 'told he's there, 'RE you sure?", "\n =\t\t  x  "})
    EXPECT_EQ(encode(*hf, text, false), encode(**reference, text, false)) << text;
}

TEST(HfTokenizer, ByteLevelBpeMatchesTheGgufPath) {
  check_gguf_as_tokenizer_json("gpt-2", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}},
                               "gpt-2");
  check_gguf_as_tokenizer_json(
      "starcoder",
      {{"type", "Sequence"},
       {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}},
      "starcoder");
}

TEST(HfTokenizer, DirectoryWithoutTokenizerJsonGivesEmptyVocab) {
  const std::string dir = testing::scratch_dir("hf_tokenizer_empty");
  auto vocab = load_hf_tokenizer(dir);
  ASSERT_TRUE(vocab) << vocab.status().message();
  EXPECT_TRUE(vocab->empty());
}

TEST(HfTokenizer, ErrorsNameTheFileAndTheProblem) {
  const std::string dir = testing::scratch_dir("hf_tokenizer_bad");
  std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})";
  auto vocab = load_hf_tokenizer(dir);
  ASSERT_FALSE(vocab);
  EXPECT_NE(vocab.status().message().find("tokenizer.json"), std::string::npos) << vocab.status().message();
  EXPECT_NE(vocab.status().message().find("Unigram"), std::string::npos) << vocab.status().message();
  std::ofstream(dir + "/tokenizer.json") << "{not json";
  EXPECT_FALSE(load_hf_tokenizer(dir));
}

}  // namespace
}  // namespace anvil
