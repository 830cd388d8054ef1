#include "runner/text_util.h"

#include <gtest/gtest.h>

namespace warren::runner {
namespace {

TEST(TextUtil, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
}

TEST(TextUtil, RepairUsesMaximalSubparts) {
  EXPECT_EQ(RepairUtf8("a\xFF\xFE" "b"), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
  EXPECT_EQ(RepairUtf8("\xE2\x82" "x"), "\xEF\xBF\xBD" "x");  // one U+FFFD for a cut sequence
}

TEST(TextUtil, StripAnsiAndCrlf) {
  EXPECT_EQ(StripAnsi("\x1b[1;31mred\x1b[0m \x1b[?25l!"), "red !");
  EXPECT_EQ(StripAnsi("\x1b]not csi"), "\x1b]not csi");
  EXPECT_EQ(NormalizeCrlf("a\r\nb\rc"), "a\nb\rc");
}

TEST(TextUtil, JsQuoteMatchesJsonStringify) {
  EXPECT_EQ(JsQuote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
  EXPECT_EQ(JsQuote("\x01"), "\"\\u0001\"");
}

TEST(TextUtil, Misc) {
  EXPECT_EQ(Utf16Length("a\xC3\xA9\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(ErrnoName(2), "ENOENT");
  std::string u = RandomUuid();
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(u, RandomUuid());
  EXPECT_EQ(JsNumber(120000), "120000");
  EXPECT_EQ(JsNumber(1.5), "1.5");
}

}  // namespace
}  // namespace warren::runner
