// Sequential GPTQ over a whole checkpoint (what `anvil quantize --scheme w4a16-gptq` runs).
#pragma once

#include <cstdint>
#include <functional>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "quant/calibration.h"
#include "quant/quantize_checkpoint.h"

namespace anvil {

// Layer by layer (GPTQ's and llm-compressor's sequential pipeline), for l = 0 .. L-1:
//   1. the layer's 7 weights become f32 copies; the calibration samples, already carried through
//      the QUANTIZED layers 0 .. l-1, run through layer l, accumulating one Hessian per input:
//      q/k/v share attn_norm's output, gate/up share ffn_norm's output, o and down have their own;
//   2. each Hessian is prepared once (quant/gptq.h) and every weight reading it is quantized by
//      GPTQ; the output errors of GPTQ and of round-to-nearest on the same inputs are measured;
//   3. the layer runs again with the dequantized weights (f32 compute), and its outputs become
//      layer l+1's inputs (skipped after the last layer).
// The weights end up as I4 tensors in `checkpoint` (owned by its storage); a TensorQuantReport per
// weight goes to report.tensors. `layer_done(l, L)` is called after each layer.
Status gptq_quantize_layers(Checkpoint& checkpoint, const QuantizeOptions& options, const CalibrationSet& calibration,
                            ThreadPool& pool, QuantizeReport& report,
                            const std::function<void(int64_t layer, int64_t n_layers)>& layer_done);

}  // namespace anvil
