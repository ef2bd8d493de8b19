// INT8 W8A8 quantizers: symmetric per-channel weights and per-token dynamic activations.
#include "quant/int8_w8a8.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include "compute/cpu/isa.h"

namespace anvil {
namespace {

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// Round half to even into [-127, 127]; NaN (a corrupt activation) becomes 0, not undefined behaviour.
int8_t clamp_code(float v) {
  const float r = std::nearbyint(v);
  if (r >= 127.0f) return 127;
  if (r <= -127.0f) return -127;
  return r == r ? static_cast<int8_t>(r) : 0;
}

}  // namespace

Result<QuantizedMatrix> quantize_int8_per_channel(const std::string& what, const float* w, int64_t rows,
                                                  int64_t cols, ThreadPool& pool) {
  ANVIL_RETURN_IF_ERROR(check_quantizer_input(what, w, rows, cols));
  if (cols > kMaxI8Cols)
    return Status::error(what + ": rows of " + std::to_string(cols) + " elements are too long for int32 dot products");
  QuantizedMatrix q;
  q.dtype = DType::I8;
  q.rows = rows;
  q.cols = cols;
  q.group = cols;
  q.codes.resize(static_cast<size_t>(rows * cols));
  q.scale.resize(static_cast<size_t>(rows));
  pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = w + r * cols;
      const float scale = absmax(row, cols) / 127.0f;
      q.scale[r] = scale;
      auto* codes = reinterpret_cast<int8_t*>(q.codes.data()) + r * cols;
      for (int64_t c = 0; c < cols; ++c) codes[c] = scale > 0.0f ? clamp_code(row[c] / scale) : 0;
    }
  });
  return q;
}

namespace {

#if defined(__x86_64__)
// quantize_int8_per_token_scalar in AVX-512, bit-identical: max is exact in any order (and skips
// NaN as std::max does: vmaxps returns its second operand, the running max, when one is NaN), the
// scale is the same scalar arithmetic, the product the same IEEE multiply, and clamping to
// [-127, 127] before rounding to nearest even (vcvtps2dq under the default rounding mode, as
// nearbyint) gives what rounding then clamping gives; NaN products become 0 first.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_int8_per_token_avx512(
    const float* x, int64_t n_tokens, int64_t k, int8_t* codes, float* scales) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * k;
    __m512 running = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) running = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xt + i)), running);
    if (i < k) {
      const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1);
      running = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(m, xt + i)), running);
    }
    const float d = _mm512_reduce_max_ps(running) / 127.0f;
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    scales[t] = d;
    const __m512 vinv = _mm512_set1_ps(inv), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    for (i = 0; i < k; i += 16) {
      const __mmask16 m = k - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (k - i)) - 1);
      __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xt + i), vinv);
      v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
      v = _mm512_max_ps(_mm512_min_ps(v, hi), lo);
      _mm_mask_storeu_epi8(codes + t * k + i, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
  }
}
#endif

}  // namespace

void quantize_int8_per_token(const float* x, int64_t n_tokens, int64_t k, int8_t* codes, float* scales) {
#if defined(__x86_64__)
  if (active_isa() >= Isa::Avx512) return quantize_int8_per_token_avx512(x, n_tokens, k, codes, scales);
#endif
  quantize_int8_per_token_scalar(x, n_tokens, k, codes, scales);
}

void quantize_int8_per_token_scalar(const float* x, int64_t n_tokens, int64_t k, int8_t* codes, float* scales) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * k;
    const float d = absmax(xt, k) / 127.0f;
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    scales[t] = d;
    for (int64_t i = 0; i < k; ++i) codes[t * k + i] = clamp_code(xt[i] * inv);
  }
}

}  // namespace anvil
