#include "orchestrator/networking.h"

#include <algorithm>

#include "sandbox/egress_sniff.h"

namespace warren::orchestrator {

const std::vector<std::string>& PackageManagerHosts() {
  static const std::vector<std::string> kHosts = {
      // apt: Debian and Ubuntu archives
      "deb.debian.org", "security.debian.org", "ftp.debian.org", "archive.ubuntu.com", "security.ubuntu.com",
      "ports.ubuntu.com",
      // pip
      "pypi.org", "files.pythonhosted.org",
      // npm, yarn
      "registry.npmjs.org", "registry.yarnpkg.com",
      // cargo
      "crates.io", "index.crates.io", "static.crates.io",
      // RubyGems
      "rubygems.org", "index.rubygems.org",
      // Go modules
      "proxy.golang.org", "sum.golang.org", "storage.googleapis.com",
      // release artifacts many installers fetch
      "github.com", "objects.githubusercontent.com", "codeload.github.com",
  };
  return kHosts;
}

std::vector<std::string> McpServerHosts(const Json& session) {
  std::vector<std::string> out;
  if (!session.is_object()) return out;
  auto agent = session.find("agent");
  if (agent == session.end() || !agent->is_object()) return out;
  auto servers = agent->find("mcp_servers");
  if (servers == agent->end() || !servers->is_array()) return out;
  for (const auto& s : *servers) {
    if (!s.is_object()) continue;
    auto url = s.find("url");
    if (url == s.end() || !url->is_string()) continue;
    std::string u = url->get<std::string>();
    size_t scheme = u.find("://");
    if (scheme == std::string::npos) continue;
    std::string proto = u.substr(0, scheme);
    if (proto != "https" && proto != "http") continue;
    std::string rest = u.substr(scheme + 3);
    std::string auth = rest.substr(0, rest.find_first_of("/?#"));
    if (auth.find('@') != std::string::npos) auth = auth.substr(auth.rfind('@') + 1);
    if (!auth.empty() && auth.front() == '[') continue;  // IPv6: not carried by the proxy
    std::string host = auth.substr(0, auth.find(':'));
    if (sandbox::IsIpv4Literal(host)) {
      out.push_back(host);
    } else if (auto c = sandbox::CanonicalHostName(host)) {
      if (std::find(out.begin(), out.end(), *c) == out.end()) out.push_back(*c);
    }
  }
  return out;
}

Result<SandboxNetwork> NetworkForEnvironment(const Json& environment, const Json& session,
                                             const std::string& unrestricted_network) {
  const Json* config = &environment;
  if (environment.is_object() && environment.contains("config")) config = &environment["config"];
  SandboxNetwork out;
  if (!config->is_object()) return out;
  auto ctype = config->find("type");
  if (ctype == config->end() || !ctype->is_string() || ctype->get<std::string>() != "cloud") return out;
  auto net = config->find("networking");
  if (net == config->end() || net->is_null()) {
    out.network = unrestricted_network;
    return out;
  }
  if (!net->is_object()) return Status::FailedPrecondition("config.networking is not an object");
  std::string type = net->contains("type") && (*net)["type"].is_string() ? (*net)["type"].get<std::string>() : "";
  if (type == "unrestricted") {
    out.network = unrestricted_network;
    return out;
  }
  if (type != "limited") return Status::FailedPrecondition("config.networking.type '" + type + "' is not supported");
  std::vector<std::string> hosts;
  if (auto h = net->find("allowed_hosts"); h != net->end() && !h->is_null()) {
    if (!h->is_array()) return Status::FailedPrecondition("config.networking.allowed_hosts is not an array");
    for (const auto& e : *h) {
      if (!e.is_string()) return Status::FailedPrecondition("config.networking.allowed_hosts holds a non-string");
      hosts.push_back(e.get<std::string>());
    }
  }
  auto flag = [&](const char* k) {
    auto it = net->find(k);
    return it != net->end() && it->is_boolean() && it->get<bool>();
  };
  if (flag("allow_package_managers")) {
    for (const auto& p : PackageManagerHosts()) hosts.push_back(p);
  }
  if (flag("allow_mcp_servers")) {
    for (const auto& p : McpServerHosts(session)) hosts.push_back(p);
  }
  auto list = sandbox::HostAllowlist::Parse(hosts);
  if (!list.ok()) return Status::FailedPrecondition("config.networking: " + list.status().message());
  out.network = "limited";
  out.allow_hosts = list->entries();
  return out;
}

}  // namespace warren::orchestrator
