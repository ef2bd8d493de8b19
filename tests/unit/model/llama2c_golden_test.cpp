// Golden: the real stories260K model (llama2.c format) greedy-decodes the published ids.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/generate.h"
#include "formats/llama2c.h"
#include "model/decoder_model.h"
#include "test_paths.h"

namespace anvil {
namespace {

const std::vector<int32_t> kStories260kGreedy = {461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435,
                                                 299, 362, 409, 283, 264, 283, 452, 288, 13,  431, 431,
                                                 431, 431, 431, 431, 431, 431, 431, 431, 431, 431};

TEST(Llama2cGolden, Stories260kGreedyFromBos) {
  Result<Checkpoint> checkpoint = load_llama2c_checkpoint(testing::shared_data("models/stories260K.bin"));
  ASSERT_TRUE(checkpoint) << checkpoint.status().message();
  EXPECT_EQ(checkpoint->config.dim, 64);
  EXPECT_EQ(checkpoint->config.n_kv_heads, 4);
  EXPECT_TRUE(checkpoint->config.tied_embeddings);
  auto model = DecoderModel::create(std::make_shared<const Checkpoint>(std::move(checkpoint).value()));
  ASSERT_TRUE(model) << model.status().message();
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    GenerationRequest request;
    request.prompt = {1};
    request.max_new_tokens = 32;
    request.sampling.temperature = 0.0f;
    Result<GenerationResult> result = generate(**model, pool, nullptr, request, {});
    ASSERT_TRUE(result) << result.status().message();
    EXPECT_EQ(result->tokens, kStories260kGreedy) << "threads=" << threads;
  }
}

TEST(Llama2cGolden, TruncatedOrPaddedFilesAreRejected) {
  const std::string source = testing::shared_data("models/stories260K.bin");
  std::ifstream in(source, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string dir = testing::scratch_dir("llama2c_bad");
  for (size_t size : {size_t{0}, size_t{10}, size_t{28}, size_t{1000}, bytes.size() - 1, bytes.size() + 4}) {
    const std::string path = dir + "/cut.bin";
    std::ofstream out(path, std::ios::binary);
    std::string data = bytes.substr(0, std::min(size, bytes.size()));
    data.resize(size, '\0');
    out << data;
    out.close();
    Result<Checkpoint> checkpoint = load_llama2c_checkpoint(path);
    ASSERT_FALSE(checkpoint) << "size " << size;
    EXPECT_NE(checkpoint.status().message().find(path), std::string::npos) << checkpoint.status().message();
  }
}

}  // namespace
}  // namespace anvil
