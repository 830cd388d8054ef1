#include "orchestrator/prepare.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/ids.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "orchestrator/webhooks.h"  // Base64Encode
#include "sandbox/archive.h"

namespace warren::orchestrator {
namespace {

namespace fs = std::filesystem;
using sandbox::SandboxRecord;
using sandbox::SandboxState;

constexpr int64_t kSec = 1'000'000;
constexpr int64_t kMaxTtlSeconds = 30LL * 24 * 3600;
constexpr size_t kMaxCredentialBytes = 64 << 10;
constexpr auto kGitTimeout = std::chrono::minutes(15);

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

Status ValidSandboxPath(const std::string& p, const std::string& field) {
  if (p.empty() || p[0] != '/' || p == "/") return Status::InvalidArgument(field + ": must be an absolute path (not /)");
  if (p.size() > 4096 || p.find('\0') != std::string::npos) return Status::InvalidArgument(field + ": bad path");
  return Status::Ok();
}

// The directory part of an absolute path ("/a/b" -> "/a", "/a" -> "/").
std::string Parent(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  size_t slash = s.rfind('/');
  return slash == 0 ? "/" : s.substr(0, slash);
}

struct GitUrl {
  enum class Kind { kHttps, kHttp, kLocal } kind;
  std::string url;     // what git is given
  std::string origin;  // scheme://authority/ (http kinds)
  std::string host;
};

bool IsLoopbackHost(const std::string& h) {
  return h == "localhost" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

Result<GitUrl> ParseGitUrl(const std::string& url, bool allow_host_paths) {
  if (url.empty() || url.size() > 2048) return Status::InvalidArgument("repository url: empty or too long");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Status::InvalidArgument("repository url: contains spaces or control characters");
    }
  }
  GitUrl g;
  if (url[0] == '/' || url.rfind("file://", 0) == 0) {
    if (!allow_host_paths) {
      return Status::InvalidArgument("repository url: local paths are only accepted from the CLI (use https)");
    }
    g.kind = GitUrl::Kind::kLocal;
    g.url = url[0] == '/' ? url : url.substr(7);
    if (g.url.empty() || g.url[0] != '/') return Status::InvalidArgument("repository url: file:// needs an absolute path");
    struct stat st;
    if (stat(g.url.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument("repository url: " + g.url + " is not a directory");
    }
    return g;
  }
  std::string scheme;
  if (url.rfind("https://", 0) == 0) {
    g.kind = GitUrl::Kind::kHttps;
    scheme = "https://";
  } else if (url.rfind("http://", 0) == 0) {
    g.kind = GitUrl::Kind::kHttp;
    scheme = "http://";
  } else {
    return Status::InvalidArgument("repository url: must be https:// (or http://, or a local path from the CLI)");
  }
  size_t end = url.find_first_of("/?#", scheme.size());
  std::string authority = url.substr(scheme.size(), end == std::string::npos ? std::string::npos : end - scheme.size());
  if (authority.empty()) return Status::InvalidArgument("repository url: no host");
  if (authority.find('@') != std::string::npos) {
    return Status::InvalidArgument("repository url: user info in the URL is refused; pass the token separately");
  }
  for (char c : authority) {
    if (!IsAlnum(c) && c != '.' && c != '-' && c != ':' && c != '[' && c != ']') {
      return Status::InvalidArgument("repository url: bad host");
    }
  }
  g.host = authority;
  if (authority[0] != '[') {
    size_t colon = authority.find(':');
    if (colon != std::string::npos) g.host = authority.substr(0, colon);
  } else {
    g.host = authority.substr(0, authority.find(']') + 1);
  }
  g.origin = scheme + authority + "/";
  g.url = url;
  return g;
}

Status ValidRef(const std::string& ref, const std::string& field) {
  if (ref.empty()) return Status::Ok();
  if (ref.size() > 255 || ref[0] == '-' || ref.find("..") != std::string::npos ||
      !std::all_of(ref.begin(), ref.end(), [](char c) { return IsAlnum(c) || c == '.' || c == '_' || c == '/' || c == '-'; })) {
    return Status::InvalidArgument(field + ": a branch, tag or commit of [A-Za-z0-9._/-]");
  }
  return Status::Ok();
}

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout + stderr, last 16 KiB
};

// Runs argv with exactly `env` (nothing inherited), stdin /dev/null.
Result<Outcome> Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  // Nothing else of this process: Asio's sockets (the API's and the egress
  // proxy's listeners) are not O_CLOEXEC, and a clone that outlives a SIGKILL
  // of the service would keep them bound (see sandbox RunCommandStreaming).
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0].c_str(), &fa, &attr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  wr.reset();
  if (rc != 0) return Status::FromErrno(rc, "spawn " + argv[0]);
  Outcome out;
  auto deadline = std::chrono::steady_clock::now() + kGitTimeout;
  bool killed = false;
  char buf[8192];
  for (;;) {
    pollfd pfd{rd.get(), POLLIN, 0};
    int n = poll(&pfd, 1, 1000);
    if (n < 0 && errno != EINTR) break;
    if (n > 0) {
      ssize_t r = read(rd.get(), buf, sizeof(buf));
      if (r <= 0) {
        if (r < 0 && errno == EINTR) continue;
        break;
      }
      out.output.append(buf, static_cast<size_t>(r));
      if (out.output.size() > (16 << 10)) out.output.erase(0, out.output.size() - (16 << 10));
    }
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      killed = true;
    }
  }
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (killed) return Status::Timeout(argv[0] + " " + argv[1] + " timed out");
  out.exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return out;
}

// Last non-empty line of git's output, with `secret` masked.
std::string LastLine(std::string s, const std::string& secret) {
  if (!secret.empty()) {
    for (size_t at; (at = s.find(secret)) != std::string::npos;) s.replace(at, secret.size(), "***");
  }
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

// Every regular file under `dir` (not following symlinks) that contains
// one of `needles`.
Result<std::string> FindInTree(const std::string& dir, const std::vector<std::string>& needles) {
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  if (ec) return Status::IOError("scan " + dir + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return Status::IOError("scan " + dir + ": " + ec.message());
    if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string data = ss.str();
    for (const auto& n : needles) {
      if (!n.empty() && data.find(n) != std::string::npos) return it->path().string();
    }
  }
  return std::string();
}

std::string KindName(CredentialSpec::Kind k) { return k == CredentialSpec::Kind::kEnv ? "env" : "file"; }

// Owns a private temp dir (PrivateTempDir): removes it, and everything
// below it, when it goes out of scope. Not copyable.
class ScopedTempDir final {
 public:
  explicit ScopedTempDir(std::string dir) : dir_(std::move(dir)) {}
  ~ScopedTempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

 private:
  std::string dir_;
};

}  // namespace

Json PrepareResult::ToJson() const {
  Json repos_j = Json::array(), ds = Json::array(), creds = Json::array();
  for (const auto& r : repos) repos_j.push_back({{"url", r.url}, {"path", r.path}, {"head", r.head}});
  for (const auto& d : datasets) ds.push_back({{"path", d}});
  for (const auto& c : credentials) {
    Json j = {{"name", c.name}, {"type", c.kind}, {"expires_at", FormatRfc3339(c.expires_at)}};
    if (!c.path.empty()) j["path"] = c.path;
    creds.push_back(j);
  }
  return {{"repositories", repos_j}, {"datasets", ds}, {"credentials", creds}};
}

Json SweepReport::ToJson() const {
  return {{"files_removed", files_removed}, {"env_expired", env_expired}, {"retry_later", retry_later},
          {"forgotten", forgotten}};
}

Preparer::Preparer(sandbox::SandboxRuntime* rt, PreparerOptions opts)
    : rt_(rt), opts_(std::move(opts)), clock_(opts_.clock ? opts_.clock : Clock::Real()) {
  state_dir_ = opts_.state_dir.empty() ? rt_->options().data_dir + "/prepared" : opts_.state_dir;
}

Result<std::string> Preparer::PrivateTempDir(const std::string& what) {
  for (const std::string& d : {state_dir_, state_dir_ + "/tmp"}) {
    if (mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir " + d);
    struct stat st;
    if (lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Status::IOError(d + " is not a directory");
    if ((st.st_mode & 077) != 0 && chmod(d.c_str(), 0700) != 0) return Status::FromErrno(errno, "chmod " + d);
  }
  std::string tmpl = state_dir_ + "/tmp/" + what + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "mkdtemp " + tmpl);
  return tmpl;
}

Result<PreparedRepo> Preparer::CloneRepo(const std::string& id, const RepoSource& repo, bool allow_host_paths) {
  WARREN_ASSIGN_OR_RETURN(GitUrl g, ParseGitUrl(repo.url, allow_host_paths));
  WARREN_RETURN_IF_ERROR(ValidSandboxPath(repo.path, "repository path"));
  WARREN_RETURN_IF_ERROR(ValidRef(repo.branch, "repository branch"));
  if (!repo.commit.empty() &&
      (repo.commit.size() < 4 || repo.commit.size() > 64 ||
       repo.commit.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return Status::InvalidArgument("repository commit: 4..64 lowercase hex digits");
  }
  if (!repo.token.empty()) {
    if (g.kind == GitUrl::Kind::kLocal) return Status::InvalidArgument("repository token: not used for local paths");
    if (g.kind == GitUrl::Kind::kHttp && !IsLoopbackHost(g.host)) {
      return Status::InvalidArgument("repository token: refused over plain http (use https)");
    }
    if (repo.token.size() > 4096 || repo.token.find_first_of("\r\n\0", 0, 3) != std::string::npos) {
      return Status::InvalidArgument("repository token: bad token");
    }
    if (repo.username.empty() || repo.username.size() > 128 || repo.username.find(':') != std::string::npos ||
        repo.username.find_first_of("\r\n") != std::string::npos) {
      return Status::InvalidArgument("repository username: bad user name");
    }
  }
  WARREN_ASSIGN_OR_RETURN(std::string tmp, PrivateTempDir("clone"));
  ScopedTempDir cleanup(tmp);
  const std::string dest = tmp + "/repo", tmpl = tmp + "/template";
  if (mkdir(tmpl.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + tmpl);
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                  "HOME=" + tmp,
                                  "LC_ALL=C",
                                  "GIT_TERMINAL_PROMPT=0",
                                  "GIT_CONFIG_NOSYSTEM=1",
                                  "GIT_CONFIG_GLOBAL=/dev/null",
                                  "GIT_ASKPASS=/bin/false",
                                  "SSH_ASKPASS=/bin/false"};
  std::string header;
  if (!repo.token.empty()) {
    header = "Authorization: Basic " + Base64Encode(repo.username + ":" + repo.token);
    env.push_back("GIT_CONFIG_COUNT=1");
    env.push_back("GIT_CONFIG_KEY_0=http." + g.origin + ".extraHeader");
    env.push_back("GIT_CONFIG_VALUE_0=" + header);
  }
  std::vector<std::string> argv = {opts_.git, "-c", "http.followRedirects=false", "-c", "protocol.ext.allow=never",
                                   "-c", "core.hooksPath=/dev/null", "-c", "submodule.recurse=false"};
  if (g.kind == GitUrl::Kind::kLocal) argv.insert(argv.end(), {"-c", "protocol.file.allow=always"});
  argv.insert(argv.end(), {"clone", "--quiet", "--no-hardlinks", "--template=" + tmpl});
  if (!repo.branch.empty()) argv.insert(argv.end(), {"--branch", repo.branch});
  argv.insert(argv.end(), {"--", g.url, dest});
  WARREN_ASSIGN_OR_RETURN(Outcome o, Spawn(argv, env));
  if (o.exit_code != 0) {
    return Status::FailedPrecondition("git clone " + repo.url + " failed (exit " + std::to_string(o.exit_code) +
                                      "): " + LastLine(o.output, repo.token));
  }
  // The token is no longer needed: later git commands get the plain env.
  if (!repo.token.empty()) env.resize(env.size() - 3);
  if (!repo.commit.empty()) {
    WARREN_ASSIGN_OR_RETURN(Outcome co, Spawn({opts_.git, "-c", "core.hooksPath=/dev/null", "-C", dest, "checkout",
                                               "--quiet", "--detach", repo.commit},
                                              env));
    if (co.exit_code != 0) {
      return Status::FailedPrecondition("git checkout " + repo.commit + ": " + LastLine(co.output, repo.token));
    }
  }
  WARREN_ASSIGN_OR_RETURN(Outcome head, Spawn({opts_.git, "-C", dest, "rev-parse", "HEAD"}, env));
  PreparedRepo out{repo.url, repo.path, LastLine(head.output, "")};
  if (!repo.token.empty()) {
    WARREN_ASSIGN_OR_RETURN(std::string leak, FindInTree(dest, {repo.token, header}));
    if (!leak.empty()) {
      return Status::Internal("the repository token was found in " + leak.substr(dest.size()) +
                              " after the clone; refusing to copy it into the sandbox");
    }
  }
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs root, rt_->Files(id));
  WARREN_RETURN_IF_ERROR(root.Mkdir(Parent(repo.path), true));
  WARREN_RETURN_IF_ERROR(root.CopyIn(dest, repo.path).WithContext("copy the clone into the sandbox"));
  return out;
}

Status Preparer::LoadDataset(const std::string& id, const DatasetSource& ds, bool allow_host_paths) {
  WARREN_RETURN_IF_ERROR(ValidSandboxPath(ds.path, "dataset path"));
  if (ds.host_dir.empty() == ds.tarball.empty()) {
    return Status::InvalidArgument("dataset: exactly one of a directory or a tarball");
  }
  if (!allow_host_paths) return Status::InvalidArgument("dataset: host paths are only accepted from the CLI");
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs root, rt_->Files(id));
  WARREN_RETURN_IF_ERROR(root.Mkdir(Parent(ds.path), true));
  if (!ds.host_dir.empty()) {
    struct stat st;
    if (lstat(ds.host_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Status::InvalidArgument("dataset: " + ds.host_dir + " is not a directory");
    }
    return root.CopyIn(ds.host_dir, ds.path).WithContext("copy the dataset into the sandbox");
  }
  struct stat st;
  if (stat(ds.tarball.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("dataset: " + ds.tarball + " is not a file");
  }
  WARREN_ASSIGN_OR_RETURN(std::string tmp, PrivateTempDir("dataset"));
  ScopedTempDir cleanup(tmp);
  const std::string out = tmp + "/x";
  if (mkdir(out.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + out);
  auto ex = sandbox::ExtractTreeArchive(ds.tarball, out, 65536);
  if (!ex.ok()) {
    if (ex.status().code() == Code::kInvalidArgument) return ex.status().WithContext("dataset tarball");
    return Status::InvalidArgument("dataset tarball: " + ex.status().message());
  }
  if (chmod(out.c_str(), 0755) != 0) return Status::FromErrno(errno, "chmod " + out);
  return root.CopyIn(out, ds.path).WithContext("copy the dataset into the sandbox");
}

Status Preparer::LoadDatasetBytes(const std::string& id, std::string_view tarball, const std::string& path) {
  WARREN_RETURN_IF_ERROR(ValidSandboxPath(path, "dataset path"));
  if (tarball.empty()) return Status::InvalidArgument("dataset: empty upload");
  WARREN_ASSIGN_OR_RETURN(std::string tmp, PrivateTempDir("upload"));
  ScopedTempDir cleanup(tmp);
  const std::string file = tmp + "/dataset.tar";
  UniqueFd fd(open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Status::FromErrno(errno, "open " + file);
  size_t off = 0;
  while (off < tarball.size()) {
    ssize_t n = write(fd.get(), tarball.data() + off, tarball.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(errno, "write " + file);
    off += static_cast<size_t>(n);
  }
  fd.reset();
  return LoadDataset(id, DatasetSource{"", file, path}, /*allow_host_paths=*/true);
}

Result<std::vector<Preparer::Entry>> Preparer::LoadLocked(const std::string& id) {
  std::vector<Entry> out;
  std::ifstream in(state_dir_ + "/" + id + ".json");
  if (!in) return out;
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  if (!j.ok() || !j->is_object() || !(*j)["credentials"].is_array()) {
    return Status::IOError("corrupt credential state for " + id);
  }
  for (const auto& e : (*j)["credentials"]) {
    if (!e.is_object() || !e["name"].is_string() || !e["kind"].is_string() || !e["expires_at"].is_number_integer()) {
      return Status::IOError("corrupt credential state for " + id);
    }
    Entry en;
    en.name = e["name"].get<std::string>();
    en.kind = e["kind"].get<std::string>();
    en.expires_at = e["expires_at"].get<int64_t>();
    if (e.contains("path") && e["path"].is_string()) en.path = e["path"].get<std::string>();
    if (e.contains("value") && e["value"].is_string()) en.value = e["value"].get<std::string>();
    out.push_back(std::move(en));
  }
  return out;
}

Status Preparer::SaveLocked(const std::string& id, const std::vector<Entry>& entries) {
  const std::string file = state_dir_ + "/" + id + ".json";
  if (entries.empty()) {
    if (unlink(file.c_str()) != 0 && errno != ENOENT) return Status::FromErrno(errno, "unlink " + file);
    return Status::Ok();
  }
  Json arr = Json::array();
  for (const auto& e : entries) {
    Json j = {{"name", e.name}, {"kind", e.kind}, {"expires_at", e.expires_at}};
    if (!e.path.empty()) j["path"] = e.path;
    if (!e.value.empty()) j["value"] = e.value;
    arr.push_back(j);
  }
  std::string data = DumpJson(Json{{"sandbox_id", id}, {"credentials", arr}});
  std::string tmp = file + ".tmp";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Status::FromErrno(errno, "open " + tmp);
  if (write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()) || fsync(fd.get()) != 0) {
    return Status::FromErrno(errno, "write " + tmp);
  }
  if (rename(tmp.c_str(), file.c_str()) != 0) return Status::FromErrno(errno, "rename " + tmp);
  return Status::Ok();
}

Status Preparer::UpdateLabelLocked(const std::string& id, const std::vector<Entry>& entries) {
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, rt_->Get(id));
  auto labels = rec.labels;
  const std::string key(labels::kCredentialsExpireAt);
  if (entries.empty()) {
    labels.erase(key);
  } else {
    int64_t first = entries.front().expires_at;
    for (const auto& e : entries) first = std::min(first, e.expires_at);
    labels[key] = FormatRfc3339(first);
  }
  if (labels == rec.labels) return Status::Ok();
  return rt_->SetLabels(id, labels).status();
}

Result<std::vector<PreparedCredential>> Preparer::PlaceCredentials(const std::string& id,
                                                                   const std::vector<CredentialSpec>& creds) {
  for (const auto& c : creds) {
    bool env = c.kind == CredentialSpec::Kind::kEnv;
    bool ok = !c.name.empty() && c.name.size() <= 64 &&
              std::all_of(c.name.begin(), c.name.end(), [&](char ch) {
                return IsAlnum(ch) || ch == '_' || (!env && (ch == '.' || ch == '-'));
              });
    if (ok && env && c.name[0] >= '0' && c.name[0] <= '9') ok = false;
    if (ok && !env && c.name[0] == '.') ok = false;
    if (!ok) {
      return Status::InvalidArgument("credential name '" + c.name.substr(0, 64) + "': " +
                                     (env ? "[A-Za-z_][A-Za-z0-9_]{0,63}" : "[A-Za-z0-9_][A-Za-z0-9._-]{0,63}"));
    }
    if (c.value.size() > kMaxCredentialBytes) return Status::InvalidArgument("credential " + c.name + ": value over 64 KiB");
    if (env && c.value.find('\0') != std::string::npos) {
      return Status::InvalidArgument("credential " + c.name + ": env values cannot hold NUL");
    }
    if (c.ttl_seconds < 1 || c.ttl_seconds > kMaxTtlSeconds) {
      return Status::InvalidArgument("credential " + c.name + ": ttl_seconds must be 1..2592000 (30 days)");
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  WARREN_ASSIGN_OR_RETURN(std::vector<Entry> entries, LoadLocked(id));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs root, rt_->Files(id));
  std::vector<PreparedCredential> out;
  const int64_t now = clock_->NowMicros();
  for (const auto& c : creds) {
    Entry e;
    e.name = c.name;
    e.kind = KindName(c.kind);
    e.expires_at = now + c.ttl_seconds * kSec;
    if (c.kind == CredentialSpec::Kind::kFile) {
      e.path = opts_.credentials_dir + "/" + c.name;
      WARREN_RETURN_IF_ERROR(root.Mkdir(opts_.credentials_dir, true, 0700));
      WARREN_RETURN_IF_ERROR(root.Chmod(opts_.credentials_dir, 0700));
      WARREN_RETURN_IF_ERROR(root.WriteFile(e.path, c.value, 0400));
      WARREN_RETURN_IF_ERROR(root.Chmod(e.path, 0400));
    } else {
      e.value = c.value;
    }
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const Entry& x) { return x.name == e.name && x.kind == e.kind; }),
                  entries.end());
    entries.push_back(e);
    out.push_back({e.name, e.kind, e.path, e.expires_at});
  }
  WARREN_RETURN_IF_ERROR(SaveLocked(id, entries));
  WARREN_RETURN_IF_ERROR(UpdateLabelLocked(id, entries));
  return out;
}

Result<PrepareResult> Preparer::Prepare(const PrepareRequest& req) {
  const std::string& env = req.environment_id;
  if (env.empty() || env.size() > 128 ||
      !std::all_of(env.begin(), env.end(), [](char c) { return IsAlnum(c) || c == '_' || c == '-'; })) {
    return Status::InvalidArgument("environment_id: required, [A-Za-z0-9_-]{1,128}");
  }
  sandbox::CreateOptions co = req.sandbox;
  for (const auto& [k, v] : co.labels) {
    if (k.rfind("warren.", 0) == 0) return Status::InvalidArgument("labels: the warren.* keys are reserved");
  }
  co.labels[std::string(labels::kMode)] = std::string(labels::kModePrepared);
  co.labels[std::string(labels::kEnvironment)] = env;
  // Validate every step's input before creating anything.
  for (const auto& r : req.repos) {
    WARREN_RETURN_IF_ERROR(ParseGitUrl(r.url, req.allow_host_paths).status());
    WARREN_RETURN_IF_ERROR(ValidSandboxPath(r.path, "repository path"));
  }
  for (const auto& d : req.datasets) {
    WARREN_RETURN_IF_ERROR(ValidSandboxPath(d.path, "dataset path"));
    if (!req.allow_host_paths) return Status::InvalidArgument("dataset: host paths are only accepted from the CLI");
  }
  WARREN_ASSIGN_OR_RETURN(SandboxRecord rec, rt_->Create(co));
  PrepareResult res;
  auto steps = [&]() -> Status {
    for (const auto& r : req.repos) {
      WARREN_ASSIGN_OR_RETURN(PreparedRepo pr, CloneRepo(rec.id, r, req.allow_host_paths));
      res.repos.push_back(std::move(pr));
    }
    for (const auto& d : req.datasets) {
      WARREN_RETURN_IF_ERROR(LoadDataset(rec.id, d, req.allow_host_paths));
      res.datasets.push_back(d.path);
    }
    if (!req.credentials.empty()) {
      WARREN_ASSIGN_OR_RETURN(res.credentials, PlaceCredentials(rec.id, req.credentials));
    }
    return Status::Ok();
  };
  Status s = steps();
  if (!s.ok()) {
    Status del = rt_->Delete(rec.id);
    if (!del.ok()) log::Warn("prepare.cleanup_failed", {{"sandbox", rec.id}, {"error", del.ToString()}});
    (void)Forget(rec.id);
    return s;
  }
  WARREN_ASSIGN_OR_RETURN(res.sandbox, rt_->Get(rec.id));
  log::Info("prepare.done", {{"sandbox", rec.id}, {"environment_id", env}, {"prepared", res.ToJson()}});
  return res;
}

Status Preparer::CheckPrepared(const SandboxRecord& rec, const std::string& environment_id) {
  if (rec.deleted || rec.state == SandboxState::kDestroyed) return Status::NotFound("sandbox " + rec.id + " is deleted");
  auto mode = rec.labels.find(std::string(labels::kMode));
  if (mode == rec.labels.end() || mode->second != labels::kModePrepared) {
    return Status::FailedPrecondition("sandbox " + rec.id + " is not a prepared sandbox (label warren.mode=prepared)");
  }
  auto env = rec.labels.find(std::string(labels::kEnvironment));
  if (env == rec.labels.end() || env->second != environment_id) {
    return Status::PermissionDenied("sandbox " + rec.id + " was prepared for another environment");
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Preparer::RunnerEnv(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  WARREN_ASSIGN_OR_RETURN(std::vector<Entry> entries, LoadLocked(id));
  std::vector<std::string> out;
  const int64_t now = clock_->NowMicros();
  for (const auto& e : entries) {
    if (e.kind == "env" && e.expires_at > now) out.push_back(e.name + "=" + e.value);
  }
  return out;
}

Status Preparer::Forget(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  return SaveLocked(id, {});
}

Result<SweepReport> Preparer::Sweep() {
  SweepReport rep;
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir_, ec)) {
    std::string n = e.path().filename();
    if (n.size() > 5 && n.ends_with(".json")) ids.push_back(n.substr(0, n.size() - 5));
  }
  // Private temp dirs left by a crash (older than a day).
  for (const auto& e : fs::directory_iterator(state_dir_ + "/tmp", ec)) {
    struct stat st;
    if (lstat(e.path().c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
        st.st_mtime * kSec < clock_->NowMicros() - 24 * 3600 * kSec) {
      std::error_code rm;
      fs::remove_all(e.path(), rm);
    }
  }
  const int64_t now = clock_->NowMicros();
  for (const auto& id : ids) {
    std::lock_guard<std::mutex> l(mu_);
    auto rec = rt_->Get(id);
    if (!rec.ok() || rec->deleted || rec->state == SandboxState::kDestroyed) {
      if (rec.ok() || rec.status().code() == Code::kNotFound) {
        (void)SaveLocked(id, {});
        rep.forgotten.push_back(id);
      } else {
        rep.retry_later.push_back(id);
      }
      continue;
    }
    auto entries = LoadLocked(id);
    if (!entries.ok()) {
      log::Warn("prepare.sweep_failed", {{"sandbox", id}, {"error", entries.status().ToString()}});
      rep.retry_later.push_back(id);
      continue;
    }
    std::vector<Entry> keep;
    bool env_gone = false, retry = false;
    std::optional<sandbox::RootFs> root;
    for (auto& e : *entries) {
      if (e.expires_at > now) {
        keep.push_back(e);
        continue;
      }
      if (e.kind == "env") {
        env_gone = true;
        continue;
      }
      if (!root) {
        auto r = rec->state == SandboxState::kArchived ? Result<sandbox::RootFs>(Status::FailedPrecondition("archived"))
                                                        : rt_->Files(id);
        if (r.ok()) root.emplace(std::move(*r));
      }
      Status del = root ? root->Delete(e.path, false) : Status::FailedPrecondition("no rootfs");
      if (del.ok() || del.code() == Code::kNotFound) {
        rep.files_removed.push_back(id + ":" + e.path);
      } else {
        keep.push_back(e);
        retry = true;
      }
    }
    if (env_gone) rep.env_expired.push_back(id);
    if (retry) rep.retry_later.push_back(id);
    if (keep.size() != entries->size()) {
      Status s = SaveLocked(id, keep);
      if (s.ok()) s = UpdateLabelLocked(id, keep);
      if (!s.ok()) log::Warn("prepare.sweep_failed", {{"sandbox", id}, {"error", s.ToString()}});
    }
  }
  return rep;
}

}  // namespace warren::orchestrator
