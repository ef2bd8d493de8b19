// INT4 W4A16 round-to-nearest quantizer: group-wise scales, symmetric or asymmetric (the
// llm-compressor "W4A16" / AutoGPTQ layout without GPTQ's error feedback).
#pragma once

#include <cstdint>
#include <string>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "quant/quantized_matrix.h"

namespace anvil {

struct Int4Options {
  int64_t group = 128;     // 32, 64 or 128; must divide the row
  bool symmetric = true;
};

// Per group of `group` consecutive elements of a row, with the range widened to include 0 (as
// compressed-tensors and AutoGPTQ do, so 0 is exact):
//   symmetric:  scale = absmax / 7.5, q = clamp(rne(w / scale), -8, 7), stored u = q + 8
//               (compressed-tensors' max / ((qmax - qmin) / 2) and GPTQ's 2 * absmax / 15)
//   asymmetric: scale = (max - min) / 15, zero = rne(-min / scale) in [0, 15],
//               u = clamp(rne(w / scale) + zero, 0, 15)
// so |w - (u - zero) * scale| <= scale / 2 for every element (+absmax lands on 7.5 and is clamped
// to 7 when symmetric: exactly half a step). rne rounds half to even, as torch.round does. An
// all-zero group gets scale 0 (and zero 0 when asymmetric).
Result<QuantizedMatrix> quantize_int4_rtn(const std::string& what, const float* w, int64_t rows, int64_t cols,
                                          const Int4Options& options, ThreadPool& pool);

}  // namespace anvil
