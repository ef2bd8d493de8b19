// The "onednn_int8" GEMM provider: W8A8 prefill as an integer GEMM (oneDNN s8 x s8 -> s32).
#pragma once

#include <cstdint>

#include "anvil/status.h"
#include "compute/cpu/gemm_provider.h"
#include "core/thread_pool.h"

namespace anvil {

// I8 weights (W8A8) only: x is quantized per token by quantize_int8_per_token (quant/int8_w8a8.h,
// the quantizer the GEMV kernels use), oneDNN multiplies the codes, shifted to u8, by the weight
// codes as they lie in memory (the (n, k) rows are B = Wᵀ in format "ba": no conversion, no copy
// of W) into int32 sums that -128 x the row sums of W turn into the exact s8 x s8 dots, and
// y[t][r] = float(dot) * (w_scale[r] * x_scale[t]) — the GEMV kernels' arithmetic to the bit, so
// prefill and decode give identical rows for the same tokens.
// Each pool thread takes a contiguous share of blocks of output rows and runs a single-threaded
// matmul per block (no OpenMP team beside Anvil's pool); primitives are cached per shape.
// Supported where oneDNN's int8 kernels are exact: AVX512-VNNI (every AMX-INT8 CPU has it; without
// VNNI, oneDNN multiplies with vpmaddubsw, whose int16 pair sums saturate).
GemmProvider* onednn_int8_gemm_provider();

// The integer part alone, for tests: acc[t*n + r] = sum_i x_codes[t*k + i] * w_codes[r*k + i]
// (x_codes: (m, k), w_codes: (n, k), both row-major int8; acc: (m, n) int32; k <= kMaxI8Cols, so
// the dot fits in int32). Fails where onednn_int8_gemm_provider() does not support the shape.
Status onednn_int8_matmul_s32(ThreadPool& pool, const int8_t* x_codes, int64_t m, const int8_t* w_codes,
                              int64_t n, int64_t k, int32_t* acc);

// Rows of W per single-threaded matmul (default 256; fewer when a thread's share is smaller).
// For experiments; not thread-safe against run().
void set_onednn_int8_gemm_block_rows(int64_t rows);

}  // namespace anvil
