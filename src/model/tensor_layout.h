// The tensors a model config requires: canonical names (see checkpoint.h) and shapes, in file order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace anvil {

struct RequiredTensor {
  std::string name;             // canonical (GGUF) name
  std::vector<int64_t> shape;   // numpy order
};

// token_embd, then each layer's tensors, then output_norm and output (absent when tied); biases
// only with attn_qkv_bias. rope_freqs.weight is optional and not listed. Every format reader,
// writer and the random-weight presets use this one list.
std::vector<RequiredTensor> required_tensors(const ModelConfig& c);

}  // namespace anvil
