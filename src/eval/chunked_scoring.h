// Chunked scoring, llama.cpp's perplexity layout: a token stream cut into chunks of n_ctx tokens,
// each run as a fresh sequence that starts with BOS, with only the second half of each chunk scored.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "model/decoder_model.h"

namespace anvil {

// One chunk of n_ctx tokens (n = n_ctx, first = n / 2):
//
//   position   0     1  ...  first-1 | first ... n-2 | n-1
//   token      BOS   t1 ...          |               |
//   logits     (context only)        | scored: row p predicts the token at p+1
//
// The first token of every chunk is replaced by BOS when the model adds one, so every chunk reads
// like the start of a document; the logits of positions first .. n-2 score the tokens first+1 ..
// n-1 (n - 1 - first of them per chunk: 255 at n_ctx 512). Tokens after the last whole chunk
// are not used.
struct ChunkPlan {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  int64_t first = 0;  // first scored logit position: n_ctx / 2

  int64_t scored_per_chunk() const { return n_ctx - 1 - first; }
  int64_t scored_tokens() const { return n_chunks * scored_per_chunk(); }
};

// Plans the chunks of a stream of n_tokens. As llama.cpp does, the stream must hold at least
// 2 * n_ctx tokens; n_chunks = n_tokens / n_ctx, limited to max_chunks when max_chunks > 0.
Result<ChunkPlan> plan_chunks(int64_t n_tokens, int64_t n_ctx, int64_t max_chunks);

// The ids every chunk runs, concatenated (n_chunks * n_ctx): the stream's slices with each
// chunk's first id replaced by bos_id (left as is when bos_id < 0).
std::vector<int32_t> chunk_tokens(std::span<const int32_t> tokens, const ChunkPlan& plan, int32_t bos_id);

// Runs one chunk as a fresh sequence and turns the logits of its scored positions into
// log-probabilities. One scorer serves every chunk: the KV cache and logits buffer are reused.
class ChunkScorer {
 public:
  // Fails when n_ctx exceeds the model's context length or leaves nothing to score.
  static Result<std::unique_ptr<ChunkScorer>> create(const DecoderModel& model, int64_t n_ctx);

  // `chunk`: n_ctx ids as evaluated (BOS already in place). Returns scored_per_chunk rows of
  // vocab_size log-probs (row r is position first + r, predicting chunk[first + r + 1]), valid
  // until the next call.
  Result<std::span<const float>> score(std::span<const int32_t> chunk, ThreadPool& pool);

  const ChunkPlan& shape() const { return shape_; }  // n_ctx and first (n_chunks unused)
  int64_t vocab_size() const { return vocab_size_; }

 private:
  ChunkScorer(const DecoderModel& model, int64_t n_ctx);

  const DecoderModel& model_;
  ChunkPlan shape_;
  int64_t vocab_size_;
  SequenceKvCache cache_;
  std::vector<float> logits_;  // (n_ctx, vocab); the scored rows become log-probs in place
};

// Progress of a chunked evaluation, reported after each chunk.
struct ChunkProgress {
  int64_t chunks_done = 0;
  int64_t n_chunks = 0;
  double ppl = 0.0;          // running estimate over the chunks so far
  double ppl_stderr = 0.0;
  double kld_mean = -1.0;    // running mean KL divergence; < 0 outside KL mode
  double seconds = 0.0;      // since the evaluation started
};
using ChunkProgressCallback = std::function<void(const ChunkProgress&)>;

}  // namespace anvil
