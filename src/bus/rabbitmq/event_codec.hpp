#pragma once
// The body of an AMQP message on the parley.events exchange: one or more bus events packed
// together, all on the same topic (the message's routing key). Packing is what lets the bus
// carry tens of thousands of events per second: the broker's cost is per message, not per byte.
//
// Layout, version 1 (integers are unsigned LEB128 varints, strings are a varint length then the
// bytes, no terminator):
//
//   'P' 'E' 0x01           magic and version
//   varint count           number of events, at least 1
//   string topic           shared by every event of the message
//   count times:
//     u8     kind          EventKind (1..5)
//     varint seq
//     string room
//     string origin_node
//     string user
//     string payload
//
// A decoder rejects anything else (wrong magic or version, a length past the end, trailing
// bytes, an unknown kind) as a whole: a message is either understood completely or dropped.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bus/bus.hpp"
#include "core/result.hpp"

namespace parley::bus::wire {

// The content type set on every message, so that a stray consumer can tell what it holds.
inline constexpr std::string_view kContentType = "application/vnd.parley.events.v1";

// The number of bytes one event adds to a message body, to split packs by size before encoding.
std::size_t encoded_size(const Event& e);

// Appends a body holding `events`, whose topic is taken to be `topic`, to `out`.
void encode_events(std::string_view topic, std::span<const EventPtr> events, std::string& out);

// A topic and its events in publish order: what one publisher turn sends, packed.
using TopicBatch = std::pair<std::string, std::vector<EventPtr>>;

// Merges the batches of one topic into its first, keeping the order of events within each topic
// and the order in which topics first appear. Batches taken together after a backlog then pack
// into fewer, fuller messages.
void merge_by_topic(std::vector<TopicBatch>& batches);

// Decodes a body. Every event gets the body's topic.
Result<std::vector<EventPtr>, std::string> decode_events(std::string_view body);

}  // namespace parley::bus::wire
