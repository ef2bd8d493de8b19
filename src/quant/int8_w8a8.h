// INT8 W8A8: per-channel symmetric int8 weights and per-token dynamic int8 activations (the
// vLLM / llm-compressor "W8A8" int8 scheme without SmoothQuant).
#pragma once

#include <cstdint>
#include <string>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "quant/quantized_matrix.h"

namespace anvil {

// Weights: scale = absmax / 127 per row, code = round-half-to-even(w / scale) in [-127, 127]
// (-128 is never produced, so codes negate safely; loaders accept it). |w - code * scale| <=
// scale / 2. All-zero rows get scale 0. (llm-compressor divides by 127.5 and clamps to
// [-128, 127]; both dequantize by the same code * scale.)
Result<QuantizedMatrix> quantize_int8_per_channel(const std::string& what, const float* w, int64_t rows,
                                                  int64_t cols, ThreadPool& pool);

// Activations, at run time: per token t, scale[t] = amax / 127 and codes[t*k + i] =
// round-half-to-even(x * (1 / scale)) clamped to [-127, 127] (all-zero tokens: scale 0, codes
// 0). The same arithmetic as the GGML-block activation quantizer (compute/cpu/gemv.h), so
// SIMD versions reproduce it bit for bit.
// Uses AVX-512 when active_isa() allows; quantize_int8_per_token_scalar is the reference.
void quantize_int8_per_token(const float* x, int64_t n_tokens, int64_t k, int8_t* codes, float* scales);
void quantize_int8_per_token_scalar(const float* x, int64_t n_tokens, int64_t k, int8_t* codes, float* scales);

}  // namespace anvil
