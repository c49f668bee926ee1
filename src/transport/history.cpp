#include "transport/history.hpp"

#include "protocol/messages.hpp"

namespace parley::transport {

std::string message_json(const store::StoredMessage& m) {
  return protocol::encode_message({m.room, m.seq, m.from, m.body, m.ts_ms, m.client_msg_id});
}

void load_history(Node& node, const std::string& room, std::uint64_t before, std::uint32_t limit,
                  std::function<void(Result<HistoryJson>)> cb) {
  if (before == 0) {  // nothing has a seq below 1
    cb(HistoryJson{});
    return;
  }
  const std::uint64_t newest = node.cache().newest(room);
  if (newest > 0 && limit > 0 && (before == UINT64_MAX || before <= newest + 1)) {
    const std::uint64_t hi = std::min(before - 1, newest);
    const std::uint64_t lo = hi > limit ? hi - limit : 0;
    if (auto hit = node.cache().since(room, lo, limit)) {
      node.metrics().cache_hits.inc();
      HistoryJson h;
      for (auto& e : *hit) {
        if (e.seq <= hi) h.messages.push_back(e.json);
      }
      h.has_more = lo > 0;
      cb(std::move(h));
      return;
    }
  }
  node.metrics().cache_misses.inc();
  node.store().history(room, before, limit, [cb = std::move(cb)](Result<store::HistoryPage> r) {
    if (!r) {
      cb(unexpected(r.error()));
      return;
    }
    HistoryJson h;
    h.has_more = r->has_more;
    h.messages.reserve(r->messages.size());
    for (auto& m : r->messages) {
      h.messages.push_back(std::make_shared<const std::string>(message_json(m)));
    }
    cb(std::move(h));
  });
}

namespace {
void append_body(std::string& out, const std::string& room, const HistoryJson& h) {
  out += "\"room\":";
  protocol::append_json_string(out, room);
  out += ",\"messages\":[";
  for (std::size_t i = 0; i < h.messages.size(); ++i) {
    if (i) out += ',';
    out += *h.messages[i];
  }
  out += "],\"has_more\":";
  out += h.has_more ? "true" : "false";
  out += '}';
}
}  // namespace

std::string encode_history_frame(const std::optional<std::string>& ref, const std::string& room,
                                 const HistoryJson& h) {
  std::string out = "{\"type\":\"history\",";
  if (ref) {
    out += "\"ref\":";
    protocol::append_json_string(out, *ref);
    out += ',';
  }
  append_body(out, room, h);
  return out;
}

std::string encode_history_body(const std::string& room, const HistoryJson& h) {
  std::string out = "{";
  append_body(out, room, h);
  return out;
}

}  // namespace parley::transport
