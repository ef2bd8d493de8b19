// Loading a model for an in-process benchmark: the checkpoint, the model over it, and its
// tokenizer when anvil runs that vocabulary (random prompt ids need none).
#pragma once

#include <memory>
#include <string>

#include "anvil/status.h"
#include "core/progress.h"
#include "model/decoder_model.h"
#include "tokenizer/tokenizer.h"

namespace anvil {

struct BenchModel {
  std::unique_ptr<DecoderModel> model;   // owns the checkpoint (shared)
  std::unique_ptr<Tokenizer> tokenizer;  // null when the vocabulary has no tokenizer anvil runs
};

// `spec` as load_checkpoint takes it (dummy:<preset>[:dtype], a GGUF file, ...); `progress`
// reports the bytes of weights being created or read. `quantization` (quant/online_quantization.h,
// e.g. "fp8", "w4a16-rtn:g32"; "" for none) quantizes the linear layers after loading.
Result<BenchModel> load_bench_model(const std::string& spec, const ProgressCallback& progress = {},
                                    const std::string& quantization = "");

}  // namespace anvil
