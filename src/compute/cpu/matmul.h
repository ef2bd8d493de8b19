// matmul: y = x · Wᵀ for a weight of any loadable dtype (the linear layers of every model).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace anvil {

// x: (n_tokens, in) floats, weight: (out, in) of any DType, y: (n_tokens, out) floats.
// Each weight row is read (and dequantized) once per call, whatever n_tokens is, so decode
// streams the weights exactly once. The CPU-kernels work replaces the inner loops with
// ISA-specific providers behind this same signature.
void matmul(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y);

// Dequantizes one row of a weight into dst (cols floats).
void weight_row_to_f32(const Tensor& weight, int64_t row, float* dst);

}  // namespace anvil
