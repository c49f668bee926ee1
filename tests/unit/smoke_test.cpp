#include <gtest/gtest.h>
#include "core/result.hpp"
TEST(Result, HoldsValueOrError) {
  parley::Result<int> ok = 3;
  EXPECT_TRUE(ok.has_value());
  parley::Result<int> bad = parley::unexpected(std::make_error_code(std::errc::invalid_argument));
  EXPECT_FALSE(bad.has_value());
}
