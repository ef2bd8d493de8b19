// Quantization applied when a model loads (`anvil run/serve -q`, sweep weight schemes): the
// round-to-nearest schemes of `anvil quantize`, named with their options as one word.
#pragma once

#include <optional>
#include <string>

#include "anvil/status.h"
#include "quant/quant_scheme.h"

namespace anvil {

// "SCHEME[:option,...]" with options g32|g64|g128, asym, per-tensor ("w4a16-rtn:g32,asym",
// "fp8:per-tensor"); "" or "none": no quantization (nullopt). Checked before anything loads.
Result<std::optional<QuantizeOptions>> parse_online_quantization(const std::string& text);

// True for the schemes whose weights carry external scales (fp8, fp8-dynamic, w8a8, w4a16-rtn): a
// dummy preset cannot be generated in them directly, so they are applied to the loaded model.
bool is_scaled_scheme(const std::string& text);

}  // namespace anvil
