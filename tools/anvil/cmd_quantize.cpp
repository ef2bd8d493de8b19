// anvil quantize: a model's linear layers to fp8 / w8a8 / w4a16-rtn (or GGML q8_0/q4_0/q4_k), as GGUF.
#include <fmt/format.h>

#include <chrono>

#include "commands.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "formats/gguf_writer.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "quant/quantize_checkpoint.h"

namespace anvil::cli {
namespace {

struct QuantizeCliOptions {
  std::string model;
  std::string out;
  QuantizeRequest request;
  int64_t group = 0;  // 0: not given
  int threads = 0;
};

// Refuses checkpoints anvil could not run (before quantizing: a clear error early; after: the
// scales and shapes the file will hold).
Status check_runnable(const Checkpoint& checkpoint) {
  auto probe = std::make_shared<const Checkpoint>(checkpoint);
  return DecoderModel::create(probe).status();
}

void print_summary(const QuantizeReport& report, const QuantizationInfo& info, const std::string& out) {
  std::string scheme = info.scheme + " (" + info.granularity;
  if (info.granularity == "group") scheme += fmt::format(" {}, {}", info.group_size, info.symmetric ? "symmetric" : "asymmetric");
  scheme += ")";
  const TensorQuantReport& first = report.tensors.front();
  fmt::print("scheme:     {}\n", scheme);
  fmt::print("quantized:  {} tensors, {} weights, {} -> {}\n", report.tensors.size(),
             format_count(report.quantized_elements()), dtype_name(first.from), dtype_name(first.to));
  fmt::print("bytes:      {:.2f} MiB -> {:.2f} MiB in those tensors ({:.2f} bits per weight, scales included)\n",
             report.quantized_bytes_before() / 1048576.0, report.quantized_bytes_after() / 1048576.0,
             report.bits_per_weight());
  fmt::print("            {:.2f} MiB -> {:.2f} MiB for the whole model\n", report.checkpoint_bytes_before / 1048576.0,
             report.checkpoint_bytes_after / 1048576.0);
  fmt::print("error:      relative RMS round-trip error max {:.3e}, mean {:.3e}; max |error| / max |w| {:.3e}\n",
             report.max_relative_rms_error(), report.mean_relative_rms_error(), report.max_normalized_max_error());
  fmt::print("wrote:      {}\n", out);
}

int quantize(QuantizeCliOptions options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.group != 0) options.request.group_size = options.group;
  // Everything that needs no model first, so a typo fails before a long load.
  Result<QuantizeOptions> quantize_options = make_quantize_options(options.request);
  if (!quantize_options) return fail(quantize_options.status().message());

  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  if (Status runnable = check_runnable(*checkpoint); !runnable) return fail(runnable.message());

  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());
  TerminalProgress quantize_progress(fmt::format("quantizing to {}", quant_scheme_name(quantize_options->scheme)), false);
  Result<QuantizeReport> report = quantize_checkpoint(*checkpoint, *quantize_options, pool, quantize_progress.callback());
  quantize_progress.finish();
  if (!report) return fail(report.status().message());
  if (Status runnable = check_runnable(*checkpoint); !runnable) return fail(runnable.message());

  TerminalProgress write_progress("writing " + options.out, true);
  Status written = write_gguf(*checkpoint, options.out, write_progress.callback());
  write_progress.finish();
  if (!written) return fail(written.message());
  print_summary(*report, checkpoint->quantization, options.out);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(stderr, "anvil: quantized {} in {:.2f} s\n", options.model, seconds);
  return 0;
}

}  // namespace

void add_quantize_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<QuantizeCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantize a model's linear layers (fp8, w8a8, w4a16-rtn, q8_0, q4_0, q4_k) into a GGUF file");
  cmd->add_option("-m,--model", options->model,
                  "GGUF file, Hugging Face directory, llama2.c checkpoint, or dummy:<preset>[:dtype]")
      ->required();
  cmd->add_option("-o,--out", options->out, "Output GGUF path")->required();
  cmd->add_option("--scheme", options->request.scheme,
                  "fp8 (E4M3, W8A16), w8a8 (int8 weights and per-token activations), w4a16-rtn (int4 groups), "
                  "or the GGML types q8_0, q4_0, q4_k")
      ->required();
  cmd->add_option("--group", options->group, "w4a16-rtn: elements per scale, 32, 64 or 128 (default 128)");
  cmd->add_flag("--asym", options->request.asymmetric, "w4a16-rtn: asymmetric (scale and zero point per group)");
  cmd->add_flag("--per-tensor", options->request.per_tensor, "fp8: one scale per tensor (default: one per row)");
  cmd->add_option("--calib", options->request.calibration_file,
                  "Calibration data, for calibrated schemes (none available yet)");
  cmd->add_flag("--smoothquant", options->request.smoothquant, "w8a8 with SmoothQuant (not available yet)");
  cmd->add_option("-t,--threads", options->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->callback([options, &exit_code] { exit_code = quantize(*options); });
}

}  // namespace anvil::cli
