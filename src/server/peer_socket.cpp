// PeerSocket: /proc/self/fd scan plus getsockname/getpeername to match the request's addresses.
#include "server/peer_socket.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace anvil::server {

namespace {

// Address text and port of a socket address, in the form httplib reports (inet_ntop).
bool address_of(const sockaddr_storage& addr, std::string& host, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(addr);
    if (!inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))) return false;
    port = ntohs(v4.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(addr);
    if (!inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))) return false;
    port = ntohs(v6.sin6_port);
  } else {
    return false;
  }
  host = text;
  return true;
}

bool matches(int fd, int local_port, const std::string& remote_addr, int remote_port) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  std::string host;
  int port = -1;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || !address_of(addr, host, port) ||
      port != local_port)
    return false;
  len = sizeof(addr);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || !address_of(addr, host, port)) return false;
  return port == remote_port && host == remote_addr;
}

}  // namespace

std::optional<PeerSocket> PeerSocket::find(int local_port, const std::string& remote_addr, int remote_port) {
  if (local_port <= 0 || remote_port <= 0 || remote_addr.empty()) return std::nullopt;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return std::nullopt;
  std::optional<PeerSocket> found;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    if (matches(static_cast<int>(fd), local_port, remote_addr, remote_port)) {
      found = PeerSocket(static_cast<int>(fd));
      break;
    }
  }
  ::closedir(dir);
  return found;
}

bool PeerSocket::peer_closed() const {
  char byte = 0;
  const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return false;  // the client's next (pipelined) request is waiting: it is still there
  if (n == 0) return true;  // orderly shutdown
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;  // reset or another error
}

}  // namespace anvil::server
