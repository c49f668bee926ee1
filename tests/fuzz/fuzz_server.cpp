#include "fuzz_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>

#include "bus/inproc/inproc_bus.hpp"
#include "fuzz_check.hpp"
#include "metrics/metrics.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "transport/node.hpp"

namespace parley::fuzz {

namespace {

using Clock = std::chrono::steady_clock;

struct World {
  std::filesystem::path dir;
  metrics::Registry* registry = nullptr;
  store::SqliteStore* store = nullptr;
  bus::InprocBus* bus = nullptr;
  transport::Node* node = nullptr;
};

World* g_world = nullptr;

template <class T>
Result<T> wait(const std::function<void(store::Callback<T>)>& call) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto f = p->get_future();
  call([p](Result<T> r) { p->set_value(std::move(r)); });
  return f.get();
}

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void shutdown_world() {
  if (!g_world) return;
  World* w = g_world;
  g_world = nullptr;
  // parleyd's order (main.cpp): the bus's thread calls into the node until the bus stops, and
  // the store's callbacks post to the shard, whose handlers the node's destruction discards. So
  // the node's threads stop first, then the bus, then the store, and only then the node itself.
  w->node->stop();
  w->node->join();
  w->bus->stop();
  delete w->store;  // completes queued operations, closes the database
  delete w->node;
  delete w->bus;
  delete w->registry;
  std::error_code ec;
  std::filesystem::remove_all(w->dir, ec);
  delete w;
}

void restore_tokens_in(World& w) {
  auto& s = *w.store;
  const std::int64_t later = now_s() + 365 * 86400;
  struct T {
    std::string_view token;
    const char* user;
    std::int64_t expires;
  };
  for (const T& t : {T{kToken, "fuzzer", later}, T{kOtherToken, "fuzzee", later},
                     T{kExpiredToken, "fuzzer", now_s() - 10}}) {
    // conflict: it exists already, which is what we want.
    (void)wait<Ok>([&](store::Callback<Ok> cb) {
      s.create_token(transport::Node::hash_token(t.token), t.user, t.expires, std::move(cb));
    });
  }
}

World* make_world() {
  spdlog::set_level(spdlog::level::err);  // a fuzz run would log every close
  auto* w = new World;
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/parley-fuzz-XXXXXX";
  FUZZ_CHECK(::mkdtemp(templ.data()) != nullptr, "mkdtemp " + templ);
  w->dir = templ;
  std::filesystem::create_directories(w->dir / "web" / "assets");
  std::ofstream(w->dir / "web" / "index.html") << "<!doctype html><p>fuzz</p>\n";
  std::ofstream(w->dir / "web" / "assets" / "app.js") << "console.log(1);\n";

  w->registry = new metrics::Registry;
  store::SqliteOptions so;
  so.path = (w->dir / "fuzz.db").string();
  so.reader_threads = 1;
  so.synchronous = store::SqliteSync::normal;  // durability is not under test here
  w->store = new store::SqliteStore(so, *w->registry);
  w->bus = new bus::InprocBus;

  transport::Options o;
  o.node_id = "fuzz";
  o.threads = 1;
  o.web_root = (w->dir / "web").string();
  o.send_rate = {1e9, 1e9};
  o.auth_timeout = std::chrono::milliseconds(2000);
  o.argon2_opslimit = 1;  // the cheapest Argon2id, so that register and login are fast
  o.argon2_memlimit = 8192;
  o.hash_threads = 1;
  w->node = new transport::Node(o, *w->store, *w->bus, *w->registry);

  // Fixture: two users, a public room, a private room of the other user, a dm, messages.
  char hash[crypto_pwhash_STRBYTES];
  const std::string pw = "fuzz-password";
  FUZZ_CHECK(crypto_pwhash_str(hash, pw.data(), pw.size(), 1, 8192) == 0, "crypto_pwhash_str");
  auto& s = *w->store;
  using store::Callback;
  for (const char* u : {"fuzzer", "fuzzee"}) {
    auto r = wait<Ok>([&](Callback<Ok> cb) { s.create_user(u, hash, std::move(cb)); });
    FUZZ_CHECK(r.has_value(), "create_user");
  }
  w->node->start();
  restore_tokens_in(*w);
  auto mk = [&](const char* room, store::RoomKind k, const char* by) {
    auto r = wait<Ok>([&](Callback<Ok> cb) { s.create_room(room, k, by, std::move(cb)); });
    FUZZ_CHECK(r.has_value(), "create_room");
  };
  mk("general", store::RoomKind::public_room, "fuzzer");
  mk("secret", store::RoomKind::private_room, "fuzzee");
  auto dm = wait<store::JoinResult>([&](Callback<store::JoinResult> cb) {
    s.open_dm("dm:fuzzee:fuzzer", "fuzzer", "fuzzee", std::move(cb));
  });
  FUZZ_CHECK(dm.has_value(), "open_dm");
  for (int i = 1; i <= 30; ++i) {
    for (const char* room : {"general", "secret"}) {
      const char* from = std::string_view(room) == "general" ? "fuzzer" : "fuzzee";
      auto r = wait<store::AppendResult>([&](Callback<store::AppendResult> cb) {
        s.append({room, from, "seed-" + std::to_string(i), "seed message " + std::to_string(i)},
                 std::move(cb));
      });
      FUZZ_CHECK(r.has_value(), "append");
    }
  }
  g_world = w;
  std::atexit(shutdown_world);
  return w;
}

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

}  // namespace

transport::Node& node() {
  static World* w = make_world();
  return *w->node;
}

std::string substitute(std::string_view input) {
  std::string s(input);
  replace_all(s, "$TOKEN", kToken);
  replace_all(s, "$OTHER", kOtherToken);
  replace_all(s, "$EXPIRED", kExpiredToken);
  return s;
}

void restore_tokens() {
  node();
  restore_tokens_in(*g_world);
}

Exchange exchange(const std::function<void(int fd)>& start, std::string_view input,
                  std::mt19937& rng, int idle_ms) {
  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
  const int client = fds[0];
  set_nonblocking(client);
  start(fds[1]);

  Exchange ex;
  std::size_t written = 0;
  bool shut = false;
  auto last_activity = Clock::now();
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  char buf[65536];
  for (;;) {
    FUZZ_CHECK(Clock::now() < deadline, "the server neither answered nor closed within 20 s");
    pollfd p{client, POLLIN, 0};
    if (written < input.size()) p.events |= POLLOUT;
    int r = ::poll(&p, 1, 2);
    if (r < 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n > 0) {
        ex.output.append(buf, static_cast<std::size_t>(n));
        last_activity = Clock::now();
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        ex.server_closed = true;
        break;
      }
    }
    if (written < input.size()) {
      if (p.revents & POLLOUT) {
        std::size_t piece = std::uniform_int_distribution<std::size_t>(1, 512)(rng);
        if (rng() % 4 == 0) piece = input.size();
        piece = std::min(piece, input.size() - written);
        ssize_t n = ::send(client, input.data() + written, piece, MSG_NOSIGNAL);
        if (n > 0) {
          written += static_cast<std::size_t>(n);
          last_activity = Clock::now();
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          written = input.size();  // the server closed: stop writing, read what is left
        }
      }
      continue;
    }
    if (!shut && Clock::now() - last_activity > std::chrono::milliseconds(idle_ms)) {
      ::shutdown(client, SHUT_WR);
      shut = true;
    }
  }
  ::close(client);
  return ex;
}

}  // namespace parley::fuzz

#include <rapidjson/document.h>

#include "protocol/ws_frame.hpp"

namespace parley::fuzz {

void check_server_json(std::string_view text, bool is_frame) {
  FUZZ_CHECK(protocol::ws::is_valid_utf8(text), "the server wrote invalid UTF-8");
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  FUZZ_CHECK(!d.HasParseError() && d.IsObject(),
             "the server wrote something not a JSON object: " + std::string(text.substr(0, 300)));
  const rapidjson::Value* err = nullptr;
  if (is_frame) {
    auto t = d.FindMember("type");
    FUZZ_CHECK(t != d.MemberEnd() && t->value.IsString(), "a frame without a string type");
    if (std::string_view(t->value.GetString()) == "error") err = &d;
  } else if (auto e = d.FindMember("error"); e != d.MemberEnd()) {
    FUZZ_CHECK(e->value.IsObject(), "\"error\" is not an object");
    err = &e->value;
  }
  if (err != nullptr) {
    auto c = err->FindMember("code");
    auto m = err->FindMember("message");
    FUZZ_CHECK(c != err->MemberEnd() && c->value.IsString(), "an error without a code");
    FUZZ_CHECK(m != err->MemberEnd() && m->value.IsString(), "an error without a message");
    const std::string_view code = c->value.GetString();
    static constexpr std::string_view known[] = {"bad_request",  "unauthorized", "forbidden",
                                                 "not_found",    "conflict",     "too_large",
                                                 "rate_limited", "unavailable"};
    bool ok = false;
    for (auto k : known) ok = ok || k == code;
    FUZZ_CHECK(ok,
               "error code \"" + std::string(code) +
                   "\" (an internal error is a server bug): " + std::string(text.substr(0, 300)));
  }
}

std::size_t check_ws_output(std::string_view b) {
  std::size_t pos = 0;
  std::size_t frames = 0;
  bool closed = false;
  while (pos + 2 <= b.size()) {
    const auto b0 = static_cast<unsigned char>(b[pos]);
    const auto b1 = static_cast<unsigned char>(b[pos + 1]);
    std::size_t len = b1 & 0x7F;
    std::size_t hdr = 2;
    if (len == 126) {
      if (pos + 4 > b.size()) break;
      len = (static_cast<unsigned char>(b[pos + 2]) << 8) | static_cast<unsigned char>(b[pos + 3]);
      hdr = 4;
      FUZZ_CHECK(len >= 126, "a 16-bit length that fits in 7 bits");
    } else if (len == 127) {
      if (pos + 10 > b.size()) break;
      std::uint64_t l = 0;
      for (int i = 0; i < 8; ++i) l = (l << 8) | static_cast<unsigned char>(b[pos + 2 + i]);
      FUZZ_CHECK(l > 0xFFFF && l < (1ULL << 40), "a 64-bit length out of range");
      len = static_cast<std::size_t>(l);
      hdr = 10;
    }
    FUZZ_CHECK((b1 & 0x80) == 0, "a masked server frame");
    FUZZ_CHECK((b0 & 0x80) != 0, "a fragmented server frame");
    FUZZ_CHECK((b0 & 0x70) == 0, "reserved bits in a server frame");
    FUZZ_CHECK(!closed, "a frame after the close frame");
    if (pos + hdr + len > b.size()) break;  // cut short: the client hung up
    const std::string_view payload = b.substr(pos + hdr, len);
    const unsigned op = b0 & 0x0F;
    switch (op) {
      case 0x1:
        check_server_json(payload, true);
        break;
      case 0xA:
        FUZZ_CHECK(len <= 125, "a pong over 125 bytes");
        break;
      case 0x8: {
        FUZZ_CHECK(len != 1 && len <= 125, "a close frame of " + std::to_string(len) + " bytes");
        if (len >= 2) {
          const unsigned code = (static_cast<unsigned char>(payload[0]) << 8) |
                                static_cast<unsigned char>(payload[1]);
          const bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
                             (code >= 3000 && code <= 4999);
          FUZZ_CHECK(valid, "close code " + std::to_string(code));
          FUZZ_CHECK(protocol::ws::is_valid_utf8(payload.substr(2)), "a close reason not UTF-8");
        }
        closed = true;
        break;
      }
      default:
        FUZZ_CHECK(false, "server frame opcode " + std::to_string(op));
    }
    pos += hdr + len;
    ++frames;
  }
  return frames;
}

}  // namespace parley::fuzz
