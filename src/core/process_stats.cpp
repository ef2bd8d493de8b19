// Peak RSS via getrusage (Linux reports ru_maxrss in KiB).
#include "core/process_stats.h"

#include <sys/resource.h>

namespace anvil {

uint64_t peak_rss_bytes() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace anvil
