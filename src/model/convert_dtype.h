// Converting a checkpoint's weight matrices to another dtype (anvil convert --type).
#pragma once

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/progress.h"
#include "model/checkpoint.h"

namespace anvil {

// Re-encodes every 2-D weight matrix into `dtype` (norms, biases and rope tables stay F32, as
// in llama.cpp's files). Matrices already in `dtype` are kept as they are (no copy).
Status convert_weight_dtype(Checkpoint& checkpoint, DType dtype, const ProgressCallback& progress = {});

}  // namespace anvil
