#include "common/ids.h"

#include <gtest/gtest.h>

#include <set>

namespace warren {
namespace {

TEST(IdsTest, PrefixAndUniqueness) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; i++) {
    std::string id = NewId(idprefix::kSession);
    EXPECT_TRUE(HasIdShape(id, idprefix::kSession)) << id;
    EXPECT_EQ(id.size(), 5u + 26u);
    EXPECT_TRUE(seen.insert(id).second);
  }
}

TEST(IdsTest, HasIdShapeRejects) {
  EXPECT_FALSE(HasIdShape("sesn_", "sesn_"));
  EXPECT_FALSE(HasIdShape("agent_abc", "sesn_"));
  EXPECT_FALSE(HasIdShape("sesn_ab/c", "sesn_"));
  EXPECT_FALSE(HasIdShape("sesn_" + std::string(65, 'a'), "sesn_"));
  EXPECT_TRUE(HasIdShape("sesn_ab-C_9", "sesn_"));
}

TEST(IdsTest, Sha256) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(IdsTest, Base64UrlRoundTrip) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "{\"sessions_token\":\"x\"}", "\xff\xfe\x00"}) {
    std::string enc = Base64UrlEncode(s), dec;
    EXPECT_EQ(enc.find('='), std::string::npos);
    ASSERT_TRUE(Base64UrlDecode(enc, &dec));
    EXPECT_EQ(dec, s);
    ASSERT_TRUE(Base64UrlDecode(enc + std::string((4 - enc.size() % 4) % 4, '='), &dec));
    EXPECT_EQ(dec, s);
  }
  std::string out;
  EXPECT_FALSE(Base64UrlDecode("a", &out));
  EXPECT_FALSE(Base64UrlDecode("ab*c", &out));
}

}  // namespace
}  // namespace warren
