// anvil quantize: a model's linear layers to fp8 / fp8-dynamic / w8a8 (optionally SmoothQuant) /
// w4a16-rtn / w4a16-gptq (or GGML q8_0/q4_0/q4_k, with the output layer and embeddings as
// llama-quantize makes them), as GGUF.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <functional>

#include "commands.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "formats/gguf_writer.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "quant/calibration.h"
#include "quant/quantize_checkpoint.h"

namespace anvil::cli {
namespace {

struct QuantizeCliOptions {
  std::string model;
  std::string out;
  QuantizeRequest request;
  int64_t group = 0;  // 0: not given
  int threads = 0;
  // Options whose presence matters (copied into the request's std::optionals when given).
  double alpha = 0.5;
  int64_t calibration_samples = 0, calibration_seq_len = 0;
  CLI::Option* alpha_option = nullptr;
  CLI::Option* samples_option = nullptr;
  CLI::Option* seq_len_option = nullptr;
};

// Refuses checkpoints anvil could not run (before quantizing: a clear error early; after: the
// scales and shapes the file will hold).
Status check_runnable(const Checkpoint& checkpoint) {
  auto probe = std::make_shared<const Checkpoint>(checkpoint);
  return DecoderModel::create(probe).status();
}

std::string scheme_description(const QuantizationInfo& info) {
  std::string scheme = info.scheme + " (" + info.granularity;
  if (info.granularity == "group") scheme += fmt::format(" {}, {}", info.group_size, info.symmetric ? "symmetric" : "asymmetric");
  if (info.act_order) scheme += info.dynamic_groups ? ", act-order, dynamic groups" : ", act-order";
  if (info.smoothquant_alpha) scheme += fmt::format(", alpha {:g}", *info.smoothquant_alpha);
  if (info.activations != ActivationQuant::None)
    scheme += fmt::format(", activations {}", activation_quant_name(info.activations));
  return scheme + ")";
}

void print_summary(const QuantizeReport& report, const QuantizationInfo& info, const std::string& out) {
  const TensorQuantReport& first = report.tensors.front();
  fmt::print("scheme:     {}\n", scheme_description(info));
  if (report.calibration_samples > 0)
    fmt::print("calibration: {} samples x {} tokens\n", report.calibration_samples, report.calibration_seq_len);
  fmt::print("quantized:  {} tensors, {} weights, {} -> {}\n", report.tensors.size(),
             format_count(report.quantized_elements()), dtype_name(first.from), dtype_name(first.to));
  fmt::print("bytes:      {:.2f} MiB -> {:.2f} MiB in those tensors ({:.2f} bits per weight, scales included)\n",
             report.quantized_bytes_before() / 1048576.0, report.quantized_bytes_after() / 1048576.0,
             report.bits_per_weight());
  fmt::print("            {:.2f} MiB -> {:.2f} MiB for the whole model\n", report.checkpoint_bytes_before / 1048576.0,
             report.checkpoint_bytes_after / 1048576.0);
  fmt::print("error:      relative RMS round-trip error max {:.3e}, mean {:.3e}; max |error| / max |w| {:.3e}\n",
             report.max_relative_rms_error(), report.mean_relative_rms_error(), report.max_normalized_max_error());
  for (const TensorQuantReport& t : report.head_tensors)
    fmt::print("also:       {} {} -> {}, {:.2f} MiB -> {:.2f} MiB, relative RMS round-trip error {:.3e}\n", t.name,
               dtype_name(t.from), dtype_name(t.to), t.bytes_before / 1048576.0, t.bytes_after / 1048576.0,
               t.relative_rms_error);
  if (report.mean_output_error() >= 0)
    fmt::print("output:     relative output error on the calibration inputs, mean over tensors {:.3e} "
               "(round-to-nearest: {:.3e})\n",
               report.mean_output_error(), report.mean_rtn_output_error());
  if (!report.smoothing.empty()) {
    double act_before = 0, act_after = 0, lo = report.smoothing.front().factor_min, hi = 0;
    for (const SmoothingReport& s : report.smoothing) {
      act_before = std::max(act_before, s.activation_absmax_before);
      act_after = std::max(act_after, s.activation_absmax_after);
      lo = std::min(lo, s.factor_min);
      hi = std::max(hi, s.factor_max);
    }
    fmt::print("smoothing:  {} norms folded; largest activation |x| {:.3g} -> {:.3g}; factors in [{:.3g}, {:.3g}]\n",
               report.smoothing.size(), act_before, act_after, lo, hi);
  }
  fmt::print("wrote:      {}\n", out);
}

// One stderr line per calibrated layer: the measure of what the layer's quantization did.
class LayerReporter {
 public:
  void operator()(int64_t layer, int64_t n_layers, const QuantizeReport& report) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    const std::string prefix = fmt::format("blk.{}.", layer);
    std::vector<std::string> parts;
    double gptq = 0, rtn = 0;
    int measured = 0;
    for (const TensorQuantReport& t : report.tensors)
      if (t.name.rfind(prefix, 0) == 0 && t.output_error >= 0) gptq += t.output_error, rtn += t.rtn_output_error, ++measured;
    if (measured > 0)
      parts.push_back(fmt::format("output error gptq {:.3e}, rtn {:.3e} (mean of {} weights)", gptq / measured,
                                  rtn / measured, measured));
    for (const SmoothingReport& s : report.smoothing)
      if (s.norm.rfind(prefix, 0) == 0)
        parts.push_back(fmt::format("{} max|x| {:.3g} -> {:.3g}, factors [{:.3g}, {:.3g}]",
                                    s.norm.substr(prefix.size(), s.norm.find(".weight") - prefix.size()),
                                    s.activation_absmax_before, s.activation_absmax_after, s.factor_min, s.factor_max));
    fmt::print(stderr, "anvil: layer {}/{} ({:.1f} s): {}\n", layer + 1, n_layers, seconds, fmt::join(parts, "; "));
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

int quantize(QuantizeCliOptions options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.group != 0) options.request.group_size = options.group;
  if (options.alpha_option->count() > 0) options.request.alpha = options.alpha;
  if (options.samples_option->count() > 0) options.request.calibration_samples = options.calibration_samples;
  if (options.seq_len_option->count() > 0) options.request.calibration_seq_len = options.calibration_seq_len;
  // Everything that needs no model first, so a typo fails before a long load.
  Result<QuantizeOptions> quantize_options = make_quantize_options(options.request);
  if (!quantize_options) return fail(quantize_options.status().message());

  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  if (Status runnable = check_runnable(*checkpoint); !runnable) return fail(runnable.message());

  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());
  Result<QuantizeReport> report = Status::error("unreachable");
  const std::string label = quantize_options->smoothquant ? "w8a8-smoothquant" : quant_scheme_name(quantize_options->scheme);
  if (quantize_options->calibrated()) {
    Result<CalibrationSet> calibration =
        load_calibration_set(quantize_options->calibration_source, quantize_options->calibration, *checkpoint);
    if (!calibration) return fail(calibration.status().message());
    fmt::print(stderr, "anvil: calibration: {} samples x {} tokens from {} ({} tokens){}\n", calibration->samples.size(),
               calibration->seq_len(), calibration->source, calibration->stream_tokens,
               static_cast<int64_t>(calibration->samples.size()) < quantize_options->calibration.samples
                   ? fmt::format("; fewer than --calib-samples {}: the text is too short",
                                 quantize_options->calibration.samples)
                   : "");
    fmt::print(stderr, "anvil: quantizing to {} layer by layer\n", label);
    LayerReporter reporter;
    report = quantize_checkpoint(*checkpoint, *quantize_options, *calibration, pool, {}, std::ref(reporter));
  } else {
    TerminalProgress quantize_progress("quantizing to " + label, false);
    report = quantize_checkpoint(*checkpoint, *quantize_options, pool, quantize_progress.callback());
    quantize_progress.finish();
  }
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
  CLI::App* cmd = app.add_subcommand("quantize",
                                     "Quantize a model's linear layers (fp8, fp8-dynamic, w8a8, w8a8 SmoothQuant, "
                                     "w4a16-rtn, w4a16-gptq, q8_0, q4_0, q4_k; the GGML types also the output "
                                     "layer and embeddings) into a GGUF file");
  cmd->add_option("-m,--model", options->model,
                  "GGUF file, Hugging Face directory, llama2.c checkpoint, or dummy:<preset>[:dtype]")
      ->required();
  cmd->add_option("-o,--out", options->out, "Output GGUF path")->required();
  cmd->add_option("--scheme", options->request.scheme,
                  "fp8 (E4M3, W8A16), fp8-dynamic (E4M3 weights and per-token dynamic E4M3 activations, W8A8), "
                  "w8a8 (int8 weights and per-token activations), w8a8-smoothquant (= w8a8 "
                  "--smoothquant), w4a16-rtn (int4 groups), w4a16-gptq (int4 groups by GPTQ; needs --calib), or "
                  "the GGML types q8_0, q4_0, q4_k")
      ->required();
  cmd->add_option("--group", options->group, "w4a16-rtn, w4a16-gptq: elements per scale, 32, 64 or 128 (default 128)");
  cmd->add_flag("--asym", options->request.asymmetric,
                "w4a16-rtn, w4a16-gptq: asymmetric (scale and zero point per group)");
  cmd->add_flag("--per-tensor", options->request.per_tensor,
                "fp8, fp8-dynamic: one weight scale per tensor (default: one per row)");
  cmd->add_flag("--act-order", options->request.act_order,
                "w4a16-gptq: quantize columns by decreasing Hessian diagonal (groups stay in column order "
                "unless --dynamic-groups)");
  cmd->add_flag("--dynamic-groups", options->request.dynamic_groups,
                "w4a16-gptq --act-order: groups in that order, scales set as they are reached (AutoGPTQ's "
                "default desc_act); each weight stores its column order");
  cmd->add_flag("--smoothquant", options->request.smoothquant,
                "w8a8: fold SmoothQuant's activation smoothing into the norms and weights first (needs --calib)");
  options->alpha_option = cmd->add_option("--alpha", options->alpha,
                                          "w8a8 --smoothquant: migration strength in [0, 1] (default 0.5)");
  cmd->add_option("--calib", options->request.calibration_file,
                  "Calibration text for w4a16-gptq and --smoothquant, tokenized with the model's tokenizer");
  cmd->add_option("--calib-tokens", options->request.calibration_tokens_file,
                  "Calibration token ids (separated by spaces, newlines or commas), for models without a tokenizer");
  options->samples_option = cmd->add_option("--calib-samples", options->calibration_samples,
                                            "Calibration sequences (default 128; fewer if the text is short)");
  options->seq_len_option =
      cmd->add_option("--calib-seq-len", options->calibration_seq_len, "Tokens per calibration sequence (default 512)");
  cmd->add_option("--ignore", options->request.ignore,
                  "Leave the linear weights whose names contain this string unquantized (repeatable; e.g. ffn_down, "
                  "blk.0.)");
  cmd->add_option("--output-tensor-type", options->request.output_tensor_type,
                  "Type of the output layer (output.weight, or token_embd.weight when tied): f32, f16, bf16, q8_0, "
                  "q4_0, q4_k, q6_k or keep (default: q6_k for q4_0/q4_k and q8_0 for q8_0, as llama-quantize; "
                  "keep for the other schemes, as llm-compressor)");
  cmd->add_option("--token-embedding-type", options->request.token_embedding_type,
                  "Type of token_embd.weight: the same choices (default: untied, the type of q8_0/q4_0/q4_k, keep "
                  "for the other schemes; tied, the output layer's)");
  cmd->add_option("-t,--threads", options->threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->callback([options, &exit_code] { exit_code = quantize(*options); });
}

}  // namespace anvil::cli
