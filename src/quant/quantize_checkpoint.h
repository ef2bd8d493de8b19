// Quantizing a whole checkpoint: the linear layers' weights by one scheme (and the output layer and
// embeddings as the scheme's ecosystem does, QuantizeOptions::output_type), with a report of sizes
// and round-trip errors (what `anvil quantize` runs before writing GGUF).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "quant/calibration.h"
#include "quant/quant_scheme.h"
#include "quant/quantized_matrix.h"
#include "quant/smoothquant.h"

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
  // Calibrated schemes: the relative error of the layer's output on the calibration inputs X,
  // ||(W' - W) X^T||_F / ||W X^T||_F (W the f32 source, after smoothing for SmoothQuant); -1 when
  // not measured. For w4a16-gptq also the same for round-to-nearest of the same weights and
  // inputs, and the Hessian dampening (fraction of its mean diagonal) that GPTQ needed.
  double output_error = -1;
  double rtn_output_error = -1;
  double gptq_damp = 0;
};

struct QuantizeReport {
  std::vector<TensorQuantReport> tensors;  // the quantized ones, in name order
  // The output layer and embeddings re-encoded by QuantizeOptions::output_type / embedding_type
  // (left out of the quantized_* / bits_per_weight / error figures, which are the linear weights';
  // in checkpoint_bytes_before / after).
  std::vector<TensorQuantReport> head_tensors;
  uint64_t checkpoint_bytes_before = 0, checkpoint_bytes_after = 0;  // every tensor
  int64_t quantized_elements() const;
  uint64_t quantized_bytes_before() const;
  uint64_t quantized_bytes_after() const;
  double bits_per_weight() const;  // of the quantized tensors, scales included
  double max_relative_rms_error() const;
  double mean_relative_rms_error() const;  // over tensors
  double max_normalized_max_error() const;

  // Calibrated schemes.
  int64_t calibration_samples = 0, calibration_seq_len = 0;
  std::vector<SmoothingReport> smoothing;  // SmoothQuant: per smoothed norm, layer by layer
  double mean_output_error() const;        // over the tensors that measured it; -1 if none
  double mean_rtn_output_error() const;
};

// Calibrated schemes run layer by layer: called after each layer is done, with the report so far.
using LayerProgressCallback = std::function<void(int64_t layer, int64_t n_layers, const QuantizeReport& so_far)>;

// Replaces each linear weight of `checkpoint` by its quantized form (new bytes and scales owned
// by checkpoint.storage), then the output layer and embeddings by options.output_type /
// embedding_type (a type asked for that their rows do not fit fails before anything is done), and
// sets checkpoint.quantization. The source may be any loadable dtype,
// scaled ones included (dequantized with their scales first). `progress` counts elements.
// Calibrated schemes (options.calibrated()) need the overload with a calibration set.
Result<QuantizeReport> quantize_checkpoint(Checkpoint& checkpoint, const QuantizeOptions& options, ThreadPool& pool,
                                           const ProgressCallback& progress = {});

// Any scheme; the calibrated ones learn from `calibration`:
//   w4a16-gptq   sequential GPTQ (quant/gptq_checkpoint.h): per layer, the Hessians of its inputs
//                with every earlier layer already quantized, then GPTQ of its 7 weights.
//   w8a8 + SmoothQuant   per layer, activation ranges from the float model, smoothing folded
//                into the norms and weights (quant/smoothquant.h), then int8 per channel.
// The others ignore the calibration set.
Result<QuantizeReport> quantize_checkpoint(Checkpoint& checkpoint, const QuantizeOptions& options,
                                           const CalibrationSet& calibration, ThreadPool& pool,
                                           const ProgressCallback& progress = {},
                                           const LayerProgressCallback& on_layer = {});

// For the calibrated drivers: a weight's values as f32 (scales applied), rows in parallel.
std::vector<float> weight_to_f32(const Tensor& tensor, ThreadPool& pool);
// Replaces `tensor` by `q` (kept alive by checkpoint.storage; the shape is kept) and reports the
// round trip against `w`, the f32 values it was quantized from; `before` is the tensor as the
// checkpoint held it (its dtype and bytes go in the report).
TensorQuantReport install_quantized(Checkpoint& checkpoint, Tensor& tensor, const Tensor& before, QuantizedMatrix q,
                                    const std::vector<float>& w, ThreadPool& pool);

// The output layer (output.weight, or token_embd.weight when the embeddings are tied) and an
// untied token_embd.weight to options.output_type / embedding_type (QuantizeOptions), as
// quantize_checkpoint does after the linear weights; for callers that quantize a checkpoint in
// parts (anvil bench quant). One report per tensor re-encoded.
Result<std::vector<TensorQuantReport>> quantize_head_tensors(Checkpoint& checkpoint, const QuantizeOptions& options,
                                                             ThreadPool& pool);

}  // namespace anvil
