// Preparer: per-session preparation of a sandbox (issue 10 item 6), behind
// `warren sandbox prepare` and `POST /v1/warren/prepare`.
//
// Prepare() creates a sandbox labelled `warren.mode=prepared` and
// `warren.environment_id=<env>` (plus the caller's labels) and then, in
// this order: clones git repositories, loads datasets, places short-lived
// credentials. Any failure deletes the half-prepared sandbox. A session
// takes the sandbox over when its metadata names it
// (`session.metadata["warren.sandbox_id"]`); the orchestrator checks it with
// CheckPrepared().
//
// Where git runs: always on the host, as the service's user, into a fresh
// private directory (mode 0700 under <state_dir>/tmp, which no sandbox can
// reach), never into a sandbox-writable tree; the result is copied into the
// sandbox with the runtime's RootFs::CopyIn (openat2 RESOLVE_IN_ROOT on the
// sandbox side), then the private copy is removed. This works with any image
// (no git needed inside, busybox is fine) and with network "none"
// sandboxes, and the token never enters the sandbox at all. The token
// travels only in the environment of that one git process, as
// GIT_CONFIG_COUNT/KEY/VALUE setting `http.<origin>/.extraHeader` to an
// `Authorization: Basic` header scoped to the repository's origin (with
// `http.followRedirects=false`, so it is never sent to another host). The
// clone's `.git/config` keeps the bare URL. After the clone every file of the
// private copy is scanned for the token and the prepare fails if it is found
// (defence in depth). URLs: https://, or http:// (a token only to a loopback
// host), or a local path / file:// when `allow_host_paths` (the CLI; the REST
// route refuses host paths like it refuses `FROM dir:`). User info in the URL
// is refused (the token has its own field).
//
// Datasets: a host directory (CopyIn; host paths only when
// `allow_host_paths`) or a tarball (tar, tar.gz, tar.xz, tar.bz2, tar.zst)
// extracted by the runtime's ExtractTreeArchive into a private directory
// (no absolute paths or "..", never through a symlink, devices skipped), then
// copied in.
//
// Credentials: a `file` credential is written to
// /run/warren/credentials/<name> (mode 0400, directory 0700, owned by the
// sandbox's root); an `env` credential is kept on the host only, in
// <state_dir>/<sandbox id>.json (mode 0600), and handed to the runner by
// RunnerEnv(). Each has an expiry; the earliest pending one is also recorded
// in the label `warren.credentials_expire_at` (RFC 3339). Sweep() (the
// orchestrator's janitor calls it) deletes expired files from the sandbox
// (in any state with a rootfs; archived sandboxes are retried after they are
// restored), drops expired env entries, rewrites the label, and reports the
// sandboxes whose env credentials expired so that their runners are
// relaunched without them. RunnerEnv() never returns an expired entry, even
// before a sweep.
//
// Ownership: borrows the runtime (must outlive it) and the clock.
// Thread-safety: thread-safe; state files are updated under one mutex
// (one Preparer per state dir and process).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/status.h"
#include "sandbox/runtime.h"

namespace warren::orchestrator {

namespace labels {
inline constexpr std::string_view kMode = "warren.mode";
inline constexpr std::string_view kModePrepared = "prepared";
inline constexpr std::string_view kEnvironment = "warren.environment_id";
inline constexpr std::string_view kCredentialsExpireAt = "warren.credentials_expire_at";
}  // namespace labels

struct RepoSource {
  std::string url;    // https://..., http://..., /abs/path or file:///abs/path
  std::string token;  // optional bearer of read access (https, or http to loopback)
  std::string username = "x-access-token";  // Basic auth user sent with the token
  std::string branch;  // optional branch or tag
  std::string commit;  // optional commit to check out (detached)
  std::string path = "/workspace";  // absolute destination inside the sandbox
};

struct DatasetSource {
  std::string host_dir;  // exactly one of host_dir / tarball (host paths)
  std::string tarball;
  std::string path;  // absolute destination inside the sandbox
};

struct CredentialSpec {
  enum class Kind { kFile, kEnv };
  std::string name;  // file: [A-Za-z0-9._-]{1,64}; env: [A-Za-z_][A-Za-z0-9_]{0,63}
  std::string value;
  Kind kind = Kind::kFile;
  int64_t ttl_seconds = 3600;  // 1 .. 30 days
};

struct PrepareRequest {
  std::string environment_id;  // required
  sandbox::CreateOptions sandbox;  // snapshot, name, resources, network, volumes, ... (labels merged)
  std::vector<RepoSource> repos;
  std::vector<DatasetSource> datasets;
  std::vector<CredentialSpec> credentials;
  bool allow_host_paths = false;  // local repos and dataset directories/tarballs on the host
};

struct PreparedRepo {
  std::string url;  // as given (no token)
  std::string path;
  std::string head;  // commit checked out
};

struct PreparedCredential {
  std::string name;
  std::string kind;  // "file" | "env"
  std::string path;  // file: path inside the sandbox
  int64_t expires_at = 0;  // micros since epoch
};

struct PrepareResult {
  sandbox::SandboxRecord sandbox;
  std::vector<PreparedRepo> repos;
  std::vector<std::string> datasets;  // destination paths
  std::vector<PreparedCredential> credentials;
  Json ToJson() const;  // {"repositories","datasets","credentials"} (never values)
};

struct SweepReport {
  std::vector<std::string> files_removed;   // "<sandbox id>:<path>"
  std::vector<std::string> env_expired;     // sandbox ids: relaunch their runners
  std::vector<std::string> retry_later;     // sandbox ids (archived, or a transient error)
  std::vector<std::string> forgotten;       // state of deleted sandboxes removed
  Json ToJson() const;
};

struct PreparerOptions {
  std::string state_dir;  // "" = <runtime data dir>/prepared
  std::string git = "git";
  std::string credentials_dir = "/run/warren/credentials";
  Clock* clock = nullptr;  // nullptr = Clock::Real()
};

class Preparer final {
 public:
  Preparer(sandbox::SandboxRuntime* rt, PreparerOptions opts = {});
  Preparer(const Preparer&) = delete;
  Preparer& operator=(const Preparer&) = delete;

  Result<PrepareResult> Prepare(const PrepareRequest& req);

  // Steps on an existing sandbox (also used by Prepare). LoadDataset is the
  // REST tarball upload's second half.
  Result<PreparedRepo> CloneRepo(const std::string& sandbox_id, const RepoSource& repo, bool allow_host_paths);
  Status LoadDataset(const std::string& sandbox_id, const DatasetSource& ds, bool allow_host_paths);
  // A tarball given as bytes (an HTTP upload): written to a private temp
  // file, then loaded like DatasetSource::tarball.
  Status LoadDatasetBytes(const std::string& sandbox_id, std::string_view tarball, const std::string& path);
  Result<std::vector<PreparedCredential>> PlaceCredentials(const std::string& sandbox_id,
                                                           const std::vector<CredentialSpec>& creds);

  // For the orchestrator: OK if `rec` is a prepared sandbox of
  // `environment_id` (labels), else FailedPrecondition / PermissionDenied.
  static Status CheckPrepared(const sandbox::SandboxRecord& rec, const std::string& environment_id);

  // "NAME=value" for each live env credential of the sandbox (none: empty).
  Result<std::vector<std::string>> RunnerEnv(const std::string& sandbox_id);

  // Removes expired credentials (see above). Call periodically.
  Result<SweepReport> Sweep();

  // Drops the host-side state of a sandbox (call when it is deleted; Sweep
  // also does it for sandboxes that are gone).
  Status Forget(const std::string& sandbox_id);

  const std::string& state_dir() const { return state_dir_; }

 private:
  struct Entry {
    std::string name, kind, path, value;  // value: env only
    int64_t expires_at = 0;
  };
  Result<std::vector<Entry>> LoadLocked(const std::string& id);
  Status SaveLocked(const std::string& id, const std::vector<Entry>& entries);
  Status UpdateLabelLocked(const std::string& id, const std::vector<Entry>& entries);
  Result<std::string> PrivateTempDir(const std::string& what);

  sandbox::SandboxRuntime* rt_;
  PreparerOptions opts_;
  Clock* clock_;
  std::string state_dir_;
  std::mutex mu_;
};

}  // namespace warren::orchestrator
