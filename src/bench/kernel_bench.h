// Kernel benchmark: each CPU kernel per shape and weight type, as GB/s or GFLOP/s and the share of the measured limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "bench/machine_limits.h"
#include "core/dtype.h"
#include "core/progress.h"
#include "core/thread_pool.h"

namespace anvil {

// A weight matrix as the engine stores it: (rows, cols) = (out_features, in_features).
struct MatrixShape {
  int64_t rows = 0;
  int64_t cols = 0;
  std::string to_string() const;  // "8192x2048"
  bool operator==(const MatrixShape& o) const { return rows == o.rows && cols == o.cols; }
};

// The model whose sizes give the default matrices and the element-wise/attention shapes.
// Defaults: Llama-3.2-1B.
struct KernelBenchModel {
  int64_t dim = 2048;
  int64_t hidden_dim = 8192;
  int64_t n_heads = 32;
  int64_t n_kv_heads = 8;
  int64_t head_dim = 64;
  int64_t vocab_size = 128256;
  double rope_theta = 500000.0;
  // q, k, v, o, gate, up, down and the output projection, duplicates removed.
  std::vector<MatrixShape> matrices() const;
};

// Every kernel name run_kernel_bench knows, in its order.
const std::vector<std::string>& kernel_bench_kernels();  // gemv gemm rmsnorm rope softmax attention

// The largest token count the "gemv" kernel is measured at (the decode range of compute/cpu/gemv.h).
constexpr int64_t kKernelBenchMaxGemvTokens = 8;

struct KernelBenchOptions {
  std::vector<std::string> kernels = kernel_bench_kernels();
  // Q8_0_R4 / Q4_0_R4 / Q4_K_R4: Q8_0 / Q4_0 / Q4_K in the panels decode runs them in (quant/ggml_panels.h).
  std::vector<DType> dtypes = {DType::F32,  DType::F16,  DType::BF16,    DType::Q8_0, DType::Q4_0,    DType::Q4_K,
                               DType::Q6_K, DType::F8_E4M3, DType::I8, DType::I4,   DType::Q8_0_R4, DType::Q4_0_R4, DType::Q4_K_R4};
  std::vector<MatrixShape> shapes;                  // empty: model.matrices()
  std::vector<int64_t> gemv_tokens = {1};           // "gemv": matmul_gemv, GB/s of weight bytes
  std::vector<int64_t> gemm_tokens = {512};         // "gemm": each provider, GFLOP/s
  std::vector<std::string> providers = {"onednn"};  // GEMM providers (compute/cpu/gemm_provider.h)
  int64_t op_tokens = 512;                          // rmsnorm/rope/softmax rows and prefill-attention length
  int64_t decode_context = 4096;                    // keys of the decode attention; softmax row length
  KernelBenchModel model;
  double min_seconds = 0.3;       // each measurement repeats until this much time has passed
  size_t working_set_bytes = 0;   // weight copies cycled per measurement; 0: default_kernel_bench_working_set(limits)
  uint64_t seed = 1234;
};

// max(256 MiB, 4 x the largest CPU cache, the buffer the read bandwidth was measured over), so
// cycled weights come from DRAM as the limit's did. (Virtual machines may under-report their
// caches: a 256 MiB cycle still hit cache on a VM that claims a 32 MiB L3.)
size_t default_kernel_bench_working_set(const MachineLimits& limits);

// One measurement. Byte and FLOP counts are per call; conventions:
//   gemv/gemm: bytes = the weight matrix once (what a decode step streams); FLOPs = 2 x rows x cols x tokens.
//   rmsnorm/rope/softmax: bytes = each input element read once and each output written once (f32).
//   attention: FLOPs = 4 x head_dim per (query head, attended key) pair (q·k and the weighted sum of
//     v; softmax not counted); causal prefill of T tokens attends T(T+1)/2 keys per head. bytes = q,
//     K and V (all kv heads) and out, once.
struct KernelBenchRow {
  std::string kernel;     // one of kernel_bench_kernels()
  std::string dtype;      // weight dtype ("Q4_0"), "F32" for the float ops
  std::string shape;      // "8192x2048", "512x2048", "32/8x64 ctx512"
  int64_t tokens = 0;
  std::string provider;   // GEMM provider; the kernel name for the others
  std::string compute;    // "f32", "bf16", "int8" (gemm), "f32" elsewhere
  std::string isa;        // active_isa() while measured
  int repetitions = 0;    // timed calls (after one warm-up call)
  double median_seconds = 0;
  double bytes = 0;       // per call
  double flops = 0;       // per call
  std::string unit;       // "GB/s" or "GFLOP/s": the headline figure
  double value = 0;       // in `unit` (1e9 bytes or FLOPs per second)
  std::string limit;      // "read bandwidth", "f32 peak", "bf16 peak", "int8 peak"
  double limit_value = 0; // in `unit`; 0 when the machine limits lack it
  double percent_of_limit = 0;  // 100 x value / limit_value; 0 when limit_value is 0
};

struct KernelBenchResult {
  std::vector<KernelBenchRow> rows;
  std::vector<std::string> skipped;  // "gemm onednn_bf16 F32 2048x2048: not supported on this CPU"
  size_t working_set_bytes = 0;
};

// Runs the selected kernels. Weights are generated once per (shape, dtype) — random values
// quantized with the dtype's from_float — and copied until the copies exceed the working set;
// successive calls cycle over the copies. Each measurement is one warm-up call, then calls until
// min_seconds have passed (at least one); the median call time is reported. Shares are computed
// from `limits`. Fails on invalid options (unknown kernel or provider, non-positive sizes) or when
// memory runs out; combinations a kernel cannot run (columns not a multiple of the dtype's block,
// a provider that does not support the dtype here) are listed in `skipped`.
Result<KernelBenchResult> run_kernel_bench(ThreadPool& pool, const KernelBenchOptions& options,
                                           const MachineLimits& limits, const ProgressCallback& progress = {});

Status validate_kernel_bench_options(const KernelBenchOptions& options);

// Comma-separated lists as the CLI takes them; errors name the bad item and the accepted ones.
Result<std::vector<std::string>> parse_kernel_list(const std::string& text);  // "gemv,rope"
Result<std::vector<DType>> parse_dtype_list(const std::string& text);         // "f32,q4_0"
Result<std::vector<MatrixShape>> parse_shape_list(const std::string& text);   // "2048x8192,8192x2048"
Result<std::vector<int64_t>> parse_token_list(const std::string& text);       // "1,8,512"
Result<std::vector<std::string>> parse_provider_list(const std::string& text);  // "gemv,onednn"

nlohmann::json kernel_bench_row_to_json(const KernelBenchRow& row);
// A header line and one line per row (RFC 4180 quoting where needed).
std::string kernel_bench_csv(const KernelBenchResult& result);

}  // namespace anvil
