// Preparation (orchestrator/prepare.h) and package snapshots
// (orchestrator/packages.h) over a real runtime: git over a local path and
// over http with a token (a tiny dumb-protocol git server that checks the
// Authorization header), the token absent from every file of the sandbox and
// of the preparer's state, datasets from a directory and from tarballs
// (hostile ones refused), credentials that expire and vanish, a volume.
#include <gtest/gtest.h>
#include <netdb.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "../sandbox/harness.h"
#include "common/clock.h"
#include "orchestrator/orchestrator.h"
#include "orchestrator/packages.h"
#include "orchestrator/prepare.h"
#include "orchestrator/webhooks.h"

namespace warren::orchestrator {
namespace {

using namespace warren::sandbox;
using sandbox::testing::LinksWithPrefix;
using sandbox::testing::NftTableExists;
using sandbox::testing::RuntimeTest;

// Runs a host shell command; returns its exit code and stdout.
int Host(const std::string& cmd, std::string* out = nullptr) {
  std::string o;
  auto rc = RunCommand({"/bin/sh", "-c", cmd}, &o);
  if (out) *out = o;
  return rc.ok() ? *rc : -1;
}

class PrepareTest : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (access("/usr/bin/git", X_OK) != 0) GTEST_SKIP() << "git is not installed";
    work_ = data_dir_ + "-host";
    ASSERT_EQ(Host("mkdir -p " + work_), 0);
    // A repository with one commit, and a bare copy of it.
    ASSERT_EQ(Host("cd " + work_ + " && git init -q -b main src && cd src && echo 'hello from the repo' > README && "
                   "mkdir -p sub && echo nested > sub/file && git add . && "
                   "git -c user.name=t -c user.email=t@e commit -q -m init && cd .. && "
                   "git clone -q --bare src repo.git && git -C repo.git update-server-info"),
              0);
    PreparerOptions po;
    po.clock = &clock_;
    prep_ = std::make_unique<Preparer>(rt_.get(), po);
  }
  void TearDown() override {
    if (server_pid_ > 0) {
      kill(server_pid_, SIGKILL);
      waitpid(server_pid_, nullptr, 0);
    }
    prep_.reset();
    RuntimeTest::TearDown();
    if (!work_.empty()) Host("rm -rf " + work_);
  }

  // Starts a dumb-protocol git server over work_ that answers 401 unless the
  // request carries `Authorization: Basic base64(user:token)`; counts the
  // authorized requests in work_/authorized.
  int StartServer(const std::string& user, const std::string& token) {
    std::string script = work_ + "/server.py";
    std::ofstream(script) << R"PY(
import base64, http.server, os, sys, functools
root, expected = sys.argv[1], "Basic " + base64.b64encode(sys.argv[2].encode()).decode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        with open(os.path.join(root, "authorized"), "a") as f:
            f.write(self.path + "\n")
        super().do_GET()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=root))
print(srv.server_address[1], flush=True)
srv.serve_forever()
)PY";
    int p[2];
    EXPECT_EQ(pipe(p), 0);
    server_pid_ = fork();
    if (server_pid_ == 0) {
      dup2(p[1], 1);
      close(p[0]);
      execlp("python3", "python3", script.c_str(), work_.c_str(), (user + ":" + token).c_str(), nullptr);
      _exit(127);
    }
    close(p[1]);
    std::string line;
    char c;
    while (read(p[0], &c, 1) == 1 && c != '\n') line += c;
    close(p[0]);
    return line.empty() ? -1 : std::stoi(line);
  }

  // grep -r over the sandbox's rootfs on the host: true if `needle` is found.
  bool RootfsContains(const std::string& id, const std::string& needle) {
    return Host("grep -r -F -l -q -- '" + needle + "' " + rt_->RootfsPath(id)) == 0;
  }

  FakeClock clock_;
  std::string work_;
  std::unique_ptr<Preparer> prep_;
  pid_t server_pid_ = -1;
};

TEST_F(PrepareTest, LocalRepoDatasetsCredentialsAndVolume) {
  ASSERT_EQ(Host("mkdir -p " + work_ + "/ds/inner && echo alpha > " + work_ + "/ds/a.txt && echo beta > " + work_ +
                 "/ds/inner/b.txt && mkdir -p " + work_ + "/t/top && echo gamma > " + work_ +
                 "/t/top/c.txt && tar -C " + work_ + "/t -czf " + work_ + "/data.tar.gz top"),
            0);
  PrepareRequest req;
  req.environment_id = "env_test1";
  req.allow_host_paths = true;
  req.sandbox.labels = {{"team", "ml"}};
  req.sandbox.volumes = {VolumeMount{"prepvol", "/mnt/shared", "", false}};
  req.repos = {RepoSource{work_ + "/repo.git", "", "x-access-token", "main", "", "/workspace/repo"}};
  req.datasets = {DatasetSource{work_ + "/ds", "", "/data/dir"}, DatasetSource{"", work_ + "/data.tar.gz", "/data/tar"}};
  req.credentials = {CredentialSpec{"api-key.txt", "s3cr3t-file", CredentialSpec::Kind::kFile, 60},
                     CredentialSpec{"SERVICE_TOKEN", "s3cr3t-env", CredentialSpec::Kind::kEnv, 120}};
  auto res = prep_->Prepare(req);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const std::string id = res->sandbox.id;
  EXPECT_EQ(res->sandbox.labels.at("warren.mode"), "prepared");
  EXPECT_EQ(res->sandbox.labels.at("warren.environment_id"), "env_test1");
  EXPECT_EQ(res->sandbox.labels.at("team"), "ml");
  EXPECT_EQ(res->sandbox.labels.at("warren.credentials_expire_at"), FormatRfc3339(clock_.NowMicros() + 60'000'000));
  ASSERT_EQ(res->repos.size(), 1u);
  EXPECT_EQ(res->repos[0].head.size(), 40u);
  EXPECT_EQ(Sh(id, "cat /workspace/repo/README /workspace/repo/sub/file").stdout_data, "hello from the repo\nnested\n");
  EXPECT_EQ(Sh(id, "cd /workspace/repo && git rev-parse HEAD 2>/dev/null || cat .git/HEAD").exit_code, 0);
  EXPECT_EQ(Sh(id, "cat /data/dir/a.txt /data/dir/inner/b.txt /data/tar/top/c.txt").stdout_data, "alpha\nbeta\ngamma\n");
  auto cred = Sh(id, "stat -c '%a %u' /run/warren/credentials/api-key.txt /run/warren/credentials; "
                     "cat /run/warren/credentials/api-key.txt");
  EXPECT_EQ(cred.stdout_data, "400 0\n700 0\ns3cr3t-file");
  EXPECT_FALSE(RootfsContains(id, "s3cr3t-env")) << "env credentials stay on the host";
  EXPECT_EQ(*prep_->RunnerEnv(id), std::vector<std::string>{"SERVICE_TOKEN=s3cr3t-env"});
  // The volume is attached.
  EXPECT_EQ(Sh(id, "echo shared > /mnt/shared/x && cat /mnt/shared/x").stdout_data, "shared\n");
  // The orchestrator's label check.
  auto rec = rt_->Get(id);
  EXPECT_TRUE(Preparer::CheckPrepared(*rec, "env_test1").ok());
  EXPECT_EQ(Preparer::CheckPrepared(*rec, "env_other").code(), Code::kPermissionDenied);
  auto plain = MustCreate();
  EXPECT_EQ(Preparer::CheckPrepared(plain, "env_test1").code(), Code::kFailedPrecondition);

  // Nothing expired yet: the sweep changes nothing.
  auto s0 = prep_->Sweep();
  ASSERT_TRUE(s0.ok());
  EXPECT_TRUE(s0->files_removed.empty() && s0->env_expired.empty());
  // The file credential expires first: gone from the sandbox, the env one stays.
  clock_.Advance(61'000'000);
  auto s1 = prep_->Sweep();
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  EXPECT_EQ(s1->files_removed, std::vector<std::string>{id + ":/run/warren/credentials/api-key.txt"});
  EXPECT_TRUE(s1->env_expired.empty());
  EXPECT_NE(Sh(id, "test -e /run/warren/credentials/api-key.txt").exit_code, 0);
  EXPECT_EQ(rt_->Get(id)->labels.at("warren.credentials_expire_at"), FormatRfc3339(clock_.NowMicros() + 59'000'000));
  // The env one: never handed out once expired, even before a sweep; the
  // sweep reports it (the orchestrator relaunches the runner) and drops it.
  clock_.Advance(60'000'000);
  EXPECT_TRUE(prep_->RunnerEnv(id)->empty());
  auto s2 = prep_->Sweep();
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->env_expired, std::vector<std::string>{id});
  EXPECT_EQ(rt_->Get(id)->labels.count("warren.credentials_expire_at"), 0u);
  EXPECT_FALSE(std::filesystem::exists(prep_->state_dir() + "/" + id + ".json"));
  // A deleted sandbox's state is forgotten.
  ASSERT_TRUE(prep_->PlaceCredentials(plain.id, {{"K", "v", CredentialSpec::Kind::kEnv, 10}}).ok());
  ASSERT_TRUE(rt_->Delete(plain.id).ok());
  auto s3 = prep_->Sweep();
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ(s3->forgotten, std::vector<std::string>{plain.id});
}

TEST_F(PrepareTest, HttpCloneWithTokenLeavesNoTraceOfIt) {
  const std::string token = "ghp_" + NewId("", 30);
  int port = StartServer("x-access-token", token);
  ASSERT_GT(port, 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/repo.git";
  // Without the token the server refuses: the clone fails, nothing is left.
  PrepareRequest bad;
  bad.environment_id = "env_http";
  bad.repos = {RepoSource{url, "wrong-" + token.substr(4), "x-access-token", "", "", "/workspace"}};
  auto refused = prep_->Prepare(bad);
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status().ToString();
  EXPECT_EQ(refused.status().message().find(token.substr(4)), std::string::npos) << "no token in the error";
  EXPECT_TRUE(rt_->List()->empty()) << "a failed prepare deletes its sandbox";

  PrepareRequest req;
  req.environment_id = "env_http";
  req.repos = {RepoSource{url, token, "x-access-token", "", "", "/workspace"}};
  auto res = prep_->Prepare(req);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const std::string id = res->sandbox.id;
  EXPECT_EQ(Sh(id, "cat /workspace/README").stdout_data, "hello from the repo\n");
  std::string authorized;
  Host("cat " + work_ + "/authorized", &authorized);
  EXPECT_NE(authorized.find("/info/refs"), std::string::npos) << "the server saw the token: " << authorized;
  // grep over the sandbox's whole rootfs from the host: the repository's
  // content is found (the probe works), the token and its header are not.
  EXPECT_TRUE(RootfsContains(id, "hello from the repo"));
  EXPECT_FALSE(RootfsContains(id, token));
  EXPECT_FALSE(RootfsContains(id, Base64Encode("x-access-token:" + token)));
  EXPECT_EQ(Sh(id, "cat /workspace/.git/config").stdout_data.find("extraheader"), std::string::npos);
  EXPECT_NE(Sh(id, "cat /workspace/.git/config").stdout_data.find(url), std::string::npos);
  // Not in the runner's environment, the sandbox's env, its processes, or
  // the preparer's state.
  auto env = prep_->RunnerEnv(id);
  ASSERT_TRUE(env.ok());
  for (const auto& e : *env) EXPECT_EQ(e.find(token), std::string::npos);
  auto rec = rt_->Get(id);
  ASSERT_TRUE(rec.ok());
  for (const auto& e : rec->env) EXPECT_EQ(e.find(token), std::string::npos);
  EXPECT_EQ(Sh(id, "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c " + token + " || true").stdout_data,
            "0\n");
  EXPECT_NE(Host("grep -r -F -q -- " + token + " " + prep_->state_dir()), 0);
  EXPECT_NE(Host("grep -r -F -q -- " + token + " " + data_dir_ + "/sandboxes"), 0);
  // No private clone dir is left behind.
  std::string left;
  Host("ls -A " + prep_->state_dir() + "/tmp", &left);
  EXPECT_EQ(left, "");
  // A token over plain http to a non-loopback host is refused up front.
  PrepareRequest remote;
  remote.environment_id = "env_http";
  remote.repos = {RepoSource{"http://example.com/r.git", token, "x-access-token", "", "", "/w"}};
  EXPECT_EQ(prep_->Prepare(remote).status().code(), Code::kInvalidArgument);
  remote.repos = {RepoSource{"https://user:pw@example.com/r.git", "", "x-access-token", "", "", "/w"}};
  EXPECT_EQ(prep_->Prepare(remote).status().code(), Code::kInvalidArgument);
  remote.repos = {RepoSource{work_ + "/repo.git", "", "x-access-token", "", "", "/w"}};
  EXPECT_EQ(prep_->Prepare(remote).status().code(), Code::kInvalidArgument) << "local paths need allow_host_paths";
}

TEST_F(PrepareTest, HostileTarballsAreRefused) {
  auto sb = MustCreate();
  const std::string outside = work_ + "/outside";
  ASSERT_EQ(Host("mkdir -p " + outside), 0);
  // Each archive would write into `outside` (or the sandbox's /etc) if it
  // were extracted naively.
  const std::string py = R"PY(
import io, sys, tarfile
kind, dst, outside = sys.argv[1], sys.argv[2], sys.argv[3]
def add(t, name, data=b"pwned\n", **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data)
    for k, v in kw.items(): setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data))
with tarfile.open(dst, "w:gz") as t:
    if kind == "dotdot": add(t, "../../../../../../../.." + outside + "/dotdot")
    if kind == "abs": add(t, outside + "/abs")
    if kind == "symlink":
        ti = tarfile.TarInfo("link"); ti.type = tarfile.SYMTYPE; ti.linkname = outside; t.addfile(ti)
        add(t, "link/through")
)PY";
  std::ofstream(work_ + "/mk.py") << py;
  for (const std::string kind : {"dotdot", "abs", "symlink"}) {
    const std::string tar = work_ + "/" + kind + ".tar.gz";
    ASSERT_EQ(Host("python3 " + work_ + "/mk.py " + kind + " " + tar + " " + outside), 0);
    std::ifstream in(tar, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Status s = prep_->LoadDatasetBytes(sb.id, bytes, "/data");
    EXPECT_FALSE(s.ok()) << kind;
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << kind << ": " << s.ToString();
  }
  std::string listing;
  Host("ls -A " + outside, &listing);
  EXPECT_EQ(listing, "") << "nothing written outside";
  EXPECT_NE(Sh(sb.id, "ls /data/link/through 2>&1").exit_code, 0);
  // A well-formed upload works.
  ASSERT_EQ(Host("mkdir -p " + work_ + "/ok/d && echo fine > " + work_ + "/ok/d/f && tar -C " + work_ +
                 "/ok -cJf " + work_ + "/ok.tar.xz d"),
            0);
  std::ifstream in(work_ + "/ok.tar.xz", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(prep_->LoadDatasetBytes(sb.id, bytes, "/data/up").ok());
  EXPECT_EQ(Sh(sb.id, "cat /data/up/d/f").stdout_data, "fine\n");
}

// One session item, one session (for the orchestrator-level check below).
class OneItemSource final : public WorkSource {
 public:
  Result<std::optional<WorkItem>> Poll(int, int64_t) override { return std::optional<WorkItem>(); }
  Status Ack(const WorkItem&) override { return Status::Ok(); }
  Status Stop(const WorkItem& item, bool) override {
    stopped.push_back(item.id);
    return Status::Ok();
  }
  Result<Json> GetSession(const std::string&, const std::string& id) override {
    return Json{{"id", id}, {"status", "running"}, {"archived_at", nullptr}, {"metadata", Json::object()}};
  }
  std::vector<std::string> Environments() override { return {"env_pkgs"}; }
  void Interrupt() override {}
  std::vector<std::string> stopped;
};

// True if a TCP connection to host:port opens within 5 s (the host's own
// resolver: /etc/hosts, then DNS).
bool Reachable(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || res == nullptr) return false;
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{5, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  bool ok = s && connect(s.get(), res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  return ok;
}

// Local package registries, served by the test on its own "internet": a
// network namespace joined to the host by a veth, the server at a
// TEST-NET-1 address (192.0.2.0/24: routable, outside the egress proxy's
// blocked ranges, used by no other test's routes), named `pypi.test`,
// `gems.test`, `goproxy.test` and `crates.test` only in the egress proxy's
// hosts override (as `sandbox.egress_hosts` does in `warren serve`); one
// static HTTP server answers all four names. What it serves, each one
// package built here:
//  - /simple/, /files/: a PEP 503 index with warren-test-hello 1.0, a wheel
//    built by a stdlib script from a tiny source tree (no setuptools/wheel
//    on the host);
//  - /gem/: a RubyGems source with warren-hello 1.0.0 (executable
//    `warren-hello-gem`), made by `gem build` and `gem generate_index`
//    (host: ruby);
//  - /go/: a GOPROXY tree (`<module>/@v/list`, `.info`, `.mod`, `.zip`
//    with the `<module>@<version>/` prefix) with warren.test/warren-hello-go
//    v1.0.0, a main package, written by a stdlib script;
//  - /cargo/index.git: a git index (config.json whose `dl` is
//    /cargo/crates/{crate}/{crate}-{version}.crate, and the crate's line
//    with its sha256) served by the dumb protocol (host: git), and the
//    .crate (a tar.gz of Cargo.toml and src/main.rs) of warren-hello 1.0.0.
// Every request path is appended to DIR/requests. Down() removes the
// server, the veth and the namespace.
class LocalRegistries {
 public:
  static constexpr const char* kName = "pypi.test";
  static constexpr const char* kGemName = "gems.test";
  static constexpr const char* kGoName = "goproxy.test";
  static constexpr const char* kCargoName = "crates.test";
  LocalRegistries() {
    std::mt19937 rng(std::random_device{}());
    char hex[8];
    snprintf(hex, sizeof(hex), "%06x", static_cast<unsigned>(rng() & 0xffffff));
    ns_ = std::string("wpy") + hex;
    int k = static_cast<int>(rng() % 60) + 1;
    host_ip_ = "192.0.2." + std::to_string(4 * k + 1);
    ip_ = "192.0.2." + std::to_string(4 * k + 2);
  }
  ~LocalRegistries() { Down(); }
  const std::string& ip() const { return ip_; }
  const std::string& ns() const { return ns_; }
  std::string requests() const {
    std::string out;
    Host("cat " + dir_ + "/requests 2>/dev/null", &out);
    return out;
  }

  // Builds the wheel and the index under `dir`, then brings the namespace
  // and the server up; returns "" or what failed.
  std::string Up(const std::string& dir) {
    dir_ = dir;
    std::ofstream(dir + "/build_index.py") << R"PY(
import base64, hashlib, os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
name, project, ver = "warren_test_hello", "warren-test-hello", "1.0"
dist = f"{name}-{ver}.dist-info"
files = {}
for root, _, names in os.walk(os.path.join(src, name)):
    for f in sorted(names):
        p = os.path.join(root, f)
        files[os.path.relpath(p, src)] = open(p, "rb").read()
files[dist + "/METADATA"] = f"Metadata-Version: 2.1\nName: {project}\nVersion: {ver}\n".encode()
files[dist + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: warren-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
record = ""
for k, v in files.items():
    h = base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b"=").decode()
    record += f"{k},sha256={h},{len(v)}\n"
files[dist + "/RECORD"] = (record + dist + "/RECORD,,\n").encode()
whl = f"{name}-{ver}-py3-none-any.whl"
os.makedirs(os.path.join(out, "files"))
os.makedirs(os.path.join(out, "simple", project))
with zipfile.ZipFile(os.path.join(out, "files", whl), "w", zipfile.ZIP_DEFLATED) as z:
    for k, v in files.items():
        z.writestr(k, v)
digest = hashlib.sha256(open(os.path.join(out, "files", whl), "rb").read()).hexdigest()
with open(os.path.join(out, "simple", "index.html"), "w") as f:
    f.write(f'<!DOCTYPE html><html><body><a href="{project}/">{project}</a></body></html>\n')
with open(os.path.join(out, "simple", project, "index.html"), "w") as f:
    f.write(f'<!DOCTYPE html><html><body><a href="../../files/{whl}#sha256={digest}">{whl}</a></body></html>\n')
)PY";
    std::ofstream(dir + "/serve_index.py") << R"PY(
import functools, http.server, os, sys
root, ip = sys.argv[1], sys.argv[2]
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        with open(os.path.join(os.path.dirname(root), "requests"), "a") as f:
            f.write(self.path + "\n")
        super().do_GET()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((ip, 80), functools.partial(H, directory=root))
print("ready", flush=True)
srv.serve_forever()
)PY";
    if (Host("mkdir -p " + dir + "/src/warren_test_hello && printf '%s\\n' "
             "'def greet():' '    return \"hello from the local index\"' > " + dir + "/src/warren_test_hello/__init__.py && "
             "python3 " + dir + "/build_index.py " + dir + "/src " + dir + "/www") != 0) {
      return "building the wheel and the index failed";
    }
    std::ofstream(dir + "/build_registries.py") << R"PY(
import hashlib, io, json, os, sys, tarfile, zipfile
out, crates_url = sys.argv[1], sys.argv[2]
# Go: the module proxy protocol's files for one version.
mod, ver = "warren.test/warren-hello-go", "v1.0.0"
d = os.path.join(out, "go", mod, "@v")
os.makedirs(d)
gomod = f"module {mod}\n\ngo 1.19\n"
main = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from the local go proxy") }\n'
open(os.path.join(d, "list"), "w").write(ver + "\n")
open(os.path.join(d, ver + ".info"), "w").write(json.dumps({"Version": ver, "Time": "2024-01-02T03:04:05Z"}))
open(os.path.join(d, ver + ".mod"), "w").write(gomod)
with zipfile.ZipFile(os.path.join(d, ver + ".zip"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr(f"{mod}@{ver}/go.mod", gomod)
    z.writestr(f"{mod}@{ver}/main.go", main)
# cargo: the .crate, and the git index's tree (config.json, the crate's line).
name, cver = "warren-hello", "1.0.0"
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for path, data in ((f"{name}-{cver}/Cargo.toml", f'[package]\nname = "{name}"\nversion = "{cver}"\nedition = "2018"\n'),
                       (f"{name}-{cver}/src/main.rs", 'fn main() {\n    println!("hello from the local cargo index");\n}\n')):
        b = data.encode()
        ti = tarfile.TarInfo(path); ti.size = len(b); ti.mtime = 1700000000; ti.mode = 0o644
        t.addfile(ti, io.BytesIO(b))
crate = buf.getvalue()
os.makedirs(os.path.join(out, "cargo", "crates", name))
open(os.path.join(out, "cargo", "crates", name, f"{name}-{cver}.crate"), "wb").write(crate)
idx = os.path.join(os.path.dirname(out), "cargo-index")
os.makedirs(os.path.join(idx, name[0:2], name[2:4]))
open(os.path.join(idx, "config.json"), "w").write(json.dumps({"dl": crates_url + "/{crate}/{crate}-{version}.crate"}))
line = {"name": name, "vers": cver, "deps": [], "cksum": hashlib.sha256(crate).hexdigest(), "features": {}, "yanked": False}
open(os.path.join(idx, name[0:2], name[2:4], name), "w").write(json.dumps(line) + "\n")
)PY";
    std::ofstream(dir + "/warren-hello.gemspec") << R"RB(
Gem::Specification.new do |s|
  s.name = "warren-hello"
  s.version = "1.0.0"
  s.summary = "Warren's test gem"
  s.authors = ["Warren"]
  s.license = "MIT"
  s.files = ["bin/warren-hello-gem", "lib/warren_hello.rb"]
  s.executables = ["warren-hello-gem"]
end
)RB";
    const std::string git = "git -c user.name=t -c user.email=t@e -c init.defaultBranch=master ";
    if (Host("cd " + dir + " && python3 build_registries.py " + dir + "/www http://" + kCargoName + "/cargo/crates && " +
             git + "-C cargo-index init -q && " + git + "-C cargo-index add . && " + git +
             "-C cargo-index commit -q -m index && git clone -q --bare cargo-index www/cargo/index.git && "
             "git -C www/cargo/index.git update-server-info") != 0) {
      return "building the go proxy tree or the cargo index failed";
    }
    if (Host("cd " + dir + " && mkdir -p bin lib www/gem/gems && printf '%s\\n' '#!/usr/bin/env ruby' "
             "'require \"warren_hello\"' 'puts WarrenHello.greet' > bin/warren-hello-gem && chmod 755 bin/warren-hello-gem && "
             "printf '%s\\n' 'module WarrenHello' '  def self.greet = \"hello from the local gem source\"' 'end' > "
             "lib/warren_hello.rb && gem build -q warren-hello.gemspec >/dev/null 2>&1 && "
             "mv warren-hello-1.0.0.gem www/gem/gems/ && gem generate_index -q --directory www/gem >/dev/null") != 0) {
      return "building the gem source failed (gem build, gem generate_index)";
    }
    const std::string h = ns_ + "h", pe = ns_ + "p", x = "ip netns exec " + ns_ + " ";
    up_ = true;
    for (const std::string& c : {"ip netns add " + ns_, "ip link add " + h + " type veth peer name " + pe,
                                 "ip link set " + pe + " netns " + ns_, "ip addr add " + host_ip_ + "/30 dev " + h,
                                 "ip link set " + h + " up", x + "ip addr add " + ip_ + "/30 dev " + pe,
                                 x + "ip link set lo up", x + "ip link set " + pe + " up",
                                 x + "ip route add default via " + host_ip_}) {
      if (Host(c) != 0) return "setup failed: " + c;
    }
    // Ready when the server says it listens (it prints after bind).
    int p[2];
    if (pipe(p) != 0) return "pipe";
    // nsenter --net, not `ip netns exec`: that one makes a mount namespace
    // copying every mount of the host (other tests' sandbox pools), which
    // would keep their loop devices attached while this server lives.
    const std::string net = "--net=/run/netns/" + ns_, script = dir + "/serve_index.py", www = dir + "/www";
    server_pid_ = fork();
    if (server_pid_ == 0) {
      dup2(p[1], 1);
      close(p[0]);
      execlp("nsenter", "nsenter", net.c_str(), "python3", script.c_str(), www.c_str(), ip_.c_str(), nullptr);
      _exit(127);
    }
    close(p[1]);
    std::string line;
    char c;
    while (read(p[0], &c, 1) == 1 && c != '\n') line += c;
    close(p[0]);
    return line == "ready" ? "" : "the index server did not start";
  }
  void Down() {
    if (server_pid_ > 0) {
      kill(server_pid_, SIGKILL);
      waitpid(server_pid_, nullptr, 0);
      server_pid_ = -1;
    }
    if (!up_) return;
    Host("ip link del " + ns_ + "h 2>/dev/null");
    Host("ip netns del " + ns_ + " 2>/dev/null");
    up_ = false;
  }

 private:
  std::string ns_, host_ip_, ip_, dir_;
  pid_t server_pid_ = -1;
  bool up_ = false;
};

// Package snapshots over a real runtime whose builds have a network (the
// runtime's egress proxy runs here, as in `warren serve`), with a local pip
// index and gem, go and cargo registries (LocalRegistries) that the proxy
// resolves through its hosts override.
class PackagesIntegrationTest : public RuntimeTest {
 protected:
  void SetUp() override {
    egress_proxy_ = true;
    for (const char* name : {LocalRegistries::kName, LocalRegistries::kGemName, LocalRegistries::kGoName,
                             LocalRegistries::kCargoName}) {
      egress_.hosts_override[name] = index_.ip();
    }
    RuntimeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (access("/usr/sbin/debootstrap", X_OK) != 0) GTEST_SKIP() << "debootstrap is not installed";
    if (Status s = rt_->BuildNetworkStatus(); !s.ok()) GTEST_SKIP() << s.ToString();
    if (Host("command -v ip >/dev/null && command -v python3 >/dev/null && command -v git >/dev/null && "
             "command -v gem >/dev/null") != 0) {
      GTEST_SKIP() << "ip, python3, git or gem (ruby) missing (the local registries; scripts/install.sh)";
    }
    index_dir_ = data_dir_ + "-index";
    ASSERT_EQ(Host("mkdir -p " + index_dir_), 0);
    std::string why = index_.Up(index_dir_);
    ASSERT_EQ(why, "");
  }
  void TearDown() override {
    index_.Down();
    RuntimeTest::TearDown();
    if (!index_dir_.empty()) Host("rm -rf " + index_dir_);
    EXPECT_FALSE(std::filesystem::exists("/run/netns/" + index_.ns())) << "test netns left";
    EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + index_.ns() + "h")) << "test veth left";
  }
  // No veth, nft rule or build record of a build is left.
  void ExpectNoBuildNetworkLeft() {
    EXPECT_TRUE(LinksWithPrefix(NetIfPrefix(prefix_)).empty()) << "veth left after a build";
    EXPECT_FALSE(NftTableExists(FirewallTableName(prefix_))) << "nft rules left after a build";
    EXPECT_TRUE(std::filesystem::is_empty(data_dir_ + "/builds")) << "build record or network files left";
  }
  LocalRegistries index_;
  std::string index_dir_;
};

// A backend that says builds have no network (a host without the proxy).
class OfflineBackend final : public SnapshotBackend {
 public:
  explicit OfflineBackend(SnapshotBackend* real) : real_(real) {}
  Result<SnapshotRecord> GetSnapshot(const std::string& name) override { return real_->GetSnapshot(name); }
  Result<SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe, const BuildOptions& net,
                                       const BuildLog& log) override {
    return real_->BuildSnapshot(name, recipe, net, log);
  }
  bool BuildsHaveNetwork() const override { return false; }
  std::string BuildNetworkReason() const override { return "no egress proxy"; }

 private:
  SnapshotBackend* real_;
};

// config.packages {"apt":["jq"],"pip":["warren-test-hello==1.0"]}, then
// {"gem":[...],"go":[...],"cargo":[...]} and {"npm":["semver@7.6.3"]}: all
// from the one `debian:bookworm` base (one debootstrap for the whole test,
// as for a data dir). The first set's apt-get (jq and python3-pip) reaches
// the base's mirror and its pip step the configured local index
// (PackageRecipeOptions::pip_index_url), and nothing else: not PyPI. The
// second set's steps reach the configured local gem source, go proxy and
// cargo index (and sum.golang.org, kept for go), not rubygems.org,
// proxy.golang.org or crates.io. npm's steps reach registry.npmjs.org only (through
// the host's resolver and, on a host behind a TLS-inspecting proxy, its CA
// bundle). Each snapshot is built once and then cached, its tools run in a
// sandbox made from it, and no build leaves its network behind. Skips with
// the reason when debootstrap, the mirror or the npm registry is missing.
TEST_F(PackagesIntegrationTest, AptPipAndNpmSnapshotsShareOneBase) {
  RuntimeSnapshotBackend backend(rt_.get());
  const std::string index_url = std::string("http://") + LocalRegistries::kName + "/simple/";
  PackageSnapshots snaps(&backend, {.pip_index_url = index_url});
  auto set = ParsePackages(Json::parse(R"({"type":"packages","apt":["jq"],"pip":["warren-test-hello==1.0"]})"));
  ASSERT_TRUE(set.ok());
  std::vector<std::string> log;
  std::mutex mu;
  auto snap = snaps.Ensure(*set, [&](std::string_view l) {
    std::lock_guard<std::mutex> g(mu);
    log.emplace_back(l);
  });
  if (!snap.ok() && snap.status().code() == Code::kUnavailable) GTEST_SKIP() << snap.status().ToString();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString() << "\n" << ::testing::PrintToString(log);
  EXPECT_EQ(snap->name, PackagesRecipe(*set, {.build_network = true, .pip_index_url = index_url})->snapshot_name);
  EXPECT_GT(log.size(), 10u) << "the build log is streamed";
  // The allowlist follows the setting: the local index and the mirror, not
  // pypi.org or files.pythonhosted.org.
  bool index_and_mirror = false;
  for (const auto& l : log) {
    index_and_mirror |= l.rfind("  network: limited to pypi.test, ", 0) == 0 && std::count(l.begin(), l.end(), ',') == 1;
  }
  EXPECT_TRUE(index_and_mirror) << ::testing::PrintToString(log);
  ExpectNoBuildNetworkLeft();
  // pip fetched the project's page and its wheel from the local index.
  std::string served = index_.requests();
  EXPECT_NE(served.find("/simple/warren-test-hello/\n"), std::string::npos) << served;
  EXPECT_NE(served.find("/files/warren_test_hello-1.0-py3-none-any.whl\n"), std::string::npos) << served;
  CreateOptions o;
  o.snapshot = snap->name;
  auto sb = MustCreate(o);
  auto jq = Sh(sb.id, "echo '{\"a\":[1,2]}' | jq -c .a");
  EXPECT_EQ(jq.stdout_data, "[1,2]\n") << jq.stderr_data;
  auto hello = Sh(sb.id, "python3 -c 'import warren_test_hello; print(warren_test_hello.greet())'");
  EXPECT_EQ(hello.stdout_data, "hello from the local index\n") << hello.stderr_data;
  std::vector<std::string> again;
  auto cached = snaps.Ensure(
      *ParsePackages(Json::parse(R"({"pip":["warren-test-hello==1.0"],"apt":["jq","jq"]})")),
      [&](std::string_view l) { again.emplace_back(l); });
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(cached->hash, snap->hash);
  EXPECT_EQ(again, std::vector<std::string>{"packages snapshot " + snap->name + " cached"});
  EXPECT_EQ(snaps.builds_started(), 1);
  EXPECT_EQ(index_.requests(), served) << "a cache hit asks the index nothing";

  // The orchestrator: a cloud environment with these packages gives its
  // session a sandbox from the snapshot (cached now), where the agent's
  // bash finds jq. Where builds have no network, a pip set is refused
  // clearly and its item stopped with no sandbox made.
  OneItemSource source;
  RuntimeSandboxHost host(rt_.get());
  OfflineBackend offline_backend(&backend);
  PackageSnapshots offline(&offline_backend);
  OrchestratorOptions oo;
  oo.instance = "pkgs-test";
  oo.max_item_attempts = 1;
  oo.environment_snapshot = [&](const std::string& env_id) {
    Json env = {{"id", env_id},
                {"config", {{"type", "cloud"}, {"packages", {{"apt", {"jq"}}, {"pip", {"warren-test-hello==1.0"}}}}}}};
    if (env_id == "env_pip") {
      env["config"]["packages"] = {{"pip", {"requests"}}};
      return SnapshotForEnvironment(env, &offline);
    }
    return SnapshotForEnvironment(env, &snaps);
  };
  Orchestrator orch(&source, &host, Clock::Real(), oo);
  WorkItem item;
  item.id = "work_pkgs";
  item.environment_id = "env_pkgs";
  item.type = "session";
  item.session_id = "sesn_pkgs";
  orch.HandleItem(item);  // no runner binary here: the launch records its exit and returns
  auto mine = rt_->Get("sesn_pkgs");
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  EXPECT_EQ(mine->snapshot, snap->name);
  auto v = Sh(mine->id, "jq --version");
  EXPECT_EQ(v.exit_code, 0) << v.stderr_data;
  EXPECT_EQ(v.stdout_data.rfind("jq-", 0), 0u) << v.stdout_data;
  EXPECT_EQ(snaps.builds_started(), 1);
  item.id = "work_pip";
  item.environment_id = "env_pip";
  item.session_id = "sesn_pip";
  orch.HandleItem(item);
  EXPECT_EQ(source.stopped, std::vector<std::string>{"work_pip"});
  EXPECT_EQ(rt_->Get("sesn_pip").status().code(), Code::kNotFound);
  orch.Stop();

  // gem, go and cargo from the test's own registries (LocalRegistries), in
  // one snapshot on the same base: ruby, golang-go, cargo and git come from
  // the mirror in one apt-get step, then `gem install --clear-sources
  // --source http://gems.test/gem/`, `go install` with
  // GOPROXY=http://goproxy.test/go (GONOSUMDB for the module: the public
  // checksum database cannot know it) and `cargo install` with crates.io
  // replaced by the git index on crates.test. The build reaches those three
  // hosts, sum.golang.org and the mirror, nothing else (not rubygems.org,
  // proxy.golang.org or crates.io), and each installed program runs.
  PackageSnapshots regs(&backend, {.gem_source = std::string("http://") + LocalRegistries::kGemName + "/gem/",
                                   .go_proxy = std::string("http://") + LocalRegistries::kGoName + "/go",
                                   .go_nosumdb = "warren.test",
                                   .cargo_index = std::string("http://") + LocalRegistries::kCargoName +
                                                  "/cargo/index.git"});
  auto three = ParsePackages(Json::parse(R"({"gem":["warren-hello:1.0.0"],"go":["warren.test/warren-hello-go@v1.0.0"],
                                             "cargo":["warren-hello@1.0.0"]})"));
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  std::vector<std::string> regs_log;
  const auto regs_start = std::chrono::steady_clock::now();  // printed below, never asserted
  auto regs_snap = regs.Ensure(*three, [&](std::string_view l) { regs_log.emplace_back(l); });
  if (!regs_snap.ok()) {  // the managers' own errors are at the end of the log
    std::string tail;
    for (size_t i = regs_log.size() > 40 ? regs_log.size() - 40 : 0; i < regs_log.size(); ++i) tail += regs_log[i] + "\n";
    FAIL() << regs_snap.status().ToString() << "\nlast lines of the build log:\n" << tail;
  }
  const auto regs_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - regs_start).count();
  std::printf("gem + go + cargo snapshot built in %lld s\n", static_cast<long long>(regs_seconds));
  bool three_hosts_and_mirror = false, regs_base_cached = false;
  for (const auto& l : regs_log) {
    three_hosts_and_mirror |= l.rfind("  network: limited to crates.test, gems.test, goproxy.test, sum.golang.org, ", 0) == 0 &&
                              std::count(l.begin(), l.end(), ',') == 4;
    regs_base_cached |= l.rfind("debian:bookworm base cached", 0) == 0;
  }
  EXPECT_TRUE(three_hosts_and_mirror) << ::testing::PrintToString(regs_log);
  EXPECT_TRUE(regs_base_cached) << "one debootstrap for every set";
  ExpectNoBuildNetworkLeft();
  // Each manager fetched its package from the local registry.
  const std::string regs_served = index_.requests();
  for (const char* path : {"/gem/specs.4.8.gz\n", "/gem/gems/warren-hello-1.0.0.gem\n",
                           "/go/warren.test/warren-hello-go/@v/v1.0.0.zip\n", "/cargo/index.git/info/refs",
                           "/cargo/crates/warren-hello/warren-hello-1.0.0.crate\n"}) {
    EXPECT_NE(regs_served.find(path), std::string::npos) << path << " not requested:\n" << regs_served;
  }
  o.snapshot = regs_snap->name;
  auto rsb = MustCreate(o);
  auto gem_out = Sh(rsb.id, "warren-hello-gem");
  EXPECT_EQ(gem_out.stdout_data, "hello from the local gem source\n") << gem_out.stderr_data;
  auto go_out = Sh(rsb.id, "warren-hello-go");
  EXPECT_EQ(go_out.stdout_data, "hello from the local go proxy\n") << go_out.stderr_data;
  auto cargo_out = Sh(rsb.id, "warren-hello");
  EXPECT_EQ(cargo_out.stdout_data, "hello from the local cargo index\n") << cargo_out.stderr_data;
  EXPECT_EQ(Sh(rsb.id, "test -e /tmp/go || test -e /tmp/cargo; echo $?").stdout_data, "1\n")
      << "neither go's nor cargo's caches are in the snapshot";
  EXPECT_EQ(regs_served.find("/sumdb/"), std::string::npos) << "GONOSUMDB: the checksum database is not asked";

  // The checksum database stays on with a configured proxy: without
  // GONOSUMDB for the module, go asks the proxy whether it serves
  // sum.golang.org (/sumdb/sum.golang.org/supported: 404 here), then the
  // database itself, which cannot know a private module (or, in CI, cannot
  // be reached): the go step fails, a permanent failure. The apt-get, gem
  // and cargo layers are shared with the build above: seconds.
  PackageSnapshots checked(&backend, {.gem_source = std::string("http://") + LocalRegistries::kGemName + "/gem/",
                                      .go_proxy = std::string("http://") + LocalRegistries::kGoName + "/go",
                                      .cargo_index = std::string("http://") + LocalRegistries::kCargoName +
                                                     "/cargo/index.git"});
  Json gosum = {{"id", "env_gosum"}, {"config", {{"type", "cloud"}, {"packages", Json::parse(R"({
      "gem":["warren-hello:1.0.0"],"go":["warren.test/warren-hello-go@v1.0.0"],"cargo":["warren-hello@1.0.0"]})")}}}};
  auto unverified = SnapshotForEnvironment(gosum, &checked);
  ASSERT_EQ(unverified.status().code(), Code::kFailedPrecondition) << unverified.status().ToString();
  EXPECT_NE(unverified.status().message().find("go install 'warren.test/warren-hello-go@v1.0.0'"), std::string::npos)
      << unverified.status().message();
  EXPECT_NE(index_.requests().find("/go/sumdb/sum.golang.org/supported\n"), std::string::npos) << index_.requests();
  ExpectNoBuildNetworkLeft();

  // npm, from the same base (cached: no second debootstrap).
  if (!Reachable("registry.npmjs.org", 443)) GTEST_SKIP() << "registry.npmjs.org:443 is not reachable from this host";
  auto npm = ParsePackages(Json::parse(R"({"npm":["semver@7.6.3"]})"));
  ASSERT_TRUE(npm.ok());
  std::vector<std::string> npm_log;
  auto npm_snap = snaps.Ensure(*npm, [&](std::string_view l) { npm_log.emplace_back(l); });
  ASSERT_TRUE(npm_snap.ok()) << npm_snap.status().ToString() << "\n" << ::testing::PrintToString(npm_log);
  // The build reaches npm's registry and the base's mirror (apt-get), nothing else.
  bool registry_and_mirror = false;
  for (const auto& l : npm_log) {
    registry_and_mirror |= l.rfind("  network: limited to registry.npmjs.org, ", 0) == 0 &&
                           std::count(l.begin(), l.end(), ',') == 1;
  }
  EXPECT_TRUE(registry_and_mirror) << ::testing::PrintToString(npm_log);
  bool base_cached = false;
  for (const auto& l : npm_log) base_cached |= l.rfind("debian:bookworm base cached", 0) == 0;
  EXPECT_TRUE(base_cached) << "one debootstrap for both sets";
  ExpectNoBuildNetworkLeft();
  o.snapshot = npm_snap->name;
  auto nsb = MustCreate(o);
  auto semver = Sh(nsb.id, "semver -r '^1.2.0' 1.1.0 1.2.3 2.0.0");
  EXPECT_EQ(semver.stdout_data, "1.2.3\n") << semver.stderr_data;
  // npm itself is there too, the pinned one (for the agent's own installs).
  EXPECT_EQ(Sh(nsb.id, "npm --version").stdout_data, "10.9.9\n");
  EXPECT_EQ(Sh(nsb.id, "test -e /.warren-build-ca.pem || test -d /tmp/npm-cache; echo $?").stdout_data, "1\n")
      << "neither the build's CA file nor npm's cache is in the snapshot";

  // A package the registry does not have: a permanent failure that says
  // why, in npm's words (the toolchain layer is cached: seconds).
  Json env = {{"id", "env_npm404"},
              {"config", {{"type", "cloud"}, {"packages", {{"npm", {"warren-no-such-package-7c1e2f"}}}}}}};
  auto missing = SnapshotForEnvironment(env, &snaps);
  ASSERT_EQ(missing.status().code(), Code::kFailedPrecondition) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("the environment's packages could not be installed"), std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("404"), std::string::npos) << missing.status().message();
  ExpectNoBuildNetworkLeft();

  // A configured npm pin whose sha512 is not the tarball's: the bootstrap
  // step refuses the download (the check bites), a permanent failure that
  // says so. The toolchain layer is shared: seconds.
  PackageSnapshots wrong_pin(
      &backend, {.npm_version = kDefaultNpmVersion,
                 .npm_integrity = "sha512-" + std::string(86, 'A') + "=="});
  Json pinned = {{"id", "env_npmpin"}, {"config", {{"type", "cloud"}, {"packages", {{"npm", {"semver@7.6.3"}}}}}}};
  auto refused = SnapshotForEnvironment(pinned, &wrong_pin);
  ASSERT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("npm 10.9.9 tarball: integrity mismatch sha512-"), std::string::npos)
      << refused.status().message();
  ExpectNoBuildNetworkLeft();
}

}  // namespace
}  // namespace warren::orchestrator
