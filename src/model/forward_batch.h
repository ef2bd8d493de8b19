// ForwardBatch: one step of the model over several sequences at once. Every sequence contributes a
// chunk of consecutive tokens (a whole prompt, a prefill chunk or one decode token); all chunks'
// tokens go through the matrix multiplications together, attention runs per sequence through
// its block table.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace anvil {

struct SequenceChunk {
  int64_t first_position = 0;            // position of the chunk's first token; earlier rows are cached
  int64_t n_tokens = 0;
  std::span<const int32_t> block_table;  // covers positions [0, first_position + n_tokens)
  bool want_logits = false;              // logits of the chunk's last token
  bool all_logits = false;               // logits of every token of the chunk (perplexity, prompt logprobs)

  int64_t logit_rows() const { return all_logits ? n_tokens : (want_logits ? 1 : 0); }
};

struct ForwardBatch {
  std::vector<int32_t> tokens;        // the chunks' tokens, chunk after chunk
  std::vector<SequenceChunk> chunks;

  // Rows of the logits output: chunk after chunk, each chunk's logit_rows().
  int64_t logit_rows() const {
    int64_t rows = 0;
    for (const SequenceChunk& c : chunks) rows += c.logit_rows();
    return rows;
  }
};

}  // namespace anvil
