// KvStoreView: where a forward pass reads and writes keys and values. Per layer, the cache is an
// array of blocks of block_size rows of kv_dim elements (row by row, or KV head by KV head:
// head_major below); a sequence reaches its rows through a block table. The single-sequence cache is one block as long as its capacity; the batching
// engine's block pool has many small ones.
//
// The 1-byte dtypes (F8_E4M3, I8) carry one f32 scale per (cache row, KV head) for keys and one
// for values, in arrays beside the codes: element = code x scale. Why so fine rather than vLLM's
// one scale per tensor: a per-tensor scale needs calibration data (or a range guessed ahead),
// while keys have outlier channels and tokens whose range varies by an order of magnitude. A
// scale fixed when the row is written needs no calibration, never changes what a stored row
// means (prefix-cached blocks stay valid, a preempted request recomputes the same rows, a
// sequence's rows do not depend on the batch it ran in), and costs 4 bytes per head_dim codes:
// 3% of the row at head_dim 128, 6% at 64. (llama.cpp's q8_0 cache is finer still: a scale per
// 32 values.)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"

namespace anvil {

struct KvStoreView {
  DType dtype = DType::F32;  // F32, F16, BF16, F8_E4M3 or I8 (is_kv_cache_dtype)
  int64_t block_size = 0;    // rows per block
  int64_t kv_dim = 0;        // elements per row: n_kv_heads x head_dim
  int64_t n_kv_heads = 0;    // scales per row (F8_E4M3, I8)
  int64_t n_blocks = 0;
  // Element order within a block: false, row by row (row r's KV head k at r x kv_dim + k x
  // head_dim); true, KV head by KV head (block b's row r, head k at (b x block_size x kv_dim) +
  // k x block_size x head_dim + r x head_dim). Head-major blocks let decode attention stream each
  // KV head's keys and values (block_size rows at a time) where row-major rows make it read
  // head_dim elements out of every kv_dim, which ran at a fraction of the memory bandwidth.
  bool head_major = false;
  std::vector<void*> keys;    // per layer: row 0 of block 0
  std::vector<void*> values;
  // F8_E4M3 / I8 only (empty otherwise), per layer: cache row r, KV head k scaled by
  // key_scales[layer][r * n_kv_heads + k] (value_scales alike).
  std::vector<float*> key_scales;
  std::vector<float*> value_scales;
};

// The dtypes a KV store holds: F32, F16, BF16, F8_E4M3 and I8.
bool is_kv_cache_dtype(DType dtype);
// F8_E4M3 and I8: codes plus a scale per (row, KV head).
bool kv_dtype_has_scales(DType dtype);
// --kv-dtype spellings, any case: f32, f16, bf16, fp8 (or f8_e4m3), int8 (or i8).
std::optional<DType> kv_cache_dtype_from_name(const std::string& name);
// A --kv-dtype argument: those spellings plus "auto", f32 when the model's layer matrices are f32
// (as vLLM's auto follows the model dtype), f16 otherwise (llama.cpp's default); `f32_weights`
// says which the model has. An unknown name is an error that names the choices.
Result<DType> kv_cache_dtype_for(const std::string& name, bool f32_weights);
// The --kv-dtype spelling: "f32", "f16", "bf16", "fp8", "int8".
const char* kv_cache_dtype_name(DType dtype);
// Bytes of one cache row (K or V, one layer) of n_kv_heads x head_dim elements, scales included.
size_t kv_row_bytes(DType dtype, int64_t n_kv_heads, int64_t head_dim);

// Writes one f32 row (kv_dim values) into cache row `row` of a layer, converting to the dtype,
// in the view's element order (head_major); layer_scales: that layer's key_scales or value_scales
// entry (null for F32/F16/BF16).
void store_kv_row(const KvStoreView& kv, void* layer_base, float* layer_scales, int64_t row, const float* src);

// One row of a 1-byte dtype, per KV head (head_dim elements each): scale = absmax / 448
// (F8_E4M3) or absmax / 127 (I8), codes = src x (1 / scale) rounded to nearest even (E4M3
// saturating at ±448, int8 clamped to [-127, 127]). An all-zero head gets scale 0 and zero codes;
// a head holding a NaN gets a NaN scale, so that it reads back as NaN as a f16 row would.
// Dequantized, |x - code x scale| <= scale / 2 for I8; for F8_E4M3 it is <= 2^-4 x |x| where
// |x| / scale >= 2^-6 (a normal E4M3 value) and <= 2^-10 x scale below that. (So int8 is the
// finer of the two under a per-row scale: E4M3's step near the absmax is 32 / 448 of it.)
void quantize_kv_row(DType dtype, const float* src, int64_t n_kv_heads, int64_t head_dim, void* codes, float* scales);

}  // namespace anvil
