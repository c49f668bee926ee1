// A non-member can read nothing of a room by any path: send, WebSocket and HTTP history,
// resume cursors, live delivery, typing, read markers, the rooms listing.

#include "fixture.hpp"

namespace parley::test {
namespace {

class Access : public IntegrationTest {};

TEST_F(Access, NonMemberCanReadNothingOfARoomByAnyPath) {
  auto alice = register_user(server(), "alice");
  auto bob = register_user(server(), "bob");
  auto carol = register_user(server(), "carol");
  Session a(server(), alice);
  Session c(server(), carol);
  auto priv = unique_name("priv");
  auto pub = unique_name("pub");
  auto left = unique_name("left");
  a.create(priv, true);
  a.create(pub);
  a.create(left);
  auto dm = a.request({{"type", "dm"}, {"user", carol.name}}).value("room", "");
  ASSERT_FALSE(dm.empty());
  // Bob was a member of `left` once, and left.
  {
    Session b(server(), bob);
    b.join(left);
    b.request({{"type", "leave"}, {"room", left}});
  }
  for (const auto& room : {priv, pub, left, dm}) a.send_message(room, "secret in " + room);

  const std::vector<std::string> rooms = {priv, pub, left, dm};
  std::map<std::string, std::uint64_t> cursors;
  for (const auto& r : rooms) cursors[r] = 0;
  // Resume cursors of rooms he is not in are ignored: welcome, then synced, nothing between.
  Session b(server(), bob, cursors);
  EXPECT_TRUE(b.replayed().empty()) << json(b.replayed()).dump();

  auto http = server().http();
  for (const auto& room : rooms) {
    SCOPED_TRACE("room " + room);
    auto send = b.request(
        {{"type", "send"}, {"room", room}, {"client_msg_id", "x"}, {"body", "let me in"}});
    EXPECT_TRUE(is_ws_error(send, "forbidden")) << send.dump();
    auto hist = b.request({{"type", "history"}, {"room", room}, {"before", 100}, {"limit", 50}});
    EXPECT_TRUE(is_ws_error(hist, "forbidden")) << hist.dump();
    auto newest = b.request({{"type", "history"}, {"room", room}, {"limit", 50}});
    EXPECT_TRUE(is_ws_error(newest, "forbidden")) << newest.dump();
    auto res =
        http.get("/api/v1/rooms/" + client::url_encode_segment(room) + "/messages", bob.token);
    EXPECT_TRUE(is_http_error(res, 403, "forbidden")) << res.body;
    EXPECT_EQ(res.body.find("secret"), std::string::npos);
    b.send({{"type", "typing"}, {"room", room}});
    b.send({{"type", "read"}, {"room", room}, {"seq", 1}});
  }
  // Private and DM rooms cannot be joined (or invited into) by him.
  EXPECT_TRUE(is_ws_error(b.request({{"type", "join"}, {"room", priv}}), "forbidden"));
  auto dm_join = b.request({{"type", "join"}, {"room", dm}});
  ASSERT_EQ(dm_join.value("type", ""), "error") << "joined someone else's DM: " << dm_join.dump();
  EXPECT_TRUE(is_ws_error(b.request({{"type", "invite"}, {"room", priv}, {"user", bob.name}}),
                          "forbidden"));

  // Nothing of the rooms reached him live, and his typing and read markers reached nobody.
  for (const auto& room : rooms) a.send_message(room, "more secrets");
  for (int i = 0; i < 4; ++i) a.wait_for([](const json& j) { return is_message(j); });
  for (const auto& f : b.barrier()) {
    EXPECT_FALSE(is_message(f)) << "a non-member received " << f.dump();
    if (f.value("type", "") == "error") {
      EXPECT_EQ(f.value("code", ""), "forbidden") << f.dump();
    }
  }
  for (auto* s : {&a, &c}) {
    for (const auto& f : s->barrier()) {
      EXPECT_NE(f.value("type", ""), "typing") << f.dump();
      EXPECT_NE(f.value("type", ""), "read") << f.dump();
    }
  }
  // His rooms listing has none of them, and alice's read state was not touched.
  EXPECT_TRUE(rooms_of(server(), bob.token).empty()) << json(rooms_of(server(), bob.token)).dump();
  EXPECT_EQ(rooms_of(server(), alice.token).at(priv).value("read_seq", -1), 0);
  // And the store holds no message of his.
  for (const auto& room : rooms) {
    for (const auto& m : all_messages_http(server(), alice.token, room)) {
      EXPECT_NE(m.value("from", ""), bob.name) << m.dump();
    }
  }
}

}  // namespace
}  // namespace parley::test
