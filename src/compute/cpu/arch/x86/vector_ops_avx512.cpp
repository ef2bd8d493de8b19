// AVX-512 (F/BW/VL) softmax and SwiGLU with the polynomial exp, 16 lanes.
#if defined(__x86_64__)

// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/vector_ops_kernels.h"

// Only called after active_isa() said so; the region holds intrinsics and local code only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil::vector_ops_detail {
namespace {

#include "compute/cpu/vector_ops_simd.inc"
#include "compute/cpu/vector_ops_activations.inc"

}  // namespace

ActivationKernels activation_kernels_avx512() { return {softmax_kernel<16>, silu_mul_kernel<16>}; }

}  // namespace anvil::vector_ops_detail

#pragma GCC pop_options

#endif  // __x86_64__
