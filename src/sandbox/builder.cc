// SandboxRuntime: snapshot (image) building and the built-in base image.
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <cstring>
#include <set>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "common/log.h"
#include "sandbox/locks.h"
#include "sandbox/network.h"
#include "sandbox/recipe.h"
#include "sandbox/runtime.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

using std::chrono::milliseconds;

constexpr const char* kBuiltinMinimal = "builtin:minimal";

class Hasher final {
 public:
  Hasher() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Hasher() { EVP_MD_CTX_free(ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Add(std::string_view s) {
    EVP_DigestUpdate(ctx_, s.data(), s.size());
    EVP_DigestUpdate(ctx_, "\0", 1);
  }
  void AddRaw(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
      out.push_back(kHex[md[i] >> 4]);
      out.push_back(kHex[md[i] & 15]);
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

Status HashFileInto(Hasher& h, const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open " + path);
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + path);
    }
    if (n == 0) break;
    h.AddRaw(buf, static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Content hash of a host file or tree: names, types, modes, link targets and
// file bytes, in sorted order.
Status HashTreeInto(Hasher& h, const std::string& path, const std::string& rel) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path);
  h.Add(rel);
  h.Add(std::to_string(st.st_mode));
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
    if (n < 0) return ErrnoStatus("readlink " + path);
    h.Add(std::string_view(buf, static_cast<size_t>(n)));
  } else if (S_ISREG(st.st_mode)) {
    WARREN_RETURN_IF_ERROR(HashFileInto(h, path));
  } else if (S_ISDIR(st.st_mode)) {
    DIR* d = opendir(path.c_str());
    if (d == nullptr) return ErrnoStatus("opendir " + path);
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names.emplace_back(e->d_name);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) WARREN_RETURN_IF_ERROR(HashTreeInto(h, path + "/" + n, rel + "/" + n));
  }
  return Status::Ok();
}

Result<std::string> HashTree(const std::string& path) {
  Hasher h;
  WARREN_RETURN_IF_ERROR(HashTreeInto(h, path, ""));
  return h.Hex();
}

std::string Chain(const std::string& prev, const std::string& step) {
  Hasher h;
  h.Add(prev);
  h.Add(step);
  return h.Hex();
}

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

bool ValidSnapshotName(const std::string& n) {
  if (n.empty() || n.size() > 63 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// Resolves a COPY source strictly inside the context dir (no absolute
// paths, no "..", no symlink leaving the context).
Result<std::string> ContextPath(const std::string& context, const std::string& src) {
  if (src.empty() || src[0] == '/') return Status::InvalidArgument("COPY source must be relative: " + src);
  std::stringstream ss(src);
  std::string comp;
  while (std::getline(ss, comp, '/')) {
    if (comp == "..") return Status::InvalidArgument("COPY source must stay in the context: " + src);
  }
  char real_ctx[PATH_MAX], real_src[PATH_MAX];
  if (realpath(context.c_str(), real_ctx) == nullptr) return ErrnoStatus("context " + context);
  std::string full = context + "/" + src;
  if (realpath(full.c_str(), real_src) == nullptr) return ErrnoStatus("COPY source " + src);
  std::string rc(real_ctx), rs(real_src);
  if (rs != rc && rs.rfind(rc + "/", 0) != 0) return Status::PermissionDenied("COPY source leaves the context: " + src);
  return rs;
}

Status ExtractTarball(const std::string& tarball, const std::string& dest) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  struct archive* w = archive_write_disk_new();
  archive_write_disk_set_options(w, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |
                                        ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                        ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
  Status st;
  if (archive_read_open_filename(a, tarball.c_str(), 1 << 16) != ARCHIVE_OK) {
    st = Status::InvalidArgument(std::string("open tarball: ") + archive_error_string(a));
  }
  struct archive_entry* e;
  while (st.ok()) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      st = Status::InvalidArgument(std::string("read tarball: ") + archive_error_string(a));
      break;
    }
    std::string p = archive_entry_pathname(e);
    while (p.rfind("./", 0) == 0) p = p.substr(2);
    if (p.empty() || p == ".") continue;
    archive_entry_set_pathname(e, (dest + "/" + p).c_str());
    if (const char* hl = archive_entry_hardlink(e)) {
      std::string h = hl;
      while (h.rfind("./", 0) == 0) h = h.substr(2);
      archive_entry_set_hardlink(e, (dest + "/" + h).c_str());
    }
    // Device nodes cannot be used inside a sandbox anyway.
    if (archive_entry_filetype(e) == AE_IFCHR || archive_entry_filetype(e) == AE_IFBLK) continue;
    if (archive_write_header(w, e) < ARCHIVE_WARN) {
      st = Status::IOError(std::string("extract ") + p + ": " + archive_error_string(w));
      break;
    }
    const void* buf;
    size_t size;
    la_int64_t off;
    for (;;) {
      int rr = archive_read_data_block(a, &buf, &size, &off);
      if (rr == ARCHIVE_EOF) break;
      if (rr < ARCHIVE_WARN || archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN) {
        st = Status::IOError("extract data of " + p);
        break;
      }
    }
    archive_write_finish_entry(w);
  }
  archive_read_free(a);
  archive_write_free(w);
  return st;
}

void MergeEnvVector(std::vector<std::string>* env, const std::vector<std::string>& add) {
  for (const auto& kv : add) {
    std::string k = kv.substr(0, kv.find('='));
    auto it = std::find_if(env->begin(), env->end(),
                           [&](const std::string& e) { return e.substr(0, e.find('=')) == k; });
    if (it != env->end()) *it = kv;
    else env->push_back(kv);
  }
}

std::string FindBusybox() {
  for (const char* p : {"/bin/busybox", "/usr/bin/busybox"}) {
    if (Exists(p)) return p;
  }
  return "";
}

}  // namespace

Result<std::string> SandboxRuntime::EnsureBuiltinLayer(const BuildLog& log) {
  // One maker of the base at a time (per process and across processes).
  NamedLock base_lock(locks_.get(), "base-builtin");
  WARREN_RETURN_IF_ERROR(base_lock.status());
  std::string busybox = FindBusybox();
  std::string bash = "/usr/bin/bash-static";
  if (busybox.empty()) return Status::Unavailable("busybox-static is not installed (apt-get install busybox-static)");
  if (!Exists(bash)) return Status::Unavailable("bash-static is not installed (apt-get install bash-static)");
  Hasher h;
  h.Add("builtin:minimal v1");
  WARREN_RETURN_IF_ERROR(HashFileInto(h, busybox));
  WARREN_RETURN_IF_ERROR(HashFileInto(h, bash));
  std::string hash = h.Hex();
  std::string layer = pool_->root() + "/layers/" + hash;
  if (!Exists(layer)) {
    if (log) log("building builtin:minimal from " + busybox + " and " + bash);
    std::string tmp = pool_->root() + "/tmp/builtin-" + NewId("", 8);
    WARREN_RETURN_IF_ERROR(pool_->CreateVolume(tmp));
    auto cleanup = [&](Status s) {
      (void)pool_->DeleteVolume(tmp);
      return s;
    };
    auto fs = RootFs::Open(tmp);
    if (!fs.ok()) return cleanup(fs.status());
    for (const char* d : {"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "home/sandbox", "proc",
                          "dev", "sys", "run", "var/log", "mnt", "opt", "srv"}) {
      if (Status s = fs->Mkdir(d, true); !s.ok()) return cleanup(s);
    }
    for (auto [d, mode] : {std::pair<const char*, uint32_t>{"tmp", 01777}, {"var/tmp", 01777}, {"root", 0700}}) {
      if (Status s = fs->Mkdir(d, true); !s.ok()) return cleanup(s);
      if (Status s = fs->Chmod(d, mode); !s.ok()) return cleanup(s);
    }
    if (Status s = fs->CopyIn(busybox, "/bin/busybox"); !s.ok()) return cleanup(s);
    if (Status s = fs->CopyIn(bash, "/bin/bash"); !s.ok()) return cleanup(s);
    std::string list;
    auto rc = RunCommand({busybox, "--list-full"}, &list);
    if (!rc.ok() || *rc != 0) return cleanup(Status::Internal("busybox --list-full failed"));
    std::istringstream in(list);
    std::string applet;
    while (std::getline(in, applet)) {
      if (applet.empty() || applet.find("..") != std::string::npos) continue;
      std::string path = tmp + "/" + applet;
      if (Exists(path)) continue;
      symlink("/bin/busybox", path.c_str());
    }
    if (!Exists(tmp + "/bin/sh")) symlink("/bin/busybox", (tmp + "/bin/sh").c_str());
    const std::pair<const char*, const char*> files[] = {
        {"/etc/passwd",
         "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\n"
         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
        {"/etc/group", "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n"},
        {"/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
        {"/etc/resolv.conf", ""},
        {"/etc/os-release", "NAME=\"Warren minimal\"\nID=warren-minimal\nVERSION_ID=1\n"},
    };
    for (const auto& [p, content] : files) {
      if (Status s = fs->WriteFile(p, content); !s.ok()) return cleanup(s);
    }
    if (lchown((tmp + "/home/sandbox").c_str(), 1000, 1000) != 0) return cleanup(ErrnoStatus("chown home"));
    if (Status s = pool_->Snapshot(tmp, layer, true); !s.ok()) return cleanup(s);
    (void)pool_->DeleteVolume(tmp);
  }
  SnapshotRecord rec;
  rec.name = kBuiltinMinimal;
  rec.hash = hash;
  rec.layers = {hash};
  rec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  rec.resources = Resources{0, 1LL << 30, 1024, 0};
  auto existing = snapshots_.Get(kBuiltinMinimal);
  if (existing.ok()) {
    auto r = SnapshotRecord::FromJson(*existing);
    if (r.ok() && r->hash == hash) return hash;
  }
  rec.created_at = Now();
  WARREN_RETURN_IF_ERROR(snapshots_.Put(kBuiltinMinimal, rec.ToJson()));
  return hash;
}

namespace {

// The first `deb` URI apt uses on this host (deb822 .sources or one-line
// .list format), or "".
std::string HostAptMirror() {
  std::vector<std::string> files{"/etc/apt/sources.list"};
  std::error_code ec;
  std::vector<std::string> more;
  for (const auto& e : std::filesystem::directory_iterator("/etc/apt/sources.list.d", ec)) {
    std::string n = e.path().string();
    if (n.size() > 8 && (n.ends_with(".sources") || n.ends_with(".list"))) more.push_back(n);
  }
  std::sort(more.begin(), more.end());
  files.insert(files.end(), more.begin(), more.end());
  for (const auto& f : files) {
    auto text = ReadFileToString(f);
    if (!text.ok()) continue;
    std::istringstream in(*text);
    std::string line;
    bool deb822_deb = false;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string w;
      ls >> w;
      if (w.empty() || w[0] == '#') {
        if (w.empty()) deb822_deb = false;  // a blank line ends a stanza
        continue;
      }
      if (w == "Types:") {
        deb822_deb = line.find(" deb") != std::string::npos &&
                     (line.find(" deb ") != std::string::npos || line.ends_with(" deb"));
      } else if (w == "URIs:" && deb822_deb) {
        std::string uri;
        ls >> uri;
        if (uri.find("security") == std::string::npos) return uri;
      } else if (w == "deb") {
        std::string uri;
        while (ls >> uri && uri[0] == '[') {
          while (uri.back() != ']' && ls >> uri) {
          }
        }
        if (!uri.empty() && uri.find("security") == std::string::npos) return uri;
      }
    }
  }
  return "";
}

// Runs argv with stdin=/dev/null, calling `line` for each line of its
// combined stdout/stderr as it arrives; returns the exit code and keeps the
// last lines in *tail.
Result<int> RunStreaming(const std::vector<std::string>& argv, const std::function<void(const std::string&)>& line,
                         std::string* tail) {
  std::string pending;
  std::deque<std::string> last;
  auto emit = [&](const std::string& l) {
    if (line) line(l);
    last.push_back(l);
    if (last.size() > 5) last.pop_front();
  };
  WARREN_ASSIGN_OR_RETURN(int code, RunCommandStreaming(argv, [&](std::string_view chunk) {
                            pending.append(chunk);
                            size_t nl;
                            while ((nl = pending.find('\n')) != std::string::npos) {
                              emit(pending.substr(0, nl));
                              pending.erase(0, nl + 1);
                            }
                          }));
  if (!pending.empty()) emit(pending);
  if (tail) {
    tail->clear();
    for (const auto& l : last) *tail += l + "\n";
  }
  return code;
}

bool ValidDebianWord(const std::string& s) {
  if (s.empty() || s.size() > 200) return false;
  for (char c : s) {
    if (!isalnum(static_cast<unsigned char>(c)) && std::string_view("-._+:/,~%").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<std::string> SandboxRuntime::EnsureDebianLayer(const std::string& from, const BuildLog& log,
                                                      std::string* mirror_out) {
  NamedLock base_lock(locks_.get(), "base-debian");
  WARREN_RETURN_IF_ERROR(base_lock.status());
  std::istringstream in(from);
  std::string base, w;
  in >> base;
  std::string suite = base.substr(7);  // after "debian:"
  if (suite.ends_with("-slim")) suite.resize(suite.size() - 5);  // minbase is already slim
  std::string mirror = opts_.debian_mirror, include;
  while (in >> w) {
    if (w.rfind("mirror=", 0) == 0) {
      mirror = w.substr(7);
    } else if (w.rfind("include=", 0) == 0) {
      include = w.substr(8);
    } else {
      return Status::InvalidArgument("FROM debian: unknown option " + w + " (mirror=URL, include=a,b)");
    }
  }
  if (suite.empty() || suite.find_first_not_of("abcdefghijklmnopqrstuvwxyz-") != std::string::npos) {
    return Status::InvalidArgument("FROM debian: bad suite '" + suite + "'");
  }
  if (mirror.empty()) mirror = HostAptMirror();
  if (mirror.empty()) mirror = "http://deb.debian.org/debian";
  if (!ValidDebianWord(mirror) || (mirror.rfind("http://", 0) != 0 && mirror.rfind("https://", 0) != 0 &&
                                   mirror.rfind("file:/", 0) != 0)) {
    return Status::InvalidArgument("FROM debian: bad mirror URL " + mirror);
  }
  if (!include.empty() && !ValidDebianWord(include)) return Status::InvalidArgument("FROM debian: bad include list");
  if (mirror_out) *mirror_out = mirror;
  std::string arch;
  auto rc = RunCommand({"dpkg", "--print-architecture"}, &arch);
  if (!rc.ok() || *rc != 0) return Status::Unavailable("dpkg --print-architecture failed");
  while (!arch.empty() && (arch.back() == '\n' || arch.back() == ' ')) arch.pop_back();
  Hasher h;
  for (const auto& part : {std::string("debian debootstrap v1"), suite, std::string("minbase"), arch, mirror, include}) {
    h.Add(part);
  }
  std::string hash = h.Hex();
  std::string layer = pool_->root() + "/layers/" + hash;
  if (Exists(layer)) {
    if (log) log("debian:" + suite + " base cached (" + hash.substr(0, 12) + ")");
    return hash;
  }
  std::vector<std::string> argv{"unshare", "--mount", "--propagation", "private", opts_.debootstrap,
                                "--variant=minbase"};
  if (!include.empty()) argv.push_back("--include=" + include);
  std::string tmp = pool_->root() + "/tmp/debian-" + NewId("", 8);
  argv.insert(argv.end(), {"--arch=" + arch, suite, tmp, mirror});
  if (access("/usr/bin/unshare", X_OK) != 0 ||
      (opts_.debootstrap.find('/') != std::string::npos ? access(opts_.debootstrap.c_str(), X_OK) != 0
                                                         : access(("/usr/sbin/" + opts_.debootstrap).c_str(), X_OK) != 0)) {
    return Status::Unavailable("debootstrap is not installed (apt-get install debootstrap)");
  }
  WARREN_RETURN_IF_ERROR(pool_->CreateVolume(tmp));
  auto cleanup = [&](Status s) {
    (void)pool_->DeleteVolume(tmp);
    return s;
  };
  // debootstrap runs in a private mount namespace: the /proc and /sys it
  // mounts inside the target go away with it, even if it dies half-way.
  if (log) log("debootstrap --variant=minbase " + suite + " (" + arch + ") from " + mirror);
  int fetched = 0;
  auto on_line = [&](const std::string& l) {
    if (!log) return;
    // Progress: debootstrap prints one "I: Retrieving"/"I: Extracting"/... line per package.
    bool retrieving = l.rfind("I: Retrieving", 0) == 0;
    if (retrieving) ++fetched;
    log("  debootstrap: " + l + (retrieving ? " [" + std::to_string(fetched) + " fetched]" : ""));
  };
  std::string tail;
  auto r = RunStreaming(argv, on_line, &tail);
  if (!r.ok()) return cleanup(r.status());
  if (*r != 0) {
    return cleanup(Status::Unavailable("debootstrap " + suite + " from " + mirror + " failed (exit " +
                                       std::to_string(*r) + "; mirror unreachable?): " + tail));
  }
  (void)RemoveTree(tmp + "/debootstrap");
  if (Status s = pool_->Snapshot(tmp, layer, true); !s.ok()) return cleanup(s);
  (void)pool_->DeleteVolume(tmp);
  if (log) log("debian:" + suite + " base built (" + hash.substr(0, 12) + ")");
  return hash;
}

Result<SnapshotRecord> SandboxRuntime::ResolveSnapshotLocked(const std::string& name, const BuildLog& log) {
  if (name == kBuiltinMinimal || name.empty()) {
    WARREN_RETURN_IF_ERROR(EnsureBuiltinLayer(log).status());
  }
  std::string key = name.empty() ? kBuiltinMinimal : name;
  std::string want_hash;
  if (auto at = key.find('@'); at != std::string::npos) {
    want_hash = key.substr(at + 1);
    key = key.substr(0, at);
  }
  auto j = snapshots_.Get(key);
  if (!j.ok()) {
    if (j.status().code() == Code::kNotFound) return Status::NotFound("no snapshot " + name);
    return j.status();
  }
  WARREN_ASSIGN_OR_RETURN(SnapshotRecord rec, SnapshotRecord::FromJson(*j));
  if (!want_hash.empty() && rec.hash.rfind(want_hash, 0) != 0) {
    return Status::NotFound("snapshot " + key + " has hash " + rec.hash.substr(0, 12) + ", not " + want_hash);
  }
  if (rec.layers.empty() || !Exists(pool_->root() + "/layers/" + rec.layers.back())) {
    return Status::FailedPrecondition("snapshot " + key + " has lost its layer; rebuild it");
  }
  return rec;
}

Status SandboxRuntime::RunBuildStep(const std::string& rootfs, const SnapshotRecord& cfg, const std::string& cmd,
                                    const BuildOptions* net, const BuildLog& log) {
  if (net != nullptr && net->allow_hosts.empty()) net = nullptr;
  std::string id = NewId("", 12);
  std::string cg = "build-" + id;
  Json rec;
  int slot = -1;
  {
    NamedLock reg(locks_.get(), kRegistryLock);
    WARREN_RETURN_IF_ERROR(reg.status());
    WARREN_ASSIGN_OR_RETURN(slot, AllocateSlotLocked());
    rec = Json{{"slot", slot}, {"rootfs", rootfs}, {"pid", -1}, {"start_time", 0}};
    // Networked: the policy is in the record before anything exists, like a
    // sandbox's record before its firewall sync (a full sync by anyone
    // renders it from here once the init is alive).
    if (net) {
      rec["network"] = "limited";
      rec["allow_hosts"] = net->allow_hosts;
    }
    WARREN_RETURN_IF_ERROR(builds_.Put(id, rec));
  }
  // The step's network state, undone by cleanup in reverse.
  const std::string net_dir = opts_.data_dir + "/builds/" + id + ".d";  // the step's resolv.conf
  std::vector<std::string> made;   // mount points this step made in the layer
  std::optional<SandboxRecord> netrec;  // set once its rules may exist
  std::optional<NetSlot> netslot;       // set once its veth may exist
  std::optional<RootFs> layer_fs;
  auto cleanup = [&](pid_t pid, uint64_t start) {
    if (pid > 0) {
      UniqueFd fd(SysPidfdOpen(pid, 0));
      if (fd && ProcessAlive(pid, start)) SysPidfdSendSignal(fd.get(), SIGKILL);
    }
    (void)cgroups_->Destroy(cg);
    auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
    while (pid > 0 && ProcessAlive(pid, start) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    if (netslot) {
      if (Status s = DeleteLink(netslot->host_if); !s.ok()) {
        log::Warn("sandbox.build.network_teardown", {{"build", id}, {"error", s.ToString()}});
      }
    }
    if (netrec) {
      if (Status s = SyncFirewallLocked(nullptr, &*netrec); !s.ok()) {
        log::Warn("sandbox.build.network_teardown", {{"build", id}, {"error", s.ToString()}});
      }
    }
    if (layer_fs) {
      for (auto it = made.rbegin(); it != made.rend(); ++it) (void)layer_fs->Delete(*it, false);
    }
    if (net) (void)RemoveTree(net_dir);
    (void)builds_.Remove(id);
  };
  if (Status s = cgroups_->Create(cg, Resources{0, 4LL << 30, 4096, 0}); !s.ok()) {
    cleanup(-1, 0);
    return s;
  }
  InitSpec spec;
  spec.rootfs = rootfs;
  spec.hostname = "build";
  spec.ids = IdRange{slot};
  spec.root_mount = [this, rootfs, base = spec.ids.host_base()](int userns_fd) {
    return pool_->SandboxRootMount(rootfs, userns_fd, base, MOUNT_ATTR_NODEV);
  };
  std::vector<std::string> net_env;
  if (net) {
    // DNS: the proxy on the gateway (any :53 is redirected there anyway;
    // this covers images whose resolv.conf names a loopback stub). CA: the
    // given bundle, for hosts whose TLS is inspected on the way out. Both
    // are read-only binds over files of the layer (made here if absent and
    // removed after), so neither lands in the snapshot.
    auto ns = NetSlotFor(net_pool_, net_if_prefix_, slot);
    auto fs = ns.ok() ? RootFs::Open(rootfs) : Result<RootFs>(ns.status());
    Status s = fs.status();
    if (s.ok()) {
      layer_fs.emplace(std::move(*fs));
      s = MkdirAll(net_dir, 0755);
    }
    if (s.ok()) s = WriteStringToFile(net_dir + "/resolv.conf", "nameserver " + FormatIpv4(ns->host_addr) + "\n");
    // Readable inside: the bind is not idmapped (its owner shows as nobody).
    if (s.ok() && chmod((net_dir + "/resolv.conf").c_str(), 0644) != 0) s = ErrnoStatus("chmod build resolv.conf");
    // A file mount point at `path` in the layer: true when there is one
    // (made if absent); false when something else is there (a symlink).
    auto mount_point = [&](const std::string& path) -> Result<bool> {
      auto st = layer_fs->Stat(path);
      if (st.ok()) return st->type == "file";
      if (st.status().code() != Code::kNotFound) return st.status();
      std::string parent = path.substr(0, path.rfind('/'));
      if (!parent.empty() && !layer_fs->Stat(parent).ok()) {
        WARREN_RETURN_IF_ERROR(layer_fs->Mkdir(parent, true));
        made.push_back(parent);
      }
      WARREN_RETURN_IF_ERROR(layer_fs->WriteFile(path, "", 0644));
      made.push_back(path);
      return true;
    };
    if (s.ok()) {
      auto mp = mount_point("/etc/resolv.conf");
      s = mp.status();
      if (s.ok() && *mp) {
        BindSpec b{net_dir + "/resolv.conf", "/etc/resolv.conf", true};
        b.idmapped = false;
        spec.binds.push_back(std::move(b));
      }
    }
    if (s.ok() && !net->ca_bundle.empty()) {
      char real[PATH_MAX];
      if (realpath(net->ca_bundle.c_str(), real) == nullptr) s = ErrnoStatus("build CA bundle " + net->ca_bundle);
      auto mp = s.ok() ? mount_point(kBuildCaPath) : Result<bool>(s);
      s = mp.status();
      if (s.ok() && *mp) {
        BindSpec b{real, kBuildCaPath, true};
        b.idmapped = false;
        spec.binds.push_back(std::move(b));
        for (const char* k : {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE",
                              "CARGO_HTTP_CAINFO", "GIT_SSL_CAINFO"}) {
          net_env.push_back(std::string(k) + "=" + kBuildCaPath);
        }
      }
    }
    if (!s.ok()) {
      cleanup(-1, 0);
      return s.WithContext("RUN network");
    }
    netslot = *ns;
    if (log) {
      std::string hosts;
      for (const auto& hst : net->allow_hosts) hosts += (hosts.empty() ? "" : ", ") + hst;
      log("  network: limited to " + hosts + " (egress proxy)");
    }
  }
  auto h = SpawnInit(spec, *cgroups_, cg);
  if (!h.ok()) {
    netslot.reset();  // no veth was made
    cleanup(-1, 0);
    return h.status().WithContext("RUN");
  }
  rec["pid"] = h->pid;
  rec["start_time"] = h->start_time;
  (void)builds_.Put(id, rec);
  if (net) {
    // Rules first, then the veth (it never exists unfiltered), as for a
    // sandbox's start (runtime_network.cc).
    SandboxRecord r;
    r.id = "build-" + id;
    r.network = "limited";
    r.state = SandboxState::kStarted;
    r.id_slot = slot;
    r.init_pid = h->pid;
    r.init_start_time = h->start_time;
    r.allow_hosts = net->allow_hosts;
    netrec = r;
    Status s = SyncFirewallLocked(&*netrec, nullptr);
    UniqueFd pidfd(SysPidfdOpen(h->pid, 0));
    if (s.ok() && (!pidfd || !ProcessAlive(h->pid, h->start_time))) {
      s = Status::FailedPrecondition("build init exited before its network was set up");
    }
    if (s.ok()) s = DeleteLink(netslot->host_if);  // a stale link of a crash: the slot is ours now
    if (s.ok()) s = SetupVeth(*netslot, pidfd.get());
    if (!s.ok()) {
      cleanup(h->pid, h->start_time);
      return s.WithContext("RUN network");
    }
  }
  auto fs = RootFs::Open(rootfs);
  if (!fs.ok()) {
    cleanup(h->pid, h->start_time);
    return fs.status();
  }
  // Resolve the user inside the layer being built.
  SandboxRecord dummy;
  dummy.id = "build";
  ExecSpec es;
  es.argv = {"/bin/sh", "-c", cmd};
  es.env = ExecEnv(&cfg, dummy, net_env);
  es.cwd = cfg.workdir.empty() ? "/" : cfg.workdir;
  std::string user = cfg.user.empty() ? "root" : cfg.user;
  uint32_t uid = 0, gid = 0;
  if (user != "root") {
    auto passwd = fs->ReadFile("/etc/passwd", 1 << 20);
    bool found = false;
    if (passwd.ok()) {
      std::istringstream in(*passwd);
      std::string line;
      while (std::getline(in, line) && !found) {
        std::vector<std::string> f;
        std::stringstream ls(line);
        std::string x;
        while (std::getline(ls, x, ':')) f.push_back(x);
        if (f.size() >= 4 && f[0] == user) {
          uid = static_cast<uint32_t>(std::stoul(f[2]));
          gid = static_cast<uint32_t>(std::stoul(f[3]));
          found = true;
        }
      }
    }
    if (!found && !user.empty() && std::all_of(user.begin(), user.end(), ::isdigit)) {
      uid = gid = static_cast<uint32_t>(std::stoul(user));
      found = true;
    }
    if (!found) {
      cleanup(h->pid, h->start_time);
      return Status::InvalidArgument("RUN: unknown USER " + user);
    }
  }
  es.uid = uid;
  es.gid = gid;
  std::string pending_out, pending_err;
  auto sink = [&](std::string* pending, std::string_view d) {
    pending->append(d);
    size_t nl;
    while ((nl = pending->find('\n')) != std::string::npos) {
      if (log) log(pending->substr(0, nl));
      pending->erase(0, nl + 1);
    }
  };
  es.on_stdout = [&](std::string_view d) { sink(&pending_out, d); };
  es.on_stderr = [&](std::string_view d) { sink(&pending_err, d); };
  auto r = ExecInSandbox(h->pid, cgroups_->ProcsFiles(cg), es, seccomp_, caps_);
  if (log && !pending_out.empty()) log(pending_out);
  if (log && !pending_err.empty()) log(pending_err);
  cleanup(h->pid, h->start_time);
  if (!r.ok()) return r.status().WithContext("RUN");
  if (r->exit_code != 0) return Status::FailedPrecondition("RUN " + cmd + " exited with " + std::to_string(r->exit_code));
  return Status::Ok();
}

Result<SnapshotRecord> SandboxRuntime::BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                                     const std::string& context_dir, const BuildLog& log) {
  if (!ValidSnapshotName(name)) return Status::InvalidArgument("invalid snapshot name: " + name);
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  // Builds of one name queue; builds of other names and every sandbox
  // operation go on meanwhile.
  NamedLock build(locks_.get(), "snapshot-" + name);
  WARREN_RETURN_IF_ERROR(build.status());
  return BuildLocked(name, recipe_text, context_dir, BuildOptions{}, log);
}

Result<SnapshotRecord> SandboxRuntime::BuildSnapshot(const std::string& name, const std::string& recipe_text,
                                                     const std::string& context_dir, const BuildOptions& build_opts,
                                                     const BuildLog& log) {
  if (!ValidSnapshotName(name)) return Status::InvalidArgument("invalid snapshot name: " + name);
  if (build_opts.networked()) {
    WARREN_RETURN_IF_ERROR(BuildNetworkStatus());
    // Refused before anything is built, like a sandbox's bad allowlist.
    auto hosts = HostAllowlist::Parse(build_opts.allow_hosts);
    if (!hosts.ok()) return hosts.status().WithContext("build network");
    if (!build_opts.ca_bundle.empty() && access(build_opts.ca_bundle.c_str(), R_OK) != 0) {
      return ErrnoStatus("build CA bundle " + build_opts.ca_bundle);
    }
  }
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  NamedLock build(locks_.get(), "snapshot-" + name);
  WARREN_RETURN_IF_ERROR(build.status());
  return BuildLocked(name, recipe_text, context_dir, build_opts, log);
}

Status SandboxRuntime::BuildNetworkStatus() const {
  if (!features_.network_isolated) {
    return Status::FailedPrecondition("builds cannot have a network on this host: " + features_.network_reason);
  }
  if (egress_tcp_port_ == 0 || egress_dns_port_ == 0) {
    return Status::FailedPrecondition(
        "builds with a network need the egress proxy, which runs in `warren serve` or `warren orchestrator` on "
        "this data dir; none has run here");
  }
  return Status::Ok();
}

Result<SnapshotRecord> SandboxRuntime::BuildLocked(const std::string& name, const std::string& recipe_text,
                                                   const std::string& context_dir, const BuildOptions& build_opts,
                                                   const BuildLog& log) {
  if (!ValidSnapshotName(name)) return Status::InvalidArgument("invalid snapshot name: " + name);
  WARREN_ASSIGN_OR_RETURN(Recipe recipe, ParseRecipe(recipe_text));
  // The RUN steps' network: the caller's hosts, plus the base's mirror
  // host once a `FROM debian:` step names it.
  BuildOptions net = build_opts;
  net.allow_base_mirror = false;
  SnapshotRecord cfg;
  cfg.name = name;
  cfg.recipe = recipe_text;
  cfg.resources = Resources{0, 1LL << 30, 1024, 0};
  cfg.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  std::string chain, layer;  // chain hash so far; current filesystem layer
  const size_t total = recipe.steps.size();
  std::string layers_dir = pool_->root() + "/layers/";

  // Makes layer `key` by running `mutate` on a writable copy of the current
  // layer (or an empty volume for the first), unless it is cached.
  auto make_layer = [&](const std::string& key, const std::function<Status(const std::string&)>& mutate,
                        bool* cached) -> Status {
    *cached = Exists(layers_dir + key);
    if (*cached) return Status::Ok();
    std::string tmp = pool_->root() + "/tmp/step-" + NewId("", 10);
    Status s = layer.empty() ? pool_->CreateVolume(tmp) : pool_->Snapshot(layers_dir + layer, tmp, false);
    if (s.ok()) s = mutate(tmp);
    if (s.ok()) {
      // Another build may have made the same layer meanwhile: keep theirs.
      NamedLock layers_lock(locks_.get(), kLayersLock);
      s = layers_lock.status();
      if (s.ok() && !Exists(layers_dir + key)) s = pool_->Snapshot(tmp, layers_dir + key, true);
    }
    (void)pool_->DeleteVolume(tmp);
    return s;
  };

  for (size_t i = 0; i < total; ++i) {
    const RecipeStep& st = recipe.steps[i];
    auto t0 = std::chrono::steady_clock::now();
    std::string head = "[" + std::to_string(i + 1) + "/" + std::to_string(total) + "] " +
                       std::string(StepKindName(st.kind)) + " " + st.text;
    if (log) log(head);
    bool cached = false;
    bool new_layer = false;
    Status s;
    switch (st.kind) {
      case RecipeStep::Kind::kFrom: {
        const std::string& base = st.text;
        if (base == "scratch") {
          chain = Chain("", "FROM scratch");
          s = make_layer(chain, [](const std::string&) { return Status::Ok(); }, &cached);
          new_layer = true;
        } else if (base == kBuiltinMinimal) {
          auto h = EnsureBuiltinLayer(log);
          if (!h.ok()) return h.status();
          chain = *h;
          layer = *h;
          cached = true;
        } else if (base.rfind("debian:", 0) == 0) {
          std::string mirror;
          auto h = EnsureDebianLayer(base, log, &mirror);
          if (!h.ok()) return h.status();
          if (build_opts.allow_base_mirror) {
            // http(s)://host[:port]/path -> host (a file: mirror needs none).
            size_t p = mirror.find("://");
            std::string host = p == std::string::npos ? "" : mirror.substr(p + 3);
            host = host.substr(0, host.find_first_of(":/"));
            if (!host.empty() && std::find(net.allow_hosts.begin(), net.allow_hosts.end(), host) == net.allow_hosts.end()) {
              net.allow_hosts.push_back(host);
            }
          }
          chain = *h;
          layer = *h;
          cached = true;
        } else if (base.rfind("dir:", 0) == 0) {
          std::string src = base.substr(4);
          auto h = HashTree(src);
          if (!h.ok()) return h.status();
          chain = Chain("", "FROM dir " + *h);
          s = make_layer(chain, [&](const std::string& tmp) -> Status {
            WARREN_ASSIGN_OR_RETURN(RootFs fs, RootFs::Open(tmp));
            return fs.CopyIn(src, "/");
          }, &cached);
          new_layer = true;
        } else if (base.rfind("tar:", 0) == 0) {
          std::string src = base.substr(4);
          Hasher h;
          if (Status hs = HashFileInto(h, src); !hs.ok()) return hs;
          chain = Chain("", "FROM tar " + h.Hex());
          s = make_layer(chain, [&](const std::string& tmp) { return ExtractTarball(src, tmp); }, &cached);
          new_layer = true;
        } else {
          auto b = ResolveSnapshotLocked(base, log);
          if (!b.ok()) return b.status();
          chain = b->hash;
          layer = b->layers.back();
          cfg.layers = b->layers;
          cfg.env = b->env;
          cfg.workdir = b->workdir;
          cfg.user = b->user;
          cfg.resources = b->resources;
          cached = true;
        }
        break;
      }
      case RecipeStep::Kind::kEnv: {
        MergeEnvVector(&cfg.env, st.args);
        chain = Chain(chain, "ENV " + st.text);
        cached = true;
        break;
      }
      case RecipeStep::Kind::kUser: {
        cfg.user = st.text;
        chain = Chain(chain, "USER " + st.text);
        cached = true;
        break;
      }
      case RecipeStep::Kind::kWorkdir: {
        cfg.workdir = st.text;
        chain = Chain(chain, "WORKDIR " + st.text);
        s = make_layer(chain, [&](const std::string& tmp) -> Status {
          WARREN_ASSIGN_OR_RETURN(RootFs fs, RootFs::Open(tmp));
          return fs.Mkdir(st.text, true);
        }, &cached);
        new_layer = true;
        break;
      }
      case RecipeStep::Kind::kCopy: {
        std::vector<std::string> srcs(st.args.begin(), st.args.end() - 1);
        std::string dst = st.args.back();
        if (context_dir.empty()) return Status::InvalidArgument("COPY needs a build context directory");
        std::string desc = "COPY " + dst;
        std::vector<std::string> resolved;
        for (const auto& src : srcs) {
          auto p = ContextPath(context_dir, src);
          if (!p.ok()) return p.status();
          auto h = HashTree(*p);
          if (!h.ok()) return h.status();
          desc += " " + src + "=" + *h;
          resolved.push_back(*p);
        }
        chain = Chain(chain, desc);
        bool into_dir = srcs.size() > 1 || dst.back() == '/';
        s = make_layer(chain, [&](const std::string& tmp) -> Status {
          WARREN_ASSIGN_OR_RETURN(RootFs fs, RootFs::Open(tmp));
          std::string d = dst[0] == '/' ? dst : (cfg.workdir.empty() ? "/" : cfg.workdir) + "/" + dst;
          for (const auto& p : resolved) {
            struct stat sst;
            if (lstat(p.c_str(), &sst) != 0) return ErrnoStatus("stat " + p);
            std::string target = d;
            if (!S_ISDIR(sst.st_mode) && into_dir) {
              WARREN_RETURN_IF_ERROR(fs.Mkdir(d, true));
              target = d + "/" + p.substr(p.rfind('/') + 1);
            }
            // `p` is realpath'd (no symlink in it): a component swapped for
            // a link since then fails instead of being followed.
            WARREN_RETURN_IF_ERROR(fs.CopyIn(p, target, /*no_symlinks=*/true));
          }
          return Status::Ok();
        }, &cached);
        new_layer = true;
        break;
      }
      case RecipeStep::Kind::kRun: {
        chain = Chain(chain, "RUN " + st.text);
        s = make_layer(chain, [&](const std::string& tmp) {
          return RunBuildStep(tmp, cfg, st.text, net.allow_hosts.empty() ? nullptr : &net, log);
        }, &cached);
        new_layer = true;
        break;
      }
    }
    if (!s.ok()) {
      if (log) log("step failed: " + s.ToString());
      return s.WithContext("snapshot " + name + " step " + std::to_string(i + 1));
    }
    if (new_layer) {
      layer = chain;
      cfg.layers.push_back(chain);
    } else if (cfg.layers.empty() && !layer.empty()) {
      cfg.layers.push_back(layer);
    }
    auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
    if (log) log(std::string("  -> ") + (cached ? "cached" : "built") + " " + chain.substr(0, 12) + " (" +
                 std::to_string(ms) + " ms)");
  }
  if (layer.empty()) return Status::InvalidArgument("recipe produced no filesystem");
  if (cfg.layers.empty() || cfg.layers.back() != layer) cfg.layers.push_back(layer);
  cfg.hash = chain;
  cfg.created_at = Now();
  {
    NamedLock layers_lock(locks_.get(), kLayersLock);
    WARREN_RETURN_IF_ERROR(layers_lock.status());
    WARREN_RETURN_IF_ERROR(snapshots_.Put(name, cfg.ToJson()));
  }
  if (log) log("snapshot " + cfg.Ref() + " ready");
  return cfg;
}

Result<SnapshotRecord> SandboxRuntime::GetSnapshot(const std::string& name) {
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  return ResolveSnapshotLocked(name, nullptr);
}

Result<std::vector<SnapshotRecord>> SandboxRuntime::ListSnapshots() {
  std::vector<SnapshotRecord> out;
  for (const auto& key : snapshots_.Keys()) {
    auto j = snapshots_.Get(key);
    if (!j.ok()) continue;
    auto r = SnapshotRecord::FromJson(*j);
    if (r.ok()) out.push_back(std::move(*r));
  }
  return out;
}

Status SandboxRuntime::DeleteSnapshot(const std::string& name) {
  if (!ValidSnapshotName(name) && name != kBuiltinMinimal) return Status::NotFound("no snapshot " + name);
  WorldLock world(locks_.get(), false);
  WARREN_RETURN_IF_ERROR(world.status());
  NamedLock build(locks_.get(), "snapshot-" + name);
  WARREN_RETURN_IF_ERROR(build.status());
  NamedLock layers_lock(locks_.get(), kLayersLock);
  WARREN_RETURN_IF_ERROR(layers_lock.status());
  auto j = snapshots_.Get(name);
  if (!j.ok()) return j.status().code() == Code::kNotFound ? Status::NotFound("no snapshot " + name) : j.status();
  WARREN_ASSIGN_OR_RETURN(SnapshotRecord rec, SnapshotRecord::FromJson(*j));
  WARREN_RETURN_IF_ERROR(snapshots_.Remove(name));
  // Free layers no other snapshot uses. Sandboxes on btrfs/copy pools hold
  // their own copies; overlay volumes are stacked on layers, which then stay.
  std::set<std::string> in_use = pool_->ReferencedLayers();
  for (const auto& key : snapshots_.Keys()) {
    auto jj = snapshots_.Get(key);
    if (!jj.ok()) continue;
    auto r = SnapshotRecord::FromJson(*jj);
    if (r.ok()) in_use.insert(r->layers.begin(), r->layers.end());
  }
  for (const auto& layer : rec.layers) {
    if (!in_use.count(layer)) (void)pool_->DeleteVolume(pool_->root() + "/layers/" + layer);
  }
  return Status::Ok();
}

}  // namespace warren::sandbox
