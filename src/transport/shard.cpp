#include "transport/shard.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/messages.hpp"
#include "protocol/ws_frame.hpp"
#include "transport/history.hpp"
#include "transport/ws_session.hpp"

namespace parley::transport {

namespace asio = boost::asio;

std::shared_ptr<const std::string> make_text_frame(std::string_view json) {
  std::string frame;
  frame.reserve(json.size() + 10);
  protocol::ws::append_frame_header(frame, protocol::ws::Opcode::text, json.size());
  frame.append(json);
  return std::make_shared<const std::string>(std::move(frame));
}

namespace {
template <class T>
void erase_one(std::vector<T>& v, const T& x) {
  auto it = std::find(v.begin(), v.end(), x);
  if (it == v.end()) return;
  *it = v.back();  // order of members does not matter
  v.pop_back();
}
}  // namespace

Shard::Shard(Node& node, unsigned index) : node_(node), index_(index) {}

std::span<char> Shard::read_scratch() {
  // Large enough that a client sending at full speed is read in few system calls, small enough
  // to stay in cache: one per shard thread.
  constexpr std::size_t kSize = 64 * 1024;
  if (!read_scratch_) read_scratch_ = std::make_unique_for_overwrite<char[]>(kSize);
  return {read_scratch_.get(), kSize};
}

void Shard::add_session(WsSession* s) {
  sessions_.insert(s);
}
void Shard::remove_session(WsSession* s) {
  sessions_.erase(s);
}

void Shard::add_user_session(const std::string& user, WsSession* s) {
  auto& v = users_[user];
  if (v.empty()) node_.retain_topic(bus::user_topic(user));
  v.push_back(s);
}

void Shard::remove_user_session(const std::string& user, WsSession* s) {
  auto it = users_.find(user);
  if (it == users_.end()) return;
  erase_one(it->second, s);
  if (it->second.empty()) {
    users_.erase(it);
    node_.release_topic(bus::user_topic(user));
  }
}

std::uint64_t Shard::add_room_member(const std::string& room, WsSession* s,
                                     std::uint64_t room_last_seq) {
  auto [it, inserted] = rooms_.try_emplace(room);
  Room& r = it->second;
  r.members.push_back(s);
  if (inserted) {
    r.last = room_last_seq;
    node_.retain_topic(bus::room_topic(room));
    // A message committed after the store read that gave room_last_seq but published before the
    // subscription took effect would otherwise wait for the next message: check once now.
    check_room(room);
  }
  return r.last;
}

void Shard::remove_room_member(const std::string& room, WsSession* s) {
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  erase_one(it->second.members, s);
  if (it->second.members.empty()) {
    rooms_.erase(it);
    node_.release_topic(bus::room_topic(room));
  }
}

std::uint64_t Shard::room_last(const std::string& room) const {
  auto it = rooms_.find(room);
  return it == rooms_.end() ? 0 : it->second.last;
}

void Shard::add_watcher(const std::string& user, WsSession* s) {
  watchers_[user].push_back(s);
}

void Shard::remove_watcher(const std::string& user, WsSession* s) {
  auto it = watchers_.find(user);
  if (it == watchers_.end()) return;
  erase_one(it->second, s);
  if (it->second.empty()) watchers_.erase(it);
}

void Shard::on_deliveries(const std::vector<Delivery>& batch) {
  for (const auto& d : batch) {
    switch (d.event->kind) {
      case bus::EventKind::message:
        on_message(d);
        break;
      case bus::EventKind::typing: {
        auto it = rooms_.find(d.event->room);
        if (it == rooms_.end()) break;
        for (WsSession* s : it->second.members) {
          if (s->user() != d.event->user) s->deliver_frame(d.frame);
        }
        break;
      }
      case bus::EventKind::user:
        if (d.user_event) on_user_event(*d.user_event);
        break;
      case bus::EventKind::presence: {
        auto it = watchers_.find(d.presence_user);
        if (it == watchers_.end()) break;
        for (WsSession* s : it->second)
          s->deliver_presence(d.presence_user, d.presence_online, d.frame);
        break;
      }
      case bus::EventKind::node:
        break;
    }
  }
  flush_counters();
}

void Shard::on_user_event(const UserEvent& ev) {
  auto it = users_.find(ev.user);
  if (it == users_.end()) return;
  // A handler may add or remove this user's sessions (a logout closes them): iterate a copy.
  auto sessions = it->second;
  for (WsSession* s : sessions) s->on_user_event(ev);
}

void Shard::on_message(const Delivery& d) {
  auto it = rooms_.find(d.event->room);
  if (it == rooms_.end()) return;
  Room& room = it->second;
  const std::uint64_t seq = d.event->seq;
  if (room.repairing) {
    room.pending.push_back(d);
    return;
  }
  if (seq <= room.last) return;  // a duplicate, or delivered by a repair already
  if (seq != room.last + 1) {
    room.pending.push_back(d);
    start_repair(it->first, room, seq - 1);
    return;
  }
  deliver_in_order(it->first, room, d);
}

void Shard::deliver_in_order(const std::string& room_name, Room& room, const Delivery& d) {
  room.last = d.event->seq;
  for (WsSession* s : room.members) s->deliver_message(room_name, room.last, d.frame);
  delivered_ += room.members.size();
}

void Shard::start_repair(const std::string& room_name, Room& room, std::uint64_t up_to) {
  room.repairing = true;
  node_.metrics().gap_repairs.inc();
  const std::uint64_t after = room.last;
  node_.store().read_range(room_name, after, up_to, static_cast<std::uint32_t>(up_to - after),
                           [this, room_name, up_to](Result<std::vector<store::StoredMessage>> r) {
                             std::vector<Delivery> fetched;
                             bool ok = r.has_value();
                             if (ok) {
                               for (auto& m : *r) {
                                 auto ev = std::make_shared<bus::Event>();
                                 ev->kind = bus::EventKind::message;
                                 ev->room = m.room;
                                 ev->seq = m.seq;
                                 ev->payload = message_json(m);
                                 Delivery d;
                                 d.frame = make_text_frame(ev->payload);
                                 d.event = std::move(ev);
                                 fetched.push_back(std::move(d));
                               }
                             }
                             asio::post(ioc_,
                                        [this, room_name, up_to, ok, fetched = std::move(fetched)] {
                                          finish_repair(room_name, up_to, ok, fetched);
                                        });
                           });
}

void Shard::finish_repair(const std::string& room_name, std::uint64_t up_to, bool ok,
                          const std::vector<Delivery>& fetched) {
  auto it = rooms_.find(room_name);
  if (it == rooms_.end()) return;  // the last local member left meanwhile
  Room& room = it->second;
  if (!ok) {
    // The store is down: retry shortly, holding the room's newer messages meanwhile.
    spdlog::warn("gap repair of room {} failed; retrying", room_name);
    auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(500));
    t->async_wait([this, t, room_name, up_to](boost::system::error_code) {
      auto it = rooms_.find(room_name);
      if (it != rooms_.end()) start_repair(room_name, it->second, up_to);
    });
    return;
  }
  for (const auto& d : fetched) {
    if (d.event->seq == room.last + 1) deliver_in_order(room_name, room, d);
  }
  room.repairing = false;
  auto pending = std::move(room.pending);
  room.pending.clear();
  std::sort(pending.begin(), pending.end(),
            [](const Delivery& a, const Delivery& b) { return a.event->seq < b.event->seq; });
  for (std::size_t i = 0; i < pending.size(); ++i) {
    const auto& d = pending[i];
    if (d.event->seq <= room.last) continue;
    if (d.event->seq != room.last + 1) {
      // Still a hole (the store had not caught up, or another loss): repair again.
      room.pending.assign(pending.begin() + static_cast<std::ptrdiff_t>(i), pending.end());
      start_repair(room_name, room, d.event->seq - 1);
      return;
    }
    deliver_in_order(room_name, room, d);
  }
  flush_counters();
}

void Shard::check_room(const std::string& room_name) {
  node_.store().room_info(room_name, [this, room_name](Result<store::RoomSummary> r) {
    if (!r) return;
    asio::post(ioc_, [this, room_name, last_seq = r->last_seq] {
      auto it = rooms_.find(room_name);
      if (it == rooms_.end() || it->second.repairing) return;
      if (last_seq > it->second.last) start_repair(room_name, it->second, last_seq);
    });
  });
}

void Shard::resync_rooms() {
  for (auto& [name, room] : rooms_) check_room(name);
}

void Shard::flush_counters() {
  if (delivered_ > 0) {
    node_.metrics().delivered.inc(delivered_);
    delivered_ = 0;
  }
}

}  // namespace parley::transport
