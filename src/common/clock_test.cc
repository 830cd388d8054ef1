#include "common/clock.h"

#include <gtest/gtest.h>

namespace warren {
namespace {

TEST(ClockTest, FormatParseRoundTrip) {
  int64_t t = 1'795'000'000'123'456;
  std::string s = FormatRfc3339(t);
  EXPECT_EQ(s, "2026-11-18T11:06:40.123456Z");
  EXPECT_EQ(ParseRfc3339(s), t);
}

TEST(ClockTest, ParseVariants) {
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseRfc3339("1970-01-01"), 0);
  EXPECT_EQ(ParseRfc3339("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:01.5Z"), 1'500'000);
  EXPECT_FALSE(ParseRfc3339("yesterday"));
  EXPECT_FALSE(ParseRfc3339("2026-13-01"));
  EXPECT_FALSE(ParseRfc3339("2026-11-01T10:00:00"));
  EXPECT_FALSE(ParseRfc3339("2026-11-01T10:00:00Zjunk"));
}

TEST(ClockTest, FakeClockAdvances) {
  FakeClock c(100);
  c.Advance(50);
  EXPECT_EQ(c.NowMicros(), 150);
}

}  // namespace
}  // namespace warren
