// The activations a weight's matmul multiplies: x as given, quantized as the weight's
// QuantScales::activations ask (FP8 W8A8), or gathered into the order of its stored columns
// (QuantScales::input_order, GPTQ act-order). Every matmul path calls this first, so they agree.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace anvil {

// x: (n_tokens, weight.cols()) floats. Returns x itself when the weight takes its activations
// as they are (neither ActivationQuant::DynamicPerTokenFp8 nor an input_order); otherwise the
// calling thread's buffer holding quantize_dequantize_rows_e4m3(x) (quant/fp8_activations.h) or
// x[t][input_order[j]] at [t][j], valid until this thread's next call. Large inputs are split over
// the pool's threads by token. The weight's columns as stored then multiply the result
// (weight_row_to_f32_as_stored, compute/cpu/matmul.h).
const float* matmul_input(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens);

// The same rounding for a GEMM that takes E4M3 values exactly (bf16 holds every one) and scales
// its results by token_scales[t] itself: quantize_rows_e4m3(x) into the calling thread's buffers
// (separate from matmul_input's), valid until this thread's next call.
struct E4M3Rows {
  const float* values;        // (n_tokens, k) unscaled E4M3 values
  const float* token_scales;  // (n_tokens)
};
E4M3Rows matmul_input_e4m3_rows(ThreadPool& pool, const float* x, int64_t n_tokens, int64_t k);

}  // namespace anvil
