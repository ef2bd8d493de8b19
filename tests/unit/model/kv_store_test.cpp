// KV store rows: the fp8 (E4M3) and int8 per-(row, KV head) quantizer round trip and its error
// bounds, zero and NaN heads, store_kv_row through a block pool view, names and row bytes.
#include "model/kv_store.h"

#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "compute/cpu/isa.h"
#include "engine/kv_block_pool.h"
#include "model/presets.h"
#include "quant/fp8_e4m3.h"

namespace anvil {
namespace {

float dequantize(DType dtype, const std::vector<uint8_t>& codes, size_t i, float scale) {
  const float code = dtype == DType::I8 ? static_cast<float>(static_cast<int8_t>(codes[i])) : e4m3_to_float(codes[i]);
  return code * scale;
}

// Rows with a range per head that varies over three orders of magnitude (as keys do), odd
// head_dim, every ISA the int8 quantizer dispatches on: each element within its dtype's bound.
TEST(KvStore, QuantizedRowRoundTripIsWithinTheDtypesBound) {
  std::mt19937 rng(5);
  for (Isa cap : {Isa::Scalar, Isa::Avx512}) {
    set_isa_cap(cap);
    for (DType dtype : {DType::F8_E4M3, DType::I8})
      for (int64_t head_dim : {64, 37, 128}) {
        const int64_t n_heads = 4;
        double worst = 0;  // the error over its bound, worst element
        for (int trial = 0; trial < 50; ++trial) {
          std::vector<float> row(n_heads * head_dim);
          for (int64_t k = 0; k < n_heads; ++k) {
            std::normal_distribution<float> dist(0.0f, std::pow(10.0f, static_cast<float>(k) - 2.0f));
            for (int64_t i = 0; i < head_dim; ++i) row[k * head_dim + i] = dist(rng);
          }
          std::vector<uint8_t> codes(row.size());
          std::vector<float> scales(n_heads);
          quantize_kv_row(dtype, row.data(), n_heads, head_dim, codes.data(), scales.data());
          for (int64_t k = 0; k < n_heads; ++k) {
            float amax = 0;
            for (int64_t i = 0; i < head_dim; ++i) amax = std::max(amax, std::fabs(row[k * head_dim + i]));
            EXPECT_EQ(scales[k], amax / (dtype == DType::I8 ? 127.0f : 448.0f));
            for (int64_t i = 0; i < head_dim; ++i) {
              const size_t at = static_cast<size_t>(k * head_dim + i);
              const float x = row[at], err = std::fabs(dequantize(dtype, codes, at, scales[k]) - x);
              // int8: half a step. fp8: 2^-4 relative where x / scale is a normal E4M3 number, 2^-10
              // steps of scale (half the subnormal spacing) below; 1e-6 relative for the f32
              // arithmetic around the rounding (x * (1 / scale), code * scale).
              const float bound = dtype == DType::I8
                                      ? scales[k] / 2 * (1 + 1e-6f)
                                      : std::max(std::fabs(x) * 0x1p-4f, scales[k] * 0x1p-10f) * (1 + 1e-6f) + 1e-30f;
              EXPECT_LE(err, bound) << dtype_name(dtype) << " head_dim " << head_dim << " head " << k << " x " << x;
              worst = std::max(worst, static_cast<double>(err / bound));
            }
            if (dtype == DType::I8) {
              for (int64_t i = 0; i < head_dim; ++i) EXPECT_NE(static_cast<int8_t>(codes[k * head_dim + i]), -128);
            }
          }
        }
        std::printf("%-8s %-7s head_dim %3lld: worst error / bound %.3f\n", isa_name(cap), dtype_name(dtype),
                    static_cast<long long>(head_dim), worst);
      }
  }
  set_isa_cap(Isa::Avx512);
}

TEST(KvStore, ZeroHeadsGetZeroCodesAndNanHeadsReadAsNan) {
  for (DType dtype : {DType::F8_E4M3, DType::I8}) {
    std::vector<float> row(3 * 16, 0.0f);
    for (int i = 0; i < 16; ++i) row[16 + i] = 0.25f * static_cast<float>(i - 8);
    row[32 + 5] = NAN;
    std::vector<uint8_t> codes(row.size(), 0xAA);
    std::vector<float> scales(3, -1.0f);
    quantize_kv_row(dtype, row.data(), 3, 16, codes.data(), scales.data());
    EXPECT_FALSE(std::isnan(scales[0]));
    EXPECT_EQ(scales[0] == 0.0f || scales[0] == 1.0f, true);
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(dequantize(dtype, codes, i, scales[0]), 0.0f) << dtype_name(dtype);
      EXPECT_EQ(codes[i] & 0x7F, 0) << dtype_name(dtype);
      EXPECT_FALSE(std::isnan(dequantize(dtype, codes, 16 + i, scales[1])));
    }
    EXPECT_TRUE(std::isnan(scales[2])) << dtype_name(dtype) << ": a NaN must not vanish into a finite row";
  }
}

// store_kv_row writes codes and scales where the block pool's view says, for every layer.
TEST(KvStore, StoreKvRowFillsCodesAndScalesOfThePool) {
  const ModelConfig& c = find_model_preset("tiny-llama")->config;  // 2 layers, 2 KV heads of 16
  for (DType dtype : {DType::F8_E4M3, DType::I8}) {
    Result<KvBlockPool> pool = KvBlockPool::create(c, dtype, 16, 4);
    ASSERT_TRUE(pool) << pool.status().message();
    const KvStoreView& kv = pool->view();
    ASSERT_EQ(kv.n_kv_heads, 2);
    ASSERT_EQ(static_cast<int64_t>(kv.key_scales.size()), c.n_layers);
    std::vector<float> src(kv.kv_dim);
    for (int64_t i = 0; i < kv.kv_dim; ++i) src[i] = std::sin(static_cast<float>(i)) * (i < 16 ? 1.0f : 100.0f);
    const int64_t row = 3 * 16 + 5;
    store_kv_row(kv, kv.values[1], kv.value_scales[1], row, src.data());
    std::vector<uint8_t> expect_codes(kv.kv_dim);
    std::vector<float> expect_scales(2);
    quantize_kv_row(dtype, src.data(), 2, 16, expect_codes.data(), expect_scales.data());
    // The pool's blocks are head-major: block 3, KV head k, row 5 at 3 x 16 x kv_dim + k x 16 x 16 + 5 x 16.
    ASSERT_TRUE(kv.head_major);
    for (int64_t k = 0; k < 2; ++k) {
      const uint8_t* codes = static_cast<const uint8_t*>(kv.values[1]) + 3 * 16 * kv.kv_dim + k * 16 * 16 + 5 * 16;
      for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(codes[i], expect_codes[k * 16 + i]) << "head " << k << " element " << i;
    }
    EXPECT_EQ(kv.value_scales[1][row * 2], expect_scales[0]);
    EXPECT_EQ(kv.value_scales[1][row * 2 + 1], expect_scales[1]);
    EXPECT_EQ(kv.key_scales[1][row * 2], 0.0f);  // untouched: the mapping's zero pages
  }
}

// The pool's head-major blocks: each KV head's elements of a row land in that head's run of the
// row's block, converted as a row-major store converts them.
TEST(KvStore, StoreKvRowPutsEachKvHeadInItsRunOfTheBlock) {
  const ModelConfig& c = find_model_preset("tiny-llama")->config;  // 2 KV heads of 16
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    Result<KvBlockPool> pool = KvBlockPool::create(c, dtype, 8, 3);
    ASSERT_TRUE(pool) << pool.status().message();
    const KvStoreView& kv = pool->view();
    ASSERT_TRUE(kv.head_major);
    std::vector<float> src(kv.kv_dim);
    for (int64_t i = 0; i < kv.kv_dim; ++i) src[i] = 0.37f * static_cast<float>(i) - 3.1f;
    const int64_t row = 2 * 8 + 6;  // block 2, row 6
    store_kv_row(kv, kv.keys[0], nullptr, row, src.data());
    // The same row stored row-major, as the reference for the conversion.
    KvStoreView flat = kv;
    flat.head_major = false;
    const size_t elem = dtype_info(dtype).block_bytes;
    std::vector<uint8_t> expect(kv.kv_dim * elem);
    store_kv_row(flat, expect.data(), nullptr, 0, src.data());
    const auto* base = static_cast<const uint8_t*>(kv.keys[0]);
    for (int64_t k = 0; k < 2; ++k) {
      const uint8_t* got = base + (2 * 8 * kv.kv_dim + k * 8 * 16 + 6 * 16) * elem;
      EXPECT_EQ(std::memcmp(got, expect.data() + k * 16 * elem, 16 * elem), 0) << dtype_name(dtype) << " head " << k;
    }
  }
}

TEST(KvStore, NamesAndRowBytes) {
  EXPECT_EQ(kv_cache_dtype_from_name("fp8"), DType::F8_E4M3);
  EXPECT_EQ(kv_cache_dtype_from_name("FP8"), DType::F8_E4M3);
  EXPECT_EQ(kv_cache_dtype_from_name("f8_e4m3"), DType::F8_E4M3);
  EXPECT_EQ(kv_cache_dtype_from_name("int8"), DType::I8);
  EXPECT_EQ(kv_cache_dtype_from_name("BF16"), DType::BF16);
  EXPECT_FALSE(kv_cache_dtype_from_name("q4_0").has_value());
  EXPECT_FALSE(kv_cache_dtype_from_name("f8").has_value());
  EXPECT_STREQ(kv_cache_dtype_name(DType::I8), "int8");
  EXPECT_EQ(*kv_cache_dtype_for("auto", /*f32_weights=*/true), DType::F32);
  EXPECT_EQ(*kv_cache_dtype_for("auto", /*f32_weights=*/false), DType::F16);
  EXPECT_EQ(*kv_cache_dtype_for("int8", true), DType::I8);
  const Result<DType> unknown = kv_cache_dtype_for("q4", false);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.status().message().find("'q4' is not a KV cache dtype"), std::string::npos);
  EXPECT_TRUE(is_kv_cache_dtype(DType::F8_E4M3));
  EXPECT_FALSE(is_kv_cache_dtype(DType::Q8_0));
  EXPECT_EQ(kv_row_bytes(DType::F16, 8, 64), 1024u);
  EXPECT_EQ(kv_row_bytes(DType::I8, 8, 64), 512u + 32u);
  EXPECT_EQ(kv_row_bytes(DType::F8_E4M3, 8, 128), 1024u + 32u);
}

}  // namespace
}  // namespace anvil
