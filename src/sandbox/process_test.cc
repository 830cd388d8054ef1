#include "sandbox/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "common/ids.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

TEST(ProcessTest, SpawnInitAndExec) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string root = "/tmp/wsbx-" + NewId("", 8);
  ASSERT_TRUE(MkdirAll(root + "/bin").ok());
  ASSERT_EQ(0, *RunCommand({"cp", "/bin/busybox", root + "/bin/busybox"}));
  ASSERT_EQ(0, symlink("busybox", (root + "/bin/sh").c_str()));
  auto cg = DetectCgroupManager("warren-test");
  ASSERT_TRUE(cg.ok()) << cg.status().ToString();
  std::string name = NewId("t", 8);
  ASSERT_TRUE((*cg)->Create(name, Resources{0, 256 << 20, 64, 0}).ok());
  InitSpec spec;
  spec.rootfs = root;
  spec.hostname = "sbx";
  spec.ids = IdRange{4000};
  auto h = SpawnInit(spec, **cg, name);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto prog = SeccompProgram::BuildDefault();
  ASSERT_TRUE(prog.ok()) << prog.status().ToString();
  ExecSpec e;
  e.argv = {"/bin/busybox", "sh", "-c", "echo hi; id -u; hostname; ls /; echo err >&2; exit 3"};
  auto r = ExecInSandbox(h->pid, (*cg)->ProcsFiles(name), e, *prog, CapSet::Default());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_data, "hi\n0\nsbx\nbin\ndev\nproc\nsys\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_EQ(r->exit_code, 3);
  kill(h->pid, SIGKILL);
  EXPECT_TRUE((*cg)->Destroy(name).ok());
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
    rmdir((std::string("/sys/fs/cgroup/") + c + "/warren-test").c_str());
  }
  (void)RemoveTree(root);
}

}  // namespace
}  // namespace warren::sandbox
