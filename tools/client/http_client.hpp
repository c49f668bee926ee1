#pragma once
// A synchronous HTTP/1.1 client over plain TCP (Boost.Beast). Each request uses a fresh
// connection: the callers (CLI, tests, bench set-up) make few requests, and a fresh connection
// keeps every request independent of what the previous one left on the wire.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/client_error.hpp"

namespace parley::client {

// Where a server listens.
struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
};

// Parses "http://host:port", "http://host:port/", "host:port" or "http://host" (port 80).
// Returns nullopt for anything else (https is not supported: Parley serves plain TCP).
std::optional<Endpoint> parse_server_url(std::string_view url);

struct HttpResponse {
  int status = 0;
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;

  // The body parsed as JSON; a discarded (is_discarded()) value when it is not JSON.
  nlohmann::json json() const;
  // The `error.code` of an error body, or "" when the body is not an error object.
  std::string error_code() const;
  // The value of a header (case-insensitive name), or "" when absent.
  std::string header(std::string_view name) const;
};

class HttpClient {
 public:
  explicit HttpClient(Endpoint endpoint,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  HttpClient(std::string host, std::uint16_t port,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Sends `method` (GET, POST, …) to `target` (path and query). A JSON `body` is sent with
  // Content-Type application/json; a non-empty `bearer` becomes `Authorization: Bearer …`.
  // Any status is returned, errors included; only transport failures throw TransportError.
  HttpResponse request(std::string_view method, std::string_view target,
                       const std::optional<nlohmann::json>& body = std::nullopt,
                       std::string_view bearer = {}) const;

  // The same with a raw body and arbitrary extra headers, for tests that send malformed input.
  HttpResponse request_raw(std::string_view method, std::string_view target, std::string body,
                           std::string_view content_type,
                           const std::vector<std::pair<std::string, std::string>>& headers) const;

  HttpResponse get(std::string_view target, std::string_view bearer = {}) const {
    return request("GET", target, std::nullopt, bearer);
  }
  HttpResponse post(std::string_view target, const nlohmann::json& body,
                    std::string_view bearer = {}) const {
    return request("POST", target, body, bearer);
  }

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Endpoint endpoint_;
  std::chrono::milliseconds timeout_;
};

// Percent-encodes a path segment (room names such as "dm:alice:bob" stay readable, but
// anything outside the unreserved set and ':' is escaped).
std::string url_encode_segment(std::string_view s);

}  // namespace parley::client
