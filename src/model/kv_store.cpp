// Row writes into a KV store at its dtype, and the 1-byte dtypes' per-head row quantizer.
#include "model/kv_store.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <vector>

#include "compute/cpu/vector_ops.h"
#include "quant/fp8_e4m3.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

struct KvDtypeName {
  DType dtype;
  const char* name;   // as --kv-dtype spells it
  const char* alias;  // the DType's own name, lower case
};
constexpr KvDtypeName kKvDtypeNames[] = {
    {DType::F32, "f32", "f32"},        {DType::F16, "f16", "f16"}, {DType::BF16, "bf16", "bf16"},
    {DType::F8_E4M3, "fp8", "f8_e4m3"}, {DType::I8, "int8", "i8"},
};

bool has_nan(const float* x, int64_t n) {
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

}  // namespace

bool is_kv_cache_dtype(DType dtype) {
  for (const KvDtypeName& row : kKvDtypeNames)
    if (row.dtype == dtype) return true;
  return false;
}

bool kv_dtype_has_scales(DType dtype) { return dtype == DType::F8_E4M3 || dtype == DType::I8; }

std::optional<DType> kv_cache_dtype_from_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const KvDtypeName& row : kKvDtypeNames)
    if (lower == row.name || lower == row.alias) return row.dtype;
  return std::nullopt;
}

Result<DType> kv_cache_dtype_for(const std::string& name, bool f32_weights) {
  if (name == "auto") return f32_weights ? DType::F32 : DType::F16;
  if (std::optional<DType> dtype = kv_cache_dtype_from_name(name)) return *dtype;
  return Status::error("--kv-dtype '" + name + "' is not a KV cache dtype the engine runs (auto, f32, f16, bf16, fp8, int8)");
}

const char* kv_cache_dtype_name(DType dtype) {
  for (const KvDtypeName& row : kKvDtypeNames)
    if (row.dtype == dtype) return row.name;
  return dtype_name(dtype);
}

size_t kv_row_bytes(DType dtype, int64_t n_kv_heads, int64_t head_dim) {
  const size_t scales = kv_dtype_has_scales(dtype) ? static_cast<size_t>(n_kv_heads) * sizeof(float) : 0;
  return dtype_bytes(dtype, n_kv_heads * head_dim) + scales;
}

void quantize_kv_row(DType dtype, const float* src, int64_t n_kv_heads, int64_t head_dim, void* codes, float* scales) {
  if (dtype == DType::I8) {
    // The W8A8 activation quantizer is exactly this per "token" of head_dim values (and AVX-512).
    quantize_int8_per_token(src, n_kv_heads, head_dim, static_cast<int8_t*>(codes), scales);
  } else {
    uint8_t* out = static_cast<uint8_t*>(codes);
    for (int64_t k = 0; k < n_kv_heads; ++k) {
      const float* x = src + k * head_dim;
      float amax = 0.0f;
      for (int64_t i = 0; i < head_dim; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float scale = amax / kE4M3Max;
      const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
      scales[k] = scale;
      // Scalar (about 2 us per 512-value row): `anvil bench batched` on dummy:llama-3.2-1b spends
      // 0.7% of its samples (perf) here and in float_to_e4m3, prefill and decode together.
      for (int64_t i = 0; i < head_dim; ++i) out[k * head_dim + i] = float_to_e4m3(x[i] * inv);
    }
  }
  for (int64_t k = 0; k < n_kv_heads; ++k)
    if (has_nan(src + k * head_dim, head_dim)) scales[k] = std::nanf("");
}

namespace {

// Row-major: the row converted in place (its scales at layer_scales + row x n_kv_heads).
void store_row_major(const KvStoreView& kv, void* layer_base, float* layer_scales, int64_t row, const float* src) {
  const int64_t n = kv.kv_dim;
  switch (kv.dtype) {
    case DType::F32:
      std::memcpy(static_cast<float*>(layer_base) + row * n, src, n * sizeof(float));
      break;
    case DType::F16: {
      f32_row_to_f16(src, static_cast<uint16_t*>(layer_base) + row * n, n);
      break;
    }
    case DType::BF16: {
      uint16_t* dst = static_cast<uint16_t*>(layer_base) + row * n;
      for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
      break;
    }
    case DType::F8_E4M3:
    case DType::I8:
      quantize_kv_row(kv.dtype, src, kv.n_kv_heads, n / kv.n_kv_heads, static_cast<uint8_t*>(layer_base) + row * n,
                      layer_scales + row * kv.n_kv_heads);
      break;
    default:
      break;  // KvStoreView creators only make is_kv_cache_dtype stores
  }
}

}  // namespace

void store_kv_row(const KvStoreView& kv, void* layer_base, float* layer_scales, int64_t row, const float* src) {
  if (!kv.head_major) return store_row_major(kv, layer_base, layer_scales, row, src);
  // Head-major blocks: the row converted as a row-major one, then each KV head's head_dim
  // elements copied to their own run of the block (KvStoreView).
  const size_t elem = dtype_info(kv.dtype).block_bytes;
  const int64_t hd = kv.kv_dim / kv.n_kv_heads, bs = kv.block_size;
  thread_local std::vector<std::byte> converted;
  converted.resize(static_cast<size_t>(kv.kv_dim) * elem);
  store_row_major(kv, converted.data(), layer_scales ? layer_scales + row * kv.n_kv_heads : nullptr, 0, src);
  auto* base = static_cast<std::byte*>(layer_base) + (row / bs * bs * kv.kv_dim + row % bs * hd) * elem;
  for (int64_t k = 0; k < kv.n_kv_heads; ++k)
    std::memcpy(base + k * bs * hd * elem, converted.data() + k * hd * elem, static_cast<size_t>(hd) * elem);
}

}  // namespace anvil
