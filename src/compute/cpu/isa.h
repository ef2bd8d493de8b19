// Instruction-set level the CPU kernels dispatch on: detected at run time, capped by ANVIL_ISA or tests.
#pragma once

#include <optional>

namespace anvil {

// Ordered from least to most capable. Avx2 means AVX2 + FMA + F16C; Avx512 means AVX-512
// F + BW + VL (+ the AVX2 set), with VNNI, BF16 and VBMI as optional sub-features queried separately.
enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"
// Parses those names (exact, lower case); nullopt for anything else.
std::optional<Isa> isa_from_name(const char* name);

// The best level this CPU supports, ignoring any cap.
Isa detected_isa();

// The level kernels should use now: detected_isa() capped by ANVIL_ISA=scalar|avx2|avx512 (read
// once; an unknown value is ignored with a one-time warning on stderr) and by set_isa_cap().
Isa active_isa();

// Sub-features of the active Avx512 level (false whenever active_isa() is below Avx512).
bool isa_has_avx512_vnni();
bool isa_has_avx512_bf16();
bool isa_has_avx512_vbmi();  // byte permutes (vpermb, vpermi2b)

// Caps the level for tests and benchmarks (the environment cap still applies on top). With
// allow_subfeatures false, the Avx512 level runs without VNNI/BF16/VBMI so those fallbacks are testable.
void set_isa_cap(Isa cap, bool allow_subfeatures = true);

}  // namespace anvil
