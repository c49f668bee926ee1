#include "client/api.hpp"

#include <random>

namespace parley::client {

namespace {

Credentials credentials_from(const HttpResponse& res) {
  auto j = res.json();
  if (!j.is_object() || !j.contains("token") || !j["token"].is_string()) {
    throw TransportError("unexpected answer (HTTP " + std::to_string(res.status) +
                         "): " + res.body);
  }
  Credentials c;
  c.user = j.value("user", std::string());
  c.token = j["token"].get<std::string>();
  if (j.contains("expires_at") && j["expires_at"].is_number()) {
    c.expires_at = j["expires_at"].get<std::int64_t>();
  }
  return c;
}

}  // namespace

void throw_api_error(const HttpResponse& res) {
  auto j = res.json();
  std::string code;
  std::string message = res.body;
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    code = j["error"].value("code", std::string());
    message = j["error"].value("message", std::string());
  }
  if (message.empty()) message = "HTTP " + std::to_string(res.status);
  throw ApiError(res.status, code, message);
}

Credentials register_user(const HttpClient& http, const std::string& user,
                          const std::string& password) {
  auto res = http.post("/api/v1/register", {{"username", user}, {"password", password}});
  if (res.status != 201) throw_api_error(res);
  return credentials_from(res);
}

Credentials login(const HttpClient& http, const std::string& user, const std::string& password) {
  auto res = http.post("/api/v1/login", {{"username", user}, {"password", password}});
  if (res.status != 200) throw_api_error(res);
  return credentials_from(res);
}

void logout(const HttpClient& http, const std::string& token) {
  auto res = http.request("POST", "/api/v1/logout", std::nullopt, token);
  if (res.status != 204) throw_api_error(res);
}

AuthResult authenticate(WsClient& ws, const std::string& token,
                        const std::map<std::string, std::uint64_t>& cursors,
                        std::chrono::milliseconds timeout) {
  nlohmann::json auth = {{"type", "auth"}, {"token", token}};
  if (!cursors.empty()) {
    nlohmann::json c = nlohmann::json::object();
    for (const auto& [room, seq] : cursors) c[room] = seq;
    auth["cursors"] = std::move(c);
  }
  ws.send_json(auth);
  AuthResult out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool welcomed = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw TransportError("timed out waiting for welcome/synced");
    auto ev = ws.receive(left);
    if (ev.is_timeout()) continue;
    if (ev.is_closed()) throw TransportError("connection ended during auth: " + ev.describe());
    auto j = ev.json();
    if (!j.is_object()) throw TransportError("non-JSON frame during auth: " + ev.describe());
    auto type = j.value("type", std::string());
    if (type == "error") {
      throw ApiError(0, j.value("code", std::string()), j.value("message", std::string()));
    }
    if (!welcomed) {
      if (type != "welcome") throw TransportError("expected welcome, got " + ev.describe());
      out.welcome = std::move(j);
      welcomed = true;
      continue;
    }
    if (type == "synced") return out;
    out.replayed.push_back(std::move(j));
  }
}

std::string random_client_msg_id() {
  static thread_local std::random_device rd;
  static constexpr char hex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    auto v = rd();
    for (int k = 0; k < 8; ++k) {
      id.push_back(hex[v & 15]);
      v >>= 4;
    }
  }
  return id;
}

}  // namespace parley::client
