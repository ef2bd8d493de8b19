// Causal (optionally sliding-window) GQA attention over a KV cache (contiguous or paged through a
// block table; f32, f16 or bf16 rows, or fp8 E4M3 / int8 codes with a scale per row and KV head): flash-style kernels for prefill and split-KV decode, plus
// the plain scalar reference.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace anvil {

// n_tokens consecutive query tokens at positions first_position.. against cache rows
// [0, first_position + n_tokens): the token at position p sees rows [0, p], or (p - window, p]
// when window > 0. Query head h reads KV head h / (n_heads / n_kv_heads).
struct AttentionProblem {
  const float* q;      // token t, head h at q + t * q_stride + h * head_dim
  int64_t q_stride;
  // Sequence position j, KV head k at keys + kv_offset(j, k) elements of kv_dtype, where
  //   kv_offset(j, k) = block(j) * block_stride + offset(j) * kv_stride + k * kv_head_stride
  // with block(j), offset(j) from the block table below (no table: block 0, offset j). Row-major
  // rows (the default: kv_head_stride 0 means head_dim, block_stride 0 means block_size x
  // kv_stride) put a row's KV heads side by side; head-major blocks (kv_stride = head_dim,
  // kv_head_stride = block_size x head_dim, block_stride = block_size x n_kv_heads x head_dim,
  // as the engine's block pool keeps them) give each KV head one run of block_size rows per block,
  // which decode streams instead of reading head_dim elements every n_kv_heads x head_dim.
  const void* keys;
  const void* values;
  int64_t kv_stride;
  int64_t kv_head_stride = 0;
  int64_t block_stride = 0;
  DType kv_dtype = DType::F32;  // F32, F16, BF16, F8_E4M3 or I8
  // F8_E4M3 / I8 only: cache row j, KV head k holds codes x key_scales[row(j) * n_kv_heads + k]
  // (values alike with value_scales). Null for the other dtypes.
  const float* key_scales = nullptr;
  const float* value_scales = nullptr;
  // Paged cache: sequence position j lives in cache row row(j) = block_table[j / block_size] *
  // block_size + j % block_size (block(j) = block_table[j / block_size], offset(j) = j %
  // block_size). nullptr: a contiguous cache, row(j) = j.
  const int32_t* block_table = nullptr;
  int64_t block_size = 0;
  float* out;          // same layout as q, with out_stride
  int64_t out_stride;
  int64_t n_tokens, n_heads, n_kv_heads, head_dim;
  int64_t first_position;
  int64_t window = 0;
  float scale;
  // Key-range splits per (KV head, query block); 0 picks them: split-KV only when there are
  // few query blocks, a long context (>= 512 keys) and fewer work items than 2x the threads.
  int64_t kv_splits = 0;
};

// Flash-style attention on the active ISA (scalar / AVX2 / AVX-512): keys in tiles of 32 with an
// online softmax, every query head of a GQA group sharing each K/V tile, threads over
// (KV head x query block x key split) and a log-sum-exp merge of the splits.
void attention(ThreadPool& pool, const AttentionProblem& p);

// Several independent problems (the sequences of one batched step) in one dispatch over the
// pool: their work items are interleaved, so many short decodes keep every thread busy.
void attention_batch(ThreadPool& pool, std::span<const AttentionProblem> problems);

// The plain algorithm (scores, softmax, weighted sum per query and head), single-threaded.
void attention_reference(const AttentionProblem& p);

// q: head_dim floats. keys/values: row j of the cache starts at keys + j * row_stride (the
// caller offsets the pointers to its KV head). Attends to cache rows [first, last] inclusive.
// scores: scratch of at least last - first + 1 floats. out: head_dim floats.
void attend_one_head(const float* q, const float* keys, const float* values, int64_t row_stride,
                     int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out);

}  // namespace anvil
