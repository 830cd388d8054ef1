// Packages: a cloud environment's `config.packages` (spec 1.2: apt, cargo,
// gem, go, npm, pip; arrays of strings) turned into a snapshot of the
// sandbox runtime, built once and cached by content.
//
//  - ParsePackages() reads the config object and validates every entry
//    against a strict per-manager grammar (docs/ORCHESTRATOR.md, section
//    "Preparation, packages and webhooks"): names and versions made of
//    letters, digits and a few punctuation marks, never a leading '-' (no
//    option injection) and never a shell metacharacter, space or quote. The
//    recipe single-quotes every argument as well (belt and braces).
//  - Normalise: each list trimmed, deduplicated and sorted, so the order in
//    the config never matters. PackagesRecipe() then yields a recipe (the
//    runtime's Dockerfile subset, sandbox/recipe.h) on `FROM debian:<suite>`
//    whose snapshot name is `pkgs-<first 32 hex of sha256>` of the
//    normalised set (plus the base suite, the mirror and the recipe format
//    version): the same set always names the same snapshot.
//  - Where the backend gives RUN steps a network (BuildsHaveNetwork: the
//    runtime's `limited` network through its egress proxy), every set
//    starts from the plain `debian:<suite>` base (one debootstrap per data
//    dir, shared by every set), apt packages and the managers' toolchains
//    (ToolchainPackages) are installed by `apt-get` in a RUN step, npm is
//    bootstrapped from its registry (pinned version and sha512, both
//    configurable), and each manager is a RUN step. The build may reach the
//    base's mirror and the registries of the managers used
//    (PackageRegistryHosts: pip's, gem's, go's and cargo's are
//    configurable), nothing else. Without
//    it, an apt-only set is
//    installed by debootstrap itself (`include=`, no network inside the
//    build) and any other manager is refused with FailedPrecondition.
//  - PackageSnapshots::Ensure() returns the snapshot, building it if it is
//    missing; concurrent callers for the same set share one build, and
//    every caller's log receives the build log (lines so far, then live).
//
// Ownership: PackageSnapshots borrows its SnapshotBackend (must outlive
// it). Thread-safety: the free functions are reentrant; PackageSnapshots is
// thread-safe; RuntimeSnapshotBackend is as thread-safe as the runtime.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "sandbox/runtime.h"

namespace warren::orchestrator {

struct PackageSet {
  std::vector<std::string> apt, cargo, gem, go, npm, pip;
  bool empty() const {
    return apt.empty() && cargo.empty() && gem.empty() && go.empty() && npm.empty() && pip.empty();
  }
  // True if installing this set needs network inside the build (anything
  // but apt).
  bool needs_build_network() const {
    return !cargo.empty() || !gem.empty() || !go.empty() || !npm.empty() || !pip.empty();
  }
  bool operator==(const PackageSet&) const = default;
};

// `packages` is the environment's config.packages object (or null/absent
// fields). Validates and normalises. Errors: InvalidArgument naming the
// field, e.g. "config.packages.pip[2]: ...".
Result<PackageSet> ParsePackages(const Json& packages);

// Trims, deduplicates and sorts each list; validates each entry.
Result<PackageSet> NormalisePackages(PackageSet set);

// One entry's validity for a manager ("apt", "pip", ...): OK or
// InvalidArgument with the reason.
Status ValidatePackage(std::string_view manager, std::string_view entry);

// `'text'`, with embedded quotes as '\''. For /bin/sh -c.
std::string ShellQuote(std::string_view text);

// npm itself, as bootstrapped when no version is configured: a release
// that runs on bookworm's node 18, and its registry dist.integrity.
inline constexpr const char* kDefaultNpmVersion = "10.9.9";
inline constexpr const char* kDefaultNpmIntegrity =
    "sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==";

struct PackageRecipeOptions {
  std::string suite = "bookworm";  // FROM debian:<suite>
  std::string mirror;              // "" = the runtime's default mirror
  // RUN steps have a network (see the header comment): apt-get over the
  // plain base. false: apt by debootstrap's include= (apt-only sets).
  bool build_network = false;
  // pip's index, a PEP 503 simple API (`http[s]://host[:port]/path`, as
  // PIP_INDEX_URL; no credentials, query or IPv6 literal). "" = PyPI
  // (pypi.org, files.pythonhosted.org). When set, a pip build reaches this
  // URL's host and nothing else for pip (the files must be served from that
  // host), and an http:// index is passed as pip's --trusted-host (plain
  // http cannot be verified; writing it in the config is the opt-in).
  std::string pip_index_url;
  // gem's source (`gem install --clear-sources --source URL`, the same URL
  // form): a RubyGems server or a static `gem generate_index` tree. "" =
  // rubygems.org. When set, the gem step reaches this URL's host only (its
  // specs, quick/ and gems/ are fetched under the URL).
  std::string gem_source;
  // Go's module proxy (GOPROXY, one URL of the same form: no `direct`, no
  // list, so go never fetches from a VCS host). "" = proxy.golang.org. When
  // set, the go step reaches this URL's host and sum.golang.org (the
  // checksum database stays on: go reads it through the proxy when the
  // proxy serves /sumdb/sum.golang.org/, else directly).
  std::string go_proxy;
  // GONOSUMDB: comma-separated module path prefixes (globs) that are not
  // checked against the checksum database (private modules the public
  // database cannot know). Only with go_proxy.
  std::string go_nosumdb;
  // cargo's index: a git repository served over http(s) (the registry's
  // config.json inside names its `dl` URL), replacing crates.io for the
  // cargo step (source replacement, fetched by the git CLI:
  // net.git-fetch-with-cli, so a static dumb-protocol server works; the
  // snapshot then gets git). "" = crates.io. When set, the cargo step
  // reaches this URL's host only (the .crate files must be served from it).
  std::string cargo_index;
  // npm itself: the version bootstrapped from registry.npmjs.org and the
  // sha512 it must match (the registry's `dist.integrity`,
  // "sha512-<base64>"). Both or neither; "" = kDefaultNpmVersion/Integrity.
  std::string npm_version, npm_integrity;
};

// OK, or InvalidArgument whose message starts with the field's name
// (pip_index_url, gem_source, go_proxy, go_nosumdb, cargo_index,
// npm_version, npm_integrity: `warren serve` prefixes the key's
// "orchestrator.packages_") and says what is wrong. PackagesRecipe checks
// this too.
Status CheckPackageRecipeOptions(const PackageRecipeOptions& opts);

struct PackageRecipe {
  std::string hash;           // sha256 hex of the normalised set + options
  std::string snapshot_name;  // "pkgs-" + hash[0:32]
  std::string recipe;         // the recipe text
  // What the RUN steps may reach (build_network recipes): the managers'
  // registries, and whether the base's Debian mirror (apt-get) too.
  std::vector<std::string> hosts;
  bool needs_mirror = false;
};

// The registry hosts the managers used by `set` need to install packages
// (apt excluded: its mirror is the base's). With the default registries a
// subset of PackageManagerHosts() (networking.h); a configured registry
// replaces the manager's public hosts by its own (go keeps sum.golang.org).
// Sorted, unique.
std::vector<std::string> PackageRegistryHosts(const PackageSet& set, const PackageRecipeOptions& opts = {});

// The Debian packages a manager's RUN step needs in the image: pip ->
// python3-pip, npm -> nodejs (npm itself is then fetched from its
// registry, pinned by version and sha512: PackageRecipeOptions), gem -> ruby, cargo -> cargo
// (and git with a configured cargo_index), go -> golang-go and git; plus ca-certificates for any
// of them.
std::vector<std::string> ToolchainPackages(const PackageSet& set, const PackageRecipeOptions& opts = {});

// A pure function of the (normalised) set and the options.
Result<PackageRecipe> PackagesRecipe(const PackageSet& set, const PackageRecipeOptions& opts = {});

// What PackageSnapshots needs from the runtime (a port: tests use a fake).
class SnapshotBackend {
 public:
  virtual ~SnapshotBackend() = default;
  virtual Result<sandbox::SnapshotRecord> GetSnapshot(const std::string& name) = 0;
  // `net`: what the RUN steps may reach (empty = no network).
  virtual Result<sandbox::SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe,
                                                        const sandbox::BuildOptions& net,
                                                        const sandbox::BuildLog& log) = 0;
  // Whether RUN steps can reach the network during a build; if not, why.
  virtual bool BuildsHaveNetwork() const = 0;
  virtual std::string BuildNetworkReason() const { return ""; }
};

// The host's CA bundle, handed to networked builds (BuildOptions::ca_bundle)
// so that they trust what the host trusts (a TLS-inspecting egress proxy's
// CA included); "" when the host has none.
std::string HostCaBundle();

// The SandboxRuntime as a SnapshotBackend. Borrows the runtime. Networked
// builds get `ca_bundle` (default: HostCaBundle()).
class RuntimeSnapshotBackend final : public SnapshotBackend {
 public:
  explicit RuntimeSnapshotBackend(sandbox::SandboxRuntime* rt, std::string ca_bundle = HostCaBundle())
      : rt_(rt), ca_bundle_(std::move(ca_bundle)) {}
  Result<sandbox::SnapshotRecord> GetSnapshot(const std::string& name) override { return rt_->GetSnapshot(name); }
  Result<sandbox::SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe,
                                                const sandbox::BuildOptions& net,
                                                const sandbox::BuildLog& log) override {
    sandbox::BuildOptions o = net;
    if (o.networked()) o.ca_bundle = ca_bundle_;
    return rt_->BuildSnapshot(name, recipe, "", o, log);
  }
  bool BuildsHaveNetwork() const override { return rt_->BuildNetworkStatus().ok(); }
  std::string BuildNetworkReason() const override { return rt_->BuildNetworkStatus().message(); }

 private:
  sandbox::SandboxRuntime* rt_;
  std::string ca_bundle_;
};

class PackageSnapshots final {
 public:
  explicit PackageSnapshots(SnapshotBackend* backend, PackageRecipeOptions opts = {})
      : backend_(backend), opts_(std::move(opts)) {}
  PackageSnapshots(const PackageSnapshots&) = delete;
  PackageSnapshots& operator=(const PackageSnapshots&) = delete;

  // The snapshot for `set` (built if missing). `log` may be called from
  // another caller's thread (when joining its build) and must be
  // thread-safe; it is never called after Ensure returns. A failed build is
  // not cached: the next call tries again.
  Result<sandbox::SnapshotRecord> Ensure(const PackageSet& set, const sandbox::BuildLog& log = nullptr);

  // Builds actually started (tests: concurrent callers share one).
  int builds_started() const;

 private:
  struct Flight {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
    sandbox::SnapshotRecord record;
    std::vector<std::string> lines;
    std::map<int, sandbox::BuildLog> listeners;
    int next_listener = 0;
  };

  SnapshotBackend* backend_;
  PackageRecipeOptions opts_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Flight>> flights_;  // by snapshot name
  int builds_started_ = 0;
};

// The snapshot for an environment object (spec 1.2): "" when its
// config.packages is absent or empty, else PackageSnapshots::Ensure's name.
// A set that is invalid or cannot be built here (non-apt managers where
// builds have no network) is FailedPrecondition naming the environment (the orchestrator stops the
// item); other failures keep their code (retried).
Result<std::string> SnapshotForEnvironment(const Json& environment, PackageSnapshots* snapshots,
                                           const sandbox::BuildLog& log = nullptr);

}  // namespace warren::orchestrator
