// The flash-attention kernel at one lane per vector: the Isa::Scalar path (baseline x86-64 or any CPU).
#include <cstdint>

#include "compute/cpu/attention_kernels.h"
#include "core/dtype.h"
#include "quant/fp8_e4m3.h"

namespace anvil::attention_detail {
namespace {

inline void tile_row_from_f16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(src[i]);
}
inline void tile_row_from_bf16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}
inline void tile_row_from_e4m3(const uint8_t* src, float scale, float* dst, int64_t n) {
  const float* decode = e4m3_decode_table();
  for (int64_t i = 0; i < n; ++i) dst[i] = decode[src[i]] * scale;
}
inline void tile_row_from_i8(const int8_t* src, float scale, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * scale;
}

// No decode row-dot scorer at this width (attention_flash.inc's kRowDotScores): the row-dot code
// is never instantiated here and needs only these names.
constexpr bool kRowDotScores = false;
inline void row_dot_scores(const float*, int64_t, const float* const*, int64_t, float*) {}
inline float rows_in_each_group(const float* p) { return *p; }

#include "compute/cpu/vector_ops_simd.inc"
#include "compute/cpu/attention_flash.inc"

}  // namespace

FlashKernel flash_kernel_scalar() { return flash_kernel<1>; }

}  // namespace anvil::attention_detail
