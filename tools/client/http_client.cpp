#include "client/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>

#include "client/run_until.hpp"

namespace parley::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::optional<Endpoint> parse_server_url(std::string_view url) {
  std::uint16_t default_port = 8080;
  if (url.starts_with("http://")) {
    url.remove_prefix(7);
    default_port = 80;
  } else if (url.find("://") != std::string_view::npos) {
    return std::nullopt;
  }
  while (url.ends_with('/')) url.remove_suffix(1);
  if (url.empty() || url.find('/') != std::string_view::npos) return std::nullopt;
  Endpoint ep;
  ep.port = default_port;
  auto colon = url.rfind(':');
  if (colon == std::string_view::npos) {
    ep.host = std::string(url);
    return ep;
  }
  ep.host = std::string(url.substr(0, colon));
  auto port_text = url.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535 || ep.host.empty()) {
    return std::nullopt;
  }
  ep.port = static_cast<std::uint16_t>(port);
  return ep;
}

nlohmann::json HttpResponse::json() const {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::string HttpResponse::error_code() const {
  auto j = json();
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("code") && j["error"]["code"].is_string()) {
    return j["error"]["code"].get<std::string>();
  }
  return {};
}

std::string HttpResponse::header(std::string_view name) const {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  auto wanted = lower(name);
  for (const auto& [k, v] : headers) {
    if (lower(k) == wanted) return v;
  }
  return {};
}

HttpClient::HttpClient(Endpoint endpoint, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), timeout_(timeout) {}

HttpClient::HttpClient(std::string host, std::uint16_t port, std::chrono::milliseconds timeout)
    : HttpClient(Endpoint{std::move(host), port}, timeout) {}

HttpResponse HttpClient::request(std::string_view method, std::string_view target,
                                 const std::optional<nlohmann::json>& body,
                                 std::string_view bearer) const {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!bearer.empty()) headers.emplace_back("Authorization", "Bearer " + std::string(bearer));
  if (body) return request_raw(method, target, body->dump(), "application/json", headers);
  return request_raw(method, target, {}, {}, headers);
}

HttpResponse HttpClient::request_raw(
    std::string_view method, std::string_view target, std::string body,
    std::string_view content_type,
    const std::vector<std::pair<std::string, std::string>>& headers) const {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const std::string where = endpoint_.host + ":" + std::to_string(endpoint_.port);

  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(endpoint_.host, std::to_string(endpoint_.port), ec);
  if (ec) throw TransportError("cannot resolve " + endpoint_.host + ": " + ec.message());

  // Every step runs asynchronously on a private io_context driven here until it completes or
  // the deadline passes; that is how a synchronous call gets a timeout with Asio.
  bool done = false;
  asio::async_connect(socket, results, [&](boost::system::error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  if (!run_until(
          ioc, [&] { return done; }, deadline)) {
    abort_and_drain(ioc, socket);
    throw TransportError("timed out connecting to " + where);
  }
  if (ec) throw TransportError("cannot connect to " + where + ": " + ec.message());

  http::request<http::string_body> req;
  auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    req.method_string(method);
  } else {
    req.method(verb);
  }
  req.target(target);
  req.version(11);
  req.set(http::field::host, where);
  req.set(http::field::user_agent, "parley-client");
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  req.body() = std::move(body);
  req.prepare_payload();

  done = false;
  http::async_write(socket, req, [&](boost::system::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(
          ioc, [&] { return done; }, deadline)) {
    abort_and_drain(ioc, socket);
    throw TransportError("timed out sending to " + where);
  }
  if (ec) throw TransportError("cannot send to " + where + ": " + ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  done = false;
  http::async_read(socket, buffer, parser, [&](boost::system::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(
          ioc, [&] { return done; }, deadline)) {
    abort_and_drain(ioc, socket);
    throw TransportError("timed out waiting for the answer of " + where + " to " +
                         std::string(method) + " " + std::string(target));
  }
  if (ec) throw TransportError("bad answer from " + where + ": " + ec.message());

  auto res = parser.release();
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.content_type = std::string(res[http::field::content_type]);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
  return out;
}

std::string url_encode_segment(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

}  // namespace parley::client
