#pragma once
// Thin helpers over HttpClient and WsClient for the calls every client makes: register or log
// in to get a token, log out, and authenticate a WebSocket (with resume cursors).

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/http_client.hpp"
#include "client/ws_client.hpp"

namespace parley::client {

struct Credentials {
  std::string user;
  std::string token;
  std::int64_t expires_at = 0;  // unix seconds
};

// POST /api/v1/register. Throws ApiError (400 invalid, 409 taken) or TransportError.
Credentials register_user(const HttpClient& http, const std::string& user,
                          const std::string& password);
// POST /api/v1/login. Throws ApiError (401) or TransportError.
Credentials login(const HttpClient& http, const std::string& user, const std::string& password);
// POST /api/v1/logout. Throws ApiError (401) or TransportError.
void logout(const HttpClient& http, const std::string& token);

// Throws ApiError built from an error response (status and the body's error code/message).
[[noreturn]] void throw_api_error(const HttpResponse& res);

// What the server sent between `auth` and `synced`.
struct AuthResult {
  nlohmann::json welcome;
  std::vector<nlohmann::json> replayed;  // the frames between welcome and synced, in order
};

// Sends `auth` with the token and cursors (room -> last seq seen) on a connected WsClient and
// reads up to `synced`. Throws ApiError(0, "unauthorized", …) when the server refuses, and
// TransportError when the connection ends or nothing arrives within `timeout`.
AuthResult authenticate(WsClient& ws, const std::string& token,
                        const std::map<std::string, std::uint64_t>& cursors = {},
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A random client_msg_id: 32 lowercase hex digits from the OS random source.
std::string random_client_msg_id();

}  // namespace parley::client
