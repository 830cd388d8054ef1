#include "sandbox/seccomp.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace warren::sandbox {
namespace {

// In a child with the default filter installed, tries ioctl(/dev/null, cmd)
// for every btrfs command number and reports the errno of each through a
// pipe. /dev/null knows none of them: ENOTTY means the call reached the
// kernel, EPERM that the filter refused it.
TEST(SeccompTest, RefusesBtrfsIoctlsButReflink) {
  auto prog = SeccompProgram::BuildDefault();
  ASSERT_TRUE(prog.ok()) << prog.status().ToString();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(p[0]);
    int fd = open("/dev/null", O_RDONLY);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prog->Install() != 0) _exit(3);
    unsigned char errs[256];
    for (int nr = 0; nr < 256; ++nr) {
      // Vary direction and size bits too: the filter looks at type and number.
      unsigned long cmd = (nr % 2 ? _IOW(0x94, nr, long) : _IO(0x94, nr)) | 0xdead00000000UL;
      long rc = ioctl(fd, cmd, 0);
      errs[nr] = static_cast<unsigned char>(rc < 0 ? errno : 0);
    }
    // The real reflink command stays usable (EBADF: it reached the VFS).
    errs[9] = ioctl(fd, FICLONE, -1) < 0 && errno == EBADF ? errs[9] : 1;
    (void)!write(p[1], errs, sizeof(errs));
    _exit(0);
  }
  close(p[1]);
  unsigned char errs[256];
  ASSERT_EQ(read(p[0], errs, sizeof(errs)), static_cast<ssize_t>(sizeof(errs)));
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  for (int nr = 0; nr < 256; ++nr) {
    bool allowed = nr == 9 || nr == 13 || nr == 54;  // FICLONE, FICLONERANGE, FIDEDUPERANGE
    EXPECT_EQ(errs[nr], allowed ? ENOTTY : EPERM) << "btrfs ioctl nr " << nr;
  }
}

}  // namespace
}  // namespace warren::sandbox
