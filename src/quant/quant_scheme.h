// The quantization schemes `anvil quantize` produces, their options, and how a file records them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "model/checkpoint.h"
#include "quant/calibration.h"

namespace anvil {

//   fp8        F8_E4M3 weights, f32 activations (W8A16): per-channel (default) or per-tensor
//   fp8-dynamic the same weights, activations rounded to E4M3 per token at run time (W8A8, vLLM's
//              FP8_DYNAMIC: QuantScales::activations = DynamicPerTokenFp8)
//   w8a8       I8 per-channel symmetric weights, per-token dynamic int8 activations; with
//              SmoothQuant (calibrated) the outlier channels' range is first folded into the weights
//   w4a16-rtn  I4 round-to-nearest, groups of 32/64/128 (default 128), symmetric or asymmetric
//   w4a16-gptq I4 by GPTQ (calibrated), the same layout as w4a16-rtn
//   q8_0, q4_0, q4_k   GGML block types (the `anvil convert --type` encoders; llama.cpp-readable)
enum class QuantScheme { Fp8, Fp8Dynamic, W8A8, W4A16Rtn, W4A16Gptq, Q8_0, Q4_0, Q4_K };

struct QuantizeOptions {
  QuantScheme scheme = QuantScheme::Fp8;
  int64_t group_size = 128;  // w4a16-rtn, w4a16-gptq
  bool asymmetric = false;   // w4a16-rtn, w4a16-gptq
  bool per_tensor = false;   // fp8, fp8-dynamic
  bool act_order = false;    // w4a16-gptq: columns by decreasing Hessian diagonal (static groups unless:)
  bool dynamic_groups = false;  // w4a16-gptq act_order: groups in processing order (GptqOptions)
  bool smoothquant = false;  // w8a8
  double alpha = 0.5;        // w8a8 SmoothQuant migration strength
  CalibrationSource calibration_source;    // calibrated schemes
  CalibrationOptions calibration;          // calibrated schemes
  // Linear weights to leave in their dtype (llm-compressor's `ignore`): a weight is skipped when
  // its name contains one of these strings ("ffn_down", "blk.0.").
  std::vector<std::string> ignore;
  // The output layer (output.weight, or token_embd.weight when the embeddings are tied) and an
  // untied token_embd.weight; nullopt keeps their dtype. By default the GGML schemes make what
  // llama-quantize makes (output Q6_K, or Q8_0 under q8_0 and for rows that are not whole 256-blocks;
  // an untied embedding in the scheme's type) and the others keep both, as vLLM / llm-compressor
  // leave lm_head and the embeddings unquantized.
  std::optional<DType> output_type, embedding_type;
  // Asked for with --output-tensor-type / --token-embedding-type: a type the rows do not fit is an
  // error then, where the default falls back as llama-quantize does.
  bool output_type_given = false, embedding_type_given = false;

  // w4a16-gptq and w8a8 with SmoothQuant learn from calibration data.
  bool calibrated() const { return scheme == QuantScheme::W4A16Gptq || smoothquant; }
  bool ignores(const std::string& tensor_name) const;
  // What the scheme's weights do to their input activations (fp8-dynamic: DynamicPerTokenFp8).
  ActivationQuant activations() const;
};

// What the user asked for, as typed (options left unset are std::nullopt / false / empty).
struct QuantizeRequest {
  std::string scheme;
  std::optional<int64_t> group_size;
  bool asymmetric = false;
  bool per_tensor = false;
  bool smoothquant = false;
  std::optional<double> alpha;
  bool act_order = false;
  bool dynamic_groups = false;
  std::string calibration_file;         // --calib (text)
  std::string calibration_tokens_file;  // --calib-tokens (ids)
  std::optional<int64_t> calibration_samples;
  std::optional<int64_t> calibration_seq_len;
  std::vector<std::string> ignore;
  std::string output_tensor_type;    // --output-tensor-type: a GGML/plain type name or "keep"; empty: default
  std::string token_embedding_type;  // --token-embedding-type: the same
};

// Checks a request before any model is loaded: a known scheme, only the options that scheme
// takes, a supported group size, calibration data exactly when the scheme is calibrated
// (w4a16-gptq; w8a8 --smoothquant, also spelled --scheme w8a8-smoothquant).
Result<QuantizeOptions> make_quantize_options(const QuantizeRequest& request);

const char* quant_scheme_name(QuantScheme scheme);  // "fp8", "fp8-dynamic", "w4a16-rtn", ...  (w8a8 with or without SmoothQuant)
// The weight dtype a scheme writes.
DType quant_scheme_dtype(QuantScheme scheme);
// The anvil.quantization.* record of a scheme and its options.
QuantizationInfo quantization_info(const QuantizeOptions& options);

}  // namespace anvil
