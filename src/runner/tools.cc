#include "runner/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <re2/re2.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <dirent.h>

#include "runner/glob.h"
#include "runner/text_util.h"

extern char** environ;

namespace warren::runner {

struct Toolset::Outcome {
  bool error = false;
  std::string text;
  Json blocks;  // non-null: content blocks instead of text

  static Outcome Text(std::string t) { return {false, std::move(t), nullptr}; }
  static Outcome Error(std::string t) { return {true, std::move(t), nullptr}; }
};

namespace {

constexpr int64_t kImageMaxBase64 = 5 * 1024 * 1024;
constexpr int64_t kPdfMaxBase64 = 20 * 1024 * 1024;
constexpr int kWalkMaxDepth = 40;
constexpr size_t kGrepMaxLineLength = 2000;
constexpr int64_t kGrepMaxFileBytes = 8 * 1024 * 1024;
constexpr size_t kBinarySniffBytes = 512;

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// JavaScript truthiness of a JSON value.
bool Truthy(const Json& j) {
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number()) {
    double d = j.get<double>();
    return d != 0 && !std::isnan(d);
  }
  if (j.is_string()) return !j.get_ref<const std::string&>().empty();
  if (j.is_null()) return false;
  return true;  // objects and arrays
}

// The string field `key`: "" when absent/null; false when of another type.
bool StringField(const Json& in, const char* key, std::string* out) {
  out->clear();
  if (!in.is_object()) return true;
  auto it = in.find(key);
  if (it == in.end() || it->is_null()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

std::string CurrentDir() {
  char cwd[PATH_MAX];
  return getcwd(cwd, sizeof cwd) != nullptr ? cwd : "/";
}

std::string Dirname(const std::string& p) {
  size_t pos = p.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return p.substr(0, pos);
}

int ReadWholeFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return e;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

int MkdirP(const std::string& dir, mode_t mode) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode) ? 0 : EEXIST;
  if (errno != ENOENT) return errno;
  std::string parent = Dirname(dir);
  if (parent != dir) {
    int e = MkdirP(parent, mode);
    if (e != 0) return e;
  }
  if (mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) return errno;
  return 0;
}

// Write a sibling temp file, fsync, rename over the target. A new file is
// 0600; an existing one keeps its permission bits.
int AtomicWriteFile(const std::string& target, std::string_view content) {
  std::string tmp = Dirname(target) + "/.tmp-" + std::to_string(getpid()) + "-" + RandomUuid();
  struct stat st;
  bool existed = stat(target.c_str(), &st) == 0;
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  int err = 0;
  if (existed && fchmod(fd, st.st_mode & 0777) != 0) err = errno;
  size_t off = 0;
  while (err == 0 && off < content.size()) {
    ssize_t n = write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    off += static_cast<size_t>(n);
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp.c_str(), target.c_str()) != 0) err = errno;
  if (err != 0) unlink(tmp.c_str());
  return err;
}

std::string LowerExt(const std::string& p) {
  size_t slash = p.rfind('/');
  size_t dot = p.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = p.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string MediaTypeFor(const std::string& ext) {
  if (ext == ".png") return "image/png";
  if (ext == ".jpg" || ext == ".jpeg") return "image/jpeg";
  if (ext == ".gif") return "image/gif";
  if (ext == ".webp") return "image/webp";
  if (ext == ".pdf") return "application/pdf";
  return "";
}

// Lines [start, end) of a large file, streamed in 64 KiB chunks with the
// selected bytes capped at `limit` (the SDK's LineRangeCollector).
bool ReadRangeStreaming(const std::string& abs, const std::string& fp, double start_line,
                        double end_line, int64_t limit, std::string* out, std::string* error) {
  out->clear();
  const double start = std::max(0.0, start_line - 1);
  const double end = end_line > 0 ? end_line : INFINITY;
  if (end <= start) return true;
  int fd = open(abs.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "read: " + FsErrorMessage(errno, fp);
    return false;
  }
  double line = 0;
  char chunk[65536];
  bool done = false;
  while (!done) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t ls = 0;
    const size_t len = static_cast<size_t>(n);
    while (ls < len && line < end) {
      const void* nl = memchr(chunk + ls, '\n', len - ls);
      size_t le = nl ? static_cast<size_t>(static_cast<const char*>(nl) - chunk) : len;
      if (line >= start) {
        out->append(chunk + ls, le - ls);
        if (nl && line + 1 < end) out->push_back('\n');
        if (static_cast<int64_t>(out->size()) > limit) {
          close(fd);
          if (end - start == 1) {
            *error = "read: line " + JsNumber(start + 1) + " of " + fp + " alone exceeds " +
                     std::to_string(limit) +
                     "-byte limit. The read tool cannot return part of a line, so view_range "
                     "cannot narrow this further.";
          } else {
            *error = "read: view_range [" + JsNumber(start_line) + ", " + JsNumber(end_line) +
                     "] of " + fp + " exceeds " + std::to_string(limit) +
                     "-byte limit. Narrow the view_range to read a smaller portion.";
          }
          return false;
        }
      }
      if (!nl) break;
      line += 1;
      ls = le + 1;
    }
    if (line >= end) done = true;
  }
  close(fd);
  return true;
}

// The first executable `name` on PATH whose real path is outside every
// directory in `not_inside` (the SDK's findExecutable).
std::string FindExecutable(const std::string& name, const std::vector<std::string>& not_inside) {
  const char* path_env = getenv("PATH");
  if (path_env == nullptr) return "";
  std::string path = path_env;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = path.substr(i, j - i);
    i = j + 1;
    if (dir.empty() || dir[0] != '/' || LexicalResolve("/", dir) != dir) continue;
    std::string cand = dir + "/" + name;
    struct stat st;
    if (access(cand.c_str(), X_OK) != 0 || stat(cand.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      continue;
    }
    std::string real;
    if (Canonicalize(cand, &real) != 0) continue;
    bool inside = false;
    for (const auto& root : not_inside) {
      std::string canon;
      if (Canonicalize(LexicalResolve(CurrentDir(), root), &canon) != 0) continue;
      std::string a = canon, b = real;
      for (auto& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (auto& c : b) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (IsWithin(a, b)) inside = true;
    }
    if (!inside) return real;
  }
  return "";
}

struct RgOutcome {
  bool error = false;
  std::string text;
};

RgOutcome RunRipgrep(const std::string& rg, const std::string& pattern, const std::string& path,
                     const std::atomic<bool>* cancel) {
  std::vector<std::string> env_storage;
  for (auto& [k, v] : ScrubbedEnv()) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = {"rg", "--no-config", "-n", "--no-heading", "-e", pattern, "--",
                                   path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out_p[2], err_p[2];
  if (pipe2(out_p, O_CLOEXEC) != 0) return {true, "grep: rg failed: " + std::string(strerror(errno))};
  if (pipe2(err_p, O_CLOEXEC) != 0) {
    close(out_p[0]);
    close(out_p[1]);
    return {true, "grep: rg failed: " + std::string(strerror(errno))};
  }
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out_p[1], 1);
    dup2(err_p[1], 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    execve(rg.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(out_p[1]);
  close(err_p[1]);
  if (pid < 0) {
    close(out_p[0]);
    close(err_p[0]);
    return {true, "grep: rg failed: fork failed"};
  }
  std::string out, err;
  bool truncated = false, aborted = false;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    if (cancel != nullptr && cancel->load()) {
      kill(pid, SIGKILL);
      aborted = true;
      break;
    }
    pollfd fds[2];
    int n = 0;
    int oi = -1, ei = -1;
    if (out_open) {
      oi = n;
      fds[n++] = {out_p[0], POLLIN, 0};
    }
    if (err_open) {
      ei = n;
      fds[n++] = {err_p[0], POLLIN, 0};
    }
    int r = poll(fds, n, 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if (oi >= 0 && fds[oi].revents) {
      ssize_t k = read(out_p[0], buf, sizeof buf);
      if (k <= 0) {
        out_open = false;
      } else if (!truncated) {
        out.append(buf, static_cast<size_t>(k));
        if (out.size() > kGrepOutputLimit) {
          truncated = true;
          out.resize(kGrepOutputLimit);
          kill(pid, SIGKILL);
        }
      }
    }
    if (ei >= 0 && fds[ei].revents) {
      ssize_t k = read(err_p[0], buf, sizeof buf);
      if (k <= 0) err_open = false;
      else err.append(buf, static_cast<size_t>(k));
    }
  }
  close(out_p[0]);
  close(err_p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (aborted) return {true, "grep: aborted"};
  if (truncated) {
    return {false, RepairUtf8(out) + "\n[output truncated at " + std::to_string(kGrepOutputLimit) +
                       " bytes]"};
  }
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    if (code == 0) return {false, RepairUtf8(out)};
    if (code == 1) return {false, "no matches"};
    return {true, "grep: rg failed: " + (err.empty() ? "exit " + std::to_string(code) : RepairUtf8(err))};
  }
  return {true, "grep: rg failed: " + (err.empty() ? std::string("exit null") : RepairUtf8(err))};
}

// The built-in search when no rg is on PATH.
class WalkGrep {
 public:
  WalkGrep(const RE2& re, int64_t deadline, const std::atomic<bool>* cancel)
      : re_(re), deadline_(deadline), cancel_(cancel) {}

  void Run(const std::string& root) {
    struct stat st;
    if (stat(root.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      GrepFile(root);
      return;
    }
    Walk(root, 0);
  }

  bool timed_out() const { return timed_out_; }
  bool aborted() const { return aborted_; }
  std::vector<std::string>& hits() { return hits_; }

 private:
  bool Stop() {
    if (cancel_ != nullptr && cancel_->load()) aborted_ = true;
    if (MonoMs() >= deadline_) timed_out_ = true;
    return stopped_ || aborted_ || timed_out_;
  }

  bool Push(const std::string& line) {
    budget_ -= static_cast<int64_t>(Utf16Length(line)) + 1;
    if (budget_ < 0) {
      hits_.push_back("[output truncated at " + std::to_string(kGrepOutputLimit) + " bytes]");
      stopped_ = true;
      return false;
    }
    hits_.push_back(line);
    return true;
  }

  bool Walk(const std::string& dir, int depth) {
    if (depth > kWalkMaxDepth) return true;
    if (Stop()) return false;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return true;
    std::vector<std::pair<std::string, unsigned char>> entries;
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st;
        std::string full = dir + "/" + name;
        if (lstat(full.c_str(), &st) == 0) {
          type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
        }
      }
      entries.emplace_back(std::move(name), type);
    }
    closedir(d);
    std::sort(entries.begin(), entries.end());
    for (auto& [name, type] : entries) {
      if (name == ".git" || name == "node_modules") continue;
      if (remaining_-- <= 0) return false;
      if (Stop()) return false;
      std::string full = dir == "/" ? "/" + name : dir + "/" + name;
      if (type == DT_DIR) {
        if (!Walk(full, depth + 1)) return false;
      } else if (type == DT_REG) {
        if (!GrepFile(full)) return false;
      }
    }
    return true;
  }

  bool GrepFile(const std::string& file) {
    int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return true;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kGrepMaxFileBytes) {
      close(fd);
      return true;
    }
    std::string data;
    data.reserve(static_cast<size_t>(st.st_size));
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      data.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    if (memchr(data.data(), '\0', std::min(data.size(), kBinarySniffBytes)) != nullptr) return true;
    // readline semantics: lines end at \n, \r\n or a lone \r.
    size_t i = 0, lineno = 0;
    while (i < data.size()) {
      size_t j = i;
      while (j < data.size() && data[j] != '\n' && data[j] != '\r') ++j;
      ++lineno;
      std::string_view raw(data.data() + i, j - i);
      if (j < data.size() && data[j] == '\r' && j + 1 < data.size() && data[j + 1] == '\n') ++j;
      i = j + 1;
      if (raw.size() > kGrepMaxLineLength) {
        std::string line = RepairUtf8(raw);
        if (Utf16Length(line) > kGrepMaxLineLength) continue;
      }
      std::string line = RepairUtf8(raw);
      if ((lineno & 1023) == 0 && Stop()) return false;
      if (RE2::PartialMatch(line, re_)) {
        if (!Push(file + ":" + std::to_string(lineno) + ":" + line)) return false;
      }
    }
    return true;
  }

  const RE2& re_;
  int64_t deadline_;
  const std::atomic<bool>* cancel_;
  std::vector<std::string> hits_;
  int64_t budget_ = static_cast<int64_t>(kGrepOutputLimit);
  int64_t remaining_ = static_cast<int64_t>(kWalkMaxEntries);
  bool stopped_ = false;
  bool timed_out_ = false;
  bool aborted_ = false;
};

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Toolset::Toolset(ToolsetOptions options)
    : options_(std::move(options)),
      policy_(options_.workdir, options_.allowed_roots, options_.read_only_roots) {
  // Writing to a shell that died must not kill the runner.
  signal(SIGPIPE, SIG_IGN);
}

Toolset::~Toolset() { Close(); }

void Toolset::Close() {
  std::lock_guard<std::mutex> lock(bash_mu_);
  if (bash_) bash_->Close();
  bash_.reset();
}

const std::vector<std::string>& Toolset::Names() {
  static const std::vector<std::string> kNames = {"bash", "read", "write", "edit", "glob", "grep"};
  return kNames;
}

bool Toolset::Has(const std::string& name) {
  const auto& n = Names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

ToolResult Toolset::Run(const std::string& name, const Json& input,
                        const std::atomic<bool>* cancel) {
  Outcome o;
  if (name == "bash") o = Bash(input, cancel);
  else if (name == "read") o = Read(input);
  else if (name == "write") o = Write(input);
  else if (name == "edit") o = Edit(input);
  else if (name == "glob") o = Glob(input);
  else if (name == "grep") o = Grep(input, cancel);
  else o = Outcome::Error("Error: unknown tool '" + name + "'");
  ToolResult r;
  r.is_error = o.error;
  if (!o.blocks.is_null()) {
    r.content = o.blocks;
  } else {
    r.content = Json::array({Json{{"type", "text"}, {"text", o.text.empty() ? "(no output)" : o.text}}});
  }
  return r;
}

Toolset::Outcome Toolset::Bash(const Json& in, const std::atomic<bool>* cancel) {
  std::lock_guard<std::mutex> lock(bash_mu_);
  bool restart = in.is_object() && in.contains("restart") && Truthy(in["restart"]);
  std::string command;
  if (!StringField(in, "command", &command)) return Outcome::Error("bash: command must be a string");
  if (restart) {
    if (bash_) bash_->Close();
    bash_.reset();
  }
  if (command.empty()) {
    if (restart) return Outcome::Text("bash session restarted");
    return Outcome::Error("bash: command is required");
  }
  double timeout_ms = kBashDefaultTimeoutMs;
  if (in.is_object() && in.contains("timeout_ms") && in["timeout_ms"].is_number()) {
    double t = in["timeout_ms"].get<double>();
    if (t > 0) timeout_ms = t;
  }
  if (!bash_) {
    auto started = BashSession::Start(policy_.workdir(), ScrubbedEnv());
    if (!started.ok()) return Outcome::Error("bash: " + started.status().message());
    bash_ = std::move(started).value();
  }
  auto r = bash_->Exec(command, timeout_ms, cancel);
  if (!r.ok()) {
    bash_.reset();
    if (r.status().code() == Code::kCancelled) return Outcome::Error("bash: This operation was aborted");
    return Outcome::Error("bash: " + r.status().message());
  }
  if (r->exit_code != 0) {
    return Outcome::Error(r->output.empty() ? "exit " + std::to_string(r->exit_code) : r->output);
  }
  return Outcome::Text(r->output);
}

Toolset::Outcome Toolset::Read(const Json& in) {
  std::string fp;
  if (!StringField(in, "file_path", &fp)) return Outcome::Error("read: file_path must be a string");
  if (fp.empty()) return Outcome::Error("read: file_path is required");
  std::string abs, err;
  if (!policy_.Resolve(fp, &abs, &err)) return Outcome::Error(err);
  const Json vr = in.contains("view_range") ? in["view_range"] : Json();
  const bool has_vr = vr.is_array() && !vr.empty();
  if (has_vr && (vr.size() != 2 || !vr[0].is_number() || !vr[1].is_number())) {
    return Outcome::Error("read: view_range must be [start_line, end_line]");
  }
  const double start_line = has_vr ? std::trunc(vr[0].get<double>()) : 0;
  const double end_line = has_vr ? std::trunc(vr[1].get<double>()) : 0;
  struct stat st;
  if (stat(abs.c_str(), &st) != 0) return Outcome::Error("read: " + FsErrorMessage(errno, fp));
  if (!S_ISREG(st.st_mode)) return Outcome::Error("read: " + fp + " is not a regular file");

  const std::string media = MediaTypeFor(LowerExt(abs));
  if (!media.empty()) {
    if (has_vr) return Outcome::Error("read: view_range is not supported for image and PDF files");
    const bool pdf = media == "application/pdf";
    const int64_t max_b64 = pdf ? kPdfMaxBase64 : kImageMaxBase64;
    const int64_t b64_len = 4 * ((static_cast<int64_t>(st.st_size) + 2) / 3);
    if (b64_len > max_b64) {
      return Outcome::Error("read: " + fp + " is " + std::to_string(st.st_size) + " bytes, exceeds " +
                            std::to_string(max_b64 / 4 * 3) + "-byte limit for " +
                            (pdf ? "PDF files" : "images") + ".");
    }
    std::string data;
    int e = ReadWholeFile(abs, &data);
    if (e != 0) return Outcome::Error("read: " + FsErrorMessage(e, fp));
    Outcome o;
    Json source = {{"type", "base64"}, {"media_type", media}, {"data", Base64Encode(data)}};
    o.blocks = Json::array({Json{{"type", pdf ? "document" : "image"}, {"source", source}}});
    return o;
  }

  const auto& limit = options_.max_file_bytes;
  std::string text;
  if (limit.has_value() && st.st_size > *limit) {
    if (!has_vr) {
      return Outcome::Error("read: " + fp + " is " + std::to_string(st.st_size) + " bytes, exceeds " +
                            std::to_string(*limit) +
                            "-byte limit. Use the view_range parameter to read specific line "
                            "ranges, e.g. view_range: [1, 500].");
    }
    if (!ReadRangeStreaming(abs, fp, start_line, end_line, *limit, &text, &err)) {
      return Outcome::Error(err);
    }
  } else {
    std::string data;
    int e = ReadWholeFile(abs, &data);
    if (e != 0) return Outcome::Error("read: " + FsErrorMessage(e, fp));
    if (!has_vr) {
      text = std::move(data);
    } else {
      std::vector<std::string_view> lines;
      size_t i = 0;
      for (;;) {
        size_t j = data.find('\n', i);
        if (j == std::string::npos) {
          lines.emplace_back(data.data() + i, data.size() - i);
          break;
        }
        lines.emplace_back(data.data() + i, j - i);
        i = j + 1;
      }
      const double n = static_cast<double>(lines.size());
      double s = std::max(0.0, start_line - 1);
      double e2 = end_line > 0 ? std::min(end_line, n) : n;
      for (double k = s; k < e2; k += 1) {
        if (k > s) text += '\n';
        text.append(lines[static_cast<size_t>(k)]);
      }
    }
  }
  if (!IsValidUtf8(text)) return Outcome::Error("read: " + fp + ": not valid UTF-8 text");
  return Outcome::Text(std::move(text));
}

Toolset::Outcome Toolset::Write(const Json& in) {
  std::string fp, content;
  if (!StringField(in, "file_path", &fp)) return Outcome::Error("write: file_path must be a string");
  if (fp.empty()) return Outcome::Error("write: file_path is required");
  if (!StringField(in, "content", &content)) return Outcome::Error("write: content must be a string");
  std::string abs, err;
  if (!policy_.Resolve(fp, &abs, &err)) return Outcome::Error(err);
  std::string ro = policy_.ReadOnlyRootFor(abs);
  if (!ro.empty()) return Outcome::Error("write: " + fp + " is inside read-only directory " + ro);
  int e = MkdirP(Dirname(abs), 0700);
  if (e == 0) e = AtomicWriteFile(abs, content);
  if (e != 0) return Outcome::Error("write: " + FsErrorMessage(e, fp));
  return Outcome::Text("wrote " + std::to_string(content.size()) + " bytes to " + fp);
}

Toolset::Outcome Toolset::Edit(const Json& in) {
  std::string fp, old_s, new_s;
  if (!StringField(in, "file_path", &fp)) return Outcome::Error("edit: file_path must be a string");
  if (fp.empty()) return Outcome::Error("edit: file_path is required");
  if (!StringField(in, "old_string", &old_s)) return Outcome::Error("edit: old_string must be a string");
  if (old_s.empty()) return Outcome::Error("edit: old_string is required");
  if (!StringField(in, "new_string", &new_s)) return Outcome::Error("edit: new_string must be a string");
  const bool replace_all = in.contains("replace_all") && Truthy(in["replace_all"]);
  std::string abs, err;
  if (!policy_.Resolve(fp, &abs, &err)) return Outcome::Error(err);
  std::string ro = policy_.ReadOnlyRootFor(abs);
  if (!ro.empty()) return Outcome::Error("edit: " + fp + " is inside read-only directory " + ro);
  struct stat st;
  if (stat(abs.c_str(), &st) != 0) return Outcome::Error("edit: " + FsErrorMessage(errno, fp));
  if (!S_ISREG(st.st_mode)) return Outcome::Error("edit: " + fp + " is not a regular file");
  const auto& limit = options_.max_file_bytes;
  if (limit.has_value() && st.st_size > *limit) {
    return Outcome::Error("edit: " + fp + " is " + std::to_string(st.st_size) + " bytes, exceeds " +
                          std::to_string(*limit) +
                          "-byte limit. The edit tool loads the whole file and cannot modify a file "
                          "this large.");
  }
  std::string data;
  int e = ReadWholeFile(abs, &data);
  if (e != 0) return Outcome::Error("edit: " + FsErrorMessage(e, fp));
  if (!IsValidUtf8(data)) return Outcome::Error("edit: " + fp + ": not valid UTF-8 text");
  size_t count = 0;
  for (size_t pos = data.find(old_s); pos != std::string::npos;
       pos = data.find(old_s, pos + old_s.size())) {
    ++count;
  }
  if (count == 0) return Outcome::Error("edit: old_string not found in " + fp);
  if (!replace_all && count > 1) {
    return Outcome::Error("edit: old_string appears " + std::to_string(count) + " times in " + fp +
                          " (must be unique)");
  }
  std::string updated;
  size_t pos = 0;
  for (size_t done = 0; done < (replace_all ? count : 1); ++done) {
    size_t hit = data.find(old_s, pos);
    updated.append(data, pos, hit - pos);
    updated += new_s;
    pos = hit + old_s.size();
  }
  updated.append(data, pos, std::string::npos);
  e = AtomicWriteFile(abs, updated);
  if (e != 0) return Outcome::Error("edit: write: " + FsErrorMessage(e, fp));
  return Outcome::Text("edited " + fp + " (" + std::to_string(replace_all ? count : 1) +
                       " replacement(s))");
}

Toolset::Outcome Toolset::Glob(const Json& in) {
  std::string pattern, p;
  if (!StringField(in, "pattern", &pattern)) return Outcome::Error("glob: pattern must be a string");
  if (pattern.empty()) return Outcome::Error("glob: pattern is required");
  if (!StringField(in, "path", &p)) return Outcome::Error("glob: path must be a string");
  if (pattern[0] == '/') {
    return Outcome::Error(
        "glob: absolute pattern not permitted; pass a relative pattern (and optionally path)");
  }
  {
    size_t i = 0;
    while (i <= pattern.size()) {
      size_t j = pattern.find_first_of("\\/{},", i);
      if (j == std::string::npos) j = pattern.size();
      if (pattern.compare(i, j - i, "..") == 0 && j - i == 2) {
        return Outcome::Error("glob: \"..\" is not permitted in the pattern");
      }
      i = j + 1;
    }
  }
  std::string root, real_root, err;
  if (!p.empty()) {
    if (!policy_.Resolve(p, &root, &err)) return Outcome::Error(err);
    real_root = root;
  } else {
    root = LexicalResolve(CurrentDir(), policy_.workdir());
    if (Canonicalize(root, &real_root) != 0) real_root = root;
  }
  struct Match {
    std::string path;
    int64_t mtime_ns;
  };
  std::vector<Match> matches;
  for (const auto& rel : GlobFiles(root, pattern, kWalkMaxEntries)) {
    std::string full = root == "/" ? "/" + rel : root + "/" + rel;
    char real[PATH_MAX];
    if (realpath(full.c_str(), real) == nullptr) continue;
    if (!IsWithin(real_root, real)) continue;
    struct stat st;
    int64_t mt = 0;
    if (stat(full.c_str(), &st) == 0) {
      mt = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    }
    matches.push_back({full, mt});
  }
  if (matches.empty()) return Outcome::Text("no matches");
  std::stable_sort(matches.begin(), matches.end(),
                   [](const Match& a, const Match& b) { return a.mtime_ns > b.mtime_ns; });
  std::string out;
  for (size_t i = 0; i < matches.size() && i < kGlobResultLimit; ++i) {
    if (i) out += '\n';
    out += matches[i].path;
  }
  return Outcome::Text(std::move(out));
}

Toolset::Outcome Toolset::Grep(const Json& in, const std::atomic<bool>* cancel) {
  std::string pattern, p;
  if (!StringField(in, "pattern", &pattern)) return Outcome::Error("grep: pattern must be a string");
  if (pattern.empty()) return Outcome::Error("grep: pattern is required");
  if (!StringField(in, "path", &p)) return Outcome::Error("grep: path must be a string");
  std::string search = LexicalResolve(CurrentDir(), policy_.workdir());
  if (!p.empty()) {
    std::string err;
    if (!policy_.Resolve(p, &search, &err)) return Outcome::Error(err);
  }
  std::vector<std::string> not_inside = {policy_.workdir()};
  for (const auto& r : policy_.allowed_roots()) not_inside.push_back(r);
  std::string rg = FindExecutable("rg", not_inside);
  if (!rg.empty()) {
    RgOutcome r = RunRipgrep(rg, pattern, search, cancel);
    return r.error ? Outcome::Error(r.text) : Outcome::Text(r.text);
  }
  RE2::Options opts;
  opts.set_log_errors(false);
  RE2 re(pattern, opts);
  if (!re.ok()) return Outcome::Error("grep: invalid regex: " + re.error());
  WalkGrep walker(re, MonoMs() + options_.grep_timeout_ms, cancel);
  walker.Run(search);
  if (walker.aborted()) return Outcome::Error("grep: aborted");
  auto& hits = walker.hits();
  if (walker.timed_out()) {
    if (hits.empty()) {
      return Outcome::Error("grep: timed out after " + JsNumber(options_.grep_timeout_ms / 1000.0) + "s");
    }
    hits.push_back("[the search was cut short after " + std::to_string(options_.grep_timeout_ms) +
                   " ms]");
  }
  if (hits.empty()) return Outcome::Text("no matches");
  std::string out;
  for (size_t i = 0; i < hits.size(); ++i) {
    if (i) out += '\n';
    out += hits[i];
  }
  return Outcome::Text(std::move(out));
}

}  // namespace warren::runner
