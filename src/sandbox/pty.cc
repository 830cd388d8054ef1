#include "sandbox/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <termios.h>
#include <unistd.h>

#include "sandbox/sys.h"

namespace warren::sandbox {

Status SetWindowSize(int fd, uint16_t rows, uint16_t cols) {
  if (rows == 0 || cols == 0) return Status::InvalidArgument("terminal size must be at least 1x1");
  struct winsize ws = {};
  ws.ws_row = rows;
  ws.ws_col = cols;
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0) return ErrnoStatus("TIOCSWINSZ");
  return Status::Ok();
}

Result<PtyPair> OpenPtyIn(const std::string& root_dir, uint16_t rows, uint16_t cols, int64_t owner_uid,
                          int64_t owner_gid) {
  UniqueFd root(open(root_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return ErrnoStatus("open sandbox root " + root_dir);
  // Resolved inside the sandbox's root: a symlink planted in the image
  // cannot point this at a host file.
  UniqueFd master(SysOpenat2(root.get(), "dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC, 0,
                             RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS));
  if (!master) return ErrnoStatus("open the sandbox's /dev/pts/ptmx");
  struct statfs sfs;
  struct stat st;
  if (fstatfs(master.get(), &sfs) < 0 || fstat(master.get(), &st) < 0) return ErrnoStatus("stat ptmx");
  if (sfs.f_type != DEVPTS_SUPER_MAGIC || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
      minor(st.st_rdev) != 2) {
    return Status::FailedPrecondition("the sandbox's /dev/pts/ptmx is not a devpts ptmx");
  }
  int unlock = 0;
  if (ioctl(master.get(), TIOCSPTLCK, &unlock) < 0) return ErrnoStatus("unlockpt");
  PtyPair pair;
  if (ioctl(master.get(), TIOCGPTN, &pair.index) < 0) return ErrnoStatus("TIOCGPTN");
  WARREN_RETURN_IF_ERROR(SetWindowSize(master.get(), rows, cols));
  pair.slave.reset(ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pair.slave) return ErrnoStatus("TIOCGPTPEER");
  if (owner_uid >= 0 && fchown(pair.slave.get(), static_cast<uid_t>(owner_uid),
                               static_cast<gid_t>(owner_gid >= 0 ? owner_gid : owner_uid)) < 0) {
    return ErrnoStatus("chown pty slave");
  }
  pair.master = std::move(master);
  return pair;
}

}  // namespace warren::sandbox
