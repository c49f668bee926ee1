#pragma once
// The JSON HTTP API of PROTOCOL.md (/api/v1/...). Each handler answers through `done`, which
// may be called on any thread; the HTTP session hops back to its own.

#include <functional>
#include <string>
#include <string_view>

#include "transport/http_session.hpp"
#include "transport/node.hpp"

namespace parley::transport {

using Respond = std::function<void(HttpResponse)>;

struct ApiRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', undecoded
  std::string body;
  std::string bearer;  // the token of "Authorization: Bearer ...", if any
  std::string remote;  // the client's address, for login throttling
};

// Returns false when the path is not an API path (the caller serves static files).
bool handle_api(Node& node, ApiRequest req, Respond done);

// Percent-decoding of a URL path segment or query value; nullopt on a malformed escape.
std::optional<std::string> url_decode(std::string_view s);

}  // namespace parley::transport
