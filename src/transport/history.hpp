#pragma once
// History pages for the WebSocket `history` request and GET /api/v1/rooms/{room}/messages.
// The newest pages come from the recent-message cache when it holds them; everything else
// from the store. Messages travel as the JSON of their `message` frame, encoded once.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "transport/node.hpp"

namespace parley::transport {

// The `message` frame JSON of a stored message (encoded once, shared by every recipient).
std::string message_json(const store::StoredMessage& m);

struct HistoryJson {
  std::vector<std::shared_ptr<const std::string>> messages;  // ascending seq
  bool has_more = false;
};

// The last `limit` messages with seq < before (UINT64_MAX: the newest). The callback runs on a
// store thread or inline; the caller hops to its own executor.
void load_history(Node& node, const std::string& room, std::uint64_t before, std::uint32_t limit,
                  std::function<void(Result<HistoryJson>)> cb);

// {"type":"history","ref"?,"room","messages":[...],"has_more"}
std::string encode_history_frame(const std::optional<std::string>& ref, const std::string& room,
                                 const HistoryJson& h);
// {"room","messages":[...],"has_more"} for the HTTP API.
std::string encode_history_body(const std::string& room, const HistoryJson& h);

}  // namespace parley::transport
