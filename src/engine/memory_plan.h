// Memory planner: weights, KV cache and step workspace of a serving configuration, and what fits
// a memory budget. The one home of these formulas: `anvil plan` and the engine both call them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "model/model_config.h"

namespace anvil {

// ---- KV cache -----------------------------------------------------------------------------------

// Element types a KV cache can be planned at, each what the engine runs: Fp8 (E4M3) and Int8 are
// one byte per element plus an f32 scale per cache row and KV head (model/kv_store.h).
enum class KvDtype { F32, F16, BF16, Fp8, Int8 };

std::optional<KvDtype> kv_dtype_from_name(const std::string& name);  // "f16", "BF16", "fp8", "int8"
const char* kv_dtype_name(KvDtype kv_dtype);                          // "f16"
int64_t kv_element_bytes(KvDtype kv_dtype);                           // 4, 2, 2, 1, 1 (codes only)
DType kv_cache_dtype(KvDtype kv_dtype);                               // F32, F16, BF16, F8_E4M3, I8

// KV heads each tensor-parallel rank holds: split evenly, or replicated (one per rank) when
// there are fewer KV heads than ranks.
int64_t kv_heads_per_rank(const ModelConfig& c, int64_t tp);

// Ok when `tp` ranks can split the model: tp >= 1, tp divides n_heads, and tp divides n_kv_heads
// or n_kv_heads divides tp (each KV head then lives on tp / n_kv_heads ranks).
Status check_tensor_parallel(const ModelConfig& c, int64_t tp);

// Bytes one token adds to one rank's cache: K and V, every layer, that rank's KV heads:
//   2 * n_layers * kv_heads_per_rank * (head_dim * element bytes + 4 for Fp8/Int8's scale),
// exactly what the engine's block pool allocates per token (KvBlockPool::block_bytes).
int64_t kv_bytes_per_token(const ModelConfig& c, KvDtype kv_dtype, int64_t tp = 1);
// The same for the engine's DType (F32, F16, BF16, F8_E4M3, I8). A block-quantized type counts
// whole blocks per cache row (per layer, K or V), rounded up.
int64_t kv_bytes_per_token(const ModelConfig& c, DType kv_dtype, int64_t tp = 1);

// Cache rows a sequence of `tokens` takes in a paged cache: whole blocks.
inline int64_t kv_rows_for_tokens(int64_t tokens, int64_t block_size) {
  return block_size > 0 ? (tokens + block_size - 1) / block_size * block_size : tokens;
}

// ---- Machine and sizes --------------------------------------------------------------------------

// MemAvailable from /proc/meminfo (what the kernel can give without swapping).
Result<int64_t> available_memory_bytes();

// "24GiB", "500MiB", "1.5 GiB", "40GB", "64G", "123456" (bytes). KiB/MiB/GiB/TiB and the
// single letters K/M/G/T are powers of 1024; KB/MB/GB/TB powers of 1000; case-insensitive.
Result<int64_t> parse_byte_size(const std::string& text);

// ---- Weights ------------------------------------------------------------------------------------

// One weight tensor as the planner sees it: its name decides how tensor parallelism splits it.
struct PlannedTensor {
  std::string name;             // canonical (GGUF) name, model/checkpoint.h
  std::vector<int64_t> shape;
  DType dtype = DType::F32;     // planned dtype
  int64_t bytes = 0;            // at that dtype
};

struct PlannedWeights {
  ModelConfig config;
  std::vector<PlannedTensor> tensors;
  std::string dtype_summary;    // "BF16 + F32", "Q4_0 + Q6_K + F32" (the dtypes of the tensors, largest first)
};

// The canonical tensors of `config` with matrices at `dtype` and vectors (norms, biases) in F32,
// the same rule as the random-weight presets. Fails when a matrix row is not a whole number of
// `dtype` blocks. The scaled types count their scales at anvil quantize's defaults (F8_E4M3 and
// I8: one f32 per row; I4: one per 128 elements); a file's own layout is counted exactly.
Result<std::vector<PlannedTensor>> plan_tensors_at(const ModelConfig& config, DType dtype);

// Weights of a model spec as load_checkpoint accepts it, without materializing anything:
// dummy:<preset>[:dtype] reads the preset table; files are memory-mapped and their tensor bytes
// summed. `weights_dtype` re-plans every matrix at that dtype from the parameter counts.
Result<PlannedWeights> plan_weights_for_spec(const std::string& spec, std::optional<DType> weights_dtype = {});

// One rank's share of the weights: matrices split over tp ranks, K/V projections follow
// kv_heads_per_rank, norms replicated.
int64_t weight_bytes_per_rank(const std::vector<PlannedTensor>& tensors, const ModelConfig& c, int64_t tp);

// ---- Step workspace -----------------------------------------------------------------------------

// The per-rank buffers of one forward step over `batched_tokens` tokens from `num_seqs` sequences.
struct ActivationBytes {
  int64_t forward_scratch = 0;    // ForwardScratch (model/layers.h): f32 rows per batched token
  int64_t logits = 0;             // num_seqs rows of vocab_size f32
  int64_t attention_scratch = 0;  // flash tiles per thread + split-KV partials
  int64_t total() const { return forward_scratch + logits + attention_scratch; }
};

ActivationBytes activation_bytes(const ModelConfig& c, int64_t tp, int64_t batched_tokens, int64_t num_seqs,
                                 int64_t threads);

// ---- The plan -----------------------------------------------------------------------------------

struct MemoryPlanInputs {
  int64_t max_num_seqs = 1;
  int64_t context = 0;                 // tokens per sequence; 0: the model's context length
  KvDtype kv_dtype = KvDtype::F16;
  int64_t tp = 1;
  int64_t max_num_batched_tokens = 0;  // per step; 0: max(max_num_seqs, 512)
  int64_t block_size = 16;             // KV cache rows per block (sequences take whole blocks)
  int64_t threads = 1;                 // per rank, for the attention scratch
  int64_t budget_bytes = 0;            // per rank
};

// Every figure is for one rank (what one process must hold, compared to the per-rank budget);
// *_all_ranks multiply by tp.
struct MemoryPlan {
  MemoryPlanInputs inputs;             // with defaults resolved
  int64_t weights_bytes = 0;
  int64_t weights_bytes_all_ranks = 0;
  int64_t kv_heads_per_rank = 0;
  int64_t kv_bytes_per_token = 0;
  int64_t kv_bytes_per_sequence = 0;   // at inputs.context, in whole blocks
  int64_t kv_cache_bytes = 0;          // max_num_seqs sequences
  int64_t kv_cache_bytes_all_ranks = 0;
  ActivationBytes activation;
  int64_t total_bytes = 0;             // weights + KV cache + activations
  int64_t total_bytes_all_ranks = 0;
  bool fits = false;                   // total_bytes <= budget_bytes
  int64_t max_num_seqs_fit = 0;        // at inputs.context (0: not even one)
  int64_t max_context_fit = 0;         // at max_num_seqs, at most the model's context length
};

// Checks the inputs against the model (context length, tp split, counts >= 1) with messages a
// user can act on, then computes the plan.
Result<MemoryPlan> plan_memory(const PlannedWeights& weights, const MemoryPlanInputs& inputs);

}  // namespace anvil
