#include "orchestrator/packages.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "orchestrator/networking.h"
#include "sandbox/recipe.h"

namespace warren::orchestrator {
namespace {

PackageSet Must(const Json& j) {
  auto r = ParsePackages(j);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : PackageSet{};
}

// The script of the npm bootstrap step (node fetches npm's tarball from
// the registry and checks it against the pinned sha512), as generated.
std::string NpmFetch(
    const std::string& v = "10.9.9",
    const std::string& integrity =
        "sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==") {
  return "const https=require(\"https\"),fs=require(\"fs\"),crypto=require(\"crypto\");"
         "const fail=m=>{console.error(\"npm " + v + " tarball: \"+m);process.exit(1)};"
         "https.get(\"https://registry.npmjs.org/npm/-/npm-" + v + ".tgz\",r=>{"
         "if(r.statusCode!==200)fail(\"HTTP \"+r.statusCode);const c=[];r.on(\"data\",d=>c.push(d));"
         "r.on(\"end\",()=>{const b=Buffer.concat(c);"
         "const h=\"sha512-\"+crypto.createHash(\"sha512\").update(b).digest(\"base64\");"
         "if(h!==\"" + integrity + "\")"
         "fail(\"integrity mismatch \"+h);fs.writeFileSync(\"/tmp/npm.tgz\",b)})}).on(\"error\",e=>fail(e.message))";
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
            "FROM debian:bookworm include=ca-certificates,cargo,git,golang-go,jq,nodejs,python3-pip,ripgrep,ruby\n"
            "RUN python3 -m pip install --no-cache-dir --no-input --break-system-packages 'pandas[excel]>=2.0,<3' "
            "'requests'\n"
            "RUN node -e '" + NpmFetch() + "' && tar -xzf /tmp/npm.tgz -C /tmp && node "
            "/tmp/package/bin/npm-cli.js install -g --no-fund --no-audit --no-update-notifier --cache /tmp/npm-cache "
            "'npm@10.9.9' && rm -rf /tmp/package /tmp/npm.tgz /tmp/npm-cache\n"
            "RUN npm install -g --no-fund --no-audit --no-update-notifier --cache /tmp/npm-cache "
            "'@anthropic-ai/sdk@1.10.0' 'left-pad' && rm -rf /tmp/npm-cache\n"
            "RUN gem install --no-document 'rake:13.0.6'\n"
            "RUN export CARGO_HOME=/tmp/cargo && cargo install --root /usr/local 'bat@0.24.0' && rm -rf /tmp/cargo\n"
            "RUN export GOBIN=/usr/local/bin GOPATH=/tmp/go GOCACHE=/tmp/go-cache GOPROXY=https://proxy.golang.org "
            "&& go install 'github.com/x/y@v1.2.3' && go install 'golang.org/x/tools/cmd/goimports@latest' && "
            "rm -rf /tmp/go /tmp/go-cache\n");
  // cargo 0.66 reads crates.io's git index on github.com.
  EXPECT_EQ(r->hosts, (std::vector<std::string>{"crates.io", "files.pythonhosted.org", "github.com", "index.crates.io",
                                                "index.rubygems.org", "proxy.golang.org", "pypi.org",
                                                "registry.npmjs.org", "rubygems.org", "static.crates.io",
                                                "sum.golang.org"}));
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
  EXPECT_EQ(parsed->steps.size(), 7u);
}

// Builds with a network: the plain base (shared by every set), apt-get for
// the apt set and the toolchains, then each manager; only the registries of
// the managers used are reachable, plus the base's mirror for apt-get.
TEST(PackagesTest, NetworkedRecipeGolden) {
  PackageRecipeOptions net{.build_network = true};
  PackageSet npm = Must(Json::parse(R"({"npm":["is-number@7.0.0"],"apt":["jq"]})"));
  auto r = PackagesRecipe(npm, net);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->recipe,
            "# Warren packages snapshot " + r->hash + " (generated; docs/ORCHESTRATOR.md)\n"
            "FROM debian:bookworm\n"
            "RUN export DEBIAN_FRONTEND=noninteractive && apt-get update -q && apt-get install -q -y "
            "--no-install-recommends -o Dpkg::Options::=--force-unsafe-io 'ca-certificates' 'jq' 'nodejs' && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
            "RUN node -e '" + NpmFetch() + "' && tar -xzf /tmp/npm.tgz -C /tmp && node "
            "/tmp/package/bin/npm-cli.js install -g --no-fund --no-audit --no-update-notifier --cache /tmp/npm-cache "
            "'npm@10.9.9' && rm -rf /tmp/package /tmp/npm.tgz /tmp/npm-cache\n"
            "RUN npm install -g --no-fund --no-audit --no-update-notifier --cache /tmp/npm-cache 'is-number@7.0.0' "
            "&& rm -rf /tmp/npm-cache\n");
  EXPECT_EQ(r->hosts, std::vector<std::string>{"registry.npmjs.org"});
  EXPECT_TRUE(r->needs_mirror);
  // Another layout, another name than the include= recipe of the same set.
  EXPECT_NE(r->snapshot_name, PackagesRecipe(npm)->snapshot_name);
  // pip: python3-pip from the mirror, PyPI's two hosts and nothing else.
  auto pip = PackagesRecipe(Must(Json::parse(R"({"pip":["requests==2.31.0"]})")), net);
  ASSERT_TRUE(pip.ok());
  EXPECT_NE(pip->recipe.find("--force-unsafe-io 'ca-certificates' 'python3-pip' &&"), std::string::npos)
      << pip->recipe;
  EXPECT_NE(pip->recipe.find("\nRUN python3 -m pip install --no-cache-dir --no-input --break-system-packages "
                             "'requests==2.31.0'\n"),
            std::string::npos)
      << pip->recipe;
  EXPECT_EQ(pip->hosts, (std::vector<std::string>{"files.pythonhosted.org", "pypi.org"}));
  // apt only: one apt-get step, the mirror only.
  auto apt = PackagesRecipe(Must(Json::parse(R"({"apt":["jq"]})")), net);
  EXPECT_TRUE(apt->hosts.empty());
  EXPECT_TRUE(apt->needs_mirror);
  EXPECT_EQ(sandbox::ParseRecipe(apt->recipe)->steps.size(), 2u);
  // Nothing: the plain base, no network at all.
  auto none = PackagesRecipe(PackageSet{}, net);
  EXPECT_FALSE(none->needs_mirror);
  EXPECT_EQ(none->recipe.substr(none->recipe.find('\n') + 1), "FROM debian:bookworm\n");
  for (const auto& rr : {*r, *pip, *apt}) {
    auto parsed = sandbox::ParseRecipe(rr.recipe);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  }
  // Every registry a build may reach is one that `allow_package_managers`
  // gives a limited sandbox too (one list of what package managers need).
  PackageSet all = Must(Json::parse(R"({"pip":["a"],"npm":["b"],"gem":["c"],"cargo":["d"],"go":["e.org/f"]})"));
  for (const auto& h : PackageRegistryHosts(all)) {
    EXPECT_NE(std::find(PackageManagerHosts().begin(), PackageManagerHosts().end(), h), PackageManagerHosts().end())
        << h;
  }
  EXPECT_EQ(ToolchainPackages(all),
            (std::vector<std::string>{"ca-certificates", "cargo", "git", "golang-go", "nodejs", "python3-pip", "ruby"}));
}

// A configured pip index (a LAN mirror, devpi, a test's own registry):
// pip uses it, the build reaches its host instead of PyPI's two, an
// http:// index is pip's trusted host, and the snapshot gets another name.
// Sets without pip keep their names.
TEST(PackagesTest, ConfiguredPipIndex) {
  PackageRecipeOptions net{.build_network = true, .pip_index_url = "http://pypi.test:8080/simple/"};
  PackageSet pip = Must(Json::parse(R"({"pip":["warren-hello==1.0"]})"));
  auto r = PackagesRecipe(pip, net);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->recipe.find("\nRUN python3 -m pip install --no-cache-dir --no-input --break-system-packages "
                           "--index-url 'http://pypi.test:8080/simple/' --trusted-host 'pypi.test' "
                           "'warren-hello==1.0'\n"),
            std::string::npos)
      << r->recipe;
  EXPECT_EQ(r->hosts, std::vector<std::string>{"pypi.test"});
  EXPECT_EQ(PackageRegistryHosts(pip, net), std::vector<std::string>{"pypi.test"});
  EXPECT_NE(r->snapshot_name, PackagesRecipe(pip, {.build_network = true})->snapshot_name);
  // https: verified as usual (the host's CA bundle is the build's), no
  // trusted host; the host name is canonical (lower case).
  auto https = PackagesRecipe(pip, {.build_network = true, .pip_index_url = "https://PyPI.Example.com/root/pypi/+simple/"});
  ASSERT_TRUE(https.ok()) << https.status().ToString();
  EXPECT_NE(https->recipe.find("--index-url 'https://PyPI.Example.com/root/pypi/+simple/' 'warren-hello==1.0'"),
            std::string::npos)
      << https->recipe;
  EXPECT_EQ(https->recipe.find("--trusted-host"), std::string::npos);
  EXPECT_EQ(https->hosts, std::vector<std::string>{"pypi.example.com"});
  // Another index, another name.
  EXPECT_NE(https->snapshot_name, r->snapshot_name);
  // npm and apt sets: the same recipe and name as without the setting.
  PackageSet npm = Must(Json::parse(R"({"npm":["semver"],"apt":["jq"]})"));
  EXPECT_EQ(PackagesRecipe(npm, net)->snapshot_name, PackagesRecipe(npm, {.build_network = true})->snapshot_name);
  EXPECT_EQ(PackagesRecipe(npm, net)->recipe, PackagesRecipe(npm, {.build_network = true})->recipe);
  // Mixed: pip's index host plus npm's registry.
  PackageSet both = Must(Json::parse(R"({"npm":["semver"],"pip":["a"]})"));
  EXPECT_EQ(PackagesRecipe(both, net)->hosts, (std::vector<std::string>{"pypi.test", "registry.npmjs.org"}));
}

// npm itself: the pinned release is configurable (version and its sha512
// together); the step checks the tarball against the configured sha512,
// and the snapshot's name follows the pin. The default changes nothing.
TEST(PackagesTest, ConfiguredNpmPin) {
  const std::string integrity = "sha512-" + std::string(40, 'q') + "/+" + std::string(44, 'Z') + "==";
  ASSERT_EQ(integrity.size(), 95u);
  PackageRecipeOptions pin{.build_network = true, .npm_version = "10.8.3", .npm_integrity = integrity};
  PackageSet npm = Must(Json::parse(R"({"npm":["is-number@7.0.0"]})"));
  auto r = PackagesRecipe(npm, pin);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->recipe.find("RUN node -e '" + NpmFetch("10.8.3", integrity) + "' && tar -xzf /tmp/npm.tgz -C /tmp && "
                           "node /tmp/package/bin/npm-cli.js install -g --no-fund --no-audit --no-update-notifier "
                           "--cache /tmp/npm-cache 'npm@10.8.3' && rm -rf /tmp/package /tmp/npm.tgz /tmp/npm-cache\n"),
            std::string::npos)
      << r->recipe;
  EXPECT_EQ(r->recipe.find("10.9.9"), std::string::npos);
  auto def = PackagesRecipe(npm, {.build_network = true});
  EXPECT_NE(r->snapshot_name, def->snapshot_name);
  // The default pin written out is the default: the same name.
  auto spelled = PackagesRecipe(
      npm, {.build_network = true, .npm_version = kDefaultNpmVersion, .npm_integrity = kDefaultNpmIntegrity});
  EXPECT_EQ(spelled->snapshot_name, def->snapshot_name);
  EXPECT_EQ(spelled->recipe, def->recipe);
  // Sets without npm are not renamed by the pin.
  PackageSet pip = Must(Json::parse(R"({"pip":["a"]})"));
  EXPECT_EQ(PackagesRecipe(pip, pin)->snapshot_name, PackagesRecipe(pip, {.build_network = true})->snapshot_name);
}

// gem's source, go's proxy and cargo's index (a LAN mirror, a private
// registry, a test's own): each step uses its registry, the build reaches
// that host instead of the public ones (go keeps sum.golang.org), the
// snapshot gets another name, and sets without the manager keep theirs.
TEST(PackagesTest, ConfiguredGemGoAndCargoRegistries) {
  PackageRecipeOptions net{.build_network = true,
                           .gem_source = "http://gems.test/repo",
                           .go_proxy = "http://goproxy.test:8080/",
                           .go_nosumdb = "warren.test,*.corp.example",
                           .cargo_index = "https://git.example.com/crates/index.git"};
  PackageSet gem = Must(Json::parse(R"({"gem":["warren-hello:1.0.0"]})"));
  auto g = PackagesRecipe(gem, net);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  // A directory URL (RubyGems resolves specs.4.8.gz and gems/ under it),
  // rubygems.org cleared.
  EXPECT_NE(g->recipe.find("\nRUN gem install --no-document --clear-sources --source 'http://gems.test/repo/' "
                           "'warren-hello:1.0.0'\n"),
            std::string::npos)
      << g->recipe;
  EXPECT_EQ(g->hosts, std::vector<std::string>{"gems.test"});
  EXPECT_NE(g->snapshot_name, PackagesRecipe(gem, {.build_network = true})->snapshot_name);
  EXPECT_EQ(PackagesRecipe(gem, {.build_network = true, .gem_source = "http://gems.test/repo/"})->recipe.find(
                "--source 'http://gems.test/repo/' "),
            g->recipe.find("--source 'http://gems.test/repo/' "));

  PackageSet go = Must(Json::parse(R"({"go":["warren.test/hello@v1.0.0"]})"));
  auto o = PackagesRecipe(go, net);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_NE(o->recipe.find("\nRUN export GOBIN=/usr/local/bin GOPATH=/tmp/go GOCACHE=/tmp/go-cache "
                           "GOPROXY='http://goproxy.test:8080/' GONOSUMDB='warren.test,*.corp.example' && go install "
                           "'warren.test/hello@v1.0.0' && rm -rf /tmp/go /tmp/go-cache\n"),
            std::string::npos)
      << o->recipe;
  EXPECT_EQ(o->hosts, (std::vector<std::string>{"goproxy.test", "sum.golang.org"}));
  auto o_plain = PackagesRecipe(go, {.build_network = true, .go_proxy = "http://goproxy.test:8080/"});
  EXPECT_EQ(o_plain->recipe.find("GONOSUMDB"), std::string::npos) << "the checksum database stays on by default";
  EXPECT_NE(o_plain->snapshot_name, o->snapshot_name) << "GONOSUMDB is part of the name";
  EXPECT_NE(o_plain->snapshot_name, PackagesRecipe(go, {.build_network = true})->snapshot_name);

  PackageSet cargo = Must(Json::parse(R"({"cargo":["warren-hello@1.0.0"]})"));
  auto c = PackagesRecipe(cargo, net);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // git for net.git-fetch-with-cli.
  EXPECT_NE(c->recipe.find("--force-unsafe-io 'ca-certificates' 'cargo' 'git' &&"), std::string::npos) << c->recipe;
  EXPECT_NE(c->recipe.find("\nRUN export CARGO_HOME=/tmp/cargo && mkdir -p /tmp/cargo && printf '%s\\n' "
                           "'[source.crates-io]' 'replace-with = \"warren\"' '[source.warren]' "
                           "'registry = \"https://git.example.com/crates/index.git\"' '[net]' "
                           "'git-fetch-with-cli = true' > /tmp/cargo/config.toml && cargo install --root /usr/local "
                           "'warren-hello@1.0.0' && rm -rf /tmp/cargo\n"),
            std::string::npos)
      << c->recipe;
  EXPECT_EQ(c->hosts, std::vector<std::string>{"git.example.com"});
  EXPECT_NE(c->snapshot_name, PackagesRecipe(cargo, {.build_network = true})->snapshot_name);
  EXPECT_EQ(ToolchainPackages(cargo), std::vector<std::string>({"ca-certificates", "cargo"}));

  // All three: one apt-get step, their three hosts, a recipe the runtime parses.
  PackageSet all = Must(Json::parse(
      R"({"gem":["warren-hello:1.0.0"],"go":["warren.test/hello@v1.0.0"],"cargo":["warren-hello@1.0.0"]})"));
  auto a = PackagesRecipe(all, net);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->hosts, (std::vector<std::string>{"gems.test", "git.example.com", "goproxy.test", "sum.golang.org"}));
  EXPECT_NE(a->recipe.find("'ca-certificates' 'cargo' 'git' 'golang-go' 'ruby' &&"), std::string::npos) << a->recipe;
  auto parsed = sandbox::ParseRecipe(a->recipe);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->steps.size(), 5u);
  // Sets without these managers: the same recipe and name as without the settings.
  PackageSet npm = Must(Json::parse(R"({"npm":["semver"],"pip":["a"],"apt":["jq"]})"));
  EXPECT_EQ(PackagesRecipe(npm, net)->snapshot_name, PackagesRecipe(npm, {.build_network = true})->snapshot_name);
  EXPECT_EQ(PackagesRecipe(npm, net)->recipe, PackagesRecipe(npm, {.build_network = true})->recipe);
}

TEST(PackagesTest, BadRegistryOptionsRefused) {
  const std::string good_i =
      "sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==";
  for (const std::string url :
       {"pypi.test/simple", "ftp://pypi.test/simple", "http://user:pw@pypi.test/simple", "http://pypi.test/simple?x=1",
        "http://pypi.test/simple#f", "http://[::1]/simple", "http://*.test/simple", "http:///simple",
        "http://pypi.test:0/", "http://pypi.test:70000/", "http://pypi.test:/", "http://pypi.test:80x/",
        "http://pypi.test/simple'; id; '", "http://pypi.test/ simple", "file:///srv/simple", "http://-x.test/"}) {
    PackageRecipeOptions o{.pip_index_url = url};
    Status s = CheckPackageRecipeOptions(o);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << url;
    EXPECT_NE(s.message().find("pip_index_url"), std::string::npos) << s.message();
    EXPECT_EQ(PackagesRecipe(Must(Json::parse(R"({"pip":["a"]})")), o).status().code(), Code::kInvalidArgument) << url;
  }
  for (const std::string url : {"http://pypi.test/simple/", "https://10.0.0.5:3141/root/pypi/+simple/",
                                "http://pypi.test", "https://mirror.example.com/pypi/simple"}) {
    EXPECT_TRUE(CheckPackageRecipeOptions({.pip_index_url = url}).ok()) << url;
  }
  // A credential in the URL is refused without being echoed.
  Status cred = CheckPackageRecipeOptions({.pip_index_url = "https://alice:s3cret@pypi.lan/simple"});
  EXPECT_EQ(cred.code(), Code::kInvalidArgument);
  EXPECT_EQ(cred.message().find("s3cret"), std::string::npos) << cred.message();
  // gem's source, go's proxy and cargo's index: the same URL rules, the
  // field named in the error, the recipe refused too.
  const std::vector<std::string> bad_urls = {
      "gems.test/", "ftp://gems.test/", "http://u:s3cret@gems.test/", "http://gems.test/?x", "http://[::1]/",
      "http://gems.test/'; id; '", "http://gems.test/ x", "https://proxy.golang.org,direct", "off", "direct",
      "http://proxy.test|https://proxy.golang.org", "file:///srv/index", "http://gems.test:0/"};
  for (const std::string& url : bad_urls) {
    const std::vector<std::pair<std::string, PackageRecipeOptions>> cases = {
        {"gem_source", {.gem_source = url}}, {"go_proxy", {.go_proxy = url}}, {"cargo_index", {.cargo_index = url}}};
    for (const auto& [field, o] : cases) {
      Status s = CheckPackageRecipeOptions(o);
      EXPECT_EQ(s.code(), Code::kInvalidArgument) << field << " " << url;
      EXPECT_EQ(s.message().rfind(field, 0), 0u) << s.message();
      EXPECT_EQ(s.message().find("s3cret"), std::string::npos) << s.message();
      PackageSet all = Must(Json::parse(R"({"gem":["a"],"go":["e.org/f"],"cargo":["c"]})"));
      EXPECT_EQ(PackagesRecipe(all, o).status().code(), Code::kInvalidArgument) << field << " " << url;
    }
  }
  for (const std::string url : {"http://gems.test/", "https://10.0.0.5:8443/gems", "http://gems.test"}) {
    EXPECT_TRUE(CheckPackageRecipeOptions({.gem_source = url, .go_proxy = url, .cargo_index = url}).ok()) << url;
  }
  // GONOSUMDB: with a proxy only (proxy.golang.org serves public modules,
  // which the checksum database knows), and a list of module path globs.
  Status alone = CheckPackageRecipeOptions({.go_nosumdb = "warren.test"});
  EXPECT_EQ(alone.code(), Code::kInvalidArgument);
  EXPECT_EQ(alone.message().rfind("go_nosumdb needs go_proxy", 0), 0u) << alone.message();
  for (const std::string& p : std::vector<std::string>{"a.test,", ",a.test", "a.test,,b.test", "-x", "a.test b.test", "a.test;id", "../x",
                              "/abs", "a'b", std::string(600, 'a')}) {
    Status s = CheckPackageRecipeOptions({.go_proxy = "http://goproxy.test/", .go_nosumdb = p});
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << p;
    EXPECT_EQ(s.message().rfind("go_nosumdb", 0), 0u) << s.message();
  }
  for (const std::string p : {"warren.test", "*.corp.example,github.com/acme/*", "corp.example/x_y~z"}) {
    EXPECT_TRUE(CheckPackageRecipeOptions({.go_proxy = "http://goproxy.test/", .go_nosumdb = p}).ok()) << p;
  }
  const std::vector<std::pair<std::string, std::string>> bad_npm = {
      {"10.9.2", ""},                     // a version without its sha512
      {"", good_i},                       // a sha512 without its version
      {"^10.9.2", good_i},                // a range
      {"latest", good_i},                 // a tag
      {"10.9", good_i},                   // not exact
      {"10.9.2'", good_i},                // a quote
      {"10.9.2", "sha1-abc"},             // another algorithm
      {"10.9.2", "sha512-short=="},       // too short
      {"10.9.2", "sha512-" + std::string(86, 'A') + "'\""},  // not base64
  };
  for (const auto& [v, i] : bad_npm) {
    EXPECT_EQ(CheckPackageRecipeOptions({.npm_version = v, .npm_integrity = i}).code(), Code::kInvalidArgument)
        << v << " " << i;
  }
  EXPECT_TRUE(CheckPackageRecipeOptions({.npm_version = "11.0.0-pre.1", .npm_integrity = good_i}).ok());
  EXPECT_TRUE(CheckPackageRecipeOptions({}).ok());
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
                                                const sandbox::BuildOptions& net,
                                                const sandbox::BuildLog& log) override {
    builds++;
    {
      std::lock_guard<std::mutex> g(mu_);
      last_net = net;
      last_recipe = recipe;
    }
    log("[1/1] FROM " + name);
    std::unique_lock<std::mutex> l(mu_);
    started = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return release; });
    l.unlock();
    log("done " + name);
    if (fail_next.exchange(false)) {
      return fail_step ? Status::FailedPrecondition("RUN npm install exited with 1") : Status::Unavailable("mirror unreachable");
    }
    sandbox::SnapshotRecord rec;
    rec.name = name;
    rec.recipe = recipe;
    rec.hash = "h-" + name;
    std::lock_guard<std::mutex> g(mu_);
    snaps_[name] = rec;
    return rec;
  }
  bool BuildsHaveNetwork() const override { return network; }
  std::string BuildNetworkReason() const override { return network ? "" : "no egress proxy here"; }
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
  bool fail_step = false;  // fail as a RUN step does (FailedPrecondition), not as debootstrap
  bool network = false;
  sandbox::BuildOptions last_net;  // of the last build
  std::string last_recipe;

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
  EXPECT_NE(refused.status().message().find("need network during the snapshot build, which this host cannot give "
                                            "builds (no egress proxy here)"),
            std::string::npos)
      << refused.status().message();
  EXPECT_EQ(be.builds.load(), 2) << "refused before any build";
  // Without a network the apt set was built with debootstrap's include=
  // and no build network.
  EXPECT_FALSE(be.last_net.networked());
  EXPECT_NE(be.last_recipe.find("FROM debian:bookworm include=jq\n"), std::string::npos) << be.last_recipe;
  be.network = true;
  auto built = ps.Ensure(pip);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  // With one: the networked recipe, and the build may reach PyPI and the
  // base's mirror, nothing else.
  EXPECT_EQ(built->name, PackagesRecipe(pip, {.build_network = true})->snapshot_name);
  EXPECT_EQ(be.last_net.allow_hosts, (std::vector<std::string>{"files.pythonhosted.org", "pypi.org"}));
  EXPECT_TRUE(be.last_net.allow_base_mirror);
  EXPECT_EQ(be.last_recipe, PackagesRecipe(pip, {.build_network = true})->recipe);
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
  // A RUN step that failed (FailedPrecondition, like a refusal) is still a
  // build that ran: the same plain words and the log's last lines.
  be.network = true;
  be.fail_step = true;
  be.fail_next = true;
  Json npm = {{"id", "env_npm"}, {"config", {{"type", "cloud"}, {"packages", {{"npm", {"left-pad"}}}}}}};
  auto step = SnapshotForEnvironment(npm, &ps);
  ASSERT_EQ(step.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(step.status().message().find("the environment's packages could not be installed (environment env_npm"),
            std::string::npos)
      << step.status().message();
  EXPECT_NE(step.status().message().find("RUN npm install exited with 1); last lines of the build log:"),
            std::string::npos)
      << step.status().message();
}

// A configured pip index: Ensure hands the backend exactly its host and
// the mirror (the allowlist follows the setting), and the recipe uses it.
TEST(PackageSnapshotsTest, ConfiguredIndexIsTheOnlyPipHost) {
  FakeBackend be;
  be.Release();
  be.network = true;
  PackageSnapshots ps(&be, {.pip_index_url = "http://10.0.0.5:3141/simple"});
  PackageSet pip;
  pip.pip = {"warren-hello"};
  auto built = ps.Ensure(pip);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  EXPECT_EQ(be.last_net.allow_hosts, std::vector<std::string>{"10.0.0.5"});
  EXPECT_TRUE(be.last_net.allow_base_mirror);
  EXPECT_NE(be.last_recipe.find("--index-url 'http://10.0.0.5:3141/simple' --trusted-host '10.0.0.5' 'warren-hello'\n"),
            std::string::npos)
      << be.last_recipe;
}

// gem's, go's and cargo's configured registries: Ensure hands the backend
// their hosts (go's plus the checksum database) and the mirror, nothing of
// rubygems.org, proxy.golang.org or crates.io.
TEST(PackageSnapshotsTest, ConfiguredRegistriesAreTheirManagersOnlyHosts) {
  FakeBackend be;
  be.Release();
  be.network = true;
  PackageSnapshots ps(&be, {.gem_source = "http://gems.test/", .go_proxy = "http://goproxy.test/",
                            .cargo_index = "http://crates.test/index.git"});
  PackageSet set;
  set.gem = {"warren-hello"};
  set.go = {"warren.test/hello@v1.0.0"};
  set.cargo = {"warren-hello"};
  auto built = ps.Ensure(set);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  EXPECT_EQ(be.last_net.allow_hosts,
            (std::vector<std::string>{"crates.test", "gems.test", "goproxy.test", "sum.golang.org"}));
  EXPECT_TRUE(be.last_net.allow_base_mirror);
  EXPECT_NE(be.last_recipe.find("--clear-sources --source 'http://gems.test/' 'warren-hello'\n"), std::string::npos)
      << be.last_recipe;
  EXPECT_NE(be.last_recipe.find("GOPROXY='http://goproxy.test/' && go install"), std::string::npos) << be.last_recipe;
  // Plain http: HTTP/1.1 downloads (no h2c Upgrade, which the build's proxy refuses on plain HTTP).
  EXPECT_NE(be.last_recipe.find("'registry = \"http://crates.test/index.git\"' '[net]' 'git-fetch-with-cli = true' "
                                "'[http]' 'multiplexing = false' > /tmp/cargo/config.toml"),
            std::string::npos)
      << be.last_recipe;
}

}  // namespace
}  // namespace warren::orchestrator
