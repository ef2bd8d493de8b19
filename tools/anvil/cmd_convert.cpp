// anvil convert: any readable model to a GGUF file that anvil and llama.cpp both load.
#include <fmt/format.h>

#include <chrono>

#include "commands.h"
#include "core/progress.h"
#include "formats/gguf_writer.h"
#include "model/convert_dtype.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"

namespace anvil::cli {
namespace {

struct ConvertOptions {
  std::string model;
  std::string out;
  std::string type;
};

int convert(const ConvertOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  TerminalProgress load_progress("loading " + options.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(options.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  // Refuse to write a file that anvil itself could not run.
  {
    auto probe = std::make_shared<const Checkpoint>(*checkpoint);
    Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(probe);
    if (!model) return fail(model.status().message());
  }
  if (!options.type.empty()) {
    std::optional<DType> dtype = dtype_from_name(options.type);
    if (!dtype) return fail(fmt::format("--type: unknown type '{}'; use f32, f16, bf16, q8_0, q4_0, q4_k or q6_k",
                                        options.type));
    TerminalProgress convert_progress(fmt::format("converting weights to {}", dtype_name(*dtype)), false);
    Status converted = convert_weight_dtype(*checkpoint, *dtype, convert_progress.callback());
    convert_progress.finish();
    if (!converted) return fail(converted.message());
  }
  TerminalProgress write_progress("writing " + options.out, true);
  Status written = write_gguf(*checkpoint, options.out, write_progress.callback());
  write_progress.finish();
  if (!written) return fail(written.message());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(stderr, "anvil: wrote {} ({} tensors) in {:.2f} s\n", options.out, checkpoint->tensors.size(), seconds);
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ConvertOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a model to GGUF (loadable by anvil and llama.cpp)");
  cmd->add_option("-m,--model", options->model,
                  "GGUF file, Hugging Face directory, llama2.c checkpoint, or dummy:<preset>[:dtype]")
      ->required();
  cmd->add_option("-o,--out", options->out, "Output GGUF path")->required();
  cmd->add_option("--type", options->type, "Re-encode weight matrices: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k");
  cmd->callback([options, &exit_code] { exit_code = convert(*options); });
}

}  // namespace anvil::cli
