// Built-in model presets: real architectures' shapes, instantiated with deterministic random
// weights (`--model dummy:<preset>[:dtype]`, like vLLM's --load-format dummy).
#pragma once

#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/progress.h"
#include "model/checkpoint.h"

namespace anvil {

struct ModelPreset {
  const char* name;
  const char* description;
  ModelConfig config;       // full hyperparameters at the real model's shape
  DType default_dtype;      // weights dtype when the spec names none
};

const std::vector<ModelPreset>& model_presets();
const ModelPreset* find_model_preset(const std::string& name);

// Bytes the dummy weights of `config` take at `dtype` (norms and rope tables are F32).
uint64_t dummy_weight_bytes(const ModelConfig& config, DType dtype);

// Builds a checkpoint with random weights for a spec "dummy:<preset>" or "dummy:<preset>:<dtype>".
// Fails with a clear message when the preset is unknown or the weights would not fit in memory.
Result<Checkpoint> create_dummy_checkpoint(const std::string& spec, const ProgressCallback& progress = {});

// The synthetic byte-level vocabulary every preset carries: <unk>, <s>, </s>, the 256 byte
// tokens <0x00>..<0xFF>, "▁" (a space), then pseudo-words ("▁ka", "▁tobe") up to vocab_size.
// It is a valid SentencePiece-style vocabulary, so llama.cpp can load GGUFs written from it.
Vocab synthetic_byte_vocab(int64_t vocab_size);

}  // namespace anvil
