#include "transport/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <random>

#include "protocol/ws_frame.hpp"
#include "transport/http_session.hpp"
#include "transport/shard.hpp"
#include "transport/ws_session.hpp"

namespace parley::transport {

namespace asio = boost::asio;
using asio::ip::tcp;

Server::Server(Node& node) : node_(node), acceptor_(node.shard(0).ioc()) {}

Result<Ok, std::string> Server::listen() {
  const auto& o = node_.options();
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(o.host, ec);
  if (ec) return unexpected("invalid listen address " + o.host + ": " + ec.message());
  tcp::endpoint ep(addr, o.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return unexpected("cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " +
                      ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  return Ok{};
}

void Server::start_accepting() {
  asio::post(acceptor_.get_executor(), [this] { do_accept(); });
}

void Server::do_accept() {
  Shard& shard = node_.next_shard();
  acceptor_.async_accept(shard.ioc(), [this, &shard](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      boost::system::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      asio::post(shard.ioc(), [&node = node_, &shard, s = std::move(s)]() mutable {
        std::make_shared<HttpSession>(node, shard, std::move(s))->start();
      });
    } else {
      // Out of file descriptors and the like: log and keep accepting after a pause.
      spdlog::warn("accept failed: {}", ec.message());
    }
    do_accept();
  });
}

void Server::drain(std::function<void()> done) {
  node_.set_draining();
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  const auto window = node_.options().drain_window;
  spdlog::info("draining: closing connections over {} ms", window.count());
  for (std::size_t i = 0; i < node_.shard_count(); ++i) {
    Shard& shard = node_.shard(i);
    asio::post(shard.ioc(), [&shard, window] {
      std::mt19937_64 rng(std::random_device{}());
      std::uniform_int_distribution<long> jitter(0, std::max<long>(0, window.count()));
      for (WsSession* s :
           std::vector<WsSession*>(shard.sessions().begin(), shard.sessions().end())) {
        auto t = std::make_shared<asio::steady_timer>(shard.ioc(),
                                                      std::chrono::milliseconds(jitter(rng)));
        t->async_wait([t, self = s->shared_from_this()](boost::system::error_code) {
          self->close(protocol::ws::close_code::going_away, "going away");
        });
      }
    });
  }
  // Leave time for the last close frames to go out (the close grace period is 2 s).
  auto t = std::make_shared<asio::steady_timer>(node_.shard(0).ioc(),
                                                window + std::chrono::milliseconds(500));
  t->async_wait([t, done = std::move(done)](boost::system::error_code) { done(); });
}

}  // namespace parley::transport
