// The socket an HTTP request arrived on, found from its addresses, so a handler that waits for a
// whole response (non-streaming completions) can notice the client hanging up and cancel its
// request. cpp-httplib 0.11 gives handlers neither their socket nor a "connection closed" check.
#pragma once

#include <optional>
#include <string>

namespace anvil::server {

class PeerSocket {
 public:
  // Scans this process's descriptors for the connected TCP socket with this local port and peer
  // address/port. The handler's connection cannot close while the handler runs (httplib's worker
  // thread owns it and is inside the handler), so the descriptor stays valid until it returns.
  static std::optional<PeerSocket> find(int local_port, const std::string& remote_addr, int remote_port);

  // True once the peer has closed or reset the connection. A client that half-closes its side
  // after sending the request (shutdown(SHUT_WR)) also reads as gone; HTTP clients do not do that.
  bool peer_closed() const;

  int fd() const { return fd_; }

 private:
  explicit PeerSocket(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace anvil::server
