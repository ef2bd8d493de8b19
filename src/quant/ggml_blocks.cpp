// Reference (scalar) dequantizers and quantizers for the GGML block layouts anvil reads and writes.
#include "quant/ggml_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"

namespace anvil {
namespace {

// Round half away from zero, as ggml's roundf does (numpy's round would be half-even). Inputs
// are clamped first so that inf/nan in the weights give garbage levels, not undefined behaviour.
inline int round_nearest(float x) {
  if (!(x > -1e9f)) return x != x ? 0 : -1000000000;
  if (x > 1e9f) return 1000000000;
  return static_cast<int>(std::lround(x));
}

// Nearest level in [lo, hi] for the K-quant searches (hot loops): shifting to a non-negative
// value lets truncation round, which is much cheaper than lround; nan maps to lo.
inline int nearest_level(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v - static_cast<float>(lo) + 0.5f) + lo;
}

// Q4_0's level from its shifted value: truncation, clamped to [0, 15] (nan gives 0).
inline int truncate_level(float shifted) {
  if (!(shifted > 0)) return 0;
  return shifted >= 15 ? 15 : static_cast<int>(shifted);
}

inline void pack_scale_min_k4(int j, uint8_t scale, uint8_t min, uint8_t* q) {
  if (j < 4) {
    q[j] = static_cast<uint8_t>((q[j] & 0xC0) | (scale & 63));
    q[j + 4] = static_cast<uint8_t>((q[j + 4] & 0xC0) | (min & 63));
  } else {
    q[j + 4] = static_cast<uint8_t>((scale & 0x0F) | ((min & 0x0F) << 4));
    q[j - 4] = static_cast<uint8_t>((q[j - 4] & 63) | ((scale >> 4) << 6));
    q[j] = static_cast<uint8_t>((q[j] & 63) | ((min >> 4) << 6));
  }
}

// Fits x[i] ~ scale * q[i] - min with q in [0, 15] and min >= 0 (ggml keeps the offset <= 0 so
// the mins are non-negative). Tries a few quantization grids and refines each by least squares;
// returns the (scale, min) pair with the smallest squared error. Errors are computed from the
// sums (sum (s*q + o - x)^2 expanded), so each grid costs one pass over the block.
void fit_scale_min_4bit(const float* x, int n, float* out_scale, float* out_min) {
  float lo = x[0], hi = x[0];
  double sum_x = 0, sum_xx = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_x += x[i];
    sum_xx += static_cast<double>(x[i]) * x[i];
  }
  if (lo > 0) lo = 0;
  if (!(hi > lo)) {  // constant block (all equal and <= 0), or nan: the min alone reproduces it
    *out_scale = 0;
    *out_min = -lo;
    return;
  }
  constexpr int kLevels = 15;
  auto squared_error = [&](double scale, double offset, double sum_q, double sum_qq, double sum_qx) {
    return scale * scale * sum_qq + 2 * scale * offset * sum_q + n * offset * offset - 2 * scale * sum_qx -
           2 * offset * sum_x + sum_xx;
  };
  float best_scale = (hi - lo) / kLevels;
  float best_offset = lo;
  double best_err = std::numeric_limits<double>::infinity();
  for (int step = -8; step <= 12; ++step) {
    // step 0 is the plain min/max grid; the others stretch it slightly either way.
    const float inv = (kLevels + 0.1f * step) / (hi - lo);
    int sum_q = 0, sum_qq = 0;
    double sum_qx = 0;
    for (int i = 0; i < n; ++i) {
      const int q = nearest_level(inv * (x[i] - lo), 0, kLevels);
      sum_q += q;
      sum_qq += q * q;
      sum_qx += q * static_cast<double>(x[i]);
    }
    // Least squares for x ~ scale*q + offset, then clamp offset <= 0 and refit the scale alone.
    const double det = static_cast<double>(n) * sum_qq - static_cast<double>(sum_q) * sum_q;
    if (det <= 0) continue;
    double scale = (n * sum_qx - sum_q * sum_x) / det;
    double offset = (sum_qq * sum_x - sum_q * sum_qx) / det;
    if (offset > 0) {
      offset = 0;
      scale = sum_qx / sum_qq;
    }
    if (!(scale > 0)) continue;
    const double err = squared_error(scale, offset, sum_q, sum_qq, sum_qx);
    if (err < best_err) {
      best_err = err;
      best_scale = static_cast<float>(scale);
      best_offset = static_cast<float>(offset);
    }
  }
  *out_scale = best_scale;
  *out_min = -best_offset;
}

// Fits x[i] ~ scale * q[i] with q in [-32, 31]; the scale is signed so that the element of
// largest magnitude can use the -32 end of the range. For fixed levels the least-squares scale
// is sum(qx)/sum(qq) with error sum(xx) - sum(qx)^2/sum(qq), so the best grid maximizes
// sum(qx)^2/sum(qq).
float fit_scale_6bit(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (!(amax > 0)) return 0;
  float best_scale = max / -32;
  double best_gain = -1;
  for (int step = -9; step <= 9; ++step) {
    const float inv = -(32 + 0.1f * step) / max;
    int sum_qq = 0;
    double sum_qx = 0;
    for (int i = 0; i < n; ++i) {
      const int q = nearest_level(inv * x[i], -32, 31);
      sum_qq += q * q;
      sum_qx += q * static_cast<double>(x[i]);
    }
    if (sum_qq == 0) continue;
    const double gain = sum_qx * sum_qx / sum_qq;
    if (gain > best_gain) {
      best_gain = gain;
      best_scale = static_cast<float>(sum_qx / sum_qq);
    }
  }
  return best_scale;
}

}  // namespace

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = fp16_to_float(blocks[b].d);
    for (int j = 0; j < kQK8_0; ++j) dst[b * kQK8_0 + j] = d * blocks[b].qs[j];
  }
}

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ4_0*>(src);
  constexpr int kHalf = kQK4_0 / 2;
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const float d = fp16_to_float(blocks[b].d);
    float* y = dst + b * kQK4_0;
    for (int j = 0; j < kHalf; ++j) {
      y[j] = d * ((blocks[b].qs[j] & 0x0F) - 8);
      y[j + kHalf] = d * ((blocks[b].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_row_q4_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ4_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ4_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    const float dmin = fp16_to_float(block.dmin);
    float* y = dst + b * kQK_K;
    // Each 32-byte run of qs holds two 32-element sub-blocks: low nibbles, then high nibbles.
    for (int chunk = 0; chunk < 4; ++chunk) {
      const uint8_t* q = block.qs + 32 * chunk;
      uint8_t sc, m;
      unpack_scale_min_k4(2 * chunk, block.scales, &sc, &m);
      const float d_lo = d * sc, m_lo = dmin * m;
      unpack_scale_min_k4(2 * chunk + 1, block.scales, &sc, &m);
      const float d_hi = d * sc, m_hi = dmin * m;
      for (int l = 0; l < 32; ++l) y[64 * chunk + l] = d_lo * (q[l] & 0x0F) - m_lo;
      for (int l = 0; l < 32; ++l) y[64 * chunk + 32 + l] = d_hi * (q[l] >> 4) - m_hi;
    }
  }
}

void dequantize_row_q6_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ6_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ6_K& block = blocks[b];
    const float d = fp16_to_float(block.d);
    // Two halves of 128 elements; in each, ql[l] and ql[l+32] carry the low nibbles of
    // elements l, l+32 (low nibble) and l+64, l+96 (high nibble); qh[l] their top 2 bits.
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = block.ql + 64 * half;
      const uint8_t* qh = block.qh + 32 * half;
      const int8_t* sc = block.scales + 8 * half;
      float* y = dst + b * kQK_K + 128 * half;
      for (int l = 0; l < 32; ++l) {
        const int group = l / 16;
        const int q0 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q1 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[group] * q0;
        y[l + 32] = d * sc[group + 2] * q1;
        y[l + 64] = d * sc[group + 4] * q2;
        y[l + 96] = d * sc[group + 6] * q3;
      }
    }
  }
}

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float* x = src + b * kQK8_0;
    float amax = 0;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    blocks[b].d = float_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) blocks[b].qs[j] = static_cast<int8_t>(round_nearest(x[j] * id));
  }
}

void quantize_row_q4_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ4_0*>(dst);
  constexpr int kHalf = kQK4_0 / 2;
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const float* x = src + b * kQK4_0;
    // The signed extreme maps to -8, the end of the range with one more level.
    float amax = 0, max = 0;
    for (int j = 0; j < kQK4_0; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    blocks[b].d = float_to_fp16(d);
    for (int j = 0; j < kHalf; ++j) {
      // +8.5 then truncation rounds to nearest in the shifted (non-negative) range.
      const int q_lo = truncate_level(x[j] * id + 8.5f);
      const int q_hi = truncate_level(x[j + kHalf] * id + 8.5f);
      blocks[b].qs[j] = static_cast<uint8_t>(q_lo | (q_hi << 4));
    }
  }
}

void quantize_row_q4_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ4_K*>(dst);
  constexpr int kSub = 32;
  constexpr int kSubBlocks = kQK_K / kSub;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ4_K& block = blocks[b];
    std::memset(&block, 0, sizeof(block));

    float scales[kSubBlocks], mins[kSubBlocks];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kSubBlocks; ++j) {
      fit_scale_min_4bit(x + j * kSub, kSub, &scales[j], &mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    // Scales and mins are themselves quantized to 6 bits against per-block fp16 maxima.
    const float inv_scale = max_scale > 0 ? 63 / max_scale : 0;
    const float inv_min = max_min > 0 ? 63 / max_min : 0;
    for (int j = 0; j < kSubBlocks; ++j) {
      const auto ls = static_cast<uint8_t>(std::min(63, round_nearest(inv_scale * scales[j])));
      const auto lm = static_cast<uint8_t>(std::min(63, round_nearest(inv_min * mins[j])));
      pack_scale_min_k4(j, ls, lm, block.scales);
    }
    block.d = float_to_fp16(max_scale / 63);
    block.dmin = float_to_fp16(max_min / 63);

    // Requantize against the scales as stored, so rounding of the scales is compensated.
    const float d = fp16_to_float(block.d);
    const float dmin = fp16_to_float(block.dmin);
    uint8_t levels[kQK_K];
    for (int j = 0; j < kSubBlocks; ++j) {
      uint8_t sc, m;
      unpack_scale_min_k4(j, block.scales, &sc, &m);
      const float scale = d * sc;
      const float min = dmin * m;
      for (int i = 0; i < kSub; ++i) {
        const int q = scale != 0 ? nearest_level((x[j * kSub + i] + min) / scale, 0, 15) : 0;
        levels[j * kSub + i] = static_cast<uint8_t>(q);
      }
    }
    for (int chunk = 0; chunk < 4; ++chunk)
      for (int l = 0; l < 32; ++l)
        block.qs[32 * chunk + l] =
            static_cast<uint8_t>(levels[64 * chunk + l] | (levels[64 * chunk + 32 + l] << 4));
  }
}

void quantize_row_q6_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ6_K*>(dst);
  constexpr int kSub = 16;
  constexpr int kSubBlocks = kQK_K / kSub;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ6_K& block = blocks[b];
    std::memset(&block, 0, sizeof(block));

    float scales[kSubBlocks];
    float max_abs_scale = 0, max_scale = 0;
    for (int j = 0; j < kSubBlocks; ++j) {
      scales[j] = fit_scale_6bit(x + j * kSub, kSub);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    uint8_t levels[kQK_K];
    if (max_abs_scale == 0) {
      std::fill(levels, levels + kQK_K, 32);  // level 32 is zero
    } else {
      // The largest scale maps to -128 so the 8-bit scales use their full signed range.
      const float inv = -128 / max_scale;
      block.d = float_to_fp16(1 / inv);
      for (int j = 0; j < kSubBlocks; ++j)
        block.scales[j] = static_cast<int8_t>(std::clamp(round_nearest(inv * scales[j]), -128, 127));
      const float d = fp16_to_float(block.d);
      for (int j = 0; j < kSubBlocks; ++j) {
        const float scale = d * block.scales[j];
        for (int i = 0; i < kSub; ++i) {
          const int q = scale != 0 ? nearest_level(x[j * kSub + i] / scale, -32, 31) : 0;
          levels[j * kSub + i] = static_cast<uint8_t>(q + 32);
        }
      }
    }
    for (int half = 0; half < 2; ++half) {
      const uint8_t* lv = levels + 128 * half;
      uint8_t* ql = block.ql + 64 * half;
      uint8_t* qh = block.qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((lv[l] & 0x0F) | ((lv[l + 64] & 0x0F) << 4));
        ql[l + 32] = static_cast<uint8_t>((lv[l + 32] & 0x0F) | ((lv[l + 96] & 0x0F) << 4));
        qh[l] = static_cast<uint8_t>((lv[l] >> 4) | ((lv[l + 32] >> 4) << 2) | ((lv[l + 64] >> 4) << 4) |
                                     ((lv[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace anvil
