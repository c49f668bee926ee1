// Fuzz target: the store's resume and history paths with arbitrary cursors, against a real
// SqliteStore in a temporary file, checked against a model of what was appended.
//
// Each input is a sequence of operations, each with cursors drawn from the input (small values,
// values around a room's last seq, 2^63 - 1 and 2^64 - 1 and their neighbours, or any 64 bits):
//   read_range(room, after, up_to, limit)   the resume path (WsSession::fetch_gap)
//   history(room, before, limit)            the store's history page
//   load_history(node, room, before, limit) the server's history path: recent-message cache
//                                           first, then the store (WebSocket and HTTP history)
//   RecentCache::since / range              the cache's own answers, when it has them
//   set_read(room, user, seq)               read markers: forward only, clamped to last_seq
//   append(room, user, client_msg_id, body) any bytes as body; duplicates give the original
//   list_rooms(user)                        last_seq and read_seq as the model has them
// Rooms include an unknown one (not_found everywhere) and one of which a user is not a member
// (forbidden for append and set_read). Every answer must equal the model's exactly, message
// bytes included (bodies with NUL bytes and invalid UTF-8 must round-trip).

#include <boost/asio/post.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "bus/inproc/inproc_bus.hpp"
#include "fuzz_check.hpp"
#include "metrics/metrics.hpp"
#include "protocol/messages.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "transport/history.hpp"
#include "transport/node.hpp"

using namespace parley;
using store::Callback;
using store::StoredMessage;

namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kI64Max =
    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
constexpr std::size_t kMaxMessagesPerRoom = 3000;  // appends stop there: the DB stays small
const char* const kRooms[] = {"empty", "small", "big", "nope"};  // "nope" does not exist
const char* const kUsers[] = {"ann", "bob"};                     // bob is a member of "small" only

template <class T>
Result<T> wait(const std::function<void(Callback<T>)>& call) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto f = p->get_future();
  call([p](Result<T> r) { p->set_value(std::move(r)); });
  return f.get();
}

struct Model {
  std::map<std::string, std::vector<StoredMessage>> rooms;            // index i holds seq i + 1
  std::map<std::pair<std::string, std::string>, std::uint64_t> read;  // (room, user) -> marker
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> ids;  // -> seq
  bool member(const std::string& room, const std::string& user) const {
    return rooms.count(room) && (user == "ann" || room == "small");
  }
};

struct World {
  std::filesystem::path dir;
  metrics::Registry registry;
  std::unique_ptr<store::SqliteStore> store;
  bus::InprocBus bus;
  std::unique_ptr<transport::Node> node;
  Model model;
};

World* g_world = nullptr;

std::string show(const StoredMessage& m) {
  return m.room + "#" + std::to_string(m.seq) + " from " + m.from + " id " + m.client_msg_id +
         " body(" + std::to_string(m.body.size()) + ")";
}

bool same(const StoredMessage& a, const StoredMessage& b) {
  return a.room == b.room && a.seq == b.seq && a.from == b.from && a.body == b.body &&
         a.ts_ms == b.ts_ms && a.client_msg_id == b.client_msg_id;
}

std::string frame_of(const StoredMessage& m) {
  return protocol::encode_message({m.room, m.seq, m.from, m.body, m.ts_ms, m.client_msg_id});
}

void cache_put(World& w, const StoredMessage& m) {
  w.node->cache().put(m.room, {m.seq, m.from, m.body, m.ts_ms, m.client_msg_id,
                               std::make_shared<const std::string>(frame_of(m))});
}

void append_checked(World& w, const std::string& room, const std::string& user,
                    const std::string& id, const std::string& body) {
  auto r = wait<store::AppendResult>([&](Callback<store::AppendResult> cb) {
    w.store->append({room, user, id, body}, std::move(cb));
  });
  Model& m = w.model;
  auto key = std::make_tuple(room, user, id);
  if (auto it = m.ids.find(key); it != m.ids.end()) {
    FUZZ_CHECK(r.has_value() && r->duplicate, "a repeated client_msg_id was not a duplicate");
    const StoredMessage& orig = m.rooms[room][it->second - 1];
    FUZZ_CHECK(same(r->message, orig),
               "a duplicate did not return the original: " + show(r->message));
    return;
  }
  if (!m.rooms.count(room)) {
    FUZZ_CHECK(!r && r.error() == store::StoreErrc::not_found, "append to an unknown room");
    return;
  }
  if (!m.member(room, user)) {
    FUZZ_CHECK(!r && r.error() == store::StoreErrc::forbidden, "append by a non-member");
    return;
  }
  FUZZ_CHECK(r.has_value(), "append failed: " + r.error().message());
  auto& msgs = m.rooms[room];
  FUZZ_CHECK(!r->duplicate && r->message.seq == msgs.size() + 1,
             "append got seq " + std::to_string(r->message.seq) + ", expected " +
                 std::to_string(msgs.size() + 1));
  FUZZ_CHECK(r->message.body == body && r->message.from == user && r->message.client_msg_id == id,
             "append returned other content");
  msgs.push_back(r->message);
  m.ids[key] = r->message.seq;
  cache_put(w, r->message);
}

void shutdown_world() {
  if (!g_world) return;
  World* w = g_world;
  g_world = nullptr;
  w->node.reset();
  w->store.reset();
  std::error_code ec;
  std::filesystem::remove_all(w->dir, ec);
  delete w;
}

World& world() {
  static World* w = [] {
    spdlog::set_level(spdlog::level::err);
    auto* w = new World;
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/parley-fuzz-store-XXXXXX";
    FUZZ_CHECK(::mkdtemp(templ.data()) != nullptr, "mkdtemp");
    w->dir = templ;
    store::SqliteOptions so;
    so.path = (w->dir / "store.db").string();
    so.reader_threads = 1;
    so.synchronous = store::SqliteSync::normal;
    w->store = std::make_unique<store::SqliteStore>(so, w->registry);
    transport::Options o;
    o.threads = 1;
    o.hash_threads = 1;
    o.cache_per_room = 64;  // smaller than "big": history and resume go both ways
    o.cache_rooms = 16;
    w->node = std::make_unique<transport::Node>(o, *w->store, w->bus, w->registry);
    for (const char* u : kUsers) {
      auto r = wait<Ok>([&](Callback<Ok> cb) { w->store->create_user(u, "x", std::move(cb)); });
      FUZZ_CHECK(r.has_value(), "create_user");
    }
    for (int i = 0; i < 3; ++i) {
      auto r = wait<Ok>([&](Callback<Ok> cb) {
        w->store->create_room(kRooms[i], store::RoomKind::public_room, "ann", std::move(cb));
      });
      FUZZ_CHECK(r.has_value(), "create_room");
      w->model.rooms[kRooms[i]];
    }
    auto j = wait<store::JoinResult>([&](Callback<store::JoinResult> cb) {
      w->store->join_room("small", "bob", std::move(cb));
    });
    FUZZ_CHECK(j.has_value(), "join_room");
    for (int i = 1; i <= 5; ++i) {
      append_checked(*w, "small", i % 2 ? "ann" : "bob", "s" + std::to_string(i),
                     "small " + std::to_string(i));
    }
    for (int i = 1; i <= 300; ++i) {
      append_checked(*w, "big", "ann", "b" + std::to_string(i),
                     std::string(i % 7 == 0 ? 1 : 20, 'b') + std::to_string(i));
    }
    g_world = w;
    std::atexit(shutdown_world);
    return w;
  }();
  return *w;
}

class Reader {
 public:
  Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = (v << 8) | byte();
    return v;
  }
  std::string bytes(std::size_t max) {
    std::size_t len = std::min<std::size_t>(byte(), max);
    len = std::min(len, n_ - std::min(i_, n_));
    std::string s(reinterpret_cast<const char*>(d_ + i_), len);
    i_ += len;
    return s;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

std::uint64_t cursor(Reader& r, std::uint64_t last) {
  const std::uint8_t sel = r.byte();
  const std::int64_t delta = static_cast<std::int8_t>(r.byte()) / 8;  // -16..15
  switch (sel % 8) {
    case 0:
    case 1:
      return sel / 8;  // small
    case 2:
    case 3:
      return delta < 0 && static_cast<std::uint64_t>(-delta) > last ? 0 : last + delta;
    case 4:
      return kMax - static_cast<std::uint8_t>(delta + 16);  // near 2^64 - 1
    case 5:
      return kI64Max + delta;  // around 2^63 - 1
    case 6:
      return (last / 2) + delta;
    default:
      return r.u64();
  }
}

std::uint32_t limit(Reader& r) {
  const std::uint8_t sel = r.byte();
  switch (sel % 4) {
    case 0:
      return sel / 4;  // 0..63
    case 1:
      return 200;
    case 2:
      return 1 + sel;
    default:
      return static_cast<std::uint32_t>(r.u64());
  }
}

// The model's messages with after < seq <= up_to, at most limit, ascending.
std::vector<StoredMessage> model_range(const std::vector<StoredMessage>& msgs, std::uint64_t after,
                                       std::uint64_t up_to, std::uint64_t lim) {
  std::vector<StoredMessage> out;
  for (const auto& m : msgs) {
    if (out.size() >= lim) break;
    if (m.seq > after && m.seq <= up_to) out.push_back(m);
  }
  return out;
}

void expect_messages(const std::vector<StoredMessage>& got, const std::vector<StoredMessage>& want,
                     const std::string& what) {
  FUZZ_CHECK(got.size() == want.size(), what + ": " + std::to_string(got.size()) +
                                            " messages, expected " + std::to_string(want.size()));
  for (std::size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(same(got[i], want[i]),
               what + ": got " + show(got[i]) + ", expected " + show(want[i]));
  }
}

std::string args(const std::string& room, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return room + " " + std::to_string(a) + " " + std::to_string(b) + " " + std::to_string(c);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  world();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  Model& m = w.model;
  Reader r(data, size);
  for (int ops = 0; ops < 64 && !r.empty(); ++ops) {
    const std::uint8_t op = r.byte();
    const std::string room = kRooms[(op >> 4) % 4];
    const std::string user = kUsers[(op >> 6) & 1];
    const bool exists = m.rooms.count(room) != 0;
    static const std::vector<StoredMessage> kNone;
    const std::vector<StoredMessage>& msgs = exists ? m.rooms.at(room) : kNone;
    const std::uint64_t last = msgs.size();
    switch (op % 8) {
      case 0: {  // read_range: the resume path
        const std::uint64_t after = cursor(r, last);
        const std::uint64_t up_to = (r.byte() & 1) ? kMax : cursor(r, last);
        const std::uint32_t lim = limit(r);
        auto got = wait<std::vector<StoredMessage>>([&](Callback<std::vector<StoredMessage>> cb) {
          w.store->read_range(room, after, up_to, lim, std::move(cb));
        });
        const std::string what = "read_range " + args(room, after, up_to, lim);
        if (!exists) {
          FUZZ_CHECK(!got && got.error() == store::StoreErrc::not_found, what);
          break;
        }
        FUZZ_CHECK(got.has_value(), what + ": " + got.error().message());
        expect_messages(*got, model_range(msgs, after, up_to, lim), what);
        break;
      }
      case 1: {  // history: the store's page
        const std::uint64_t before = cursor(r, last);
        const std::uint32_t lim = limit(r);
        auto got = wait<store::HistoryPage>([&](Callback<store::HistoryPage> cb) {
          w.store->history(room, before, lim, std::move(cb));
        });
        const std::string what = "history " + args(room, before, lim, 0);
        if (!exists) {
          FUZZ_CHECK(!got && got.error() == store::StoreErrc::not_found, what);
          break;
        }
        FUZZ_CHECK(got.has_value(), what + ": " + got.error().message());
        const std::uint64_t below = before == 0 ? 0 : std::min<std::uint64_t>(before - 1, last);
        const std::uint64_t n = std::min<std::uint64_t>(lim, below);
        expect_messages(got->messages, model_range(msgs, below - n, below, n), what);
        FUZZ_CHECK(got->has_more == (below > n), what + ": has_more is wrong");
        break;
      }
      case 2: {  // load_history: cache, then store, as the server serves history
        const std::uint64_t before = cursor(r, last);
        const std::uint32_t lim =
            static_cast<std::uint32_t>(limit(r) % 1001);  // the server caps at 200
        auto got = wait<transport::HistoryJson>([&](Callback<transport::HistoryJson> cb) {
          transport::load_history(*w.node, room, before, lim, std::move(cb));
        });
        const std::string what = "load_history " + args(room, before, lim, 0);
        if (before == 0) {
          FUZZ_CHECK(got && got->messages.empty() && !got->has_more, what);
          break;
        }
        if (!exists) {
          FUZZ_CHECK(!got && got.error() == store::StoreErrc::not_found, what);
          break;
        }
        FUZZ_CHECK(got.has_value(), what + ": " + got.error().message());
        const std::uint64_t below = std::min<std::uint64_t>(before - 1, last);
        const std::uint64_t n = std::min<std::uint64_t>(lim, below);
        const auto want = model_range(msgs, below - n, below, n);
        FUZZ_CHECK(got->messages.size() == want.size(),
                   what + ": " + std::to_string(got->messages.size()) + " messages, expected " +
                       std::to_string(want.size()));
        for (std::size_t i = 0; i < want.size(); ++i) {
          FUZZ_CHECK(
              *got->messages[i] == frame_of(want[i]),
              what + ": message " + std::to_string(i) + " is " + got->messages[i]->substr(0, 200));
        }
        FUZZ_CHECK(got->has_more == (below > n), what + ": has_more is wrong");
        break;
      }
      case 3: {  // the recent-message cache's own answers
        const std::uint64_t after = cursor(r, last);
        const std::uint64_t up_to = cursor(r, last);
        const std::uint32_t lim = limit(r) % 2000;
        if (auto hit = w.node->cache().since(room, after, lim)) {
          const std::string what = "cache.since " + args(room, after, lim, 0);
          FUZZ_CHECK(exists || hit->empty(), what + " returned messages of an unknown room");
          auto want = model_range(msgs, after, kMax, lim);
          FUZZ_CHECK(hit->size() == want.size(), what + ": " + std::to_string(hit->size()) +
                                                     " messages, expected " +
                                                     std::to_string(want.size()));
          for (std::size_t i = 0; i < want.size(); ++i) {
            FUZZ_CHECK((*hit)[i].seq == want[i].seq && *(*hit)[i].json == frame_of(want[i]), what);
          }
        }
        if (auto hit = w.node->cache().range(room, after, up_to, lim)) {
          const std::string what = "cache.range " + args(room, after, up_to, lim);
          FUZZ_CHECK(exists || hit->empty(), what + " returned messages of an unknown room");
          auto want = model_range(msgs, after, up_to, lim);
          FUZZ_CHECK(hit->size() == want.size(), what + ": " + std::to_string(hit->size()) +
                                                     " messages, expected " +
                                                     std::to_string(want.size()));
          for (std::size_t i = 0; i < want.size(); ++i) {
            FUZZ_CHECK((*hit)[i].seq == want[i].seq && *(*hit)[i].json == frame_of(want[i]), what);
          }
        }
        break;
      }
      case 4: {  // set_read
        const std::uint64_t seq = cursor(r, last);
        auto got = wait<std::uint64_t>(
            [&](Callback<std::uint64_t> cb) { w.store->set_read(room, user, seq, std::move(cb)); });
        const std::string what = "set_read " + room + " " + user + " " + std::to_string(seq);
        if (!exists) {
          FUZZ_CHECK(!got && got.error() == store::StoreErrc::not_found, what);
          break;
        }
        if (!m.member(room, user)) {
          FUZZ_CHECK(!got && got.error() == store::StoreErrc::forbidden, what);
          break;
        }
        auto& marker = m.read[{room, user}];
        marker = std::max(marker, std::min(seq, last));
        FUZZ_CHECK(got && *got == marker, what + ": got " +
                                              (got ? std::to_string(*got) : got.error().message()) +
                                              ", expected " + std::to_string(marker));
        break;
      }
      case 5: {  // append
        const std::string id = "c" + std::to_string(r.byte() % 16);
        const std::string body = r.bytes(255);
        if (exists && msgs.size() >= kMaxMessagesPerRoom) break;
        append_checked(w, room, user, id, body);
        break;
      }
      case 6: {  // list_rooms
        auto got = wait<std::vector<store::RoomSummary>>(
            [&](Callback<std::vector<store::RoomSummary>> cb) {
              w.store->list_rooms(user, std::move(cb));
            });
        FUZZ_CHECK(got.has_value(), "list_rooms");
        std::size_t expected = 0;
        for (const auto& [name, ms] : m.rooms) expected += m.member(name, user) ? 1 : 0;
        FUZZ_CHECK(got->size() == expected,
                   "list_rooms " + user + ": " + std::to_string(got->size()) + " rooms");
        for (const auto& s : *got) {
          FUZZ_CHECK(m.member(s.room, user),
                     "list_rooms lists a room of which " + user + " is not a member");
          FUZZ_CHECK(s.last_seq == m.rooms[s.room].size(), "list_rooms last_seq of " + s.room);
          FUZZ_CHECK((s.read_seq == m.read[{s.room, user}]), "list_rooms read_seq of " + s.room);
        }
        break;
      }
      default: {  // room_info
        auto got = wait<store::RoomSummary>(
            [&](Callback<store::RoomSummary> cb) { w.store->room_info(room, std::move(cb)); });
        if (!exists) {
          FUZZ_CHECK(!got && got.error() == store::StoreErrc::not_found, "room_info " + room);
        } else {
          FUZZ_CHECK(got && got->last_seq == last, "room_info " + room);
        }
        break;
      }
    }
  }
  return 0;
}
