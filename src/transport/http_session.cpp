#include "transport/http_session.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <filesystem>
#include <fstream>

#include "core/throttle.hpp"
#include "protocol/ws_frame.hpp"
#include "transport/api.hpp"
#include "transport/shard.hpp"
#include "transport/ws_session.hpp"

namespace parley::transport {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr std::size_t kHeaderLimit = 16 * 1024;

const char* reason(unsigned status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string content_type_for(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".woff2") return "font/woff2";
  return "application/octet-stream";
}
}  // namespace

HttpSession::HttpSession(Node& node, Shard& shard, asio::ip::tcp::socket socket)
    : node_(node), shard_(shard), socket_(std::move(socket)), read_timer_(shard.ioc()) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
}

void HttpSession::start() {
  do_read();
}

std::string HttpSession::client_address(const Request& req) const {
  return node_.throttle().client_address(core::address_of(remote_), req["X-Forwarded-For"]);
}

void HttpSession::do_read() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(node_.options().max_http_body_bytes);
  read_timer_.expires_after(node_.options().http_request_timeout);
  read_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;  // the request arrived (or the session ended) first
    boost::system::error_code ignored;
    self->socket_.close(ignored);
  });
  http::async_read(
      socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->read_timer_.cancel();
        if (ec == http::error::end_of_stream || ec == asio::error::eof) {
          boost::system::error_code ignored;
          self->socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
          return;
        }
        if (ec == http::error::body_limit) {
          self->keep_alive_ = false;
          self->respond(error_response(413, "too_large", "request body too large"));
          return;
        }
        if (ec) {
          if (ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
            self->keep_alive_ = false;
            self->respond(error_response(400, "bad_request", "malformed HTTP request"));
          }
          return;
        }
        self->on_request(self->parser_->release());
      });
}

void HttpSession::on_request(Request req) {
  keep_alive_ = req.keep_alive();
  head_ = req.method() == http::verb::head;
  std::string target(req.target());
  std::string path = target.substr(0, target.find('?'));
  std::string query = target.size() > path.size() ? target.substr(path.size() + 1) : "";

  if (path == "/ws") {
    upgrade(std::move(req));
    return;
  }
  if (path == "/healthz") {
    respond({200, "ok\n", "text/plain; charset=utf-8", {}});
    return;
  }
  if (path == "/readyz") {
    respond(
        {node_.ready() ? 200u : 503u, node_.readiness_report(), "text/plain; charset=utf-8", {}});
    return;
  }
  if (path == "/metrics") {
    respond({200, node_.registry().render(), "text/plain; version=0.0.4; charset=utf-8", {}});
    return;
  }
  ApiRequest api;
  api.method = std::string(req.method_string());
  api.path = path;
  api.query = query;
  api.body = std::move(req.body());
  api.remote = client_address(req);
  auto auth = req[http::field::authorization];
  if (auth.size() > 7 && beast::iequals(auth.substr(0, 7), "Bearer ")) {
    api.bearer = std::string(auth.substr(7));
  }
  bool is_api = handle_api(node_, std::move(api), [self = shared_from_this()](HttpResponse res) {
    asio::post(self->socket_.get_executor(),
               [self, res = std::move(res)]() mutable { self->respond(std::move(res)); });
  });
  if (!is_api) handle_static(req);
}

void HttpSession::handle_static(const Request& req) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    respond(error_response(405, "bad_request", "method not allowed"));
    return;
  }
  const auto& root = node_.options().web_root;
  std::string target(req.target());
  std::string path = target.substr(0, target.find('?'));
  auto decoded = url_decode(path);
  // A target without a leading '/' (e.g. "?x" or "*") names no file; substr(1) below needs one.
  if (root.empty() || !decoded || decoded->empty() || decoded->front() != '/' ||
      decoded->find("..") != std::string::npos || decoded->find('\0') != std::string::npos) {
    respond(error_response(404, "not_found", "not found"));
    return;
  }
  std::string rel = *decoded == "/" ? "/index.html" : *decoded;
  std::filesystem::path file = std::filesystem::path(root) / rel.substr(1);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    respond(error_response(404, "not_found", "not found"));
    return;
  }
  std::ifstream in(file, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  respond({200, std::move(body), content_type_for(file), "Cache-Control: no-cache\r\n"});
}

void HttpSession::respond(HttpResponse res) {
  out_.clear();
  out_ += "HTTP/1.1 " + std::to_string(res.status) + " " + reason(res.status) + "\r\n";
  if (!res.content_type.empty()) out_ += "Content-Type: " + res.content_type + "\r\n";
  if (res.status != 204) out_ += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
  out_ += res.extra_headers;
  out_ += keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out_ += "\r\n";
  if (!head_ && res.status != 204) out_ += res.body;
  asio::async_write(socket_, asio::buffer(out_),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                      if (ec) return;
                      if (!self->keep_alive_) {
                        boost::system::error_code ignored;
                        self->socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                        return;
                      }
                      self->do_read();
                    });
}

void HttpSession::upgrade(Request req) {
  if (!beast::websocket::is_upgrade(req)) {
    respond(error_response(426, "bad_request", "this endpoint needs a WebSocket upgrade"));
    return;
  }
  auto key = req[http::field::sec_websocket_key];
  if (key.empty() || req[http::field::sec_websocket_version] != "13") {
    keep_alive_ = false;
    respond({400,
             "{\"error\":{\"code\":\"bad_request\",\"message\":\"Sec-WebSocket-Key and version 13 "
             "are required\"}}",
             "application/json", "Sec-WebSocket-Version: 13\r\n"});
    return;
  }
  if (node_.draining()) {
    keep_alive_ = false;
    respond(error_response(503, "unavailable", "this node is draining; reconnect elsewhere"));
    return;
  }
  // Cross-site WebSocket hijacking: a page of another site may not open a socket here.
  auto origin = req.find(http::field::origin);
  if (!node_.throttle().origin_allowed(origin != req.end() ? origin->value() : std::string_view(),
                                       origin != req.end(), req[http::field::host])) {
    spdlog::info("http {}: WebSocket upgrade from origin {} refused", remote_,
                 std::string(origin->value().substr(0, 200)));
    keep_alive_ = false;
    respond(error_response(403, "forbidden", "this origin may not open a WebSocket here"));
    return;
  }
  // Connections per client address: counted from here until the WebSocket session ends.
  const std::string address = client_address(req);
  if (!node_.throttle().ip_connections().try_acquire(address)) {
    spdlog::info("http {}: too many WebSocket connections from this address", remote_);
    keep_alive_ = false;
    respond(error_response(429, "rate_limited", "too many connections from this address"));
    return;
  }
  out_ =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      protocol::ws::accept_key(key) + "\r\n\r\n";
  asio::async_write(
      socket_, asio::buffer(out_),
      [self = shared_from_this(), address](boost::system::error_code ec, std::size_t) {
        if (ec) {
          self->node_.throttle().ip_connections().release(address);
          return;
        }
        auto data = self->buffer_.data();
        std::string initial(static_cast<const char*>(data.data()), data.size());
        // The session releases its connection count under the client's address,
        // so it is named by that address (with the peer's port, for the logs).
        const auto port = self->remote_.substr(self->remote_.rfind(':') + 1);
        auto ws = std::make_shared<WsSession>(self->node_, self->shard_, std::move(self->socket_),
                                              std::move(initial), address + ":" + port);
        ws->start();
      });
}

}  // namespace parley::transport
