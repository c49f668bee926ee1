#include "cluster/chat_load.hpp"

#include <algorithm>
#include <random>
#include <set>
#include <sstream>

#include "client/client_error.hpp"
#include "client/ws_client.hpp"
#include "cluster/cluster_support.hpp"
#include "support/test_util.hpp"

namespace parley::cluster {

using steady = std::chrono::steady_clock;

namespace {
constexpr std::size_t kMaxViolations = 50;
constexpr std::size_t kMaxEvents = 300;
}  // namespace

class ChatLoad::Client {
 public:
  Client(const LoadOptions& options, LoadUser user, std::size_t index, steady::time_point t0)
      : options_(options),
        user_(std::move(user)),
        index_(index),
        t0_(t0),
        rng_(std::random_device{}() + static_cast<unsigned>(index)) {
    report_.user = user_.name;
    for (const auto& r : options_.rooms) {
      report_.cursors[r] = 0;
      report_.start_cursors[r] = 0;
      report_.streams[r];
    }
  }

  ~Client() { stop(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  void stop_sending() { sending_ = false; }

  ClientReport snapshot() const {
    std::lock_guard lock(mu_);
    ClientReport r = report_;
    r.outbox = outbox_.size();
    return r;
  }
  std::string current_node() const {
    std::lock_guard lock(mu_);
    return node_;
  }
  bool welcomed_once() const { return welcomed_once_; }
  std::uint64_t acked() const {
    std::lock_guard lock(mu_);
    return report_.acked.size();
  }
  std::uint64_t unavailable() const {
    std::lock_guard lock(mu_);
    return report_.unavailable;
  }
  bool outbox_empty() const {
    std::lock_guard lock(mu_);
    return outbox_.empty();
  }
  std::map<std::string, std::uint64_t> cursors() const {
    std::lock_guard lock(mu_);
    return report_.cursors;
  }
  const std::string& user() const { return user_.name; }

 private:
  struct Pending {
    std::size_t generated = 0;  // index into report_.generated
    std::uint64_t conn = 0;     // connection it was last sent on (0: never)
    steady::time_point sent_at{};
    steady::time_point retry_at = steady::time_point::max();
    int attempts = 0;
  };

  std::int64_t now_ms() const { return ms_since(t0_); }

  void event(const std::string& what) {
    if (report_.events.size() < kMaxEvents) {
      report_.events.push_back("+" + std::to_string(now_ms()) + "ms " + what);
    }
  }
  void violation(const std::string& what) {
    event("VIOLATION " + what);
    if (report_.violations.size() < kMaxViolations) {
      report_.violations.push_back(user_.name + ": " + what);
    }
  }

  // Sleeps up to `d`, waking early when the load stops.
  void nap(std::chrono::milliseconds d) {
    const auto until = steady::now() + d;
    while (!stop_ && steady::now() < until) std::this_thread::sleep_for(10ms);
  }
  std::chrono::milliseconds backoff(int failures) {
    const int base = std::min(1000, 40 << std::min(failures, 5));
    std::uniform_int_distribution<int> d(base / 2, base);
    return std::chrono::milliseconds(d(rng_));
  }

  void run() {
    std::size_t ep = index_ % options_.endpoints.size();
    int failures = 0;
    while (!stop_) {
      const auto& at = options_.endpoints[ep];
      client::WsClient ws;
      try {
        ws.connect(at.host, at.port, "/ws", 5s);
      } catch (const std::exception& e) {
        {
          std::lock_guard lock(mu_);
          ++report_.connect_failures;
          event("connect to " + at.host + ":" + std::to_string(at.port) + " failed: " + e.what());
        }
        ++failures;
        if (options_.endpoints.size() > 1) ep = (ep + 1) % options_.endpoints.size();
        nap(backoff(failures));
        continue;
      }
      const bool welcomed = session(ws, ep);
      failures = welcomed ? 0 : failures + 1;
      if (!stop_) nap(backoff(failures));
    }
  }

  // One connection, until it ends. Returns whether it was welcomed.
  bool session(client::WsClient& ws, std::size_t ep) {
    std::uint64_t conn = 0;
    nlohmann::json auth = {{"type", "auth"}, {"token", user_.token}};
    {
      std::lock_guard lock(mu_);
      conn = ++conn_id_;
      welcomed_ = false;
      synced_ = false;
      ConnectionRecord rec;
      rec.endpoint = ep;
      rec.cursors = report_.cursors;
      rec.opened_ms = now_ms();
      report_.connections.push_back(rec);
      auth["cursors"] = report_.cursors;
    }
    auto finish = [&](int code, const std::string& reason) {
      std::lock_guard lock(mu_);
      auto& rec = report_.connections.back();
      rec.closed_ms = now_ms();
      rec.close_code = code;
      rec.close_reason = reason;
      event("connection " + std::to_string(conn) + " on " +
            (rec.node.empty() ? std::string("?") : rec.node) + " ended: " + std::to_string(code) +
            " " + reason);
      node_.clear();
      return welcomed_;
    };
    try {
      ws.send_json(auth);
      for (;;) {
        if (stop_) {
          try {
            ws.close(1000);
          } catch (const std::exception&) {
          }
          return finish(0, "stopped by the test");
        }
        try {
          for (const auto& frame : pump(conn)) ws.send_text(frame);
        } catch (const std::exception& e) {
          // A write fails when the server's close frame arrived meanwhile (Beast answers it and
          // cancels the write): the frames read before it and the close itself are queued.
          const std::string send_error = e.what();
          for (int i = 0; i < 50; ++i) {
            auto ev = ws.receive(10ms);
            if (ev.is_closed()) {
              if (ev.close_code == 1006) break;
              return finish(ev.close_code, ev.close_reason);
            }
            if (!ev.is_text()) continue;
            auto j = ev.json();
            bool ignored = false;
            std::lock_guard lock(mu_);
            if (j.is_object()) handle(j, conn, ignored);
          }
          return finish(1006, "transport: " + send_error);
        }
        auto ev = ws.receive(20ms);
        if (ev.is_timeout()) continue;
        if (ev.is_closed()) return finish(ev.close_code, ev.close_reason);
        if (!ev.is_text()) continue;
        auto j = ev.json();
        bool reconnect = false;
        {
          std::lock_guard lock(mu_);
          if (!j.is_object()) {
            violation("non-JSON frame: " + ev.data.substr(0, 200));
            continue;
          }
          handle(j, conn, reconnect);
        }
        if (reconnect) {
          try {
            ws.close(1000);
          } catch (const std::exception&) {
          }
          return finish(0, "client reconnects to resume after a gap");
        }
      }
    } catch (const std::exception& e) {
      return finish(1006, std::string("transport: ") + e.what());
    }
  }

  // Under no lock: the frames to send now (resends and at most one new message).
  std::vector<std::string> pump(std::uint64_t conn) {
    std::vector<std::string> out;
    std::lock_guard lock(mu_);
    if (!welcomed_) return out;
    const auto now = steady::now();
    for (auto& [id, p] : outbox_) {
      const bool due =
          p.conn != conn || (p.retry_at != steady::time_point::max() && now >= p.retry_at) ||
          (p.retry_at == steady::time_point::max() && now - p.sent_at >= options_.resend_after);
      if (!due) continue;
      out.push_back(send_frame(p, conn, now));
    }
    if (sending_ && synced_ && outbox_.size() < options_.max_in_flight && now >= next_send_at_) {
      Generated g;
      const std::size_t n = report_.generated.size();
      g.room = options_.rooms[(index_ + n) % options_.rooms.size()];
      g.client_msg_id = user_.name + "-" + std::to_string(n + 1);
      g.body = "load " + user_.name + " #" + std::to_string(n + 1);
      report_.generated.push_back(g);
      Pending p;
      p.generated = n;
      auto& slot = outbox_[g.client_msg_id];
      slot = p;
      out.push_back(send_frame(slot, conn, now));
      const auto ms = options_.send_interval.count();
      std::uniform_int_distribution<long> d(ms / 2, ms + ms / 2);
      next_send_at_ = now + std::chrono::milliseconds(d(rng_));
    }
    return out;
  }

  std::string send_frame(Pending& p, std::uint64_t conn, steady::time_point now) {
    const auto& g = report_.generated[p.generated];
    if (p.attempts > 0) ++report_.resends;
    ++report_.sends;
    ++p.attempts;
    p.conn = conn;
    p.sent_at = now;
    p.retry_at = steady::time_point::max();
    nlohmann::json f = {{"type", "send"},
                        {"ref", g.client_msg_id + "/" + std::to_string(p.attempts)},
                        {"room", g.room},
                        {"client_msg_id", g.client_msg_id},
                        {"body", g.body}};
    return f.dump();
  }

  void handle(const nlohmann::json& j, std::uint64_t conn, bool& reconnect) {
    const std::string type = j.value("type", "");
    if (type == "message") {
      const std::string room = j.value("room", "");
      const std::uint64_t seq = j.value("seq", std::uint64_t{0});
      auto it = report_.cursors.find(room);
      if (it == report_.cursors.end()) {
        violation("message of a room it is not in: " + j.dump());
        return;
      }
      const std::uint64_t cur = it->second;
      const std::string where = "connection " + std::to_string(conn) + " (node " + node_ + ")";
      if (seq == cur + 1) {
        it->second = seq;
        report_.streams[room].push_back(
            {seq, j.value("from", ""), j.value("client_msg_id", ""), j.value("body", "")});
      } else if (seq <= cur) {
        ++report_.duplicate_deliveries;
        violation(where + ": room " + room + " seq " + std::to_string(seq) +
                  " delivered again (cursor " + std::to_string(cur) + ")");
      } else {
        ++report_.gaps;
        violation(where + ": room " + room + " seq " + std::to_string(seq) + " after " +
                  std::to_string(cur) + " (gap)");
        reconnect = true;
      }
    } else if (type == "ack") {
      const std::string room = j.value("room", "");
      const std::string id = j.value("client_msg_id", "");
      const std::uint64_t seq = j.value("seq", std::uint64_t{0});
      auto key = std::make_pair(room, id);
      auto a = report_.acked.find(key);
      if (a != report_.acked.end()) {
        if (a->second != seq) {
          ++report_.ack_mismatches;
          violation("client_msg_id " + id + " in " + room + " acknowledged with seq " +
                    std::to_string(a->second) + " and later with seq " + std::to_string(seq));
        }
      } else {
        report_.acked.emplace(key, seq);
      }
      auto o = outbox_.find(id);
      if (o != outbox_.end()) {
        report_.generated[o->second.generated].acked = true;
        outbox_.erase(o);
      }
    } else if (type == "error") {
      const std::string code = j.value("code", "");
      const std::string ref = j.value("ref", "");
      const std::string id = ref.substr(0, ref.rfind('/'));
      auto o = ref.empty() ? outbox_.end() : outbox_.find(id);
      if (code == "unavailable" && o != outbox_.end()) {
        ++report_.unavailable;
        report_.generated[o->second.generated].saw_unavailable = true;
        o->second.retry_at = steady::now() + options_.retry_unavailable_after;
      } else if (code == "rate_limited" && o != outbox_.end()) {
        ++report_.rate_limited;
        o->second.retry_at =
            steady::now() + std::chrono::milliseconds(j.value("retry_after_ms", 100));
      } else {
        ++report_.unexpected_errors;
        violation("unexpected error frame: " + j.dump());
        if (o != outbox_.end()) outbox_.erase(o);  // given up: counted as unacknowledged
      }
    } else if (type == "welcome") {
      welcomed_ = true;
      welcomed_once_ = true;
      node_ = j.value("node", "");
      report_.connections.back().node = node_;
      event("connection " + std::to_string(conn) + " welcomed by " + node_);
      // Resend every unacknowledged message on this connection (pump sees conn changed).
    } else if (type == "synced") {
      synced_ = true;
    }
  }

  const LoadOptions& options_;
  LoadUser user_;
  std::size_t index_;
  steady::time_point t0_;
  std::mt19937 rng_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> sending_{true};
  std::atomic<bool> welcomed_once_{false};

  mutable std::mutex mu_;
  ClientReport report_;
  std::map<std::string, Pending> outbox_;  // client_msg_id -> pending send
  std::uint64_t conn_id_ = 0;
  bool welcomed_ = false;
  bool synced_ = false;
  std::string node_;
  steady::time_point next_send_at_{};
};

// ---------------------------------------------------------------------------------------------

ChatLoad::ChatLoad(LoadOptions options, std::vector<LoadUser> users)
    : options_(std::move(options)) {
  if (options_.endpoints.empty()) throw std::invalid_argument("ChatLoad: no endpoints");
  if (options_.rooms.empty()) throw std::invalid_argument("ChatLoad: no rooms");
  if (!users.empty()) token_ = users.front().token;
  const auto t0 = steady::now();
  for (std::size_t i = 0; i < users.size(); ++i) {
    clients_.push_back(std::make_unique<Client>(options_, std::move(users[i]), i, t0));
  }
}

ChatLoad::~ChatLoad() {
  stop();
}

void ChatLoad::start() {
  for (auto& c : clients_) c->start();
}

void ChatLoad::stop_sending() {
  for (auto& c : clients_) c->stop_sending();
}

void ChatLoad::stop() {
  for (auto& c : clients_) c->stop();
}

bool ChatLoad::wait_progress(std::uint64_t acks, std::chrono::milliseconds timeout) {
  return test::eventually(
      [&] {
        for (auto& c : clients_) {
          if (!c->welcomed_once() || c->acked() < acks) return false;
        }
        return true;
      },
      timeout);
}

bool ChatLoad::wait_more_acks(std::uint64_t acks, std::chrono::milliseconds timeout) {
  std::vector<std::uint64_t> base;
  for (auto& c : clients_) base.push_back(c->acked());
  return test::eventually(
      [&] {
        for (std::size_t i = 0; i < clients_.size(); ++i) {
          if (clients_[i]->acked() < base[i] + acks) return false;
        }
        return true;
      },
      timeout);
}

bool ChatLoad::wait_quiet(const client::Endpoint& at, std::chrono::milliseconds timeout,
                          std::string& why) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    why.clear();
    for (auto& c : clients_) {
      if (!c->outbox_empty()) {
        why = c->user() + " still has unacknowledged sends";
        break;
      }
    }
    if (why.empty()) {
      std::map<std::string, std::uint64_t> last;
      try {
        // Any member may read the rooms list; the first client's token is in its report.
        last = room_last_seqs(at, token_);
      } catch (const std::exception& e) {
        why = std::string("cannot read the rooms' last_seq: ") + e.what();
      }
      for (auto& c : clients_) {
        if (!why.empty()) break;
        auto cur = c->cursors();
        for (const auto& room : options_.rooms) {
          if (cur[room] < last[room]) {
            why = c->user() + " has " + room + " up to seq " + std::to_string(cur[room]) + " of " +
                  std::to_string(last[room]) + " (connected to " +
                  (c->current_node().empty() ? std::string("no node") : c->current_node()) + ")";
            break;
          }
        }
      }
    }
    if (why.empty()) return true;
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(100ms);
  }
}

std::vector<std::string> ChatLoad::current_nodes() const {
  std::vector<std::string> out;
  for (const auto& c : clients_) out.push_back(c->current_node());
  return out;
}

std::uint64_t ChatLoad::total_acked() const {
  std::uint64_t n = 0;
  for (const auto& c : clients_) n += c->acked();
  return n;
}

std::uint64_t ChatLoad::total_unavailable() const {
  std::uint64_t n = 0;
  for (const auto& c : clients_) n += c->unavailable();
  return n;
}

std::vector<ClientReport> ChatLoad::reports() const {
  std::vector<ClientReport> out;
  for (const auto& c : clients_) out.push_back(c->snapshot());
  return out;
}

// ---------------------------------------------------------------------------------------------

std::string CheckResult::summary() const {
  std::ostringstream s;
  s << "checker: " << acked << " acknowledged messages, " << store_total << " in the store, "
    << deliveries << " deliveries; lost " << lost << ", duplicates " << duplicates
    << ", out of order " << out_of_order << ", unacknowledged " << unacked << ", undelivered "
    << undelivered << ", unexpected errors " << errors;
  if (!details.empty()) s << "\n" << details;
  return s.str();
}

CheckResult check(const std::vector<ClientReport>& reports,
                  const std::map<std::string, std::vector<nlohmann::json>>& history) {
  CheckResult r;
  std::size_t detail_lines = 0;
  auto note = [&](const std::string& line) {
    if (detail_lines++ < 40) r.details += "  " + line + "\n";
  };

  // The store: seqs 1..N without holes, each (sender, client_msg_id) once per room.
  std::map<std::string, std::map<std::uint64_t, Received>> store;
  for (const auto& [room, msgs] : history) {
    std::set<std::pair<std::string, std::string>> ids;
    std::uint64_t expect = 1;
    for (const auto& m : msgs) {
      Received x{m.value("seq", std::uint64_t{0}), m.value("from", ""),
                 m.value("client_msg_id", ""), m.value("body", "")};
      ++r.store_total;
      if (x.seq != expect) {
        ++r.out_of_order;
        note("store: room " + room + " has seq " + std::to_string(x.seq) + " where " +
             std::to_string(expect) + " was expected");
      }
      expect = x.seq + 1;
      if (!ids.insert({x.from, x.client_msg_id}).second) {
        ++r.duplicates;
        note("store: room " + room + " holds " + x.from + "'s client_msg_id " + x.client_msg_id +
             " more than once (again at seq " + std::to_string(x.seq) + ")");
      }
      store[room][x.seq] = x;
    }
  }

  for (const auto& c : reports) {
    // What the client itself noticed while it ran.
    r.duplicates += c.duplicate_deliveries + c.ack_mismatches;
    r.out_of_order += c.gaps;
    r.errors += c.unexpected_errors;
    for (const auto& v : c.violations) note(v);
    for (const auto& g : c.generated) {
      if (!g.acked) {
        ++r.unacked;
        note(c.user + ": " + g.client_msg_id + " in " + g.room + " was never acknowledged");
      }
    }
    // Every acknowledged message is in the store at its seq.
    for (const auto& [key, seq] : c.acked) {
      ++r.acked;
      const auto& [room, id] = key;
      auto s = store[room].find(seq);
      if (s == store[room].end() || s->second.from != c.user || s->second.client_msg_id != id) {
        ++r.lost;
        note("acknowledged " + c.user + "/" + id + " (" + room + " seq " + std::to_string(seq) +
             ") is not in the store at that seq" +
             (s == store[room].end() ? std::string()
                                     : " (the store has " + s->second.from + "/" +
                                           s->second.client_msg_id + " there)"));
      }
    }
    // The client's stream of each room equals the store's history, from its start cursor on.
    for (const auto& [room, stream] : c.streams) {
      r.deliveries += stream.size();
      const auto& st = store[room];
      std::uint64_t expect = c.start_cursors.count(room) ? c.start_cursors.at(room) + 1 : 1;
      for (const auto& m : stream) {
        if (m.seq != expect) {
          ++r.out_of_order;  // cannot happen: a client applies only cursor + 1
          note(c.user + ": stream of " + room + " has seq " + std::to_string(m.seq) + " where " +
               std::to_string(expect) + " was expected");
        }
        expect = m.seq + 1;
        auto s = st.find(m.seq);
        if (s == st.end() || s->second.from != m.from ||
            s->second.client_msg_id != m.client_msg_id || s->second.body != m.body) {
          ++r.out_of_order;
          note(c.user + " received " + m.from + "/" + m.client_msg_id + " as " + room + " seq " +
               std::to_string(m.seq) + " but the store has " +
               (s == st.end() ? std::string("nothing")
                              : s->second.from + "/" + s->second.client_msg_id) +
               " there");
        }
      }
    }
  }

  // Every member received every stored message; acknowledged ones missing count as lost.
  std::set<std::pair<std::string, std::uint64_t>> acked_seqs;
  for (const auto& c : reports) {
    for (const auto& [key, seq] : c.acked) acked_seqs.insert({key.first, seq});
  }
  for (const auto& c : reports) {
    for (const auto& [room, st] : store) {
      auto it = c.streams.find(room);
      const std::uint64_t have = it == c.streams.end() || it->second.empty()
                                     ? (c.start_cursors.count(room) ? c.start_cursors.at(room) : 0)
                                     : it->second.back().seq;
      std::uint64_t missing = 0, missing_acked = 0;
      std::uint64_t start = c.start_cursors.count(room) ? c.start_cursors.at(room) : 0;
      for (const auto& [seq, m] : st) {
        if (seq <= start || seq <= have) continue;
        ++missing;
        if (acked_seqs.count({room, seq})) ++missing_acked;
      }
      if (missing > 0) {
        r.undelivered += missing;
        r.lost += missing_acked;
        note(c.user + " never received " + std::to_string(missing) + " messages of " + room +
             " (seq " + std::to_string(have + 1) + ".." + std::to_string(st.rbegin()->first) +
             "), " + std::to_string(missing_acked) + " of them acknowledged");
      }
    }
  }
  if (detail_lines > 40) {
    r.details += "  … and " + std::to_string(detail_lines - 40) + " more\n";
  }
  return r;
}

std::string describe_run(const std::vector<ClientReport>& reports) {
  std::map<std::string, std::uint64_t> welcomed_by;
  std::map<int, std::uint64_t> closes;
  std::uint64_t connections = 0, sends = 0, resends = 0, unavailable = 0, rate_limited = 0,
                connect_failures = 0, acked = 0, with_unavailable_then_acked = 0;
  for (const auto& c : reports) {
    for (const auto& k : c.connections) {
      ++connections;
      ++welcomed_by[k.node.empty() ? "(no welcome)" : k.node];
      if (k.closed_ms >= 0) ++closes[k.close_code];
    }
    sends += c.sends;
    resends += c.resends;
    unavailable += c.unavailable;
    rate_limited += c.rate_limited;
    connect_failures += c.connect_failures;
    acked += c.acked.size();
    for (const auto& g : c.generated) {
      if (g.saw_unavailable && g.acked) ++with_unavailable_then_acked;
    }
  }
  std::ostringstream s;
  s << reports.size() << " clients, " << connections << " connections (";
  bool first = true;
  for (const auto& [node, n] : welcomed_by) {
    s << (first ? "" : ", ") << node << ": " << n;
    first = false;
  }
  s << "), closes by code {";
  first = true;
  for (const auto& [code, n] : closes) {
    s << (first ? "" : ", ") << code << ": " << n;
    first = false;
  }
  s << "}, " << connect_failures << " failed connects, " << sends << " send frames (" << resends
    << " resends), " << acked << " acks, " << unavailable << " unavailable, " << rate_limited
    << " rate_limited, " << with_unavailable_then_acked
    << " messages acknowledged after an unavailable";
  return s.str();
}

}  // namespace parley::cluster
