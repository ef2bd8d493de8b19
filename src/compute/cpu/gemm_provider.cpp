// The GEMM provider registry and the "reference" provider (the plain matmul every path must match).
#include "compute/cpu/gemm_provider.h"

#include <string>

#include "compute/cpu/matmul.h"
#include "compute/cpu/onednn_gemm.h"

namespace anvil {
namespace {

// Wraps anvil::matmul_reference: f32 products over dequantized rows (the accuracy baseline).
class ReferenceGemm final : public GemmProvider {
 public:
  const char* name() const override { return "reference"; }
  bool supports(DType, int64_t, int64_t, int64_t) const override { return true; }
  GemmCompute compute(DType) const override { return GemmCompute::F32; }
  Status run(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m_tokens, float* y) override {
    ANVIL_RETURN_IF_ERROR(check_gemm_args(*this, weight, x, m_tokens, y));
    matmul_reference(pool, weight, x, m_tokens, y);
    return Status::ok();
  }
};

// The GEMV kernels: bandwidth-bound, the decode path (few tokens).
class GemvGemm final : public GemmProvider {
 public:
  const char* name() const override { return "gemv"; }
  bool supports(DType, int64_t, int64_t, int64_t) const override { return true; }
  GemmCompute compute(DType weight_dtype) const override {
    // GGML blocks and I8 (W8A8) multiply int8 activations; F8_E4M3 and I4 (W8A16, W4A16) bf16.
    if (dtype_is_ggml_block(weight_dtype) || weight_dtype == DType::I8) return GemmCompute::Int8Activations;
    if (weight_dtype == DType::F8_E4M3 || weight_dtype == DType::I4) return GemmCompute::Bf16Activations;
    return GemmCompute::F32;
  }
  Status run(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m_tokens, float* y) override {
    ANVIL_RETURN_IF_ERROR(check_gemm_args(*this, weight, x, m_tokens, y));
    matmul_gemv(pool, weight, x, m_tokens, y);
    return Status::ok();
  }
};

}  // namespace

Status check_gemm_args(const GemmProvider& provider, const Tensor& weight, const float* x, int64_t m_tokens,
                       const float* y) {
  const std::string where = std::string("gemm provider ") + provider.name() + ", weight " + weight.name;
  if (weight.shape.size() != 2)
    return Status::error(where + ": expected a 2-D weight, got shape " + weight.shape_string());
  if (weight.data == nullptr || x == nullptr || y == nullptr) return Status::error(where + ": null buffer");
  if (m_tokens <= 0) return Status::error(where + ": m_tokens must be positive, got " + std::to_string(m_tokens));
  if (weight.cols() % dtype_info(weight.dtype).block_elems != 0)
    return Status::error(where + ": " + std::to_string(weight.cols()) + " columns is not a multiple of the " +
                         dtype_name(weight.dtype) + " block size");
  ANVIL_RETURN_IF_ERROR(check_quant_scale_layout(weight).with_context("gemm provider " + std::string(provider.name())));
  if (!provider.supports(weight.dtype, m_tokens, weight.rows(), weight.cols()))
    return Status::error(where + ": " + dtype_name(weight.dtype) + " " + weight.shape_string() +
                         " is not supported on this CPU");
  return Status::ok();
}

const std::vector<GemmProvider*>& gemm_providers() {
  static ReferenceGemm reference;
  static GemvGemm gemv;
  static const std::vector<GemmProvider*> providers = [] {
    std::vector<GemmProvider*> list{&reference, &gemv};
    for (GemmProvider* p : onednn_gemm_providers()) list.push_back(p);
    return list;
  }();
  return providers;
}

GemmProvider* find_gemm_provider(std::string_view name) {
  for (GemmProvider* p : gemm_providers())
    if (name == p->name()) return p;
  return nullptr;
}

}  // namespace anvil
