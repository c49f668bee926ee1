#pragma once
// Naming rules shared by the protocol decoder, the HTTP API and the store.

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace parley::core {

// ^[a-z0-9_.-]{1,32}$
bool valid_username(std::string_view s);
// ^[a-z0-9_-]{1,64}$ : the names clients may create.
bool valid_room_name(std::string_view s);
// A room a client may address: a plain room name or a direct-message room dm:<a>:<b>.
bool valid_room_ref(std::string_view s);
bool is_dm_room(std::string_view s);
// "dm:<min>:<max>" for two distinct valid user names.
std::string dm_room_name(std::string_view a, std::string_view b);
// The two members of a dm room name, if it is one.
std::optional<std::pair<std::string, std::string>> dm_members(std::string_view room);
// Number of Unicode code points in valid UTF-8.
std::size_t utf8_code_points(std::string_view s);

}  // namespace parley::core
