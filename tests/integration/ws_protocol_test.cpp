// WebSocket frames of PROTOCOL.md and their replies: auth, ping, create, join, invite, leave,
// dm, send, history, typing, read, watch.

#include <algorithm>
#include <string>

#include "fixture.hpp"

namespace parley::test {
namespace {

class WsProtocol : public IntegrationTest {
 protected:
  // Two users most tests need; registered once per test (two Argon2 hashes).
  void make_users() {
    alice_ = register_user(server(), "alice");
    bob_ = register_user(server(), "bob");
  }
  User alice_;
  User bob_;
};

// ---- auth ----

TEST_F(WsProtocol, AuthAnswersWelcomeThenSynced) {
  make_users();
  auto ws = server().connect_ws();
  ws->send_json({{"type", "auth"}, {"token", alice_.token}});
  auto welcome = ws->receive(5s);
  ASSERT_TRUE(welcome.is_text()) << welcome.describe();
  auto w = welcome.json();
  EXPECT_EQ(w.value("type", ""), "welcome") << w.dump();
  EXPECT_EQ(w.value("user", ""), alice_.name);
  EXPECT_EQ(w.value("node", ""), server().node_id()) << "node is the --node-id";
  ASSERT_TRUE(w["server_time"].is_number_integer()) << w.dump();
  EXPECT_NEAR(static_cast<double>(w["server_time"].get<std::int64_t>()),
              static_cast<double>(now_ms()), 60'000.0)
      << "server_time is unix milliseconds";
  auto synced = ws->receive(5s);
  ASSERT_TRUE(synced.is_text()) << synced.describe();
  EXPECT_EQ(synced.json(), json({{"type", "synced"}}));
}

TEST_F(WsProtocol, FirstFrameOtherThanAuthIsUnauthorizedThenClose1008) {
  for (const json& first :
       {json{{"type", "ping"}},
        json{{"type", "create"}, {"room", "early"}, {"visibility", "public"}}}) {
    auto ws = server().connect_ws();
    ws->send_json(first);
    auto err = ws->receive(5s);
    ASSERT_TRUE(err.is_text()) << first.dump() << " -> " << err.describe();
    EXPECT_TRUE(is_ws_error(err.json(), "unauthorized")) << first.dump();
    auto closed = ws->receive(5s);
    EXPECT_TRUE(closed.is_closed() && closed.close_code == 1008) << closed.describe();
  }
}

TEST_F(WsProtocol, BadTokenIsUnauthorizedThenClose1008) {
  auto ws = server().connect_ws();
  ws->send_json({{"type", "auth"}, {"token", "definitely-not-a-token"}});
  auto err = ws->receive(5s);
  ASSERT_TRUE(err.is_text()) << err.describe();
  EXPECT_TRUE(is_ws_error(err.json(), "unauthorized"));
  auto closed = ws->receive(5s);
  EXPECT_TRUE(closed.is_closed() && closed.close_code == 1008) << closed.describe();
}

// ---- ping, ref ----

TEST_F(WsProtocol, PingAnswersPongAndEchoesRef) {
  make_users();
  Session a(server(), alice_);
  a.send({{"type", "ping"}, {"ref", "r-1"}});
  EXPECT_EQ(a.next(), json({{"type", "pong"}, {"ref", "r-1"}}));
  a.send({{"type", "ping"}});
  EXPECT_EQ(a.next(), json({{"type", "pong"}})) << "no ref, no ref in the reply";
  auto ref64 = repeat("r", 64);
  a.send({{"type", "ping"}, {"ref", ref64}});
  EXPECT_EQ(a.next().value("ref", ""), ref64);
  a.send({{"type", "ping"}, {"ref", repeat("r", 65)}});
  EXPECT_TRUE(is_ws_error(a.next(), "bad_request")) << "a ref over 64 characters is malformed";
}

// ---- create, join, invite, leave, dm ----

TEST_F(WsProtocol, CreateJoinsTheCreatorAndAnExistingNameConflicts) {
  make_users();
  Session a(server(), alice_);
  Session b(server(), bob_);
  auto room = unique_name("create");
  auto r = a.request({{"type", "create"}, {"room", room}, {"visibility", "public"}});
  EXPECT_EQ(r.value("type", ""), "joined") << r.dump();
  EXPECT_EQ(r.value("room", ""), room);
  EXPECT_EQ(r.value("last_seq", -1), 0);
  EXPECT_TRUE(r.contains("ref"));
  auto again = b.request({{"type", "create"}, {"room", room}, {"visibility", "private"}});
  EXPECT_TRUE(is_ws_error(again, "conflict", again.value("ref", "")));
  EXPECT_EQ(again.value("ref", ""), "t1") << "the error echoes the request's ref";
  // The conflict did not make bob a member.
  EXPECT_EQ(rooms_of(server(), bob_.token).count(room), 0u);
  EXPECT_EQ(rooms_of(server(), alice_.token).count(room), 1u);
}

TEST_F(WsProtocol, CreateRejectsInvalidRoomNamesAndVisibility) {
  make_users();
  Session a(server(), alice_);
  for (const std::string& name :
       {std::string("Upper"), std::string("has space"), std::string("dm:x:y"),
        std::string("dot.ted"), repeat("r", 65), std::string("")}) {
    auto r = a.request({{"type", "create"}, {"room", name}, {"visibility", "public"}});
    EXPECT_TRUE(is_ws_error(r, "bad_request")) << json(name).dump() << " -> " << r.dump();
  }
  auto r = a.request({{"type", "create"}, {"room", unique_name("vis")}, {"visibility", "secret"}});
  EXPECT_TRUE(is_ws_error(r, "bad_request")) << r.dump();
  auto longest = (unique_name("l") + repeat("-", 64)).substr(0, 64);
  EXPECT_EQ(a.request({{"type", "create"}, {"room", longest}, {"visibility", "public"}})
                .value("type", ""),
            "joined")
      << "64 characters is the maximum, inclusive";
}

TEST_F(WsProtocol, JoinPublicRoomGivesLastSeqThenLiveMessagesFromThere) {
  make_users();
  Session a(server(), alice_);
  Session b(server(), bob_);
  auto room = unique_name("join");
  a.create(room);
  a.send_message(room, "one");
  a.send_message(room, "two");
  auto r = b.request({{"type", "join"}, {"room", room}});
  EXPECT_EQ(r.value("type", ""), "joined") << r.dump();
  EXPECT_EQ(r.value("room", ""), room);
  EXPECT_EQ(r.value("last_seq", -1), 2);
  a.send_message(room, "three");
  auto m = b.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_EQ(m.value("seq", 0), 3) << "the first live message follows last_seq";
  EXPECT_EQ(m.value("body", ""), "three");
  EXPECT_TRUE(messages_of(b.barrier(), room).empty()) << "nothing before the join is pushed";
}

TEST_F(WsProtocol, JoinUnknownRoomIsNotFound) {
  make_users();
  Session a(server(), alice_);
  auto r = a.request({{"type", "join"}, {"room", unique_name("ghost")}});
  EXPECT_TRUE(is_ws_error(r, "not_found")) << r.dump();
}

TEST_F(WsProtocol, PrivateRoomNeedsAnInvitationAndInviteLetsJoin) {
  make_users();
  auto carol = register_user(server(), "carol");
  Session a(server(), alice_);
  Session b(server(), bob_);
  Session c(server(), carol);
  auto room = unique_name("priv");
  a.create(room, /*is_private=*/true);
  a.send_message(room, "before the invitation");

  EXPECT_TRUE(is_ws_error(b.request({{"type", "join"}, {"room", room}}), "forbidden"));
  // Only members may invite.
  EXPECT_TRUE(is_ws_error(c.request({{"type", "invite"}, {"room", room}, {"user", bob_.name}}),
                          "forbidden"));
  EXPECT_TRUE(is_ws_error(b.request({{"type", "join"}, {"room", room}}), "forbidden"));
  // Inviting a user who does not exist names what is missing.
  EXPECT_TRUE(
      is_ws_error(a.request({{"type", "invite"}, {"room", room}, {"user", unique_name("nobody")}}),
                  "not_found"));

  auto inv = a.request({{"type", "invite"}, {"room", room}, {"user", bob_.name}});
  EXPECT_EQ(inv.value("type", ""), "invited") << inv.dump();
  EXPECT_EQ(inv.value("room", ""), room);
  EXPECT_EQ(inv.value("user", ""), bob_.name);
  auto invitation = b.wait_type("invitation");
  EXPECT_EQ(invitation.value("room", ""), room) << invitation.dump();
  EXPECT_EQ(invitation.value("by", ""), alice_.name) << invitation.dump();

  auto joined = b.join(room);
  EXPECT_EQ(joined.value("last_seq", -1), 1);
  a.send_message(room, "after");
  EXPECT_EQ(b.wait_for([&](const json& j) { return is_message(j, room); }).value("seq", 0), 2);
  // Carol is still out.
  EXPECT_TRUE(is_ws_error(c.request({{"type", "join"}, {"room", room}}), "forbidden"));
  EXPECT_TRUE(messages_of(c.barrier(), room).empty());
}

TEST_F(WsProtocol, LeaveStopsDeliveryAndSending) {
  make_users();
  Session a(server(), alice_);
  Session b(server(), bob_);
  auto room = unique_name("leave");
  a.create(room);
  b.join(room);
  auto left = b.request({{"type", "leave"}, {"room", room}});
  EXPECT_EQ(left.value("type", ""), "left") << left.dump();
  EXPECT_EQ(left.value("room", ""), room);
  a.send_message(room, "after bob left");
  // Alice's own session got the message, so the fan-out happened; bob got nothing.
  a.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_TRUE(messages_of(b.barrier(), room).empty());
  auto send =
      b.request({{"type", "send"}, {"room", room}, {"client_msg_id", "x1"}, {"body", "hi"}});
  EXPECT_TRUE(is_ws_error(send, "forbidden")) << send.dump();
  EXPECT_EQ(rooms_of(server(), bob_.token).count(room), 0u);
}

TEST_F(WsProtocol, DmCreatesOneSortedRoomWithBothMembers) {
  make_users();
  Session a(server(), alice_);
  Session b(server(), bob_);
  auto r = b.request({{"type", "dm"}, {"user", alice_.name}});
  ASSERT_EQ(r.value("type", ""), "joined") << r.dump();
  auto first = std::min(alice_.name, bob_.name);
  auto second = std::max(alice_.name, bob_.name);
  auto room = "dm:" + first + ":" + second;
  EXPECT_EQ(r.value("room", ""), room);
  EXPECT_EQ(r.value("last_seq", -1), 0);
  // Alice is a member without doing anything: her session already open gets the message.
  b.send_message(room, "psst");
  auto m = a.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_EQ(m.value("from", ""), bob_.name);
  EXPECT_EQ(m.value("body", ""), "psst");
  EXPECT_EQ(rooms_of(server(), alice_.token).at(room).value("kind", ""), "dm");
  // The other direction names the same room.
  auto again = a.request({{"type", "dm"}, {"user", bob_.name}});
  EXPECT_EQ(again.value("room", ""), room);
  EXPECT_EQ(again.value("last_seq", -1), 1);
  a.send_message(room, "hi back");
  EXPECT_EQ(b.wait_for([&](const json& j) {
               return is_message(j, room) && j["seq"] == 2;
             }).value("body", ""),
            "hi back");
  EXPECT_TRUE(
      is_ws_error(a.request({{"type", "dm"}, {"user", unique_name("nobody")}}), "not_found"));
}

// ---- send ----

TEST_F(WsProtocol, SendIsAckedAfterCommitAndDeliveredToMembers) {
  make_users();
  Session a(server(), alice_);
  Session b(server(), bob_);
  auto room = unique_name("send");
  a.create(room);
  b.join(room);
  auto ack =
      a.request({{"type", "send"}, {"room", room}, {"client_msg_id", "c-1"}, {"body", "hello"}});
  ASSERT_EQ(ack.value("type", ""), "ack") << ack.dump();
  EXPECT_EQ(ack.value("room", ""), room);
  EXPECT_EQ(ack.value("client_msg_id", ""), "c-1");
  EXPECT_EQ(ack.value("seq", 0), 1);
  ASSERT_TRUE(ack["ts"].is_number_integer());
  EXPECT_NEAR(static_cast<double>(ack["ts"].get<std::int64_t>()), static_cast<double>(now_ms()),
              60'000.0);
  // Acknowledged means committed: another connection reads it right away.
  auto stored = all_messages_http(server(), bob_.token, room);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].value("body", ""), "hello");
  EXPECT_EQ(stored[0].value("seq", 0), 1);

  auto m = b.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_EQ(m, json({{"type", "message"},
                     {"room", room},
                     {"seq", 1},
                     {"from", alice_.name},
                     {"body", "hello"},
                     {"ts", ack["ts"]},
                     {"client_msg_id", "c-1"}}));
  // The sender's own session sees its message in the room's stream too.
  auto own = a.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_EQ(own.value("seq", 0), 1);
}

TEST_F(WsProtocol, SendValidatesBodyAndClientMsgId) {
  make_users();
  Session a(server(), alice_);
  auto room = unique_name("valid");
  a.create(room);
  auto send = [&](const json& id, const json& body) {
    return a.request({{"type", "send"}, {"room", room}, {"client_msg_id", id}, {"body", body}});
  };
  EXPECT_TRUE(is_ws_error(send("e1", ""), "bad_request"));
  EXPECT_TRUE(is_ws_error(send("e2", repeat("x", 4001)), "too_large"));
  EXPECT_TRUE(is_ws_error(send("e3", repeat("\xc3\xa9", 4001)), "too_large"));
  EXPECT_TRUE(is_ws_error(send("", "hi"), "bad_request"));
  EXPECT_TRUE(is_ws_error(send(repeat("i", 65), "hi"), "bad_request"));
  EXPECT_TRUE(is_ws_error(send(17, "hi"), "bad_request"));
  EXPECT_TRUE(
      is_ws_error(a.request({{"type", "send"}, {"room", room}, {"body", "no id"}}), "bad_request"));
  // Nothing of that was stored.
  EXPECT_TRUE(all_messages_http(server(), alice_.token, room).empty());
  // The limits are inclusive and count code points: 4000 two-byte characters are fine.
  auto body = repeat("\xc3\xa9", 4000);
  auto ack = send(repeat("i", 64), body);
  EXPECT_EQ(ack.value("type", ""), "ack") << ack.dump().substr(0, 300);
  auto m = a.wait_for([&](const json& j) { return is_message(j, room); });
  EXPECT_EQ(m.value("body", ""), body) << "the body comes back byte for byte";
  auto emoji = repeat("\xf0\x9f\x98\x80", 4000);  // 4000 code points outside the BMP
  EXPECT_EQ(send("emoji", emoji).value("type", ""), "ack");
}

TEST_F(WsProtocol, SendToUnknownRoomOrAsNonMemberIsRefused) {
  make_users();
  Session a(server(), alice_);
  Session b(server(), bob_);
  auto room = unique_name("refuse");
  a.create(room);
  auto r = b.request({{"type", "send"}, {"room", room}, {"client_msg_id", "n1"}, {"body", "hi"}});
  EXPECT_TRUE(is_ws_error(r, "forbidden")) << r.dump();
  auto ghost = b.request(
      {{"type", "send"}, {"room", unique_name("ghost")}, {"client_msg_id", "n2"}, {"body", "hi"}});
  ASSERT_EQ(ghost.value("type", ""), "error") << ghost.dump();
  EXPECT_TRUE(ghost.value("code", "") == "not_found" || ghost.value("code", "") == "forbidden")
      << ghost.dump();
}

// ---- history ----

TEST_F(WsProtocol, HistoryPagesBackwardsWithHasMore) {
  make_users();
  Session a(server(), alice_);
  auto room = unique_name("hist");
  a.create(room);
  for (int i = 1; i <= 7; ++i)
    a.send_message(room, "h" + std::to_string(i), "hid-" + std::to_string(i));
  auto seqs = [](const json& h) {
    std::vector<int> out;
    for (const auto& m : h.at("messages")) out.push_back(m.at("seq").get<int>());
    return out;
  };
  auto h = a.request({{"type", "history"}, {"room", room}, {"before", 6}, {"limit", 3}});
  ASSERT_EQ(h.value("type", ""), "history") << h.dump();
  EXPECT_EQ(h.value("room", ""), room);
  EXPECT_EQ(seqs(h), (std::vector<int>{3, 4, 5}));
  EXPECT_TRUE(h.value("has_more", false));
  EXPECT_TRUE(h.contains("ref"));
  const auto& m = h["messages"][0];
  EXPECT_EQ(m.value("type", ""), "message");
  EXPECT_EQ(m.value("room", ""), room);
  EXPECT_EQ(m.value("from", ""), alice_.name);
  EXPECT_EQ(m.value("body", ""), "h3");
  EXPECT_EQ(m.value("client_msg_id", ""), "hid-3");
  EXPECT_TRUE(m["ts"].is_number_integer());

  h = a.request({{"type", "history"}, {"room", room}, {"before", 3}, {"limit", 3}});
  EXPECT_EQ(seqs(h), (std::vector<int>{1, 2}));
  EXPECT_FALSE(h.value("has_more", true));
  h = a.request({{"type", "history"}, {"room", room}, {"limit", 2}});
  EXPECT_EQ(seqs(h), (std::vector<int>{6, 7})) << "without before: the newest page";
  EXPECT_TRUE(h.value("has_more", false));
  h = a.request({{"type", "history"}, {"room", room}, {"before", 100}, {"limit", 200}});
  EXPECT_EQ(seqs(h).size(), 7u);
  EXPECT_FALSE(h.value("has_more", true));
  h = a.request({{"type", "history"}, {"room", room}, {"before", 1}, {"limit", 10}});
  EXPECT_TRUE(seqs(h).empty());
  EXPECT_FALSE(h.value("has_more", true));

  EXPECT_TRUE(
      is_ws_error(a.request({{"type", "history"}, {"room", room}, {"before", 5}, {"limit", 0}}),
                  "bad_request"));
  EXPECT_TRUE(
      is_ws_error(a.request({{"type", "history"}, {"room", room}, {"before", 5}, {"limit", 201}}),
                  "bad_request"));
  EXPECT_TRUE(is_ws_error(
      a.request({{"type", "history"}, {"room", unique_name("ghost")}, {"before", 5}, {"limit", 5}}),
      "not_found"));
}

// ---- typing, read, watch ----

TEST_F(WsProtocol, TypingReachesOtherMembersButNotTheTypist) {
  make_users();
  auto carol = register_user(server(), "carol");
  Session a(server(), alice_);
  Session b(server(), bob_);
  Session c(server(), carol);  // not a member
  auto room = unique_name("typing");
  a.create(room);
  b.join(room);
  a.send({{"type", "typing"}, {"room", room}});
  auto t = b.wait_type("typing");
  EXPECT_EQ(t, json({{"type", "typing"}, {"room", room}, {"user", alice_.name}}));
  for (const auto& f : a.barrier()) {
    EXPECT_NE(f.value("type", ""), "typing") << "the typist got its own typing: " << f.dump();
  }
  for (const auto& f : c.barrier()) {
    EXPECT_NE(f.value("type", ""), "typing") << "a non-member got typing: " << f.dump();
  }
  // Typing is not stored.
  EXPECT_TRUE(all_messages_http(server(), alice_.token, room).empty());
}

TEST_F(WsProtocol, ReadReachesTheUsersOtherSessionsAndTheRoomsListing) {
  make_users();
  Session a1(server(), alice_);
  Session a2(server(), alice_);
  Session b(server(), bob_);
  auto room = unique_name("read");
  a1.create(room);
  b.join(room);
  for (int i = 0; i < 4; ++i) b.send_message(room, "r" + std::to_string(i));
  a1.send({{"type", "read"}, {"room", room}, {"seq", 3}});
  auto r = a2.wait_type("read");
  EXPECT_EQ(r, json({{"type", "read"}, {"room", room}, {"seq", 3}}));
  for (const auto& f : a1.barrier()) {
    EXPECT_NE(f.value("type", ""), "read") << "the reading session got its own read: " << f.dump();
  }
  for (const auto& f : b.barrier()) {
    EXPECT_NE(f.value("type", ""), "read") << "another user got alice's read: " << f.dump();
  }
  auto entry = rooms_of(server(), alice_.token).at(room);
  EXPECT_EQ(entry.value("read_seq", -1), 3) << entry.dump();
  EXPECT_EQ(entry.value("unread", -1), 1);
  EXPECT_EQ(rooms_of(server(), bob_.token).at(room).value("read_seq", -1), 0)
      << "read markers are per user";
}

TEST_F(WsProtocol, WatchReportsPresenceNowAndOnEveryChange) {
  make_users();
  auto carol = register_user(server(), "carol");
  Session a(server(), alice_);
  {
    Session c(server(), carol);
    a.send({{"type", "watch"}, {"users", {bob_.name, carol.name}}});
    // The current status of each watched user, in any order.
    std::map<std::string, std::string> now;
    for (int i = 0; i < 2; ++i) {
      auto p = a.wait_type("presence");
      now[p.value("user", "")] = p.value("status", "");
    }
    EXPECT_EQ(now,
              (std::map<std::string, std::string>{{bob_.name, "offline"}, {carol.name, "online"}}));

    auto b1 = std::make_unique<Session>(server(), bob_);
    auto p = a.wait_type("presence");
    EXPECT_EQ(p, json({{"type", "presence"}, {"user", bob_.name}, {"status", "online"}}));
    // A second session of an online user changes nothing, and neither does closing one of two.
    auto b2 = std::make_unique<Session>(server(), bob_);
    b2->ws().close();
    b2.reset();
    b1->barrier();
    for (const auto& f : a.barrier()) {
      EXPECT_NE(f.value("type", ""), "presence") << "no change, yet: " << f.dump();
    }
    b1->ws().close();
    b1.reset();
    p = a.wait_type("presence");
    EXPECT_EQ(p, json({{"type", "presence"}, {"user", bob_.name}, {"status", "offline"}}));
    c.ws().drop();  // an abrupt disconnect is a change too
  }
  auto p = a.wait_type("presence");
  EXPECT_EQ(p, json({{"type", "presence"}, {"user", carol.name}, {"status", "offline"}}));
}

}  // namespace
}  // namespace parley::test
