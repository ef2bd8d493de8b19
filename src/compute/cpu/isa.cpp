// Run-time ISA level: CPU detection (core/cpu_features) combined with the env and test caps.
#include "compute/cpu/isa.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/cpu_features.h"

namespace anvil {
namespace {

// The cap from ANVIL_ISA, parsed once. Unknown values do not cap (Avx512 is the top level).
Isa env_cap() {
  static const Isa cap = [] {
    const char* value = std::getenv("ANVIL_ISA");
    if (value == nullptr || *value == '\0') return Isa::Avx512;
    if (std::optional<Isa> isa = isa_from_name(value)) return *isa;
    std::fprintf(stderr, "anvil: ignoring unknown ANVIL_ISA=%s (expected scalar, avx2 or avx512)\n", value);
    return Isa::Avx512;
  }();
  return cap;
}

// Test caps: plain atomics so kernels running on pool threads see a consistent value.
std::atomic<int> g_cap{static_cast<int>(Isa::Avx512)};
std::atomic<bool> g_allow_subfeatures{true};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

std::optional<Isa> isa_from_name(const char* name) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (name != nullptr && std::strcmp(name, isa_name(isa)) == 0) return isa;
  return std::nullopt;
}

Isa detected_isa() {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2 && f.avx512f && f.avx512bw && f.avx512vl) return Isa::Avx512;
  if (avx2) return Isa::Avx2;
  return Isa::Scalar;
}

Isa active_isa() {
  int level = static_cast<int>(detected_isa());
  level = std::min(level, static_cast<int>(env_cap()));
  level = std::min(level, g_cap.load(std::memory_order_relaxed));
  return static_cast<Isa>(level);
}

bool isa_has_avx512_vnni() {
  return active_isa() == Isa::Avx512 && g_allow_subfeatures.load(std::memory_order_relaxed) &&
         cpu_features().avx512_vnni;
}

bool isa_has_avx512_bf16() {
  return active_isa() == Isa::Avx512 && g_allow_subfeatures.load(std::memory_order_relaxed) &&
         cpu_features().avx512_bf16;
}

bool isa_has_avx512_vbmi() {
#if defined(__x86_64__)
  static const bool present = __builtin_cpu_supports("avx512vbmi");
#else
  static const bool present = false;
#endif
  return active_isa() == Isa::Avx512 && g_allow_subfeatures.load(std::memory_order_relaxed) && present;
}

void set_isa_cap(Isa cap, bool allow_subfeatures) {
  g_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
  g_allow_subfeatures.store(allow_subfeatures, std::memory_order_relaxed);
}

}  // namespace anvil
