// matmul: y = x · Wᵀ for a weight of any loadable dtype (the linear layers of every model).
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"
#include "core/thread_pool.h"

namespace anvil {

// x: (n_tokens, in) floats, weight: (out, in) of any DType, y: (n_tokens, out) floats.
// FP8 W8A8 weights (F8_E4M3 with QuantScales::activations DynamicPerTokenFp8) multiply x rounded
// to E4M3 per token (compute/cpu/matmul_input.h): every path and GEMM provider does that first.
// Picks a GEMM provider (compute/cpu/gemm_provider.h): decode-sized calls (few tokens) run the
// bandwidth-bound GEMV kernels, prefill-sized calls the compute-bound oneDNN provider.
// ANVIL_GEMM=<provider name> forces one provider for every call (for tests and comparisons).
void matmul(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y);

// One weight and its output, for matmul_shared_input.
struct MatmulOutput {
  const Tensor* weight;  // (out, in)
  float* y;              // (n_tokens, out)
};
// Several weights multiplying the same x (q/k/v, gate/up). Decode-sized calls with one dtype
// run as one GEMV dispatch over all their rows with the activations prepared once; otherwise
// each weight is a matmul() of its own. Results equal separate matmul() calls exactly.
void matmul_shared_input(ThreadPool& pool, std::span<const MatmulOutput> outputs, const float* x, int64_t n_tokens);

// Calls with at least this many tokens go to the prefill provider (until the GEMM tuner decides).
constexpr int64_t kPrefillGemmMinTokens = 16;
// Quantized weights stay on the int8 GEMV kernels longer: oneDNN dequantizes them to bf16 on every
// call, and batched decode (tens of rows) is faster on VNNI int8 dots over weights read once
// (`anvil bench kernels --kernels gemm --dtypes q4_0,q8_0 --tokens 32,64,128 --providers gemv,onednn`:
// gemv 0.53-0.86x oneDNN's time at 32-64 tokens, even at 128, 2-core EPYC Zen 5, 2026-11-22).
constexpr int64_t kQuantizedGemmMinTokens = 96;
// I8 (W8A8) weights go to the int8 GEMM ("onednn_int8": the same int8 activations and exact int32
// sums as the GEMV kernels, so the switch changes no number) from this many tokens where the CPU
// runs it (AVX512-VNNI); elsewhere they follow kQuantizedGemmMinTokens. Summed over a Llama-3.2-1B
// layer's matrices the VNNI GEMV is ~12% faster at 16 tokens and the GEMM 5-8% faster at 32
// (`anvil bench kernels --kernels gemm --dtypes i8 --tokens 16,32,48,64 --providers
// gemv,onednn_int8`, 2-vCPU EPYC Zen 5, 2026-12-06; docs/PERFORMANCE.md).
constexpr int64_t kI8GemmMinTokens = 32;

// The GEMV kernels (compute/cpu/gemv.h) split over threads by output rows: each weight byte is
// read once per call. Quantized weights multiply int8-quantized activations, as in llama.cpp;
// W8A16 / W4A16 weights (F8_E4M3, I4) bf16-rounded ones (gemv.h), as their prefill in oneDNN's
// bf16 GEMM does.
void matmul_gemv(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y);

// The plain reference: dequantize each weight row to float and take f32 dot products with the
// activations (as given, or rounded to E4M3 per token for FP8 W8A8 weights, or in a GPTQ
// act-order weight's column order: matmul_input, as on every path).
// Slow; the baseline every fast path is tested against.
void matmul_reference(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y);

// Dequantizes one row of a weight into dst (cols floats), applying the QuantScales of the scaled
// types (F8_E4M3, I8, I4), in input order: dst[c] multiplies x[c]. Every reader of weight values
// goes through here (embedding lookups, dtype conversion and quantization).
void weight_row_to_f32(const Tensor& weight, int64_t row, float* dst);
// The same values in the order the columns are stored, which differs only for a weight with a
// QuantScales::input_order (GPTQ act-order): dst[j] multiplies matmul_input's x[j] (the matmul
// paths that dequantize rows: matmul_reference, oneDNN's conversion).
void weight_row_to_f32_as_stored(const Tensor& weight, int64_t row, float* dst);

}  // namespace anvil
