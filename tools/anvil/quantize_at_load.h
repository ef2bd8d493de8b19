// --quantization SCHEME for `anvil run` and `anvil serve`: the linear layers are quantized in
// memory right after loading (as vLLM's `--quantization fp8` does), with the round-to-nearest
// schemes of `anvil quantize` (calibrated ones need `anvil quantize --calib` ahead of time).
#pragma once

#include <optional>
#include <string>

#include "anvil/status.h"
#include "model/checkpoint.h"
#include "quant/quant_scheme.h"

namespace anvil::cli {

// Checks SCHEME[:options] (quant/online_quantization.h) before anything loads; nullopt for none.
Result<std::optional<QuantizeOptions>> parse_quantization_flag(const std::string& scheme);

// Quantizes `checkpoint` in place with a progress bar and one summary line on stderr.
Status apply_online_quantization(Checkpoint& checkpoint, const QuantizeOptions& options, int threads);

// repack_weights_for_decode (model/repack_weights.h) with a progress bar, and one line on stderr
// when it repacked anything.
void repack_for_decode(Checkpoint& checkpoint, int threads);

// The help text of the flag, shared by both commands.
inline constexpr const char* kOnlineQuantizationHelp =
    "Quantize the linear layers at load: fp8, fp8-dynamic (fp8 weights and per-token fp8 activations), w8a8, "
    "w4a16-rtn, q8_0, q4_0 or q4_k (none: off), with options after a colon as in w4a16-rtn:g32,asym or "
    "fp8:per-tensor (anvil quantize's --group/--asym/--per-tensor)";

}  // namespace anvil::cli
