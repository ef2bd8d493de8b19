// Internal interface between vector_ops' dispatcher and its per-ISA activation kernels.
#pragma once

#include <cstdint>

namespace anvil::vector_ops_detail {

using SoftmaxFn = void (*)(float* x, int64_t n);
using SiluMulFn = void (*)(float* gate, const float* up, int64_t n);

struct ActivationKernels {
  SoftmaxFn softmax;
  SiluMulFn silu_mul;
};

// Polynomial-exp kernels per ISA (the scalar level uses the std::exp references instead).
ActivationKernels activation_kernels_avx2();
ActivationKernels activation_kernels_avx512();

}  // namespace anvil::vector_ops_detail
