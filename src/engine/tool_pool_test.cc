// ToolPool tests: the per-key bound, FIFO order within a key and across
// keys, cancelling queued jobs, and stopping with jobs queued. Jobs are held
// by gates the test opens; every wait is for a state the pool reaches (the
// deadline only turns a hang into a failure, it asserts no timing).
#include "engine/tool_pool.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace warren::engine {
namespace {

// Shared state of a test's jobs: gates they wait on, counters and a log.
class Board {
 public:
  // Blocks until gate `name` is opened.
  void Hold(const std::string& name) {
    std::unique_lock<std::mutex> lock(mu_);
    entered_[name]++;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_.count(name) > 0; });
  }
  void Open(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    open_.insert({name, true});
    cv_.notify_all();
  }
  void Log(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(what);
    cv_.notify_all();
  }
  // Waits until `pred` holds (under the board's lock); false after a
  // generous deadline (a hang, not a slow machine).
  template <typename Pred>
  bool WaitUntil(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return pred(); });
  }
  int entered(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return entered_[name];
  }
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  // Callable under WaitUntil's lock.
  int entered_locked(const std::string& name) { return entered_[name]; }
  size_t log_size_locked() const { return log_.size(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> entered_;
  std::map<std::string, bool> open_;
  std::vector<std::string> log_;
};

// With a pool of 4 and a bound of 2 per key, a key whose jobs hang holds
// 2 threads, however many of its jobs wait; another key's jobs all run and
// complete meanwhile.
TEST(ToolPoolTest, AHangingKeyHoldsAtMostItsShare) {
  ToolPool pool(4, 2);
  Board b;
  for (int i = 0; i < 6; i++)
    ASSERT_NE(pool.Submit("mcp http://hang", [&b] { b.Hold("hang"); }), 0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("hang") == 2; }));
  EXPECT_EQ(pool.running("mcp http://hang"), 2u);
  EXPECT_EQ(pool.queued("mcp http://hang"), 4u);
  for (int i = 0; i < 10; i++)
    ASSERT_NE(pool.Submit("web_fetch", [&b, i] { b.Log("fetch " + std::to_string(i)); }), 0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 10; })) << "the other key's jobs did not complete";
  EXPECT_EQ(b.entered("hang"), 2) << "the hanging key took more than its share";
  EXPECT_EQ(pool.running("mcp http://hang"), 2u);
  EXPECT_EQ(pool.queued("mcp http://hang"), 4u);
  EXPECT_LE(pool.threads(), 4u);
  b.Open("hang");
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("hang") == 6; }));
  pool.Stop();
  EXPECT_EQ(pool.running("mcp http://hang"), 0u);
  EXPECT_EQ(pool.queued("mcp http://hang"), 0u);
}

// Within a key, jobs start in the order they were submitted.
TEST(ToolPoolTest, FifoWithinAKey) {
  ToolPool pool(4, 1);
  Board b;
  ASSERT_NE(pool.Submit("a", [&b] {
    b.Hold("first");
    b.Log("a0");
  }),
            0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("first") == 1; }));
  for (int i = 1; i < 6; i++) ASSERT_NE(pool.Submit("a", [&b, i] { b.Log("a" + std::to_string(i)); }), 0u);
  EXPECT_EQ(pool.queued("a"), 5u);
  b.Open("first");
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 6; }));
  EXPECT_EQ(b.log(), (std::vector<std::string>{"a0", "a1", "a2", "a3", "a4", "a5"}));
}

// Across keys, a free thread takes the oldest job that may start: a key
// with many waiting jobs does not run ahead of a later key's first one.
TEST(ToolPoolTest, FifoAcrossKeys) {
  ToolPool pool(1, 1);
  Board b;
  ASSERT_NE(pool.Submit("x", [&b] { b.Hold("x"); }), 0u);  // holds the only thread
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("x") == 1; }));
  for (const char* name : {"a1", "a2", "b1", "a3", "c1", "b2"})
    ASSERT_NE(pool.Submit(std::string(1, name[0]), [&b, name] { b.Log(name); }), 0u);
  b.Open("x");
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 6; }));
  EXPECT_EQ(b.log(), (std::vector<std::string>{"a1", "a2", "b1", "a3", "c1", "b2"}));
}

// A job waiting behind its key's bound is skipped for a later job of a key
// below its bound, and runs once its key has room.
TEST(ToolPoolTest, AJobAtItsKeysBoundDoesNotBlockOtherKeys) {
  ToolPool pool(2, 1);
  Board b;
  ASSERT_NE(pool.Submit("slow", [&b] { b.Hold("slow"); }), 0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("slow") == 1; }));
  ASSERT_NE(pool.Submit("slow", [&b] { b.Log("slow 2"); }), 0u);  // waits for its key
  ASSERT_NE(pool.Submit("fast", [&b] { b.Log("fast"); }), 0u);    // submitted later, runs first
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 1; }));
  EXPECT_EQ(b.log(), std::vector<std::string>{"fast"});
  EXPECT_EQ(pool.queued("slow"), 1u);
  b.Open("slow");
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 2; }));
  EXPECT_EQ(b.log(), (std::vector<std::string>{"fast", "slow 2"}));
}

// Cancel removes a queued job (its `dropped` runs, its `run` never does);
// a running job is not touched (its owner stops it through its token).
TEST(ToolPoolTest, CancellingAQueuedJobRemovesIt) {
  ToolPool pool(4, 1);
  Board b;
  ToolPool::JobId running = pool.Submit("k", [&b] { b.Hold("k"); });
  ASSERT_NE(running, 0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("k") == 1; }));
  ToolPool::JobId queued = pool.Submit("k", [&b] { b.Log("ran"); }, [&b] { b.Log("dropped"); });
  ToolPool::JobId other = pool.Submit("k", [&b] { b.Log("other ran"); }, [&b] { b.Log("other dropped"); });
  ASSERT_NE(queued, 0u);
  ASSERT_NE(other, 0u);
  EXPECT_GT(queued, running);
  EXPECT_EQ(pool.queued("k"), 2u);
  EXPECT_TRUE(pool.Cancel(queued));
  EXPECT_EQ(b.log(), std::vector<std::string>{"dropped"});  // on this thread, before Cancel returns
  EXPECT_EQ(pool.queued("k"), 1u);
  EXPECT_FALSE(pool.Cancel(queued)) << "already dropped";
  EXPECT_FALSE(pool.Cancel(running)) << "a running job is its owner's to stop";
  EXPECT_FALSE(pool.Cancel(987654)) << "unknown";
  b.Open("k");
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 2; }));
  pool.Stop();
  EXPECT_EQ(b.log(), (std::vector<std::string>{"dropped", "other ran"}));
  EXPECT_FALSE(pool.Cancel(other)) << "has run";
}

// Stop drops the queued jobs (their `dropped` runs, oldest first), waits
// for the running ones, and refuses later jobs; Start accepts them again.
TEST(ToolPoolTest, StopWithQueuedJobsDropsThemAndWaitsForRunningOnes) {
  ToolPool pool(2, 1);
  Board b;
  ASSERT_NE(pool.Submit("a", [&b] {
    b.Hold("a");
    b.Log("a ran");
  }),
            0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.entered_locked("a") == 1; }));
  for (int i = 1; i <= 3; i++)
    ASSERT_NE(pool.Submit("a", [&b, i] { b.Log("a" + std::to_string(i) + " ran"); },
                          [&b, i] { b.Log("a" + std::to_string(i) + " dropped"); }),
              0u);
  auto stopped = std::async(std::launch::async, [&pool] { pool.Stop(); });
  // Stop drops the queue first, then waits for the running job.
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 3; }));
  EXPECT_EQ(b.log(), (std::vector<std::string>{"a1 dropped", "a2 dropped", "a3 dropped"}));
  EXPECT_EQ(pool.running("a"), 1u);
  EXPECT_EQ(pool.Submit("b", [&b] { b.Log("after stop"); }), 0u) << "refused while stopping";
  b.Open("a");
  stopped.get();
  EXPECT_EQ(b.log(), (std::vector<std::string>{"a1 dropped", "a2 dropped", "a3 dropped", "a ran"}));
  EXPECT_EQ(pool.Submit("b", [&b] { b.Log("after stop"); }), 0u) << "refused once stopped";
  EXPECT_EQ(pool.running("a"), 0u);
  pool.Start();
  ASSERT_NE(pool.Submit("b", [&b] { b.Log("restarted"); }), 0u);
  ASSERT_TRUE(b.WaitUntil([&] { return b.log_size_locked() == 5; }));
  EXPECT_EQ(b.log().back(), "restarted");
}

// A job may submit another (the engine chains a job's calls that way) and
// cancel queued ones from inside `run` or `dropped`; a bound above the
// pool's size is the pool's size.
TEST(ToolPoolTest, JobsMaySubmitAndCancelFromTheirCallbacks) {
  ToolPool pool(2, 100);
  Board b;
  std::promise<void> done;
  ASSERT_NE(pool.Submit("k", [&] {
    ToolPool::JobId later = pool.Submit("k", [&b] { b.Hold("never"); }, [&b] { b.Log("later dropped"); });
    // Both threads may be busy or not: either way `later` has not run
    // (the gate "never" stays shut) or is queued; cancel it if queued.
    if (!pool.Cancel(later)) b.Log("later started");
    pool.Submit("k", [&] {
      b.Log("chained");
      done.set_value();
    });
  }),
            0u);
  done.get_future().wait();
  auto log = b.log();
  ASSERT_EQ(log.size(), 2u);
  if (log[0] == "later started") b.Open("never");
  EXPECT_EQ(log[1], "chained");
  pool.Stop();
  EXPECT_LE(pool.threads(), 2u);
}

}  // namespace
}  // namespace warren::engine
