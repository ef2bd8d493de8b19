// Terminal progress bar.
#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace anvil {

TerminalProgress::TerminalProgress(std::string label, bool units_are_bytes)
    : label_(std::move(label)), units_are_bytes_(units_are_bytes), enabled_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

TerminalProgress::~TerminalProgress() { finish(); }

ProgressCallback TerminalProgress::callback() {
  return [this](uint64_t done, uint64_t total) { update(done, total); };
}

void TerminalProgress::update(uint64_t done, uint64_t total) {
  if (!enabled_ || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double percent = 100.0 * static_cast<double>(done) / static_cast<double>(total);
  std::string amounts = units_are_bytes_ ? fmt::format("{:.2f}/{:.2f} GiB", done / 1073741824.0, total / 1073741824.0)
                                         : fmt::format("{}/{}", done, total);
  fmt::print(stderr, "\r\033[Kanvil: {} {:5.1f}% {} {:.1f} s", label_, percent, amounts, seconds);
  std::fflush(stderr);
}

void TerminalProgress::finish() {
  if (enabled_ && drawn_) fmt::print(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace anvil
