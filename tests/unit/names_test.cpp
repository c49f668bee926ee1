#include <gtest/gtest.h>

#include <string>

#include "core/names.hpp"

namespace parley::core {
namespace {

TEST(Names, ValidUsernames) {
  EXPECT_TRUE(valid_username("a"));
  EXPECT_TRUE(valid_username("alice"));
  EXPECT_TRUE(valid_username("bob_42.x-y"));
  EXPECT_TRUE(valid_username("..."));
  EXPECT_TRUE(valid_username(std::string(32, 'z')));
}

TEST(Names, InvalidUsernames) {
  EXPECT_FALSE(valid_username(""));
  EXPECT_FALSE(valid_username(std::string(33, 'z')));
  EXPECT_FALSE(valid_username("Alice"));
  EXPECT_FALSE(valid_username("al ice"));
  EXPECT_FALSE(valid_username("al:ice"));
  EXPECT_FALSE(valid_username("al/ice"));
  EXPECT_FALSE(valid_username("élise"));
  EXPECT_FALSE(valid_username(std::string("a\0b", 3)));
  EXPECT_FALSE(valid_username("alice\n"));
}

TEST(Names, ValidRoomNames) {
  EXPECT_TRUE(valid_room_name("general"));
  EXPECT_TRUE(valid_room_name("a"));
  EXPECT_TRUE(valid_room_name("room_1-2"));
  EXPECT_TRUE(valid_room_name(std::string(64, 'r')));
}

TEST(Names, InvalidRoomNames) {
  EXPECT_FALSE(valid_room_name(""));
  EXPECT_FALSE(valid_room_name(std::string(65, 'r')));
  EXPECT_FALSE(valid_room_name("room.1"));  // dots are allowed in user names only
  EXPECT_FALSE(valid_room_name("Room"));
  EXPECT_FALSE(valid_room_name("dm:alice:bob"));
  EXPECT_FALSE(valid_room_name("a b"));
}

TEST(Names, DmRoomNameSortsAndValidates) {
  EXPECT_EQ(dm_room_name("alice", "bob"), "dm:alice:bob");
  EXPECT_EQ(dm_room_name("bob", "alice"), "dm:alice:bob");
  EXPECT_EQ(dm_room_name("a.b", "a-b"), "dm:a-b:a.b");  // byte order: '-' < '.'
  EXPECT_EQ(dm_room_name("alice", "alice"), "");
  EXPECT_EQ(dm_room_name("alice", "Bob"), "");
  EXPECT_EQ(dm_room_name("", "bob"), "");
  const std::string longest = dm_room_name(std::string(32, 'a'), std::string(32, 'b'));
  EXPECT_EQ(longest.size(), 3U + 32U + 1U + 32U);
  EXPECT_TRUE(valid_room_ref(longest));
}

TEST(Names, DmMembersParsesOnlyCanonicalNames) {
  auto m = dm_members("dm:alice:bob");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->first, "alice");
  EXPECT_EQ(m->second, "bob");

  EXPECT_FALSE(dm_members("dm:bob:alice").has_value());  // not sorted
  EXPECT_FALSE(dm_members("dm:alice:alice").has_value());
  EXPECT_FALSE(dm_members("dm:alice").has_value());
  EXPECT_FALSE(dm_members("dm:alice:").has_value());
  EXPECT_FALSE(dm_members("dm::bob").has_value());
  EXPECT_FALSE(dm_members("dm:").has_value());
  EXPECT_FALSE(dm_members("dm:a:b:c").has_value());
  EXPECT_FALSE(dm_members("dm:Alice:bob").has_value());
  EXPECT_FALSE(dm_members("DM:alice:bob").has_value());
  EXPECT_FALSE(dm_members("general").has_value());
  EXPECT_FALSE(dm_members("xdm:alice:bob").has_value());
}

TEST(Names, RoomRefAcceptsPlainAndDmNames) {
  EXPECT_TRUE(valid_room_ref("general"));
  EXPECT_TRUE(valid_room_ref("dm:alice:bob"));
  EXPECT_FALSE(valid_room_ref("dm:bob:alice"));
  EXPECT_FALSE(valid_room_ref("dm:alice"));
  EXPECT_FALSE(valid_room_ref(""));
  EXPECT_TRUE(is_dm_room("dm:alice:bob"));
  EXPECT_FALSE(is_dm_room("general"));
  EXPECT_FALSE(is_dm_room("dm-room"));
}

TEST(Names, DmRoundTrip) {
  const std::string room = dm_room_name("zed", "amy");
  auto m = dm_members(room);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(dm_room_name(m->first, m->second), room);
}

TEST(Names, Utf8CodePoints) {
  EXPECT_EQ(utf8_code_points(""), 0U);
  EXPECT_EQ(utf8_code_points("hello"), 5U);
  EXPECT_EQ(utf8_code_points("é"), 1U);                 // 2 bytes
  EXPECT_EQ(utf8_code_points("€"), 1U);                 // 3 bytes
  EXPECT_EQ(utf8_code_points("\xF0\x9F\x98\x80"), 1U);  // U+1F600, 4 bytes
  EXPECT_EQ(utf8_code_points("a€b\xF0\x9F\x98\x80"
                             "c"),
            5U);
}

TEST(Names, Utf8CodePointsMatchesBytewiseCountAtEveryLength) {
  // Exercises the 8-byte loop and its tail at every alignment with mixed-width characters.
  const std::string unit = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";  // a é € 😀 : 10 bytes, 4 cps
  std::string s;
  for (int i = 0; i < 20; ++i) {
    s += unit;
  }
  for (std::size_t len = 0; len <= s.size(); ++len) {
    std::size_t expected = 0;
    for (std::size_t i = 0; i < len; ++i) {
      if ((static_cast<unsigned char>(s[i]) & 0xC0U) != 0x80U) {
        ++expected;
      }
    }
    EXPECT_EQ(utf8_code_points(std::string_view(s.data(), len)), expected) << len;
  }
  EXPECT_EQ(utf8_code_points(s), 80U);
}

}  // namespace
}  // namespace parley::core
