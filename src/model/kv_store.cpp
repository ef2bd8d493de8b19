// Row writes into a KV store at its dtype.
#include "model/kv_store.h"

#include <cstring>

#include "compute/cpu/vector_ops.h"

namespace anvil {

void store_kv_row(const KvStoreView& kv, void* layer_base, int64_t row, const float* src) {
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
    default:
      break;  // KvStoreView creators only make F32/F16/BF16 stores
  }
}

}  // namespace anvil
