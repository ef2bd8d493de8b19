// Element-wise and reduction kernels on float rows (norms, activations, softmax, dot products).
#pragma once

#include <cstdint>

namespace anvil {

// Each kernel has a vector path selected at run time (GCC target clones: AVX-512, AVX2, SSE2;
// softmax and SwiGLU dispatch on active_isa() instead, so tests can force each level); the tests
// compare them with scalar references in tests/ops.
float dot_f32(const float* a, const float* b, int64_t n);
void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps);
void softmax_inplace(float* x, int64_t n);
void silu_mul_inplace(float* gate, const float* up, int64_t n);  // gate = silu(gate) * up
// The scalar std::exp versions (the Isa::Scalar path). The AVX2/AVX-512 paths use a polynomial
// exp with relative error below 1.2e-7 (see vector_ops_simd.inc).
void softmax_reference(float* x, int64_t n);
void silu_mul_reference(float* gate, const float* up, int64_t n);
void add_inplace(float* x, const float* y, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);        // y += a * x

// Row conversions to float for the plain weight types (fast versions of DTypeInfo::to_float).
void bf16_row_to_f32(const uint16_t* src, float* dst, int64_t n);
void f16_row_to_f32(const uint16_t* src, float* dst, int64_t n);
// f32 -> IEEE half, round to nearest even (F16C where present; same bits as float_to_fp16).
void f32_row_to_f16(const float* src, uint16_t* dst, int64_t n);
// Each value rounded to the nearest bfloat16 (ties to even, float_to_bf16's rounding) and kept as
// a float; NaN stays NaN (quieted). In place (dst == src) is allowed.
void f32_round_to_bf16(const float* src, float* dst, int64_t n);
// Largest value, NaNs ignored; -inf when n == 0 or every value is NaN.
float max_f32(const float* x, int64_t n);

}  // namespace anvil
