// Converting a checkpoint's weight matrices to another dtype (anvil convert --type, and the GGML
// schemes of anvil quantize).
#pragma once

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"

namespace anvil {

// Re-encodes every 2-D weight matrix into `dtype` (norms, biases and rope tables stay F32, as
// in llama.cpp's files). Matrices already in `dtype` are kept as they are (no copy).
Status convert_weight_dtype(Checkpoint& checkpoint, DType dtype, const ProgressCallback& progress = {});

// Re-encodes one tensor of `checkpoint` into `dtype` (one with a from_float: the plain and GGML
// block types) through float rows: any source dtype, scaled ones with their scales included.
// The new bytes are owned by checkpoint.storage (the old ones stay where they were); the tensor
// keeps no QuantScales. Rows are shared out over `pool` when one is given.
Status convert_tensor_dtype(Checkpoint& checkpoint, Tensor& tensor, DType dtype, ThreadPool* pool = nullptr);

}  // namespace anvil
