#include "api/event_bus.h"

#include <gtest/gtest.h>

#include <mutex>

namespace warren::api {
namespace {

store::StoredEvent Ev(int64_t seq) {
  store::StoredEvent e;
  e.seq = seq;
  e.body = {{"id", "sevt_" + std::to_string(seq)}, {"type", "agent.message"}};
  return e;
}

// A store of `n` events, appended to by the test while the replay runs.
struct FakeLog {
  std::mutex mu;
  int64_t last = 0;
  std::vector<std::pair<int64_t, int>> calls;  // (after, limit)
  Result<std::vector<store::StoredEvent>> After(int64_t after, int limit) {
    std::lock_guard<std::mutex> l(mu);
    calls.emplace_back(after, limit);
    std::vector<store::StoredEvent> out;
    for (int64_t s = after + 1; s <= last && static_cast<int>(out.size()) < limit; s++) out.push_back(Ev(s));
    return out;
  }
};

std::vector<int64_t> Seqs(const std::vector<std::shared_ptr<const std::string>>& frames) {
  std::vector<int64_t> out;
  for (const auto& f : frames) {
    size_t p = f->find("id: sevt_");
    if (p == std::string::npos) out.push_back(0);
    else out.push_back(std::stoll(f->substr(p + 9)));
  }
  return out;
}

// Last-Event-ID replay of a long history: read a page at a time, never more
// than a page queued, every event exactly once and in order, live events
// published meanwhile neither lost nor doubled.
TEST(SseReplay, LongHistoryIsPagedWithinTheBound) {
  EventBus bus(/*max_queue=*/100);
  FakeLog log;
  log.last = 20000;
  auto stream = bus.Subscribe("s1");
  stream->StartReplay(5, [&log](int64_t after, int limit) { return log.After(after, limit); });
  std::vector<int64_t> got;
  for (int pulls = 0; pulls < 1000; pulls++) {
    std::vector<std::shared_ptr<const std::string>> frames;
    ASSERT_TRUE(stream->Pull(&frames));
    for (int64_t s : Seqs(frames)) got.push_back(s);
    if (pulls == 10) {
      // Live events commit during the replay (the store first, then the bus).
      {
        std::lock_guard<std::mutex> l(log.mu);
        log.last += 3;
      }
      bus.Publish("s1", {Ev(log.last - 2), Ev(log.last - 1), Ev(log.last)});
      bus.PublishPreview("s1", "agent.message", {{"type", "event_delta"}});  // not asked for: dropped
    }
    if (!got.empty() && got.back() == 20003) break;
  }
  ASSERT_EQ(got.size(), 20003u - 5u);
  for (size_t i = 0; i < got.size(); i++) ASSERT_EQ(got[i], static_cast<int64_t>(i) + 6);
  EXPECT_LE(stream->max_queued_frames(), static_cast<size_t>(SseStream::kReplayPage));
  // Caught up: live events are queued as they come, once.
  {
    std::lock_guard<std::mutex> l(log.mu);
    log.last = 20004;
  }
  bus.Publish("s1", {Ev(20004)});
  bus.Publish("s1", {Ev(20004)});
  std::vector<std::shared_ptr<const std::string>> frames;
  ASSERT_TRUE(stream->Pull(&frames));
  EXPECT_EQ(Seqs(frames), std::vector<int64_t>{20004});
  // Pages were asked for consecutively.
  for (size_t i = 1; i < log.calls.size(); i++) EXPECT_GE(log.calls[i].first, log.calls[i - 1].first);
  EXPECT_GE(log.calls.size(), 20000u / SseStream::kReplayPage);
}

// A live event pushed after the last page was read, but before the replay
// switched to live mode, is read again rather than lost.
TEST(SseReplay, EventCommittedBetweenPagesIsNotLost) {
  EventBus bus;
  FakeLog log;
  log.last = 3;
  auto stream = bus.Subscribe("s1");
  bool once = true;
  stream->StartReplay(0, [&](int64_t after, int limit) {
    auto r = log.After(after, limit);
    if (once) {
      once = false;
      // Commits right after this read: in the store, then on the bus.
      {
        std::lock_guard<std::mutex> l(log.mu);
        log.last = 4;
      }
      bus.Publish("s1", {Ev(4)});
    }
    return r;
  });
  std::vector<std::shared_ptr<const std::string>> frames;
  ASSERT_TRUE(stream->Pull(&frames));
  EXPECT_EQ(Seqs(frames), (std::vector<int64_t>{1, 2, 3}));
  frames.clear();
  ASSERT_TRUE(stream->Pull(&frames));
  EXPECT_EQ(Seqs(frames), std::vector<int64_t>{4});
}

// Session end during a replay: the replay finishes, then the final frame,
// then the stream ends.
TEST(SseReplay, EndAfterReplay) {
  EventBus bus;
  FakeLog log;
  log.last = 300;
  auto stream = bus.Subscribe("s1");
  stream->StartReplay(0, [&log](int64_t after, int limit) { return log.After(after, limit); });
  bus.EndSession("s1", {{"type", "session.deleted"}});
  std::vector<int64_t> got;
  bool more = true;
  std::string last;
  while (more) {
    std::vector<std::shared_ptr<const std::string>> frames;
    more = stream->Pull(&frames);
    for (auto& f : frames) last = *f;
    for (int64_t s : Seqs(frames)) got.push_back(s);
  }
  ASSERT_EQ(got.size(), 301u);
  EXPECT_EQ(got[299], 300);
  EXPECT_NE(last.find("session.deleted"), std::string::npos);
}

}  // namespace
}  // namespace warren::api
