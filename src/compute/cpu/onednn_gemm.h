// oneDNN-backed GEMM providers (dequantize-on-the-fly to bf16/f32 + matmul primitive) and AMX setup.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "compute/cpu/gemm_provider.h"
#include "core/thread_pool.h"

namespace anvil {

// AMX tile data is off for a process until it asks the kernel (Linux >= 5.16) once:
// arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). Requested before the first oneDNN call.
enum class AmxPermission { NotPresent, Granted, Denied };
AmxPermission request_amx_permission();  // idempotent; the first call does the syscall and verifies it
bool amx_permission_granted();           // request_amx_permission() == Granted
const char* amx_permission_name(AmxPermission permission);  // "not present", "granted", "denied"

// The oneDNN providers, in registry order:
//   "onednn"      bf16 compute where the CPU has bf16 dot products (AVX512_BF16 / AMX-BF16), f32
//                 otherwise; F32 weights always in f32 (no conversion, full precision).
//   "onednn_bf16" bf16 compute always (needs AVX-512; slow without AVX512_BF16 or AMX).
//   "onednn_f32"  f32 compute always (weights dequantized to f32).
//   "onednn_int8" I8 (W8A8) weights only: an integer GEMM (compute/cpu/onednn_int8_gemm.h).
// Each pool thread takes a contiguous share of output-row blocks, converts a block of W to the
// compute type in its own scratch and runs a single-threaded oneDNN matmul on it, so exactly
// pool.thread_count() threads work and no OpenMP team ever runs beside Anvil's pool.
const std::vector<GemmProvider*>& onednn_gemm_providers();

// One row of W as the bf16 providers convert it, in stored column order (x comes gathered by
// matmul_input): direct kernels per dtype where the CPU has AVX512_BF16, else through
// weight_row_to_f32_as_stored (`row`: k floats of scratch). Exposed for tests.
void onednn_weight_row_to_bf16(const Tensor& weight, int64_t r, uint16_t* dst, float* row);

// Rows of W converted per block (default 256). For experiments; not thread-safe against run().
void set_onednn_gemm_block_rows(int64_t rows);

// Where the oneDNN providers spend their time, summed over threads (profiling is off by default;
// switching it on costs two clock reads per block).
struct OneDnnGemmProfile {
  double convert_seconds = 0;  // x and W to the compute type
  double gemm_seconds = 0;     // matmul primitive execution
  int64_t blocks = 0;
};
void set_onednn_gemm_profiling(bool enabled);
OneDnnGemmProfile take_onednn_gemm_profile();  // returns the totals so far and resets them

// One dense oneDNN matmul timed on its own with weights pre-reordered, both as one OpenMP team of
// pool.thread_count() threads and split over N across the pool (as the providers run), best of
// both: the peak-FLOP/s denominators of `anvil info`.
enum class MatmulDataType { F32, BF16, INT8 };  // INT8 = u8 x s8 -> s32
const char* matmul_data_type_name(MatmulDataType type);
struct MatmulTiming {
  double best_seconds = 0;
  double gflops = 0;
  std::string impl;  // oneDNN implementation, e.g. "brg:avx512_core_amx"
};
// Fails (rather than taking minutes) when oneDNN only has a reference implementation here.
Result<MatmulTiming> time_onednn_matmul(ThreadPool& pool, MatmulDataType type, int64_t m, int64_t n, int64_t k,
                                        int runs);

std::string onednn_version();  // "2.6.3"

}  // namespace anvil
