// Tests of a WebSocket session's authentication against the user events that race it: a join,
// a leave, a logout or a deletion made elsewhere while the authenticating session reads the
// user's rooms from the store. The session must end up as if it had been live all along: a
// change committed while the list was read reaches it through the list or through its event,
// and an event for a change the list already shows does nothing.
//
// The race is made deterministic by a store wrapper (GatedStore) that holds the session's
// list_rooms: either the read is done at once and its answer held back (the answer is then
// stale when it arrives), or the read itself is held back (its answer then shows the change).
// Everything else is real: a Node with one shard thread, the SQLite store in a temporary
// directory, the in-process bus, and WsSessions fed through Unix socket pairs (no network).
//
// A join or leave is made by another live session of the user (S2), a logout or deletion the
// way the HTTP API makes it. A third session (S3) serves as a barrier: the shard hands a user
// event to all of the user's sessions in one loop, so once S3 has the event's frame (or that of
// an event published after it), the authenticating session has been offered the event too.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bus/inproc/inproc_bus.hpp"
#include "metrics/metrics.hpp"
#include "protocol/ws_frame.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "support/raw_ws_client.hpp"
#include "transport/node.hpp"
#include "transport/shard.hpp"
#include "transport/ws_session.hpp"

namespace parley::transport {
namespace {

namespace asio = boost::asio;
namespace ws = protocol::ws;
using namespace std::chrono_literals;

template <class T, class Submit>
Result<T> wait_for(Submit&& submit) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  submit([promise](Result<T> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(30s) != std::future_status::ready) {
    ADD_FAILURE() << "store callback not called within 30 s";
    std::abort();
  }
  return future.get();
}

// A Store that forwards to SQLite, except for one armed list_rooms call, which it holds until
// the test releases it.
class GatedStore final : public store::Store {
 public:
  enum class Mode {
    read_now,   // read at once, hold the answer: it misses what commits before release()
    read_later  // hold the read itself: it sees what commits before release()
  };
  explicit GatedStore(store::Store& inner) : inner_(inner) {}

  void arm(const std::string& user, Mode mode) {
    std::lock_guard lock(mu_);
    armed_user_ = user;
    mode_ = mode;
    captured_ = false;
  }
  // Waits until the armed call has arrived (and, for read_now, its read is done).
  void wait_captured() {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [this] { return captured_; }))
        << "the session never read its rooms";
  }
  // Lets the held call go on: its callback runs on this thread (read_now) or the read starts.
  void release() {
    store::Callback<std::vector<store::RoomSummary>> cb;
    std::optional<Result<std::vector<store::RoomSummary>>> result;
    std::string user;
    {
      std::lock_guard lock(mu_);
      cb = std::move(held_cb_);
      held_cb_ = nullptr;
      result = std::move(held_result_);
      held_result_.reset();
      user = held_user_;
    }
    if (!cb) return;
    if (result) {
      cb(std::move(*result));
    } else {
      inner_.list_rooms(user, std::move(cb));
    }
  }
  // Drops a call never released (a failed test): its callback holds a session.
  void drop() {
    std::lock_guard lock(mu_);
    held_cb_ = nullptr;
  }

  void list_rooms(std::string user, store::Callback<std::vector<store::RoomSummary>> cb) override {
    std::unique_lock lock(mu_);
    if (armed_user_.empty() || user != armed_user_) {
      lock.unlock();
      inner_.list_rooms(std::move(user), std::move(cb));
      return;
    }
    armed_user_.clear();
    held_cb_ = std::move(cb);
    held_user_ = user;
    if (mode_ == Mode::read_later) {
      captured_ = true;
      cv_.notify_all();
      return;
    }
    lock.unlock();
    inner_.list_rooms(user, [this](Result<std::vector<store::RoomSummary>> r) {
      std::lock_guard lock(mu_);
      held_result_ = std::move(r);
      captured_ = true;
      cv_.notify_all();
    });
  }

  void create_user(std::string u, std::string h, store::Callback<Ok> cb) override {
    inner_.create_user(std::move(u), std::move(h), std::move(cb));
  }
  void get_user(std::string u, store::Callback<store::UserAuth> cb) override {
    inner_.get_user(std::move(u), std::move(cb));
  }
  void create_token(std::string h, std::string u, std::int64_t e, store::Callback<Ok> cb) override {
    inner_.create_token(std::move(h), std::move(u), e, std::move(cb));
  }
  void lookup_token(std::string h, store::Callback<store::TokenInfo> cb) override {
    inner_.lookup_token(std::move(h), std::move(cb));
  }
  void delete_token(std::string h, store::Callback<store::TokenInfo> cb) override {
    inner_.delete_token(std::move(h), std::move(cb));
  }
  void set_admin(std::string u, bool a, store::Callback<Ok> cb) override {
    inner_.set_admin(std::move(u), a, std::move(cb));
  }
  void delete_user(std::string u, store::Callback<Ok> cb) override {
    inner_.delete_user(std::move(u), std::move(cb));
  }
  void create_room(std::string r, store::RoomKind k, std::string c,
                   store::Callback<Ok> cb) override {
    inner_.create_room(std::move(r), k, std::move(c), std::move(cb));
  }
  void join_room(std::string r, std::string u, store::Callback<store::JoinResult> cb) override {
    inner_.join_room(std::move(r), std::move(u), std::move(cb));
  }
  void leave_room(std::string r, std::string u, store::Callback<Ok> cb) override {
    inner_.leave_room(std::move(r), std::move(u), std::move(cb));
  }
  void invite(std::string r, std::string i, std::string u, store::Callback<Ok> cb) override {
    inner_.invite(std::move(r), std::move(i), std::move(u), std::move(cb));
  }
  void open_dm(std::string r, std::string u, std::string o,
               store::Callback<store::JoinResult> cb) override {
    inner_.open_dm(std::move(r), std::move(u), std::move(o), std::move(cb));
  }
  void is_member(std::string r, std::string u, store::Callback<bool> cb) override {
    inner_.is_member(std::move(r), std::move(u), std::move(cb));
  }
  void room_info(std::string r, store::Callback<store::RoomSummary> cb) override {
    inner_.room_info(std::move(r), std::move(cb));
  }
  void append(store::AppendRequest req, store::Callback<store::AppendResult> cb) override {
    inner_.append(std::move(req), std::move(cb));
  }
  void read_range(std::string r, std::uint64_t after, std::uint64_t up_to, std::uint32_t limit,
                  store::Callback<std::vector<store::StoredMessage>> cb) override {
    inner_.read_range(std::move(r), after, up_to, limit, std::move(cb));
  }
  void history(std::string r, std::uint64_t before, std::uint32_t limit,
               store::Callback<store::HistoryPage> cb) override {
    inner_.history(std::move(r), before, limit, std::move(cb));
  }
  void set_read(std::string r, std::string u, std::uint64_t seq,
                store::Callback<std::uint64_t> cb) override {
    inner_.set_read(std::move(r), std::move(u), seq, std::move(cb));
  }
  bool ready() const override { return inner_.ready(); }

 private:
  store::Store& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string armed_user_;
  Mode mode_ = Mode::read_now;
  bool captured_ = false;
  std::string held_user_;
  store::Callback<std::vector<store::RoomSummary>> held_cb_;
  std::optional<Result<std::vector<store::RoomSummary>>> held_result_;
};

// One server frame as the client sees it.
struct Frame {
  ws::Opcode opcode = ws::Opcode::text;
  std::string payload;
  // For text frames: the JSON object's "type", and a field read as a string or a number.
  std::string type() const { return str("type"); }
  std::string str(const char* key) const {
    rapidjson::Document d;
    d.Parse(payload.data(), payload.size());
    if (d.HasParseError() || !d.IsObject()) return {};
    auto it = d.FindMember(key);
    return it != d.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
  }
  std::uint64_t num(const char* key) const {
    rapidjson::Document d;
    d.Parse(payload.data(), payload.size());
    if (d.HasParseError() || !d.IsObject()) return UINT64_MAX;
    auto it = d.FindMember(key);
    return it != d.MemberEnd() && it->value.IsUint64() ? it->value.GetUint64() : UINT64_MAX;
  }
  bool has(const char* key) const {
    rapidjson::Document d;
    d.Parse(payload.data(), payload.size());
    return !d.HasParseError() && d.IsObject() && d.HasMember(key);
  }
  std::uint16_t close_code() const {
    if (payload.size() < 2) return 1005;
    return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                      static_cast<unsigned char>(payload[1]));
  }
};

// The client end of a session's socket pair: sends masked frames, parses server frames.
class Client {
 public:
  explicit Client(int fd) : fd_(fd) {}
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(const std::string& json) {
    const std::string f = ws::make_client_frame(ws::Opcode::text, json, 0x5a17c3e1);
    std::size_t done = 0;
    while (done < f.size()) {
      ssize_t n = ::send(fd_, f.data() + done, f.size() - done, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << "send failed";
      done += static_cast<std::size_t>(n);
    }
  }

  // The next frame, or nothing on timeout or end of stream.
  std::optional<Frame> next(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto f = parse()) return f;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || eof_) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      in_.append(buf, static_cast<std::size_t>(n));
    }
  }

  // Reads frames until one satisfies `pred`; the frames before it are appended to `skipped`.
  Frame expect(const std::function<bool(const Frame&)>& pred, const std::string& what,
               std::vector<Frame>* skipped = nullptr, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string seen;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      auto f = next(std::max(left, 0ms));
      if (!f) {
        ADD_FAILURE() << "no " << what << " within " << timeout.count() << " ms; got:" << seen;
        return {};
      }
      if (pred(*f)) return *f;
      if (seen.size() < 4000) seen += "\n  " + f->payload.substr(0, 200);
      if (skipped) skipped->push_back(*f);
    }
  }
  Frame expect_type(const std::string& type, std::vector<Frame>* skipped = nullptr) {
    return expect([&](const Frame& f) { return f.type() == type; }, "\"" + type + "\" frame",
                  skipped);
  }
  // Sends a ping and returns every frame that arrives before its pong: the session has nothing
  // else queued from before the ping once the pong is here.
  std::vector<Frame> drain() {
    const std::string ref = "drain-" + std::to_string(++drains_);
    send("{\"type\":\"ping\",\"ref\":\"" + ref + "\"}");
    std::vector<Frame> before;
    expect([&](const Frame& f) { return f.type() == "pong" && f.str("ref") == ref; }, "pong",
           &before);
    return before;
  }

 private:
  std::optional<Frame> parse() {
    auto raw = parley::test::take_frame(in_);
    if (!raw) return std::nullopt;
    return Frame{raw->opcode, std::move(raw->payload)};
  }

  int fd_;
  std::string in_;
  bool eof_ = false;
  int drains_ = 0;
};

bool is_frame(const Frame& f, const std::string& type, const std::string& room) {
  return f.type() == type && f.str("room") == room;
}

std::size_t count_of(const std::vector<Frame>& frames, const std::string& type,
                     const std::string& room) {
  std::size_t n = 0;
  for (const auto& f : frames) n += is_frame(f, type, room) ? 1 : 0;
  return n;
}

class AuthRace : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ =
        (std::filesystem::temp_directory_path() / "parley-authrace-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    store::SqliteOptions so;
    so.path = (dir_ / "parley.db").string();
    so.reader_threads = 1;
    so.synchronous = store::SqliteSync::normal;  // durability is not under test here
    sqlite_ = std::make_unique<store::SqliteStore>(so, registry_);
    store_ = std::make_unique<GatedStore>(*sqlite_);
    bus_ = std::make_unique<bus::InprocBus>();
    Options o;
    o.node_id = "authrace";
    o.threads = 1;  // every session on one shard: S3 is a barrier for the others
    o.send_rate = {1e9, 1e9};
    node_ = std::make_unique<Node>(o, *store_, *bus_, registry_);
    node_->start();

    for (const char* u : {"alice", "bob"}) {
      ASSERT_TRUE(wait_for<Ok>([&](auto cb) { sqlite_->create_user(u, "unused", cb); }));
    }
    ASSERT_TRUE(wait_for<Ok>(
        [&](auto cb) { sqlite_->create_room("lobby", store::RoomKind::public_room, "bob", cb); }));
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE(wait_for<store::AppendResult>([&](auto cb) {
        sqlite_->append({"lobby", "bob", "seed-" + std::to_string(i), "hello"}, cb);
      }));
    }
  }

  void TearDown() override {
    clients_.clear();
    store_->drop();
    // parleyd's order (main.cpp): the bus's thread calls into the node until the bus stops, and
    // the store's callbacks post to the shard, whose handlers the node's destruction discards.
    node_->stop();
    node_->join();
    bus_->stop();
    sqlite_.reset();
    node_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A fresh token of `user`; its hash is what a logout event names.
  std::string token_for(const std::string& user) {
    const std::string token = user + "-token-" + std::to_string(++tokens_) + "-abcdefghijklmnop";
    EXPECT_TRUE(wait_for<Ok>([&](auto cb) {
      sqlite_->create_token(Node::hash_token(token), user, std::time(nullptr) + 3600, cb);
    }));
    return token;
  }

  // Opens a session (a WsSession on the shard, fed through a socket pair) and sends `auth`.
  Client& connect(const std::string& token, const std::string& ref = "auth") {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    Shard& shard = node_->shard(0);
    asio::post(shard.ioc(), [node = node_.get(), &shard, fd = fds[1]] {
      asio::ip::tcp::socket s(shard.ioc());
      s.assign(asio::ip::tcp::v4(), fd);
      std::make_shared<WsSession>(*node, shard, std::move(s), std::string(), "test")->start();
    });
    clients_.push_back(std::make_unique<Client>(fds[0]));
    Client& c = *clients_.back();
    c.send("{\"type\":\"auth\",\"ref\":\"" + ref + "\",\"token\":\"" + token + "\"}");
    return c;
  }

  // A live session of `user`: authenticated, past `synced`.
  Client& live(const std::string& user) {
    Client& c = connect(token_for(user));
    c.expect_type("welcome");
    c.expect_type("synced");
    return c;
  }

  void join_store(const std::string& room, const std::string& user) {
    ASSERT_TRUE(wait_for<store::JoinResult>([&](auto cb) { sqlite_->join_room(room, user, cb); }));
  }

  std::filesystem::path dir_;
  metrics::Registry registry_;
  std::unique_ptr<store::SqliteStore> sqlite_;
  std::unique_ptr<GatedStore> store_;
  std::unique_ptr<bus::InprocBus> bus_;
  std::unique_ptr<Node> node_;
  std::vector<std::unique_ptr<Client>> clients_;
  int tokens_ = 0;
};

// The gap this guards: the list was read before the join committed, and the join's event came
// before the session registered, so neither told the session of the room.
TEST_F(AuthRace, JoinCommittedAfterTheRoomListWasReadReachesTheSession) {
  Client& s2 = live("alice");
  Client& s3 = live("alice");

  store_->arm("alice", GatedStore::Mode::read_now);
  Client& s1 = connect(token_for("alice"));
  // Pipelined behind auth: it runs after the welcome, once the join is known.
  s1.send(R"({"type":"send","ref":"early-send","room":"lobby","client_msg_id":"c1","body":"hi"})");
  store_->wait_captured();  // the list is read: alice is in no room

  s2.send(R"({"type":"join","ref":"j","room":"lobby"})");
  s2.expect([](const Frame& f) { return f.type() == "joined" && f.str("ref") == "j"; }, "joined");
  auto seen = s3.expect([](const Frame& f) { return is_frame(f, "joined", "lobby"); }, "joined");
  EXPECT_EQ(seen.num("last_seq"), 3u);

  store_->release();  // the stale list, without lobby
  std::vector<Frame> before;
  s1.expect_type("welcome");
  auto joined = s1.expect([](const Frame& f) { return is_frame(f, "joined", "lobby"); },
                          "joined of lobby", &before);
  EXPECT_FALSE(joined.has("ref"));
  EXPECT_EQ(joined.num("last_seq"), 3u);
  // The pipelined send is acknowledged, and its message delivered (in either order: acks and
  // messages are not ordered with each other).
  bool acked = false;
  bool delivered = false;
  while (!HasFailure() && !(acked && delivered)) {
    auto f = s1.expect(
        [](const Frame& f) { return f.type() == "ack" || is_frame(f, "message", "lobby"); },
        "ack or message", &before);
    if (f.type() == "ack") {
      EXPECT_EQ(f.str("ref"), "early-send");
      EXPECT_EQ(f.num("seq"), 4u);
      acked = true;
    } else {
      EXPECT_EQ(f.num("seq"), 4u);
      delivered = true;
    }
  }
  // S2's message reaches the session too.
  s2.send(R"({"type":"send","ref":"s","room":"lobby","client_msg_id":"c2","body":"there"})");
  s1.expect([](const Frame& f) { return is_frame(f, "message", "lobby") && f.num("seq") == 5; },
            "message 5", &before);
  for (const auto& f : before) EXPECT_NE(f.type(), "error") << f.payload;
  EXPECT_EQ(count_of(s1.drain(), "joined", "lobby"), 0u);
}

// The other order: the join committed before the list was read, but its event still arrives
// while the list is read. The room is in the list; the event must not add it a second time.
TEST_F(AuthRace, JoinAlreadyInTheRoomListIsNotRepeated) {
  Client& s2 = live("alice");
  Client& s3 = live("alice");

  store_->arm("alice", GatedStore::Mode::read_later);
  Client& s1 = connect(token_for("alice"));
  store_->wait_captured();  // registered for alice's events; the list is not read yet

  s2.send(R"({"type":"join","ref":"j","room":"lobby"})");
  s2.expect([](const Frame& f) { return f.type() == "joined" && f.str("ref") == "j"; }, "joined");
  s3.expect([](const Frame& f) { return is_frame(f, "joined", "lobby"); }, "joined");

  store_->release();  // the list is read now, with lobby
  s1.expect_type("welcome");
  s1.expect_type("synced");
  s2.send(R"({"type":"send","ref":"s","room":"lobby","client_msg_id":"c2","body":"there"})");
  std::vector<Frame> frames;
  s1.expect([](const Frame& f) { return is_frame(f, "message", "lobby"); }, "message", &frames);
  auto rest = s1.drain();
  frames.insert(frames.end(), rest.begin(), rest.end());
  EXPECT_EQ(count_of(frames, "joined", "lobby"), 0u);
  // The message matched above came once: no other copy before or after it.
  EXPECT_EQ(count_of(frames, "message", "lobby"), 0u);
}

// A leave committed after the list was read: the list has the room, the event removes it.
TEST_F(AuthRace, LeaveCommittedAfterTheRoomListWasReadReachesTheSession) {
  join_store("lobby", "alice");
  Client& s2 = live("alice");
  Client& s3 = live("alice");

  store_->arm("alice", GatedStore::Mode::read_now);
  Client& s1 = connect(token_for("alice"));
  store_->wait_captured();  // the list is read: alice is in lobby

  s2.send(R"({"type":"leave","ref":"l","room":"lobby"})");
  s2.expect([](const Frame& f) { return f.type() == "left" && f.str("ref") == "l"; }, "left");
  s3.expect([](const Frame& f) { return is_frame(f, "left", "lobby"); }, "left");

  store_->release();  // the stale list, with lobby
  s1.expect_type("welcome");
  auto left = s1.expect([](const Frame& f) { return is_frame(f, "left", "lobby"); }, "left");
  EXPECT_FALSE(left.has("ref"));
  // No longer a member here either: history is refused by the session, not served.
  s1.send(R"({"type":"history","ref":"h","room":"lobby"})");
  auto err = s1.expect([](const Frame& f) { return f.str("ref") == "h"; }, "history answer");
  EXPECT_EQ(err.type(), "error") << err.payload;
  EXPECT_EQ(err.str("code"), "forbidden") << err.payload;
}

// A leave committed before the list was read, its event arriving while it is read: nothing to
// remove, and no `left` for a room the session never had.
TEST_F(AuthRace, LeaveAlreadyInTheRoomListIsNotRepeated) {
  join_store("lobby", "alice");
  Client& s2 = live("alice");
  Client& s3 = live("alice");

  store_->arm("alice", GatedStore::Mode::read_later);
  Client& s1 = connect(token_for("alice"));
  store_->wait_captured();

  s2.send(R"({"type":"leave","ref":"l","room":"lobby"})");
  s2.expect([](const Frame& f) { return f.type() == "left" && f.str("ref") == "l"; }, "left");
  s3.expect([](const Frame& f) { return is_frame(f, "left", "lobby"); }, "left");

  store_->release();  // read now, without lobby
  std::vector<Frame> frames;
  s1.expect_type("welcome", &frames);
  auto rest = s1.drain();
  frames.insert(frames.end(), rest.begin(), rest.end());
  EXPECT_EQ(count_of(frames, "left", "lobby"), 0u);
}

// A logout of the session's token after the token was checked: the session is refused as a
// dead token is, not welcomed.
TEST_F(AuthRace, LogoutDuringTheRoomListReadRefusesTheSession) {
  Client& s3 = live("alice");
  const std::string token = token_for("alice");
  const std::string hash = Node::hash_token(token);

  store_->arm("alice", GatedStore::Mode::read_now);
  Client& s1 = connect(token, "a1");
  store_->wait_captured();

  // What POST /api/v1/logout does (api.cpp), then an event S3 shows, as a barrier.
  ASSERT_TRUE(wait_for<store::TokenInfo>([&](auto cb) { sqlite_->delete_token(hash, cb); }));
  node_->forget_token(hash);
  node_->publish_user_event({UserEvent::Kind::logout, "alice", {}, 0, {}, hash, {}});
  node_->publish_user_event({UserEvent::Kind::read, "alice", "lobby", 2, {}, {}, "barrier"});
  s3.expect_type("read");

  store_->release();
  std::vector<Frame> frames;
  auto err = s1.expect_type("error", &frames);
  EXPECT_EQ(err.str("code"), "unauthorized") << err.payload;
  EXPECT_EQ(err.str("ref"), "a1");
  auto close =
      s1.expect([](const Frame& f) { return f.opcode == ws::Opcode::close; }, "close", &frames);
  EXPECT_EQ(close.close_code(), ws::close_code::policy_violation);
  for (const auto& f : frames) EXPECT_NE(f.type(), "welcome");
  // Another token's logout does not touch the user's other sessions.
  s3.drain();
}

// The account deleted while the list is read: refused too (the other sessions are closed by
// the same event, which is the barrier here).
TEST_F(AuthRace, DeletionDuringTheRoomListReadRefusesTheSession) {
  Client& s3 = live("alice");

  store_->arm("alice", GatedStore::Mode::read_now);
  Client& s1 = connect(token_for("alice"), "a1");
  store_->wait_captured();

  ASSERT_TRUE(wait_for<Ok>([&](auto cb) { sqlite_->delete_user("alice", cb); }));
  node_->forget_user_tokens("alice");
  node_->publish_user_event({UserEvent::Kind::deleted, "alice", {}, 0, {}, {}, {}});
  auto gone = s3.expect([](const Frame& f) { return f.opcode == ws::Opcode::close; }, "close");
  EXPECT_EQ(gone.close_code(), ws::close_code::policy_violation);

  store_->release();
  std::vector<Frame> frames;
  auto err = s1.expect_type("error", &frames);
  EXPECT_EQ(err.str("code"), "unauthorized") << err.payload;
  s1.expect([](const Frame& f) { return f.opcode == ws::Opcode::close; }, "close", &frames);
  for (const auto& f : frames) EXPECT_NE(f.type(), "welcome");
}

// More events than the session keeps arrive while the list is read: they are dropped and the
// list is read again, and that read shows the join whose event was dropped.
TEST_F(AuthRace, TooManyEventsDuringTheRoomListReadReadTheListAgain) {
  Client& s2 = live("alice");
  Client& s3 = live("alice");

  store_->arm("alice", GatedStore::Mode::read_now);
  Client& s1 = connect(token_for("alice"));
  store_->wait_captured();  // stale: no lobby

  s2.send(R"({"type":"join","ref":"j","room":"lobby"})");
  s3.expect([](const Frame& f) { return is_frame(f, "joined", "lobby"); }, "joined");
  // Past the session's limit (1024 in ws_session.cpp): the join's event is among the dropped.
  constexpr int kFlood = 1500;
  for (int i = 1; i <= kFlood; ++i) {
    node_->publish_user_event(
        {UserEvent::Kind::read, "alice", "lobby", static_cast<std::uint64_t>(i), {}, {}, "flood"});
  }
  s3.expect([](const Frame& f) { return f.type() == "read" && f.num("seq") == kFlood; },
            "the last read", nullptr, 20s);

  store_->release();  // the first, stale answer: superseded by the second read
  std::vector<Frame> frames;
  s1.expect_type("welcome", &frames);
  auto rest = s1.drain();
  frames.insert(frames.end(), rest.begin(), rest.end());
  EXPECT_EQ(count_of(frames, "joined", "lobby"), 0u);  // the room came with the new list
  EXPECT_LT(count_of(frames, "read", "lobby"), static_cast<std::size_t>(kFlood));
  s1.send(R"({"type":"history","ref":"h","room":"lobby"})");
  auto page = s1.expect([](const Frame& f) { return f.str("ref") == "h"; }, "history answer");
  EXPECT_EQ(page.type(), "history") << page.payload;
}

}  // namespace
}  // namespace parley::transport
