// Memory planner: the byte formulas for weights, KV cache and step workspace, and the fit search.
#include "engine/memory_plan.h"

#include "core/process_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>

#include "compute/cpu/attention_kernels.h"
#include "model/kv_store.h"
#include "model/load_checkpoint.h"
#include "model/presets.h"
#include "model/tensor_layout.h"

namespace anvil {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct KvDtypeRow {
  KvDtype kv_dtype;
  const char* name;
  int64_t element_bytes;
  DType dtype;  // what the engine's block pool holds
};
constexpr KvDtypeRow kKvDtypes[] = {
    {KvDtype::F32, "f32", 4, DType::F32},        {KvDtype::F16, "f16", 2, DType::F16},
    {KvDtype::BF16, "bf16", 2, DType::BF16},     {KvDtype::Fp8, "fp8", 1, DType::F8_E4M3},
    {KvDtype::Int8, "int8", 1, DType::I8},
};

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t\n\r");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\n\r") - begin + 1);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "llama-2-70b has 64 attention heads": the name users know the model by.
std::string model_name(const ModelConfig& c) { return c.name.empty() ? std::string("the model") : c.name; }

// The query heads of one KV head that a rank attends with (GQA group on that rank).
int64_t group_per_rank(const ModelConfig& c, int64_t tp) {
  const int64_t q_heads = std::max<int64_t>(1, c.n_heads / std::max<int64_t>(1, tp));
  return std::max<int64_t>(1, q_heads / kv_heads_per_rank(c, tp));
}

Result<int64_t> matrix_bytes(const std::string& where, const std::string& tensor, const std::vector<int64_t>& shape,
                             DType dtype) {
  const DTypeInfo& info = dtype_info(dtype);
  const int64_t cols = shape.back();
  if (cols % info.block_elems != 0)
    return Status::error(fmt::format("{}: {} has rows of {} elements, not a multiple of {}'s block of {}; pick "
                                     "another weights dtype",
                                     where, tensor, cols, info.name, info.block_elems));
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  int64_t bytes = static_cast<int64_t>(dtype_bytes(dtype, n));
  if (info.external_scales) {
    // The scales beside the codes, at anvil quantize's defaults: one f32 per row (F8_E4M3, I8),
    // one per group of 128 (I4, symmetric).
    const int64_t group = dtype == DType::I4 ? std::min<int64_t>(128, cols) : cols;
    bytes += n / group * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

std::string dtype_summary(const std::vector<PlannedTensor>& tensors) {
  std::map<DType, int64_t> bytes;
  for (const PlannedTensor& t : tensors) bytes[t.dtype] += t.bytes;
  std::vector<std::pair<int64_t, DType>> order;
  for (const auto& [dtype, n] : bytes) order.emplace_back(n, dtype);
  std::sort(order.rbegin(), order.rend());
  std::string out;
  for (const auto& [n, dtype] : order) out += (out.empty() ? "" : " + ") + std::string(dtype_name(dtype));
  return out;
}

Result<PlannedWeights> plan_preset_weights(const std::string& spec, std::optional<DType> weights_dtype) {
  const std::string rest = spec.substr(spec.find(':') + 1);
  const size_t colon = rest.find(':');
  const std::string preset_name = rest.substr(0, colon);
  const ModelPreset* preset = find_model_preset(preset_name);
  if (!preset) {
    std::string names;
    for (const ModelPreset& p : model_presets()) names += (names.empty() ? "" : ", ") + std::string(p.name);
    return Status::error(fmt::format("{}: unknown preset '{}'; presets: {}", spec, preset_name, names));
  }
  DType dtype = preset->default_dtype;
  if (colon != std::string::npos) {
    const std::string dtype_name_in_spec = rest.substr(colon + 1);
    std::optional<DType> parsed = dtype_from_name(dtype_name_in_spec);
    if (!parsed)
      return Status::error(fmt::format("{}: unknown weight dtype '{}'; use f32, f16, bf16, q8_0, q4_0, q4_k or q6_k",
                                       spec, dtype_name_in_spec));
    dtype = *parsed;
  }
  if (weights_dtype) dtype = *weights_dtype;
  PlannedWeights planned;
  planned.config = preset->config;
  ANVIL_ASSIGN_OR_RETURN(planned.tensors, plan_tensors_at(preset->config, dtype));
  planned.dtype_summary = dtype_summary(planned.tensors);
  return planned;
}

Result<PlannedWeights> plan_file_weights(const std::string& spec, std::optional<DType> weights_dtype) {
  // Files are memory-mapped: loading reads headers and touches no weight pages.
  Result<Checkpoint> checkpoint = load_checkpoint(spec);
  if (!checkpoint) return checkpoint.status();
  PlannedWeights planned;
  planned.config = checkpoint->config;
  for (const auto& [name, tensor] : checkpoint->tensors) {
    // Scaled weights (F8_E4M3, I8, I4) also hold their scale and zero-point arrays.
    PlannedTensor t{name, tensor.shape, tensor.dtype, static_cast<int64_t>(tensor.nbytes + tensor.scale_bytes())};
    // Vectors (norms, biases, rope tables) stay as stored: files keep them in F32.
    if (weights_dtype && tensor.shape.size() >= 2) {
      t.dtype = *weights_dtype;
      ANVIL_ASSIGN_OR_RETURN(t.bytes, matrix_bytes(spec, name, tensor.shape, *weights_dtype));
    }
    planned.tensors.push_back(std::move(t));
  }
  planned.dtype_summary = dtype_summary(planned.tensors);
  return planned;
}

// Everything that grows with the batch, for one rank, in 128-bit arithmetic so that the fit
// searches can probe absurd sizes without overflow.
struct StepSizing {
  const ModelConfig& config;
  const MemoryPlanInputs& inputs;
  bool default_batched_tokens;  // the step size follows the number of sequences
  int64_t weights_bytes;
  int64_t kv_bytes_per_token;

  int64_t batched_tokens(int64_t seqs) const {
    return default_batched_tokens ? std::max<int64_t>(seqs, 512) : inputs.max_num_batched_tokens;
  }
  __int128 kv_cache(int64_t seqs, int64_t context) const {
    return static_cast<__int128>(seqs) * kv_rows_for_tokens(context, inputs.block_size) * kv_bytes_per_token;
  }
  __int128 total(int64_t seqs, int64_t context) const {
    const ActivationBytes act = activation_bytes(config, inputs.tp, batched_tokens(seqs), seqs, inputs.threads);
    return weights_bytes + kv_cache(seqs, context) + act.total();
  }
  bool fits(int64_t seqs, int64_t context) const { return total(seqs, context) <= inputs.budget_bytes; }
};

// Largest x in [lo, hi] with fits(x), given fits(lo) and fits monotone (more costs more).
template <typename Fits>
int64_t largest_fitting(int64_t lo, int64_t hi, const Fits& fits) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace

// ---- KV cache -----------------------------------------------------------------------------------

std::optional<KvDtype> kv_dtype_from_name(const std::string& name) {
  const std::string lower = lowercase(name);
  for (const KvDtypeRow& row : kKvDtypes)
    if (lower == row.name) return row.kv_dtype;
  return std::nullopt;
}

const char* kv_dtype_name(KvDtype kv_dtype) {
  for (const KvDtypeRow& row : kKvDtypes)
    if (row.kv_dtype == kv_dtype) return row.name;
  return "?";
}

int64_t kv_element_bytes(KvDtype kv_dtype) {
  for (const KvDtypeRow& row : kKvDtypes)
    if (row.kv_dtype == kv_dtype) return row.element_bytes;
  return 0;
}

DType kv_cache_dtype(KvDtype kv_dtype) {
  for (const KvDtypeRow& row : kKvDtypes)
    if (row.kv_dtype == kv_dtype) return row.dtype;
  return DType::F16;
}

int64_t kv_heads_per_rank(const ModelConfig& c, int64_t tp) {
  if (tp <= 1) return c.n_kv_heads;
  return std::max<int64_t>(1, c.n_kv_heads / tp);
}

Status check_tensor_parallel(const ModelConfig& c, int64_t tp) {
  if (tp < 1) return Status::error(fmt::format("the tensor-parallel size must be at least 1 (got {})", tp));
  const bool kv_ok = c.n_kv_heads > 0 && (c.n_kv_heads % tp == 0 || tp % c.n_kv_heads == 0);
  if (c.n_heads % tp == 0 && kv_ok) return Status::ok();
  std::vector<int64_t> sizes;
  for (int64_t n = 1; n <= c.n_heads; ++n)
    if (c.n_heads % n == 0 && (c.n_kv_heads % n == 0 || n % c.n_kv_heads == 0)) sizes.push_back(n);
  const std::string reason =
      c.n_heads % tp != 0
          ? fmt::format("{} attention heads cannot be split evenly over {} ranks", c.n_heads, tp)
          : fmt::format("{} KV heads can be neither split over nor replicated on {} ranks", c.n_kv_heads, tp);
  return Status::error(fmt::format("{}; use a tensor-parallel size of {}", reason, fmt::join(sizes, ", ")));
}

int64_t kv_bytes_per_token(const ModelConfig& c, KvDtype kv_dtype, int64_t tp) {
  return kv_bytes_per_token(c, kv_cache_dtype(kv_dtype), tp);
}

int64_t kv_bytes_per_token(const ModelConfig& c, DType kv_dtype, int64_t tp) {
  const DTypeInfo& info = dtype_info(kv_dtype);
  const int64_t heads = kv_heads_per_rank(c, tp);
  const int64_t row_elements = heads * c.head_dim;
  int64_t row_bytes = ceil_div(row_elements, info.block_elems) * static_cast<int64_t>(info.block_bytes);
  // The 1-byte cache dtypes keep an f32 scale per row and KV head (model/kv_store.h).
  if (kv_dtype_has_scales(kv_dtype)) row_bytes += heads * static_cast<int64_t>(sizeof(float));
  return 2 * c.n_layers * row_bytes;
}

// ---- Machine and sizes --------------------------------------------------------------------------

Result<int64_t> available_memory_bytes() {
  if (std::optional<int64_t> bytes = mem_available_bytes()) return *bytes;
  return Status::error("/proc/meminfo has no MemAvailable figure (kernel older than 3.14?); give a budget");
}

Result<int64_t> parse_byte_size(const std::string& text) {
  const std::string s = trim(text);
  auto bad = [&](const std::string& why) {
    return Status::error(fmt::format("'{}' is not a byte size: {}; write e.g. 24GiB, 500MiB, 40GB or a number of bytes",
                                     text, why));
  };
  if (s.empty()) return bad("it is empty");
  if (s[0] == '-') return bad("it is negative");
  size_t i = 0;
  __int128 whole = 0;
  bool digits = false;
  for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i, digits = true)
    whole = std::min<__int128>(whole * 10 + (s[i] - '0'), static_cast<__int128>(1) << 100);
  long double fraction = 0.0L;
  if (i < s.size() && s[i] == '.') {
    long double scale = 0.1L;
    for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i, scale /= 10, digits = true)
      fraction += (s[i] - '0') * scale;
  }
  if (!digits) return bad("it does not start with a number");
  const std::string unit = lowercase(trim(s.substr(i)));
  static const std::map<std::string, int64_t> kUnits = {
      {"", 1},           {"b", 1},
      {"k", 1LL << 10},  {"ki", 1LL << 10}, {"kib", 1LL << 10}, {"kb", 1000},
      {"m", 1LL << 20},  {"mi", 1LL << 20}, {"mib", 1LL << 20}, {"mb", 1000000},
      {"g", 1LL << 30},  {"gi", 1LL << 30}, {"gib", 1LL << 30}, {"gb", 1000000000},
      {"t", 1LL << 40},  {"ti", 1LL << 40}, {"tib", 1LL << 40}, {"tb", 1000000000000},
  };
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) return bad(fmt::format("unknown unit '{}'", s.substr(i)));
  const __int128 bytes = whole * it->second + static_cast<__int128>(std::floor(fraction * it->second));
  if (bytes > std::numeric_limits<int64_t>::max()) return bad("it is too large");
  return static_cast<int64_t>(bytes);
}

// ---- Weights ------------------------------------------------------------------------------------

Result<std::vector<PlannedTensor>> plan_tensors_at(const ModelConfig& config, DType dtype) {
  std::vector<PlannedTensor> tensors;
  for (RequiredTensor& t : required_tensors(config)) {
    PlannedTensor planned{std::move(t.name), std::move(t.shape), DType::F32, 0};
    if (planned.shape.size() == 1) {
      planned.bytes = planned.shape[0] * 4;
    } else {
      planned.dtype = dtype;
      ANVIL_ASSIGN_OR_RETURN(planned.bytes, matrix_bytes(config.name, planned.name, planned.shape, dtype));
    }
    tensors.push_back(std::move(planned));
  }
  return tensors;
}

Result<PlannedWeights> plan_weights_for_spec(const std::string& spec, std::optional<DType> weights_dtype) {
  // A preset is never materialized: a 70B model's random weights would not fit, and need not.
  if (spec.rfind("dummy:", 0) == 0) return plan_preset_weights(spec, weights_dtype);
  return plan_file_weights(spec, weights_dtype);
}

int64_t weight_bytes_per_rank(const std::vector<PlannedTensor>& tensors, const ModelConfig& c, int64_t tp) {
  tp = std::max<int64_t>(1, tp);
  int64_t bytes = 0;
  for (const PlannedTensor& t : tensors) {
    const bool kv_projection = t.name.find(".attn_k.") != std::string::npos || t.name.find(".attn_v.") != std::string::npos;
    if (kv_projection && c.n_kv_heads > 0) {
      // Each rank holds the projections of its own KV heads (all of them when replicated).
      bytes += ceil_div(t.bytes * kv_heads_per_rank(c, tp), c.n_kv_heads);
    } else if (t.shape.size() == 1 && !ends_with(t.name, ".bias")) {
      bytes += t.bytes;  // norms and rope tables: every rank needs them whole
    } else {
      bytes += ceil_div(t.bytes, tp);  // column/row-parallel matrices, vocab-parallel embeddings
    }
  }
  return bytes;
}

// ---- Step workspace -----------------------------------------------------------------------------

ActivationBytes activation_bytes(const ModelConfig& c, int64_t tp, int64_t batched_tokens, int64_t num_seqs,
                                 int64_t threads) {
  tp = std::max<int64_t>(1, tp);
  const int64_t q_dim = ceil_div(c.n_heads, tp) * c.head_dim;
  const int64_t kv_dim = kv_heads_per_rank(c, tp) * c.head_dim;
  const int64_t ffn_dim = ceil_div(c.hidden_dim, tp);
  // ForwardScratch: hidden, normed, proj (dim); q, attn_out (q_dim); k, v (kv_dim); gate, up (ffn).
  const int64_t floats_per_token = 3 * c.dim + 2 * q_dim + 2 * kv_dim + 2 * ffn_dim;

  // The attention driver's work item: a block of query rows (tokens x GQA group) of ~64 rows.
  using attention_detail::flash_scratch_floats;
  const int64_t group = group_per_rank(c, tp);
  const int64_t rows = std::max<int64_t>(1, 64 / group) * group;
  // Split-KV decode keeps about two partial results (rows x (head_dim + max + sum)) per thread.
  const int64_t partial_floats = 2 * threads * rows * (c.head_dim + 2);

  ActivationBytes bytes;
  bytes.forward_scratch = batched_tokens * floats_per_token * 4;
  bytes.logits = num_seqs * c.vocab_size * 4;  // gathered whole on a rank for sampling
  bytes.attention_scratch = (threads * flash_scratch_floats(c.head_dim, rows) + partial_floats) * 4;
  return bytes;
}

// ---- The plan -----------------------------------------------------------------------------------

Result<MemoryPlan> plan_memory(const PlannedWeights& weights, const MemoryPlanInputs& requested) {
  const ModelConfig& c = weights.config;
  MemoryPlanInputs in = requested;
  if (in.max_num_seqs < 1)
    return Status::error(fmt::format("the number of sequences must be at least 1 (got {})", in.max_num_seqs));
  if (in.context == 0) in.context = c.context_length;
  if (in.context < 1) return Status::error(fmt::format("the context must be at least 1 token (got {})", in.context));
  if (c.context_length > 0 && in.context > c.context_length)
    return Status::error(fmt::format("a context of {} tokens exceeds {}'s context length of {} tokens", in.context,
                                     model_name(c), c.context_length));
  ANVIL_RETURN_IF_ERROR(check_tensor_parallel(c, in.tp));
  const bool default_batched_tokens = in.max_num_batched_tokens == 0;
  if (default_batched_tokens) in.max_num_batched_tokens = std::max<int64_t>(in.max_num_seqs, 512);
  if (in.max_num_batched_tokens < 1)
    return Status::error(fmt::format("the batched tokens per step must be at least 1 (got {})", in.max_num_batched_tokens));
  if (in.block_size < 1) return Status::error(fmt::format("the KV block size must be at least 1 (got {})", in.block_size));
  if (in.threads < 1) return Status::error(fmt::format("the thread count must be at least 1 (got {})", in.threads));
  if (in.budget_bytes < 0) return Status::error(fmt::format("the memory budget must not be negative (got {})", in.budget_bytes));

  MemoryPlan plan;
  plan.inputs = in;
  plan.weights_bytes = weight_bytes_per_rank(weights.tensors, c, in.tp);
  plan.weights_bytes_all_ranks = plan.weights_bytes * in.tp;
  plan.kv_heads_per_rank = kv_heads_per_rank(c, in.tp);
  plan.kv_bytes_per_token = kv_bytes_per_token(c, in.kv_dtype, in.tp);
  plan.kv_bytes_per_sequence = kv_rows_for_tokens(in.context, in.block_size) * plan.kv_bytes_per_token;
  plan.kv_cache_bytes = in.max_num_seqs * plan.kv_bytes_per_sequence;
  plan.kv_cache_bytes_all_ranks = plan.kv_cache_bytes * in.tp;
  plan.activation = activation_bytes(c, in.tp, in.max_num_batched_tokens, in.max_num_seqs, in.threads);
  plan.total_bytes = plan.weights_bytes + plan.kv_cache_bytes + plan.activation.total();
  plan.total_bytes_all_ranks = plan.total_bytes * in.tp;
  plan.fits = plan.total_bytes <= in.budget_bytes;

  const StepSizing sizing{c, in, default_batched_tokens, plan.weights_bytes, plan.kv_bytes_per_token};
  if (sizing.fits(1, in.context)) {
    // Each sequence costs at least its KV, which bounds the search; 2^32 bounds absurd budgets.
    const int64_t room = in.budget_bytes - plan.weights_bytes;
    const int64_t hi = std::min<int64_t>(room / std::max<int64_t>(1, plan.kv_bytes_per_sequence) + 1, int64_t{1} << 32);
    plan.max_num_seqs_fit = largest_fitting(1, std::max<int64_t>(1, hi),
                                            [&](int64_t seqs) { return sizing.fits(seqs, in.context); });
  }
  const int64_t context_cap = c.context_length > 0 ? c.context_length : in.context;
  if (sizing.fits(in.max_num_seqs, 1))
    plan.max_context_fit = largest_fitting(1, context_cap, [&](int64_t ctx) { return sizing.fits(in.max_num_seqs, ctx); });
  return plan;
}

}  // namespace anvil
