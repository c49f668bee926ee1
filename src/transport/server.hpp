#pragma once
// The listening socket and graceful drain. Connections are accepted on shard 0 and spread over
// the shards round-robin; each connection then lives on its shard's thread.

#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>

#include "core/result.hpp"
#include "transport/node.hpp"

namespace parley::transport {

class Server {
 public:
  explicit Server(Node& node);
  // Binds and listens; the error says what is wrong (e.g. the address is in use).
  Result<Ok, std::string> listen();
  void start_accepting();
  // SIGTERM: /readyz turns 503, the listener closes, every WebSocket is closed 1001 at a random
  // moment within the drain window (so that clients do not all reconnect at once), then `done`
  // runs (on shard 0's thread).
  void drain(std::function<void()> done);
  std::uint16_t port() const { return port_; }

 private:
  void do_accept();
  Node& node_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
};

}  // namespace parley::transport
