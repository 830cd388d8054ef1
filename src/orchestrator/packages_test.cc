#include "orchestrator/packages.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "sandbox/recipe.h"

namespace warren::orchestrator {
namespace {

PackageSet Must(const Json& j) {
  auto r = ParsePackages(j);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : PackageSet{};
}

TEST(PackagesTest, NormalisedSetIsOrderInsensitiveAndDeduped) {
  PackageSet a = Must(Json::parse(R"({"type":"packages","apt":["jq","curl"," jq"],"pip":["requests==2.31.0"]})"));
  PackageSet b = Must(Json::parse(R"({"pip":["requests==2.31.0","requests==2.31.0"],"apt":["curl","jq"],"npm":[]})"));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.apt, (std::vector<std::string>{"curl", "jq"}));
  auto ra = PackagesRecipe(a), rb = PackagesRecipe(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(ra->hash, rb->hash);
  EXPECT_EQ(ra->snapshot_name, "pkgs-" + ra->hash.substr(0, 32));
  EXPECT_EQ(ra->recipe, rb->recipe);
  // Anything else changes the name: another package, another manager for
  // the same string, another suite or mirror.
  PackageSet c = a;
  c.apt.push_back("git");
  PackageSet d;
  d.apt = {"curl"};
  d.pip = {"jq", "requests==2.31.0"};
  for (const auto& other : {*PackagesRecipe(c), *PackagesRecipe(d), *PackagesRecipe(a, {.suite = "trixie"}),
                            *PackagesRecipe(a, {.suite = "bookworm", .mirror = "http://127.0.0.1:3142/debian"})}) {
    EXPECT_NE(other.hash, ra->hash);
  }
  EXPECT_TRUE(Must(Json()).empty());
  EXPECT_TRUE(Must(Json::parse(R"({"type":"packages","apt":[],"cargo":null})")).empty());
}

TEST(PackagesTest, RecipeGolden) {
  PackageSet s = Must(Json::parse(R"({"apt":["ripgrep","jq"],"pip":["pandas[excel]>=2.0,<3","requests"],
      "npm":["@anthropic-ai/sdk@1.10.0","left-pad"],"gem":["rake:13.0.6"],"cargo":["bat@0.24.0"],
      "go":["golang.org/x/tools/cmd/goimports","github.com/x/y@v1.2.3"]})"));
  auto r = PackagesRecipe(s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->recipe,
            "# Warren packages snapshot " + r->hash + " (generated; docs/ORCHESTRATOR.md)\n"
            "FROM debian:bookworm include=ca-certificates,cargo,git,golang-go,jq,npm,python3-pip,ripgrep,ruby\n"
            "RUN python3 -m pip install --no-cache-dir --no-input --break-system-packages 'pandas[excel]>=2.0,<3' "
            "'requests'\n"
            "RUN npm install -g --no-fund --no-audit --no-update-notifier '@anthropic-ai/sdk@1.10.0' 'left-pad'\n"
            "RUN gem install --no-document 'rake:13.0.6'\n"
            "RUN cargo install --root /usr/local 'bat@0.24.0'\n"
            "RUN export GOBIN=/usr/local/bin GOPATH=/tmp/go GOCACHE=/tmp/go-cache && go install "
            "'github.com/x/y@v1.2.3' && go install 'golang.org/x/tools/cmd/goimports@latest' && rm -rf /tmp/go "
            "/tmp/go-cache\n");
  EXPECT_TRUE(s.needs_build_network());
  // apt only: debootstrap installs it all, no RUN, no network.
  PackageSet apt = Must(Json::parse(R"({"apt":["jq"]})"));
  EXPECT_FALSE(apt.needs_build_network());
  EXPECT_EQ(PackagesRecipe(apt)->recipe.substr(PackagesRecipe(apt)->recipe.find('\n') + 1),
            "FROM debian:bookworm include=jq\n");
  EXPECT_EQ(PackagesRecipe(PackageSet{})->recipe.substr(PackagesRecipe(PackageSet{})->recipe.find('\n') + 1),
            "FROM debian:bookworm\n");
  auto parsed = sandbox::ParseRecipe(r->recipe);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->steps.size(), 6u);
}

TEST(PackagesTest, InjectionAndBadNamesRefused) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"apt", "jq; rm -rf /"}, {"apt", "jq curl"}, {"apt", "$(id)"}, {"apt", "-oAPT::x=y"}, {"apt", "jq=1.6-2"},
      {"apt", "JQ"}, {"apt", "j"}, {"apt", "jq\nRUN id"}, {"apt", "a'b"}, {"apt", ""},
      {"pip", "requests; id"}, {"pip", "-e git+https://x/y"}, {"pip", "--index-url=http://evil"},
      {"pip", "requests==2 || id"}, {"pip", "requests`id`"}, {"pip", "a b"}, {"pip", "req==$(id)"},
      {"pip", "git+https://github.com/x/y"}, {"pip", "./local"}, {"pip", "requests=="}, {"pip", "requests>=1,"},
      {"pip", "x[a"}, {"pip", "x'"}, {"npm", "left-pad@1.0 || id"}, {"npm", "git+ssh://x"},
      {"npm", "../evil"}, {"npm", "@scope"}, {"npm", "left-pad@file:/etc"}, {"npm", "a@>=1 <2"},
      {"npm", "--registry=http://evil"}, {"gem", "rake;id"}, {"gem", "rake:1.0&"}, {"cargo", "bat@1;id"},
      {"cargo", "--git=https://x"}, {"go", "cmd/go"}, {"go", "example.com/../x"}, {"go", "example.com/x@v1;id"},
      {"go", "/abs/path"}, {"go", "example.com//x"}, {"pip", std::string(215, 'a')}};
  for (const auto& [mgr, entry] : bad) {
    Json j = {{mgr, {entry}}};
    auto r = ParsePackages(j);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << mgr << ": " << entry;
    EXPECT_NE(r.status().message().find("config.packages." + mgr + "[0]"), std::string::npos)
        << r.status().message();
  }
  const std::vector<std::pair<std::string, std::string>> good = {
      {"apt", "g++"}, {"apt", "libssl3"}, {"apt", "python3.11"}, {"pip", "numpy"}, {"pip", "Django~=4.2"},
      {"pip", "a.b-c_d[x,y]==1.0.post1"}, {"pip", "torch!=2.0.0,>=1.13"}, {"npm", "typescript@^5.4"},
      {"npm", "@types/node@~20.1.0"}, {"npm", "lodash@latest"}, {"gem", "rails"}, {"gem", "nokogiri:1.16.2"},
      {"cargo", "ripgrep"}, {"cargo", "cargo-edit@0.12.2"}, {"go", "golang.org/x/tools/gopls@v0.15.0"}};
  for (const auto& [mgr, entry] : good) EXPECT_TRUE(ValidatePackage(mgr, entry).ok()) << mgr << ": " << entry;
  EXPECT_FALSE(ParsePackages(Json::parse(R"({"brew":["x"]})")).ok());
  EXPECT_FALSE(ParsePackages(Json::parse(R"({"apt":"jq"})")).ok());
  EXPECT_FALSE(ParsePackages(Json::parse(R"({"apt":[1]})")).ok());
  EXPECT_FALSE(ParsePackages(Json::parse(R"({"type":"other"})")).ok());
  EXPECT_FALSE(ParsePackages(Json::parse(R"([])")).ok());
  EXPECT_EQ(ShellQuote("a'b"), "'a'\\''b'");
}

// A backend whose builds wait for the test to release them.
class FakeBackend final : public SnapshotBackend {
 public:
  Result<sandbox::SnapshotRecord> GetSnapshot(const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = snaps_.find(name);
    if (it == snaps_.end()) return Status::NotFound("no snapshot " + name);
    return it->second;
  }
  Result<sandbox::SnapshotRecord> BuildSnapshot(const std::string& name, const std::string& recipe,
                                                const sandbox::BuildLog& log) override {
    builds++;
    log("[1/1] FROM " + name);
    std::unique_lock<std::mutex> l(mu_);
    started = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return release; });
    l.unlock();
    log("done " + name);
    if (fail_next.exchange(false)) return Status::Unavailable("mirror unreachable");
    sandbox::SnapshotRecord rec;
    rec.name = name;
    rec.recipe = recipe;
    rec.hash = "h-" + name;
    std::lock_guard<std::mutex> g(mu_);
    snaps_[name] = rec;
    return rec;
  }
  bool BuildsHaveNetwork() const override { return network; }
  void WaitStarted() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return started; });
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    release = true;
    cv_.notify_all();
  }

  std::atomic<int> builds{0};
  std::atomic<bool> fail_next{false};
  bool network = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool started = false, release = false;
  std::map<std::string, sandbox::SnapshotRecord> snaps_;
};

struct Lines {
  std::mutex mu;
  std::vector<std::string> v;
  sandbox::BuildLog Sink() {
    return [this](std::string_view l) {
      std::lock_guard<std::mutex> g(mu);
      v.emplace_back(l);
    };
  }
};

TEST(PackageSnapshotsTest, ConcurrentCallersShareOneBuildAndItsLog) {
  FakeBackend be;
  PackageSnapshots ps(&be);
  PackageSet set;
  set.apt = {"jq"};
  constexpr int kCallers = 6;
  std::vector<Lines> logs(kCallers);
  std::vector<Result<sandbox::SnapshotRecord>> results(kCallers, Status::Internal("unset"));
  std::vector<std::thread> ts;
  ts.emplace_back([&] { results[0] = ps.Ensure(set, logs[0].Sink()); });
  be.WaitStarted();  // the first caller's build is running: the others join it
  PackageSet shuffled;
  shuffled.apt = {"jq", "jq"};
  for (int i = 1; i < kCallers; ++i) ts.emplace_back([&, i] { results[i] = ps.Ensure(shuffled, logs[i].Sink()); });
  while (true) {  // wait until every joiner has registered (they replay the first line)
    int joined = 0;
    for (int i = 1; i < kCallers; ++i) {
      std::lock_guard<std::mutex> g(logs[i].mu);
      joined += logs[i].v.empty() ? 0 : 1;
    }
    if (joined == kCallers - 1) break;
    std::this_thread::yield();
  }
  be.Release();
  for (auto& t : ts) t.join();
  EXPECT_EQ(be.builds.load(), 1);
  EXPECT_EQ(ps.builds_started(), 1);
  std::string name = PackagesRecipe(set)->snapshot_name;
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status().ToString();
    EXPECT_EQ(results[i]->name, name);
    EXPECT_EQ(logs[i].v, (std::vector<std::string>{"[1/1] FROM " + name, "done " + name})) << i;
  }
  // Later: cached, no build.
  Lines later;
  ASSERT_TRUE(ps.Ensure(set, later.Sink()).ok());
  EXPECT_EQ(be.builds.load(), 1);
  EXPECT_EQ(later.v, (std::vector<std::string>{"packages snapshot " + name + " cached"}));
}

TEST(PackageSnapshotsTest, FailedBuildIsNotCachedAndNetworkIsChecked) {
  FakeBackend be;
  be.Release();
  be.fail_next = true;
  PackageSnapshots ps(&be);
  PackageSet set;
  set.apt = {"jq"};
  auto first = ps.Ensure(set);
  EXPECT_EQ(first.status().code(), Code::kUnavailable);
  EXPECT_TRUE(ps.Ensure(set).ok());
  EXPECT_EQ(be.builds.load(), 2);
  PackageSet pip;
  pip.pip = {"requests"};
  auto refused = ps.Ensure(pip);
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(be.builds.load(), 2) << "refused before any build";
  be.network = true;
  EXPECT_TRUE(ps.Ensure(pip).ok());
  PackageSet bad;
  bad.npm = {"x; id"};
  EXPECT_EQ(ps.Ensure(bad).status().code(), Code::kInvalidArgument);
}

TEST(PackageSnapshotsTest, EnvironmentBuildFailureIsPermanentAndSaysWhy) {
  FakeBackend be;
  be.Release();
  be.fail_next = true;
  PackageSnapshots ps(&be);
  Json env = {{"id", "env_pk"}, {"config", {{"type", "cloud"}, {"packages", {{"type", "packages"}, {"apt", {"jq"}}}}}}};
  Lines seen;
  auto failed = SnapshotForEnvironment(env, &ps, seen.Sink());
  // Permanent (the orchestrator reports it to the session and stops the
  // item), in plain words, with the build's last log lines.
  ASSERT_EQ(failed.status().code(), Code::kFailedPrecondition);
  const std::string& m = failed.status().message();
  EXPECT_NE(m.find("the environment's packages could not be installed (environment env_pk"), std::string::npos) << m;
  EXPECT_NE(m.find("mirror unreachable"), std::string::npos) << m;
  EXPECT_NE(m.find("last lines of the build log:\n  [1/1] FROM pkgs-"), std::string::npos) << m;
  EXPECT_GE(seen.v.size(), 2u) << "the caller's log still gets every line";
  // Not cached: the next turn builds again, and succeeds.
  auto again = SnapshotForEnvironment(env, &ps);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(be.builds.load(), 2);
}

}  // namespace
}  // namespace warren::orchestrator
