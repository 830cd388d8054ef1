#include "orchestrator/identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>

#include "common/ids.h"
#include "common/unique_fd.h"

namespace warren::orchestrator {
namespace {

Status Errno(const std::string& what) { return Status::FromErrno(errno, what); }

Result<std::string> ReadId(int dirfd, const std::string& path) {
  UniqueFd fd(::openat(dirfd, kIdentityFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT) return std::string();
    if (errno == ELOOP)
      return Status::FailedPrecondition(path + " is a symbolic link (refused, ELOOP); delete it to get a new id");
    return Errno("open " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Errno("stat " + path);
  if (!S_ISREG(st.st_mode)) return Status::FailedPrecondition(path + " is not a regular file; delete it to get a new id");
  char buf[256];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) return Errno("read " + path);
  std::string id(buf, static_cast<size_t>(n));
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r' || id.back() == ' ')) id.pop_back();
  if (!ValidOrchestratorId(id))
    return Status::FailedPrecondition(path + " does not hold a valid orchestrator id; delete it to get a new one");
  return id;
}

}  // namespace

bool ValidOrchestratorId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.' && c != ':') return false;
  return true;
}

Result<OrchestratorIdentity> LoadIdentity(const std::string& data_dir) {
  const std::string path = data_dir + "/" + kIdentityFile;
  UniqueFd dir(::open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Errno("open " + data_dir);
  OrchestratorIdentity out;
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof host - 1) == 0) out.host = host;
  WARREN_ASSIGN_OR_RETURN(out.id, ReadId(dir.get(), path));
  if (!out.id.empty()) return out;
  // Create: a private temporary file, written and synced, then linked into
  // place (EEXIST: another process won the race; its id is read below).
  const std::string id = NewId("orch_");
  const std::string tmp = std::string(kIdentityFile) + ".tmp." + std::to_string(::getpid());
  ::unlinkat(dir.get(), tmp.c_str(), 0);
  {
    UniqueFd fd(::openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Errno("create " + data_dir + "/" + tmp);
    const std::string line = id + "\n";
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd.get()) != 0) {
      Status s = Errno("write " + data_dir + "/" + tmp);
      ::unlinkat(dir.get(), tmp.c_str(), 0);
      return s;
    }
  }
  const bool linked = ::linkat(dir.get(), tmp.c_str(), dir.get(), kIdentityFile, 0) == 0;
  const int link_errno = errno;
  ::unlinkat(dir.get(), tmp.c_str(), 0);
  if (!linked && link_errno != EEXIST) {
    errno = link_errno;
    return Errno("link " + path);
  }
  ::fsync(dir.get());
  WARREN_ASSIGN_OR_RETURN(out.id, ReadId(dir.get(), path));
  if (out.id.empty()) return Status::Internal(path + " vanished right after it was created");
  return out;
}

}  // namespace warren::orchestrator
