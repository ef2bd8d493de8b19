// Quantized Hugging Face checkpoints (compressed-tensors, AutoGPTQ, AutoAWQ): the quantization
// config, and decoders that repack each layout's tensors into anvil's F8_E4M3 / I8 / I4 weights
// with their QuantScales (layouts and conventions: docs/FORMATS.md, "Quantized Hugging Face
// checkpoints").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/tensor.h"
#include "formats/safetensors.h"
#include "model/checkpoint.h"

namespace anvil {

enum class HfQuantMethod { None, CompressedTensors, Gptq, Awq };

// The "input_activations" arguments of a compressed-tensors config group, as written (checked
// only where a weight they apply to is decoded, so the message can name the layer).
struct HfCtActivationArgs {
  bool present = false;    // false: null or absent (weight-only quantization, W8A16 / W4A16)
  int num_bits = 8;
  std::string type = "int";       // "int" or "float"
  std::string strategy = "tensor";  // "token", "tensor", ...
  std::string dynamic = "false";  // "true", "false" or a string value ("local") in lower case
};

// The "weights" arguments of one compressed-tensors config group (config_groups.NAME.weights),
// and its input_activations.
struct HfCtWeightArgs {
  std::string group_name;  // "group_0", for messages
  int num_bits = 0;
  std::string type;        // "int" or "float"
  std::string strategy;    // "tensor", "channel" or "group" (others are refused when parsed)
  int64_t group_size = 0;  // strategy "group"
  bool symmetric = true;
  HfCtActivationArgs input_activations;
};

// quantization_config of config.json (or AutoGPTQ's quantize_config.json / AutoAWQ's
// quant_config.json beside it), checked for what anvil can load.
struct HfQuantization {
  HfQuantMethod method = HfQuantMethod::None;
  std::string where;  // "DIR/config.json: quantization_config", for messages; empty: no config
  // compressed-tensors
  std::string format;                 // float-quantized, int-quantized, naive-quantized, pack-quantized,
                                      // mixed-precision
  std::vector<HfCtWeightArgs> groups; // one per config group with weights
  // AutoGPTQ / AutoAWQ: 4-bit codes, scales per group_size input columns (-1: whole rows)
  int bits = 0;
  int64_t group_size = -1;
  bool symmetric = true;       // GPTQ sym (zero point 8 everywhere); AWQ zero_point = false
  bool desc_act = false;       // GPTQ act-order: g_idx decides (permuted groups: I4 input_order)
  bool gptq_zero_minus_one = true;  // checkpoint_format "gptq" (v1) stores zero - 1 in qzeros
};

// Reads the quantization config of model directory `dir` from its config.json text (parsed again
// here) or, when config.json has none, from quantize_config.json / quant_config.json. Method None
// for plain checkpoints (and for compressed-tensors format "dense", whose weights are float).
// Errors name the file and the field: unknown quant_method, bits other than 4 for GPTQ/AWQ, AWQ
// versions other than GEMM, GPTQ Marlin format, block-wise or FP4 schemes, asymmetric int8,
// sparse checkpoints.
Result<HfQuantization> read_hf_quantization(const std::string& dir, const std::string& config_text);

// The safetensors entries of a directory by Hugging Face name (across shards); null when absent.
using HfTensorFinder = std::function<const SafetensorsEntry*(const std::string& hf_name)>;

// Decodes the linear weight of `module` ("model.layers.0.self_attn.q_proj"), whose logical shape
// is (rows, cols) = (out_features, in_features), from the layout `quantization` declares:
//   compressed-tensors  MODULE.weight (F8_E4M3 or I8) + weight_scale [+ weight_zero_point],
//                       or MODULE.weight_packed (I32) + weight_shape + weight_scale
//                       [+ weight_zero_point] [+ weight_g_idx]
//   gptq                MODULE.qweight + qzeros + scales [+ g_idx]
//   awq                 MODULE.qweight + qzeros + scales
// F8_E4M3 and I8 codes (and compressed-tensors' 4-bit packing, which is byte-identical to I4)
// stay in the file mapping; repacked codes, scales and zero points go into buffers appended to
// `storage`. nullopt when the module is stored as a plain float MODULE.weight (a layer the
// quantizer skipped, e.g. lm_head). Errors name the tensor and what is wrong with it.
Result<std::optional<Tensor>> decode_hf_quantized_weight(const HfQuantization& quantization,
                                                         const std::string& module, int64_t rows, int64_t cols,
                                                         const HfTensorFinder& find,
                                                         std::vector<std::shared_ptr<const void>>& storage);

// True for tensor names only a quantized layout has (".qweight", ".weight_packed",
// ".weight_scale", ...): a checkpoint holding them needs a quantization config.
bool is_hf_quantized_tensor_name(const std::string& name);

// How the checkpoint was quantized, for Checkpoint::quantization ("anvil info", GGUF metadata).
QuantizationInfo hf_quantization_info(const HfQuantization& quantization);

}  // namespace anvil
