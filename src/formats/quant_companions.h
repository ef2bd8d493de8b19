// Companion tensors: how a scaled weight's QuantScales are stored in a file beside its codes
// (GGUF: NAME_scale and, for asymmetric I4, NAME_zero; layouts in docs/FORMATS.md).
#pragma once

#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/tensor.h"
#include "model/checkpoint.h"

namespace anvil {

inline constexpr const char* kScaleSuffix = "_scale";  // blk.0.attn_q.weight_scale
inline constexpr const char* kZeroSuffix = "_zero";    // blk.0.attn_q.weight_zero

// Moves every NAME_scale / NAME_zero tensor of `checkpoint.tensors` into the QuantScales of
// tensor NAME (F32 arrays are used in place; F16/BF16 ones are converted into storage the
// checkpoint owns) and validates each scaled weight with check_quant_scales. Errors (prefixed
// with checkpoint.source): a companion without its weight, of the wrong shape or type, on a
// weight whose type takes none; a scaled weight without a scale tensor.
Status attach_quant_companions(Checkpoint& checkpoint);

// The companion tensors of a weight with scales, as F32 views of its QuantScales arrays: shape
// (rows, cols / group). Empty for tensors without scales.
std::vector<Tensor> quant_companion_tensors(const Tensor& weight);

// Activation quantization (QuantScales::activations) is recorded once per file, not per weight
// (GGUF: anvil.quantization.activations): the value all F8_E4M3 weights share (None without
// any), or an error naming two that differ, which one record cannot describe.
Result<ActivationQuant> recorded_activation_quant(const Checkpoint& checkpoint);
// The reader's side: sets `activations` on every F8_E4M3 weight.
void apply_activation_quant(Checkpoint& checkpoint, ActivationQuant activations);

}  // namespace anvil
