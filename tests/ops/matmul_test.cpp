// matmul (GEMV kernels) and matmul_reference for every weight dtype, 1 and 2 threads, odd shapes,
// against a double-precision reference over the dequantized weights (so the check isolates the
// kernel, not the format). Quantized weights in matmul multiply int8-quantized activations,
// which bounds their error at about 1e-2 (see compute/cpu/gemv.h); everything else is exact f32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <random>
#include <vector>

#include "compute/cpu/matmul.h"

namespace anvil {
namespace {

TEST(Matmul, EveryDtypeMatchesReference) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const DTypeInfo& info = dtype_info(dtype);
    const int64_t out = 37, in = info.block_elems == 256 ? 512 : 96, tokens = 11;
    std::vector<float> w_float(out * in), x(tokens * in);
    for (float& v : w_float) v = dist(rng);
    for (float& v : x) v = dist(rng);
    std::vector<std::byte> bytes(dtype_bytes(dtype, out * in));
    for (int64_t r = 0; r < out; ++r) info.from_float(&w_float[r * in], bytes.data() + dtype_bytes(dtype, in) * r, in);
    Tensor w{"w", dtype, {out, in}, bytes.data(), bytes.size(), {}};

    std::vector<float> dequantized(out * in);
    for (int64_t r = 0; r < out; ++r) info.to_float(w.row(r), &dequantized[r * in], in);
    const bool quantized_activations = info.block_elems > 1;
    for (auto [path, bound] : {std::pair{"reference", 1e-5}, std::pair{"matmul", quantized_activations ? 3e-2 : 1e-5}})
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      std::vector<float> y(tokens * out);
      if (std::string(path) == "reference") matmul_reference(pool, w, x.data(), tokens, y.data());
      else matmul(pool, w, x.data(), tokens, y.data());
      double max_err = 0, max_ref = 0;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < out; ++r) {
          double ref = 0;
          for (int64_t i = 0; i < in; ++i) ref += static_cast<double>(dequantized[r * in + i]) * x[t * in + i];
          max_err = std::max(max_err, std::fabs(ref - y[t * out + r]));
          max_ref = std::max(max_ref, std::fabs(ref));
        }
      std::printf("matmul %-9s %-5s threads=%d normalized error %.3g\n", path, info.name, threads, max_err / max_ref);
      EXPECT_LT(max_err / max_ref, bound) << path << " " << info.name << " threads=" << threads;
    }
  }
}

// q/k/v-style calls sharing one input give bit-identical results to separate matmul() calls, on
// the fused GEMV path (decode sizes) and the per-weight path (prefill sizes, mixed dtypes), for
// row counts that are and are not multiples of the kernels' 16-row blocks.
TEST(Matmul, SharedInputEqualsSeparateCalls) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (DType dtype : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    const DTypeInfo& info = dtype_info(dtype);
    const int64_t in = info.block_elems == 256 ? 512 : 128;
    const int64_t rows[] = {64, 21, 37};
    std::vector<std::vector<std::byte>> storage;
    std::vector<Tensor> weights;
    for (int64_t out : rows) {
      std::vector<float> w_float(out * in);
      for (float& v : w_float) v = dist(rng);
      storage.emplace_back(dtype_bytes(dtype, out * in));
      for (int64_t r = 0; r < out; ++r)
        info.from_float(&w_float[r * in], storage.back().data() + dtype_bytes(dtype, in) * r, in);
    }
    for (size_t i = 0; i < storage.size(); ++i)
      weights.push_back(Tensor{"w", dtype, {rows[i], in}, storage[i].data(), storage[i].size(), {}});
    for (int64_t tokens : {1, 3, 8, 11, 130})
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        std::vector<float> x(tokens * in);
        for (float& v : x) v = dist(rng);
        std::vector<std::vector<float>> fused(3), separate(3);
        std::vector<MatmulOutput> outputs;
        for (int i = 0; i < 3; ++i) {
          fused[i].assign(tokens * rows[i], -1.0f);
          separate[i].assign(tokens * rows[i], -2.0f);
          outputs.push_back({&weights[i], fused[i].data()});
          matmul(pool, weights[i], x.data(), tokens, separate[i].data());
        }
        matmul_shared_input(pool, outputs, x.data(), tokens);
        for (int i = 0; i < 3; ++i)
          EXPECT_EQ(fused[i], separate[i]) << info.name << " tokens=" << tokens << " threads=" << threads << " w" << i;
      }
  }
}

TEST(ThreadPool, ParallelForCoversRangeOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 100}) {
      std::vector<int> hits(n, 0);
      pool.parallel_for(n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) ++hits[i];
      });
      for (int h : hits) EXPECT_EQ(h, 1);
    }
  }
}

}  // namespace
}  // namespace anvil
