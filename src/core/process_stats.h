// Process- and machine-level memory figures (peak resident memory, memory available).
#pragma once

#include <cstdint>
#include <optional>

namespace anvil {

uint64_t peak_rss_bytes();

// MemAvailable from /proc/meminfo (what the kernel can give without swapping); none when the
// file or the line is missing.
std::optional<int64_t> mem_available_bytes();

}  // namespace anvil
