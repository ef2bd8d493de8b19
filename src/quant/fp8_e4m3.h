// FP8 E4M3 (OCP "E4M3FN", as torch.float8_e4m3fn): the element format of DType::F8_E4M3.
#pragma once

#include <cstdint>

namespace anvil {

// Layout S.EEEE.MMM, exponent bias 7. Normal values (1 + M/8) * 2^(E-7) for E in 1..15, subnormal
// M * 2^-9 for E = 0. There is no infinity: S.1111.111 is NaN, and S.1111.110 = ±448 is the
// largest finite value. 0x80 is -0.
constexpr float kE4M3Max = 448.0f;
constexpr uint8_t kE4M3MaxCode = 0x7E;  // +448
constexpr uint8_t kE4M3NanCode = 0x7F;  // +NaN (0xFF is -NaN)

// Exact decoding (every E4M3 value is a float), through a 256-entry table.
float e4m3_to_float(uint8_t code);
const float* e4m3_decode_table();  // 256 floats, indexed by code: for kernels that gather/permute

// Round to nearest, ties to even, with saturation: finite values beyond ±448 and ±infinity
// become ±448 (what quantizers want: the scale already maps the range onto ±448), NaN stays NaN.
// Values below half the smallest subnormal (2^-10) round to ±0.
uint8_t float_to_e4m3(float value);

}  // namespace anvil
