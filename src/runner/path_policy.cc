#include "runner/path_policy.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "runner/text_util.h"

namespace warren::runner {
namespace {

constexpr int kMaxSymlinkHops = 40;

std::string Dirname(const std::string& p) {
  size_t pos = p.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return p.substr(0, pos);
}

std::string Basename(const std::string& p) {
  size_t pos = p.rfind('/');
  return pos == std::string::npos ? p : p.substr(pos + 1);
}

int RealPath(const std::string& p, std::string* out) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return errno;
  *out = buf;
  return 0;
}

}  // namespace

std::string LexicalResolve(std::string_view base, std::string_view p) {
  std::string joined;
  if (!p.empty() && p[0] == '/') {
    joined = std::string(p);
  } else {
    joined = std::string(base) + "/" + std::string(p);
  }
  std::vector<std::string_view> parts;
  std::string_view v = joined;
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find('/', i);
    if (j == std::string_view::npos) j = v.size();
    std::string_view seg = v.substr(i, j - i);
    if (seg.empty() || seg == ".") {
    } else if (seg == "..") {
      if (!parts.empty()) parts.pop_back();
    } else {
      parts.push_back(seg);
    }
    i = j + 1;
  }
  std::string out;
  for (auto s : parts) {
    out += '/';
    out += s;
  }
  return out.empty() ? "/" : out;
}

bool IsWithin(std::string_view root, std::string_view p) {
  if (p == root) return true;
  if (root == "/") return !p.empty() && p[0] == '/';
  return p.size() > root.size() && p.substr(0, root.size()) == root && p[root.size()] == '/';
}

int Canonicalize(const std::string& abs, std::string* out) {
  std::vector<std::string> tail;
  std::string prefix = abs;
  int hops = 0;
  for (;;) {
    std::string real;
    int rerr = RealPath(prefix, &real);
    if (rerr == 0) {
      for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
        if (real != "/") real += '/';
        real += *it;
      }
      *out = real;
      return 0;
    }
    struct stat st;
    if (::lstat(prefix.c_str(), &st) != 0) {
      int lerr = errno;
      if (lerr != ENOENT && lerr != ENOTDIR) return lerr;
      std::string parent = Dirname(prefix);
      if (parent == prefix) return lerr;
      tail.push_back(Basename(prefix));
      prefix = parent;
      continue;
    }
    if (!S_ISLNK(st.st_mode)) return rerr;
    if (++hops > kMaxSymlinkHops) return ELOOP;
    std::string parent;
    int perr = RealPath(Dirname(prefix), &parent);
    if (perr != 0) return perr;
    char buf[PATH_MAX];
    ssize_t n = ::readlink(prefix.c_str(), buf, sizeof buf - 1);
    if (n < 0) return errno;
    std::string target(buf, static_cast<size_t>(n));
    std::string rest;
    for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
      rest += '/';
      rest += *it;
    }
    tail.clear();
    prefix = LexicalResolve(parent, target + rest);
  }
}

std::string FsErrorMessage(int err, std::string_view file) {
  std::string f(file);
  switch (err) {
    case ENOENT: return f + ": no such file or directory";
    case EACCES:
    case EPERM: return f + ": permission denied";
    case ENOTDIR: return f + ": not a directory";
    case EISDIR: return f + ": is a directory";
    case ELOOP: return f + ": too many levels of symbolic links";
    case ENAMETOOLONG: return f + ": file name too long";
    case ENOSPC: return f + ": no space left on device";
    case EMFILE:
    case ENFILE: return f + ": too many open files";
    default: return f + ": i/o error (" + ErrnoName(err) + ")";
  }
}

PathPolicy::PathPolicy(std::string workdir, std::vector<std::string> allowed_roots,
                       std::vector<std::string> read_only_roots)
    : workdir_(std::move(workdir)),
      allowed_roots_(std::move(allowed_roots)),
      read_only_roots_(std::move(read_only_roots)) {}

bool PathPolicy::Resolve(std::string_view p, std::string* out, std::string* error) const {
  char cwd[PATH_MAX];
  std::string base = (getcwd(cwd, sizeof cwd) != nullptr) ? cwd : "/";
  std::string real_root;
  int err = Canonicalize(LexicalResolve(base, workdir_), &real_root);
  if (err != 0) {
    *error = FsErrorMessage(err, "path " + JsQuote(p));
    return false;
  }
  std::string real;
  err = Canonicalize(LexicalResolve(real_root, p), &real);
  if (err != 0) {
    *error = FsErrorMessage(err, "path " + JsQuote(p));
    return false;
  }
  if (IsWithin(real_root, real)) {
    *out = real;
    return true;
  }
  for (const auto& root : allowed_roots_) {
    std::string canon;
    if (Canonicalize(LexicalResolve(base, root), &canon) == 0 && IsWithin(canon, real)) {
      *out = real;
      return true;
    }
  }
  *error = "path " + JsQuote(p) + " is outside " +
           (allowed_roots_.empty()
                ? "the session's working directory"
                : "the session's working directory and its other permitted directories");
  return false;
}

std::string PathPolicy::ReadOnlyRootFor(const std::string& target) const {
  char cwd[PATH_MAX];
  std::string base = (getcwd(cwd, sizeof cwd) != nullptr) ? cwd : "/";
  for (const auto& root : read_only_roots_) {
    std::string canon;
    if (Canonicalize(LexicalResolve(base, root), &canon) == 0 && IsWithin(canon, target)) {
      return root;
    }
  }
  return "";
}

}  // namespace warren::runner
