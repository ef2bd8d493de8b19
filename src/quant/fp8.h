// FP8 E4M3 weight quantizer (vLLM / llm-compressor "FP8" and "FP8_DYNAMIC" weight layout).
#pragma once

#include <string>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "quant/quantized_matrix.h"

namespace anvil {

enum class Fp8Granularity { PerChannel, PerTensor };

// scale = absmax / 448 over each row (PerChannel) or the whole matrix (PerTensor, stored in
// every row: core/quant_scales.h), code = float_to_e4m3(w / scale): round to nearest even,
// saturating at ±448. An all-zero row (or matrix) gets scale 0 and +0 codes. Each element's
// relative error is at most 2^-4 where w / scale is a normal E4M3 value (|w / scale| >= 2^-6),
// and at most 2^-10 * scale absolute below that.
Result<QuantizedMatrix> quantize_fp8(const std::string& what, const float* w, int64_t rows, int64_t cols,
                                     Fp8Granularity granularity, ThreadPool& pool);

}  // namespace anvil
