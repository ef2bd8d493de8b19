// Parsing "scheme:options" into the options `anvil quantize` takes as flags.
#include "quant/online_quantization.h"

#include <fmt/format.h>

#include <algorithm>

namespace anvil {

Result<std::optional<QuantizeOptions>> parse_online_quantization(const std::string& text) {
  if (text.empty() || text == "none") return std::optional<QuantizeOptions>();
  QuantizeRequest request;
  const size_t colon = text.find(':');
  request.scheme = text.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string rest = text.substr(colon + 1);
    size_t at = 0;
    while (at <= rest.size()) {
      const size_t comma = std::min(rest.find(',', at), rest.size());
      const std::string option = rest.substr(at, comma - at);
      if (option == "asym") {
        request.asymmetric = true;
      } else if (option == "per-tensor") {
        request.per_tensor = true;
      } else if (option.size() > 1 && option.size() < 8 && option[0] == 'g' &&
                 option.find_first_not_of("0123456789", 1) == std::string::npos) {
        request.group_size = std::stoll(option.substr(1));
      } else {
        return Status::error(
            fmt::format("quantization {}: unknown option '{}' (g32, g64, g128, asym, per-tensor)", text, option));
      }
      at = comma + 1;
    }
  }
  Result<QuantizeOptions> options = make_quantize_options(request);
  if (!options) return options.status();
  return std::optional<QuantizeOptions>(*options);
}

bool is_scaled_scheme(const std::string& text) {
  Result<std::optional<QuantizeOptions>> parsed = parse_online_quantization(text);
  return parsed && *parsed && dtype_has_external_scales(quant_scheme_dtype((**parsed).scheme));
}

}  // namespace anvil
