// The quantization schemes `anvil quantize` produces, their options, and how a file records them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "anvil/status.h"
#include "core/dtype.h"
#include "model/checkpoint.h"

namespace anvil {

//   fp8        F8_E4M3 weights, f32 activations (W8A16): per-channel (default) or per-tensor
//   w8a8       I8 per-channel symmetric weights, per-token dynamic int8 activations
//   w4a16-rtn  I4 round-to-nearest, groups of 32/64/128 (default 128), symmetric or asymmetric
//   q8_0, q4_0, q4_k   GGML block types (the `anvil convert --type` encoders; llama.cpp-readable)
enum class QuantScheme { Fp8, W8A8, W4A16Rtn, Q8_0, Q4_0, Q4_K };

struct QuantizeOptions {
  QuantScheme scheme = QuantScheme::Fp8;
  int64_t group_size = 128;  // w4a16-rtn
  bool asymmetric = false;   // w4a16-rtn
  bool per_tensor = false;   // fp8
};

// What the user asked for, as typed (options left unset are std::nullopt / false / empty).
struct QuantizeRequest {
  std::string scheme;
  std::optional<int64_t> group_size;
  bool asymmetric = false;
  bool per_tensor = false;
  bool smoothquant = false;
  std::string calibration_file;
};

// Checks a request before any model is loaded: a known scheme, only the options that scheme
// takes, a supported group size. Calibrated schemes (w4a16-gptq, SmoothQuant) and --calib are
// refused as not available yet.
Result<QuantizeOptions> make_quantize_options(const QuantizeRequest& request);

const char* quant_scheme_name(QuantScheme scheme);  // "fp8", "w4a16-rtn", ...
// The weight dtype a scheme writes.
DType quant_scheme_dtype(QuantScheme scheme);
// The anvil.quantization.* record of a scheme and its options.
QuantizationInfo quantization_info(const QuantizeOptions& options);

}  // namespace anvil
