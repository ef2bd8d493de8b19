// AVX2 (+FMA) flash-attention kernel: the width-generic kernel of attention_flash.inc at 8 lanes.
#if defined(__x86_64__)

// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/attention_kernels.h"

// Only called after active_isa() said so; the region holds intrinsics and local code only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil::attention_detail {
namespace {

#include "compute/cpu/vector_ops_simd.inc"
#include "compute/cpu/attention_flash.inc"

}  // namespace

FlashKernel flash_kernel_avx2() { return flash_kernel<8>; }

}  // namespace anvil::attention_detail

#pragma GCC pop_options

#endif  // __x86_64__
