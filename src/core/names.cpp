#include "core/names.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

namespace parley::core {

namespace {

constexpr std::size_t max_username = 32;
constexpr std::size_t max_room_name = 64;
constexpr std::string_view dm_prefix = "dm:";

// Character classes are tested with plain comparisons rather than <cctype>, whose answers
// depend on the locale and whose arguments must be cast to avoid undefined behaviour.
constexpr bool is_lower_or_digit(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

constexpr bool is_username_char(char c) {
  return is_lower_or_digit(c) || c == '_' || c == '.' || c == '-';
}

constexpr bool is_room_char(char c) {
  return is_lower_or_digit(c) || c == '_' || c == '-';
}

// Splits "dm:<a>:<b>" into its two parts without allocating, checking every rule a dm room
// name must follow: both parts valid user names and strictly sorted, so that each pair of users
// has exactly one spelling.
bool split_dm(std::string_view room, std::string_view& a, std::string_view& b) {
  if (room.size() <= dm_prefix.size() || room.substr(0, dm_prefix.size()) != dm_prefix) {
    return false;
  }
  std::string_view rest = room.substr(dm_prefix.size());
  std::size_t colon = rest.find(':');
  if (colon == std::string_view::npos) {
    return false;
  }
  a = rest.substr(0, colon);
  b = rest.substr(colon + 1);
  return valid_username(a) && valid_username(b) && a < b;
}

}  // namespace

bool valid_username(std::string_view s) {
  if (s.empty() || s.size() > max_username) {
    return false;
  }
  for (char c : s) {
    if (!is_username_char(c)) {
      return false;
    }
  }
  return true;
}

bool valid_room_name(std::string_view s) {
  if (s.empty() || s.size() > max_room_name) {
    return false;
  }
  for (char c : s) {
    if (!is_room_char(c)) {
      return false;
    }
  }
  return true;
}

bool is_dm_room(std::string_view s) {
  std::string_view a;
  std::string_view b;
  return split_dm(s, a, b);
}

bool valid_room_ref(std::string_view s) {
  return valid_room_name(s) || is_dm_room(s);
}

// Returns "" when the precondition (two distinct valid user names) does not hold, so that callers
// can reject a request such as a user opening a dm with themselves without an exception.
std::string dm_room_name(std::string_view a, std::string_view b) {
  if (!valid_username(a) || !valid_username(b) || a == b) {
    return {};
  }
  if (b < a) {
    std::swap(a, b);
  }
  std::string out;
  out.reserve(dm_prefix.size() + a.size() + 1 + b.size());
  out.append(dm_prefix).append(a).push_back(':');
  out.append(b);
  return out;
}

std::optional<std::pair<std::string, std::string>> dm_members(std::string_view room) {
  std::string_view a;
  std::string_view b;
  if (!split_dm(room, a, b)) {
    return std::nullopt;
  }
  return std::pair<std::string, std::string>{std::string(a), std::string(b)};
}

// Counts the bytes that are not UTF-8 continuation bytes (10xxxxxx), eight at a time: bodies
// of up to 16 KB are measured on every send, so the word-at-a-time loop is worth its few lines.
std::size_t utf8_code_points(std::string_view s) {
  constexpr std::uint64_t high_bits = 0x8080808080808080ULL;
  std::size_t continuation = 0;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, sizeof w);
    // A continuation byte has bit 7 set and bit 6 clear; shifting left by one moves each byte's
    // bit 6 into its bit 7 position (carries across bytes land in bit 0 and are masked away).
    std::uint64_t cont = w & ~(w << 1) & high_bits;
    continuation += static_cast<std::size_t>(std::popcount(cont));
  }
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0U) == 0x80U) {
      ++continuation;
    }
  }
  return s.size() - continuation;
}

}  // namespace parley::core
