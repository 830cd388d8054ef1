#include "runner/tools.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

namespace warren::runner {
namespace {

std::string Text(const ToolResult& r) { return r.content.at(0).value("text", ""); }

class ToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren-tools-XXXXXX";
    root_ = mkdtemp(tmpl);
    work_ = root_ + "/w";
    mem_ = root_ + "/mem";
    mkdir(work_.c_str(), 0755);
    mkdir(mem_.c_str(), 0755);
    std::ofstream(mem_ + "/note.md") << "remember\n";
  }
  void TearDown() override { system(("rm -rf " + root_).c_str()); }
  std::string root_, work_, mem_;
};

TEST_F(ToolsTest, BashStatePersistsAndScrubsCredentials) {
  setenv("ANTHROPIC_API_KEY", "secret", 1);
  setenv("anthropic_lower", "secret", 1);
  Toolset t({work_});
  EXPECT_EQ(Text(t.Run("bash", {{"command", "cd /tmp && X=1"}})), "(no output)");
  EXPECT_EQ(Text(t.Run("bash", {{"command", "echo $X $PWD ${ANTHROPIC_API_KEY:-none} ${anthropic_lower:-none}"}})),
            "1 /tmp none none");
  unsetenv("ANTHROPIC_API_KEY");
  unsetenv("anthropic_lower");
}

TEST_F(ToolsTest, BackgroundJobOutputBetweenCallsNeverBlocks) {
  Toolset t({work_});
  // The job waits for `go` so none of its output can race into this call's.
  auto r = t.Run("bash", {{"command",
                           "(while [ ! -e go ]; do sleep 0.01; done; seq 1 200000; "
                           "echo finished > bgdone) & echo started"}});
  EXPECT_EQ(Text(r), "started");
  std::ofstream(work_ + "/go") << "";
  // No call runs now; the job's ~1.3 MB of output must still drain.
  for (int i = 0; i < 1200 && access((work_ + "/bgdone").c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::ifstream done(work_ + "/bgdone");
  std::string line;
  ASSERT_TRUE(std::getline(done, line)) << "the job never finished: its output blocked";
  EXPECT_EQ(line, "finished");
  // The last lines of seq may still sit in the pipe when bgdone appears, and
  // land in the next call's output: only its end is this call's own.
  std::string next = Text(t.Run("bash", {{"command", "cat bgdone"}}));
  EXPECT_EQ(next.substr(next.size() - std::min<size_t>(next.size(), 8)), "finished") << next;
}

TEST_F(ToolsTest, BashTimeoutKillsShell) {
  Toolset t({work_});
  auto r = t.Run("bash", {{"command", "Y=2; sleep 10"}, {"timeout_ms", 200}});
  EXPECT_TRUE(r.is_error);
  EXPECT_EQ(Text(r), "bash: bash command timed out after 200ms");
  EXPECT_EQ(Text(t.Run("bash", {{"command", "echo ${Y:-fresh}"}})), "fresh");
}

TEST_F(ToolsTest, BashCancelFromAnotherThread) {
  Toolset t({work_});
  std::atomic<bool> cancel{false};
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  auto r = t.Run("bash", {{"command", "sleep 20"}}, &cancel);
  killer.join();
  EXPECT_TRUE(r.is_error);
  // `sleep 20` ending by itself would be no error: the text proves the cancel.
  EXPECT_EQ(Text(r), "bash: This operation was aborted");
}

TEST_F(ToolsTest, AllowedAndReadOnlyRoots) {
  ToolsetOptions o{work_};
  o.allowed_roots = {mem_};
  o.read_only_roots = {mem_};
  Toolset t(o);
  EXPECT_EQ(Text(t.Run("read", {{"file_path", mem_ + "/note.md"}})), "remember\n");
  auto w = t.Run("write", {{"file_path", mem_ + "/x.md"}, {"content", "x"}});
  EXPECT_TRUE(w.is_error);
  EXPECT_EQ(Text(w), "write: " + mem_ + "/x.md is inside read-only directory " + mem_);
  auto e = t.Run("edit", {{"file_path", mem_ + "/note.md"}, {"old_string", "re"}, {"new_string", "x"}});
  EXPECT_TRUE(e.is_error);
  EXPECT_FALSE(t.Run("write", {{"file_path", "ok.txt"}, {"content", "x"}}).is_error);
}

TEST_F(ToolsTest, MaxFileBytesConfigurable) {
  ToolsetOptions o{work_};
  o.max_file_bytes = 4;
  Toolset t(o);
  std::ofstream(work_ + "/five.txt") << "12345";
  auto r = t.Run("read", {{"file_path", "five.txt"}});
  EXPECT_TRUE(r.is_error);
  o.max_file_bytes = std::nullopt;
  Toolset u(o);
  EXPECT_EQ(Text(u.Run("read", {{"file_path", "five.txt"}})), "12345");
}

TEST_F(ToolsTest, GrepWalkerTimeoutIsReported) {
  ToolsetOptions o{work_};
  o.grep_timeout_ms = 0;
  Toolset t(o);
  std::ofstream(work_ + "/a.txt") << "hit\n";
  setenv("PATH", "/nonexistent", 1);  // no rg: the built-in walker runs
  auto r = t.Run("grep", {{"pattern", "hit"}});
  setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
  EXPECT_TRUE(r.is_error);
  EXPECT_EQ(Text(r), "grep: timed out after 0s");
}

TEST_F(ToolsTest, UnknownToolAndBadTypes) {
  Toolset t({work_});
  EXPECT_TRUE(t.Run("nope", Json::object()).is_error);
  EXPECT_EQ(Text(t.Run("read", {{"file_path", 5}})), "read: file_path must be a string");
  EXPECT_EQ(Base64Encode("hi"), "aGk=");
}

}  // namespace
}  // namespace warren::runner
