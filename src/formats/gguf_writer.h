// GGUF writer: saves a Checkpoint as a GGUF v3 file that llama.cpp can load (unless it holds
// anvil's scaled weight types, F8_E4M3 / I8 / I4: docs/FORMATS.md).
#pragma once

#include <string>

#include "anvil/status.h"
#include "core/progress.h"
#include "model/checkpoint.h"

namespace anvil {

// Writes `path` (through path + ".tmp" and a rename, so a failed write never leaves a partial
// file under the final name). Tensor data is streamed from the checkpoint, not buffered. q/k
// rows are permuted when the checkpoint's RoPE layout differs from the one llama.cpp expects
// for the architecture (adjacent pairs for "llama", halves for "qwen2").
// Scaled weights are followed by their companion tensors (NAME_scale, NAME_zero), and
// checkpoint.quantization becomes the anvil.quantization.* metadata.
// `progress` receives bytes written out of the file's size.
Status write_gguf(const Checkpoint& checkpoint, const std::string& path, const ProgressCallback& progress = {});

}  // namespace anvil
