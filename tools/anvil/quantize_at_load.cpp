// --quantization: the quantize library on the loaded checkpoint, before the model is built.
#include "quantize_at_load.h"

#include <fmt/format.h>

#include <chrono>
#include <string>

#include "core/progress.h"
#include "core/thread_pool.h"
#include "model/repack_weights.h"
#include "quant/online_quantization.h"
#include "quant/quantize_checkpoint.h"

namespace anvil::cli {

Result<std::optional<QuantizeOptions>> parse_quantization_flag(const std::string& scheme) {
  Result<std::optional<QuantizeOptions>> parsed = parse_online_quantization(scheme);
  if (!parsed) return parsed.status().with_context("--quantization");
  return parsed;
}

Status apply_online_quantization(Checkpoint& checkpoint, const QuantizeOptions& options, int threads) {
  const auto start = std::chrono::steady_clock::now();
  ThreadPool pool(threads > 0 ? threads : default_thread_count());
  TerminalProgress progress(fmt::format("quantizing ({})", quant_scheme_name(options.scheme)), false);
  Result<QuantizeReport> report = quantize_checkpoint(checkpoint, options, pool, progress.callback());
  progress.finish();
  if (!report) return report.status().with_context("--quantization");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string head;  // the output layer / embeddings of the GGML schemes
  for (const TensorQuantReport& t : report->head_tensors)
    head += fmt::format(", {} {} -> {}", t.name, dtype_name(t.from), dtype_name(t.to));
  fmt::print(stderr,
             "anvil: quantized {} linear weights to {} in {:.1f} s: {:.2f} bits per weight, {:.1f} -> {:.1f} MiB, "
             "mean relative RMS error {:.2e}{}\n",
             report->tensors.size(), quant_scheme_name(options.scheme), seconds, report->bits_per_weight(),
             report->quantized_bytes_before() / 1048576.0, report->quantized_bytes_after() / 1048576.0,
             report->mean_relative_rms_error(), head);
  return Status::ok();
}

void repack_for_decode(Checkpoint& checkpoint, int threads) {
  const auto start = std::chrono::steady_clock::now();
  TerminalProgress progress("preparing weights for decode", true);
  const RepackReport report = repack_weights_for_decode(checkpoint, threads, progress.callback());
  progress.finish();
  if (report.tensors == 0 && report.moved_tensors == 0) return;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string what;
  if (report.tensors > 0)
    what = fmt::format("repacked {} Q8_0/Q4_0/Q4_K weights ({:.1f} MiB) into decode panels", report.tensors,
                       report.bytes / 1048576.0);
  if (report.moved_tensors > 0)
    what += fmt::format("{}moved {} other weights ({:.1f} MiB) from the file mapping into huge pages",
                        what.empty() ? "" : ", ", report.moved_tensors, report.moved_bytes / 1048576.0);
  fmt::print(stderr, "anvil: {} in {:.2f} s (ANVIL_REPACK=0: off)\n", what, seconds);
}

}  // namespace anvil::cli
