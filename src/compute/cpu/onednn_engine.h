// The oneDNN CPU engine and debug switch shared by the oneDNN GEMM providers (internal to compute/cpu).
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace anvil {

// Created once, after the AMX permission request (onednn_gemm.h); leaked on purpose, since pool
// threads' thread_local streams may outlive static destruction order.
dnnl::engine& onednn_cpu_engine();

// ANVIL_DEBUG set (and not "0"): the providers log the oneDNN implementation they got, once.
bool onednn_debug_enabled();

}  // namespace anvil
