// Quantizing a whole checkpoint: the linear layers' weights by one scheme, with a report of sizes
// and round-trip errors (what `anvil quantize` runs before writing GGUF).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "quant/quant_scheme.h"

namespace anvil {

// The weights a scheme quantizes: blk.N.{attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up,
// ffn_down}.weight. Embeddings, lm_head (output.weight), norms and biases keep their dtype, as
// vLLM's schemes leave them.
bool is_quantized_linear_weight(const std::string& name);

struct TensorQuantReport {
  std::string name;
  DType from = DType::F32, to = DType::F32;
  int64_t elements = 0;
  uint64_t bytes_before = 0, bytes_after = 0;  // codes plus any scale / zero arrays
  // Round trip w -> quantized -> dequantized w': ||w' - w||_2 / ||w||_2, and max |w' - w| / max |w|.
  double relative_rms_error = 0;
  double normalized_max_error = 0;
};

struct QuantizeReport {
  std::vector<TensorQuantReport> tensors;  // the quantized ones, in name order
  uint64_t checkpoint_bytes_before = 0, checkpoint_bytes_after = 0;  // every tensor
  int64_t quantized_elements() const;
  uint64_t quantized_bytes_before() const;
  uint64_t quantized_bytes_after() const;
  double bits_per_weight() const;  // of the quantized tensors, scales included
  double max_relative_rms_error() const;
  double mean_relative_rms_error() const;  // over tensors
  double max_normalized_max_error() const;
};

// Replaces each linear weight of `checkpoint` by its quantized form (new bytes and scales owned
// by checkpoint.storage) and sets checkpoint.quantization. The source may be any loadable dtype,
// scaled ones included (dequantized with their scales first). `progress` counts elements.
Result<QuantizeReport> quantize_checkpoint(Checkpoint& checkpoint, const QuantizeOptions& options, ThreadPool& pool,
                                           const ProgressCallback& progress = {});

}  // namespace anvil
