// llama.cpp's tokenizer vectors: every .inp string of every vocab-only GGUF in
// ../shared/data/tokenizer-vectors encodes (without BOS) to its .out line and decodes back.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "formats/gguf_checkpoint.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace anvil {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The .inp file is a sequence of "text\n__ggml_vocab_test__\n".
std::vector<std::string> read_inputs(const std::string& path) {
  const std::string content = read_file(path);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t start = 0;
  for (size_t at; (at = content.find(separator, start)) != std::string::npos; start = at + separator.size())
    texts.push_back(content.substr(start, at - start));
  return texts;
}

std::vector<std::vector<int32_t>> read_outputs(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::vector<int32_t>> all;
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<int32_t> ids;
    for (int32_t id; words >> id;) ids.push_back(id);
    all.push_back(std::move(ids));
  }
  return all;
}

std::vector<std::string> vocab_files() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(testing::shared_data("tokenizer-vectors")))
    if (entry.path().extension() == ".gguf") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(TokenizerVectors, EveryVocabularyMatchesLlamaCppVectors) {
  const std::vector<std::string> files = vocab_files();
  ASSERT_GE(files.size(), 4u);
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    auto vocab = load_gguf_vocab(file);
    ASSERT_TRUE(vocab) << vocab.status().message();
    auto tokenizer = Tokenizer::create(*vocab);
    ASSERT_TRUE(tokenizer) << tokenizer.status().message();
    const auto inputs = read_inputs(file + ".inp");
    const auto outputs = read_outputs(file + ".out");
    ASSERT_EQ(inputs.size(), outputs.size());
    ASSERT_GT(inputs.size(), 10u);
    int failures = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto ids = (*tokenizer)->encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
      ASSERT_TRUE(ids) << ids.status().message();
      if (*ids != outputs[i]) {
        std::string got, want;
        for (int32_t id : *ids) got += " " + std::to_string(id);
        for (int32_t id : outputs[i]) want += " " + std::to_string(id);
        ADD_FAILURE() << "input " << i << " '" << inputs[i] << "'\n  got: " << got << "\n want: " << want;
        if (++failures > 5) break;
      }
      EXPECT_EQ((*tokenizer)->decode(*ids), inputs[i]) << "input " << i;
    }
  }
}

}  // namespace
}  // namespace anvil
