// GemmProvider: interchangeable implementations of y = x · Wᵀ, and the registry a tuner picks from.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace anvil {

// The precision the products are computed in, so callers (and tests) know the error to expect:
// F32 ~1e-5 relative, BF16 ~1e-2 (x and W rounded to bfloat16, f32 accumulation),
// Bf16Activations ~4e-3 (the GEMV kernels of W8A16 / W4A16: x rounded to bfloat16, W exact, so
// exact products and f32 sums), Int8Activations ~1e-2 (x quantized to int8 per block of 32 for
// GGML blocks, per token for I8 weights (W8A8); exact integer products).
enum class GemmCompute { F32, BF16, Bf16Activations, Int8Activations };

// x: (m_tokens, k_in) floats row-major; weight: (n_out, k_in) of any DType; y: (m_tokens, n_out)
// floats row-major — the same contract as anvil::matmul, so the engine can call any provider;
// that includes rounding x per token first for FP8 W8A8 weights (compute/cpu/matmul_input.h).
// Providers are shared objects (one instance each in the registry); run() may be called from
// several threads at once as long as each call has its own pool.
class GemmProvider {
 public:
  virtual ~GemmProvider() = default;
  virtual const char* name() const = 0;
  // Whether run() works for this weight dtype and shape on this CPU (being slow is not a reason
  // to say no, except where a path would take minutes; tuners measure speed themselves).
  virtual bool supports(DType weight_dtype, int64_t m_tokens, int64_t n_out, int64_t k_in) const = 0;
  virtual GemmCompute compute(DType weight_dtype) const = 0;
  virtual Status run(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m_tokens, float* y) = 0;
};

// Every provider built into this binary, in a fixed order ("reference" first). Providers that
// this CPU cannot run are still listed; supports() says no.
const std::vector<GemmProvider*>& gemm_providers();
// nullptr when no provider has that name.
GemmProvider* find_gemm_provider(std::string_view name);

// Shared argument checks for providers: a 2-D weight, non-null buffers, m > 0.
Status check_gemm_args(const GemmProvider& provider, const Tensor& weight, const float* x, int64_t m_tokens,
                       const float* y);

}  // namespace anvil
