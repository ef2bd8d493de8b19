// Measured machine limits (read bandwidth, peak GEMM FLOP/s): the denominators of every efficiency
// figure Anvil reports, measured once per CPU model and thread count and cached on disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "core/progress.h"
#include "core/thread_pool.h"

namespace anvil {

struct MeasureOptions {
  size_t bandwidth_bytes = size_t{1} << 30;  // streamed buffer; far beyond the last-level cache
  int bandwidth_runs = 5;                     // best of
  int64_t gemm_m = 512, gemm_k = 2048, gemm_n = 8192;  // a prefill-sized matmul: M x K @ K x N
  int gemm_runs = 5;                                   // best of
  ProgressCallback progress;                           // steps done / total; may be empty
};

struct GemmPeak {
  double gflops = 0;  // 0 when unavailable
  std::string impl;   // oneDNN implementation, or why it is unavailable
};

struct MachineLimits {
  std::string cpu_model;
  int threads = 0;
  double read_bandwidth_gbs = 0;  // GB/s = 1e9 bytes/s
  std::string bandwidth_isa;      // "avx512", "avx2" or "scalar"
  size_t bandwidth_bytes = 0;
  GemmPeak f32, bf16, int8;       // int8 = u8 x s8 -> s32
  std::string gemm_shape;         // "512x2048 @ 2048x8192"
  std::string measured_at;        // ISO-8601 UTC
};

// Streams `bytes` (allocated once, pages touched first) with all pool threads; best of `runs`.
Result<double> measure_read_bandwidth(ThreadPool& pool, size_t bytes, int runs, std::string* isa = nullptr);
// Peak of one oneDNN matmul type ("f32", "bf16", "int8"); unavailable types give gflops 0.
GemmPeak measure_gemm_peak(ThreadPool& pool, const std::string& type, int64_t m, int64_t n, int64_t k, int runs);
// Everything above, uncached.
Result<MachineLimits> measure_machine_limits(ThreadPool& pool, const MeasureOptions& options);

// The cached limits for this CPU model and pool size, measured (and stored) when absent or when
// `remeasure`. The cache is one JSON file holding an entry per "cpu model|threads" key.
Result<MachineLimits> machine_limits(ThreadPool& pool, const MeasureOptions& options, bool remeasure);
// $ANVIL_CACHE_DIR, else $XDG_CACHE_HOME/anvil, else $HOME/.cache/anvil; + "/machine_limits.json".
std::string machine_limits_cache_path();
// Cached limits only (no measuring); nullopt when none are stored for this CPU and thread count.
std::optional<MachineLimits> cached_machine_limits(int threads);

nlohmann::json machine_limits_to_json(const MachineLimits& limits);
Result<MachineLimits> machine_limits_from_json(const nlohmann::json& j);

// The CPU caches of cpu0 as the kernel reports them (/sys/devices/system/cpu/cpu0/cache).
struct CpuCache {
  int level = 0;
  std::string type;  // "Data", "Instruction", "Unified"
  size_t size_bytes = 0;
  int shared_by_cpus = 1;
};
std::vector<CpuCache> read_cpu_caches();

}  // namespace anvil
