// The base log-probability file of KL-divergence runs: the tokens a base model scored and its
// log-softmax rows at every scored position, written one chunk at a time (format: docs/EVAL.md).
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "eval/chunked_scoring.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Layout (little-endian), version 1:
//   char[8] "ANVILLP1"; u32 version; u32 dtype (0 = f32, 1 = f16); u32 vocab_size; u32 n_ctx;
//   u32 n_chunks; u32 first (= n_ctx / 2); u64 vocab fingerprint; u32 label bytes L; L bytes of
//   label (the base --model); i32 tokens[n_chunks * n_ctx] as evaluated (BOS in place);
//   then per chunk (n_ctx - 1 - first) rows x vocab_size log-probs of dtype.
struct LogprobFileHeader {
  DType dtype = DType::F32;         // F32 (exact) or F16 (half the size)
  int64_t vocab_size = 0;
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  uint64_t vocab_fingerprint = 0;   // vocab_fingerprint() of the base model; 0: it had no vocabulary
  std::string model;                // what the base run was given as --model, for messages

  ChunkPlan plan() const;
  uint64_t chunk_bytes() const;     // bytes of one chunk's rows
};

// FNV-1a over the token pieces, so a file made with another tokenizer of the same size is caught.
// 0 for an empty vocabulary (a llama2.c checkpoint scored from token ids).
uint64_t vocab_fingerprint(const Vocab& vocab);

class LogprobFileWriter {
 public:
  // Writes the header and the evaluated tokens (header.n_chunks * header.n_ctx ids).
  static Result<std::unique_ptr<LogprobFileWriter>> create(const std::string& path, const LogprobFileHeader& header,
                                                           std::span<const int32_t> tokens);
  // Appends the next chunk's rows (scored_per_chunk * vocab_size log-probs).
  Status write_chunk(std::span<const float> rows);
  // Flushes and closes; fails when fewer chunks than the header promises were written.
  Status close();

 private:
  LogprobFileWriter(std::string path, LogprobFileHeader header) : path_(std::move(path)), header_(std::move(header)) {}

  std::string path_;
  LogprobFileHeader header_;
  std::ofstream out_;
  int64_t chunks_written_ = 0;
  std::vector<uint16_t> half_;  // f16 staging buffer
};

class LogprobFileReader {
 public:
  // Reads and checks the header and tokens; the size of the file must be exactly what they imply.
  static Result<std::unique_ptr<LogprobFileReader>> open(const std::string& path);

  const LogprobFileHeader& header() const { return header_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }  // n_chunks * n_ctx, as evaluated
  const std::string& path() const { return path_; }
  // Chunk `chunk`'s rows as floats (scored_per_chunk * vocab_size).
  Status read_chunk(int64_t chunk, std::vector<float>& rows);

 private:
  explicit LogprobFileReader(std::string path) : path_(std::move(path)) {}

  std::string path_;
  LogprobFileHeader header_;
  std::vector<int32_t> tokens_;
  std::ifstream in_;
  uint64_t rows_offset_ = 0;     // where chunk 0's rows start
  std::vector<uint16_t> half_;
};

}  // namespace anvil
