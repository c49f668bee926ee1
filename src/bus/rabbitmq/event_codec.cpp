// Packing and unpacking of bus events in AMQP message bodies; the layout is described in the
// header.

#include "bus/rabbitmq/event_codec.hpp"

#include <iterator>
#include <unordered_map>

#include <cstdint>
#include <memory>

namespace parley::bus::wire {

namespace {

constexpr char kMagic0 = 'P';
constexpr char kMagic1 = 'E';
constexpr char kVersion = 1;
// The smallest encoded event: a kind byte, a one-byte seq and four empty strings.
constexpr std::size_t kMinEventSize = 6;

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

std::size_t string_size(std::string_view s) {
  return varint_size(s.size()) + s.size();
}

// A cursor over a body that fails, rather than reads past the end, on truncated input.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool varint(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return false;
      const auto b = static_cast<unsigned char>(in_[pos_++]);
      // The tenth byte of a 64-bit varint may only carry the top bit.
      if (shift == 63 && b > 1) return false;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  bool byte(std::uint8_t& b) {
    if (pos_ >= in_.size()) return false;
    b = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }

  bool string(std::string& s) {
    std::uint64_t n = 0;
    if (!varint(n) || n > in_.size() - pos_) return false;
    s.assign(in_.data() + pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

  std::size_t remaining() const { return in_.size() - pos_; }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

bool valid_kind(std::uint8_t k) {
  return k >= static_cast<std::uint8_t>(EventKind::message) &&
         k <= static_cast<std::uint8_t>(EventKind::node);
}

}  // namespace

std::size_t encoded_size(const Event& e) {
  return 1 + varint_size(e.seq) + string_size(e.room) + string_size(e.origin_node) +
         string_size(e.user) + string_size(e.payload);
}

void encode_events(std::string_view topic, std::span<const EventPtr> events, std::string& out) {
  std::size_t size = 3 + varint_size(events.size()) + string_size(topic);
  for (const auto& e : events) size += encoded_size(*e);
  out.reserve(out.size() + size);
  out.push_back(kMagic0);
  out.push_back(kMagic1);
  out.push_back(kVersion);
  put_varint(out, events.size());
  put_string(out, topic);
  for (const auto& e : events) {
    out.push_back(static_cast<char>(e->kind));
    put_varint(out, e->seq);
    put_string(out, e->room);
    put_string(out, e->origin_node);
    put_string(out, e->user);
    put_string(out, e->payload);
  }
}

Result<std::vector<EventPtr>, std::string> decode_events(std::string_view body) {
  if (body.size() < 3 || body[0] != kMagic0 || body[1] != kMagic1) {
    return unexpected(std::string("not a parley events message (bad magic)"));
  }
  if (body[2] != kVersion) {
    return unexpected("unsupported events message version " +
                      std::to_string(static_cast<unsigned char>(body[2])));
  }
  Reader r(body.substr(3));
  std::uint64_t count = 0;
  std::string topic;
  if (!r.varint(count) || !r.string(topic)) {
    return unexpected(std::string("truncated events message header"));
  }
  // The count is checked against what the body can hold before anything is reserved, so that a
  // corrupt count cannot make the decoder allocate without bound.
  if (count == 0 || count > r.remaining() / kMinEventSize) {
    return unexpected("implausible event count " + std::to_string(count));
  }
  std::vector<EventPtr> out;
  out.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    auto e = std::make_shared<Event>();
    std::uint8_t kind = 0;
    if (!r.byte(kind) || !r.varint(e->seq) || !r.string(e->room) || !r.string(e->origin_node) ||
        !r.string(e->user) || !r.string(e->payload)) {
      return unexpected("truncated event " + std::to_string(i));
    }
    if (!valid_kind(kind)) {
      return unexpected("unknown event kind " + std::to_string(kind));
    }
    e->kind = static_cast<EventKind>(kind);
    e->topic = topic;
    out.push_back(std::move(e));
  }
  if (r.remaining() != 0) {
    return unexpected(std::string("trailing bytes after the last event"));
  }
  return out;
}

void merge_by_topic(std::vector<TopicBatch>& batches) {
  if (batches.size() < 2) return;
  std::vector<TopicBatch> merged;
  std::unordered_map<std::string, std::size_t> index;
  for (auto& [topic, events] : batches) {
    auto [it, inserted] = index.try_emplace(topic, merged.size());
    if (inserted) {
      merged.emplace_back(std::move(topic), std::move(events));
      continue;
    }
    auto& into = merged[it->second].second;
    into.insert(into.end(), std::make_move_iterator(events.begin()),
                std::make_move_iterator(events.end()));
  }
  batches.swap(merged);
}

}  // namespace parley::bus::wire
