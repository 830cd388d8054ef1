// SandboxSessionFiles (domain::SessionFiles over the orchestrator's
// sandboxes) against FakeSandboxes, whose sandboxes have real root
// directories: the session's sandbox is found by its label; the file lands
// at /tmp/warren/<kind>/<name>.txt; links planted by a hostile sandbox are
// never followed (ELOOP on the way, replaced at the name); no sandbox or an
// archived one is NotFound.
#include "orchestrator/session_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/ids.h"
#include "orchestrator/orchestrator.h"
#include "sandbox/testing/fake_sandboxes.h"

namespace warren::orchestrator {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class SessionFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = fs::temp_directory_path() / ("warren-session-files-" + NewId("", 8));
    fs::create_directories(host_);
    std::ofstream(host_ / "secret") << "host secret";
  }
  void TearDown() override { fs::remove_all(host_); }

  // A sandbox of `session` (labelled as the orchestrator labels it) and the
  // host path of its root.
  std::string SandboxOf(const std::string& session, std::string* root) {
    sandbox::CreateOptions c;
    c.labels = {{kLabelSession, session}};
    auto rec = sandboxes_.Create(c);
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    auto files = sandboxes_.Files(rec->id);
    EXPECT_TRUE(files.ok());
    *root = fs::read_symlink("/proc/self/fd/" + std::to_string(files->fd())).string();
    return rec->id;
  }

  fs::path host_;
  sandbox::FakeSandboxes sandboxes_;
  SandboxSessionFiles files_{&sandboxes_};
};

TEST_F(SessionFilesTest, WritesIntoTheSessionsSandboxOnly) {
  std::string root_a, root_b;
  SandboxOf("sesn_a", &root_a);
  SandboxOf("sesn_b", &root_b);
  auto path = files_.WriteToolOutput("sesn_a", "mcp", "sevt_1", "the whole output");
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(*path, "/tmp/warren/mcp/sevt_1.txt");
  EXPECT_EQ(Slurp(root_a + *path), "the whole output");
  EXPECT_FALSE(fs::exists(root_b + "/tmp/warren"));
  struct stat st;
  ASSERT_EQ(stat((root_a + *path).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  // No sandbox: NotFound (the engine keeps the cut output).
  EXPECT_EQ(files_.WriteToolOutput("sesn_none", "mcp", "sevt_1", "x").status().code(), Code::kNotFound);
  // Names that could walk anywhere are refused before any lookup.
  EXPECT_EQ(files_.WriteToolOutput("sesn_a", "mcp", "../../etc/passwd", "x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(files_.WriteToolOutput("sesn_a", "../x", "sevt_1", "x").status().code(), Code::kInvalidArgument);
}

// A hostile sandbox plants /tmp/warren -> a host directory: the write fails
// with ELOOP and nothing appears on the host.
TEST_F(SessionFilesTest, PlantedDirectoryLinkFailsWithEloop) {
  std::string root;
  SandboxOf("sesn_h", &root);
  fs::create_directories(root + "/tmp");
  fs::create_symlink(host_, root + "/tmp/warren");
  auto r = files_.WriteToolOutput("sesn_h", "mcp", "sevt_2", "payload");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(std::strerror(ELOOP)), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(fs::exists(host_ / "mcp"));
  // The same with /tmp itself a link (absolute, to "/" of the host).
  fs::remove(root + "/tmp/warren");
  fs::remove(root + "/tmp");
  fs::create_symlink("/", root + "/tmp");
  auto r2 = files_.WriteToolOutput("sesn_h", "web_fetch", "sevt_3", "payload");
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find(std::strerror(ELOOP)), std::string::npos) << r2.status().ToString();
  EXPECT_FALSE(fs::exists("/warren/web_fetch/sevt_3.txt"));
}

// A symlink planted at the file's own name (to a host file) is replaced by
// the output; the host file is untouched.
TEST_F(SessionFilesTest, PlantedFileLinkIsReplacedNotFollowed) {
  std::string root;
  SandboxOf("sesn_f", &root);
  fs::create_directories(root + "/tmp/warren/mcp");
  fs::create_symlink(host_ / "secret", root + "/tmp/warren/mcp/sevt_4.txt");
  auto r = files_.WriteToolOutput("sesn_f", "mcp", "sevt_4", "output");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Slurp((host_ / "secret").string()), "host secret");
  EXPECT_FALSE(fs::is_symlink(root + "/tmp/warren/mcp/sevt_4.txt"));
  EXPECT_EQ(Slurp(root + "/tmp/warren/mcp/sevt_4.txt"), "output");
}

TEST_F(SessionFilesTest, ArchivedSandboxIsNotFound) {
  std::string root;
  std::string id = SandboxOf("sesn_z", &root);
  ASSERT_TRUE(sandboxes_.Archive(id).ok());
  EXPECT_EQ(files_.WriteToolOutput("sesn_z", "mcp", "sevt_5", "x").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace warren::orchestrator
