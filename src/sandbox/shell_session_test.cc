#include "sandbox/shell_session.h"

#include <gtest/gtest.h>

#include <vector>

namespace warren::sandbox {
namespace {

struct Collected {
  std::string data;
  std::vector<FrameParser::End> ends;
};

// Feeds `chunks` one after the other, then flushes.
Collected Parse(const std::string& nonce, const std::vector<std::string>& chunks) {
  FrameParser p(nonce);
  Collected c;
  auto on_data = [&](std::string_view d) { c.data.append(d); };
  auto on_end = [&](const FrameParser::End& e) {
    c.data.append("<END>");
    c.ends.push_back(e);
  };
  for (const auto& ch : chunks) p.Feed(ch, on_data, on_end);
  p.Flush(on_data);
  return c;
}

TEST(ShellQuoteTest, QuotesSingleQuotes) {
  EXPECT_EQ(ShellQuote("abc"), "'abc'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
}

TEST(FrameCommandTest, EvalsQuotedCommandThenPrintsMarkers) {
  std::string t = FrameCommand("n0nce", 7, "echo 'hi'");
  EXPECT_EQ(t.rfind("eval 'echo '\\''hi'\\''' 0<&3 3<&-\n", 0), 0u) << t;
  EXPECT_NE(t.find("printf '\\036WARREN-%s:%s:%s\\n' 'n0nce' 7 \"$__warren_rc\"; "), std::string::npos) << t;
  EXPECT_NE(t.find(" >&2\n"), std::string::npos);
  EXPECT_EQ(t.back(), '\n');
}

TEST(FrameParserTest, SplitsDataAndMarker) {
  auto c = Parse("abc", {"hello\n\036WARREN-abc:3:17\nafter"});
  EXPECT_EQ(c.data, "hello\n<END>after");
  ASSERT_EQ(c.ends.size(), 1u);
  EXPECT_EQ(c.ends[0].seq, 3u);
  EXPECT_EQ(c.ends[0].exit_code, 17);
}

TEST(FrameParserTest, MarkerSplitAcrossEveryByteBoundary) {
  std::string stream = "out\036WARREN-abc:12:0\nx";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= stream.size(); ++cut2) {
      auto c = Parse("abc", {stream.substr(0, cut), stream.substr(cut, cut2 - cut), stream.substr(cut2)});
      EXPECT_EQ(c.data, "out<END>x") << cut << "," << cut2;
      ASSERT_EQ(c.ends.size(), 1u);
      EXPECT_EQ(c.ends[0].seq, 12u);
    }
  }
}

TEST(FrameParserTest, ForeignOrMalformedMarkersAreData) {
  // Wrong nonce, missing exit code, bad terminator, a lone RS byte.
  std::string s = "\036WARREN-xyz:1:0\n\036WARREN-abc:1:\n\036WARREN-abc:1:0x\036";
  auto c = Parse("abc", {s});
  EXPECT_EQ(c.data, s);
  EXPECT_TRUE(c.ends.empty());
}

TEST(FrameParserTest, IncompleteMarkerAtEofIsFlushedAsData) {
  auto c = Parse("abc", {"tail\036WARREN-ab"});
  EXPECT_EQ(c.data, "tail\036WARREN-ab");
  c = Parse("abc", {"\036WARREN-abc:4:1"});
  EXPECT_EQ(c.data, "\036WARREN-abc:4:1");
}

TEST(FrameParserTest, TwoMarkersInOneChunk) {
  auto c = Parse("q", {"a\036WARREN-q:1:0\nb\036WARREN-q:2:255\n"});
  EXPECT_EQ(c.data, "a<END>b<END>");
  ASSERT_EQ(c.ends.size(), 2u);
  EXPECT_EQ(c.ends[1].exit_code, 255);
}

TEST(AppendCappedTest, CapsAndMarksOnce) {
  std::string buf;
  int64_t dropped = 0;
  EXPECT_EQ(AppendCapped(&buf, "12345", 8, &dropped), "12345");
  EXPECT_EQ(dropped, 0);
  AppendCapped(&buf, "6789ab", 8, &dropped);
  EXPECT_EQ(buf, "12345678" + std::string(kTruncatedMarker));
  EXPECT_EQ(dropped, 3);
  EXPECT_TRUE(AppendCapped(&buf, "cd", 8, &dropped).empty());
  EXPECT_EQ(dropped, 5);
  EXPECT_EQ(buf, "12345678" + std::string(kTruncatedMarker));
}

TEST(InfoJsonTest, CommandAndSession) {
  CommandInfo c;
  c.id = "cmd-1";
  c.running = false;
  c.exit_code = 3;
  c.stdout_dropped = 10;
  Json j = c.ToJson();
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_EQ(j["stdout_truncated_bytes"], 10);
  SessionInfo s;
  s.session_id = "s";
  s.alive = false;
  s.ended = "shell exited with status 0";
  EXPECT_EQ(s.ToJson()["ended"], "shell exited with status 0");
}

}  // namespace
}  // namespace warren::sandbox
