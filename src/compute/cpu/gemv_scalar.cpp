// Scalar gemv kernels and activation quantizer: the portable path and the arithmetic every SIMD
// kernel reproduces (same int8 activation codes, exact integer block dots, float scaling).
#include <cmath>
#include <cstring>
#include <vector>

#include "compute/cpu/gemv_kernels.h"
#include "quant/fp8_e4m3.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_panels.h"
#include "quant/int4_codes.h"

namespace anvil::gemv_detail {
namespace {

float half(uint16_t h) { return fp16_to_float(h); }

// Float weights: 8 partial sums keep the rounding error close to the SIMD kernels'.
template <typename LoadFn>
void float_rows(const GemvArgs& a, LoadFn load) {
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const std::byte* row = a.w + r * a.row_bytes;
    for (int t = 0; t < a.n_tokens; ++t) {
      const float* x = a.xf + t * a.k;
      float partial[8] = {};
      int64_t i = 0;
      for (; i + 8 <= a.k; i += 8)
        for (int j = 0; j < 8; ++j) partial[j] += load(row, i + j) * x[i + j];
      for (; i < a.k; ++i) partial[i % 8] += load(row, i) * x[i];
      float sum = 0;
      for (float p : partial) sum += p;
      a.y[t * a.y_stride + r] = sum;
    }
  }
}

void f32_rows(const GemvArgs& a) {
  float_rows(a, [](const std::byte* row, int64_t i) { return reinterpret_cast<const float*>(row)[i]; });
}
void f16_rows(const GemvArgs& a) {
  float_rows(a, [](const std::byte* row, int64_t i) { return half(reinterpret_cast<const uint16_t*>(row)[i]); });
}
void bf16_rows(const GemvArgs& a) {
  float_rows(a,
             [](const std::byte* row, int64_t i) { return bf16_to_float(reinterpret_cast<const uint16_t*>(row)[i]); });
}

// Per-token activation views.
struct TokenView {
  const int8_t* q;
  const float* scale;  // 8 lanes per block; lane 0 is the block's scale
  const float* min_term;
};
TokenView token(const GemvArgs& a, int t) {
  return {a.xq + t * a.k, a.xscale + t * a.k / kBlock * kLanesPerBlock,
          a.xmin ? a.xmin + t * a.k / 256 * 16 : nullptr};
}

// Q8_0 and Q4_0: one fp16 scale per 32 weights; signed codes times int8 activations.
template <typename Block, typename CodeFn>
void q32_rows(const GemvArgs& a, CodeFn code) {
  const int64_t blocks = a.k / kBlock;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const Block* row = reinterpret_cast<const Block*>(a.w + r * a.row_bytes);
    for (int t = 0; t < a.n_tokens; ++t) {
      const TokenView x = token(a, t);
      float sum = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t dot = 0;
        for (int i = 0; i < kBlock; ++i) dot += code(row[b], i) * x.q[b * kBlock + i];
        sum += static_cast<float>(dot) * (half(row[b].d) * x.scale[b * kLanesPerBlock]);
      }
      a.y[t * a.y_stride + r] = sum;
    }
  }
}

int32_t q8_0_code(const BlockQ8_0& b, int i) { return static_cast<int32_t>(b.qs[i]); }
int32_t q4_0_code(const BlockQ4_0& b, int i) {
  return static_cast<int32_t>(i < 16 ? (b.qs[i] & 0x0F) : (b.qs[i - 16] >> 4)) - 8;
}
void q8_0_rows(const GemvArgs& a) { q32_rows<BlockQ8_0>(a, q8_0_code); }
void q4_0_rows(const GemvArgs& a) { q32_rows<BlockQ4_0>(a, q4_0_code); }

// Panels (Q8_0_R4, Q4_0_R4, Q4_K_R4): each row's GGML blocks gathered back, then `rows_kernel`, the
// GGML type's arithmetic (the panel activations are copies of the same codes).
template <typename Block>
void panel_rows_via_blocks(const GemvArgs& a, DType panel_dtype, GemvKernel rows_kernel) {
  std::vector<Block> blocks(static_cast<size_t>(a.k / dtype_info(panel_dtype).block_elems));
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    panel_row_to_blocks(panel_dtype, a.w, a.rows, a.k, r, reinterpret_cast<std::byte*>(blocks.data()));
    GemvArgs one = a;
    one.w = reinterpret_cast<const std::byte*>(blocks.data());
    one.row_begin = 0;
    one.row_end = 1;
    one.y = a.y + r;
    rows_kernel(one);
  }
}
void q8_0_r4_rows(const GemvArgs& a) { panel_rows_via_blocks<BlockQ8_0>(a, DType::Q8_0_R4, q8_0_rows); }
void q4_0_r4_rows(const GemvArgs& a) { panel_rows_via_blocks<BlockQ4_0>(a, DType::Q4_0_R4, q4_0_rows); }

// Q4_K: per 32-element sub-block j, w = d*sc_j*u - dmin*m_j with u in [0, 15].
void q4_k_rows(const GemvArgs& a) {
  const int64_t supers = a.k / kQK_K;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const BlockQ4_K* row = reinterpret_cast<const BlockQ4_K*>(a.w + r * a.row_bytes);
    for (int t = 0; t < a.n_tokens; ++t) {
      const TokenView x = token(a, t);
      float sum = 0;
      for (int64_t s = 0; s < supers; ++s) {
        const BlockQ4_K& blk = row[s];
        uint32_t packed[4];
        unpack_q4k_scales(blk.scales, packed);
        const uint8_t* sm = reinterpret_cast<const uint8_t*>(packed);
        const float d = half(blk.d), dmin = half(blk.dmin);
        for (int j = 0; j < 8; ++j) {
          const uint8_t* qs = blk.qs + 32 * (j / 2);
          const int8_t* xq = x.q + s * kQK_K + 32 * j;
          int32_t dot = 0;
          for (int i = 0; i < 32; ++i) dot += ((j % 2 == 0) ? (qs[i] & 0x0F) : (qs[i] >> 4)) * xq[i];
          sum += static_cast<float>(dot) * (d * sm[j] * x.scale[(s * 8 + j) * kLanesPerBlock]);
          sum += dmin * sm[8 + j] * x.min_term[s * 16 + 8 + j];
        }
      }
      a.y[t * a.y_stride + r] = sum;
    }
  }
}

void q4_k_r4_rows(const GemvArgs& a) { panel_rows_via_blocks<BlockQ4_K>(a, DType::Q4_K_R4, q4_k_rows); }

// Q6_K: w = d*sc_g*(u - 32), u in [0, 63], one int8 scale per 16 elements.
void q6_k_rows(const GemvArgs& a) {
  const int64_t supers = a.k / kQK_K;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const BlockQ6_K* row = reinterpret_cast<const BlockQ6_K*>(a.w + r * a.row_bytes);
    for (int t = 0; t < a.n_tokens; ++t) {
      const TokenView x = token(a, t);
      float sum = 0;
      for (int64_t s = 0; s < supers; ++s) {
        const BlockQ6_K& blk = row[s];
        int8_t u[kQK_K];  // signed codes in element order (layout as dequantize_row_q6_k)
        for (int h = 0; h < 2; ++h) {
          const uint8_t* ql = blk.ql + 64 * h;
          const uint8_t* qh = blk.qh + 32 * h;
          for (int l = 0; l < 32; ++l) {
            u[128 * h + l] = static_cast<int8_t>(((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32);
            u[128 * h + l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
            u[128 * h + l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            u[128 * h + l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
          }
        }
        const float d = half(blk.d);
        for (int g = 0; g < 16; ++g) {
          int32_t dot = 0;
          for (int i = 0; i < 16; ++i) dot += u[16 * g + i] * x.q[s * kQK_K + 16 * g + i];
          sum += static_cast<float>(dot) * (d * blk.scales[g] * x.scale[(s * 8 + g / 2) * kLanesPerBlock]);
        }
      }
      a.y[t * a.y_stride + r] = sum;
    }
  }
}

// F8_E4M3 (W8A16): E4M3 values times bf16-rounded activations, one scale per row applied to
// the dot (FP8 W8A8: times the token's scale too, x being unscaled E4M3 values).
void f8_e4m3_rows(const GemvArgs& a) {
  const float* table = e4m3_decode_table();
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const auto* row = reinterpret_cast<const uint8_t*>(a.w + r * a.row_bytes);
    for (int t = 0; t < a.n_tokens; ++t) {
      const float* x = a.xf + t * a.k;
      float partial[8] = {};
      for (int64_t i = 0; i < a.k; ++i) partial[i % 8] += table[row[i]] * x[i];
      float sum = 0;
      for (float p : partial) sum += p;
      a.y[t * a.y_stride + r] = sum * (a.xtoken_scale ? a.wscale[r] * a.xtoken_scale[t] : a.wscale[r]);
    }
  }
}

// I8 (W8A8): exact int32 dots of int8 weight codes and per-token int8 activation codes, scaled
// by w_scale[row] * x_scale[token] (k <= kMaxI8Cols keeps the sum in range).
void i8_rows(const GemvArgs& a) {
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const auto* row = reinterpret_cast<const int8_t*>(a.w + r * a.row_bytes);
    for (int t = 0; t < a.n_tokens; ++t) {
      const int8_t* xq = a.xq + t * a.k;
      int32_t dot = 0;
      for (int64_t i = 0; i < a.k; ++i) dot += static_cast<int32_t>(row[i]) * xq[i];
      a.y[t * a.y_stride + r] = static_cast<float>(dot) * (a.wscale[r] * a.xtoken_scale[t]);
    }
  }
}

// I4 (W4A16): per group, sum((u - zero) * x) in f32 (x bf16-rounded), times the group's scale.
void i4_rows(const GemvArgs& a) {
  const int64_t groups = a.k / a.wgroup;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const auto* row = reinterpret_cast<const uint8_t*>(a.w + r * a.row_bytes);
    const float* scales = a.wscale + r * groups;
    const float* zeros = a.wzero ? a.wzero + r * groups : nullptr;
    for (int t = 0; t < a.n_tokens; ++t) {
      const float* x = a.xf + t * a.k;
      float sum = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const float zero = zeros ? zeros[g] : static_cast<float>(kI4ImplicitZero);
        float partial = 0;
        for (int64_t i = g * a.wgroup; i < (g + 1) * a.wgroup; ++i)
          partial += (static_cast<float>(i4_code(row, i)) - zero) * x[i];
        sum += partial * scales[g];
      }
      a.y[t * a.y_stride + r] = sum;
    }
  }
}

}  // namespace

GemvKernel scalar_kernel(DType dtype) {
  switch (dtype) {
    case DType::F32: return f32_rows;
    case DType::F16: return f16_rows;
    case DType::BF16: return bf16_rows;
    case DType::Q8_0: return q8_0_rows;
    case DType::Q4_0: return q4_0_rows;
    case DType::Q4_K: return q4_k_rows;
    case DType::Q6_K: return q6_k_rows;
    case DType::F8_E4M3: return f8_e4m3_rows;
    case DType::I8: return i8_rows;
    case DType::I4: return i4_rows;
    case DType::Q8_0_R4: return q8_0_r4_rows;
    case DType::Q4_0_R4: return q4_0_r4_rows;
    case DType::Q4_K_R4: return q4_k_r4_rows;
    default: return nullptr;
  }
}

void quantize_activations_scalar(const float* x, int64_t n_blocks, int32_t offset, int8_t* q, float* scale,
                                 int32_t* bias, float* min_term) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float* xb = x + b * kBlock;
    int8_t* qb = q + b * kBlock;
    float amax = 0;
    for (int i = 0; i < kBlock; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float inv = d != 0 ? 1.0f / d : 0.0f;
    int32_t block_sum = 0;
    for (int i = 0; i < kBlock; ++i) {
      // nearbyint rounds to nearest even, as the SIMD conversions do.
      qb[i] = static_cast<int8_t>(std::nearbyint(xb[i] * inv));
      block_sum += qb[i];
    }
    for (int j = 0; j < kLanesPerBlock; ++j) {
      scale[b * kLanesPerBlock + j] = d;
      bias[b * kLanesPerBlock + j] = -offset * (qb[4 * j] + qb[4 * j + 1] + qb[4 * j + 2] + qb[4 * j + 3]);
    }
    if (min_term != nullptr) {
      float* mt = min_term + b / 8 * 16;
      if (b % 8 == 0)
        for (int j = 0; j < 8; ++j) mt[j] = 0.0f;
      mt[8 + b % 8] = -d * static_cast<float>(block_sum);
    }
  }
}

}  // namespace anvil::gemv_detail
