// Vector kernels written with GCC vector extensions and compiled once per ISA (target_clones).
#include "compute/cpu/vector_ops.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "compute/cpu/isa.h"
#include "compute/cpu/vector_ops_kernels.h"
#include "core/cpu_features.h"
#include "core/dtype.h"

// The helpers below pass 64-byte vectors by value; they are always inlined into the cloned
// kernels, so the ABI note GCC gives for non-AVX-512 callers does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil {
namespace {

typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));

__attribute__((always_inline)) inline v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void store16(float* p, v16f v) { std::memcpy(p, &v, sizeof(v)); }
__attribute__((always_inline)) inline float hsum16(v16f v) {
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
}

}  // namespace

#define ANVIL_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

ANVIL_TARGET_CLONES float dot_f32(const float* a, const float* b, int64_t n) {
  v16f acc0 = {}, acc1 = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 += load16(a + i) * load16(b + i);
    acc1 += load16(a + i + 16) * load16(b + i + 16);
  }
  for (; i + 16 <= n; i += 16) acc0 += load16(a + i) * load16(b + i);
  float sum = hsum16(acc0 + acc1);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

ANVIL_TARGET_CLONES void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  const float mean_square = dot_f32(x, x, n) / static_cast<float>(n);
  const float scale = 1.0f / std::sqrt(mean_square + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void softmax_reference(float* x, int64_t n) {
  float max_value = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max_value = std::fmax(max_value, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul_reference(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

namespace {

// The activation kernels of the active ISA (looked up per call: tests change the cap).
vector_ops_detail::ActivationKernels activation_kernels() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa >= Isa::Avx512) return vector_ops_detail::activation_kernels_avx512();
  if (isa >= Isa::Avx2) return vector_ops_detail::activation_kernels_avx2();
#endif
  return {softmax_reference, silu_mul_reference};
}

}  // namespace

void softmax_inplace(float* x, int64_t n) { activation_kernels().softmax(x, n); }

void silu_mul_inplace(float* gate, const float* up, int64_t n) { activation_kernels().silu_mul(gate, up, n); }

ANVIL_TARGET_CLONES void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

ANVIL_TARGET_CLONES void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

ANVIL_TARGET_CLONES void bf16_row_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

ANVIL_TARGET_CLONES void f32_round_to_bf16(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, src + i, 4);
    // Add 0x7FFF plus the lowest kept bit, drop the low half (no branch: vectorizes).
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
    const uint32_t nan = (bits | 0x00400000u) & 0xFFFF0000u;
    const uint32_t result = (bits & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded;
    std::memcpy(dst + i, &result, 4);
  }
}

__attribute__((target("avx,f16c"))) static void f16_row_to_f32_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = fp16_to_float(src[i]);
}

void f16_row_to_f32(const uint16_t* src, float* dst, int64_t n) {
  static const bool has_f16c = cpu_features().f16c;
  if (has_f16c) {
    f16_row_to_f32_f16c(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(src[i]);
}

__attribute__((target("avx,f16c"))) static void f32_row_to_f16_f16c(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = float_to_fp16(src[i]);
}

void f32_row_to_f16(const float* src, uint16_t* dst, int64_t n) {
  static const bool has_f16c = cpu_features().f16c;
  if (has_f16c) {
    f32_row_to_f16_f16c(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_fp16(src[i]);
}

ANVIL_TARGET_CLONES float max_f32(const float* x, int64_t n) {
  // Lane-wise maxima; `v > m ? v : m` keeps m when v is NaN, so NaNs never win.
  v16f m0 = {}, m1 = {};
  m0 -= INFINITY;
  m1 -= INFINITY;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const v16f a = load16(x + i), b = load16(x + i + 16);
    m0 = a > m0 ? a : m0;
    m1 = b > m1 ? b : m1;
  }
  m0 = m1 > m0 ? m1 : m0;
  float m = -INFINITY;
  for (int j = 0; j < 16; ++j) m = m0[j] > m ? m0[j] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace anvil
