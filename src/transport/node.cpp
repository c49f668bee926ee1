#include "transport/node.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <charconv>
#include <chrono>
#include <iterator>
#include <optional>
#include <string_view>

#include "protocol/messages.hpp"
#include "store/store_metrics.hpp"
#include "transport/admin_api.hpp"
#include "transport/history.hpp"
#include "transport/shard.hpp"
#include "transport/ws_session.hpp"

namespace parley::transport {

namespace asio = boost::asio;

namespace {
constexpr std::size_t kMaxCachedTokens = 100000;
// The bus topic every node subscribes to for logouts and account deletions (token revocations).
constexpr std::string_view kRevocationsTopic = "revocations";

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The wire name of each UserEvent kind, one row per kind, read in both directions so that the
// encoder and the decoder cannot drift apart.
struct UserEventKindName {
  UserEvent::Kind kind;
  std::string_view name;
};
constexpr UserEventKindName kUserEventKinds[] = {
    {UserEvent::Kind::joined, "joined"},
    {UserEvent::Kind::left, "left"},
    {UserEvent::Kind::read, "read"},
    {UserEvent::Kind::logout, "logout"},
    {UserEvent::Kind::invitation, "invitation"},
    {UserEvent::Kind::deleted, "deleted"},
};
// A kind without a row would be sent with an empty name and dropped by every receiver. This
// counts the rows against the last kind, so a new kind goes last and becomes the one named here.
static_assert(std::size(kUserEventKinds) == static_cast<std::size_t>(UserEvent::Kind::deleted) + 1,
              "kUserEventKinds needs one row per UserEvent::Kind");

std::string_view user_event_kind_name(UserEvent::Kind kind) {
  for (const auto& row : kUserEventKinds) {
    if (row.kind == kind) return row.name;
  }
  return {};
}

std::optional<UserEvent::Kind> user_event_kind(std::string_view name) {
  for (const auto& row : kUserEventKinds) {
    if (row.name == name) return row.kind;
  }
  return std::nullopt;
}

std::string user_event_json(const UserEvent& ev) {
  std::string out = "{\"kind\":\"";
  out += user_event_kind_name(ev.kind);
  out += '"';
  auto field = [&out](const char* name, const std::string& v) {
    out += ",\"";
    out += name;
    out += "\":";
    protocol::append_json_string(out, v);
  };
  field("user", ev.user);
  field("room", ev.room);
  out += ",\"seq\":" + std::to_string(ev.seq);
  field("by", ev.by);
  field("token_hash", ev.token_hash);
  field("origin_session", ev.origin_session);
  out += '}';
  return out;
}

std::shared_ptr<const UserEvent> parse_user_event(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject()) return nullptr;
  auto str = [&d](const char* k) -> std::string {
    auto it = d.FindMember(k);
    return it != d.MemberEnd() && it->value.IsString()
               ? std::string(it->value.GetString(), it->value.GetStringLength())
               : std::string();
  };
  auto ev = std::make_shared<UserEvent>();
  auto kind = user_event_kind(str("kind"));
  if (!kind) return nullptr;
  ev->kind = *kind;
  ev->user = str("user");
  ev->room = str("room");
  auto seq = d.FindMember("seq");
  if (seq != d.MemberEnd() && seq->value.IsUint64()) ev->seq = seq->value.GetUint64();
  ev->by = str("by");
  ev->token_hash = str("token_hash");
  ev->origin_session = str("origin_session");
  return ev;
}
}  // namespace

NodeMetrics::NodeMetrics(metrics::Registry& r)
    : connections(r.gauge("parley_websocket_connections", "Open WebSocket connections.")),
      sessions(r.gauge("parley_sessions_authenticated", "Authenticated WebSocket sessions.")),
      received(
          r.counter("parley_messages_received_total", "Chat messages received (send requests).")),
      delivered(r.counter("parley_messages_delivered_total",
                          "Chat messages delivered to sessions (one per recipient).")),
      rejected_bad_request(r.counter("parley_requests_rejected_total",
                                     "Requests rejected, by reason.", {{"reason", "bad_request"}})),
      rejected_forbidden(r.counter("parley_requests_rejected_total",
                                   "Requests rejected, by reason.", {{"reason", "forbidden"}})),
      rejected_rate_limited(r.counter("parley_requests_rejected_total",
                                      "Requests rejected, by reason.",
                                      {{"reason", "rate_limited"}})),
      rejected_unavailable(r.counter("parley_requests_rejected_total",
                                     "Requests rejected, by reason.", {{"reason", "unavailable"}})),
      rejected_other(r.counter("parley_requests_rejected_total", "Requests rejected, by reason.",
                               {{"reason", "other"}})),
      send_to_ack(r.histogram("parley_send_to_ack_seconds",
                              "Time from a send request to its ack (commit included).",
                              metrics::latency_buckets())),
      delivery_latency(r.histogram("parley_delivery_latency_seconds",
                                   "Time from a message's commit to its hand-over to this node's "
                                   "sessions (includes the bus).",
                                   metrics::latency_buckets())),
      gap_repairs(
          r.counter("parley_gap_repairs_total", "Gaps in a room's seq filled from the store.")),
      slow_consumer_closes(
          r.counter("parley_slow_consumer_closes_total",
                    "Connections closed 1008 because their write backlog passed the limit.")),
      cache_hits(r.counter("parley_recent_cache_hits_total",
                           "Resume and history reads served by the recent-message cache.")),
      cache_misses(r.counter("parley_recent_cache_misses_total",
                             "Resume and history reads that went to the store.")),
      bus_published(r.counter("parley_bus_published_total", "Events published to the bus.")),
      bus_consumed(r.counter("parley_bus_consumed_total", "Events received from the bus.")),
      ws_closes_protocol(r.counter("parley_websocket_protocol_errors_total",
                                   "Connections closed for a WebSocket protocol violation.")),
      store_append(
          *store::StoreMetrics(r).latency[static_cast<std::size_t>(store::StoreOp::append)]) {}

Node::Node(Options opts, store::Store& store, bus::Bus& bus, metrics::Registry& registry)
    : opts_(std::move(opts)),
      store_(store),
      bus_(bus),
      registry_(registry),
      metrics_(registry),
      rate_limiter_(opts_.send_rate),
      typing_limiter_(opts_.typing_rate),
      cache_(opts_.cache_per_room, opts_.cache_rooms),
      hash_pool_(opts_.hash_threads) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  unsigned n = std::max(1u, opts_.threads);
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(*this, i));
  registry_.callback_gauge("parley_bus_connected", "1 while the bus is connected.",
                           [this] { return bus_.state() == bus::State::connected ? 1.0 : 0.0; });
  registry_.callback_gauge("parley_store_ready", "1 while the store answers.",
                           [this] { return store_.ready() ? 1.0 : 0.0; });
  registry_.callback_gauge("parley_draining", "1 while the node drains after SIGTERM.",
                           [this] { return draining() ? 1.0 : 0.0; });
}

Node::~Node() {
  stop();
  join();
}

Shard& Node::next_shard() {
  return *shards_[next_shard_++ % shards_.size()];
}

void Node::start() {
  bus_.start([this](std::vector<bus::EventPtr> batch) { on_bus_events(std::move(batch)); },
             [this] { on_bus_resync(); });
  bus_.subscribe("presence");
  bus_.subscribe("node");
  bus_.subscribe(std::string(kRevocationsTopic));
  unsigned char raw[8];
  randombytes_buf(raw, sizeof raw);
  char hex[17];
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  incarnation_ = hex;
  heartbeat_timer_ = std::make_unique<asio::steady_timer>(shards_[0]->ioc());
  publish_node_event(false);
  heartbeat_tick();
  for (auto& s : shards_) {
    threads_.emplace_back([shard = s.get()] {
      auto guard = asio::make_work_guard(shard->ioc());
      shard->ioc().run();
    });
  }
}

void Node::stop() {
  for (auto& s : shards_) s->ioc().stop();
}

void Node::log_state_changes() {
  const auto bus_state = bus_.state();
  if (logged_bus_state_ != bus_state) {
    const char* name = bus_state == bus::State::connected    ? "connected"
                       : bus_state == bus::State::connecting ? "connecting"
                                                             : "disconnected";
    if (logged_bus_state_ || bus_state != bus::State::connected) {
      spdlog::log(bus_state == bus::State::connected ? spdlog::level::info : spdlog::level::warn,
                  "node {}: bus state {}", opts_.node_id, name);
    }
    logged_bus_state_ = bus_state;
  }
  const bool store_ready = store_.ready();
  if (logged_store_ready_ != store_ready) {
    if (logged_store_ready_ || !store_ready) {
      spdlog::log(store_ready ? spdlog::level::info : spdlog::level::warn, "node {}: store {}",
                  opts_.node_id, store_ready ? "ready" : "unavailable");
    }
    logged_store_ready_ = store_ready;
  }
}

void Node::heartbeat_tick() {
  log_state_changes();
  // Peers silent for longer than the timeout are taken for dead: their users go offline here.
  std::vector<std::string> dead;
  {
    std::lock_guard lock(peers_mu_);
    auto now = std::chrono::steady_clock::now();
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (now - it->second.last_seen > opts_.node_timeout) {
        dead.push_back(it->first);
        it = peers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& n : dead) {
    auto users = presence_.drop_node(n);
    spdlog::warn("node {} stopped heartbeating: {} of its users went offline", n, users.size());
    deliver_presence_changes(users);
  }
  publish_node_event(false);
  heartbeat_timer_->expires_after(opts_.heartbeat_interval);
  heartbeat_timer_->async_wait([this](boost::system::error_code ec) {
    if (!ec) heartbeat_tick();
  });
}

void Node::publish_node_event(bool snapshot) {
  auto ev = std::make_shared<bus::Event>();
  ev->kind = bus::EventKind::node;
  ev->topic = "node";
  ev->origin_node = opts_.node_id;
  std::string p = "{\"incarnation\":\"" + incarnation_ + "\"";
  if (snapshot) {
    // The users online here, for a peer that has just appeared and knows nothing of them.
    p += ",\"users\":[";
    bool first = true;
    for (const auto& u : presence_.users_on(opts_.node_id)) {
      if (!first) p += ',';
      first = false;
      protocol::append_json_string(p, u);
    }
    p += ']';
  } else {
    // This node's figures, for the admin dashboard on whichever node serves it.
    p += ",\"stats\":" + collect_node_stats(*this);
  }
  p += '}';
  ev->payload = std::move(p);
  bus_.publish(std::move(ev));
}

std::vector<std::string> Node::on_node_event(const bus::Event& ev) {
  if (ev.origin_node == opts_.node_id) return {};
  rapidjson::Document d;
  d.Parse(ev.payload.data(), ev.payload.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("incarnation") ||
      !d["incarnation"].IsString()) {
    return {};
  }
  std::string incarnation = d["incarnation"].GetString();
  bool is_new = false;
  std::vector<std::string> changed;
  {
    std::lock_guard lock(peers_mu_);
    auto& peer = peers_[ev.origin_node];
    is_new = peer.incarnation != incarnation;
    peer.incarnation = incarnation;
    peer.last_seen = std::chrono::steady_clock::now();
    if (is_new) peer.stats.clear();
    auto stats = d.FindMember("stats");
    if (stats != d.MemberEnd() && stats->value.IsObject()) {
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w(buf);
      stats->value.Accept(w);
      peer.stats.assign(buf.GetString(), buf.GetSize());
    }
  }
  if (is_new) {
    // A node we did not know, or one that restarted: forget what it had, and tell it who is
    // online here (it tells us likewise when it sees our heartbeat as new).
    changed = presence_.drop_node(ev.origin_node);
    publish_node_event(true);
  }
  auto users = d.FindMember("users");
  if (users != d.MemberEnd() && users->value.IsArray()) {
    for (const auto& u : users->value.GetArray()) {
      if (u.IsString() && presence_.set_remote(ev.origin_node, u.GetString(), true)) {
        changed.push_back(u.GetString());
      }
    }
  }
  return changed;
}

void Node::deliver_presence_changes(const std::vector<std::string>& users) {
  if (users.empty()) return;
  auto deliveries = std::make_shared<std::vector<Delivery>>();
  for (const auto& u : users) {
    auto ev = std::make_shared<bus::Event>();
    ev->kind = bus::EventKind::presence;
    ev->user = u;
    Delivery d;
    d.presence_user = u;
    d.presence_online = presence_.online(u);
    d.frame = make_text_frame(protocol::encode_presence(u, d.presence_online));
    d.event = std::move(ev);
    deliveries->push_back(std::move(d));
  }
  for (auto& s : shards_) {
    asio::post(s->ioc(), [shard = s.get(), deliveries] { shard->on_deliveries(*deliveries); });
  }
}

void Node::join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  // Only now: the timer belongs to shard 0's thread while it runs.
  heartbeat_timer_.reset();
  hash_pool_.join();
}

bool Node::ready() const {
  return !draining() && store_.ready() && bus_.state() == bus::State::connected;
}

std::string Node::readiness_report() const {
  std::string out;
  out += draining() ? "draining: yes\n" : "draining: no\n";
  out += store_.ready() ? "store: ready\n" : "store: unavailable\n";
  switch (bus_.state()) {
    case bus::State::connected:
      out += "bus: connected\n";
      break;
    case bus::State::connecting:
      out += "bus: connecting\n";
      break;
    case bus::State::disconnected:
      out += "bus: disconnected\n";
      break;
  }
  return out;
}

void Node::retain_topic(const std::string& topic) {
  std::lock_guard lock(topics_mu_);
  if (topic_refs_[topic]++ == 0) bus_.subscribe(topic);
}

void Node::release_topic(const std::string& topic) {
  std::lock_guard lock(topics_mu_);
  auto it = topic_refs_.find(topic);
  if (it == topic_refs_.end()) return;
  if (--it->second == 0) {
    topic_refs_.erase(it);
    bus_.unsubscribe(topic);
    // Without a subscription the room's cached run would silently fall behind the store.
    if (topic.rfind("room.", 0) == 0) cache_.clear_room(topic.substr(5));
  }
}

std::string Node::hash_token(std::string_view token) {
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(token.data()), token.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, out, sizeof out);
  return std::string(hex, crypto_hash_sha256_BYTES * 2);
}

void Node::authenticate(const std::string& token,
                        std::function<void(Result<store::TokenInfo>)> cb) {
  const std::string h = hash_token(token);
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(tokens_mu_);
    generation = revocations_;
    auto it = token_cache_.find(h);
    if (it != token_cache_.end()) {
      if (it->second.info.expires_at > now_s() &&
          std::chrono::steady_clock::now() - it->second.cached_at < opts_.token_cache_ttl) {
        auto info = it->second.info;
        cb(std::move(info));
        return;
      }
      token_cache_.erase(it);
    }
  }
  look_up_token(h, generation, /*retry=*/true, std::move(cb));
}

void Node::look_up_token(const std::string& h, std::uint64_t generation, bool retry,
                         std::function<void(Result<store::TokenInfo>)> cb) {
  store_.lookup_token(
      h, [this, h, generation, retry, cb = std::move(cb)](Result<store::TokenInfo> r) mutable {
        if (r && r->expires_at <= now_s()) {
          cb(unexpected(make_error_code(store::StoreErrc::not_found)));
          return;
        }
        if (r) {
          std::unique_lock lock(tokens_mu_);
          if (revocations_ != generation) {
            // A logout or deletion arrived while the store was read: the answer may predate it. Its
            // event is published after its commit, so a second read sees it. Nothing is cached from
            // a read that a revocation overtook.
            const std::uint64_t now_generation = revocations_;
            lock.unlock();
            if (retry) {
              look_up_token(h, now_generation, /*retry=*/false, std::move(cb));
            } else {
              cb(std::move(r));
            }
            return;
          }
          // A lifetime of 0 turns the cache off: every authentication reads the store.
          if (opts_.token_cache_ttl.count() > 0) {
            if (token_cache_.size() >= kMaxCachedTokens) token_cache_.clear();
            token_cache_[h] = CachedToken{*r, std::chrono::steady_clock::now()};
          }
        }
        cb(std::move(r));
      });
}

std::vector<std::string> Node::peer_stats() {
  std::vector<std::string> out;
  std::lock_guard lock(peers_mu_);
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [id, peer] : peers_) {
    if (!peer.stats.empty() && now - peer.last_seen <= opts_.node_timeout)
      out.push_back(peer.stats);
  }
  return out;
}

void Node::forget_token(const std::string& token_hash) {
  std::lock_guard lock(tokens_mu_);
  ++revocations_;
  token_cache_.erase(token_hash);
}

void Node::forget_user_tokens(const std::string& user) {
  // A walk over the whole cache: deletions are rare, and an index by user would cost memory
  // and upkeep on every authentication.
  std::lock_guard lock(tokens_mu_);
  ++revocations_;
  std::erase_if(token_cache_, [&user](const auto& kv) { return kv.second.info.user == user; });
}

void Node::publish_message(const store::StoredMessage& m) {
  auto ev = std::make_shared<bus::Event>();
  ev->kind = bus::EventKind::message;
  ev->topic = bus::room_topic(m.room);
  ev->room = m.room;
  ev->seq = m.seq;
  ev->origin_node = opts_.node_id;
  ev->payload = message_json(m);
  // Cached before the ack is sent, so a history read right after an ack on this node sees the
  // message (the bus's copy, arriving later, is then a no-op for the cache).
  cache_.put(m.room, {m.seq, {}, {}, 0, {}, std::shared_ptr<const std::string>(ev, &ev->payload)});
  metrics_.bus_published.inc();
  bus_.publish(std::move(ev));
}

void Node::publish_typing(const std::string& room, const std::string& user) {
  auto ev = std::make_shared<bus::Event>();
  ev->kind = bus::EventKind::typing;
  ev->topic = bus::room_topic(room);
  ev->room = room;
  ev->user = user;
  ev->origin_node = opts_.node_id;
  ev->payload = protocol::encode_typing(room, user);
  metrics_.bus_published.inc();
  bus_.publish(std::move(ev));
}

void Node::publish_user_event(const UserEvent& uev) {
  auto ev = std::make_shared<bus::Event>();
  ev->kind = bus::EventKind::user;
  ev->topic = bus::user_topic(uev.user);
  ev->user = uev.user;
  ev->origin_node = opts_.node_id;
  ev->payload = user_event_json(uev);
  if (uev.kind == UserEvent::Kind::logout || uev.kind == UserEvent::Kind::deleted) {
    // The user's topic reaches only the nodes where the user has a session; a token cached by
    // any other node (an HTTP request, a session since closed) must die too. Every node listens
    // on the revocations topic. Logouts and deletions are rare, so the copy costs nothing.
    auto revocation = std::make_shared<bus::Event>(*ev);
    revocation->topic = std::string(kRevocationsTopic);
    metrics_.bus_published.inc();
    bus_.publish(std::move(revocation));
  }
  metrics_.bus_published.inc();
  bus_.publish(std::move(ev));
}

void Node::session_opened(const std::string& user) {
  if (!presence_.session_opened(opts_.node_id, user)) return;
  auto ev = std::make_shared<bus::Event>();
  ev->kind = bus::EventKind::presence;
  ev->topic = "presence";
  ev->user = user;
  ev->origin_node = opts_.node_id;
  ev->payload = "{\"online\":true}";
  metrics_.bus_published.inc();
  bus_.publish(std::move(ev));
}

void Node::session_closed(const std::string& user) {
  if (!presence_.session_closed(opts_.node_id, user)) return;
  auto ev = std::make_shared<bus::Event>();
  ev->kind = bus::EventKind::presence;
  ev->topic = "presence";
  ev->user = user;
  ev->origin_node = opts_.node_id;
  ev->payload = "{\"online\":false}";
  metrics_.bus_published.inc();
  bus_.publish(std::move(ev));
}

void Node::on_bus_events(std::vector<bus::EventPtr> batch) {
  metrics_.bus_consumed.inc(batch.size());
  auto deliveries = std::make_shared<std::vector<Delivery>>();
  deliveries->reserve(batch.size());
  for (auto& ev : batch) {
    Delivery d;
    switch (ev->kind) {
      case bus::EventKind::message:
        // The cache is filled here, before any shard sees the message, so that it always reaches
        // at least as far as what the shards have delivered.
        cache_.put(ev->room,
                   {ev->seq, {}, {}, 0, {}, std::shared_ptr<const std::string>(ev, &ev->payload)});
        d.frame = make_text_frame(ev->payload);
        observe_delivery_latency(ev->payload);
        break;
      case bus::EventKind::typing:
        d.frame = make_text_frame(ev->payload);
        break;
      case bus::EventKind::user:
        d.user_event = parse_user_event(ev->payload);
        if (!d.user_event) continue;
        if (ev->topic == kRevocationsTopic) {
          // Only the token cache listens here; the sessions hear it on the user's topic.
          if (d.user_event->kind == UserEvent::Kind::logout) forget_token(d.user_event->token_hash);
          if (d.user_event->kind == UserEvent::Kind::deleted) {
            forget_user_tokens(d.user_event->user);
          }
          continue;
        }
        break;
      case bus::EventKind::presence: {
        bool online = ev->payload.find("true") != std::string::npos;
        // Our own sessions already updated the table; another node's change is applied here.
        if (ev->origin_node != opts_.node_id &&
            !presence_.set_remote(ev->origin_node, ev->user, online)) {
          continue;
        }
        d.presence_user = ev->user;
        d.presence_online = presence_.online(ev->user);
        d.frame = make_text_frame(protocol::encode_presence(ev->user, d.presence_online));
        break;
      }
      case bus::EventKind::node:
        deliver_presence_changes(on_node_event(*ev));
        continue;
    }
    d.event = std::move(ev);
    deliveries->push_back(std::move(d));
  }
  if (deliveries->empty()) return;
  for (auto& s : shards_) {
    asio::post(s->ioc(), [shard = s.get(), deliveries] { shard->on_deliveries(*deliveries); });
  }
}

void Node::observe_delivery_latency(const std::string& payload) {
  // The commit time is the frame's "ts" (unix ms, set by the store); reading it back with a scan
  // costs far less than carrying another field through every bus adapter.
  auto pos = payload.rfind(",\"ts\":");
  if (pos == std::string::npos) return;
  std::int64_t ts = 0;
  const char* p = payload.data() + pos + 6;
  auto [end, ec] = std::from_chars(p, payload.data() + payload.size(), ts);
  if (ec != std::errc() || end == p) return;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  metrics_.delivery_latency.observe(std::max<std::int64_t>(0, now - ts) / 1000.0);
}

void Node::on_bus_resync() {
  spdlog::info("bus reconnected: re-syncing local rooms from the store");
  // Messages published while the bus was away never reached the cache: its runs may have holes.
  cache_.clear_all();
  for (auto& s : shards_) {
    asio::post(s->ioc(), [shard = s.get()] { shard->resync_rooms(); });
  }
}

}  // namespace parley::transport
