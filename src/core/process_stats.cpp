// Peak RSS via getrusage (Linux reports ru_maxrss in KiB); MemAvailable from /proc/meminfo.
#include "core/process_stats.h"

#include <sys/resource.h>

#include <fstream>
#include <string>

namespace anvil {

uint64_t peak_rss_bytes() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

std::optional<int64_t> mem_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t value_kb = 0;
  while (meminfo >> key >> value_kb) {
    std::getline(meminfo, unit);  // " kB", or nothing on counters without a unit
    if (key == "MemAvailable:") return value_kb * 1024;
  }
  return std::nullopt;
}

}  // namespace anvil
