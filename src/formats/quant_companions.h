// Companion tensors: how a scaled weight's QuantScales are stored in a file beside its codes
// (GGUF: NAME_scale; for asymmetric I4, NAME_zero; for GPTQ act-order I4, NAME_order; layouts in
// docs/FORMATS.md).
#pragma once

#include <list>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/tensor.h"
#include "model/checkpoint.h"

namespace anvil {

inline constexpr const char* kScaleSuffix = "_scale";  // blk.0.attn_q.weight_scale
inline constexpr const char* kZeroSuffix = "_zero";    // blk.0.attn_q.weight_zero
inline constexpr const char* kOrderSuffix = "_order";  // blk.0.attn_q.weight_order

// Moves every NAME_scale / NAME_zero / NAME_order tensor of `checkpoint.tensors` into the
// QuantScales of tensor NAME (F32 scale and zero arrays are used in place; F16/BF16 ones, and the
// order's column indices as int32, are converted into storage the checkpoint owns) and validates
// each scaled weight with check_quant_scales. Errors (prefixed with checkpoint.source): a
// companion without its weight, of the wrong shape or type, on a weight whose type takes none; a
// scaled weight without a scale tensor; an order that is not a permutation of the columns.
Status attach_quant_companions(Checkpoint& checkpoint);

// The companion tensors of a weight with scales: F32 views of its scale and zero arrays, shape
// (rows, cols / group), and for an input_order its column indices as F32 (cols), converted into
// `buffers` (which must outlive the tensors). Empty for tensors without scales.
std::vector<Tensor> quant_companion_tensors(const Tensor& weight, std::list<std::vector<float>>& buffers);

// Activation quantization (QuantScales::activations) is recorded once per file, not per weight
// (GGUF: anvil.quantization.activations): the value all F8_E4M3 weights share (None without
// any), or an error naming two that differ, which one record cannot describe.
Result<ActivationQuant> recorded_activation_quant(const Checkpoint& checkpoint);
// The reader's side: sets `activations` on every F8_E4M3 weight.
void apply_activation_quant(Checkpoint& checkpoint, ActivationQuant activations);

}  // namespace anvil
