// A server process started for one sweep run: `/bin/sh -c COMMAND` in a process group of its
// own (Ctrl-C at the terminal does not reach it, and stopping the group reaches every process
// the command started), stdout and stderr appended to a log file; health polling; SIGTERM,
// then SIGKILL after a grace period.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "anvil/status.h"

namespace anvil {

// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick).
Result<int> pick_free_port();

class ServerProcess {
 public:
  static Result<std::unique_ptr<ServerProcess>> start(const std::string& command, const std::string& log_path);
  ~ServerProcess();  // stops it (1 s grace) if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // "exited with code 1", "was killed by signal 9" once the shell has ended; none while it runs.
  std::optional<std::string> exit_description();
  // Polls GET http://127.0.0.1:PORT/PATH until it answers 200. Fails when the process ends first
  // or `timeout_s` passes (both messages carry the log's last lines), or when `interrupt` turns true.
  Status wait_healthy(int port, const std::string& path, double timeout_s, const std::atomic<bool>* interrupt);
  // SIGTERM to the group, SIGKILL after `grace_s` if any of it is still alive. Safe to call twice.
  void stop(double grace_s);
  // The log's last lines (at most `max_lines`), for error messages.
  std::string log_tail(size_t max_lines) const;
  pid_t pid() const { return pid_; }

 private:
  ServerProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  std::optional<int> wait_status_;  // set once reaped
  bool stopped_ = false;
};

}  // namespace anvil
