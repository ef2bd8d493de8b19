// Server processes for sweep runs: fork/exec in a new process group, health checks, shutdown.
#include "bench/sweep_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <httplib.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <thread>

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("ended with wait status {}", status);
}

// Any process of the group still alive (zombies of reparented children count until reaped).
bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

}  // namespace

Result<int> pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::error(fmt::format("cannot open a socket to find a free port: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    return Status::error("cannot find a free port on 127.0.0.1: " + error);
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

Result<std::unique_ptr<ServerProcess>> ServerProcess::start(const std::string& command, const std::string& log_path) {
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::error(fmt::format("{}: cannot open the server log: {}", log_path, std::strerror(errno)));
  const std::string header = fmt::format("# anvil bench sweep: /bin/sh -c {}\n", command);
  if (::write(log_fd, header.data(), header.size()) < 0) {
    // The log is a convenience: a failed header write still lets the server's own output through.
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const std::string error = std::strerror(errno);
    ::close(log_fd);
    return Status::error("cannot start the server command (fork): " + error);
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // the sweep died without stopping it
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before the parent signals it
  ::close(log_fd);
  return std::unique_ptr<ServerProcess>(new ServerProcess(pid, log_path));
}

ServerProcess::~ServerProcess() { stop(1.0); }

std::optional<std::string> ServerProcess::exit_description() {
  if (!wait_status_) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) wait_status_ = status;
  }
  if (!wait_status_) return std::nullopt;
  return describe_wait_status(*wait_status_);
}

Status ServerProcess::wait_healthy(int port, const std::string& path, double timeout_s,
                                   const std::atomic<bool>* interrupt) {
  const auto start = Clock::now();
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1, 0);
  client.set_read_timeout(5, 0);
  while (true) {
    if (interrupt && interrupt->load()) return Status::error("interrupted while waiting for the server");
    if (std::optional<std::string> ended = exit_description())
      return Status::error(fmt::format("the server command {} before {} answered 200; last lines of {}:\n{}", *ended,
                                       path, log_path_, log_tail(20)));
    httplib::Result res = client.Get(path);
    if (res && res->status == 200) return Status::ok();
    if (seconds_since(start) > timeout_s)
      return Status::error(fmt::format("the server did not answer 200 on {} within {:.0f} s (last attempt: {}); last "
                                       "lines of {}:\n{}",
                                       path, timeout_s,
                                       res ? fmt::format("HTTP {}", res->status)
                                           : "no answer (" + httplib::to_string(res.error()) + ")",
                                       log_path_, log_tail(20)));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

void ServerProcess::stop(double grace_s) {
  if (stopped_) return;
  stopped_ = true;
  ::kill(-pid_, SIGTERM);
  const auto start = Clock::now();
  while (seconds_since(start) < grace_s) {
    exit_description();  // reaps the shell
    if (wait_status_ && !group_alive(pid_)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(-pid_, SIGKILL);
  if (!wait_status_) {
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_) wait_status_ = status;
  }
}

std::string ServerProcess::log_tail(size_t max_lines) const {
  std::ifstream in(log_path_);
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (lines.size() > max_lines) lines.pop_front();
  }
  std::string out;
  for (const std::string& l : lines) {
    if (!out.empty()) out += '\n';
    out += "  " + l;
  }
  return out.empty() ? "  (empty)" : out;
}

}  // namespace anvil
