#include "transport/ws_session.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <span>

#include "core/names.hpp"
#include "core/throttle.hpp"
#include "transport/history.hpp"
#include "transport/shard.hpp"

namespace parley::transport {

namespace asio = boost::asio;
namespace ws = protocol::ws;
using protocol::ErrorCode;

namespace {
// Reads per readiness notification before other sessions get their turn: a client streaming
// requests cannot starve the shard, and the next wait fires again at once if bytes remain.
constexpr std::size_t kMaxReadsPerWakeup = 4;
// The unfinished-frame bytes a session keeps between reads are at most a frame header or a
// control frame (the parser consumes text payload as it arrives); a buffer that grew past this
// is released once empty, so that an idle connection holds no read buffer.
constexpr std::size_t kKeepReadCapacity = 256;
constexpr std::size_t kMaxIov = 64;  // frames per gathered write (one writev)
constexpr auto kCloseGrace = std::chrono::seconds(2);
// Live messages held for one room while it catches up; past this the held copies are dropped
// and the catch-up reads them from the cache or the store instead (bounded memory per session).
constexpr std::size_t kMaxHeld = 4096;
// User events kept for a session between its registration and its welcome (one room-list read,
// normally a millisecond). Past this they are dropped and the list is read again, which is safe:
// an event is published only after its change has committed, so the new read sees it.
constexpr std::size_t kMaxEarlyEvents = 1024;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ErrorCode to_protocol(std::error_code ec) {
  using store::StoreErrc;
  if (ec == StoreErrc::not_found) return ErrorCode::not_found;
  if (ec == StoreErrc::conflict) return ErrorCode::conflict;
  if (ec == StoreErrc::forbidden) return ErrorCode::forbidden;
  if (ec == StoreErrc::unavailable) return ErrorCode::unavailable;
  return ErrorCode::internal;
}

std::string store_error_message(std::error_code ec) {
  using store::StoreErrc;
  if (ec == StoreErrc::unavailable) return "the store is unavailable: nothing was stored; retry";
  return ec.message();
}

std::atomic<std::uint64_t> g_session_counter{0};
}  // namespace

WsSession::WsSession(Node& node, Shard& shard, asio::ip::tcp::socket socket, std::string initial,
                     std::string remote)
    : node_(node),
      shard_(shard),
      socket_(std::move(socket)),
      remote_(std::move(remote)),
      parser_(ws::ParserLimits{node.options().max_frame_bytes}),
      timer_(shard.ioc()) {
  // Bytes read past the upgrade request are parsed by start(); no read buffer is allocated
  // here, because reads go through the shard's scratch buffer (see on_readable).
  rbuf_ = std::move(initial);
  session_id_ = node.options().node_id + "/" + std::to_string(++g_session_counter);
  node_.metrics().connections.inc();
}

WsSession::~WsSession() {
  node_.metrics().connections.dec();
  // The upgrade counted this connection against its address (core::Throttle).
  node_.throttle().ip_connections().release(core::address_of(remote_));
}

template <class Fn>
void WsSession::post_self(Fn&& fn) {
  asio::post(shard_.ioc(),
             [self = shared_from_this(), fn = std::forward<Fn>(fn)]() mutable { fn(*self); });
}

void WsSession::start() {
  shard_.add_session(this);
  timer_.expires_after(node_.options().auth_timeout);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->state_ == State::live || self->state_ == State::closing) return;
    spdlog::info("ws {}: no auth within the timeout, closing", self->remote_);
    self->send_error(std::nullopt, ErrorCode::unauthorized, "authentication timed out");
    self->close(ws::close_code::policy_violation, "authentication timed out");
  });
  // Reads are done by hand when the socket is readable (on_readable); they must not block.
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    spdlog::warn("ws {}: cannot make the socket non-blocking: {}", remote_, ec.message());
    state_ = State::closing;
    detach();
    finish_close();
    return;
  }
  if (!rbuf_.empty()) process_input({});
  do_read();
}

// ---------------------------------------------------------------------------------------------
// Reading

void WsSession::do_read() {
  if (socket_closed_) return;
  // Wait for readability without a buffer: a pending async_read_some would pin a buffer per
  // connection for as long as the client stays silent, which for idle connections is almost
  // all of their memory.
  socket_.async_wait(asio::ip::tcp::socket::wait_read,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       if (ec) {
                         self->on_peer_gone();
                         return;
                       }
                       self->on_readable();
                     });
}

void WsSession::on_peer_gone() {
  // The peer went away (or we closed the socket): forget the session.
  if (state_ != State::closing) {
    state_ = State::closing;
    detach();
  }
  finish_close();
}

void WsSession::on_readable() {
  // Every session of the shard reads into the same scratch buffer; what is parsed out of it is
  // copied into events, and only an unfinished frame's bytes stay with the session (rbuf_).
  std::span<char> scratch = shard_.read_scratch();
  for (std::size_t i = 0; i < kMaxReadsPerWakeup && !socket_closed_; ++i) {
    boost::system::error_code ec;
    std::size_t n = socket_.read_some(asio::buffer(scratch.data(), scratch.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec) {
      on_peer_gone();
      return;
    }
    process_input(std::string_view(scratch.data(), n));
    // A short read means the socket's receive queue is empty: no need to try again.
    if (n < scratch.size()) break;
  }
  do_read();
}

void WsSession::process_input(std::string_view fresh) {
  if (parser_.failed()) {
    // After a close or error nothing more is parsed; discard what arrives.
    rbuf_ = std::string();
    return;
  }
  events_.clear();
  if (rbuf_.empty()) {
    // The common case: parse straight from the scratch buffer, keep only the unconsumed tail.
    std::size_t used = parser_.feed(fresh, events_);
    if (used < fresh.size()) rbuf_.assign(fresh.data() + used, fresh.size() - used);
  } else {
    rbuf_.append(fresh);
    std::size_t used = parser_.feed(rbuf_, events_);
    rbuf_.erase(0, used);
  }
  if (rbuf_.empty() && rbuf_.capacity() > kKeepReadCapacity) rbuf_ = std::string();
  for (auto& ev : events_) {
    if (state_ == State::closing) break;
    switch (ev.kind) {
      case ws::FrameEvent::Kind::text:
        on_text(ev.data);
        break;
      case ws::FrameEvent::Kind::ping:
        enqueue(std::make_shared<const std::string>(ws::make_frame(ws::Opcode::pong, ev.data)));
        break;
      case ws::FrameEvent::Kind::pong:
        break;
      case ws::FrameEvent::Kind::close:
        // Echo the peer's code as RFC 6455 suggests (1000 when it sent none).
        close(ev.code == 1005 ? ws::close_code::normal : ev.code, "");
        break;
      case ws::FrameEvent::Kind::error:
        node_.metrics().ws_closes_protocol.inc();
        spdlog::info("ws {}: closing {}: {}", remote_, ev.code, ev.data);
        close(ev.code, ev.data);
        break;
    }
  }
  // The events hold copies of the requests (an auth frame carries a token): free them now
  // rather than at the next read, which for an idle connection may be minutes away.
  events_.clear();
  if (events_.capacity() > 4) events_ = {};
}

void WsSession::on_text(std::string_view text) {
  switch (state_) {
    case State::awaiting_auth: {
      auto env = protocol::decode_request(text, node_.options().protocol);
      if (!env || !std::holds_alternative<protocol::AuthReq>(env->request)) {
        send_error(env ? env->ref : env.error().ref, ErrorCode::unauthorized,
                   "the first frame must be {\"type\":\"auth\",\"token\":...}");
        close(ws::close_code::policy_violation, "unauthorized");
        return;
      }
      state_ = State::authenticating;
      handle_auth(env->ref, std::get<protocol::AuthReq>(std::move(env->request)));
      return;
    }
    case State::authenticating:
      if (pending_frames_.size() >= node_.options().max_pipelined) {
        close(ws::close_code::policy_violation, "too many requests before welcome");
        return;
      }
      pending_frames_.emplace_back(text);
      return;
    case State::live: {
      auto env = protocol::decode_request(text, node_.options().protocol);
      if (!env) {
        send_error(env.error().ref, env.error().code, env.error().message);
        return;
      }
      handle(std::move(*env));
      return;
    }
    case State::closing:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

void WsSession::send_json(std::string json) {
  enqueue(make_text_frame(json));
}

void WsSession::send_error(const std::optional<std::string>& ref, ErrorCode code,
                           std::string_view message, std::optional<std::uint64_t> retry_after) {
  auto& m = node_.metrics();
  switch (code) {
    case ErrorCode::bad_request:
    case ErrorCode::too_large:
      m.rejected_bad_request.inc();
      break;
    case ErrorCode::forbidden:
    case ErrorCode::unauthorized:
      m.rejected_forbidden.inc();
      break;
    case ErrorCode::rate_limited:
      m.rejected_rate_limited.inc();
      break;
    case ErrorCode::unavailable:
      m.rejected_unavailable.inc();
      break;
    default:
      m.rejected_other.inc();
  }
  send_json(protocol::encode_error(ref, code, message, retry_after));
}

void WsSession::enqueue(std::shared_ptr<const std::string> frame, bool replay) {
  if (close_queued_ || socket_closed_) return;
  if (!replay && state_ == State::live &&
      live_bytes_ + frame->size() > node_.options().write_queue_bytes) {
    node_.metrics().slow_consumer_closes.inc();
    spdlog::info("ws {} ({}): slow consumer, {} bytes queued", remote_, user_, queued_bytes_);
    close(ws::close_code::policy_violation, "slow consumer", true);
    return;
  }
  queued_bytes_ += frame->size();
  if (!replay) live_bytes_ += frame->size();
  queue_.push_back({std::move(frame), replay});
  schedule_flush();
}

void WsSession::schedule_flush() {
  // The flush runs after the handlers already queued on this thread, so every frame they add
  // leaves in the same gathered write.
  if (flush_posted_ || in_flight_ > 0) return;
  flush_posted_ = true;
  asio::post(shard_.ioc(), [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->flush();
  });
}

void WsSession::flush() {
  if (in_flight_ > 0 || queue_.empty() || socket_closed_) return;
  std::size_t n = std::min(queue_.size(), kMaxIov);
  // async_write keeps its own copy of the buffer list, so the staging vector can be the
  // shard's rather than one per session.
  std::vector<asio::const_buffer>& iov = shard_.iov_scratch();
  iov.clear();
  for (std::size_t i = 0; i < n; ++i) iov.emplace_back(asio::buffer(*queue_[i].frame));
  in_flight_ = n;
  asio::async_write(socket_, iov,
                    [self = shared_from_this(), n](boost::system::error_code ec, std::size_t) {
                      if (ec) {
                        self->in_flight_ = 0;
                        self->finish_close();
                        return;
                      }
                      self->on_written(n);
                    });
}

void WsSession::on_written(std::size_t frames) {
  for (std::size_t i = 0; i < frames; ++i) {
    pop_queued(false);
  }
  in_flight_ = 0;
  if (!replay_waiting_.empty() && queued_bytes_ <= node_.options().write_queue_bytes / 2) {
    auto rooms = std::move(replay_waiting_);
    replay_waiting_.clear();
    for (const auto& r : rooms) fetch_gap(r);
  }
  if (!queue_.empty()) {
    flush();
    return;
  }
  if (close_queued_) {
    // Our close frame is out: half-close and wait (bounded by the timer) for the peer's.
    boost::system::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }
}

void WsSession::WriteQueue::pop_front() {
  items_[head_++].frame.reset();
  if (empty()) {
    reset();
  } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
    // A queue that never drains completely (a steady stream) still reuses its space.
    items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void WsSession::WriteQueue::reset() {
  // A few slots are kept for the next frames; a buffer grown by a burst is released.
  constexpr std::size_t kKeepSlots = 8;
  head_ = 0;
  if (items_.capacity() > kKeepSlots) {
    items_ = std::vector<Queued>();
  } else {
    items_.clear();
  }
}

void WsSession::pop_queued(bool back) {
  const Queued& q = back ? queue_.back() : queue_.front();
  queued_bytes_ -= q.frame->size();
  if (!q.replay) live_bytes_ -= q.frame->size();
  if (back) {
    queue_.pop_back();
  } else {
    queue_.pop_front();
  }
}

void WsSession::close(std::uint16_t code, std::string_view reason, bool discard_queued) {
  if (state_ == State::closing) return;
  state_ = State::closing;
  // Leave the shard's tables in a posted handler: close() may run inside a fan-out loop over
  // those very tables, and deliveries to a closing session are ignored meanwhile.
  asio::post(shard_.ioc(), [self = shared_from_this()] { self->detach(); });
  if (discard_queued) {
    while (queue_.size() > in_flight_) pop_queued(true);
  }
  auto frame = std::make_shared<const std::string>(ws::make_close_frame(code, reason));
  queued_bytes_ += frame->size();
  queue_.push_back({std::move(frame), true});
  close_queued_ = true;
  schedule_flush();
  timer_.cancel();
  timer_.expires_after(kCloseGrace);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->finish_close();
  });
}

void WsSession::finish_close() {
  if (socket_closed_) return;
  socket_closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  timer_.cancel();
}

void WsSession::detach() {
  shard_.remove_session(this);
  if (!listening_) return;
  listening_ = false;
  node_.throttle().user_connections().release(user_);
  for (auto& [room, rs] : rooms_) {
    if (rs.counts_for_synced) --syncing_rooms_;
    shard_.remove_room_member(room, this);
  }
  rooms_.clear();
  for (const auto& [u, status] : watching_) shard_.remove_watcher(u, this);
  watching_.clear();
  shard_.remove_user_session(user_, this);
  early_events_.clear();
  if (!registered_) return;  // closed before its welcome
  registered_ = false;
  node_.session_closed(user_);
  node_.metrics().sessions.dec();
}

// ---------------------------------------------------------------------------------------------
// Deliveries (from the shard)

void WsSession::deliver_message(const std::string& room, std::uint64_t seq,
                                const std::shared_ptr<const std::string>& frame) {
  if (state_ != State::live) return;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  RoomSync& rs = it->second;
  if (rs.held) {
    if (rs.buffer.size() >= kMaxHeld) rs.buffer.clear();  // re-read at release, see below
    rs.buffer.emplace_back(seq, frame);
    return;
  }
  if (seq <= rs.last) return;  // already sent (by a replay)
  if (seq != rs.last + 1) {
    // Should not happen (the shard delivers in order), but never send a gap: catch up first.
    rs.held = true;
    rs.buffer.emplace_back(seq, frame);
    fetch_gap(room);
    return;
  }
  rs.last = seq;
  enqueue(frame);
}

void WsSession::deliver_frame(const std::shared_ptr<const std::string>& frame) {
  if (state_ == State::live) enqueue(frame);
}

void WsSession::deliver_presence(const std::string& user, bool online,
                                 const std::shared_ptr<const std::string>& frame) {
  if (state_ != State::live) return;
  auto it = watching_.find(user);
  if (it == watching_.end() || it->second == online) return;
  it->second = online;
  enqueue(frame);
}

void WsSession::on_user_event(const UserEvent& ev) {
  if (state_ == State::authenticating) {
    on_early_user_event(ev);
    return;
  }
  if (state_ != State::live) return;
  switch (ev.kind) {
    case UserEvent::Kind::joined:
      // Another session of this user (or the other side of a new dm) joined: this session
      // learns of the room and receives it from the room's last_seq at that time.
      if (rooms_.count(ev.room)) break;
      send_json(protocol::encode_joined(std::nullopt, ev.room, ev.seq));
      add_room(ev.room, ev.seq, ev.seq, false);
      break;
    case UserEvent::Kind::left:
      if (!rooms_.count(ev.room)) break;
      remove_room(ev.room);
      send_json(protocol::encode_left(std::nullopt, ev.room));
      break;
    case UserEvent::Kind::read:
      if (ev.origin_session != session_id_) send_json(protocol::encode_read(ev.room, ev.seq));
      break;
    case UserEvent::Kind::logout:
      if (ev.token_hash == token_hash_) close(ws::close_code::policy_violation, "logged out");
      break;
    case UserEvent::Kind::invitation:
      send_json(protocol::encode_invitation(ev.room, ev.by));
      break;
    case UserEvent::Kind::deleted:
      close(ws::close_code::policy_violation, "account deleted");
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Membership and resume

void WsSession::add_room(const std::string& room, std::uint64_t start_after,
                         std::uint64_t room_last_seq, bool counts_for_synced) {
  if (state_ != State::live || rooms_.count(room)) return;
  RoomSync& rs = rooms_[room];
  rs.last = std::min(start_after, room_last_seq);
  std::uint64_t shard_last = shard_.add_room_member(room, this, room_last_seq);
  // Hold and catch up when messages exist past our starting point that the shard will not
  // deliver again: those committed before the store read that told us the room's state, or
  // already delivered to the shard's other members.
  if (rs.last < room_last_seq || rs.last < shard_last) {
    rs.held = true;
    rs.counts_for_synced = counts_for_synced;
    if (counts_for_synced) ++syncing_rooms_;
    fetch_gap(room);
  }
}

void WsSession::remove_room(const std::string& room) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  if (it->second.counts_for_synced) --syncing_rooms_;
  rooms_.erase(it);
  shard_.remove_room_member(room, this);
  maybe_synced();
}

void WsSession::fetch_gap(const std::string& room, std::uint64_t up_to) {
  auto it = rooms_.find(room);
  if (it == rooms_.end() || it->second.fetching) return;
  RoomSync& rs = it->second;
  rs.fetching = true;
  const std::uint64_t after = rs.last;
  const std::size_t page = node_.options().replay_page;
  // The recent-message cache holds the newest contiguous run of each subscribed room; when it
  // reaches back to `after` it answers without the store. A hit with nothing in it while the
  // shard has delivered more means the run stopped short of what is committed: read the store.
  auto hit = node_.cache().since(room, after, page);
  if (hit && hit->empty() && after < shard_.room_last(room)) hit.reset();
  if (hit) {
    node_.metrics().cache_hits.inc();
    std::vector<std::shared_ptr<const std::string>> frames;
    std::vector<std::uint64_t> seqs;
    for (auto& e : *hit) {
      if (e.seq > up_to) break;
      frames.push_back(make_text_frame(*e.json));
      seqs.push_back(e.seq);
    }
    on_gap_fetched(room, std::move(frames), std::move(seqs), hit->size() < page);
    return;
  }
  node_.metrics().cache_misses.inc();
  node_.store().read_range(
      room, after, up_to, static_cast<std::uint32_t>(page),
      [self = shared_from_this(), room, page, up_to](Result<std::vector<store::StoredMessage>> r) {
        std::vector<std::shared_ptr<const std::string>> frames;
        std::vector<std::uint64_t> seqs;
        const bool ok = r.has_value();
        if (ok) {
          for (auto& m : *r) {
            frames.push_back(make_text_frame(message_json(m)));
            seqs.push_back(m.seq);
          }
        }
        const bool complete = ok && r->size() < page;
        self->post_self([room, frames = std::move(frames), seqs = std::move(seqs), complete, ok,
                         up_to](WsSession& s) mutable {
          if (ok) {
            s.on_gap_fetched(room, std::move(frames), std::move(seqs), complete);
            return;
          }
          // The store is down: try again shortly; the room stays held meanwhile.
          auto t =
              std::make_shared<asio::steady_timer>(s.shard_.ioc(), std::chrono::milliseconds(500));
          t->async_wait([t, self = s.shared_from_this(), room, up_to](boost::system::error_code) {
            auto it = self->rooms_.find(room);
            if (it == self->rooms_.end() || self->state_ != State::live) return;
            it->second.fetching = false;
            self->fetch_gap(room, up_to);
          });
        });
      });
}

void WsSession::on_gap_fetched(const std::string& room,
                               std::vector<std::shared_ptr<const std::string>> frames,
                               std::vector<std::uint64_t> seqs, bool complete) {
  if (state_ != State::live) return;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  RoomSync& rs = it->second;
  rs.fetching = false;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i] != rs.last + 1) continue;
    rs.last = seqs[i];
    enqueue(std::move(frames[i]), true);
  }
  if (!complete) {
    // Pace the replay by the client's reading: the next page is read once half the queue is out.
    if (queued_bytes_ > node_.options().write_queue_bytes / 2) {
      replay_waiting_.push_back(room);
    } else {
      fetch_gap(room);
    }
    return;
  }
  // Release what arrived live meanwhile, skipping what the replay sent. A hole between the
  // replay and the held messages (they were still on their way to the store's readers) means
  // one more round trip.
  std::size_t i = 0;
  for (; i < rs.buffer.size(); ++i) {
    auto& [seq, frame] = rs.buffer[i];
    if (seq <= rs.last) continue;
    if (seq != rs.last + 1) break;
    rs.last = seq;
    enqueue(std::move(frame), true);
  }
  if (i < rs.buffer.size()) {
    // A hole between the replay and the held messages (they were still on their way to the
    // store's readers): read exactly the hole, then this loop runs again.
    rs.buffer.erase(rs.buffer.begin(), rs.buffer.begin() + static_cast<std::ptrdiff_t>(i));
    fetch_gap(room, rs.buffer.front().first - 1);
    return;
  }
  rs.buffer.clear();
  // Everything the shard has delivered is committed, so a session behind the shard (its held
  // copies were dropped, or it started behind) reads on rather than release with a hole.
  if (rs.last < shard_.room_last(room)) {
    fetch_gap(room);
    return;
  }
  rs.held = false;
  if (rs.counts_for_synced) {
    rs.counts_for_synced = false;
    --syncing_rooms_;
    maybe_synced();
  }
}

void WsSession::maybe_synced() {
  if (synced_sent_ || state_ != State::live || syncing_rooms_ > 0) return;
  synced_sent_ = true;
  send_json(protocol::encode_synced());
}

// ---------------------------------------------------------------------------------------------
// Requests

void WsSession::handle(protocol::Envelope env) {
  auto& ref = env.ref;
  std::visit(
      [&](auto&& req) {
        using T = std::decay_t<decltype(req)>;
        if constexpr (std::is_same_v<T, protocol::AuthReq>) {
          send_error(ref, ErrorCode::bad_request, "already authenticated");
        } else if constexpr (std::is_same_v<T, protocol::SendReq>) {
          handle_send(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::HistoryReq>) {
          handle_history(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::CreateReq>) {
          handle_create(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::JoinReq>) {
          handle_join(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::LeaveReq>) {
          handle_leave(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::InviteReq>) {
          handle_invite(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::DmReq>) {
          handle_dm(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::TypingReq>) {
          handle_typing(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::ReadReq>) {
          handle_read(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::WatchReq>) {
          handle_watch(ref, std::move(req));
        } else if constexpr (std::is_same_v<T, protocol::PingReq>) {
          send_json(protocol::encode_pong(ref));
        }
      },
      env.request);
}

void WsSession::reply_store_error(const std::optional<std::string>& ref, std::error_code ec) {
  send_error(ref, to_protocol(ec), store_error_message(ec));
}

bool WsSession::require_member(const std::optional<std::string>& ref, const std::string& room) {
  if (rooms_.count(room)) return true;
  // Not a member: tell a room that does not exist (not_found) from one the user is not in
  // (forbidden), as the HTTP API does. Only this error path asks the store.
  node_.store().room_info(
      room, [self = shared_from_this(), ref, room](Result<store::RoomSummary> r) {
        bool missing = !r && r.error() == store::StoreErrc::not_found;
        self->post_self([ref, room, missing](WsSession& s) {
          if (missing) {
            s.send_error(ref, ErrorCode::not_found, "no room " + room);
          } else {
            s.send_error(ref, ErrorCode::forbidden, "not a member of room " + room);
          }
        });
      });
  return false;
}

void WsSession::handle_auth(const std::optional<std::string>& ref, protocol::AuthReq req) {
  token_hash_ = Node::hash_token(req.token);
  auth_ref_ = ref;
  auth_cursors_ = std::move(req.cursors);
  node_.authenticate(req.token, [self = shared_from_this()](Result<store::TokenInfo> r) {
    self->post_self([r = std::move(r)](WsSession& s) {
      if (s.state_ != State::authenticating) return;
      if (r) {
        s.on_token_valid(*r);
      } else if (r.error() == store::StoreErrc::unavailable) {
        s.send_error(s.auth_ref_, ErrorCode::unavailable,
                     "the store is unavailable; reconnect shortly");
        s.close(ws::close_code::internal_error, "store unavailable");
      } else {
        spdlog::info("ws {}: rejected token", s.remote_);
        s.send_error(s.auth_ref_, ErrorCode::unauthorized, "invalid or expired token");
        s.close(ws::close_code::policy_violation, "unauthorized");
      }
    });
  });
}

void WsSession::on_token_valid(const store::TokenInfo& info) {
  // Sessions per user on this node: over the cap, refuse this one (the others stay).
  if (!node_.throttle().user_connections().try_acquire(info.user)) {
    spdlog::info("ws {}: {} has too many sessions, closing", remote_, info.user);
    send_error(std::nullopt, ErrorCode::rate_limited, "too many connections for this user");
    close(ws::close_code::policy_violation, "too many connections");
    return;
  }
  // Registered for the user's events before the room list is read (see ws_session.hpp): the
  // bus subscription to the user's topic is requested here, ahead of the read.
  user_ = info.user;
  listening_ = true;
  shard_.add_user_session(user_, this);
  list_rooms();
}

void WsSession::list_rooms() {
  const std::uint64_t generation = ++list_generation_;
  node_.store().list_rooms(user_, [self = shared_from_this(),
                                   generation](Result<std::vector<store::RoomSummary>> rooms) {
    self->post_self([generation, rooms = std::move(rooms)](WsSession& s) mutable {
      if (s.state_ != State::authenticating || generation != s.list_generation_) return;
      if (!rooms) {
        s.send_error(s.auth_ref_, ErrorCode::unavailable,
                     "the store is unavailable; reconnect shortly");
        s.close(ws::close_code::internal_error, "store unavailable");
        return;
      }
      s.on_authenticated(std::move(*rooms));
    });
  });
}

void WsSession::on_early_user_event(const UserEvent& ev) {
  if (ev.kind == UserEvent::Kind::logout && ev.token_hash != token_hash_) return;
  if (ev.kind == UserEvent::Kind::logout || ev.kind == UserEvent::Kind::deleted) {
    // The token died after it was checked (logged out, or the account deleted): answer as the
    // check would have answered now, rather than welcome the session and close it at once.
    spdlog::info("ws {}: token of {} revoked during authentication", remote_, user_);
    send_error(auth_ref_, ErrorCode::unauthorized, "invalid or expired token");
    close(ws::close_code::policy_violation, "unauthorized");
    return;
  }
  if (early_events_.size() >= kMaxEarlyEvents) {
    // Too many to keep: drop them, this one included, and read the list again. Each dropped
    // event's change committed before it was published, so the new read reflects it (the
    // notifications among them, `read` and `invitation`, are lost to this session).
    early_events_.clear();
    list_rooms();
    return;
  }
  early_events_.push_back(ev);
}

void WsSession::on_authenticated(std::vector<store::RoomSummary> rooms) {
  timer_.cancel();
  state_ = State::live;
  registered_ = true;
  node_.metrics().sessions.inc();
  node_.session_opened(user_);
  send_json(protocol::encode_welcome(user_, node_.options().node_id, now_ms()));

  std::unordered_map<std::string, std::uint64_t> cursor_of(auth_cursors_.begin(),
                                                           auth_cursors_.end());
  auth_cursors_ = {};
  // A replay served from the cache completes inside add_room; hold `synced` back until every
  // cursor room has been added.
  ++syncing_rooms_;
  for (const auto& r : rooms) {
    auto c = cursor_of.find(r.room);
    if (c != cursor_of.end()) {
      add_room(r.room, c->second, r.last_seq, true);
    } else {
      add_room(r.room, r.last_seq, r.last_seq, false);
    }
  }
  // Then what changed while the list was read, through the live path, which is idempotent: a
  // `joined` of a room the list has, or a `left` of one it lacks, does nothing.
  auto early = std::move(early_events_);
  early_events_ = {};
  for (const auto& ev : early) {
    if (state_ != State::live) break;
    on_user_event(ev);
  }
  --syncing_rooms_;
  maybe_synced();
  auto pending = std::move(pending_frames_);
  pending_frames_.clear();
  for (auto& f : pending) {
    if (state_ != State::live) break;
    on_text(f);
  }
}

void WsSession::handle_send(const std::optional<std::string>& ref, protocol::SendReq req) {
  node_.metrics().received.inc();
  if (!require_member(ref, req.room)) return;
  if (auto wait = node_.rate_limiter().acquire(user_, std::chrono::steady_clock::now())) {
    send_error(ref, ErrorCode::rate_limited, "too many messages; retry later", wait);
    return;
  }
  auto started = std::chrono::steady_clock::now();
  store::AppendRequest ar{req.room, user_, req.client_msg_id, std::move(req.body)};
  node_.store().append(
      std::move(ar), [self = shared_from_this(), ref, started](Result<store::AppendResult> r) {
        if (r && !r->duplicate) self->node_.publish_message(r->message);
        self->post_self([ref, r = std::move(r), started](WsSession& s) {
          if (!r) {
            s.reply_store_error(ref, r.error());
            return;
          }
          const auto& m = r->message;
          s.send_json(protocol::encode_ack(ref, m.room, m.client_msg_id, m.seq, m.ts_ms));
          s.node_.metrics().send_to_ack.observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        });
      });
}

void WsSession::handle_history(const std::optional<std::string>& ref, protocol::HistoryReq req) {
  if (!require_member(ref, req.room)) return;
  load_history(node_, req.room, req.before.value_or(UINT64_MAX), req.limit,
               [self = shared_from_this(), ref, room = req.room](Result<HistoryJson> r) {
                 self->post_self([ref, room, r = std::move(r)](WsSession& s) {
                   if (!r) {
                     s.reply_store_error(ref, r.error());
                     return;
                   }
                   s.send_json(encode_history_frame(ref, room, *r));
                 });
               });
}

void WsSession::handle_create(const std::optional<std::string>& ref, protocol::CreateReq req) {
  auto kind = req.is_private ? store::RoomKind::private_room : store::RoomKind::public_room;
  node_.store().create_room(
      req.room, kind, user_, [self = shared_from_this(), ref, room = req.room](Result<Ok> r) {
        self->post_self(
            [ref, room, ok = r.has_value(), ec = r ? std::error_code{} : r.error()](WsSession& s) {
              if (!ok) {
                if (ec == store::StoreErrc::conflict) {
                  s.send_error(ref, ErrorCode::conflict, "room " + room + " exists already");
                } else {
                  s.reply_store_error(ref, ec);
                }
                return;
              }
              s.send_json(protocol::encode_joined(ref, room, 0));
              s.add_room(room, 0, 0, false);
              s.node_.publish_user_event({UserEvent::Kind::joined, s.user_, room, 0, {}, {}, {}});
            });
      });
}

void WsSession::handle_join(const std::optional<std::string>& ref, protocol::JoinReq req) {
  node_.store().join_room(
      req.room, user_,
      [self = shared_from_this(), ref, room = req.room](Result<store::JoinResult> r) {
        self->post_self([ref, room, r = std::move(r)](WsSession& s) {
          if (!r) {
            if (r.error() == store::StoreErrc::forbidden) {
              s.send_error(ref, ErrorCode::forbidden,
                           "room " + room + " is private and you are not invited");
            } else if (r.error() == store::StoreErrc::not_found) {
              s.send_error(ref, ErrorCode::not_found, "no room " + room);
            } else {
              s.reply_store_error(ref, r.error());
            }
            return;
          }
          s.send_json(protocol::encode_joined(ref, room, r->last_seq));
          s.add_room(room, r->last_seq, r->last_seq, false);
          if (r->newly_joined) {
            s.node_.publish_user_event(
                {UserEvent::Kind::joined, s.user_, room, r->last_seq, {}, {}, {}});
          }
        });
      });
}

void WsSession::handle_leave(const std::optional<std::string>& ref, protocol::LeaveReq req) {
  node_.store().leave_room(
      req.room, user_, [self = shared_from_this(), ref, room = req.room](Result<Ok> r) {
        self->post_self(
            [ref, room, ok = r.has_value(), ec = r ? std::error_code{} : r.error()](WsSession& s) {
              if (!ok) {
                if (ec == store::StoreErrc::not_found) {
                  s.send_error(ref, ErrorCode::not_found, "no room " + room);
                } else {
                  s.reply_store_error(ref, ec);
                }
                return;
              }
              s.send_json(protocol::encode_left(ref, room));
              s.remove_room(room);
              s.node_.publish_user_event({UserEvent::Kind::left, s.user_, room, 0, {}, {}, {}});
            });
      });
}

void WsSession::handle_invite(const std::optional<std::string>& ref, protocol::InviteReq req) {
  if (!require_member(ref, req.room)) return;
  node_.store().invite(
      req.room, user_, req.user,
      [self = shared_from_this(), ref, room = req.room, invitee = req.user](Result<Ok> r) {
        self->post_self([ref, room, invitee, ok = r.has_value(),
                         ec = r ? std::error_code{} : r.error()](WsSession& s) {
          if (!ok) {
            if (ec == store::StoreErrc::not_found) {
              s.send_error(ref, ErrorCode::not_found, "no user " + invitee + " or no room " + room);
            } else {
              s.reply_store_error(ref, ec);
            }
            return;
          }
          s.send_json(protocol::encode_invited(ref, room, invitee));
          s.node_.publish_user_event(
              {UserEvent::Kind::invitation, invitee, room, 0, s.user_, {}, {}});
        });
      });
}

void WsSession::handle_dm(const std::optional<std::string>& ref, protocol::DmReq req) {
  if (req.user == user_) {
    send_error(ref, ErrorCode::bad_request, "cannot open a direct-message room with yourself");
    return;
  }
  std::string room = core::dm_room_name(user_, req.user);
  node_.store().open_dm(
      room, user_, req.user,
      [self = shared_from_this(), ref, room, other = req.user](Result<store::JoinResult> r) {
        self->post_self([ref, room, other, r = std::move(r)](WsSession& s) {
          if (!r) {
            if (r.error() == store::StoreErrc::not_found) {
              s.send_error(ref, ErrorCode::not_found, "no user " + other);
            } else {
              s.reply_store_error(ref, r.error());
            }
            return;
          }
          s.send_json(protocol::encode_joined(ref, room, r->last_seq));
          s.add_room(room, r->last_seq, r->last_seq, false);
          s.node_.publish_user_event(
              {UserEvent::Kind::joined, s.user_, room, r->last_seq, {}, {}, {}});
          s.node_.publish_user_event(
              {UserEvent::Kind::joined, other, room, r->last_seq, {}, {}, {}});
        });
      });
}

void WsSession::handle_typing(const std::optional<std::string>& ref, protocol::TypingReq req) {
  if (!require_member(ref, req.room)) return;
  // Each typing event fans out to the whole room: a flood of them costs everyone.
  if (auto wait = node_.typing_limiter().acquire(user_, std::chrono::steady_clock::now())) {
    send_error(ref, ErrorCode::rate_limited, "too many typing events; retry later", wait);
    return;
  }
  node_.publish_typing(req.room, user_);
}

void WsSession::handle_read(const std::optional<std::string>& ref, protocol::ReadReq req) {
  if (!require_member(ref, req.room)) return;
  node_.store().set_read(
      req.room, user_, req.seq,
      [self = shared_from_this(), ref, room = req.room](Result<std::uint64_t> r) {
        if (r) {
          self->node_.publish_user_event(
              {UserEvent::Kind::read, self->user_, room, *r, {}, {}, self->session_id_});
          return;
        }
        self->post_self([ref, ec = r.error()](WsSession& s) { s.reply_store_error(ref, ec); });
      });
}

void WsSession::handle_watch(const std::optional<std::string>& ref, protocol::WatchReq req) {
  // Each watched user costs an entry here and in the shard's watcher table for as long as the
  // socket lives, so the total per socket is capped too, not only the users per request. A
  // request that would pass the cap adds no one.
  std::size_t added = 0;
  for (const auto& u : req.users) added += watching_.count(u) == 0 ? 1 : 0;
  if (watching_.size() + added > node_.options().max_watched_users) {
    send_error(ref, ErrorCode::bad_request,
               "a connection may watch at most " +
                   std::to_string(node_.options().max_watched_users) + " users");
    return;
  }
  for (auto& u : req.users) {
    bool online = node_.presence().online(u);
    auto [it, inserted] = watching_.try_emplace(u, online);
    if (inserted) shard_.add_watcher(u, this);
    it->second = online;
    send_json(protocol::encode_presence(u, online));
  }
}

}  // namespace parley::transport
