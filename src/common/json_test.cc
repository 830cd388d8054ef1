#include "common/json.h"

#include <gtest/gtest.h>

namespace warren {
namespace {

TEST(JsonTest, ParsesAndRejects) {
  EXPECT_TRUE(ParseJson(R"({"a":[1,2,{"b":null}]})").ok());
  auto bad = ParseJson(R"({"a":)");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("invalid JSON"), std::string::npos);
  EXPECT_FALSE(ParseJson("").ok());
  EXPECT_FALSE(ParseJson("{} trailing").ok());
}

TEST(JsonTest, DepthBounded) {
  std::string deep(100000, '[');
  auto r = ParseJson(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nesting"), std::string::npos);
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJson("\"" + std::string(1000, '[') + "\"").ok());
}

TEST(JsonTest, DumpReplacesInvalidUtf8) {
  Json j = std::string("a\xff");
  EXPECT_NO_THROW(DumpJson(j));
}

}  // namespace
}  // namespace warren
