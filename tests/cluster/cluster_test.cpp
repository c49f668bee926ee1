// Cluster behaviour without faults: several parleyd nodes on one PostgreSQL database and the
// shared RabbitMQ behave like one node (docs/protocol.md: "Any node of a cluster answers exactly
// the same way"), HAProxy spreads connections as its `balance` says, presence and logout cross
// nodes.

#include <algorithm>
#include <map>
#include <set>

#include "cluster/cluster_fixture.hpp"

namespace parley::cluster {
namespace {

using steady = std::chrono::steady_clock;

class ClusterChat : public ClusterTest {};
class ClusterPresence : public ClusterTest {};

// (seq, from, client_msg_id, body) of message frames.
std::vector<std::tuple<std::uint64_t, std::string, std::string, std::string>> fingerprint(
    const std::vector<json>& msgs) {
  std::vector<std::tuple<std::uint64_t, std::string, std::string, std::string>> out;
  for (const auto& m : msgs) {
    out.emplace_back(m.at("seq").get<std::uint64_t>(), m.value("from", ""),
                     m.value("client_msg_id", ""), m.value("body", ""));
  }
  return out;
}

// Every peer sends `per_peer` messages to `room` (interleaved, without waiting for acks), then
// each peer must see all of them with seqs first_seq.. in one identical order, each sender's acks
// at the seqs where its messages appear, and the store (read from `read_at`) must agree.
void chat_round(std::vector<std::unique_ptr<Peer>>& peers, const std::string& room,
                std::size_t per_peer, const client::Endpoint& read_at, const std::string& token,
                std::uint64_t first_seq = 1) {
  // Ids unique per round (a repeated client_msg_id would be deduplicated).
  auto id_of = [&](Peer& p, std::size_t k) {
    return p.user() + "-" + std::to_string(first_seq) + "-" + std::to_string(k);
  };
  for (std::size_t k = 0; k < per_peer; ++k) {
    for (std::size_t i = 0; i < peers.size(); ++i) {
      peers[i]->ws().send_json(
          {{"type", "send"},
           {"ref", "s" + std::to_string(k)},
           {"room", room},
           {"client_msg_id", id_of(*peers[i], k)},
           {"body", "hello " + std::to_string(k) + " from " + peers[i]->user()}});
    }
  }
  const std::size_t total = per_peer * peers.size();
  std::vector<std::vector<json>> seen;
  for (auto& p : peers) seen.push_back(p->messages(room, total));
  for (std::size_t i = 0; i < peers.size(); ++i) {
    SCOPED_TRACE("peer " + peers[i]->user() + " on node " + peers[i]->node());
    for (std::size_t k = 0; k < total; ++k) {
      ASSERT_EQ(seen[i][k].at("seq").get<std::uint64_t>(), first_seq + k)
          << "messages must arrive gapless and in seq order: " << seen[i][k].dump();
    }
    EXPECT_EQ(fingerprint(seen[i]), fingerprint(seen[0]))
        << "every member must see the same messages at the same seqs";
    // Acks name the seq at which the message appears.
    std::map<std::string, std::uint64_t> seq_of;
    for (const auto& m : seen[0]) seq_of[m.at("client_msg_id")] = m.at("seq");
    for (std::size_t k = 0; k < per_peer; ++k) {
      auto ack = peers[i]->wait_for(
          [&](const json& j) {
            return j.value("type", "") == "ack" && j.value("room", "") == room &&
                   j.value("client_msg_id", "") == id_of(*peers[i], k);
          },
          10s, "the ack of message " + std::to_string(k));
      EXPECT_EQ(ack.at("seq").get<std::uint64_t>(), seq_of[ack.at("client_msg_id")]);
    }
  }
  auto history = room_history(read_at, token, room);
  std::vector<json> tail(
      history.end() - static_cast<std::ptrdiff_t>(std::min(total, history.size())), history.end());
  EXPECT_EQ(fingerprint(tail), fingerprint(seen[0])) << "the store must hold what was delivered";
}

// ---------------------------------------------------------------------------------------------
// 1. Clients connected to different nodes chat in one room: identical, gapless order for all.

TEST_F(ClusterChat, ClientsOnDifferentNodesSeeOneGaplessOrder) {
  auto& c = make_cluster();
  const std::string room = unique_name("room");
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<std::string> tokens;
  for (std::size_t i = 0; i < 6; ++i) {
    const auto name = unique_name("u");
    tokens.push_back(register_user(endpoint_of(c.node(i % 3)), name));
    peers.push_back(std::make_unique<Peer>(endpoint_of(c.node(i % 3)), tokens.back(), name));
    EXPECT_EQ(peers.back()->node(), c.node(i % 3).node_id());
  }
  // Created on node 1, joined from every node: each node binds the room on the bus now.
  peers[0]->create(room);
  for (std::size_t i = 1; i < peers.size(); ++i) peers[i]->join(room);

  chat_round(peers, room, 25, endpoint_of(c.node(1)), tokens[0]);

  // Every node's history agrees.
  auto h0 = room_history(endpoint_of(c.node(0)), tokens[0], room);
  ASSERT_EQ(h0.size(), 150u);
  for (std::size_t n = 1; n < c.size(); ++n) {
    EXPECT_EQ(fingerprint(room_history(endpoint_of(c.node(n)), tokens[n], room)), fingerprint(h0))
        << "node " << c.node(n).node_id() << " serves a different history";
  }

  // A second round after the bindings are warm, then a member resumes from a cursor on
  // another node than the one it chatted on: the whole tail arrives, in order.
  chat_round(peers, room, 10, endpoint_of(c.node(2)), tokens[0], 151);
  peers[4]->ws().close();
  auto ws = std::make_unique<client::WsClient>();
  ws->connect(c.node(2).host(), c.node(2).port(), "/ws", 5s);
  auto auth = client::authenticate(*ws, tokens[4], {{room, 140}});
  EXPECT_EQ(auth.welcome.value("node", ""), c.node(2).node_id());
  auto replayed = test::messages_of(auth.replayed, room);
  ASSERT_EQ(replayed.size(), 70u);
  for (std::size_t k = 0; k < replayed.size(); ++k) {
    EXPECT_EQ(replayed[k].at("seq").get<std::uint64_t>(), 141 + k);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Through HAProxy with roundrobin, leastconn and source: connections spread as the strategy
//    says (welcome.node names the node that serves), and chat works.

class ClusterHaproxy : public ClusterTest, public ::testing::WithParamInterface<std::string> {};

std::map<std::string, int> count_nodes(const std::vector<std::unique_ptr<Peer>>& peers) {
  std::map<std::string, int> n;
  for (const auto& p : peers) ++n[p->node()];
  return n;
}

std::string show(const std::map<std::string, int>& counts) {
  std::string s;
  for (const auto& [node, n] : counts) s += node + ": " + std::to_string(n) + "  ";
  return s;
}

TEST_P(ClusterHaproxy, SpreadsConnectionsAsTheStrategySaysAndChatWorks) {
  const std::string balance = GetParam();
  auto& c = make_cluster();
  auto& h = make_haproxy(balance);
  // Users are registered on a node directly, so that only the WebSockets go through HAProxy.
  std::vector<std::pair<std::string, std::string>> users;  // name, token
  for (int i = 0; i < 12; ++i) {
    auto name = unique_name("u");
    users.emplace_back(name, register_user(endpoint_of(c.node(0)), name));
  }
  std::size_t next_user = 0;
  auto open = [&] {
    const auto& [name, token] = users.at(next_user++);
    return std::make_unique<Peer>(h.endpoint(), token, name);
  };
  std::set<std::string> node_ids;
  for (std::size_t i = 0; i < c.size(); ++i) node_ids.insert(c.node(i).node_id());

  std::vector<std::unique_ptr<Peer>> peers;
  if (balance == "roundrobin") {
    // Nine connections in a row: three on each node.
    for (int i = 0; i < 9; ++i) peers.push_back(open());
    auto counts = count_nodes(peers);
    EXPECT_EQ(counts.size(), 3u) << show(counts);
    for (const auto& id : node_ids) EXPECT_EQ(counts[id], 3) << show(counts);
  } else if (balance == "leastconn") {
    // Six connections: two on each node (each goes to a node with the fewest).
    for (int i = 0; i < 6; ++i) peers.push_back(open());
    auto counts = count_nodes(peers);
    for (const auto& id : node_ids) ASSERT_EQ(counts[id], 2) << show(counts);
    // Close both connections of one node: the next two go there, because it has the fewest.
    const std::string emptied = peers.front()->node();
    for (auto& p : peers) {
      if (p->node() == emptied) p->ws().close();
    }
    std::erase_if(peers, [&](const auto& p) { return !p->ws().is_open(); });
    ASSERT_EQ(peers.size(), 4u);
    ASSERT_TRUE(test::eventually(
        [&] {
          auto s = h.stats();
          return s.count(emptied) && s[emptied]["scur"] == "0";
        },
        5s))
        << "HAProxy still counts connections on " << emptied;
    for (int i = 0; i < 2; ++i) {
      peers.push_back(open());
      EXPECT_EQ(peers.back()->node(), emptied)
          << "leastconn must pick the node with the fewest connections";
    }
    // All equal again (2, 2, 2): three more spread one per node.
    for (int i = 0; i < 3; ++i) peers.push_back(open());
    counts = count_nodes(peers);
    for (const auto& id : node_ids) EXPECT_EQ(counts[id], 3) << show(counts);
  } else {
    // source: every connection comes from 127.0.0.1, so all land on one node.
    for (int i = 0; i < 8; ++i) peers.push_back(open());
    auto counts = count_nodes(peers);
    EXPECT_EQ(counts.size(), 1u) << "source balancing must keep one client address on one node: "
                                 << show(counts);
  }

  // Chat works through HAProxy: one room, everyone sends, everyone sees one gapless order.
  const std::string room = unique_name("room");
  peers.front()->create(room);
  for (std::size_t i = 1; i < peers.size(); ++i) peers[i]->join(room);
  chat_round(peers, room, 5, h.endpoint(), peers.front()->token());
}

INSTANTIATE_TEST_SUITE_P(Balance, ClusterHaproxy,
                         ::testing::Values("roundrobin", "leastconn", "source"),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------------------------------------
// 7. Presence and logout across nodes.

// The next presence frame about `user`.
json next_presence(Peer& p, const std::string& user, std::chrono::milliseconds timeout,
                   const std::string& step) {
  return p.wait_for(
      [&](const json& j) {
        return j.value("type", "") == "presence" && j.value("user", "") == user;
      },
      timeout, "a presence frame about " + user + " (" + step + ")");
}

TEST_F(ClusterPresence, PresenceCrossesNodesAndADeadNodesUsersGoOffline) {
  constexpr int kNodeTimeoutMs = 3000;
  constexpr int kHeartbeatMs = 1000;
  auto& c = make_cluster({.nodes = 2,
                          .extra_args = {"--node-timeout-ms", std::to_string(kNodeTimeoutMs),
                                         "--heartbeat-ms", std::to_string(kHeartbeatMs)}});
  const auto a = endpoint_of(c.node(0));
  const auto b = endpoint_of(c.node(1));
  const auto watcher = unique_name("w");
  const auto watched = unique_name("p");
  const auto wtoken = register_user(a, watcher);
  const auto ptoken = register_user(a, watched);

  Peer w(a, wtoken, watcher);
  w.ws().send_json({{"type", "watch"}, {"users", {watched}}});
  EXPECT_EQ(next_presence(w, watched, 5s, "watch: the initial status").value("status", ""),
            "offline");

  // Online while a session on node B is open, offline when it closes.
  auto p = std::make_unique<Peer>(b, ptoken, watched);
  ASSERT_EQ(p->node(), c.node(1).node_id());
  EXPECT_EQ(next_presence(w, watched, 5s, "first session on node B opened").value("status", ""),
            "online");
  p->ws().close();
  p.reset();
  EXPECT_EQ(next_presence(w, watched, 5s, "first session on node B closed").value("status", ""),
            "offline");

  // Online again on B; then B dies without a word.
  p = std::make_unique<Peer>(b, ptoken, watched);
  EXPECT_EQ(next_presence(w, watched, 5s, "second session on node B opened").value("status", ""),
            "online");
  // Heartbeats keep a live node's users online: nothing changes for longer than the timeout.
  try {
    auto stray =
        next_presence(w, watched, std::chrono::milliseconds(kNodeTimeoutMs + 2 * kHeartbeatMs),
                      "while node B is alive");
    ADD_FAILURE() << "presence changed while node B was alive and its session open: "
                  << stray.dump() << " (node A took B for dead: are heartbeats still sent?)";
  } catch (const std::runtime_error&) {
    // Timed out: no change, as it should be.
  }
  const auto killed_at = steady::now();
  c.node(1).kill9();
  // operations.md: a node silent for --node-timeout-ms is taken for dead and its users go
  // offline on every node. Silence starts at the kill at the latest; the survivors look for
  // silent peers on each heartbeat tick, so the bound is node timeout + one heartbeat interval.
  auto off = next_presence(
      w, watched, std::chrono::milliseconds(kNodeTimeoutMs + kHeartbeatMs + 3000), "node B killed");
  const auto took = ms_since(killed_at);
  EXPECT_EQ(off.value("status", ""), "offline");
  std::cout << "offline " << took << " ms after kill -9 of the user's node (node timeout "
            << kNodeTimeoutMs << " ms, heartbeat " << kHeartbeatMs << " ms)" << std::endl;
  EXPECT_LE(took, kNodeTimeoutMs + kHeartbeatMs + 500)
      << "the dead node's user went offline too late";
  // Not a false alarm: node A itself stayed healthy, and the user is reported online again
  // when it reconnects on A.
  p.reset();
  Peer again(a, ptoken, watched);
  EXPECT_EQ(next_presence(w, watched, 5s, "reconnected on node A").value("status", ""), "online");
}

TEST_F(ClusterPresence, LogoutOnOneNodeClosesTheTokensSocketsOnEveryNodeWithin1s) {
  auto& c = make_cluster({.nodes = 2, .extra_args = {}});
  const auto a = endpoint_of(c.node(0));
  const auto b = endpoint_of(c.node(1));
  const auto name = unique_name("u");
  const auto token = register_user(a, name);
  const auto other_token =
      client::login(client::HttpClient(b, 10s), name, "pw-" + name + "-secret").token;

  Peer on_b(b, token, name);              // the token's socket on node B
  Peer on_a(a, token, name);              // and one on node A
  Peer other_on_b(b, other_token, name);  // another token of the same user
  ASSERT_EQ(on_b.node(), c.node(1).node_id());
  // Both nodes have the token cached from the auths above: the logout must reach B's cache.
  ASSERT_EQ(client::HttpClient(b, 10s).get("/api/v1/rooms", token).status, 200);

  const auto t0 = steady::now();
  auto res = client::HttpClient(a, 10s).request("POST", "/api/v1/logout", std::nullopt, token);
  ASSERT_EQ(res.status, 204) << res.body;
  auto closed_b = on_b.wait_closed(3s);
  const auto took_b = ms_since(t0);
  ASSERT_TRUE(closed_b.is_closed()) << "the socket on node B is still open 3 s after the logout";
  EXPECT_EQ(closed_b.close_code, 1008) << closed_b.describe();
  EXPECT_EQ(closed_b.close_reason, "logged out");
  EXPECT_LE(took_b, 1000) << "node B closed the logged-out token's socket " << took_b
                          << " ms after the logout on node A";
  std::cout << "node B closed the socket " << took_b << " ms after the logout on node A"
            << std::endl;
  auto closed_a = on_a.wait_closed(2s);
  ASSERT_TRUE(closed_a.is_closed());
  EXPECT_EQ(closed_a.close_code, 1008) << closed_a.describe();

  // The token is dead on node B too; the user's other token still works there.
  EXPECT_EQ(client::HttpClient(b, 10s).get("/api/v1/rooms", token).status, 401);
  auto ws = std::make_unique<client::WsClient>();
  ws->connect(b.host, b.port, "/ws", 5s);
  EXPECT_THROW(client::authenticate(*ws, token), std::exception);
  auto pong = other_on_b.request({{"type", "ping"}});
  EXPECT_EQ(pong.value("type", ""), "pong");
  EXPECT_EQ(client::HttpClient(b, 10s).get("/api/v1/rooms", other_token).status, 200);
}

// A node caches a token for --token-cache-ttl-s (60 s) after any use, also without a session of
// the user (an HTTP request, a socket since closed), and so without a subscription to the user's
// events. A logout elsewhere must still kill the token there at once: revocations go to every
// node.
TEST_F(ClusterPresence, LogoutReachesTheTokenCacheOfANodeWithoutTheUsersSessions) {
  auto& c = make_cluster({.nodes = 2, .extra_args = {}});
  const auto a = endpoint_of(c.node(0));
  const auto b = endpoint_of(c.node(1));
  const auto name = unique_name("r");
  const auto token = register_user(a, name);
  // Node B caches the token through HTTP only: no session, so no subscription to the user.
  ASSERT_EQ(client::HttpClient(b, 10s).get("/api/v1/rooms", token).status, 200);

  const auto t0 = steady::now();
  auto res = client::HttpClient(a, 10s).request("POST", "/api/v1/logout", std::nullopt, token);
  ASSERT_EQ(res.status, 204) << res.body;
  int status = 0;
  while (ms_since(t0) < 3000) {
    status = client::HttpClient(b, 10s).get("/api/v1/rooms", token).status;
    if (status == 401) break;
    std::this_thread::sleep_for(20ms);
  }
  const auto took = ms_since(t0);
  ASSERT_EQ(status, 401) << "node B still accepts the logged-out token 3 s after the logout";
  EXPECT_LE(took, 1000) << "node B accepted the logged-out token for " << took << " ms";
  std::cout << "node B refused the logged-out token " << took << " ms after the logout on node A"
            << std::endl;
  // Nor does a socket on B get in with it.
  auto ws = std::make_unique<client::WsClient>();
  ws->connect(b.host, b.port, "/ws", 5s);
  EXPECT_THROW(client::authenticate(*ws, token), std::exception);
}

}  // namespace
}  // namespace parley::cluster
