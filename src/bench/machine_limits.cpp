// Machine limits: streaming-read bandwidth, oneDNN peak GEMM FLOP/s, their JSON cache, CPU caches.
#include "bench/machine_limits.h"

#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "compute/cpu/onednn_gemm.h"
#include "core/cpu_features.h"
#include "core/json_error.h"

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_*() placeholders.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

// Eight independent accumulators keep enough loads in flight to saturate memory, not the adder.
__attribute__((target("avx512f"))) float sum_avx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    a4 = _mm512_add_ps(a4, _mm512_load_ps(p + i + 64));
    a5 = _mm512_add_ps(a5, _mm512_load_ps(p + i + 80));
    a6 = _mm512_add_ps(a6, _mm512_load_ps(p + i + 96));
    a7 = _mm512_add_ps(a7, _mm512_load_ps(p + i + 112));
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                 _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  float total = _mm512_reduce_add_ps(s);
  for (; i < n; ++i) total += p[i];
  return total;
}

__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    a4 = _mm256_add_ps(a4, _mm256_load_ps(p + i + 32));
    a5 = _mm256_add_ps(a5, _mm256_load_ps(p + i + 40));
    a6 = _mm256_add_ps(a6, _mm256_load_ps(p + i + 48));
    a7 = _mm256_add_ps(a7, _mm256_load_ps(p + i + 56));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float total = 0;
  for (float v : lanes) total += v;
  for (; i < n; ++i) total += p[i];
  return total;
}

float sum_scalar(const float* p, size_t n) {
  float a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  float total = 0;
  for (float v : a) total += v;
  for (; i < n; ++i) total += p[i];
  return total;
}

using SumFn = float (*)(const float*, size_t);

SumFn pick_sum(std::string* isa) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f) {
    if (isa) *isa = "avx512";
    return sum_avx512;
  }
  if (f.avx2) {
    if (isa) *isa = "avx2";
    return sum_avx2;
  }
  if (isa) *isa = "scalar";
  return sum_scalar;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string cache_key(const std::string& model, int threads) { return model + "|threads=" + std::to_string(threads); }

std::string read_trimmed(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

}  // namespace

Result<double> measure_read_bandwidth(ThreadPool& pool, size_t bytes, int runs, std::string* isa) {
  const size_t n = bytes / sizeof(float) / 1024 * 1024;  // whole 4 KiB pages of floats
  if (n == 0 || runs <= 0) return Status::error("read bandwidth: need at least 4 KiB and one run");
  std::unique_ptr<float, FreeDeleter> buffer(static_cast<float*>(std::aligned_alloc(4096, n * sizeof(float))));
  if (!buffer) return Status::error("read bandwidth: cannot allocate " + std::to_string(bytes) + " bytes");
  float* data = buffer.get();
  // Huge pages (where the kernel allows) keep TLB misses out of a memory-bandwidth figure.
  madvise(data, n * sizeof(float), MADV_HUGEPAGE);
  const SumFn sum = pick_sum(isa);
  // Each thread touches (first-touch) and later streams the same share, so pages are local to it.
  auto share = [n](int t, int count, size_t& begin, size_t& end) {
    const size_t chunk = (n / count) / 16 * 16;  // 64-byte aligned shares
    begin = chunk * t;
    end = t + 1 == count ? n : begin + chunk;
  };
  pool.run([&](int t, int count) {
    size_t begin, end;
    share(t, count, begin, end);
    // Distinct values on every page: a hypervisor that merges identical pages (KSM) would serve
    // a constant buffer from a few shared pages and report cache speed as memory bandwidth.
    for (size_t i = begin; i < end; ++i) data[i] = static_cast<float>(static_cast<uint32_t>(i * 2654435761u) >> 8);
  });
  std::atomic<uint32_t> sink{0};
  double best = 1e30;
  for (int run = 0; run < runs; ++run) {
    const Clock::time_point t0 = Clock::now();
    pool.run([&](int t, int count) {
      size_t begin, end;
      share(t, count, begin, end);
      const float s = sum(data + begin, end - begin);
      uint32_t bits;
      std::memcpy(&bits, &s, sizeof(bits));
      sink.fetch_xor(bits, std::memory_order_relaxed);  // the sum is used, so the loads stay
    });
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return static_cast<double>(n * sizeof(float)) / best / 1e9;
}

GemmPeak measure_gemm_peak(ThreadPool& pool, const std::string& type, int64_t m, int64_t n, int64_t k, int runs) {
  MatmulDataType data_type;
  if (type == "f32") data_type = MatmulDataType::F32;
  else if (type == "bf16") data_type = MatmulDataType::BF16;
  else if (type == "int8") data_type = MatmulDataType::INT8;
  else return {0, "unknown GEMM type " + type};
  Result<MatmulTiming> timing = time_onednn_matmul(pool, data_type, m, n, k, runs);
  if (!timing) return {0, "unavailable: " + timing.status().message()};
  return {timing->gflops, timing->impl};
}

Result<MachineLimits> measure_machine_limits(ThreadPool& pool, const MeasureOptions& options) {
  MachineLimits limits;
  limits.cpu_model = cpu_features().model_name;
  limits.threads = pool.thread_count();
  limits.bandwidth_bytes = options.bandwidth_bytes;
  limits.gemm_shape = std::to_string(options.gemm_m) + "x" + std::to_string(options.gemm_k) + " @ " +
                      std::to_string(options.gemm_k) + "x" + std::to_string(options.gemm_n);
  const uint64_t total_steps = 4;
  auto progress = [&](uint64_t done) {
    if (options.progress) options.progress(done, total_steps);
  };
  progress(0);
  Result<double> bandwidth = measure_read_bandwidth(pool, options.bandwidth_bytes, options.bandwidth_runs,
                                                    &limits.bandwidth_isa);
  if (!bandwidth) return bandwidth.status();
  limits.read_bandwidth_gbs = *bandwidth;
  progress(1);
  GemmPeak* peaks[] = {&limits.f32, &limits.bf16, &limits.int8};
  const char* names[] = {"f32", "bf16", "int8"};
  for (int i = 0; i < 3; ++i) {
    *peaks[i] = measure_gemm_peak(pool, names[i], options.gemm_m, options.gemm_n, options.gemm_k, options.gemm_runs);
    progress(2 + i);
  }
  limits.measured_at = utc_now();
  return limits;
}

nlohmann::json machine_limits_to_json(const MachineLimits& l) {
  return {{"cpu_model", l.cpu_model},
          {"threads", l.threads},
          {"read_bandwidth_gbs", l.read_bandwidth_gbs},
          {"bandwidth_isa", l.bandwidth_isa},
          {"bandwidth_bytes", l.bandwidth_bytes},
          {"peak_gflops", {{"f32", l.f32.gflops}, {"bf16", l.bf16.gflops}, {"int8", l.int8.gflops}}},
          {"gemm_impl", {{"f32", l.f32.impl}, {"bf16", l.bf16.impl}, {"int8", l.int8.impl}}},
          {"gemm_shape", l.gemm_shape},
          {"measured_at", l.measured_at}};
}

Result<MachineLimits> machine_limits_from_json(const nlohmann::json& j) {
  try {
    MachineLimits l;
    l.cpu_model = j.at("cpu_model").get<std::string>();
    l.threads = j.at("threads").get<int>();
    l.read_bandwidth_gbs = j.at("read_bandwidth_gbs").get<double>();
    l.bandwidth_isa = j.value("bandwidth_isa", "");
    l.bandwidth_bytes = j.value("bandwidth_bytes", size_t{0});
    const nlohmann::json& peaks = j.at("peak_gflops");
    const nlohmann::json impls = j.value("gemm_impl", nlohmann::json::object());
    l.f32 = {peaks.at("f32").get<double>(), impls.value("f32", "")};
    l.bf16 = {peaks.at("bf16").get<double>(), impls.value("bf16", "")};
    l.int8 = {peaks.at("int8").get<double>(), impls.value("int8", "")};
    l.gemm_shape = j.value("gemm_shape", "");
    l.measured_at = j.value("measured_at", "");
    if (!std::isfinite(l.read_bandwidth_gbs) || l.read_bandwidth_gbs <= 0)
      return Status::error("read_bandwidth_gbs must be a positive number");
    return l;
  } catch (const nlohmann::json::exception& e) {
    return Status::error(json_error_text(e));
  }
}

std::string machine_limits_cache_path() {
  std::filesystem::path dir;
  if (const char* v = std::getenv("ANVIL_CACHE_DIR"); v && *v) dir = v;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::filesystem::path(x) / "anvil";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::filesystem::path(h) / ".cache" / "anvil";
  else dir = std::filesystem::temp_directory_path() / "anvil";
  return (dir / "machine_limits.json").string();
}

namespace {

// The whole cache file; an unreadable or corrupt file counts as empty (it is only a cache).
nlohmann::json read_cache_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("entries") || !j["entries"].is_object()) return nlohmann::json::object();
  return j;
}

Status write_cache_file(const std::string& path, const nlohmann::json& j) {
  std::error_code ec;
  const std::filesystem::path p(path);
  std::filesystem::create_directories(p.parent_path(), ec);
  if (ec) return Status::error(path + ": cannot create the directory: " + ec.message());
  // Write then rename, so a concurrent reader never sees half a file.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::error(tmp + ": cannot write");
    out << j.dump(2) << "\n";
    if (!out) return Status::error(tmp + ": write failed");
  }
  std::filesystem::rename(tmp, p, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return Status::error(path + ": cannot replace the cache file");
  }
  return Status::ok();
}

}  // namespace

std::optional<MachineLimits> cached_machine_limits(int threads) {
  const nlohmann::json cache = read_cache_file(machine_limits_cache_path());
  if (!cache.contains("entries")) return std::nullopt;
  const std::string key = cache_key(cpu_features().model_name, threads);
  const nlohmann::json& entries = cache["entries"];
  if (!entries.contains(key)) return std::nullopt;
  Result<MachineLimits> limits = machine_limits_from_json(entries[key]);
  if (!limits) return std::nullopt;
  return std::move(limits).value();
}

Result<MachineLimits> machine_limits(ThreadPool& pool, const MeasureOptions& options, bool remeasure) {
  if (!remeasure)
    if (std::optional<MachineLimits> cached = cached_machine_limits(pool.thread_count())) return *cached;
  ANVIL_ASSIGN_OR_RETURN(MachineLimits limits, measure_machine_limits(pool, options));
  const std::string path = machine_limits_cache_path();
  nlohmann::json cache = read_cache_file(path);
  if (!cache.contains("entries")) cache = {{"version", 1}, {"entries", nlohmann::json::object()}};
  cache["entries"][cache_key(limits.cpu_model, limits.threads)] = machine_limits_to_json(limits);
  // Failing to cache is not failing to measure: the numbers are still good for this run.
  if (Status s = write_cache_file(path, cache); !s.is_ok())
    std::fprintf(stderr, "anvil: warning: %s\n", s.message().c_str());
  return limits;
}

std::vector<CpuCache> read_cpu_caches() {
  std::vector<CpuCache> caches;
  const std::filesystem::path root("/sys/devices/system/cpu/cpu0/cache");
  std::error_code ec;
  for (int index = 0; index < 16; ++index) {
    const std::filesystem::path dir = root / ("index" + std::to_string(index));
    if (!std::filesystem::exists(dir, ec)) break;
    CpuCache cache;
    cache.level = std::atoi(read_trimmed(dir / "level").c_str());
    cache.type = read_trimmed(dir / "type");
    const std::string size = read_trimmed(dir / "size");  // "48K", "2048K", "32M"
    size_t bytes = std::strtoull(size.c_str(), nullptr, 10);
    if (!size.empty() && (size.back() == 'K' || size.back() == 'k')) bytes <<= 10;
    if (!size.empty() && size.back() == 'M') bytes <<= 20;
    if (!size.empty() && size.back() == 'G') bytes <<= 30;
    cache.size_bytes = bytes;
    // shared_cpu_list is "0-1" or "0,2,4": count the CPUs it names.
    const std::string list = read_trimmed(dir / "shared_cpu_list");
    int count = 0;
    std::stringstream parts(list);
    std::string part;
    while (std::getline(parts, part, ',')) {
      const size_t dash = part.find('-');
      if (dash == std::string::npos) ++count;
      else count += std::atoi(part.c_str() + dash + 1) - std::atoi(part.c_str()) + 1;
    }
    cache.shared_by_cpus = std::max(1, count);
    caches.push_back(cache);
  }
  return caches;
}

}  // namespace anvil
