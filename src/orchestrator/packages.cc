#include "orchestrator/packages.h"

#include <unistd.h>

#include <deque>
#include <mutex>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <utility>

#include "common/host_names.h"
#include "common/ids.h"

namespace warren::orchestrator {
namespace {

constexpr size_t kMaxEntryBytes = 214;  // npm's limit; ample for the others
constexpr int kRecipeFormat = 1;        // bump when the recipe text changes
constexpr size_t kMaxKeptLogLines = 20000;
// npm itself comes from its registry, pinned by version and sha512 (the
// registry's dist.integrity; PackageRecipeOptions, default
// kDefaultNpmVersion): Debian's `npm` package is 475 packages (76 MB,
// minutes of dpkg), node alone is about 15. The default needs node >= 18.17
// (bookworm: 18.20).

// The RUN step that puts npm into an image that has node: fetch the
// tarball with node, check its sha512, and let it install itself
// globally (default prefix /usr: /usr/bin/npm). `v` and `integrity` are
// checked by CheckPackageRecipeOptions (no quote can reach the script).
std::string NpmBootstrapStep(const std::string& v, const std::string& integrity) {
  const std::string fetch =
      "const https=require(\"https\"),fs=require(\"fs\"),crypto=require(\"crypto\");"
      "const fail=m=>{console.error(\"npm " + v + " tarball: \"+m);process.exit(1)};"
      "https.get(\"https://registry.npmjs.org/npm/-/npm-" + v + ".tgz\",r=>{"
      "if(r.statusCode!==200)fail(\"HTTP \"+r.statusCode);const c=[];r.on(\"data\",d=>c.push(d));"
      "r.on(\"end\",()=>{const b=Buffer.concat(c);"
      "const h=\"sha512-\"+crypto.createHash(\"sha512\").update(b).digest(\"base64\");"
      "if(h!==\"" + integrity + "\")fail(\"integrity mismatch \"+h);"
      "fs.writeFileSync(\"/tmp/npm.tgz\",b)})}).on(\"error\",e=>fail(e.message))";
  return "RUN node -e '" + fetch + "' && tar -xzf /tmp/npm.tgz -C /tmp && node /tmp/package/bin/npm-cli.js install -g "
         "--no-fund --no-audit --no-update-notifier --cache /tmp/npm-cache 'npm@" + v +
         "' && rm -rf /tmp/package /tmp/npm.tgz /tmp/npm-cache\n";
}

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// True if every character of `s` is alphanumeric or in `extra`.
bool AllOf(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) { return IsAlnum(c) || extra.find(c) != std::string_view::npos; });
}

Status Bad(std::string_view manager, std::string_view entry, std::string why) {
  return Status::InvalidArgument("'" + std::string(entry.substr(0, 64)) + "' is not a valid " + std::string(manager) +
                                 " package: " + why);
}

Status ValidateApt(std::string_view e) {
  if (e.find('=') != std::string_view::npos) {
    return Bad("apt", e,
               "version pins are not supported (the Debian base is made by debootstrap, which installs the "
               "suite's current version)");
  }
  if (e.size() < 2 || !IsLowerAlnum(e[0]) ||
      !std::all_of(e.begin(), e.end(), [](char c) { return IsLowerAlnum(c) || c == '+' || c == '-' || c == '.'; })) {
    return Bad("apt", e, "Debian package names are 2+ characters of [a-z0-9+.-], starting with a letter or digit");
  }
  return Status::Ok();
}

// pip: name[extra,...] then optional comma-separated clauses <op><version>.
Status ValidatePip(std::string_view e) {
  size_t i = 0;
  while (i < e.size() && (IsAlnum(e[i]) || e[i] == '.' || e[i] == '_' || e[i] == '-')) ++i;
  std::string_view name = e.substr(0, i);
  if (name.empty() || !IsAlnum(name.front()) || !IsAlnum(name.back())) {
    return Bad("pip", e, "expected a project name of [A-Za-z0-9._-] starting and ending with a letter or digit");
  }
  if (i < e.size() && e[i] == '[') {
    size_t close = e.find(']', i);
    if (close == std::string_view::npos) return Bad("pip", e, "unclosed [extras]");
    std::string_view extras = e.substr(i + 1, close - i - 1);
    if (extras.empty() || !AllOf(extras, "._-,")) return Bad("pip", e, "extras are names of [A-Za-z0-9._-]");
    i = close + 1;
  }
  if (i == e.size()) return Status::Ok();
  std::string_view spec = e.substr(i);
  size_t p = 0;
  while (p < spec.size()) {
    static constexpr std::array<std::string_view, 8> kOps = {"===", "==", "!=", "<=", ">=", "~=", "<", ">"};
    size_t oplen = 0;
    for (auto op : kOps) {
      if (spec.substr(p, op.size()) == op) {
        oplen = op.size();
        break;
      }
    }
    if (oplen == 0) return Bad("pip", e, "expected a version clause (==, >=, <=, ~=, !=, <, >) after the name");
    p += oplen;
    size_t end = spec.find(',', p);
    std::string_view ver = spec.substr(p, end == std::string_view::npos ? std::string_view::npos : end - p);
    if (ver.empty() || !AllOf(ver, ".*+!_-")) return Bad("pip", e, "versions are [A-Za-z0-9.*+!_-]");
    if (end == std::string_view::npos) break;
    p = end + 1;
    if (p == spec.size()) return Bad("pip", e, "trailing comma");
  }
  return Status::Ok();
}

// npm: [@scope/]name[@spec]
Status ValidateNpm(std::string_view e) {
  std::string_view rest = e;
  std::string_view scope;
  if (!rest.empty() && rest[0] == '@') {
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return Bad("npm", e, "a scoped name is @scope/name");
    scope = rest.substr(1, slash - 1);
    rest = rest.substr(slash + 1);
    if (scope.empty() || !AllOf(scope, "._~-") || !IsAlnum(scope[0])) return Bad("npm", e, "bad scope");
  }
  size_t at = rest.find('@');
  std::string_view name = rest.substr(0, at);
  if (name.empty() || !IsAlnum(name[0]) || !AllOf(name, "._~-")) {
    return Bad("npm", e, "names are [A-Za-z0-9._~-] starting with a letter or digit");
  }
  if (at != std::string_view::npos) {
    std::string_view spec = rest.substr(at + 1);
    if (spec.empty() || !AllOf(spec, ".^~*+_=<>-")) {
      return Bad("npm", e, "versions and ranges are [A-Za-z0-9.^~*+_=<>-] (no spaces, URLs or paths)");
    }
  }
  return Status::Ok();
}

// gem: name[:version]
Status ValidateGem(std::string_view e) {
  size_t colon = e.find(':');
  std::string_view name = e.substr(0, colon);
  if (name.empty() || !IsAlnum(name[0]) || !AllOf(name, "._-")) return Bad("gem", e, "names are [A-Za-z0-9._-]");
  if (colon != std::string_view::npos) {
    std::string_view ver = e.substr(colon + 1);
    if (ver.empty() || !AllOf(ver, ".")) return Bad("gem", e, "name:version with a version of [A-Za-z0-9.]");
  }
  return Status::Ok();
}

// cargo: name[@version]
Status ValidateCargo(std::string_view e) {
  size_t at = e.find('@');
  std::string_view name = e.substr(0, at);
  if (name.empty() || !IsAlnum(name[0]) || !AllOf(name, "_-")) return Bad("cargo", e, "crate names are [A-Za-z0-9_-]");
  if (at != std::string_view::npos) {
    std::string_view ver = e.substr(at + 1);
    if (ver.empty() || !AllOf(ver, ".+^~*=-")) return Bad("cargo", e, "name@version with a version of [A-Za-z0-9.+^~*=-]");
  }
  return Status::Ok();
}

// go: module/path[@version]; the first element is a host (has a dot).
Status ValidateGo(std::string_view e) {
  size_t at = e.find('@');
  std::string_view path = e.substr(0, at);
  if (path.empty() || !IsAlnum(path[0]) || !AllOf(path, "._~/-")) {
    return Bad("go", e, "a package path of [A-Za-z0-9._~/-] (e.g. golang.org/x/tools/cmd/goimports@latest)");
  }
  size_t start = 0;
  bool first = true;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string_view el = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (el.empty() || el == "." || el == "..") return Bad("go", e, "empty, '.' or '..' path element");
    if (first && el.find('.') == std::string_view::npos) return Bad("go", e, "the path must start with a host name");
    first = false;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (at != std::string_view::npos) {
    std::string_view ver = e.substr(at + 1);
    if (ver.empty() || !AllOf(ver, ".+_-")) return Bad("go", e, "@version of [A-Za-z0-9.+_-] (or @latest)");
  }
  return Status::Ok();
}

// http[s]://host[:port][/path] -> canonical host (a name or an IPv4
// literal); InvalidArgument otherwise. No userinfo (a credential would be
// written into the recipe, which the snapshot record keeps), query,
// fragment or IPv6 literal.
Result<std::string> IndexUrlHost(std::string_view url) {
  size_t scheme = url.rfind("http://", 0) == 0 ? 7 : url.rfind("https://", 0) == 0 ? 8 : 0;
  if (scheme == 0) return Status::InvalidArgument("must start with http:// or https://");
  if (url.size() > 512) return Status::InvalidArgument("longer than 512 characters");
  if (!AllOf(url, ":/._~-%+")) {
    return Status::InvalidArgument("only letters, digits and :/._~-%+ (no credentials, query or fragment)");
  }
  std::string_view rest = url.substr(scheme);
  std::string_view hostport = rest.substr(0, rest.find('/'));
  std::string_view host = hostport.substr(0, hostport.find(':'));
  if (host.size() < hostport.size()) {
    std::string_view port = hostport.substr(host.size() + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535) {
      return Status::InvalidArgument("bad port");
    }
  }
  if (host.empty()) return Status::InvalidArgument("no host");
  auto canon = CanonicalHostPattern(host);
  if (!canon.ok() || canon->find('*') != std::string::npos) return Status::InvalidArgument("bad host name");
  return *canon;
}

bool IsHttpUrl(std::string_view url) { return url.rfind("http://", 0) == 0; }

std::string Join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

std::string QuotedArgs(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += " " + ShellQuote(s);
  return out;
}

}  // namespace

std::string ShellQuote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

Status ValidatePackage(std::string_view manager, std::string_view entry) {
  if (entry.empty()) return Bad(manager, entry, "empty");
  if (entry.size() > kMaxEntryBytes) return Bad(manager, entry, "longer than 214 characters");
  if (entry[0] == '-') return Bad(manager, entry, "must not start with '-'");
  if (manager == "apt") return ValidateApt(entry);
  if (manager == "pip") return ValidatePip(entry);
  if (manager == "npm") return ValidateNpm(entry);
  if (manager == "gem") return ValidateGem(entry);
  if (manager == "cargo") return ValidateCargo(entry);
  if (manager == "go") return ValidateGo(entry);
  return Status::InvalidArgument("unknown package manager " + std::string(manager));
}

Result<PackageSet> NormalisePackages(PackageSet set) {
  auto norm = [](std::string_view mgr, std::vector<std::string>* list) -> Status {
    for (size_t i = 0; i < list->size(); ++i) {
      std::string& s = (*list)[i];
      size_t b = s.find_first_not_of(" \t");
      size_t e = s.find_last_not_of(" \t");
      s = b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
      Status st = ValidatePackage(mgr, s);
      if (!st.ok()) return st.WithContext("config.packages." + std::string(mgr) + "[" + std::to_string(i) + "]");
    }
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
    return Status::Ok();
  };
  WARREN_RETURN_IF_ERROR(norm("apt", &set.apt));
  WARREN_RETURN_IF_ERROR(norm("cargo", &set.cargo));
  WARREN_RETURN_IF_ERROR(norm("gem", &set.gem));
  WARREN_RETURN_IF_ERROR(norm("go", &set.go));
  WARREN_RETURN_IF_ERROR(norm("npm", &set.npm));
  WARREN_RETURN_IF_ERROR(norm("pip", &set.pip));
  return set;
}

Result<PackageSet> ParsePackages(const Json& packages) {
  PackageSet set;
  if (packages.is_null()) return set;
  if (!packages.is_object()) return Status::InvalidArgument("config.packages: expected an object");
  for (auto it = packages.begin(); it != packages.end(); ++it) {
    const std::string& k = it.key();
    if (k == "type") {
      if (!it->is_string() || it->get<std::string>() != "packages") {
        return Status::InvalidArgument("config.packages.type: must be 'packages'");
      }
      continue;
    }
    std::vector<std::string>* list = k == "apt"     ? &set.apt
                                     : k == "cargo" ? &set.cargo
                                     : k == "gem"   ? &set.gem
                                     : k == "go"    ? &set.go
                                     : k == "npm"   ? &set.npm
                                     : k == "pip"   ? &set.pip
                                                    : nullptr;
    if (list == nullptr) return Status::InvalidArgument("config.packages." + k + ": unknown field");
    if (it->is_null()) continue;
    if (!it->is_array()) return Status::InvalidArgument("config.packages." + k + ": expected an array of strings");
    if (it->size() > 1000) return Status::InvalidArgument("config.packages." + k + ": at most 1000 entries");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& v = (*it)[i];
      if (!v.is_string()) {
        return Status::InvalidArgument("config.packages." + k + "[" + std::to_string(i) + "]: expected a string");
      }
      list->push_back(v.get<std::string>());
    }
  }
  return NormalisePackages(std::move(set));
}

std::vector<std::string> ToolchainPackages(const PackageSet& set, const PackageRecipeOptions& opts) {
  std::vector<std::string> out;
  if (set.needs_build_network()) out.push_back("ca-certificates");
  if (!set.pip.empty()) out.push_back("python3-pip");
  if (!set.npm.empty()) out.push_back("nodejs");
  if (!set.gem.empty()) out.push_back("ruby");
  if (!set.cargo.empty()) out.push_back("cargo");
  if (!set.cargo.empty() && !opts.cargo_index.empty()) out.push_back("git");  // net.git-fetch-with-cli
  if (!set.go.empty()) out.insert(out.end(), {"golang-go", "git"});
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status CheckPackageRecipeOptions(const PackageRecipeOptions& opts) {
  // The registry URLs: one form for all (IndexUrlHost).
  for (const auto& [field, url] : {std::pair<const char*, const std::string&>{"pip_index_url", opts.pip_index_url},
                                   {"gem_source", opts.gem_source},
                                   {"go_proxy", opts.go_proxy},
                                   {"cargo_index", opts.cargo_index}}) {
    if (url.empty()) continue;
    // Never echoed when it may hold a credential (user:password@host).
    if (url.find('@') != std::string::npos) {
      return Status::InvalidArgument(std::string(field) + ": credentials (user:password@) are not accepted; they "
                                     "would be stored in the snapshot's recipe");
    }
    if (auto h = IndexUrlHost(url); !h.ok()) {
      return Status::InvalidArgument(std::string(field) + " '" + url.substr(0, 120) + "': " + h.status().message());
    }
  }
  if (!opts.go_nosumdb.empty()) {
    if (opts.go_proxy.empty()) {
      return Status::InvalidArgument("go_nosumdb needs go_proxy: proxy.golang.org serves public modules only, which "
                                     "the checksum database knows");
    }
    const std::string& p = opts.go_nosumdb;
    bool bad = p.size() > 512 || !AllOf(p, ",./_~*?-");
    for (size_t start = 0; !bad;) {
      size_t comma = p.find(',', start);
      std::string_view el = std::string_view(p).substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      bad = el.empty() || el[0] == '-' || el[0] == '/' || el.find("..") != std::string_view::npos;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (bad) {
      return Status::InvalidArgument("go_nosumdb '" + p.substr(0, 120) +
                                     "': expected comma-separated module path prefixes or globs of "
                                     "[A-Za-z0-9./_~*?-] (as GONOSUMDB), e.g. corp.example.com,*.internal.example");
    }
  }
  if (opts.npm_version.empty() != opts.npm_integrity.empty()) {
    return Status::InvalidArgument("npm_version and npm_integrity go together (the integrity is the sha512 of that "
                                   "version's tarball, the registry's dist.integrity)");
  }
  if (!opts.npm_version.empty()) {
    const std::string& v = opts.npm_version;
    if (v.size() > 64 || !(v[0] >= '0' && v[0] <= '9') || !AllOf(v, ".+-") ||
        std::count(v.begin(), v.end(), '.') < 2) {
      return Status::InvalidArgument("npm_version '" + v.substr(0, 64) +
                                     "': expected an exact version like 10.9.2 (no range, tag or URL)");
    }
    const std::string& i = opts.npm_integrity;
    // sha512 is 64 bytes: 88 characters of padded base64.
    if (i.rfind("sha512-", 0) != 0 || i.size() != 7 + 88 || i.substr(i.size() - 2) != "==" ||
        !AllOf(std::string_view(i).substr(7), "+/=")) {
      return Status::InvalidArgument("npm_integrity: expected sha512-<88 characters of base64> (the registry's "
                                     "dist.integrity of npm@" + v.substr(0, 64) + ")");
    }
  }
  return Status::Ok();
}

std::vector<std::string> PackageRegistryHosts(const PackageSet& set, const PackageRecipeOptions& opts) {
  std::vector<std::string> out;
  if (!set.pip.empty()) {
    auto host = opts.pip_index_url.empty() ? Result<std::string>(Status::NotFound("")) : IndexUrlHost(opts.pip_index_url);
    if (host.ok()) out.push_back(*host);
    else out.insert(out.end(), {"pypi.org", "files.pythonhosted.org"});
  }
  if (!set.npm.empty()) out.push_back("registry.npmjs.org");
  // A configured registry's host replaces the public ones (the URLs were
  // checked: CheckPackageRecipeOptions).
  auto configured = [&](const std::string& url, std::initializer_list<const char*> public_hosts) {
    if (!url.empty()) {
      if (auto host = IndexUrlHost(url); host.ok()) out.push_back(*host);
      return;
    }
    out.insert(out.end(), public_hosts.begin(), public_hosts.end());
  };
  if (!set.gem.empty()) configured(opts.gem_source, {"rubygems.org", "index.rubygems.org"});
  // cargo 0.66 (bookworm) reads crates.io's git index from github.com (the
  // sparse index.crates.io needs cargo 1.68); downloads go through
  // crates.io to static.crates.io.
  if (!set.cargo.empty()) configured(opts.cargo_index, {"crates.io", "index.crates.io", "static.crates.io", "github.com"});
  if (!set.go.empty()) {
    configured(opts.go_proxy, {"proxy.golang.org"});
    out.push_back("sum.golang.org");
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string HostCaBundle() {
  for (const char* p : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
    if (access(p, R_OK) == 0) return p;
  }
  return "";
}

Result<PackageRecipe> PackagesRecipe(const PackageSet& in, const PackageRecipeOptions& opts) {
  WARREN_ASSIGN_OR_RETURN(PackageSet set, NormalisePackages(in));
  if (opts.suite.empty() || opts.suite.find_first_not_of("abcdefghijklmnopqrstuvwxyz") != std::string::npos) {
    return Status::InvalidArgument("packages: bad Debian suite " + opts.suite);
  }
  if (!opts.mirror.empty() && (!AllOf(opts.mirror, ":/._~-%+") ||
                               (opts.mirror.rfind("http://", 0) != 0 && opts.mirror.rfind("https://", 0) != 0))) {
    return Status::InvalidArgument("packages: bad mirror URL " + opts.mirror);
  }
  if (Status s = CheckPackageRecipeOptions(opts); !s.ok()) return s.WithContext("packages");
  const std::string npm_version = opts.npm_version.empty() ? kDefaultNpmVersion : opts.npm_version;
  const std::string npm_integrity = opts.npm_version.empty() ? kDefaultNpmIntegrity : opts.npm_integrity;
  Json canon = {{"format", kRecipeFormat}, {"suite", opts.suite}, {"mirror", opts.mirror},
                {"apt", set.apt},          {"cargo", set.cargo}, {"gem", set.gem},
                {"go", set.go},            {"npm", set.npm},     {"pip", set.pip}};
  // A configured registry or npm is another recipe, so another name; the
  // defaults add nothing (the names made before these settings stay).
  if (!set.pip.empty() && !opts.pip_index_url.empty()) canon["pip_index_url"] = opts.pip_index_url;
  if (!set.gem.empty() && !opts.gem_source.empty()) canon["gem_source"] = opts.gem_source;
  if (!set.go.empty() && !opts.go_proxy.empty()) canon["go_proxy"] = {opts.go_proxy, opts.go_nosumdb};
  if (!set.cargo.empty() && !opts.cargo_index.empty()) canon["cargo_index"] = opts.cargo_index;
  if (!set.npm.empty() && (npm_version != kDefaultNpmVersion || npm_integrity != kDefaultNpmIntegrity)) {
    canon["npm_self"] = {npm_version, npm_integrity};
  }
  // The apt-get layout is another recipe, so another name (the include=
  // layout keeps the names it always had).
  if (opts.build_network) canon["layout"] = "apt-get";
  PackageRecipe r;
  r.hash = Sha256Hex(DumpJson(canon));
  r.snapshot_name = "pkgs-" + r.hash.substr(0, 32);
  // The apt set plus the toolchains the other managers need.
  std::vector<std::string> debs = set.apt;
  for (auto& t : ToolchainPackages(set, opts)) debs.push_back(std::move(t));
  std::sort(debs.begin(), debs.end());
  debs.erase(std::unique(debs.begin(), debs.end()), debs.end());
  std::string text = "# Warren packages snapshot " + r.hash + " (generated; docs/ORCHESTRATOR.md)\n";
  text += "FROM debian:" + opts.suite;
  if (!opts.build_network && !debs.empty()) text += " include=" + Join(debs, ",");
  if (!opts.mirror.empty()) text += " mirror=" + opts.mirror;
  text += "\n";
  if (opts.build_network && !debs.empty()) {
    // One layer: the lists are fetched, used and dropped in the same step.
    // dpkg without an fsync per file (--force-unsafe-io): a build's scratch
    // is thrown away on a crash anyway, and the fsyncs cost minutes on a
    // loop-backed pool.
    text += "RUN export DEBIAN_FRONTEND=noninteractive && apt-get update -q && apt-get install -q -y "
            "--no-install-recommends -o Dpkg::Options::=--force-unsafe-io" + QuotedArgs(debs) +
            " && apt-get clean && rm -rf /var/lib/apt/lists/*\n";
    r.needs_mirror = true;
  }
  if (!set.pip.empty()) {
    text += "RUN python3 -m pip install --no-cache-dir --no-input --break-system-packages";
    if (!opts.pip_index_url.empty()) {
      text += " --index-url " + ShellQuote(opts.pip_index_url);
      if (IsHttpUrl(opts.pip_index_url)) text += " --trusted-host " + ShellQuote(*IndexUrlHost(opts.pip_index_url));
    }
    text += QuotedArgs(set.pip) + "\n";
  }
  if (!set.npm.empty()) {
    text += NpmBootstrapStep(npm_version, npm_integrity);
    text += "RUN npm install -g --no-fund --no-audit --no-update-notifier --cache /tmp/npm-cache" + QuotedArgs(set.npm) +
            " && rm -rf /tmp/npm-cache\n";
  }
  if (!set.gem.empty()) {
    text += "RUN gem install --no-document";
    if (!opts.gem_source.empty()) {
      // Only this source (not rubygems.org as well). RubyGems resolves
      // specs.4.8.gz, quick/ and gems/ under it: a directory URL.
      std::string src = opts.gem_source;
      if (src.back() != '/') src += '/';
      text += " --clear-sources --source " + ShellQuote(src);
    }
    text += QuotedArgs(set.gem) + "\n";
  }
  if (!set.cargo.empty()) {
    text += "RUN export CARGO_HOME=/tmp/cargo";
    if (!opts.cargo_index.empty()) {
      // Source replacement: crates.io's name, this git index. The git CLI
      // fetches it (cargo 0.66's libgit2 speaks only git's smart HTTP; git
      // speaks the dumb one as well, so a static file server works). The URL
      // holds no quote or backslash (IndexUrlHost's alphabet).
      // Over plain http, downloads in HTTP/1.1: cargo's curl would ask the
      // server to upgrade to h2c, and the build's egress proxy carries no
      // Upgrade on plain HTTP (it could not check what follows).
      text += " && mkdir -p /tmp/cargo && printf '%s\\n' '[source.crates-io]' 'replace-with = \"warren\"' "
              "'[source.warren]' 'registry = \"" + opts.cargo_index + "\"' '[net]' 'git-fetch-with-cli = true'";
      if (IsHttpUrl(opts.cargo_index)) text += " '[http]' 'multiplexing = false'";
      text += " > /tmp/cargo/config.toml";
    }
    text += " && cargo install --root /usr/local" + QuotedArgs(set.cargo) + " && rm -rf /tmp/cargo\n";
  }
  if (!set.go.empty()) {
    // The module proxy only (no direct VCS fetches: those hosts are not
    // allowed), checked against the checksum database (except the
    // configured GONOSUMDB prefixes).
    text += "RUN export GOBIN=/usr/local/bin GOPATH=/tmp/go GOCACHE=/tmp/go-cache GOPROXY=";
    text += opts.go_proxy.empty() ? std::string("https://proxy.golang.org") : ShellQuote(opts.go_proxy);
    if (!opts.go_nosumdb.empty()) text += " GONOSUMDB=" + ShellQuote(opts.go_nosumdb);
    for (const auto& g : set.go) {
      text += " && go install " + ShellQuote(g.find('@') == std::string::npos ? g + "@latest" : g);
    }
    text += " && rm -rf /tmp/go /tmp/go-cache\n";
  }
  r.recipe = std::move(text);
  r.hosts = PackageRegistryHosts(set, opts);
  return r;
}

int PackageSnapshots::builds_started() const {
  std::lock_guard<std::mutex> l(mu_);
  return builds_started_;
}

Result<sandbox::SnapshotRecord> PackageSnapshots::Ensure(const PackageSet& in, const sandbox::BuildLog& log) {
  WARREN_ASSIGN_OR_RETURN(PackageSet set, NormalisePackages(in));
  PackageRecipeOptions opts = opts_;
  opts.build_network = backend_->BuildsHaveNetwork();
  if (set.needs_build_network() && !opts.build_network) {
    std::string why = backend_->BuildNetworkReason();
    return Status::FailedPrecondition(
        "config.packages: cargo, gem, go, npm and pip packages need network during the snapshot build, which this "
        "host cannot give builds" + (why.empty() ? std::string() : " (" + why + ")") +
        "; apt packages are supported");
  }
  WARREN_ASSIGN_OR_RETURN(PackageRecipe r, PackagesRecipe(set, opts));
  sandbox::BuildOptions net;
  if (opts.build_network) {
    net.allow_hosts = r.hosts;
    net.allow_base_mirror = r.needs_mirror;
  }
  auto existing = backend_->GetSnapshot(r.snapshot_name);
  if (existing.ok()) {
    if (log) log("packages snapshot " + r.snapshot_name + " cached");
    return existing;
  }
  if (existing.status().code() != Code::kNotFound && existing.status().code() != Code::kFailedPrecondition) {
    return existing.status();  // FailedPrecondition = lost its layer: rebuild
  }

  std::shared_ptr<Flight> f;
  bool leader = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = flights_.find(r.snapshot_name);
    if (it == flights_.end()) {
      f = std::make_shared<Flight>();
      flights_[r.snapshot_name] = f;
      leader = true;
      ++builds_started_;
    } else {
      f = it->second;
    }
  }
  {
    std::lock_guard<std::mutex> l(f->mu);
    if (log && !f->done) {
      for (const auto& line : f->lines) log(line);
      f->listeners[f->next_listener++] = log;
    }
  }
  if (leader) {
    // A build that finished between our lookup and our flight: use it.
    if (auto again = backend_->GetSnapshot(r.snapshot_name); again.ok()) {
      {
        std::lock_guard<std::mutex> l(f->mu);
        f->done = true;
        f->listeners.clear();
        f->record = *again;
      }
      f->cv.notify_all();
      std::lock_guard<std::mutex> l(mu_);
      flights_.erase(r.snapshot_name);
      return *again;
    }
    auto broadcast = [f](std::string_view line) {
      std::lock_guard<std::mutex> l(f->mu);
      if (f->lines.size() < kMaxKeptLogLines) f->lines.emplace_back(line);
      for (auto& [id, fn] : f->listeners) fn(line);
    };
    auto built = backend_->BuildSnapshot(r.snapshot_name, r.recipe, net, broadcast);
    {
      std::lock_guard<std::mutex> l(f->mu);
      f->done = true;
      f->listeners.clear();
      if (built.ok()) f->record = *built;
      else f->status = built.status();
    }
    f->cv.notify_all();
    std::lock_guard<std::mutex> l(mu_);
    flights_.erase(r.snapshot_name);
  }
  std::unique_lock<std::mutex> l(f->mu);
  f->cv.wait(l, [&] { return f->done; });
  if (!f->status.ok()) return f->status.WithContext("packages snapshot " + r.snapshot_name);
  return f->record;
}

Result<std::string> SnapshotForEnvironment(const Json& env, PackageSnapshots* snapshots, const sandbox::BuildLog& log) {
  const std::string id = env.is_object() && env.contains("id") && env["id"].is_string() ? env["id"].get<std::string>() : "";
  if (!env.is_object() || !env.contains("config") || !env["config"].is_object() || !env["config"].contains("packages"))
    return std::string();
  auto set = ParsePackages(env["config"]["packages"]);
  if (!set.ok()) return Status::FailedPrecondition("environment " + id + ": " + set.status().message());
  if (set->empty()) return std::string();
  // The last lines of the build log go into the failure, so the session
  // learns why in plain words (the apt error, not just "exit 100").
  std::mutex tail_mu;
  std::deque<std::string> tail;
  auto logged = [&](std::string_view line) {
    {
      std::lock_guard<std::mutex> l(tail_mu);
      tail.emplace_back(line.substr(0, 300));
      if (tail.size() > 4) tail.pop_front();
    }
    if (log) log(line);
  };
  auto snap = snapshots->Ensure(*set, logged);
  if (!snap.ok()) {
    if (snap.status().code() == Code::kCancelled) return snap.status();
    bool ran;  // a build ran (and logged) before failing; a refusal logs nothing
    {
      std::lock_guard<std::mutex> l(tail_mu);
      ran = !tail.empty();
    }
    if (!ran && (snap.status().code() == Code::kFailedPrecondition || snap.status().code() == Code::kInvalidArgument))
      return Status::FailedPrecondition("environment " + id + " config.packages: " + snap.status().message());
    // A build that ran and failed (a package that does not exist, a mirror
    // that is down, a RUN step's non-zero exit) is the session's problem too: retrying the item would
    // rebuild for minutes at each delivery and never tell anyone. It is
    // reported to the session (the item stopped); the next turn that needs
    // the sandbox tries the build again (failures are not cached).
    std::string why = "the environment's packages could not be installed (environment " + id +
                      ", snapshot build failed: " + snap.status().message() + ")";
    std::lock_guard<std::mutex> l(tail_mu);
    if (!tail.empty()) {
      why += "; last lines of the build log:";
      for (const auto& t : tail) why += "\n  " + t;
    }
    return Status::FailedPrecondition(why);
  }
  return snap->name;
}

}  // namespace warren::orchestrator
