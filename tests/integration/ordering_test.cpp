// Ordering and delivery guarantees: one gapless seq order seen identically by concurrent
// senders, resume after a long absence, resume while the room keeps moving, and
// deduplication of retried sends.

#include <atomic>
#include <set>
#include <thread>

#include "fixture.hpp"

namespace parley::test {
namespace {

class Ordering : public IntegrationTest {};

// Sends `count` messages from `s` in windows of `window`, reading every reply (and dropping the
// session's own live messages) so that the sender is never a slow consumer. Returns the acks.
std::vector<json> send_many(Session& s, const std::string& room, int count,
                            const std::string& prefix, int window = 50) {
  std::vector<json> acks;
  int sent = 0;
  while (sent < count) {
    int n = std::min(window, count - sent);
    for (int i = 0; i < n; ++i, ++sent) {
      auto id = prefix + "-" + std::to_string(sent);
      s.send({{"type", "send"}, {"room", room}, {"client_msg_id", id}, {"body", "body of " + id}});
    }
    int got = 0;
    while (got < n) {
      auto ev = s.ws().receive(15s);
      if (!ev.is_text()) throw std::runtime_error("sender's socket: " + ev.describe());
      auto j = ev.json();
      auto type = j.value("type", "");
      if (type == "ack") {
        acks.push_back(j);
        ++got;
      } else if (type == "error") {
        throw std::runtime_error("send failed: " + j.dump());
      }
    }
  }
  return acks;
}

TEST_F(Ordering, ConcurrentSendersAllSeeOneIdenticalGaplessOrder) {
  constexpr int clients = 8;
  constexpr int per_client = 50;
  constexpr int total = clients * per_client;
  auto room = unique_name("conc");
  std::vector<User> users;
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < clients; ++i) {
    users.push_back(register_user(server(), "c" + std::to_string(i)));
    sessions.push_back(std::make_unique<Session>(server(), users.back()));
    if (i == 0) {
      sessions[0]->create(room);
    } else {
      sessions[i]->join(room);
    }
  }
  // Each client sends its messages all at once, then reads until it has seen the whole room.
  struct Seen {
    std::vector<json> messages;
    std::vector<json> acks;
    std::string error;
  };
  std::vector<Seen> seen(clients);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        auto& s = *sessions[c];
        ready++;
        while (ready.load() < clients) std::this_thread::yield();
        for (int i = 0; i < per_client; ++i) {
          auto id = users[c].name + "-" + std::to_string(i);
          s.send({{"type", "send"}, {"room", room}, {"client_msg_id", id}, {"body", id}});
        }
        while (static_cast<int>(seen[c].messages.size()) < total ||
               static_cast<int>(seen[c].acks.size()) < per_client) {
          auto ev = s.ws().receive(30s);
          if (!ev.is_text()) throw std::runtime_error(ev.describe());
          auto j = ev.json();
          if (is_message(j, room)) {
            seen[c].messages.push_back(j);
          } else if (j.value("type", "") == "ack") {
            seen[c].acks.push_back(j);
          } else {
            throw std::runtime_error("unexpected frame " + j.dump());
          }
        }
      } catch (const std::exception& e) {
        seen[c].error = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < clients; ++c) {
    ASSERT_TRUE(seen[c].error.empty()) << "client " << c << ": " << seen[c].error << " after "
                                       << seen[c].messages.size() << " messages";
  }
  // Every client saw 1..total in order, and the same message at each seq.
  const auto& reference = seen[0].messages;
  for (int c = 0; c < clients; ++c) {
    ASSERT_EQ(seen[c].messages.size(), static_cast<std::size_t>(total));
    for (int i = 0; i < total; ++i) {
      const auto& m = seen[c].messages[i];
      ASSERT_EQ(m.value("seq", 0), i + 1) << "client " << c << " position " << i;
      ASSERT_EQ(m, reference[i]) << "client " << c << " disagrees at seq " << i + 1;
    }
  }
  // The acks name exactly those seqs, each once, matching the sender and id.
  std::set<std::uint64_t> acked;
  for (int c = 0; c < clients; ++c) {
    for (const auto& a : seen[c].acks) {
      auto seq = a.value("seq", 0ULL);
      EXPECT_TRUE(acked.insert(seq).second) << "seq " << seq << " acked twice";
      ASSERT_GE(seq, 1u);
      ASSERT_LE(seq, static_cast<std::uint64_t>(total));
      const auto& m = reference[seq - 1];
      EXPECT_EQ(m.value("from", ""), users[c].name);
      EXPECT_EQ(m.value("client_msg_id", ""), a.value("client_msg_id", "?"));
      EXPECT_EQ(m.value("ts", 0LL), a.value("ts", -1LL));
    }
  }
  EXPECT_EQ(acked.size(), static_cast<std::size_t>(total));
  // Each sender's messages keep their sending order (one socket, one order).
  for (int c = 0; c < clients; ++c) {
    int next = 0;
    for (const auto& m : reference) {
      if (m.value("from", "") != users[c].name) continue;
      EXPECT_EQ(m.value("body", ""), users[c].name + "-" + std::to_string(next++));
    }
  }
  // And the store agrees.
  auto stored = all_messages_http(server(), users[0].token, room);
  ASSERT_EQ(stored.size(), static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) EXPECT_EQ(stored[i], reference[i]) << "seq " << i + 1;
}

TEST_F(Ordering, ClientAwayForAThousandMessagesResumesWithExactlyThose) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  auto room = unique_name("away");
  Session a(server(), alice);
  a.create(room);
  std::uint64_t cursor = 0;
  {
    Session b(server(), bob);
    b.join(room);
    send_many(a, room, 5, "early");
    for (int i = 0; i < 5; ++i) {
      auto m = b.wait_for([&](const json& j) { return is_message(j, room); });
      ASSERT_EQ(m.value("seq", 0ULL), cursor + 1);
      cursor = m.value("seq", 0ULL);
    }
    b.ws().drop();
  }
  auto acks = send_many(a, room, 1000, "away", 100);
  ASSERT_EQ(acks.size(), 1000u);

  Session b(server(), bob, {{room, cursor}});
  const auto& replayed = b.replayed();
  ASSERT_EQ(replayed.size(), 1000u) << "exactly the missed messages, then synced";
  for (std::size_t i = 0; i < replayed.size(); ++i) {
    const auto& m = replayed[i];
    ASSERT_TRUE(is_message(m, room)) << m.dump();
    ASSERT_EQ(m.value("seq", 0ULL), cursor + 1 + i);
    ASSERT_EQ(m.value("client_msg_id", ""), "away-" + std::to_string(i));
    ASSERT_EQ(m.value("body", ""), "body of away-" + std::to_string(i));
    ASSERT_EQ(m.value("from", ""), alice.name);
  }
  // Live delivery continues right after the replay, without a duplicate.
  a.send_message(room, "live again");
  auto m = b.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_EQ(m.value("seq", 0ULL), cursor + 1001);
  EXPECT_TRUE(messages_of(b.barrier(), room).empty());
}

TEST_F(Ordering, ResumeWithCursorsForSeveralRoomsReplaysEachFromItsCursor) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  Session a(server(), alice);
  Session b(server(), bob);
  const std::vector<std::string> rooms = {unique_name("ra"), unique_name("rb"), unique_name("rc")};
  for (const auto& r : rooms) {
    a.create(r);
    b.join(r);
    send_many(a, r, 10, r);
  }
  b.ws().drop();
  // Cursors 0, 7 and 10 (= last_seq: nothing to replay for that room).
  Session again(server(), bob, {{rooms[0], 0}, {rooms[1], 7}, {rooms[2], 10}});
  auto ra = messages_of(again.replayed(), rooms[0]);
  auto rb = messages_of(again.replayed(), rooms[1]);
  auto rc = messages_of(again.replayed(), rooms[2]);
  EXPECT_EQ(again.replayed().size(), ra.size() + rb.size() + rc.size())
      << "only messages are replayed";
  ASSERT_EQ(ra.size(), 10u);
  ASSERT_EQ(rb.size(), 3u) << "replayed before synced: " << again.replayed().size()
                           << " frames; after synced: " << json(again.barrier()).dump();
  EXPECT_TRUE(rc.empty()) << json(rc).dump();
  for (std::size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(ra[i].value("seq", 0ULL), i + 1);
  for (std::size_t i = 0; i < rb.size(); ++i) EXPECT_EQ(rb[i].value("seq", 0ULL), i + 8);
  // Live delivery of every room continues from there, including the one not replayed.
  for (const auto& r : rooms) a.send_message(r, "live");
  for (const auto& r : rooms) {
    auto m = again.wait_for([&](const json& j) { return is_message(j, r); });
    EXPECT_EQ(m.value("seq", 0), 11) << r;
  }
}

TEST_F(Ordering, ResumeLargerThanTheWriteQueueLimitIsPacedNotClosed) {
  // A client that reads as fast as it can must be able to resume from any absence, even when
  // what it missed is more than the per-client write-queue limit (here 256 KiB; 4 MiB by
  // default): the replay has to follow the client's reading instead of being queued at once.
  auto& srv =
      own({"--send-rate", "1000000", "--send-burst", "1000000", "--write-queue-bytes", "262144"});
  auto alice = register_user(srv, "alice");
  auto bob = register_user(srv, "bob");
  auto room = unique_name("bigresume");
  Session a(srv, alice);
  a.create(room);
  Session(srv, bob).join(room);
  const std::string body(3500, 'z');
  constexpr int total = 200;  // 700 KB of bodies
  for (int sent = 0; sent < total;) {
    for (int i = 0; i < 8; ++i, ++sent) {
      a.send({{"type", "send"},
              {"room", room},
              {"client_msg_id", "b" + std::to_string(sent)},
              {"body", body}});
    }
    for (int acks = 0; acks < 8;) {
      auto ev = a.ws().receive(10s);
      ASSERT_TRUE(ev.is_text()) << ev.describe();
      if (ev.json().value("type", "") == "ack") ++acks;
    }
  }
  std::unique_ptr<Session> b;
  try {
    b = std::make_unique<Session>(srv, bob, std::map<std::string, std::uint64_t>{{room, 0}});
  } catch (const std::exception& e) {
    FAIL() << "resuming 200 messages (700 KB) with --write-queue-bytes 262144: " << e.what();
  }
  auto replay = messages_of(b->replayed(), room);
  ASSERT_EQ(replay.size(), static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) ASSERT_EQ(replay[i].value("seq", 0), i + 1);
}

TEST_F(Ordering, ResumingWhileOthersKeepSendingSeesNoGapAndNoDuplicate) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  auto room = unique_name("moving");
  Session a(server(), alice);
  a.create(room);
  Session(server(), bob).join(room);

  constexpr int total = 800;
  std::string sender_error;
  std::atomic<bool> sender_done{false};
  std::thread sender([&] {
    try {
      // Small windows keep the room moving during the whole test.
      send_many(a, room, total, "mv", 5);
    } catch (const std::exception& e) {
      sender_error = e.what();
    }
    sender_done = true;
  });

  // Bob keeps disconnecting and resuming from his cursor while alice sends.
  std::uint64_t cursor = 0;
  int reconnects = 0;
  std::string failure;
  while (failure.empty() && cursor < static_cast<std::uint64_t>(total)) {
    try {
      Session b(server(), bob, {{room, cursor}});
      ++reconnects;
      std::vector<json> frames = b.replayed();
      auto accept = [&](const json& m) {
        if (!is_message(m, room)) return;
        auto seq = m.value("seq", 0ULL);
        if (seq != cursor + 1) {
          failure = "after cursor " + std::to_string(cursor) + " got seq " + std::to_string(seq) +
                    " (reconnect " + std::to_string(reconnects) + ")";
          return;
        }
        cursor = seq;
      };
      for (const auto& m : frames) accept(m);
      // Read a few live messages, then drop the connection abruptly.
      for (int i = 0; i < 60 && failure.empty() && cursor < static_cast<std::uint64_t>(total);
           ++i) {
        auto ev = b.ws().receive(10s);
        if (!ev.is_text()) {
          failure = "bob's socket: " + ev.describe();
          break;
        }
        accept(ev.json());
      }
      b.ws().drop();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  sender.join();
  ASSERT_TRUE(sender_error.empty()) << sender_error;
  ASSERT_TRUE(failure.empty()) << failure;
  EXPECT_EQ(cursor, static_cast<std::uint64_t>(total));
  EXPECT_GE(reconnects, 5) << "the test should resume several times while messages flow";
}

TEST_F(Ordering, AnAckedMessageIsInTheNextHistoryRead) {
  // The ack means committed, so a history read sent after the ack (HTTP or WebSocket, newest
  // page) must include the message; a cache that lags the store would break read-your-writes.
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  auto room = unique_name("ryw");
  auto busy = unique_name("busy");
  Session a(server(), alice);
  a.create(room);
  // Traffic in another room keeps the server's threads busy, which widens any window between
  // the ack and the moment reads see the message.
  Session b(server(), bob);
  b.create(busy);
  std::atomic<bool> stop{false};
  std::thread noise([&] {
    try {
      for (int n = 0; !stop; ++n) send_many(b, busy, 20, "noise" + std::to_string(n), 20);
    } catch (const std::exception&) {
      // The noise only adds load; its failures are not this test's subject.
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Joiner() {
      stop = true;
      t.join();
    }
  } joiner{stop, noise};
  auto http = server().http();
  for (int i = 1; i <= 300; ++i) {
    auto ack = a.send_message(room, "ryw " + std::to_string(i));
    ASSERT_EQ(ack.value("seq", 0), i);
    auto res = http.get("/api/v1/rooms/" + room + "/messages?limit=1", alice.token);
    ASSERT_EQ(res.status, 200) << res.body;
    auto page = res.json();
    ASSERT_EQ(page["messages"].size(), 1u) << "after ack of seq " << i << ": " << res.body;
    ASSERT_EQ(page["messages"][0].value("seq", 0), i)
        << "HTTP newest page right after the ack of seq " << i << ": " << res.body;
    auto h = a.request({{"type", "history"}, {"room", room}, {"limit", 1}});
    ASSERT_EQ(h.value("type", ""), "history") << h.dump();
    ASSERT_EQ(h["messages"].size(), 1u) << h.dump();
    ASSERT_EQ(h["messages"][0].value("seq", 0), i)
        << "WebSocket newest page right after the ack of seq " << i << ": " << h.dump();
  }
}

TEST_F(Ordering, RetriedClientMsgIdGetsTheOriginalAckAndCreatesNothing) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  auto room = unique_name("dedup");
  auto room2 = unique_name("dedup2");
  Session b(server(), bob);
  json first;
  {
    Session a(server(), alice);
    a.create(room);
    a.create(room2);
    b.join(room);
    first = a.send_message(room, "once", "retry-me");
    // A retry on the same socket, even with another body, gets the original ack.
    auto again = a.send_message(room, "once, retried", "retry-me");
    EXPECT_EQ(again.value("seq", 0), first.value("seq", -1));
    EXPECT_EQ(again.value("ts", 0LL), first.value("ts", -1LL));
    EXPECT_EQ(again.value("client_msg_id", ""), "retry-me");
    // The client drops its connection, as if the last ack had been lost on the way.
    a.ws().drop();
  }
  // A retry after a reconnect too.
  Session a(server(), alice);
  auto third = a.send_message(room, "once", "retry-me");
  EXPECT_EQ(third.value("seq", 0), first.value("seq", -1));
  EXPECT_EQ(third.value("ts", 0LL), first.value("ts", -1LL));
  // Two copies in flight at once (no wait between them) still make one message.
  a.send({{"type", "send"},
          {"room", room},
          {"client_msg_id", "twin"},
          {"body", "twin"},
          {"ref", "t-a"}});
  a.send({{"type", "send"},
          {"room", room},
          {"client_msg_id", "twin"},
          {"body", "twin"},
          {"ref", "t-b"}});
  auto ta = a.wait_for([](const json& j) { return j.value("ref", "") == "t-a"; });
  auto tb = a.wait_for([](const json& j) { return j.value("ref", "") == "t-b"; });
  ASSERT_EQ(ta.value("type", ""), "ack") << ta.dump();
  ASSERT_EQ(tb.value("type", ""), "ack") << tb.dump();
  EXPECT_EQ(ta.value("seq", 0), tb.value("seq", -1));
  EXPECT_EQ(ta.value("ts", 0LL), tb.value("ts", -1LL));

  auto stored = all_messages_http(server(), alice.token, room);
  ASSERT_EQ(stored.size(), 2u) << json(stored).dump();
  EXPECT_EQ(stored[0].value("body", ""), "once");
  EXPECT_EQ(stored[1].value("body", ""), "twin");
  // Bob saw each message once.
  std::vector<json> got;
  while (got.size() < 2)
    got.push_back(b.wait_for([&](const json& j) { return is_message(j, room); }));
  EXPECT_EQ(got[0].value("seq", 0), 1);
  EXPECT_EQ(got[1].value("seq", 0), 2);
  EXPECT_TRUE(messages_of(b.barrier(), room).empty()) << "a retry was delivered again";

  // The id is scoped to user and room: the same id elsewhere or from someone else is new.
  EXPECT_EQ(a.send_message(room2, "other room", "retry-me").value("seq", 0), 1);
  EXPECT_EQ(b.send_message(room, "bob's own", "retry-me").value("seq", 0), 3);
  EXPECT_EQ(all_messages_http(server(), alice.token, room).size(), 3u);
}

}  // namespace
}  // namespace parley::test
