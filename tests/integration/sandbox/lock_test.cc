// Root integration tests: per-sandbox locking. An operation in flight on
// one sandbox (held inside its archive by the runtime's test hook) must not
// hold up create, exec and stop of another sandbox, reads, or the idle
// sweep. Checks the order of completion, not time.
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "harness.h"

namespace warren::sandbox::testing {
namespace {

class SandboxLockTest : public RuntimeTest {
 protected:
  void SetUp() override {
    test_hook_ = [this](const std::string& point, const std::string& id) {
      std::unique_lock<std::mutex> l(mu_);
      if (point != "archive" || id != held_id_) return;
      in_archive_ = true;
      cv_.notify_all();
      cv_.wait(l, [&] { return release_; });
    };
    RuntimeTest::SetUp();
  }

  void Note(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    order_.push_back(what);
    cv_.notify_all();
  }
  // Waits for `pred` (mu_ held); false after a generous bound, which only a
  // blocked (deadlocked) operation reaches.
  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::minutes(2), pred);
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    release_ = true;
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string held_id_;
  bool in_archive_ = false, release_ = false;
  std::vector<std::string> order_;
};

TEST_F(SandboxLockTest, ArchiveInFlightDoesNotBlockOtherSandboxes) {
  SandboxRecord a = MustCreate();
  ASSERT_FALSE(a.id.empty());
  {
    std::lock_guard<std::mutex> l(mu_);
    held_id_ = a.id;
  }
  std::thread archiver([&] {
    auto r = rt_->Archive(a.id);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    Note("archive");
  });
  ASSERT_TRUE(WaitFor([&] { return in_archive_; })) << "archive never reached its hook";

  // a's archive now holds a's lock. Another sandbox's lifecycle completes.
  std::thread other([&] {
    auto b = rt_->Create({});
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    if (b.ok()) {
      ExecRequest req;
      req.argv = {"/bin/sh", "-c", "echo hi"};
      auto r = rt_->Exec(b->id, req);
      EXPECT_TRUE(r.ok() && r->stdout_data == "hi\n") << (r.ok() ? r->stdout_data : r.status().ToString());
      auto s = rt_->Stop(b->id);
      EXPECT_TRUE(s.ok() && s->state == SandboxState::kStopped) << s.status().ToString();
      auto st = rt_->Start(b->id);
      EXPECT_TRUE(st.ok()) << st.status().ToString();
    }
    // Reads and the idle sweep do not wait for a's lock either.
    auto got = rt_->Get(a.id);
    EXPECT_TRUE(got.ok() && got->state == SandboxState::kArchiving) << got.status().ToString();
    auto list = rt_->List();
    EXPECT_TRUE(list.ok() && list->size() == 2u);
    EXPECT_TRUE(rt_->EnforceIdlePolicies().ok());
    Note("other");
  });
  bool other_done = WaitFor([&] { return std::find(order_.begin(), order_.end(), "other") != order_.end(); });
  Release();
  other.join();
  archiver.join();
  EXPECT_TRUE(other_done) << "another sandbox's create/exec/stop waited for the archive";
  EXPECT_EQ(order_, (std::vector<std::string>{"other", "archive"}));
  EXPECT_EQ(rt_->Get(a.id)->state, SandboxState::kArchived);
}

}  // namespace
}  // namespace warren::sandbox::testing
