// Base log-probability file: f32/f16 round trips and clear errors for foreign, truncated and
// inconsistent files.
#include "eval/logprob_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/presets.h"
#include "test_paths.h"

namespace anvil {
namespace {

LogprobFileHeader small_header(DType dtype) {
  LogprobFileHeader h;
  h.dtype = dtype;
  h.vocab_size = 10;
  h.n_ctx = 8;  // 3 scored rows per chunk
  h.n_chunks = 2;
  h.vocab_fingerprint = 0xABCDEF;
  h.model = "dummy:tiny-llama:f32";
  return h;
}

std::vector<int32_t> small_tokens() {
  std::vector<int32_t> t(16);
  for (int i = 0; i < 16; ++i) t[i] = i % 10;
  return t;
}

std::vector<float> chunk_rows(int chunk) {
  std::vector<float> rows(3 * 10);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = -0.1f * static_cast<float>(i) - 0.37f * chunk - 1e-3f;
  rows[7] = -1e6f;  // a vanishing probability: f16 must keep it finite
  return rows;
}

std::string write_small(const std::string& path, DType dtype) {
  auto writer = LogprobFileWriter::create(path, small_header(dtype), small_tokens());
  EXPECT_TRUE(writer) << writer.status().message();
  EXPECT_TRUE((*writer)->write_chunk(chunk_rows(0)));
  EXPECT_TRUE((*writer)->write_chunk(chunk_rows(1)));
  EXPECT_TRUE((*writer)->close());
  return path;
}

TEST(KlBaseFile, F32RoundTripIsExact) {
  const std::string path = write_small(testing::scratch_dir("kl_base_file") + "/base.kld", DType::F32);
  auto reader = LogprobFileReader::open(path);
  ASSERT_TRUE(reader) << reader.status().message();
  const LogprobFileHeader& h = (*reader)->header();
  EXPECT_EQ(h.dtype, DType::F32);
  EXPECT_EQ(h.vocab_size, 10);
  EXPECT_EQ(h.n_ctx, 8);
  EXPECT_EQ(h.n_chunks, 2);
  EXPECT_EQ(h.vocab_fingerprint, 0xABCDEFu);
  EXPECT_EQ(h.model, "dummy:tiny-llama:f32");
  EXPECT_EQ(h.plan().first, 4);
  EXPECT_EQ((*reader)->tokens(), small_tokens());
  std::vector<float> rows;
  for (int c : {1, 0}) {  // any order
    ASSERT_TRUE((*reader)->read_chunk(c, rows));
    EXPECT_EQ(rows, chunk_rows(c)) << c;
  }
  EXPECT_FALSE((*reader)->read_chunk(2, rows));
  // 52 header bytes + 20 label bytes + 16 tokens + 2 chunks x 30 floats.
  EXPECT_EQ(std::filesystem::file_size(path), 44u + 20u + 16u * 4 + 2u * 30 * 4);
}

TEST(KlBaseFile, F16RoundTripIsWithinHalfPrecision) {
  const std::string path = write_small(testing::scratch_dir("kl_base_file_f16") + "/base.kld", DType::F16);
  auto reader = LogprobFileReader::open(path);
  ASSERT_TRUE(reader) << reader.status().message();
  EXPECT_EQ((*reader)->header().dtype, DType::F16);
  std::vector<float> rows;
  ASSERT_TRUE((*reader)->read_chunk(1, rows));
  const std::vector<float> want = chunk_rows(1);
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_TRUE(std::isfinite(rows[i])) << i;
    if (i != 7) {
      EXPECT_NEAR(rows[i], want[i], std::abs(want[i]) * 1e-3) << i;
    }
  }
  EXPECT_EQ(rows[7], -65504.0f);
}

TEST(KlBaseFile, ForeignTruncatedAndMissingFilesAreRejected) {
  const std::string dir = testing::scratch_dir("kl_base_file_errors");
  Result<std::unique_ptr<LogprobFileReader>> missing = LogprobFileReader::open(dir + "/missing.kld");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("missing.kld"), std::string::npos);

  const std::string foreign = dir + "/foreign.kld";
  std::ofstream(foreign) << "_logits_ this is llama.cpp's format, or any other file, but not ours";
  Result<std::unique_ptr<LogprobFileReader>> not_ours = LogprobFileReader::open(foreign);
  ASSERT_FALSE(not_ours);
  EXPECT_NE(not_ours.status().message().find("not an anvil base log-probability file"), std::string::npos);

  const std::string good = write_small(dir + "/good.kld", DType::F32);
  const uint64_t size = std::filesystem::file_size(good);
  const std::string truncated = dir + "/truncated.kld";
  std::filesystem::copy_file(good, truncated);
  std::filesystem::resize_file(truncated, size - 4);
  Result<std::unique_ptr<LogprobFileReader>> cut = LogprobFileReader::open(truncated);
  ASSERT_FALSE(cut);
  EXPECT_NE(cut.status().message().find("truncated"), std::string::npos) << cut.status().message();

  // A later format version is named, not misread.
  const std::string future = dir + "/future.kld";
  std::filesystem::copy_file(good, future);
  {
    std::fstream f(future, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    const uint32_t version = 2;
    f.write(reinterpret_cast<const char*>(&version), 4);
  }
  Result<std::unique_ptr<LogprobFileReader>> newer = LogprobFileReader::open(future);
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.status().message().find("version 2"), std::string::npos) << newer.status().message();

  // A token id outside the vocabulary is corruption.
  const std::string bad_token = dir + "/bad_token.kld";
  std::filesystem::copy_file(good, bad_token);
  {
    std::fstream f(bad_token, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(44 + 20);
    const int32_t id = 10;
    f.write(reinterpret_cast<const char*>(&id), 4);
  }
  Result<std::unique_ptr<LogprobFileReader>> corrupt = LogprobFileReader::open(bad_token);
  ASSERT_FALSE(corrupt);
  EXPECT_NE(corrupt.status().message().find("outside the vocabulary"), std::string::npos);
}

TEST(KlBaseFile, WriterChecksChunkCountAndSizes) {
  const std::string dir = testing::scratch_dir("kl_base_file_writer");
  auto writer = LogprobFileWriter::create(dir + "/short.kld", small_header(DType::F32), small_tokens());
  ASSERT_TRUE(writer);
  EXPECT_FALSE((*writer)->write_chunk(std::vector<float>(29)));  // not 3 x 10
  ASSERT_TRUE((*writer)->write_chunk(chunk_rows(0)));
  Status closed = (*writer)->close();
  ASSERT_FALSE(closed);
  EXPECT_NE(closed.message().find("only 1 of 2 chunks"), std::string::npos);

  EXPECT_FALSE(LogprobFileWriter::create(dir + "/x.kld", small_header(DType::F32), std::vector<int32_t>(15)));
  EXPECT_FALSE(LogprobFileWriter::create(dir + "/x.kld", small_header(DType::Q8_0), small_tokens()));
  EXPECT_FALSE(LogprobFileWriter::create(dir + "/no/such/dir/x.kld", small_header(DType::F32), small_tokens()));
}

TEST(KlBaseFile, VocabFingerprintTellsTokenizersApart) {
  EXPECT_EQ(vocab_fingerprint(Vocab{}), 0u);
  const Vocab a = synthetic_byte_vocab(512);
  Vocab b = a;
  EXPECT_EQ(vocab_fingerprint(a), vocab_fingerprint(b));
  EXPECT_NE(vocab_fingerprint(a), 0u);
  b.tokens[300] = b.tokens[300] + "x";
  EXPECT_NE(vocab_fingerprint(a), vocab_fingerprint(b));
  EXPECT_NE(vocab_fingerprint(synthetic_byte_vocab(512)), vocab_fingerprint(synthetic_byte_vocab(600)));
}

}  // namespace
}  // namespace anvil
