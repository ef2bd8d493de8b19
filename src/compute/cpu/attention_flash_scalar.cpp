// The flash-attention kernel at one lane per vector: the Isa::Scalar path (baseline x86-64 or any CPU).
#include <cstdint>

#include "compute/cpu/attention_kernels.h"

namespace anvil::attention_detail {
namespace {

#include "compute/cpu/vector_ops_simd.inc"
#include "compute/cpu/attention_flash.inc"

}  // namespace

FlashKernel flash_kernel_scalar() { return flash_kernel<1>; }

}  // namespace anvil::attention_detail
