// Kernel benchmark: generates weights and activations, times each kernel, and relates it to the machine limits.
#include "bench/kernel_bench.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "compute/cpu/attention.h"
#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/matmul.h"
#include "compute/cpu/rope.h"
#include "compute/cpu/vector_ops.h"
#include "core/tensor.h"
#include "quant/fp8.h"
#include "quant/ggml_panels.h"
#include "quant/int4_rtn.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

// ---- data ------------------------------------------------------------------------------------------

// Anonymous memory aligned to 2 MiB and advised to use transparent huge pages, as the bandwidth
// measurement of machine_limits.h streams it: the kernels are compared with the limit on equal terms.
class WeightMemory {
 public:
  explicit WeightMemory(size_t bytes) {
    constexpr size_t kHuge = size_t{2} << 20;
    length_ = (std::max<size_t>(bytes, 1) + 2 * kHuge - 1) / kHuge * kHuge;
    void* p = mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = p;
    const uintptr_t aligned = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
    data_ = reinterpret_cast<std::byte*>(aligned);
    madvise(data_, length_ - (aligned - reinterpret_cast<uintptr_t>(p)), MADV_HUGEPAGE);  // advice only: failure is harmless
  }
  ~WeightMemory() {
    if (base_) munmap(base_, length_);
  }
  WeightMemory(WeightMemory&& o) noexcept : base_(o.base_), length_(o.length_), data_(o.data_) { o.base_ = nullptr; }
  WeightMemory(const WeightMemory&) = delete;
  WeightMemory& operator=(const WeightMemory&) = delete;
  WeightMemory& operator=(WeightMemory&&) = delete;
  std::byte* data() const { return data_; }

 private:
  void* base_ = nullptr;
  size_t length_ = 0;
  std::byte* data_ = nullptr;
};

// splitmix64: reproducible values independent of the thread that generates a row.
uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [-scale, scale).
void fill_random(float* dst, int64_t n, uint64_t seed, float scale) {
  uint64_t state = seed;
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix(state) >> 11) * (1.0 / 9007199254740992.0);
    dst[i] = static_cast<float>((2.0 * u - 1.0) * scale);
  }
}

std::vector<float> random_floats(int64_t n, uint64_t seed, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  fill_random(v.data(), n, seed, scale);
  return v;
}

// One byte per `stride` bytes (at `offset`) that may take any value under `mask` without making
// the element or block invalid: a quant code, or low mantissa bits (never a scale or an exponent).
struct FreeByte {
  size_t stride, offset;
  uint8_t mask;
};
FreeByte free_byte(DType dtype) {
  switch (dtype) {
    case DType::F32: return {256, 0, 0xff};   // low mantissa byte of every 64th element
    case DType::F16: return {128, 0, 0xff};   // low mantissa byte (f16 has 10 mantissa bits)
    case DType::BF16: return {128, 0, 0x7f};  // bf16's low byte holds 7 mantissa bits and 1 exponent bit
    case DType::Q8_0: return {dtype_info(dtype).block_bytes, 2, 0xff};   // d (f16), then qs
    case DType::Q4_0: return {dtype_info(dtype).block_bytes, 2, 0xff};   // d (f16), then nibbles
    case DType::Q4_K: return {dtype_info(dtype).block_bytes, 16, 0xff};  // d, dmin, scales[12], then qs
    case DType::Q6_K: return {dtype_info(dtype).block_bytes, 0, 0xff};   // ql first, d last
    // The scaled types are codes only (their scales are apart): one code per 64 bytes.
    case DType::F8_E4M3: return {64, 0, 0x87};  // sign and low mantissa bits (NaN codes fixed up)
    case DType::I8: return {64, 0, 0x0f};
    case DType::I4: return {64, 0, 0xff};
    default: return {0, 0, 0};
  }
}

// Tiled rows and weight copies are byte-identical, and a hypervisor that merges identical pages
// (KSM on a KVM host) would then serve them from one physical copy, i.e. from cache: one byte per
// block is changed, by a hash of its index, so that no two pages of the working set are equal.
void make_pages_unique(ThreadPool& pool, DType dtype, std::byte* base, size_t bytes, uint64_t seed) {
  const FreeByte fb = free_byte(dtype);
  if (fb.stride == 0) return;
  pool.parallel_for(static_cast<int64_t>(bytes / fb.stride), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      uint64_t state = seed ^ static_cast<uint64_t>(i);
      uint8_t v = static_cast<uint8_t>(splitmix(state)) & fb.mask;
      if (v == 0) v = 1;
      auto* b = reinterpret_cast<uint8_t*>(base + static_cast<size_t>(i) * fb.stride + fb.offset);
      const uint8_t old = *b;
      *b ^= v;
      // An F8_E4M3 code must not turn into a NaN code (S.1111.111): flip its sign instead.
      if (dtype == DType::F8_E4M3 && (*b & 0x7f) == 0x7f) *b = old ^ 0x80;
    }
  });
}

// `copies` copies of one random (rows, cols) weight of `dtype`, back to back.
struct WeightCopies {
  std::unique_ptr<WeightMemory> storage;
  // Scaled types: each copy's (rows, groups) scales, back to back, in huge pages as the codes are
  // (a model's matrices keep theirs in weight memory too).
  std::unique_ptr<WeightMemory> scale_storage;
  float* scales = nullptr;
  size_t scale_count = 0;
  std::vector<Tensor> tensors;
};

// The scaled types' quantizers (what `anvil quantize` writes): per-channel F8_E4M3 and I8, and I4
// with symmetric groups of 128 (w4a16-rtn's default; 64 or 32 where 128 does not divide a row).
int64_t bench_i4_group(int64_t cols) { return cols % 128 == 0 ? 128 : cols % 64 == 0 ? 64 : 32; }
bool bench_can_quantize(DType dtype, int64_t cols) {
  if (dtype == DType::I4) return cols % 32 == 0;
  if (dtype_is_panels(dtype)) return true;  // quantized as their GGML type, then repacked
  return dtype == DType::F8_E4M3 || dtype == DType::I8 || dtype_info(dtype).from_float != nullptr;
}
Result<QuantizedMatrix> quantize_scaled(ThreadPool& pool, DType dtype, const float* w, int64_t rows, int64_t cols) {
  switch (dtype) {
    case DType::F8_E4M3: return quantize_fp8("bench", w, rows, cols, Fp8Granularity::PerChannel, pool);
    case DType::I8: return quantize_int8_per_channel("bench", w, rows, cols, pool);
    default: return quantize_int4_rtn("bench", w, rows, cols, {bench_i4_group(cols), true}, pool);
  }
}

// Quantizes about 8 M random elements (whole rows) with from_float and tiles them over the
// matrix (the values do not change the speed, and the full matrix would take the reference
// quantizers tens of seconds), copies the matrix, then makes every page distinct.
WeightCopies make_weights(ThreadPool& pool, DType dtype, const MatrixShape& shape, size_t working_set,
                          uint64_t seed) {
  if (dtype_is_panels(dtype)) {
    // The GGML type's copies (distinct pages), each repacked in place through one scratch matrix,
    // as repack_weights_for_decode does at load.
    WeightCopies w = make_weights(pool, ggml_dtype_of_panels(dtype), shape, working_set, seed);
    std::vector<std::byte> scratch(w.tensors.front().nbytes);
    for (Tensor& t : w.tensors) {
      std::memcpy(scratch.data(), t.data, t.nbytes);
      pool.parallel_for((shape.rows + kPanelRows - 1) / kPanelRows, [&](int64_t begin, int64_t end) {
        repack_to_panels(t.dtype, scratch.data(), shape.rows, shape.cols, begin, end, const_cast<std::byte*>(t.data));
      });
      t.dtype = dtype;
    }
    return w;
  }
  const DTypeInfo& info = dtype_info(dtype);
  const size_t row_bytes = dtype_bytes(dtype, shape.cols);
  const size_t matrix_bytes = row_bytes * static_cast<size_t>(shape.rows);
  const size_t copies = std::max<size_t>(1, (working_set + matrix_bytes - 1) / matrix_bytes);
  WeightCopies w;
  int64_t scale_group = 0;
  w.storage = std::make_unique<WeightMemory>(matrix_bytes * copies);
  std::byte* base = w.storage->data();
  const int64_t generated = std::min<int64_t>(shape.rows, std::max<int64_t>(1, (int64_t{1} << 23) / shape.cols));
  if (info.external_scales) {
    // Quantize the generated rows, tile codes and scales; each copy's scales differ in their
    // last bits so that no two pages of them are equal either.
    std::vector<float> values(static_cast<size_t>(generated * shape.cols));
    for (int64_t r = 0; r < generated; ++r)
      fill_random(values.data() + r * shape.cols, shape.cols, seed ^ (static_cast<uint64_t>(r) * 0x2545f4914f6cdd1dULL),
                  0.05f);
    Result<QuantizedMatrix> q = quantize_scaled(pool, dtype, values.data(), generated, shape.cols);
    if (!q.is_ok()) throw std::runtime_error(q.status().message());
    std::memcpy(base, q.value().codes.data(), q.value().codes.size());
    const int64_t groups = shape.cols / q.value().group;
    w.scale_count = copies * static_cast<size_t>(shape.rows * groups);
    w.scale_storage = std::make_unique<WeightMemory>(w.scale_count * sizeof(float));
    w.scales = reinterpret_cast<float*>(w.scale_storage->data());
    for (size_t c = 0; c < copies; ++c)
      for (int64_t i = 0; i < shape.rows * groups; ++i)
        w.scales[c * shape.rows * groups + i] =
            q.value().scale[i % (generated * groups)] * (1.0f + static_cast<float>(c % 1024) * 0x1p-20f);
    scale_group = q.value().group;
  } else {
    pool.parallel_for(generated, [&](int64_t begin, int64_t end) {
      std::vector<float> row(static_cast<size_t>(shape.cols));
      for (int64_t r = begin; r < end; ++r) {
        fill_random(row.data(), shape.cols, seed ^ (static_cast<uint64_t>(r) * 0x2545f4914f6cdd1dULL), 0.05f);
        info.from_float(row.data(), base + static_cast<size_t>(r) * row_bytes, shape.cols);
      }
    });
  }
  for (int64_t r = generated; r < shape.rows; r += generated) {
    const int64_t n = std::min(generated, shape.rows - r);
    std::memcpy(base + static_cast<size_t>(r) * row_bytes, base, static_cast<size_t>(n) * row_bytes);
  }
  pool.parallel_for(static_cast<int64_t>(copies) - 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin + 1; c <= end; ++c) std::memcpy(base + c * matrix_bytes, base, matrix_bytes);
  });
  make_pages_unique(pool, dtype, base, matrix_bytes * copies, seed * 0x9e3779b97f4a7c15ULL + 1);
  for (size_t c = 0; c < copies; ++c) {
    Tensor t;
    t.name = "bench." + shape.to_string() + "." + info.name + "#" + std::to_string(c);
    t.dtype = dtype;
    t.shape = {shape.rows, shape.cols};
    t.data = base + c * matrix_bytes;
    t.nbytes = matrix_bytes;
    if (w.scales != nullptr) t.quant = {w.scales + c * (w.scale_count / copies), nullptr, scale_group};
    w.tensors.push_back(std::move(t));
  }
  return w;
}

// ---- timing ----------------------------------------------------------------------------------------

struct Timing {
  int repetitions = 0;
  double median_seconds = 0;
};

// One warm-up call (index 0), then calls 1, 2, ... until min_seconds have passed.
Timing time_calls(double min_seconds, const std::function<void(int64_t call)>& call) {
  constexpr size_t kMaxCalls = 10'000'000;
  call(0);
  std::vector<double> seconds;
  const Clock::time_point start = Clock::now();
  int64_t index = 1;
  do {
    const Clock::time_point t0 = Clock::now();
    call(index++);
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  } while (std::chrono::duration<double>(Clock::now() - start).count() < min_seconds && seconds.size() < kMaxCalls);
  std::sort(seconds.begin(), seconds.end());
  const size_t n = seconds.size();
  Timing t;
  t.repetitions = static_cast<int>(n);
  t.median_seconds = n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  // A call faster than the clock's resolution would read 0 s: never report infinite rates.
  t.median_seconds = std::max(t.median_seconds, 1e-9);
  return t;
}

// ---- rows ------------------------------------------------------------------------------------------

const char* compute_name(GemmCompute compute) {
  switch (compute) {
    case GemmCompute::F32: return "f32";
    case GemmCompute::BF16: return "bf16";
    case GemmCompute::Bf16Activations: return "bf16-activations";
    case GemmCompute::Int8Activations: return "int8";
  }
  return "f32";
}

double peak_for(const MachineLimits& limits, const std::string& compute) {
  if (compute == "bf16") return limits.bf16.gflops;
  if (compute == "int8") return limits.int8.gflops;
  return limits.f32.gflops;
}

// Fills the derived figures: the headline value in `unit` and its share of the limit.
void finish_row(KernelBenchRow& row, const Timing& timing, bool bandwidth_bound, const MachineLimits& limits) {
  row.isa = isa_name(active_isa());
  row.repetitions = timing.repetitions;
  row.median_seconds = timing.median_seconds;
  if (bandwidth_bound) {
    row.unit = "GB/s";
    row.value = row.bytes / timing.median_seconds / 1e9;
    row.limit = "read bandwidth";
    row.limit_value = limits.read_bandwidth_gbs;
  } else {
    row.unit = "GFLOP/s";
    row.value = row.flops / timing.median_seconds / 1e9;
    row.limit = row.compute + " peak";
    row.limit_value = peak_for(limits, row.compute);
  }
  row.percent_of_limit = row.limit_value > 0 ? 100.0 * row.value / row.limit_value : 0.0;
}

bool wants(const KernelBenchOptions& options, const std::string& kernel) {
  return std::find(options.kernels.begin(), options.kernels.end(), kernel) != options.kernels.end();
}

// ---- the benchmark ---------------------------------------------------------------------------------

class KernelBench {
 public:
  KernelBench(ThreadPool& pool, const KernelBenchOptions& options, const MachineLimits& limits,
              const ProgressCallback& progress)
      : pool_(pool), options_(options), limits_(limits), progress_(progress) {
    shapes_ = options.shapes.empty() ? options.model.matrices() : options.shapes;
    result_.working_set_bytes =
        options.working_set_bytes > 0 ? options.working_set_bytes : default_kernel_bench_working_set(limits);
    for (int64_t t : options.gemv_tokens)
      if (t <= kKernelBenchMaxGemvTokens) gemv_tokens_.push_back(t);
  }

  KernelBenchResult run() {
    total_ = planned_units();
    report();
    if (wants(options_, "gemv") || wants(options_, "gemm")) run_matrices();
    if (wants(options_, "rmsnorm")) run_rmsnorm();
    if (wants(options_, "rope")) run_rope();
    if (wants(options_, "softmax")) run_softmax();
    if (wants(options_, "attention")) {
      run_attention(options_.op_tokens, 0);
      run_attention(1, options_.decode_context);
    }
    return std::move(result_);
  }

 private:
  uint64_t matrix_units() const {
    uint64_t n = 0;
    if (wants(options_, "gemv")) n += gemv_tokens_.size();
    if (wants(options_, "gemm")) n += options_.providers.size() * options_.gemm_tokens.size();
    return n;
  }

  uint64_t planned_units() const {
    uint64_t n = matrix_units() * shapes_.size() * options_.dtypes.size();
    for (const char* k : {"rmsnorm", "rope", "softmax"}) n += wants(options_, k) ? 1 : 0;
    n += wants(options_, "attention") ? 2 : 0;
    return n;
  }

  void advance(uint64_t units = 1) {
    done_ += units;
    report();
  }
  void report() {
    if (progress_) progress_(done_, total_);
  }

  void run_matrices() {
    const uint64_t units = matrix_units();
    for (const MatrixShape& shape : shapes_) {
      for (DType dtype : options_.dtypes) {
        const DTypeInfo& info = dtype_info(dtype);
        const std::string what = std::string(info.name) + " " + shape.to_string();
        if (shape.cols % info.block_elems != 0) {
          result_.skipped.push_back(what + ": " + std::to_string(shape.cols) + " columns is not a multiple of the " +
                                    info.name + " block size (" + std::to_string(info.block_elems) + ")");
          advance(units);
          continue;
        }
        if (!bench_can_quantize(dtype, shape.cols)) {
          result_.skipped.push_back(what + ": anvil has no quantizer for " + info.name);
          advance(units);
          continue;
        }
        WeightCopies weights = make_weights(pool_, dtype, shape, result_.working_set_bytes, options_.seed);
        if (wants(options_, "gemv")) {
          for (int64_t tokens : gemv_tokens_) {
            measure_matrix("gemv", nullptr, weights, shape, tokens);
            advance();
          }
        }
        if (wants(options_, "gemm")) {
          for (const std::string& name : options_.providers) {
            GemmProvider* provider = find_gemm_provider(name);
            for (int64_t tokens : options_.gemm_tokens) {
              if (provider->supports(dtype, tokens, shape.rows, shape.cols)) {
                measure_matrix("gemm", provider, weights, shape, tokens);
              } else {
                result_.skipped.push_back("gemm " + name + " " + what + " at " + std::to_string(tokens) +
                                          " tokens: not supported on this CPU");
              }
              advance();
            }
          }
        }
      }
    }
  }

  void measure_matrix(const char* kernel, GemmProvider* provider, const WeightCopies& weights,
                      const MatrixShape& shape, int64_t tokens) {
    const std::vector<float> x = random_floats(tokens * shape.cols, options_.seed + 1, 1.0f);
    std::vector<float> y(static_cast<size_t>(tokens * shape.rows));
    const std::vector<Tensor>& copies = weights.tensors;
    Status failure = Status::ok();
    const Timing timing = time_calls(options_.min_seconds, [&](int64_t call) {
      const Tensor& w = copies[static_cast<size_t>(call) % copies.size()];
      if (provider == nullptr) {
        matmul_gemv(pool_, w, x.data(), tokens, y.data());
      } else if (failure.is_ok()) {
        failure = provider->run(pool_, w, x.data(), tokens, y.data());
      }
    });
    const std::string what = std::string(kernel) + " " + (provider ? std::string(provider->name()) + " " : "") +
                             dtype_name(copies[0].dtype) + " " + shape.to_string();
    if (!failure.is_ok()) {
      result_.skipped.push_back(what + ": " + failure.message());
      return;
    }
    KernelBenchRow row;
    row.kernel = kernel;
    row.dtype = dtype_name(copies[0].dtype);
    row.shape = shape.to_string();
    row.tokens = tokens;
    row.provider = provider ? provider->name() : "gemv";
    const GemmProvider* compute_source = provider ? provider : find_gemm_provider("gemv");
    row.compute = compute_source ? compute_name(compute_source->compute(copies[0].dtype)) : "f32";
    row.bytes = static_cast<double>(copies[0].nbytes + copies[0].scale_bytes());
    row.flops = 2.0 * static_cast<double>(shape.rows) * static_cast<double>(shape.cols) * static_cast<double>(tokens);
    finish_row(row, timing, provider == nullptr, limits_);
    result_.rows.push_back(std::move(row));
  }

  KernelBenchRow op_row(const char* kernel, std::string shape, int64_t tokens) const {
    KernelBenchRow row;
    row.kernel = kernel;
    row.dtype = "F32";
    row.shape = std::move(shape);
    row.tokens = tokens;
    row.provider = kernel;
    row.compute = "f32";
    return row;
  }

  // RMSNorm of op_tokens rows of dim, split over the pool by rows (as prefill runs it).
  void run_rmsnorm() {
    const int64_t t = options_.op_tokens, d = options_.model.dim;
    const std::vector<float> x = random_floats(t * d, options_.seed + 2, 1.0f);
    const std::vector<float> weight = random_floats(d, options_.seed + 3, 1.0f);
    std::vector<float> out(x.size());
    const Timing timing = time_calls(options_.min_seconds, [&](int64_t) {
      pool_.parallel_for(t, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) rms_norm(x.data() + r * d, weight.data(), out.data() + r * d, d, 1e-5f);
      });
    });
    KernelBenchRow row = op_row("rmsnorm", std::to_string(t) + "x" + std::to_string(d), t);
    row.bytes = 4.0 * static_cast<double>(2 * t * d + d);
    row.flops = 4.0 * static_cast<double>(t * d);
    finish_row(row, timing, true, limits_);
    result_.rows.push_back(std::move(row));
    advance();
  }

  // RoPE on the q and k heads of op_tokens tokens at positions 0.., NeoX layout.
  void run_rope() {
    const KernelBenchModel& m = options_.model;
    const int64_t t = options_.op_tokens, heads = m.n_heads + m.n_kv_heads, per_token = heads * m.head_dim;
    std::vector<float> x = random_floats(t * per_token, options_.seed + 4, 1.0f);
    std::vector<float> inv_freq(static_cast<size_t>(m.head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i)
      inv_freq[i] = static_cast<float>(std::pow(m.rope_theta, -2.0 * static_cast<double>(i) / m.head_dim));
    const Timing timing = time_calls(options_.min_seconds, [&](int64_t) {
      pool_.parallel_for(t, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p)
          apply_rope(x.data() + p * per_token, heads, m.head_dim, p, inv_freq.data(), RopeStyle::NeoX);
      });
    });
    KernelBenchRow row =
        op_row("rope", std::to_string(t) + "x" + std::to_string(heads) + "x" + std::to_string(m.head_dim), t);
    row.bytes = 8.0 * static_cast<double>(t * per_token);
    row.flops = 3.0 * static_cast<double>(t * per_token);  // per element: 2 multiplies and an add
    finish_row(row, timing, true, limits_);
    result_.rows.push_back(std::move(row));
    advance();
  }

  // In-place softmax of op_tokens rows of decode_context scores, split over the pool by rows.
  void run_softmax() {
    const int64_t rows = options_.op_tokens, n = options_.decode_context;
    std::vector<float> x = random_floats(rows * n, options_.seed + 5, 4.0f);
    const Timing timing = time_calls(options_.min_seconds, [&](int64_t) {
      pool_.parallel_for(rows, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) softmax_inplace(x.data() + r * n, n);
      });
    });
    KernelBenchRow row = op_row("softmax", std::to_string(rows) + "x" + std::to_string(n), rows);
    row.bytes = 8.0 * static_cast<double>(rows * n);
    row.flops = 4.0 * static_cast<double>(rows * n);
    finish_row(row, timing, true, limits_);
    result_.rows.push_back(std::move(row));
    advance();
  }

  // Causal attention: `queries` query tokens at the end of a cache of `context` + queries rows
  // (prefill: context 0, each token attends to itself and the ones before; decode: 1 query over
  // `context` keys), through the same attention() call the model makes.
  void run_attention(int64_t queries, int64_t context) {
    const KernelBenchModel& m = options_.model;
    const int64_t keys = context > 0 ? context : queries, hd = m.head_dim, kv_width = m.n_kv_heads * hd;
    const int64_t first_position = keys - queries;
    const std::vector<float> q = random_floats(queries * m.n_heads * hd, options_.seed + 6, 1.0f);
    const std::vector<float> k = random_floats(keys * kv_width, options_.seed + 7, 1.0f);
    const std::vector<float> v = random_floats(keys * kv_width, options_.seed + 8, 1.0f);
    std::vector<float> out(q.size());
    // The engine's kernel (compute/cpu/attention.h): tiled online softmax, split-KV for decode.
    AttentionProblem problem{};
    problem.q = q.data();
    problem.q_stride = m.n_heads * hd;
    problem.keys = k.data();
    problem.values = v.data();
    problem.kv_stride = kv_width;
    problem.out = out.data();
    problem.out_stride = m.n_heads * hd;
    problem.n_tokens = queries;
    problem.n_heads = m.n_heads;
    problem.n_kv_heads = m.n_kv_heads;
    problem.head_dim = hd;
    problem.first_position = first_position;
    problem.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const Timing timing = time_calls(options_.min_seconds, [&](int64_t) { attention(pool_, problem); });
    // Keys attended per head: sum over query tokens of (position + 1).
    const double pairs_per_head =
        static_cast<double>(queries) * static_cast<double>(first_position) +
        static_cast<double>(queries) * static_cast<double>(queries + 1) / 2.0;
    KernelBenchRow row = op_row("attention",
                                std::to_string(m.n_heads) + "/" + std::to_string(m.n_kv_heads) + "x" +
                                    std::to_string(hd) + " ctx" + std::to_string(keys),
                                queries);
    row.provider = context > 0 ? "attention (decode)" : "attention (prefill)";
    row.flops = 4.0 * static_cast<double>(hd) * static_cast<double>(m.n_heads) * pairs_per_head;
    row.bytes = 4.0 * static_cast<double>(2 * q.size() + k.size() + v.size());
    finish_row(row, timing, false, limits_);
    result_.rows.push_back(std::move(row));
    advance();
  }

  ThreadPool& pool_;
  const KernelBenchOptions& options_;
  const MachineLimits& limits_;
  const ProgressCallback& progress_;
  std::vector<MatrixShape> shapes_;
  std::vector<int64_t> gemv_tokens_;
  KernelBenchResult result_;
  uint64_t done_ = 0, total_ = 0;
};

// ---- parsing ---------------------------------------------------------------------------------------

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// A positive integer spelled in decimal digits only.
bool parse_positive(const std::string& text, int64_t& value) {
  if (text.empty() || text.size() > 12) return false;
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  return value > 0;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string MatrixShape::to_string() const { return std::to_string(rows) + "x" + std::to_string(cols); }

std::vector<MatrixShape> KernelBenchModel::matrices() const {
  const std::vector<MatrixShape> all = {
      {n_heads * head_dim, dim},     // q
      {n_kv_heads * head_dim, dim},  // k, v
      {dim, n_heads * head_dim},     // o
      {hidden_dim, dim},             // gate, up
      {dim, hidden_dim},             // down
      {vocab_size, dim},             // output
  };
  std::vector<MatrixShape> unique;
  for (const MatrixShape& s : all)
    if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
  return unique;
}

const std::vector<std::string>& kernel_bench_kernels() {
  static const std::vector<std::string> kernels = {"gemv", "gemm", "rmsnorm", "rope", "softmax", "attention"};
  return kernels;
}

size_t default_kernel_bench_working_set(const MachineLimits& limits) {
  size_t largest = 0;
  for (const CpuCache& c : read_cpu_caches()) largest = std::max(largest, c.size_bytes);
  return std::max({size_t{256} << 20, 4 * largest, limits.bandwidth_bytes});
}

Status validate_kernel_bench_options(const KernelBenchOptions& o) {
  for (const std::string& k : o.kernels)
    if (std::find(kernel_bench_kernels().begin(), kernel_bench_kernels().end(), k) == kernel_bench_kernels().end())
      return Status::error("unknown kernel '" + k + "' (known: " + join(kernel_bench_kernels()) + ")");
  for (const std::string& p : o.providers)
    if (find_gemm_provider(p) == nullptr) return Status::error("unknown GEMM provider '" + p + "'");
  for (const MatrixShape& s : o.shapes)
    if (s.rows <= 0 || s.cols <= 0) return Status::error("shape " + s.to_string() + ": sizes must be positive");
  for (const auto* list : {&o.gemv_tokens, &o.gemm_tokens})
    for (int64_t t : *list)
      if (t <= 0) return Status::error("token counts must be positive, got " + std::to_string(t));
  const KernelBenchModel& m = o.model;
  if (m.dim <= 0 || m.hidden_dim <= 0 || m.n_heads <= 0 || m.n_kv_heads <= 0 || m.head_dim <= 0 || m.vocab_size <= 0)
    return Status::error("model sizes must be positive");
  if (m.n_heads % m.n_kv_heads != 0) return Status::error("n_heads must be a multiple of n_kv_heads");
  if (m.head_dim % 2 != 0) return Status::error("head_dim must be even (RoPE rotates pairs)");
  if (o.op_tokens <= 0 || o.decode_context <= 0) return Status::error("op_tokens and decode_context must be positive");
  if (!(o.min_seconds >= 0) || !std::isfinite(o.min_seconds))
    return Status::error("min_seconds must be a finite number >= 0");
  return Status::ok();
}

Result<KernelBenchResult> run_kernel_bench(ThreadPool& pool, const KernelBenchOptions& options,
                                           const MachineLimits& limits, const ProgressCallback& progress) {
  ANVIL_RETURN_IF_ERROR(validate_kernel_bench_options(options));
  try {
    return KernelBench(pool, options, limits, progress).run();
  } catch (const std::bad_alloc&) {
    return Status::error("kernel benchmark: out of memory (the largest weight times its copies must fit; "
                         "try fewer or smaller --shapes)");
  } catch (const std::exception& e) {
    return Status::error(std::string("kernel benchmark: ") + e.what());
  }
}

Result<std::vector<std::string>> parse_kernel_list(const std::string& text) {
  std::vector<std::string> kernels = split_list(text);
  if (kernels.empty()) return Status::error("empty kernel list");
  for (const std::string& k : kernels)
    if (std::find(kernel_bench_kernels().begin(), kernel_bench_kernels().end(), k) == kernel_bench_kernels().end())
      return Status::error("unknown kernel '" + k + "' (known: " + join(kernel_bench_kernels()) + ")");
  return kernels;
}

Result<std::vector<DType>> parse_dtype_list(const std::string& text) {
  std::vector<DType> dtypes;
  for (const std::string& name : split_list(text)) {
    std::optional<DType> d = dtype_from_name(name, /*panels=*/true);
    if (!d)
      return Status::error("unknown dtype '" + name +
                           "' (known: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, f8_e4m3, i8, i4, q8_0_r4, q4_0_r4)");
    dtypes.push_back(*d);
  }
  if (dtypes.empty()) return Status::error("empty dtype list");
  return dtypes;
}

Result<std::vector<MatrixShape>> parse_shape_list(const std::string& text) {
  std::vector<MatrixShape> shapes;
  for (const std::string& item : split_list(text)) {
    const size_t x = item.find_first_of("xX");
    MatrixShape s;
    if (x == std::string::npos || !parse_positive(item.substr(0, x), s.rows) ||
        !parse_positive(item.substr(x + 1), s.cols))
      return Status::error("bad shape '" + item + "' (expected ROWSxCOLS, e.g. 8192x2048: out x in features)");
    shapes.push_back(s);
  }
  if (shapes.empty()) return Status::error("empty shape list");
  return shapes;
}

Result<std::vector<int64_t>> parse_token_list(const std::string& text) {
  std::vector<int64_t> tokens;
  for (const std::string& item : split_list(text)) {
    int64_t t = 0;
    if (!parse_positive(item, t) || t > 1'000'000)
      return Status::error("bad token count '" + item + "' (expected a positive integer up to 1000000)");
    tokens.push_back(t);
  }
  if (tokens.empty()) return Status::error("empty token list");
  return tokens;
}

Result<std::vector<std::string>> parse_provider_list(const std::string& text) {
  std::vector<std::string> providers = split_list(text);
  if (providers.empty()) return Status::error("empty provider list");
  std::vector<std::string> known;
  for (const GemmProvider* p : gemm_providers()) known.push_back(p->name());
  for (const std::string& p : providers)
    if (find_gemm_provider(p) == nullptr)
      return Status::error("unknown GEMM provider '" + p + "' (known: " + join(known) + ")");
  return providers;
}

nlohmann::json kernel_bench_row_to_json(const KernelBenchRow& r) {
  return {{"kernel", r.kernel},
          {"dtype", r.dtype},
          {"shape", r.shape},
          {"tokens", r.tokens},
          {"provider", r.provider},
          {"compute", r.compute},
          {"isa", r.isa},
          {"repetitions", r.repetitions},
          {"median_seconds", r.median_seconds},
          {"bytes", r.bytes},
          {"flops", r.flops},
          {"gb_s", r.bytes / r.median_seconds / 1e9},
          {"gflop_s", r.flops / r.median_seconds / 1e9},
          {"unit", r.unit},
          {"value", r.value},
          {"limit", r.limit},
          {"limit_value", r.limit_value},
          {"percent_of_limit", r.limit_value > 0 ? nlohmann::json(r.percent_of_limit) : nlohmann::json(nullptr)}};
}

std::string kernel_bench_csv(const KernelBenchResult& result) {
  std::string out =
      "kernel,dtype,shape,tokens,provider,compute,isa,repetitions,median_seconds,bytes,flops,unit,value,limit,"
      "limit_value,percent_of_limit\n";
  for (const KernelBenchRow& r : result.rows) {
    char numbers[256];
    std::snprintf(numbers, sizeof numbers, "%d,%.9g,%.17g,%.17g", r.repetitions, r.median_seconds, r.bytes, r.flops);
    char tail[128];
    std::snprintf(tail, sizeof tail, "%.6g,%s,%.6g,%.4g", r.value, csv_field(r.limit).c_str(), r.limit_value,
                  r.percent_of_limit);
    out += csv_field(r.kernel) + "," + csv_field(r.dtype) + "," + csv_field(r.shape) + "," + std::to_string(r.tokens) +
           "," + csv_field(r.provider) + "," + csv_field(r.compute) + "," + csv_field(r.isa) + "," + numbers + "," +
           csv_field(r.unit) + "," + tail + "\n";
  }
  return out;
}

}  // namespace anvil
