// SentencePiece tokenizer.model loading: real BPE and unigram models trained by spm_train must give
// exactly spm_encode's ids; hand-built and damaged files must give clear errors, never crashes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "test_paths.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}
std::string quote(const std::string& s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Trains the models once for the whole suite (spm_train takes a fraction of a second each).
class SentencePieceModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("command -v spm_train >/dev/null 2>&1 && command -v spm_encode >/dev/null 2>&1") != 0) return;
    dir_ = new std::string(anvil::testing::scratch_dir("sentencepiece_model"));
    const std::string corpus = read_file(anvil::testing::shared_data("text/tinyshakespeare.txt"));
    if (corpus.size() < 200000) return;
    write_file(*dir_ + "/train.txt", corpus.substr(0, 60000));
    // Held-out lines (with words the models never saw) and cases for whitespace and byte fallback.
    std::vector<std::string> sample = split_lines(corpus.substr(150000, 30000));
    // Other text: numbers, markup and names the models never saw (long lines also exercise the
    // float rounding that decides near-ties in the unigram lattice).
    const std::string wiki = read_file(anvil::testing::shared_data("text/wikitext-2-test.txt"));
    for (const std::string& line : split_lines(wiki.substr(0, std::min<size_t>(wiki.size(), 40000))))
      sample.push_back(line);
    for (const char* line : {"  leading and trailing  ", "multiple   inner    spaces", "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 "
                             "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x99\x82", "tabs\there\tand\tthere",
                             "digits 1234567890 and 3.14", "x", "   ", "QQQQ zzzz JJJJ", "<s> and </s> as text"})
      sample.push_back(line);
    sample_ = new std::vector<std::string>(sample);
    std::string joined;
    for (const std::string& line : sample) joined += line + "\n";
    write_file(*dir_ + "/sample.txt", joined);
    const std::string common = " --input=" + quote(*dir_ + "/train.txt") +
                               " --num_threads=2 --minloglevel=2 --normalization_rule_name=identity";
    const std::pair<const char*, const char*> models[] = {
        // Llama 2's settings: byte fallback, whitespace kept as is, digits split.
        {"bpe_llama", "--model_type=bpe --vocab_size=600 --byte_fallback=true --remove_extra_whitespaces=false "
                      "--split_digits=true --character_coverage=1.0"},
        // SentencePiece's defaults: whitespace collapsed, rare characters become <unk>.
        {"bpe_plain", "--model_type=bpe --vocab_size=400 --character_coverage=0.995"},
        {"unigram", "--model_type=unigram --vocab_size=500 --byte_fallback=true --character_coverage=1.0"},
        {"unigram_plain", "--model_type=unigram --vocab_size=400 --character_coverage=0.995 --add_dummy_prefix=false"},
    };
    for (const auto& [name, flags] : models) {
      const std::string prefix = *dir_ + "/" + name;
      const std::string train = "spm_train" + common + " --model_prefix=" + quote(prefix) + " " + flags +
                                " >" + quote(prefix + ".log") + " 2>&1";
      if (std::system(train.c_str()) != 0) return;
      const std::string encode = "spm_encode --model=" + quote(prefix + ".model") + " --output_format=id <" +
                                 quote(*dir_ + "/sample.txt") + " >" + quote(prefix + ".ids") + " 2>/dev/null";
      if (std::system(encode.c_str()) != 0) return;
    }
    ready_ = true;
  }

  void SetUp() override {
    if (!ready_) GTEST_SKIP() << "spm_train/spm_encode (Debian package sentencepiece) are not installed";
  }

  static std::string model(const std::string& name) { return *dir_ + "/" + name + ".model"; }

  // anvil's ids for every sample line against spm_encode's.
  // merge_unknown_runs: SentencePiece turns a run of unknown characters into one <unk>; anvil's
  // SentencePiece BPE encoder (llama.cpp's algorithm) emits one per character, so for BPE models
  // without byte fallback the comparison merges runs first.
  static void expect_same_ids_as_spm(const std::string& name, bool merge_unknown_runs = false) {
    auto vocab = load_sentencepiece_model(model(name));
    ASSERT_TRUE(vocab) << vocab.status().message();
    auto tokenizer = Tokenizer::create(*vocab);
    ASSERT_TRUE(tokenizer) << tokenizer.status().message();
    const std::vector<std::string> expected = split_lines(read_file(*dir_ + "/" + name + ".ids"));
    ASSERT_EQ(expected.size(), sample_->size());
    for (size_t i = 0; i < expected.size(); ++i) {
      auto ids = (*tokenizer)->encode((*sample_)[i], /*add_special=*/false);
      ASSERT_TRUE(ids) << ids.status().message();
      std::string got;
      for (size_t k = 0; k < ids->size(); ++k) {
        if (merge_unknown_runs && k > 0 && (*ids)[k] == vocab->unk_id && (*ids)[k - 1] == vocab->unk_id) continue;
        if (!got.empty()) got += ' ';
        got += std::to_string((*ids)[k]);
      }
      EXPECT_EQ(got, expected[i]) << name << " line " << i << ": '" << (*sample_)[i] << "'";
    }
  }

  static inline std::string* dir_ = nullptr;
  static inline std::vector<std::string>* sample_ = nullptr;
  static inline bool ready_ = false;
};

TEST_F(SentencePieceModel, ReadsLlamaStyleBpeModel) {
  auto vocab = load_sentencepiece_model(model("bpe_llama"));
  ASSERT_TRUE(vocab) << vocab.status().message();
  const Vocab& v = *vocab;
  EXPECT_EQ(v.model, "llama");
  ASSERT_EQ(v.size(), 600);
  EXPECT_EQ(v.scores.size(), 600u);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.type(0), TokenType::Unknown);
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.type(1), TokenType::Control);
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.type(2), TokenType::Control);
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.type(3), TokenType::Byte);
  EXPECT_EQ(v.tokens[3 + 255], "<0xFF>");
  EXPECT_EQ(v.type(259), TokenType::Normal);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_FALSE(v.remove_extra_whitespaces);
  EXPECT_GT(v.scores[259], v.scores[300]);  // merges are scored by their order
}

TEST_F(SentencePieceModel, BpeMatchesSpmEncode) {
  expect_same_ids_as_spm("bpe_llama");
  expect_same_ids_as_spm("bpe_plain", /*merge_unknown_runs=*/true);
}

TEST_F(SentencePieceModel, UnigramMatchesSpmEncode) {
  expect_same_ids_as_spm("unigram");
  expect_same_ids_as_spm("unigram_plain");
}

TEST_F(SentencePieceModel, UnigramVocabularyAndDecode) {
  auto vocab = load_sentencepiece_model(model("unigram"));
  ASSERT_TRUE(vocab) << vocab.status().message();
  EXPECT_EQ(vocab->model, "t5");
  EXPECT_TRUE(vocab->remove_extra_whitespaces);
  auto plain = load_sentencepiece_model(model("unigram_plain"));
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->add_space_prefix);
  auto tokenizer = Tokenizer::create(*vocab);
  ASSERT_TRUE(tokenizer) << tokenizer.status().message();
  const std::string text = "O Romeo, Romeo! wherefore art thou \xE6\x97\xA5\xE6\x9C\xAC?";
  auto ids = (*tokenizer)->encode(text, /*add_special=*/true);
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->back(), vocab->eos_id);  // unigram checkpoints (T5) append </s>
  EXPECT_EQ((*tokenizer)->decode(*ids), text);
}

TEST_F(SentencePieceModel, LlamaStyleDecodeIsLossless) {
  auto vocab = load_sentencepiece_model(model("bpe_llama"));
  ASSERT_TRUE(vocab);
  auto tokenizer = Tokenizer::create(*vocab);
  ASSERT_TRUE(tokenizer);
  for (const std::string& line : *sample_) {
    auto ids = (*tokenizer)->encode(line, /*add_special=*/true);
    ASSERT_TRUE(ids);
    ASSERT_FALSE(ids->empty());
    EXPECT_EQ(ids->front(), 1);
    EXPECT_EQ((*tokenizer)->decode(*ids), line);
  }
}

TEST_F(SentencePieceModel, HfDirectoryFallsBackToTokenizerModel) {
  const std::string dir = anvil::testing::scratch_dir("sentencepiece_model_hf");
  fs::copy_file(model("bpe_llama"), dir + "/tokenizer.model");
  auto vocab = load_hf_tokenizer(dir);
  ASSERT_TRUE(vocab) << vocab.status().message();
  EXPECT_EQ(vocab->model, "llama");
  EXPECT_EQ(vocab->size(), 600);
  EXPECT_TRUE(vocab->add_bos);

  write_file(dir + "/tokenizer_config.json",
             R"({"add_bos_token": false, "add_eos_token": true, "eos_token": "</s>", "chat_template": "{{ x }}"})");
  vocab = load_hf_tokenizer(dir);
  ASSERT_TRUE(vocab) << vocab.status().message();
  EXPECT_FALSE(vocab->add_bos);
  EXPECT_TRUE(vocab->add_eos);
  EXPECT_EQ(vocab->chat_template, "{{ x }}");

  write_file(dir + "/tokenizer.model", "garbage");
  vocab = load_hf_tokenizer(dir);
  ASSERT_FALSE(vocab);
  EXPECT_NE(vocab.status().message().find("tokenizer.model"), std::string::npos) << vocab.status().message();
}

TEST_F(SentencePieceModel, RefusesPrecompiledNormalization) {
  const std::string prefix = *dir_ + "/nfkc";
  const std::string train = "spm_train --input=" + quote(*dir_ + "/train.txt") + " --model_prefix=" + quote(prefix) +
                            " --model_type=bpe --vocab_size=300 --num_threads=2 --minloglevel=2 >/dev/null 2>&1";
  ASSERT_EQ(std::system(train.c_str()), 0);
  auto vocab = load_sentencepiece_model(prefix + ".model");
  ASSERT_FALSE(vocab);
  EXPECT_NE(vocab.status().message().find("nmt_nfkc"), std::string::npos) << vocab.status().message();
}

TEST_F(SentencePieceModel, DamagedFilesGiveErrorsNotCrashes) {
  const std::string bytes = read_file(model("bpe_llama"));
  ASSERT_GT(bytes.size(), 1000u);
  const std::string source = "damaged.model";
  // Cutting a file short inside a field is an error; a cut between pieces may leave a valid,
  // shorter model, which must then load (or be refused) cleanly.
  for (size_t size = 0; size < bytes.size(); size += size < 64 ? 1 : 37) {
    auto vocab = parse_sentencepiece_model(std::string_view(bytes).substr(0, size), source);
    if (!vocab) EXPECT_EQ(vocab.status().message().rfind(source + ": ", 0), 0u) << vocab.status().message();
    else (void)Tokenizer::create(*vocab);
  }
  auto cut = parse_sentencepiece_model(std::string_view(bytes).substr(0, bytes.size() - 3), source);
  ASSERT_FALSE(cut);
  EXPECT_NE(cut.status().message().find("byte"), std::string::npos) << cut.status().message();

  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string damaged = bytes;
    for (int k = 0; k < 1 + trial % 8; ++k) damaged[rng() % damaged.size()] = static_cast<char>(rng());
    auto vocab = parse_sentencepiece_model(damaged, source);
    if (!vocab) {
      EXPECT_EQ(vocab.status().message().rfind(source + ": ", 0), 0u) << vocab.status().message();
      continue;
    }
    auto tokenizer = Tokenizer::create(*vocab);
    if (tokenizer) (void)(*tokenizer)->encode("Some text, \xE6\x97\xA5 and \xFF bytes.", true, true);
  }

  auto missing = load_sentencepiece_model(*dir_ + "/no-such.model");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("no-such.model"), std::string::npos);
  write_file(*dir_ + "/empty.model", "");
  auto empty = load_sentencepiece_model(*dir_ + "/empty.model");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);
}

// Hand-built ModelProto bytes for settings spm_train does not produce on demand.
struct Proto {
  std::string bytes;
  Proto& varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) bytes += static_cast<char>((v & 0x7F) | 0x80);
    bytes += static_cast<char>(v);
    return *this;
  }
  Proto& tag(uint32_t field, uint32_t wire) { return varint((uint64_t{field} << 3) | wire); }
  Proto& integer(uint32_t field, int64_t v) { return tag(field, 0).varint(static_cast<uint64_t>(v)); }
  Proto& text(uint32_t field, const std::string& s) {
    tag(field, 2).varint(s.size());
    bytes += s;
    return *this;
  }
  Proto& real(uint32_t field, float f) {
    tag(field, 5);
    char raw[4];
    std::memcpy(raw, &f, 4);
    bytes.append(raw, 4);
    return *this;
  }
  Proto& message(uint32_t field, const Proto& m) { return text(field, m.bytes); }
};

Proto piece(const std::string& text, float score, int type = 1) {
  Proto p;
  p.text(1, text).real(2, score);
  if (type != 1) p.integer(3, type);
  return p;
}

Proto small_model(int model_type) {
  Proto m;
  m.message(1, piece("<pad>", 0, 3)).message(1, piece("<unk>", 0, 2)).message(1, piece("<s>", 0, 3));
  m.message(1, piece("</s>", 0, 3)).message(1, piece("<sep>", 0, 4)).message(1, piece("\xE2\x96\x81" "a", -1));
  m.message(1, piece("a", -2)).message(1, piece("b", -3)).message(1, piece("old", 0, 5)).message(1, piece("<0x41>", 0, 6));
  Proto trainer;
  trainer.integer(3, model_type).integer(40, 1).integer(41, 2).integer(42, 3).integer(43, 0);
  m.message(2, trainer);
  Proto normalizer;
  normalizer.text(1, "identity").integer(3, 0).integer(4, 0);
  m.message(3, normalizer);
  return m;
}

TEST(SentencePieceProto, MapsPieceTypesAndTrainerSpec) {
  auto vocab = parse_sentencepiece_model(small_model(2).bytes, "small.model");
  ASSERT_TRUE(vocab) << vocab.status().message();
  const Vocab& v = *vocab;
  EXPECT_EQ(v.model, "llama");
  const std::vector<TokenType> types = {TokenType::Control, TokenType::Unknown, TokenType::Control, TokenType::Control,
                                        TokenType::UserDefined, TokenType::Normal, TokenType::Normal, TokenType::Normal,
                                        TokenType::Unused, TokenType::Byte};
  ASSERT_EQ(v.size(), static_cast<int64_t>(types.size()));
  for (size_t i = 0; i < types.size(); ++i) EXPECT_EQ(v.type(static_cast<int32_t>(i)), types[i]) << i;
  EXPECT_EQ(v.tokens[5], "\xE2\x96\x81" "a");
  EXPECT_FLOAT_EQ(v.scores[7], -3.0f);
  EXPECT_EQ(v.pad_id, 0);
  EXPECT_EQ(v.unk_id, 1);
  EXPECT_EQ(v.bos_id, 2);
  EXPECT_EQ(v.eos_id, 3);
  EXPECT_FALSE(v.add_space_prefix);
  EXPECT_FALSE(v.remove_extra_whitespaces);
  auto tokenizer = Tokenizer::create(v);
  ASSERT_TRUE(tokenizer) << tokenizer.status().message();
  auto ids = (*tokenizer)->encode("ab<sep>a c", false);
  ASSERT_TRUE(ids);
  // No space prefix; the user-defined piece always matches; "▁" and "c" have no piece and, with
  // <0x41> the only byte piece, become <unk>.
  EXPECT_EQ(*ids, (std::vector<int32_t>{6, 7, 4, 6, 1, 1}));
}

TEST(SentencePieceProto, UnigramPrefersHighestTotalScore) {
  Proto m;
  m.message(1, piece("<unk>", 0, 2));
  m.message(1, piece("a", -1)).message(1, piece("b", -1)).message(1, piece("ab", -3)).message(1, piece("abc", -2.5));
  m.message(1, piece("c", -1)).message(1, piece("bc", -0.5));
  Proto trainer;
  trainer.integer(3, 1).integer(40, 0).integer(41, -1).integer(42, -1);
  m.message(2, trainer);
  Proto normalizer;
  normalizer.integer(3, 0);
  m.message(3, normalizer);
  auto vocab = parse_sentencepiece_model(m.bytes, "unigram.model");
  ASSERT_TRUE(vocab) << vocab.status().message();
  EXPECT_EQ(vocab->model, "t5");
  EXPECT_EQ(vocab->bos_id, -1);
  auto tokenizer = Tokenizer::create(*vocab);
  ASSERT_TRUE(tokenizer) << tokenizer.status().message();
  // a+bc = -1.5 beats abc = -2.5 and a+b+c = -3 and ab+c = -4.
  auto ids = (*tokenizer)->encode("abc", false);
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 6}));
  // "x" has no piece and there are no byte pieces: <unk>, scored below every piece.
  ids = (*tokenizer)->encode("axb", false);
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 0, 2}));
}

TEST(SentencePieceProto, UnigramNearTiesFallAsInSentencePiece) {
  // After "x" the path score is -1000, where a float step is 6e-5: "a"+"b" sums to -1000.99998,
  // which rounds to the same float as "ab"'s -1001. SentencePiece compares the unrounded double
  // sum with the stored float, so "a"+"b" wins (spm_encode gives "1 2 3" for this model); a pure
  // float comparison would keep "ab".
  Proto m;
  m.message(1, piece("<unk>", 0, 2)).message(1, piece("x", -1000)).message(1, piece("a", -0.5f));
  m.message(1, piece("b", -0.5f + 2e-5f)).message(1, piece("ab", -1.0f));
  m.message(2, Proto().integer(3, 1).integer(40, 0).integer(41, -1).integer(42, -1));
  m.message(3, Proto().text(1, "identity").integer(3, 0).integer(4, 0));
  auto vocab = parse_sentencepiece_model(m.bytes, "tie.model");
  ASSERT_TRUE(vocab) << vocab.status().message();
  auto tokenizer = Tokenizer::create(*vocab);
  ASSERT_TRUE(tokenizer) << tokenizer.status().message();
  auto ids = (*tokenizer)->encode("xab", false);
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 2, 3}));
}

TEST(SentencePieceProto, RefusesWhatAnvilCannotEncode) {
  auto expect_error = [](const std::string& bytes, const std::string& needle) {
    auto vocab = parse_sentencepiece_model(bytes, "bad.model");
    ASSERT_FALSE(vocab) << needle;
    EXPECT_EQ(vocab.status().message().rfind("bad.model: ", 0), 0u) << vocab.status().message();
    EXPECT_NE(vocab.status().message().find(needle), std::string::npos) << vocab.status().message();
  };
  expect_error(small_model(3).bytes, "WORD");
  expect_error(small_model(4).bytes, "CHAR");
  expect_error(small_model(9).bytes, "unknown model type 9");
  expect_error(Proto().message(1, piece("a", 0, 7)).bytes, "unknown type 7");
  expect_error(Proto().message(1, piece("", 0)).bytes, "piece 0 is empty");
  expect_error(Proto().message(1, piece("<0xZZ>", 0, 6)).bytes, "<0xXX>");
  expect_error(Proto().message(1, piece("a", 0)).message(2, Proto().integer(41, 5)).bytes, "bos_id is 5");
  expect_error(Proto().message(1, piece("a", 0)).message(2, Proto().integer(24, 1)).bytes, "treat_whitespace_as_suffix");
  expect_error(Proto().message(1, piece("a", 0)).message(3, Proto().integer(5, 0)).bytes, "escape whitespace");
  expect_error(Proto().message(3, Proto().text(1, "identity")).bytes, "no pieces");
  expect_error(Proto().text(1, "x").bytes, "truncated varint (field 15)");  // "x" read as a piece message
  expect_error(Proto().tag(1, 0).bytes, "truncated varint");
  expect_error(Proto().tag(1, 3).bytes, "wire type 3");
  expect_error(Proto().tag(1, 2).varint(1000).bytes + "abc", "1000 bytes");
  expect_error(std::string(12, '\xFF'), "field key");
  expect_error(Proto().tag(1, 2).varint(2).integer(2, 5).bytes, "wire type");  // score as a varint
}

}  // namespace
}  // namespace anvil
