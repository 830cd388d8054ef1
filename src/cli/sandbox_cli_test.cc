#include "cli/sandbox_cli.h"

#include <gtest/gtest.h>

namespace warren::sandbox {
namespace {

TEST(CliTest, ParseByteSize) {
  int64_t v = 0;
  EXPECT_TRUE(ParseByteSize("512M", &v));
  EXPECT_EQ(v, 512LL << 20);
  EXPECT_TRUE(ParseByteSize("2GiB", &v));
  EXPECT_EQ(v, 2LL << 30);
  EXPECT_TRUE(ParseByteSize("4096", &v));
  EXPECT_EQ(v, 4096);
  EXPECT_TRUE(ParseByteSize("64k", &v));
  EXPECT_EQ(v, 64 << 10);
  EXPECT_FALSE(ParseByteSize("", &v));
  EXPECT_FALSE(ParseByteSize("lots", &v));
  EXPECT_FALSE(ParseByteSize("5X", &v));
}

}  // namespace
}  // namespace warren::sandbox
