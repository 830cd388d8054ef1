#include "runner/skills.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "common/log.h"
#include "runner/bash_session.h"
#include "runner/path_policy.h"
#include "runner/text_util.h"

namespace warren::runner {
namespace {

std::string FindOnPath(const std::string& name) {
  const char* p = getenv("PATH");
  std::string path = p ? p : "/usr/local/bin:/usr/bin:/bin";
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = path.substr(i, j - i);
    i = j + 1;
    if (dir.empty() || dir[0] != '/') continue;
    std::string cand = dir + "/" + name;
    if (access(cand.c_str(), X_OK) == 0) return cand;
  }
  return "";
}

// Runs argv; returns the exit code (or -1) and captures stdout.
int RunCapture(const std::vector<std::string>& args, std::string* out) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  std::vector<std::string> env_storage;
  for (auto& [k, v] : ScrubbedEnv()) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(p[1], 1);
    dup2(devnull, 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    signal(SIGPIPE, SIG_DFL);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    return -1;
  }
  char buf[8192];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) {
    if (out) out->append(buf, static_cast<size_t>(n));
  }
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") RemoveTree(path + "/" + n);
      }
      closedir(d);
    }
    rmdir(path.c_str());
  } else {
    unlink(path.c_str());
  }
}

// Copies regular files and directories from `src` into `dst`; everything
// else (symlinks, devices, fifos, sockets) is skipped.
bool CopyTree(const std::string& src, const std::string& dst) {
  DIR* d = opendir(src.c_str());
  if (d == nullptr) return false;
  bool ok = true;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string s = src + "/" + n, t = dst + "/" + n;
    struct stat st;
    if (lstat(s.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(t.c_str(), 0700) != 0 && errno != EEXIST) ok = false;
      else ok = CopyTree(s, t) && ok;
    } else if (S_ISREG(st.st_mode) && st.st_nlink <= 1) {
      mode_t mode = (st.st_mode & 0111) ? 0755 : 0644;
      if (rename(s.c_str(), t.c_str()) != 0) {
        ok = false;
        continue;
      }
      chmod(t.c_str(), mode);
    }
  }
  closedir(d);
  return ok;
}

bool Unsafe(const std::string& raw) {
  std::string e = raw;
  while (!e.empty() && std::isspace(static_cast<unsigned char>(e.back()))) e.pop_back();
  if (e.empty()) return false;
  if (e[0] == '/' || e[0] == '\\') return true;
  size_t i = 0;
  while (i <= e.size()) {
    size_t j = e.find_first_of("/\\", i);
    if (j == std::string::npos) j = e.size();
    if (e.compare(i, j - i, "..") == 0 && j - i == 2) return true;
    i = j + 1;
  }
  return false;
}

std::string Basename(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(0, 1);
  while (!s.empty() && s.back() == '/') s.pop_back();
  size_t p = s.rfind('/');
  return p == std::string::npos ? s : s.substr(p + 1);
}

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

std::string ExtractSkillArchive(const std::string& archive, const std::string& dest) {
  std::string staging = dest + ".extract-" + RandomUuid();
  if (mkdir(staging.c_str(), 0700) != 0) return "cannot create staging directory";
  std::string file = staging + ".archive";
  {
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      RemoveTree(staging);
      return "cannot write archive";
    }
    size_t off = 0;
    while (off < archive.size()) {
      ssize_t n = write(fd, archive.data() + off, archive.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fd);
  }
  std::string err;
  const bool zip = archive.size() >= 4 && archive.compare(0, 4, "PK\x03\x04") == 0;
  std::string listing;
  if (zip) {
    std::string unzip = FindOnPath("unzip");
    if (unzip.empty()) err = "unzip is not on PATH";
    else if (RunCapture({unzip, "-Z1", file}, &listing) != 0) err = "unzip cannot list the archive";
  } else {
    std::string tar = FindOnPath("tar");
    if (tar.empty()) err = "tar is not on PATH";
    else if (RunCapture({tar, "-tf", file}, &listing) != 0) err = "tar cannot list the archive";
  }
  if (err.empty()) {
    size_t i = 0;
    while (i < listing.size()) {
      size_t j = listing.find('\n', i);
      if (j == std::string::npos) j = listing.size();
      std::string name = listing.substr(i, j - i);
      if (Unsafe(name)) {
        err = "refusing to extract unsafe archive member: " + name;
        break;
      }
      i = j + 1;
    }
  }
  if (err.empty()) {
    int rc = zip ? RunCapture({FindOnPath("unzip"), "-qq", "-o", file, "-d", staging}, nullptr)
                 : RunCapture({FindOnPath("tar"), "-xf", file, "-C", staging, "--no-same-owner",
                               "--no-same-permissions"},
                              nullptr);
    if (rc != 0) err = "extraction failed";
  }
  if (err.empty()) {
    // Strip a single top-level wrapper directory.
    std::string src = staging;
    std::vector<std::string> top;
    if (DIR* d = opendir(staging.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") top.push_back(n);
      }
      closedir(d);
    }
    struct stat st;
    if (top.size() == 1 && lstat((staging + "/" + top[0]).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      src = staging + "/" + top[0];
    }
    if (!CopyTree(src, dest)) err = "copying the extracted files failed";
  }
  unlink(file.c_str());
  RemoveTree(staging);
  return err;
}

std::vector<std::string> DownloadSkills(const HttpClient& http, const std::string& token,
                                        const Json& session, const std::string& workdir) {
  std::vector<std::string> created;
  if (!session.is_object() || !session.contains("agent") || !session["agent"].is_object()) return created;
  const Json skills = session["agent"].value("skills", Json::array());
  if (!skills.is_array() || skills.empty()) return created;
  auto get = [&](const std::string& target, HttpResponse* out) {
    HttpRequest req;
    req.target = target;
    req.headers = {{"authorization", "Bearer " + token},
                   {"anthropic-version", "2023-06-01"},
                   {"anthropic-beta", "managed-agents-2026-04-01,skills-2025-10-02"},
                   {"x-stainless-helper", "environments-worker"}};
    auto r = http.Do(req, std::chrono::seconds(120));
    if (!r.ok()) return r.status().ToString();
    *out = std::move(r).value();
    if (out->status != 200) return "HTTP " + std::to_string(out->status);
    return std::string();
  };
  char cwd[4096];
  std::string base = getcwd(cwd, sizeof cwd) ? cwd : "/";
  const std::string root = LexicalResolve(base, workdir + "/skills");
  for (const auto& skill : skills) {
    const std::string id = skill.value("skill_id", "");
    std::string version = skill.contains("version") && skill["version"].is_string() ? skill["version"].get<std::string>()
                          : skill.contains("version") && skill["version"].is_number()
                              ? std::to_string(skill["version"].get<int64_t>())
                              : "latest";
    if (id.empty()) continue;
    std::string err;
    HttpResponse resp;
    if (!AllDigits(version)) {
      err = get("/v1/skills/" + UrlEncode(id) + "/versions", &resp);
      std::string best;
      if (err.empty()) {
        auto list = ParseJson(resp.body);
        if (list.ok() && list->is_object() && (*list)["data"].is_array()) {
          for (const auto& v : (*list)["data"]) {
            std::string s = v.value("version", "");
            if (AllDigits(s) && (s.size() > best.size() || (s.size() == best.size() && s > best))) best = s;
          }
        }
        if (best.empty()) err = "no numeric version";
      }
      version = best;
    }
    std::string name;
    if (err.empty()) {
      err = get("/v1/skills/" + UrlEncode(id) + "/versions/" + UrlEncode(version), &resp);
      if (err.empty()) {
        auto meta = ParseJson(resp.body);
        if (meta.ok() && meta->is_object()) name = Basename(meta->value("name", ""));
      }
    }
    if (name.empty() || name == "." || name == "..") name = id;
    const std::string dest = root + "/" + name;
    if (!IsWithin(root, dest) || dest == root) err = "skill name escapes the skills dir";
    if (err.empty()) err = get("/v1/skills/" + UrlEncode(id) + "/versions/" + UrlEncode(version) + "/content", &resp);
    if (err.empty()) {
      mkdir(LexicalResolve(base, workdir).c_str(), 0700);
      mkdir(root.c_str(), 0700);
      RemoveTree(dest);
      if (mkdir(dest.c_str(), 0700) != 0) err = "cannot create " + dest;
    }
    if (err.empty()) {
      created.push_back(dest);
      err = ExtractSkillArchive(resp.body, dest);
    }
    if (!err.empty()) {
      log::Warn("failed to download skill", {{"skill_id", id}, {"error", err}});
    } else {
      log::Info("downloaded skill", {{"skill_id", id}, {"version", version}, {"dest", dest}});
    }
  }
  return created;
}

void RemoveSkillDirs(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) RemoveTree(d);
}

}  // namespace warren::runner
