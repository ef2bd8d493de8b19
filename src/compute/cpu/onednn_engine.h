// The oneDNN CPU engine, debug switch and block loop shared by the oneDNN GEMM providers
// (internal to compute/cpu).
#pragma once

#include <cstdint>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>

#include "anvil/status.h"
#include "core/thread_pool.h"

namespace anvil {

// Created once, after the AMX permission request (onednn_gemm.h); leaked on purpose, since pool
// threads' thread_local streams may outlive static destruction order.
dnnl::engine& onednn_cpu_engine();

// ANVIL_DEBUG set (and not "0"): the providers log the oneDNN implementation they got, once.
bool onednn_debug_enabled();

// Rows of W per block when n output rows are shared by `threads` threads: `preferred`, shrunk
// (to a multiple of 16, at least 16) so that every thread gets work.
int64_t onednn_block_rows(int64_t n, int threads, int64_t preferred);

// Runs blocks [0, n_blocks) on the pool, shared out by StealingRanges (core/stealing_ranges.h:
// each thread starts on a contiguous share and then helps with the others'), with oneDNN inline on
// the pool thread: OpenMP at one thread (what single-threaded primitives plan for), the thread's
// setting restored after. A oneDNN error or other exception stops that thread (its untaken
// blocks may still run on the others) and is returned (the first by thread index).
Status onednn_run_blocks(ThreadPool& pool, int64_t n_blocks, const std::function<void(int thread, int64_t block)>& run);

}  // namespace anvil
