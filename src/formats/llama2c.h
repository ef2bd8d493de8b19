// llama2.c legacy checkpoints (Karpathy's run.c format): a 7-int header then fp32 tensors.
#pragma once

#include <string>

#include "anvil/status.h"
#include "model/checkpoint.h"

namespace anvil {

// Loads a llama2.c checkpoint. The file size must match the header's shapes exactly, which is
// also how a file without a magic number is recognized. No tokenizer is embedded in the format.
Result<Checkpoint> load_llama2c_checkpoint(const std::string& path);

}  // namespace anvil
