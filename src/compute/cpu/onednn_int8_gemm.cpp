// The "onednn_int8" GEMM provider: per-token int8 activations x I8 weights in place, exact int32 sums.
#include "compute/cpu/onednn_int8_gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "compute/cpu/gemv.h"  // GemvBuffer: 64-byte aligned, keeps its capacity
#include "compute/cpu/isa.h"
#include "compute/cpu/onednn_engine.h"
#include "core/cpu_features.h"
#include "core/quant_scales.h"
#include "quant/int8_w8a8.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their own _mm512_undefined_*()
// placeholders once inlined into target-attributed functions; the warning is about the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace anvil {
namespace {

using dt = dnnl::memory::data_type;
using format_tag = dnnl::memory::format_tag;

std::atomic<int64_t> g_block_rows{256};

// oneDNN's int8 kernels are exact only with vpdpbusd (VNNI) or AMX tiles: the AVX-512 fallback
// (vpmaddubsw) saturates int16 pair sums, which u8 activations up to 255 reach.
bool cpu_has_exact_int8_matmul() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
}

// Grows only: a block with fewer rows than the last one must not pay for zeroing on the way back.
template <typename T>
T* grown(GemvBuffer<T>& buffer, size_t count) {
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

// ---- the u8 shift ------------------------------------------------------------------------------------
//
// oneDNN is given u = x + 128 (u8) and W as s8, with no zero point or compensation attribute: it
// applies those (and its own s8 x s8 compensation) in f32, which rounds sums beyond 2^24 (measured
// with oneDNN 2.6: off by 20 at k = 130048). Its plain u8 x s8 -> s32 sums are integer throughout,
// so sum(u * w) - 128 * sum(w) = sum(x * w) is exact modulo 2^32, and the true dot fits int32
// (k <= kMaxI8Cols). The row sums of W come with each block, from the bytes oneDNN then reads from
// cache: no per-weight state to keep in step with the weights.

// bias[r] = -128 * sum(w[r][:]) modulo 2^32. The reference for the AVX-512 version.
void shift_bias_scalar(const int8_t* w, int64_t rows, int64_t k, uint32_t* bias) {
  for (int64_t r = 0; r < rows; ++r) {
    int64_t sum = 0;
    for (int64_t i = 0; i < k; ++i) sum += w[r * k + i];
    bias[r] = static_cast<uint32_t>(-128 * sum);
  }
}

#if defined(__x86_64__)
// vpsadbw sums 8 unsigned bytes per 64-bit lane: the codes flipped to w + 128, then 128 * k off.
__attribute__((target("avx512f,avx512bw"))) void shift_bias_avx512(const int8_t* w, int64_t rows, int64_t k,
                                                                     uint32_t* bias) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), zero = _mm512_setzero_si512();
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* row = w + r * k;
    __m512i sums = zero;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64)
      sums = _mm512_add_epi64(sums, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(row + i), flip), zero));
    if (i < k) {
      const __mmask64 m = (~0ull) >> (64 - (k - i));
      const __m512i u = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, row + i), flip));
      sums = _mm512_add_epi64(sums, _mm512_sad_epu8(u, zero));
    }
    const int64_t sum = _mm512_reduce_add_epi64(sums) - 128 * k;
    bias[r] = static_cast<uint32_t>(-128 * sum);
  }
}
#endif

void shift_bias(const int8_t* w, int64_t rows, int64_t k, uint32_t* bias) {
#if defined(__x86_64__)
  if (active_isa() >= Isa::Avx512) return shift_bias_avx512(w, rows, k, bias);
#endif
  shift_bias_scalar(w, rows, k, bias);
}

// u = x + 128 for int8 x: the top bit flipped.
void shift_codes(const int8_t* x, int64_t n, uint8_t* u) {
  for (int64_t i = 0; i < n; ++i) u[i] = static_cast<uint8_t>(x[i]) ^ 0x80u;
}

// ---- primitive cache ------------------------------------------------------------------------------

struct Int8MatmulKey {
  int64_t m, n, k;
  bool operator<(const Int8MatmulKey& o) const { return std::tie(m, n, k) < std::tie(o.m, o.n, o.k); }
};

struct CachedInt8Matmul {
  dnnl::matmul primitive;
  dnnl::memory::desc src, weights, dst, scratchpad;
  size_t scratchpad_bytes = 0;
};

// Primitive creation generates brgemm kernels (~0.1-1 ms): cached by shape. Called on pool threads
// with OpenMP at one thread, which is what the primitive plans for.
std::shared_ptr<const CachedInt8Matmul> get_int8_matmul(const Int8MatmulKey& key) {
  static std::mutex mutex;
  static std::map<Int8MatmulKey, std::shared_ptr<const CachedInt8Matmul>> cache;
  static bool logged = false;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 512) cache.clear();  // bounded: shapes come from a handful of layers x m values

  auto entry = std::make_shared<CachedInt8Matmul>();
  // u (m, k) row-major; the block of W (n rows of k) read as B = Wᵀ (k, n), format "ba"; the
  // int32 result dense (oneDNN's brgemm kernels want a dense dst, as in onednn_gemm.cpp).
  entry->src = dnnl::memory::desc({key.m, key.k}, dt::u8, format_tag::ab);
  entry->weights = dnnl::memory::desc({key.k, key.n}, dt::s8, format_tag::ba);
  entry->dst = dnnl::memory::desc({key.m, key.n}, dt::s32, format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per-thread scratch, no shared state
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(entry->src, entry->weights, entry->dst), attr,
                                  onednn_cpu_engine());
  entry->scratchpad = pd.scratchpad_desc();
  entry->scratchpad_bytes = entry->scratchpad.get_size();
  entry->primitive = dnnl::matmul(pd);
  if (onednn_debug_enabled() && !logged) {
    logged = true;
    std::fprintf(stderr, "anvil: debug: onednn int8 matmul m=%lld n=%lld k=%lld uses %s\n",
                 static_cast<long long>(key.m), static_cast<long long>(key.n), static_cast<long long>(key.k),
                 pd.impl_info_str());
  }
  cache.emplace(key, entry);
  return entry;
}

// ---- the blocks ------------------------------------------------------------------------------------

struct Int8ThreadState {
  GemvBuffer<int32_t> acc;   // one (m, block) slice of the u8 x s8 sums, dense
  GemvBuffer<uint32_t> bias;  // the block's shift_bias
  GemvBuffer<std::byte> scratchpad;
  std::optional<dnnl::stream> stream;
};
thread_local Int8ThreadState t_int8_state;

// Blocks of W's rows over the pool threads (onednn_run_blocks); per block, acc = u · Wᵀ of the block
// (m, rows) and its bias, then on_block(r0, rows, acc, bias) while both are in cache: the exact
// dot of token t and row r0 + j is int32(uint32(acc[t * rows + j]) + bias[j]).
template <typename OnBlock>
Status run_blocks(ThreadPool& pool, const uint8_t* u, int64_t m, const int8_t* w_codes, int64_t n, int64_t k,
                  const OnBlock& on_block) {
  onednn_cpu_engine();  // AMX permission and engine before any thread touches oneDNN
  const int64_t block = onednn_block_rows(n, pool.thread_count(), g_block_rows.load(std::memory_order_relaxed));
  return onednn_run_blocks(pool, (n + block - 1) / block, [&](int, int64_t b) {
    Int8ThreadState& state = t_int8_state;
    dnnl::engine& engine = onednn_cpu_engine();
    if (!state.stream) state.stream.emplace(engine);
    const int64_t r0 = b * block, rows = std::min(block, n - r0);
    std::shared_ptr<const CachedInt8Matmul> mm = get_int8_matmul({m, rows, k});
    void* scratch = grown(state.scratchpad, std::max<size_t>(mm->scratchpad_bytes, 64));
    int32_t* acc = grown(state.acc, static_cast<size_t>(m * rows));
    uint32_t* bias = grown(state.bias, static_cast<size_t>(rows));
    const int8_t* w = w_codes + r0 * k;
    shift_bias(w, rows, k, bias);
    mm->primitive.execute(*state.stream,
                          {{DNNL_ARG_SRC, dnnl::memory(mm->src, engine, const_cast<uint8_t*>(u))},
                           {DNNL_ARG_WEIGHTS, dnnl::memory(mm->weights, engine, const_cast<int8_t*>(w))},
                           {DNNL_ARG_DST, dnnl::memory(mm->dst, engine, acc)},
                           {DNNL_ARG_SCRATCHPAD, dnnl::memory(mm->scratchpad, engine, scratch)}});
    state.stream->wait();
    on_block(r0, rows, acc, bias);
  });
}

// ---- scaling ----------------------------------------------------------------------------------------

// y[t*y_stride + r] = float(dot) * (w_scale[r] * x_scale[t]) with dot = int32(acc + bias[r]): the
// GEMV kernels' order of operations, so the two paths agree to the bit. The reference for the
// AVX-512 version.
void scale_block_scalar(const int32_t* acc, const uint32_t* bias, int64_t m, int64_t rows, const float* w_scale,
                        const float* x_scale, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < m; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const auto dot = static_cast<int32_t>(static_cast<uint32_t>(acc[t * rows + r]) + bias[r]);
      y[t * y_stride + r] = static_cast<float>(dot) * (w_scale[r] * x_scale[t]);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) void scale_block_avx512(const int32_t* acc, const uint32_t* bias, int64_t m,
                                                             int64_t rows, const float* w_scale,
                                                             const float* x_scale, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < m; ++t) {
    const __m512 xs = _mm512_set1_ps(x_scale[t]);
    const int32_t* a = acc + t * rows;
    float* yt = y + t * y_stride;
    for (int64_t r = 0; r < rows; r += 16) {
      const __mmask16 mask = rows - r >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (rows - r)) - 1);
      const __m512i dot = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask, a + r), _mm512_maskz_loadu_epi32(mask, bias + r));
      const __m512 s = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, w_scale + r), xs);
      _mm512_mask_storeu_ps(yt + r, mask, _mm512_mul_ps(_mm512_cvtepi32_ps(dot), s));
    }
  }
}
#endif

void scale_block(const int32_t* acc, const uint32_t* bias, int64_t m, int64_t rows, const float* w_scale,
                 const float* x_scale, float* y, int64_t y_stride) {
#if defined(__x86_64__)
  if (active_isa() >= Isa::Avx512) return scale_block_avx512(acc, bias, m, rows, w_scale, x_scale, y, y_stride);
#endif
  scale_block_scalar(acc, bias, m, rows, w_scale, x_scale, y, y_stride);
}

// ---- the provider -----------------------------------------------------------------------------------

// The per-token activation codes of one call, on the calling thread (reused call after call).
struct Int8Activations {
  GemvBuffer<uint8_t> shifted;  // the codes + 128
  GemvBuffer<float> scales;
};

class OneDnnInt8Gemm final : public GemmProvider {
 public:
  const char* name() const override { return "onednn_int8"; }

  bool supports(DType weight_dtype, int64_t m_tokens, int64_t n_out, int64_t k_in) const override {
    if (weight_dtype != DType::I8 || m_tokens <= 0 || n_out <= 0 || k_in <= 0) return false;
    return k_in <= kMaxI8Cols && cpu_has_exact_int8_matmul();
  }

  GemmCompute compute(DType) const override { return GemmCompute::Int8Activations; }

  Status run(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m_tokens, float* y) override {
    ANVIL_RETURN_IF_ERROR(check_gemm_args(*this, weight, x, m_tokens, y));  // scales present, per channel
    const std::string where = std::string("gemm provider ") + name() + ", weight " + weight.name;
    try {
      return run_unchecked(pool, weight, x, m_tokens, y).with_context(where);
    } catch (const dnnl::error& e) {
      return Status::error(where + ": oneDNN: " + e.what());
    } catch (const std::exception& e) {
      return Status::error(where + ": " + e.what());
    }
  }

 private:
  static Status run_unchecked(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m, float* y) {
    const int64_t n = weight.rows(), k = weight.cols();
    // The caller's buffers (a thread_local named inside the lambdas would be each worker's own).
    thread_local Int8Activations caller_activations;
    Int8Activations& activations = caller_activations;
    uint8_t* u = grown(activations.shifted, static_cast<size_t>(m * k));
    float* x_scale = grown(activations.scales, static_cast<size_t>(m));
    pool.parallel_for(m, [&](int64_t begin, int64_t end) {
      if (begin >= end) return;
      std::vector<int8_t> codes(k);  // one token's codes, shifted while in L1
      for (int64_t t = begin; t < end; ++t) {
        quantize_int8_per_token(x + t * k, 1, k, codes.data(), x_scale + t);
        shift_codes(codes.data(), k, u + t * k);
      }
    });
    const float* w_scale = weight.quant.scale;  // per channel: one scale per row
    return run_blocks(pool, u, m, reinterpret_cast<const int8_t*>(weight.data), n, k,
                      [&](int64_t r0, int64_t rows, const int32_t* acc, const uint32_t* bias) {
                        scale_block(acc, bias, m, rows, w_scale + r0, x_scale, y + r0, n);
                      });
  }
};

}  // namespace

GemmProvider* onednn_int8_gemm_provider() {
  static OneDnnInt8Gemm provider;
  return &provider;
}

Status onednn_int8_matmul_s32(ThreadPool& pool, const int8_t* x_codes, int64_t m, const int8_t* w_codes,
                              int64_t n, int64_t k, int32_t* acc) {
  const std::string what = "int8 matmul " + std::to_string(m) + "x" + std::to_string(k) + " @ " +
                           std::to_string(k) + "x" + std::to_string(n);
  if (x_codes == nullptr || w_codes == nullptr || acc == nullptr) return Status::error(what + ": null buffer");
  if (!onednn_int8_gemm_provider()->supports(DType::I8, m, n, k))
    return Status::error(what + ": not supported on this CPU (needs AVX512-VNNI, positive sizes, k <= " +
                         std::to_string(kMaxI8Cols) + ")");
  GemvBuffer<uint8_t> u(static_cast<size_t>(m * k));
  shift_codes(x_codes, m * k, u.data());
  try {
    return run_blocks(pool, u.data(), m, w_codes, n, k,
                      [&](int64_t r0, int64_t rows, const int32_t* block, const uint32_t* bias) {
                        for (int64_t t = 0; t < m; ++t)
                          for (int64_t r = 0; r < rows; ++r)
                            acc[t * n + r0 + r] =
                                static_cast<int32_t>(static_cast<uint32_t>(block[t * rows + r]) + bias[r]);
                      })
        .with_context(what);
  } catch (const dnnl::error& e) {
    return Status::error(what + ": oneDNN: " + e.what());
  }
}

void set_onednn_int8_gemm_block_rows(int64_t rows) { g_block_rows.store(std::max<int64_t>(16, rows)); }

}  // namespace anvil
