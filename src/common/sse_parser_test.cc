#include "common/sse_parser.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/json.h"

namespace warren {
namespace {

struct Outcome {
  std::vector<SseEvent> events;
  bool failed = false;
};

std::string Describe(const SseEvent& e) {
  Json j = {{"event", e.event}, {"data", e.data}, {"id", e.id}};
  if (e.retry_ms) j["retry"] = *e.retry_ms;
  return j.dump();
}

std::string Describe(const Outcome& o) {
  std::string s = o.failed ? "failed " : "ok ";
  for (const auto& e : o.events) s += Describe(e) + " ";
  return s;
}

// Feeds `input` cut at the given offsets (sorted), then Finish().
Outcome Feed(const std::string& input, const std::vector<size_t>& cuts, size_t max_bytes) {
  Outcome o;
  SseParser p([&](const SseEvent& e) { o.events.push_back(e); }, max_bytes);
  size_t prev = 0;
  bool ok = true;
  for (size_t cut : cuts) {
    ok = p.Feed(std::string_view(input).substr(prev, cut - prev)) && ok;
    prev = cut;
  }
  ok = p.Feed(std::string_view(input).substr(prev)) && ok;
  p.Finish();
  o.failed = p.failed();
  EXPECT_EQ(ok, !o.failed) << "Feed's return value disagrees with failed()";
  return o;
}

Json LoadGolden() {
  std::ifstream in(WARREN_SSE_GOLDEN);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  return j.ok() ? *j : Json::object();
}

std::string Expected(const Json& c) {
  Outcome o;
  o.failed = c.value("failed", false);
  for (const auto& e : c["events"]) {
    SseEvent ev;
    ev.event = e.value("event", "message");
    ev.data = e.value("data", "");
    ev.id = e.value("id", "");
    if (e.contains("retry")) ev.retry_ms = e["retry"].get<long>();
    o.events.push_back(ev);
  }
  return Describe(o);
}

TEST(SseParserGolden, EveryCaseAtEveryChunking) {
  Json golden = LoadGolden();
  ASSERT_TRUE(golden.contains("cases"));
  ASSERT_GE(golden["cases"].size(), 30u);
  for (const auto& c : golden["cases"]) {
    const std::string name = c["name"];
    const std::string input = c["input"];
    const size_t max_bytes = c.value("max_event_bytes", size_t{16} << 20);
    const std::string want = Expected(c);
    SCOPED_TRACE(name);
    EXPECT_EQ(Describe(Feed(input, {}, max_bytes)), want) << "whole input";
    for (size_t i = 0; i <= input.size(); i++) {
      EXPECT_EQ(Describe(Feed(input, {i}, max_bytes)), want) << "split at " << i;
    }
    if (input.size() <= 200) {
      for (size_t i = 0; i <= input.size(); i++) {
        for (size_t j = i; j <= input.size(); j++) {
          std::string got = Describe(Feed(input, {i, j}, max_bytes));
          if (got != want) {
            ADD_FAILURE() << "split at " << i << "," << j << ": " << got << " want " << want;
            break;
          }
        }
      }
    }
    std::vector<size_t> bytes;
    for (size_t i = 1; i < input.size(); i++) bytes.push_back(i);
    EXPECT_EQ(Describe(Feed(input, bytes, max_bytes)), want) << "byte by byte";
  }
}

TEST(SseParser, EmptyChunksAreHarmless) {
  std::vector<SseEvent> got;
  SseParser p([&](const SseEvent& e) { got.push_back(e); });
  EXPECT_TRUE(p.Feed(""));
  EXPECT_TRUE(p.Feed("\xEF"));
  EXPECT_TRUE(p.Feed(""));
  EXPECT_TRUE(p.Feed("\xBB"));
  EXPECT_TRUE(p.Feed(""));
  EXPECT_TRUE(p.Feed("\xBF" "data: x\n"));
  EXPECT_TRUE(p.Feed(""));
  EXPECT_TRUE(p.Feed("\n"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "x");
}

TEST(SseParser, PartialBomThatIsNotABomIsKept) {
  // "\xEF\xBB" followed by something else is ordinary (if invalid UTF-8) input.
  std::vector<SseEvent> got;
  SseParser p([&](const SseEvent& e) { got.push_back(e); });
  p.Feed("\xEF\xBB");
  p.Feed("x\ndata: y\n\n");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "y");
}

// Regression (libFuzzer): bytes held while probing for a BOM split across
// chunks escaped the size bound, so "\xEF" "\xBB" "\n\n" passed with a 1-byte
// bound while the same bytes in one chunk failed.
TEST(SseParser, HeldBomPrefixCountsTowardsBound) {
  for (bool split : {false, true}) {
    SseParser p([](const SseEvent&) {}, 1);
    if (split) {
      p.Feed("\xEF");
      p.Feed("\xBB");
      p.Feed("\n\n");
    } else {
      p.Feed("\xEF\xBB\n\n");
    }
    EXPECT_TRUE(p.failed()) << "split=" << split;
  }
}

TEST(SseParser, FailedParserIgnoresInput) {
  std::vector<SseEvent> got;
  SseParser p([&](const SseEvent& e) { got.push_back(e); }, 8);
  EXPECT_FALSE(p.Feed("data: 0123456789\n\n"));
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.Feed("data: a\n\n"));
  EXPECT_TRUE(got.empty());
}

TEST(SseParser, ManyEventsInOneChunk) {
  std::string input;
  for (int i = 0; i < 1000; i++) input += "event: e" + std::to_string(i) + "\ndata: " + std::to_string(i) + "\n\n";
  int n = 0;
  SseParser p([&](const SseEvent& e) {
    EXPECT_EQ(e.event, "e" + std::to_string(n));
    EXPECT_EQ(e.data, std::to_string(n));
    n++;
  });
  EXPECT_TRUE(p.Feed(input));
  EXPECT_EQ(n, 1000);
}

TEST(SseParser, LongLinesAcrossManyChunksWithinBound) {
  std::string big(100'000, 'q');
  std::string got;
  SseParser p([&](const SseEvent& e) { got = e.data; }, 200'000);
  std::string input = "data: " + big + "\r\n\r\n";
  for (size_t i = 0; i < input.size(); i += 777) EXPECT_TRUE(p.Feed(std::string_view(input).substr(i, 777)));
  EXPECT_EQ(got, big);
}

}  // namespace
}  // namespace warren
