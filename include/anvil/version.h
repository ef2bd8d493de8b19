// Anvil's version: one place for `anvil --version` and the reports that record it.
#pragma once

namespace anvil {

inline constexpr const char* kAnvilVersion = "0.1.0";

}  // namespace anvil
