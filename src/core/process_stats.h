// Process-level measurements reported by the CLI (peak resident memory).
#pragma once

#include <cstdint>

namespace anvil {

uint64_t peak_rss_bytes();

}  // namespace anvil
