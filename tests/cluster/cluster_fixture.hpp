#pragma once
// The base fixture of the cluster tests: a cluster of real parleyd nodes on a fresh database,
// optionally HAProxy in front, users and rooms for a load run, and the end of every log when a
// test fails. Peer is a minimal WebSocket client for any endpoint (a node or HAProxy).

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "client/api.hpp"
#include "client/ws_client.hpp"
#include "cluster/chat_load.hpp"
#include "cluster/cluster_support.hpp"
#include "support/test_util.hpp"

namespace parley::cluster {

using test::unique_name;

// An authenticated WebSocket through any endpoint. Frames skipped while waiting for something
// are kept for later.
class Peer {
 public:
  Peer(const client::Endpoint& at, std::string token, std::string user = {})
      : user_(std::move(user)), token_(std::move(token)) {
    ws_ = std::make_unique<client::WsClient>();
    ws_->connect(at.host, at.port, "/ws", 5s);
    auto auth = client::authenticate(*ws_, token_);
    welcome_ = auth.welcome;
    for (auto& f : auth.replayed) kept_.push_back(f);
  }
  const std::string& node() const { return welcome_.at("node").get_ref<const std::string&>(); }
  const std::string& user() const { return user_; }
  const std::string& token() const { return token_; }
  client::WsClient& ws() { return *ws_; }

  json wait_for(const std::function<bool(const json&)>& pred, std::chrono::milliseconds timeout,
                const std::string& what) {
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (pred(*it)) {
        auto j = *it;
        kept_.erase(it);
        return j;
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        throw std::runtime_error(user_ + " on " + node() + ": timed out waiting for " + what);
      }
      auto ev = ws_->receive(left);
      if (ev.is_timeout()) continue;
      if (!ev.is_text()) {
        throw std::runtime_error(user_ + " on " + node() + ": waiting for " + what + ", got " +
                                 ev.describe());
      }
      auto j = ev.json();
      if (pred(j)) return j;
      kept_.push_back(j);
    }
  }
  json request(json req, std::chrono::milliseconds timeout = 10s) {
    const std::string ref = "p" + std::to_string(++next_ref_);
    req["ref"] = ref;
    ws_->send_json(req);
    return wait_for([&](const json& j) { return j.value("ref", "") == ref; }, timeout,
                    "the reply to " + req.dump());
  }
  void create(const std::string& room) {
    auto r = request({{"type", "create"}, {"room", room}, {"visibility", "public"}});
    if (r.value("type", "") != "joined") throw std::runtime_error("create failed: " + r.dump());
  }
  void join(const std::string& room) {
    auto r = request({{"type", "join"}, {"room", room}});
    if (r.value("type", "") != "joined") throw std::runtime_error("join failed: " + r.dump());
  }
  // The next `n` messages of `room`, in arrival order.
  std::vector<json> messages(const std::string& room, std::size_t n,
                             std::chrono::milliseconds timeout = 20s) {
    std::vector<json> out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      out.push_back(wait_for([&](const json& j) { return test::is_message(j, room); },
                             std::max(left, std::chrono::milliseconds(1)),
                             std::to_string(n) + " messages of " + room + " (had " +
                                 std::to_string(out.size()) + ")"));
    }
    return out;
  }
  // Skips frames until the connection ends (kind timeout when still open after `timeout`).
  client::WsEvent wait_closed(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return client::WsEvent{};
      auto ev = ws_->receive(left);
      if (ev.is_closed()) return ev;
      if (ev.is_text()) kept_.push_back(ev.json());
    }
  }

 private:
  std::string user_;
  std::string token_;
  std::unique_ptr<client::WsClient> ws_;
  json welcome_;
  std::deque<json> kept_;
  std::uint64_t next_ref_ = 0;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"PARLEY_TEST_PG_URL", "PARLEY_TEST_AMQP_URL"}) {
      ASSERT_FALSE(env_or(v, "").empty()) << v << " is not set: " << kHowToRun;
    }
  }

  void TearDown() override {
    if (!HasFailure()) return;
    if (cluster_) std::cerr << cluster_->logs(100);
    if (haproxy_) {
      std::cerr << "----- end of haproxy log (" << haproxy_->config_path().string() << ") -----\n"
                << haproxy_->log_tail(40) << "----- end of log -----\n";
    }
  }

  Cluster& make_cluster(ClusterOptions options = {}) {
    cluster_ = std::make_unique<Cluster>(std::move(options));
    cluster_->start();
    return *cluster_;
  }

  // HAProxy in front of every node of the cluster, started, every server UP.
  Haproxy& make_haproxy(const std::string& balance) {
    std::vector<Haproxy::Server> servers;
    for (std::size_t i = 0; i < cluster_->size(); ++i) {
      servers.push_back({cluster_->node(i).node_id(), cluster_->node(i).port()});
    }
    haproxy_ = std::make_unique<Haproxy>(balance, servers);
    haproxy_->start();
    if (!haproxy_->wait_all("UP", 15s)) {
      throw std::runtime_error("HAProxy did not see every node UP within 15 s:\n" +
                               haproxy_->log_tail(20));
    }
    return *haproxy_;
  }

  // `n` fresh users (registered on node 0), all members of `rooms` fresh rooms (created by the
  // first user; each user joins on node i % size, so joins come from every node).
  std::vector<LoadUser> make_users(std::size_t n, std::size_t room_count,
                                   std::vector<std::string>& rooms) {
    rooms.clear();
    for (std::size_t r = 0; r < room_count; ++r) rooms.push_back(unique_name("room"));
    std::vector<LoadUser> users;
    for (std::size_t i = 0; i < n; ++i) {
      auto name = unique_name("u");
      users.push_back({name, register_user(endpoint_of(cluster_->node(0)), name)});
    }
    for (std::size_t i = 0; i < n; ++i) {
      Peer p(endpoint_of(cluster_->node(i % cluster_->size())), users[i].token, users[i].name);
      for (const auto& room : rooms) {
        if (i == 0) {
          p.create(room);
        } else {
          p.join(room);
        }
      }
      p.ws().close();
    }
    return users;
  }

  // Stops sending, waits for quiet, stops the clients and runs the checker against the store's
  // history read from `read_at`. Returns the reports.
  std::vector<ClientReport> finish_and_check(ChatLoad& load, const client::Endpoint& read_at,
                                             const std::vector<LoadUser>& users,
                                             const std::vector<std::string>& rooms) {
    load.stop_sending();
    std::string why;
    const bool quiet = load.wait_quiet(read_at, 60s, why);
    load.stop();
    auto reports = load.reports();
    std::map<std::string, std::vector<json>> history;
    for (const auto& room : rooms) history[room] = room_history(read_at, users.front().token, room);
    auto result = check(reports, history);
    std::cout << describe_run(reports) << "\n" << result.summary() << std::endl;
    EXPECT_TRUE(quiet) << "the clients did not catch up within 60 s after sending stopped: " << why;
    EXPECT_EQ(result.lost, 0u) << result.summary();
    EXPECT_EQ(result.duplicates, 0u) << result.summary();
    EXPECT_EQ(result.out_of_order, 0u) << result.summary();
    EXPECT_EQ(result.unacked, 0u) << result.summary();
    EXPECT_EQ(result.undelivered, 0u) << result.summary();
    EXPECT_EQ(result.errors, 0u) << result.summary();
    EXPECT_GT(result.acked, 0u);
    if (!quiet || !result.ok()) {
      // The event logs of the clients that saw something wrong (at most 4).
      int shown = 0;
      for (const auto& r : reports) {
        bool bad = !r.violations.empty() || r.outbox > 0;
        if (!quiet && why.find(r.user) != std::string::npos) bad = true;
        if (!bad || shown++ >= 4) continue;
        std::cerr << "----- events of client " << r.user << " -----\n";
        for (const auto& e : r.events) std::cerr << "  " << e << "\n";
      }
    }
    return reports;
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<Haproxy> haproxy_;
};

}  // namespace parley::cluster
