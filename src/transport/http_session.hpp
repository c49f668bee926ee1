#pragma once
// One HTTP/1.1 connection (Boost.Beast): the JSON API, health, metrics, static files, and the
// WebSocket upgrade, after which the socket is handed to a WsSession on the same shard.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <optional>
#include <string>

#include "transport/node.hpp"

namespace parley::transport {

struct HttpResponse {
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string extra_headers;  // complete header lines, each ending in \r\n
};

// {"error":{"code","message"}} with the status that goes with the code.
HttpResponse error_response(unsigned status, std::string_view code, std::string_view message);

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Node& node, Shard& shard, boost::asio::ip::tcp::socket socket);
  void start();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  void do_read();
  void on_request(Request req);
  void upgrade(Request req);
  void respond(HttpResponse res);
  void handle_static(const Request& req);
  // The client's address (no port) for per-address limits: the TCP peer's, or the one a trusted
  // proxy put in X-Forwarded-For (core::client_address).
  std::string client_address(const Request& req) const;

  Node& node_;
  Shard& shard_;
  boost::asio::ip::tcp::socket socket_;
  // Bounds the wait for each request (headers and body): an idle or trickling client is
  // disconnected instead of holding a descriptor forever.
  boost::asio::steady_timer read_timer_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  bool keep_alive_ = true;
  bool head_ = false;
  std::string remote_;  // the TCP peer, "address:port"
  std::string out_;
};

}  // namespace parley::transport
