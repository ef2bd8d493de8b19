// load_checkpoint: one entry point for every model source the CLI accepts.
#pragma once

#include <string>

#include "anvil/status.h"
#include "core/progress.h"
#include "model/checkpoint.h"

namespace anvil {

// `spec` is one of:
//   dummy:<preset>[:dtype]   random weights at a real model's shape (model/presets.h)
//   DIR                      a Hugging Face checkpoint directory (config.json + *.safetensors)
//   FILE.gguf                a GGUF file (recognized by its magic, whatever the extension)
//   FILE                     a llama2.c checkpoint (recognized by its header and exact size)
// `progress` reports work that takes time (creating random weights); memory-mapped files
// load in place and report nothing.
Result<Checkpoint> load_checkpoint(const std::string& spec, const ProgressCallback& progress = {});

}  // namespace anvil
