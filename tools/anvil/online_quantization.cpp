// Online quantization: the quantize library on the loaded checkpoint, before the model is built.
#include "online_quantization.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "core/progress.h"
#include "core/thread_pool.h"
#include "quant/quantize_checkpoint.h"

namespace anvil::cli {

Result<std::optional<QuantizeOptions>> parse_online_quantization(const std::string& scheme) {
  if (scheme.empty()) return std::optional<QuantizeOptions>();
  // SCHEME[:option,...] with the options of `anvil quantize`: g32|g64|g128, asym, per-tensor.
  QuantizeRequest request;
  const size_t colon = scheme.find(':');
  request.scheme = scheme.substr(0, colon);
  if (colon != std::string::npos) {
    std::string rest = scheme.substr(colon + 1);
    size_t at = 0;
    while (at <= rest.size()) {
      const size_t comma = std::min(rest.find(',', at), rest.size());
      const std::string option = rest.substr(at, comma - at);
      if (option == "asym") {
        request.asymmetric = true;
      } else if (option == "per-tensor") {
        request.per_tensor = true;
      } else if (option.size() > 1 && option[0] == 'g' && option.find_first_not_of("0123456789", 1) == std::string::npos &&
                 option.size() < 8) {
        request.group_size = std::stoll(option.substr(1));
      } else {
        return Status::error(fmt::format("--quantization {}: unknown option '{}' (g32, g64, g128, asym, per-tensor)",
                                         scheme, option));
      }
      at = comma + 1;
    }
  }
  Result<QuantizeOptions> options = make_quantize_options(request);
  if (!options) return options.status().with_context("--quantization");
  return std::optional<QuantizeOptions>(*options);
}

Status apply_online_quantization(Checkpoint& checkpoint, const QuantizeOptions& options, int threads) {
  const auto start = std::chrono::steady_clock::now();
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
  TerminalProgress progress(fmt::format("quantizing ({})", quant_scheme_name(options.scheme)), false);
  Result<QuantizeReport> report = quantize_checkpoint(checkpoint, options, pool, progress.callback());
  progress.finish();
  if (!report) return report.status().with_context("--quantization");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(stderr,
             "anvil: quantized {} linear weights to {} in {:.1f} s: {:.2f} bits per weight, {:.1f} -> {:.1f} MiB, "
             "mean relative RMS error {:.2e}\n",
             report->tensors.size(), quant_scheme_name(options.scheme), seconds, report->bits_per_weight(),
             report->quantized_bytes_before() / 1048576.0, report->quantized_bytes_after() / 1048576.0,
             report->mean_relative_rms_error());
  return Status::ok();
}

}  // namespace anvil::cli
