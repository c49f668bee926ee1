#include "transport/api.hpp"

#include <rapidjson/document.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <charconv>
#include <chrono>

#include "core/names.hpp"
#include "core/throttle.hpp"
#include "protocol/messages.hpp"
#include "transport/admin_api.hpp"
#include "transport/history.hpp"

namespace parley::transport {

namespace {

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HttpResponse json_response(unsigned status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse store_error(std::error_code ec) {
  if (ec == store::StoreErrc::unavailable) {
    return error_response(503, "unavailable", "the store is unavailable; retry");
  }
  if (ec == store::StoreErrc::not_found) return error_response(404, "not_found", ec.message());
  if (ec == store::StoreErrc::forbidden) return error_response(403, "forbidden", ec.message());
  if (ec == store::StoreErrc::conflict) return error_response(409, "conflict", ec.message());
  spdlog::error("store error: {}", ec.message());
  return error_response(500, "internal", "internal error");
}

// 429 {"error":{"code":"rate_limited","message","retry_after_ms"}} with Retry-After (seconds).
HttpResponse rate_limited_response(std::string_view message, std::uint64_t wait_ms) {
  std::string body = "{\"error\":{\"code\":\"rate_limited\",\"message\":";
  protocol::append_json_string(body, message);
  body += ",\"retry_after_ms\":" + std::to_string(wait_ms) + "}}";
  HttpResponse r = json_response(429, std::move(body));
  r.extra_headers = "Retry-After: " + std::to_string((wait_ms + 999) / 1000) + "\r\n";
  return r;
}

struct Credentials {
  std::string username;
  std::string password;
};

// Parses {"username","password"}; the error names what is wrong.
Result<Credentials, std::string> parse_credentials(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError() || !d.IsObject())
    return unexpected(std::string("the body must be a JSON object"));
  auto u = d.FindMember("username");
  auto p = d.FindMember("password");
  if (u == d.MemberEnd() || !u->value.IsString())
    return unexpected(std::string("username (string) is required"));
  if (p == d.MemberEnd() || !p->value.IsString())
    return unexpected(std::string("password (string) is required"));
  return Credentials{std::string(u->value.GetString(), u->value.GetStringLength()),
                     std::string(p->value.GetString(), p->value.GetStringLength())};
}

std::string random_token() {
  unsigned char raw[32];  // 256 bits
  randombytes_buf(raw, sizeof raw);
  char out[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(out, sizeof out, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return out;
}

// Issues a token for `user` and answers with `status` {"user","token","expires_at"}.
void issue_token(Node& node, const std::string& user, unsigned status, Respond done) {
  std::string token = random_token();
  std::int64_t expires = now_s() + node.options().token_ttl_s;
  node.store().create_token(Node::hash_token(token), user, expires,
                            [user, token, expires, status, done](Result<Ok> r) {
                              if (!r) {
                                done(store_error(r.error()));
                                return;
                              }
                              std::string body = "{\"user\":";
                              protocol::append_json_string(body, user);
                              body += ",\"token\":";
                              protocol::append_json_string(body, token);
                              body += ",\"expires_at\":" + std::to_string(expires) + "}";
                              done(json_response(status, std::move(body)));
                            });
}

// A stored hash to verify against for unknown users, so that a login takes as long whether or
// not the user exists.
const std::string& dummy_hash(Node& node) {
  static const std::string h = [&node] {
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(out, "not a password", 14, node.options().argon2_opslimit,
                          node.options().argon2_memlimit) != 0) {
      return std::string();
    }
    return std::string(out);
  }();
  return h;
}

void do_register(Node& node, const ApiRequest& req, Respond done) {
  auto c = parse_credentials(req.body);
  if (!c) return done(error_response(400, "bad_request", c.error()));
  if (!core::valid_username(c->username)) {
    return done(error_response(400, "bad_request", "username must match ^[a-z0-9_.-]{1,32}$"));
  }
  if (c->password.size() < 8 || c->password.size() > 256) {
    return done(error_response(400, "bad_request", "password must be 8 to 256 bytes"));
  }
  // Only a well-formed request costs a token: it is the one that would cost a hash.
  if (auto wait =
          node.throttle().registrations().acquire(req.remote, std::chrono::steady_clock::now())) {
    spdlog::info("registration throttled from {}", req.remote);
    return done(
        rate_limited_response("too many registrations from this address; retry later", wait));
  }
  // Argon2id takes tens of milliseconds and 19 MiB: it runs on the hashing pool, never on an
  // I/O thread.
  boost::asio::post(node.hash_pool(), [&node, c = std::move(*c), done] {
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, c.password.data(), c.password.size(),
                          node.options().argon2_opslimit, node.options().argon2_memlimit) != 0) {
      return done(error_response(500, "internal", "password hashing failed (out of memory)"));
    }
    node.store().create_user(c.username, hash, [&node, user = c.username, done](Result<Ok> r) {
      if (!r) {
        if (r.error() == store::StoreErrc::conflict) {
          return done(error_response(409, "conflict", "username " + user + " is taken"));
        }
        return done(store_error(r.error()));
      }
      spdlog::info("registered user {}", user);
      issue_token(node, user, 201, done);
    });
  });
}

void do_login(Node& node, const ApiRequest& req, Respond done) {
  auto c = parse_credentials(req.body);
  if (!c) return done(error_response(400, "bad_request", c.error()));
  // Password guessing: each attempt costs a token per username and per address before the
  // password is checked; a success gives them back (core::LoginThrottle). A name that cannot
  // exist is charged to the address only, so that junk names cannot grow the table.
  std::string key = core::valid_username(c->username) ? c->username : std::string();
  if (auto wait =
          node.throttle().login().attempt(key, req.remote, std::chrono::steady_clock::now())) {
    spdlog::info("login throttled for {} from {}", key.empty() ? "(invalid name)" : key,
                 req.remote);
    return done(rate_limited_response("too many login attempts; retry later", wait));
  }
  std::string username = c->username;  // not c->username below: argument order is unspecified
  node.store().get_user(std::move(username), [&node, c = std::move(*c), key, remote = req.remote,
                                              done](Result<store::UserAuth> r) {
    if (!r && r.error() != store::StoreErrc::not_found) return done(store_error(r.error()));
    std::string stored = r ? r->password_hash : std::string();
    boost::asio::post(
        node.hash_pool(), [&node, c, key, remote, stored, known = r.has_value(), done] {
          const std::string& h = known ? stored : dummy_hash(node);
          bool ok = crypto_pwhash_str_verify(h.c_str(), c.password.data(), c.password.size()) == 0;
          if (!ok || !known) {
            spdlog::info("failed login for {}", c.username);
            return done(error_response(401, "unauthorized", "wrong username or password"));
          }
          node.throttle().login().succeeded(key, remote, std::chrono::steady_clock::now());
          issue_token(node, c.username, 200, done);
        });
  });
}

HttpResponse no_content() {
  HttpResponse res;
  res.status = 204;
  res.content_type.clear();
  return res;
}

// Runs `fn(user)` when the bearer token is valid, else answers 401.
void with_user(Node& node, const ApiRequest& req, Respond done,
               std::function<void(const std::string&)> fn) {
  if (req.bearer.empty()) {
    return done(error_response(401, "unauthorized", "missing Authorization: Bearer <token>"));
  }
  node.authenticate(req.bearer, [done, fn = std::move(fn)](Result<store::TokenInfo> r) {
    if (!r) {
      if (r.error() == store::StoreErrc::unavailable) return done(store_error(r.error()));
      return done(error_response(401, "unauthorized", "invalid or expired token"));
    }
    fn(r->user);
  });
}

void do_logout(Node& node, const ApiRequest& req, Respond done) {
  with_user(node, req, done, [&node, token = req.bearer, done](const std::string& user) {
    std::string h = Node::hash_token(token);
    node.store().delete_token(h, [&node, h, user, done](Result<store::TokenInfo> r) {
      if (!r && r.error() != store::StoreErrc::not_found) return done(store_error(r.error()));
      node.forget_token(h);
      // Every node (this one included) closes the token's sockets when this event arrives.
      node.publish_user_event({UserEvent::Kind::logout, user, {}, 0, {}, h, {}});
      done(no_content());
    });
  });
}

// Deletes `user`'s account, then tells every node (this one included, through the bus): each
// forgets the user's cached tokens and closes the user's sockets with 1008 "account deleted".
// A node whose bus is down at that moment stops trusting its cached tokens within the token
// cache's TTL (Node::authenticate). Answers 204, or 404 for an unknown or deleted user.
void delete_account(Node& node, const std::string& user, Respond done) {
  node.store().delete_user(user, [&node, user, done](Result<Ok> r) {
    if (!r) {
      if (r.error() == store::StoreErrc::not_found) {
        return done(error_response(404, "not_found", "no user " + user));
      }
      return done(store_error(r.error()));
    }
    node.forget_user_tokens(user);
    node.publish_user_event({UserEvent::Kind::deleted, user, {}, 0, {}, {}, {}});
    spdlog::info("deleted user {}", user);
    done(no_content());
  });
}

// DELETE /api/v1/users/me {"password"}: a user deletes their own account. A token alone is not
// enough (it may have been stolen from a page or a log): the password is checked, and every
// attempt is charged to the login throttle exactly like a login, so it is no way around it.
void do_delete_me(Node& node, const ApiRequest& req, Respond done) {
  with_user(
      node, req, done,
      [&node, body = req.body, remote = req.remote, done](const std::string& user) {
        rapidjson::Document d;
        d.Parse(body.data(), body.size());
        if (d.HasParseError() || !d.IsObject()) {
          return done(error_response(400, "bad_request", "the body must be a JSON object"));
        }
        auto p = d.FindMember("password");
        if (p == d.MemberEnd() || !p->value.IsString()) {
          return done(error_response(400, "bad_request", "password (string) is required"));
        }
        std::string password(p->value.GetString(), p->value.GetStringLength());
        if (auto wait =
                node.throttle().login().attempt(user, remote, std::chrono::steady_clock::now())) {
          return done(rate_limited_response("too many attempts; retry later", wait));
        }
        node.store().get_user(user, [&node, user, password = std::move(password), remote,
                                     done](Result<store::UserAuth> r) {
          if (!r) {
            // Deleted meanwhile (by another request or an admin): the token is no longer valid.
            if (r.error() == store::StoreErrc::not_found) {
              return done(error_response(401, "unauthorized", "invalid or expired token"));
            }
            return done(store_error(r.error()));
          }
          boost::asio::post(node.hash_pool(), [&node, user, password, remote,
                                               stored = r->password_hash, done] {
            if (crypto_pwhash_str_verify(stored.c_str(), password.data(), password.size()) != 0) {
              spdlog::info("account deletion for {} refused: wrong password", user);
              return done(error_response(401, "unauthorized", "wrong password"));
            }
            node.throttle().login().succeeded(user, remote, std::chrono::steady_clock::now());
            delete_account(node, user, done);
          });
        });
      });
}

void do_rooms(Node& node, const ApiRequest& req, Respond done) {
  with_user(node, req, done, [&node, done](const std::string& user) {
    node.store().list_rooms(user, [done](Result<std::vector<store::RoomSummary>> r) {
      if (!r) return done(store_error(r.error()));
      std::string body = "{\"rooms\":[";
      bool first = true;
      for (const auto& s : *r) {
        if (!first) body += ',';
        first = false;
        body += "{\"room\":";
        protocol::append_json_string(body, s.room);
        body += ",\"kind\":\"";
        body += store::to_string(s.kind);
        body += "\",\"last_seq\":" + std::to_string(s.last_seq);
        body += ",\"read_seq\":" + std::to_string(s.read_seq);
        body +=
            ",\"unread\":" + std::to_string(s.last_seq > s.read_seq ? s.last_seq - s.read_seq : 0);
        body += '}';
      }
      body += "]}";
      done(json_response(200, std::move(body)));
    });
  });
}

// Parses a non-negative integer query value.
std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

void do_messages(Node& node, const ApiRequest& req, const std::string& room, Respond done) {
  std::uint64_t before = UINT64_MAX;
  std::uint32_t limit = node.options().protocol.default_history_limit;
  std::string_view q = req.query;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    auto eq = kv.find('=');
    std::string_view k = kv.substr(0, eq);
    std::string_view v = eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1);
    if (k == "before") {
      auto n = parse_u64(v);
      // 0 is allowed and gives an empty page, as on the WebSocket: no message has a seq below 1.
      if (!n) return done(error_response(400, "bad_request", "before must be an integer >= 0"));
      before = *n;
    } else if (k == "limit") {
      auto n = parse_u64(v);
      if (!n || *n < 1 || *n > node.options().protocol.max_history_limit) {
        return done(error_response(400, "bad_request",
                                   "limit must be an integer from 1 to " +
                                       std::to_string(node.options().protocol.max_history_limit)));
      }
      limit = static_cast<std::uint32_t>(*n);
    }
  }
  with_user(node, req, done, [&node, room, before, limit, done](const std::string& user) {
    node.store().room_info(
        room, [&node, room, user, before, limit, done](Result<store::RoomSummary> info) {
          if (!info) {
            if (info.error() == store::StoreErrc::not_found) {
              return done(error_response(404, "not_found", "no room " + room));
            }
            return done(store_error(info.error()));
          }
          node.store().is_member(room, user, [&node, room, before, limit, done](Result<bool> m) {
            if (!m) return done(store_error(m.error()));
            if (!*m) return done(error_response(403, "forbidden", "not a member of room " + room));
            load_history(node, room, before, limit, [room, done](Result<HistoryJson> h) {
              if (!h) return done(store_error(h.error()));
              done(json_response(200, encode_history_body(room, *h)));
            });
          });
        });
  });
}

}  // namespace

HttpResponse error_response(unsigned status, std::string_view code, std::string_view message) {
  std::string body = "{\"error\":{\"code\":";
  protocol::append_json_string(body, code);
  body += ",\"message\":";
  protocol::append_json_string(body, message);
  body += "}}";
  return json_response(status, std::move(body));
}

std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      unsigned v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
      out.push_back(static_cast<char>(v));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool handle_api(Node& node, ApiRequest req, Respond done) {
  const std::string& p = req.path;
  if (p.rfind("/api/", 0) != 0) return false;
  const bool post = req.method == "POST";
  const bool get = req.method == "GET";
  if (p == "/api/v1/register") {
    if (!post)
      done(error_response(405, "bad_request", "use POST"));
    else
      do_register(node, req, done);
  } else if (p == "/api/v1/login") {
    if (!post)
      done(error_response(405, "bad_request", "use POST"));
    else
      do_login(node, req, done);
  } else if (p == "/api/v1/logout") {
    if (!post)
      done(error_response(405, "bad_request", "use POST"));
    else
      do_logout(node, req, done);
  } else if (p == "/api/v1/users/me") {
    if (req.method != "DELETE")
      done(error_response(405, "bad_request", "use DELETE"));
    else
      do_delete_me(node, req, done);
  } else if (p == "/api/v1/admin/nodes") {
    handle_admin_nodes(node, req, done);
  } else if (p.rfind("/api/v1/admin/users/", 0) == 0) {
    auto user = url_decode(std::string_view(p).substr(20));
    if (req.method != "DELETE") {
      done(error_response(405, "bad_request", "use DELETE"));
    } else if (!user || !core::valid_username(*user)) {
      done(error_response(400, "bad_request", "username must match ^[a-z0-9_.-]{1,32}$"));
    } else {
      with_admin(node, req, done,
                 [&node, user = *user, done] { delete_account(node, user, done); });
    }
  } else if (p == "/api/v1/rooms") {
    if (!get)
      done(error_response(405, "bad_request", "use GET"));
    else
      do_rooms(node, req, done);
  } else if (p.rfind("/api/v1/rooms/", 0) == 0 && p.size() > 23 &&
             p.compare(p.size() - 9, 9, "/messages") == 0) {
    auto room = url_decode(std::string_view(p).substr(14, p.size() - 14 - 9));
    if (!get) {
      done(error_response(405, "bad_request", "use GET"));
    } else if (!room || !core::valid_room_ref(*room)) {
      done(error_response(400, "bad_request", "invalid room name"));
    } else {
      do_messages(node, req, *room, done);
    }
  } else {
    done(error_response(404, "not_found", "no such API endpoint"));
  }
  return true;
}

}  // namespace parley::transport
