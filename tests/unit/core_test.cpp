// Unit tests of the pure core pieces: the rate limiter (driven by a hand-held clock), presence
// counting, and the recent-message cache.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/presence.hpp"
#include "core/rate_limiter.hpp"
#include "core/recent_cache.hpp"

using parley::core::CachedMessage;
using parley::core::Presence;
using parley::core::RateLimit;
using parley::core::RateLimiter;
using parley::core::RecentCache;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// RateLimiter

namespace {

// A clock the test moves by hand; the limiter never reads the real one.
struct FakeClock {
  RateLimiter::Clock::time_point now{std::chrono::hours(1000)};
  void advance(RateLimiter::Clock::duration d) { now += d; }
};

}  // namespace

TEST(RateLimiter, BurstThenRejectWithRetryAfter) {
  RateLimiter rl(RateLimit{20, 40});
  FakeClock clk;
  for (int i = 0; i < 40; ++i) EXPECT_EQ(rl.acquire("alice", clk.now), 0u) << i;
  // Empty bucket at 20 tokens/s: the next token is 50 ms away.
  EXPECT_EQ(rl.acquire("alice", clk.now), 50u);
  EXPECT_EQ(rl.acquire("alice", clk.now), 50u);  // a rejection takes nothing
  clk.advance(20ms);
  EXPECT_EQ(rl.acquire("alice", clk.now), 30u);  // 0.4 token refilled, 0.6 to go
}

TEST(RateLimiter, RefillsAtRateUpToBurst) {
  RateLimiter rl(RateLimit{10, 5});
  FakeClock clk;
  for (int i = 0; i < 5; ++i) ASSERT_EQ(rl.acquire("k", clk.now), 0u);
  EXPECT_GT(rl.acquire("k", clk.now), 0u);
  clk.advance(100ms);  // exactly one token
  EXPECT_EQ(rl.acquire("k", clk.now), 0u);
  EXPECT_EQ(rl.acquire("k", clk.now), 100u);
  // Waiting the time it was told is enough.
  clk.advance(100ms);
  EXPECT_EQ(rl.acquire("k", clk.now), 0u);
  // A long idle period refills no more than the burst.
  clk.advance(1h);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rl.acquire("k", clk.now), 0u) << i;
  EXPECT_GT(rl.acquire("k", clk.now), 0u);
}

TEST(RateLimiter, RetryAfterRoundsUpAndIsNeverZero) {
  RateLimiter rl(RateLimit{3, 1});
  FakeClock clk;
  EXPECT_EQ(rl.acquire("k", clk.now), 0u);
  EXPECT_EQ(rl.acquire("k", clk.now), 334u);  // 333.33 ms rounds up
  clk.advance(333ms);
  const auto wait = rl.acquire("k", clk.now);
  EXPECT_EQ(wait, 1u);  // 0.33 ms left still answers at least 1
  clk.advance(1ms);
  EXPECT_EQ(rl.acquire("k", clk.now), 0u);
}

TEST(RateLimiter, KeysAreIndependent) {
  RateLimiter rl(RateLimit{1, 2});
  FakeClock clk;
  EXPECT_EQ(rl.acquire("a", clk.now), 0u);
  EXPECT_EQ(rl.acquire("a", clk.now), 0u);
  EXPECT_GT(rl.acquire("a", clk.now), 0u);
  EXPECT_EQ(rl.acquire("b", clk.now), 0u);
  EXPECT_EQ(rl.acquire("b", clk.now), 0u);
}

TEST(RateLimiter, ClockGoingBackwardsRefillsNothing) {
  RateLimiter rl(RateLimit{10, 1});
  FakeClock clk;
  EXPECT_EQ(rl.acquire("k", clk.now), 0u);
  EXPECT_EQ(rl.acquire("k", clk.now - 1s), 100u);
  EXPECT_EQ(rl.acquire("k", clk.now + 100ms), 0u);
}

TEST(RateLimiter, DegenerateLimits) {
  FakeClock clk;
  // No refill: the burst is all there is, and the wait is "not soon" but finite.
  RateLimiter none(RateLimit{0, 2});
  EXPECT_EQ(none.acquire("k", clk.now), 0u);
  EXPECT_EQ(none.acquire("k", clk.now), 0u);
  const auto wait = none.acquire("k", clk.now);
  EXPECT_GT(wait, 3'600'000u);
  EXPECT_LT(wait, 1ULL << 53);
  // A burst under one token still lets one through.
  RateLimiter tiny(RateLimit{1, 0.1});
  EXPECT_EQ(tiny.acquire("k", clk.now), 0u);
  EXPECT_EQ(tiny.acquire("k", clk.now), 1000u);
}

TEST(RateLimiter, ManyKeysStayCorrectAcrossSweeps) {
  RateLimiter rl(RateLimit{1, 1});
  FakeClock clk;
  // Enough keys to trigger the sweeps of full buckets in every shard.
  for (int i = 0; i < 40000; ++i) ASSERT_EQ(rl.acquire("u" + std::to_string(i), clk.now), 0u);
  // Keys that just spent their token are not forgotten by a sweep.
  for (int i = 0; i < 40000; i += 997) {
    EXPECT_EQ(rl.acquire("u" + std::to_string(i), clk.now), 1000u) << i;
  }
  clk.advance(10s);
  for (int i = 40000; i < 80000; ++i) {
    ASSERT_EQ(rl.acquire("u" + std::to_string(i), clk.now), 0u);
  }
  EXPECT_EQ(rl.acquire("u5", clk.now), 0u);
}

TEST(RateLimiter, ConcurrentAcquiresGrantExactlyTheBurst) {
  RateLimiter rl(RateLimit{1, 1000});
  FakeClock clk;
  std::atomic<int> granted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        if (rl.acquire("shared", clk.now) == 0) granted.fetch_add(1);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(granted.load(), 1000);
}

// ---------------------------------------------------------------------------------------------
// Presence

TEST(Presence, SingleSessionTransitions) {
  Presence p;
  EXPECT_FALSE(p.online("alice"));
  EXPECT_TRUE(p.session_opened("n1", "alice"));
  EXPECT_TRUE(p.online("alice"));
  EXPECT_TRUE(p.session_closed("n1", "alice"));
  EXPECT_FALSE(p.online("alice"));
}

TEST(Presence, MultipleSessionsOnOneNode) {
  Presence p;
  EXPECT_TRUE(p.session_opened("n1", "alice"));
  EXPECT_FALSE(p.session_opened("n1", "alice"));
  EXPECT_FALSE(p.session_opened("n1", "alice"));
  EXPECT_FALSE(p.session_closed("n1", "alice"));
  EXPECT_FALSE(p.session_closed("n1", "alice"));
  EXPECT_TRUE(p.online("alice"));
  EXPECT_TRUE(p.session_closed("n1", "alice"));
  EXPECT_FALSE(p.online("alice"));
}

TEST(Presence, UnmatchedCloseChangesNothing) {
  Presence p;
  EXPECT_FALSE(p.session_closed("n1", "alice"));
  p.session_opened("n1", "alice");
  EXPECT_FALSE(p.session_closed("n2", "alice"));
  EXPECT_TRUE(p.online("alice"));
  EXPECT_TRUE(p.session_closed("n1", "alice"));
  EXPECT_FALSE(p.session_closed("n1", "alice"));
  EXPECT_FALSE(p.online("alice"));
}

TEST(Presence, SessionsOnSeveralNodes) {
  Presence p;
  EXPECT_TRUE(p.session_opened("n1", "alice"));
  EXPECT_FALSE(p.set_remote("n2", "alice", true));  // already online
  EXPECT_FALSE(p.set_remote("n2", "alice", true));  // a re-announcement
  EXPECT_FALSE(p.session_closed("n1", "alice"));    // still online on n2
  EXPECT_TRUE(p.online("alice"));
  EXPECT_TRUE(p.set_remote("n2", "alice", false));
  EXPECT_FALSE(p.online("alice"));
  EXPECT_FALSE(p.set_remote("n2", "alice", false));  // repeated offline
}

TEST(Presence, RemoteOnlyUser) {
  Presence p;
  EXPECT_TRUE(p.set_remote("n2", "bob", true));
  EXPECT_TRUE(p.online("bob"));
  EXPECT_TRUE(p.session_opened("n1", "carol"));
  EXPECT_FALSE(p.set_remote("n3", "bob", false));  // bob was never on n3
  EXPECT_TRUE(p.online("bob"));
  EXPECT_TRUE(p.set_remote("n2", "bob", false));
}

TEST(Presence, DropNode) {
  Presence p;
  p.session_opened("n1", "alice");
  p.session_opened("n1", "alice");
  p.set_remote("n2", "bob", true);
  p.set_remote("n2", "carol", true);
  p.set_remote("n2", "dave", true);
  p.session_opened("n1", "dave");  // dave is also local
  EXPECT_EQ(p.users_on("n2"), (std::vector<std::string>{"bob", "carol", "dave"}));
  EXPECT_EQ(p.drop_node("n2"), (std::vector<std::string>{"bob", "carol"}));
  EXPECT_FALSE(p.online("bob"));
  EXPECT_FALSE(p.online("carol"));
  EXPECT_TRUE(p.online("dave"));
  EXPECT_TRUE(p.online("alice"));
  EXPECT_TRUE(p.users_on("n2").empty());
  EXPECT_TRUE(p.drop_node("n2").empty());
  EXPECT_EQ(p.users_on("n1"), (std::vector<std::string>{"alice", "dave"}));
  // A user who comes back after the drop is a fresh transition.
  EXPECT_TRUE(p.set_remote("n2", "bob", true));
}

// ---------------------------------------------------------------------------------------------
// RecentCache

namespace {

// Fields are set by name so that new members of CachedMessage keep their defaults.
CachedMessage msg(std::uint64_t seq) {
  CachedMessage m;
  m.seq = seq;
  m.from = "alice";
  m.body = "body " + std::to_string(seq);
  m.ts_ms = static_cast<std::int64_t>(seq);
  m.client_msg_id = "c" + std::to_string(seq);
  return m;
}

std::vector<std::uint64_t> seqs(const std::vector<CachedMessage>& v) {
  std::vector<std::uint64_t> out;
  for (const auto& m : v) out.push_back(m.seq);
  return out;
}

}  // namespace

TEST(RecentCache, EmptyRoomMisses) {
  RecentCache c(10, 100);
  EXPECT_EQ(c.newest("r"), 0u);
  EXPECT_FALSE(c.range("r", 0, 1, 10).has_value());
  // An empty interval is a hit with nothing in it.
  auto empty = c.range("r", 5, 5, 10);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(RecentCache, RangeHitsAndMisses) {
  RecentCache c(10, 100);
  for (std::uint64_t s = 1; s <= 5; ++s) c.put("r", msg(s));
  EXPECT_EQ(c.newest("r"), 5u);

  auto all = c.range("r", 0, 5, 100);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(seqs(*all), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ((*all)[2].body, "body 3");
  EXPECT_EQ((*all)[2].client_msg_id, "c3");

  auto mid = c.range("r", 2, 4, 100);
  ASSERT_TRUE(mid.has_value());
  EXPECT_EQ(seqs(*mid), (std::vector<std::uint64_t>{3, 4}));

  // `limit` keeps the first messages after `after`, so forward paging continues from there.
  auto limited = c.range("r", 1, 5, 2);
  ASSERT_TRUE(limited.has_value());
  EXPECT_EQ(seqs(*limited), (std::vector<std::uint64_t>{2, 3}));

  auto none = c.range("r", 0, 5, 0);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());

  EXPECT_FALSE(c.range("r", 0, 6, 100).has_value());  // beyond newest
  EXPECT_FALSE(c.range("other", 0, 1, 10).has_value());
}

TEST(RecentCache, PerRoomCapDropsOldest) {
  RecentCache c(3, 100);
  for (std::uint64_t s = 1; s <= 10; ++s) c.put("r", msg(s));
  EXPECT_EQ(c.newest("r"), 10u);
  auto hit = c.range("r", 7, 10, 100);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(seqs(*hit), (std::vector<std::uint64_t>{8, 9, 10}));
  EXPECT_FALSE(c.range("r", 6, 10, 100).has_value());  // 7 was dropped
}

TEST(RecentCache, PutKeepsTheRunContiguous) {
  RecentCache c(10, 100);
  c.put("r", msg(1));
  c.put("r", msg(2));
  c.put("r", msg(2));  // repeated: ignored
  c.put("r", msg(1));  // older: ignored
  c.put("r", msg(0));  // no such seq: ignored
  auto a = c.range("r", 0, 2, 10);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(seqs(*a), (std::vector<std::uint64_t>{1, 2}));

  // A jump restarts the run at the new seq: 3 and 4 were never seen, so 1..5 must miss.
  c.put("r", msg(5));
  EXPECT_EQ(c.newest("r"), 5u);
  EXPECT_FALSE(c.range("r", 0, 5, 10).has_value());
  EXPECT_FALSE(c.range("r", 3, 5, 10).has_value());
  auto b = c.range("r", 4, 5, 10);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(seqs(*b), (std::vector<std::uint64_t>{5}));
  c.put("r", msg(6));
  auto d = c.range("r", 4, 6, 10);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(seqs(*d), (std::vector<std::uint64_t>{5, 6}));

  // A run may start anywhere, not only at 1.
  c.put("late", msg(100));
  c.put("late", msg(101));
  auto e = c.range("late", 99, 101, 10);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(seqs(*e), (std::vector<std::uint64_t>{100, 101}));
  EXPECT_FALSE(c.range("late", 98, 101, 10).has_value());
}

TEST(RecentCache, ClearRoom) {
  RecentCache c(10, 100);
  c.put("r", msg(1));
  c.put("s", msg(1));
  c.clear_room("r");
  EXPECT_EQ(c.newest("r"), 0u);
  EXPECT_FALSE(c.range("r", 0, 1, 10).has_value());
  EXPECT_EQ(c.newest("s"), 1u);
  // After a clear the room starts a new run wherever the next put lands.
  c.put("r", msg(7));
  EXPECT_EQ(c.newest("r"), 7u);
}

TEST(RecentCache, SinceServesEverythingNewerThanACursor) {
  RecentCache c(5, 100);
  EXPECT_FALSE(c.since("r", 0, 10).has_value());
  for (std::uint64_t s = 1; s <= 8; ++s) c.put("r", msg(s));  // holds 4..8
  auto tail = c.since("r", 5, 10);
  ASSERT_TRUE(tail.has_value());
  EXPECT_EQ(seqs(*tail), (std::vector<std::uint64_t>{6, 7, 8}));
  auto first_two = c.since("r", 3, 2);
  ASSERT_TRUE(first_two.has_value());
  EXPECT_EQ(seqs(*first_two), (std::vector<std::uint64_t>{4, 5}));
  // Up to date, or ahead of the cache: a hit with nothing in it.
  auto none = c.since("r", 8, 10);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  // The run does not reach back to the cursor: a miss.
  EXPECT_FALSE(c.since("r", 2, 10).has_value());
}

TEST(RecentCache, CachedJsonIsShared) {
  RecentCache c(5, 100);
  auto m = msg(1);
  m.json = std::make_shared<const std::string>("{\"type\":\"message\"}");
  const auto* raw = m.json.get();
  c.put("r", std::move(m));
  auto hit = c.range("r", 0, 1, 10);
  ASSERT_TRUE(hit.has_value());
  ASSERT_EQ(hit->size(), 1u);
  EXPECT_EQ((*hit)[0].json.get(), raw);  // the copy shares the encoded frame
}

TEST(RecentCache, ClearAll) {
  RecentCache c(5, 100);
  for (int i = 0; i < 50; ++i) c.put("room" + std::to_string(i), msg(1));
  c.clear_all();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(c.newest("room" + std::to_string(i)), 0u);
}

TEST(RecentCache, EvictsRoomsOverTheBudget) {
  // 16 rooms in all: one per shard.
  RecentCache c(4, 16);
  constexpr int rooms = 200;
  for (int i = 0; i < rooms; ++i) c.put("room" + std::to_string(i), msg(1));
  int cached = 0;
  for (int i = 0; i < rooms; ++i) {
    if (c.newest("room" + std::to_string(i)) != 0) ++cached;
  }
  EXPECT_GE(cached, 1);
  EXPECT_LE(cached, 16);
  // The room just written is never the one evicted.
  c.put("fresh", msg(1));
  EXPECT_EQ(c.newest("fresh"), 1u);
  // Writing to a cached room does not evict anything.
  c.put("fresh", msg(2));
  EXPECT_EQ(c.newest("fresh"), 2u);
}

TEST(RecentCache, ZeroPerRoomCachesNothing) {
  RecentCache c(0, 16);
  c.put("r", msg(1));
  EXPECT_EQ(c.newest("r"), 0u);
  EXPECT_FALSE(c.range("r", 0, 1, 10).has_value());
}

TEST(RecentCache, ConcurrentWritersAndReaders) {
  RecentCache c(64, 64);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&c, t] {
      const std::string room = "room" + std::to_string(t);
      for (std::uint64_t s = 1; s <= 5000; ++s) {
        c.put(room, msg(s));
        const auto newest = c.newest(room);
        if (auto r = c.range(room, newest > 10 ? newest - 10 : 0, newest, 100)) {
          // Whatever a reader gets is contiguous and ends at newest.
          for (std::size_t i = 1; i < r->size(); ++i) {
            ASSERT_EQ((*r)[i].seq, (*r)[i - 1].seq + 1);
          }
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(c.newest("room" + std::to_string(t)), 5000u);
}
