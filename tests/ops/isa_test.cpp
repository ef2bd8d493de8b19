// ISA level: detection, the test cap, sub-feature masking and ANVIL_ISA name parsing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "compute/cpu/isa.h"
#include "core/cpu_features.h"

namespace anvil {
namespace {

// The level expected under a test cap, with any ANVIL_ISA cap of the environment on top.
Isa expected_under(Isa cap) {
  Isa level = std::min(detected_isa(), cap);
  if (const char* env = std::getenv("ANVIL_ISA"))
    if (std::optional<Isa> env_cap = isa_from_name(env)) level = std::min(level, *env_cap);
  return level;
}

TEST(Isa, CapLimitsTheActiveLevel) {
  for (Isa cap : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(cap);
    EXPECT_EQ(active_isa(), expected_under(cap)) << isa_name(cap);
    EXPECT_LE(static_cast<int>(active_isa()), static_cast<int>(cap));
  }
  set_isa_cap(Isa::Avx512);
  std::printf("detected %s, active %s, vnni %d, bf16 %d, vbmi %d\n", isa_name(detected_isa()),
              isa_name(active_isa()), isa_has_avx512_vnni(), isa_has_avx512_bf16(), isa_has_avx512_vbmi());
}

TEST(Isa, SubfeaturesFollowTheLevelAndTheMask) {
  const CpuFeatures& f = cpu_features();
  set_isa_cap(Isa::Avx512, true);
  EXPECT_EQ(isa_has_avx512_vnni(), active_isa() == Isa::Avx512 && f.avx512_vnni);
  EXPECT_EQ(isa_has_avx512_bf16(), active_isa() == Isa::Avx512 && f.avx512_bf16);
  EXPECT_EQ(isa_has_avx512_vbmi(), active_isa() == Isa::Avx512 && __builtin_cpu_supports("avx512vbmi"));
  set_isa_cap(Isa::Avx512, false);
  EXPECT_FALSE(isa_has_avx512_vnni());
  EXPECT_FALSE(isa_has_avx512_bf16());
  EXPECT_FALSE(isa_has_avx512_vbmi());
  set_isa_cap(Isa::Avx2, true);
  EXPECT_FALSE(isa_has_avx512_vnni());
  EXPECT_FALSE(isa_has_avx512_vbmi());
  set_isa_cap(Isa::Avx512);
}

TEST(Isa, DetectionMatchesCpuFeatures) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (detected_isa() == Isa::Avx512) {
    EXPECT_TRUE(avx2 && f.avx512f && f.avx512bw && f.avx512vl);
  }
  if (detected_isa() >= Isa::Avx2) {
    EXPECT_TRUE(avx2);
  }
}

TEST(Isa, NamesRoundTrip) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) EXPECT_EQ(isa_from_name(isa_name(isa)), isa);
  EXPECT_FALSE(isa_from_name("AVX2").has_value());
  EXPECT_FALSE(isa_from_name("sse4").has_value());
  EXPECT_FALSE(isa_from_name("").has_value());
  EXPECT_FALSE(isa_from_name(nullptr).has_value());
}

}  // namespace
}  // namespace anvil
