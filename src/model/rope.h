// RoPE frequency tables, shared by the forward pass and the GGUF writer (rope_freqs.weight).
#pragma once

#include <vector>

#include "model/model_config.h"

namespace anvil {

// Per-frequency divisors for rotary dimension pair i (i < rotary_dim/2): the angle of pair i at
// position p is p * theta^(-2i/rotary_dim) / divisor[i]. All ones without scaling; Llama 3.1's
// "llama3" scaling gives the factors llama.cpp stores as rope_freqs.weight; linear scaling
// divides every frequency by the factor.
std::vector<float> rope_frequency_divisors(const ModelConfig& config);

}  // namespace anvil
