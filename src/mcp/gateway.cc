#include "mcp/gateway.h"

#include <set>
#include <thread>

#include "common/log.h"
#include "domain/tool_policy.h"

namespace warren::mcp {
namespace {

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}
const Json& Get(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : kNull;
}

Json Text(const std::string& s) { return Json::array({{{"type", "text"}, {"text", s}}}); }

}  // namespace

Json ContentFromMcpResult(const Json& result, size_t max_bytes, bool* is_error, std::string* full_text) {
  *is_error = Get(result, "isError") == true;
  Json out = Json::array();
  size_t used = 0, total = 0;
  bool cut = false;
  std::string all;  // every text piece, in full, one per line
  auto add_text = [&](const std::string& t) {
    if (!all.empty()) all += '\n';
    all += t;
    total += t.size();
    if (used >= max_bytes) {
      cut = true;
      return;
    }
    std::string piece = t;
    if (used + piece.size() > max_bytes) {
      // Cut at a UTF-8 character boundary: the preview stays valid text.
      size_t n = max_bytes - used;
      while (n > 0 && (static_cast<unsigned char>(piece[n]) & 0xC0) == 0x80) n--;
      piece.resize(n);
      cut = true;
    }
    used += piece.size();
    out.push_back({{"type", "text"}, {"text", piece}});
  };
  const Json& content = Get(result, "content");
  if (content.is_array()) {
    for (const Json& b : content) {
      std::string type = Str(b, "type");
      if (type == "text") {
        add_text(Str(b, "text"));
      } else if (type == "image") {
        const std::string data = Str(b, "data");
        if (data.empty()) continue;
        if (used + data.size() > max_bytes) {
          cut = true;  // an image that does not fit the budget is left out
          continue;
        }
        used += data.size();
        out.push_back({{"type", "image"},
                       {"source", {{"type", "base64"}, {"media_type", Str(b, "mimeType")}, {"data", data}}}});
      } else if (type == "resource") {
        const Json& r = Get(b, "resource");
        add_text(!Str(r, "text").empty() ? Str(r, "text") : "[resource " + Str(r, "uri") + "]");
      } else if (type == "resource_link") {
        add_text("[resource " + Str(b, "uri") + "]");
      } else {
        add_text(DumpJson(b));
      }
    }
  } else if (result.is_object() && result.contains("structuredContent")) {
    add_text(DumpJson(result["structuredContent"]));
  }
  if (cut)
    out.push_back({{"type", "text"},
                   {"text", "[output truncated: the tool returned " + std::to_string(total) +
                                " bytes of text; the model was given a preview of " + std::to_string(used) +
                                " bytes (images that did not fit were left out)]"}});
  if (cut && full_text != nullptr) *full_text = std::move(all);
  return out;
}

McpGateway::McpGateway(store::Store* store, HttpClient* http, const SecretBox* box, Clock* clock,
                       McpGatewayOptions options)
    : store_(store), http_(http), clock_(clock), options_(options), credentials_(store, http, box, clock) {}

std::shared_ptr<McpGateway::Server> McpGateway::ServerFor(const std::string& session_id, const std::string& name,
                                                          const std::string& url) {
  std::shared_ptr<Server> out;
  std::map<std::string, std::shared_ptr<Server>> evicted;  // closed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& sess = sessions_[session_id];
    sess.last_used = clock_->MonoMicros();
    auto& slot = sess.servers[name];
    if (!slot || slot->url != url) {
      slot = std::make_shared<Server>();
      slot->url = url;
    }
    out = slot;
    if (sessions_.size() > std::max<size_t>(1, options_.max_sessions)) {
      auto oldest = sessions_.end();
      for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
        if (it->first != session_id && (oldest == sessions_.end() || it->second.last_used < oldest->second.last_used))
          oldest = it;
      if (oldest != sessions_.end()) {
        evicted.swap(oldest->second.servers);
        sessions_.erase(oldest);
      }
    }
  }
  return out;
}

domain::McpServerFailure McpGateway::FailureOf(const std::string& server, const Status& st) const {
  bool auth = st.code() == Code::kUnauthenticated || st.code() == Code::kPermissionDenied;
  return {server, auth ? "mcp_authentication_failed_error" : "mcp_connection_failed_error",
          "MCP server '" + server + "': " + st.message()};
}

Result<std::shared_ptr<McpConnection>> McpGateway::Connect(const Json& session, const std::string& name, Server* s,
                                                           const CancelToken* cancel) {
  if (s->conn) return s->conn;
  WARREN_ASSIGN_OR_RETURN(auto cred, credentials_.Find(session, s->url));
  BearerFn bearer;
  if (cred) {
    ResolvedCredential c = *cred;
    // The connection outlives this call: refreshes are bounded by their own
    // timeouts, not by the token of the call that connected.
    bearer = [this, c](bool refresh) { return credentials_.Bearer(c, refresh, nullptr); };
  }
  McpConnectionOptions copts = options_.connection;
  copts.label = Str(session, "id") + "/" + name;
  auto conn = std::make_shared<McpConnection>(http_, s->url, bearer, copts);
  WARREN_RETURN_IF_ERROR(conn->Initialize(cancel));
  log::Info("mcp.connected", {{"session", Str(session, "id")},
                              {"server", name},
                              {"transport", conn->transport() == McpTransport::kHttpSse ? "http+sse" : "streamable_http"},
                              {"credential", cred ? cred->credential_id : ""}});
  s->conn = conn;
  s->listed = false;
  return conn;
}

domain::McpListing McpGateway::ListTools(const Json& session, const CancelToken* cancel) {
  domain::McpListing out;
  const std::string sid = Str(session, "id");
  const Json& agent = Get(session, "agent");
  const Json& tools_cfg = Get(agent, "tools");
  struct Job {
    std::string name;
    std::shared_ptr<Server> server;
    std::vector<domain::McpToolDef> defs;
    std::optional<domain::McpServerFailure> failure;
  };
  std::vector<Job> jobs;
  const Json& servers = Get(agent, "mcp_servers");
  if (!servers.is_array()) return out;
  for (const Json& srv : servers) {
    std::string name = Str(srv, "name");
    bool has_toolset = false;
    if (tools_cfg.is_array())
      for (const Json& t : tools_cfg)
        if (Str(t, "type") == "mcp_toolset" && Str(t, "mcp_server_name") == name) has_toolset = true;
    if (!has_toolset || name.empty()) continue;
    jobs.push_back({name, ServerFor(sid, name, Str(srv, "url")), {}, std::nullopt});
  }
  // Each server on its own thread: a dead one costs its own timeout only.
  auto run = [&](Job& job) {
    Server* s = job.server.get();
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->conn && clock_->MonoMicros() < s->retry_after) return;  // failed recently: tools absent
    auto conn = Connect(session, job.name, s, cancel);
    Status st = conn.status();
    if (st.ok()) {
      if ((*conn)->TakeToolsChanged()) s->listed = false;
      if (!s->listed) {
        auto listed = (*conn)->ListTools(cancel);
        if (listed.ok()) {
          s->tools = std::move(*listed);
          s->listed = true;
        } else {
          st = listed.status();
        }
      }
    }
    if (!st.ok()) {
      s->conn.reset();
      s->listed = false;
      if (st.code() != Code::kCancelled) s->retry_after = clock_->MonoMicros() + options_.failure_backoff_ms * 1000;
      if (st.code() != Code::kCancelled && !s->failure_reported) {
        s->failure_reported = true;
        job.failure = FailureOf(job.name, st);
      }
      log::Warn("mcp.server_failed", {{"session", sid}, {"server", job.name}, {"error", st.ToString()}});
      return;
    }
    s->failure_reported = false;
    for (const Json& t : s->tools) {
      std::string tool = Str(t, "name");
      if (!domain::McpToolPolicy(tools_cfg, job.name, tool)) continue;  // disabled
      domain::McpToolDef d;
      d.exposed_name = domain::McpExposedName(job.name, tool);
      d.server = job.name;
      d.tool = tool;
      d.description = Str(t, "description");
      if (Get(t, "inputSchema").is_object()) d.input_schema = t["inputSchema"];
      job.defs.push_back(std::move(d));
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 1; i < jobs.size(); i++) threads.emplace_back([&, i] { run(jobs[i]); });
  if (!jobs.empty()) run(jobs[0]);
  for (auto& t : threads) t.join();
  std::set<std::string> names;
  for (auto& job : jobs) {
    if (job.failure) out.failures.push_back(*job.failure);
    for (auto& d : job.defs) {
      if (!names.insert(d.exposed_name).second) continue;  // two tools mapped to one name: the first wins
      out.tools.push_back(std::move(d));
    }
  }
  return out;
}

domain::McpCallOutcome McpGateway::CallTool(const Json& session, const std::string& server, const std::string& tool,
                                            const Json& input, const CancelToken* cancel) {
  domain::McpCallOutcome out;
  std::string url;
  const Json& servers = Get(Get(session, "agent"), "mcp_servers");
  if (servers.is_array())
    for (const Json& srv : servers)
      if (Str(srv, "name") == server) url = Str(srv, "url");
  if (url.empty()) {
    out.is_error = true;
    out.content = Text("MCP server '" + server + "' is not configured for this agent.");
    return out;
  }
  auto s = ServerFor(Str(session, "id"), server, url);
  std::shared_ptr<McpConnection> conn;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    auto c = Connect(session, server, s.get(), cancel);
    if (!c.ok()) {
      out.is_error = true;
      out.content = Text("MCP server '" + server + "' is unavailable: " + c.status().message());
      if (c.status().code() != Code::kCancelled) out.failure = FailureOf(server, c.status());
      return out;
    }
    conn = *c;
  }
  auto r = conn->CallTool(tool, input, cancel);
  if (!r.ok()) {
    out.is_error = true;
    const Status& st = r.status();
    if (st.code() == Code::kCancelled) {
      out.content = Text("The call was cancelled.");
    } else if (st.code() == Code::kInvalidArgument) {
      out.content = Text(st.message());  // a JSON-RPC error of the call itself
    } else {
      out.content = Text("MCP server '" + server + "' failed: " + st.message());
      out.failure = FailureOf(server, st);
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->conn == conn) s->conn.reset();
    }
    return out;
  }
  std::string full;
  out.content = ContentFromMcpResult(*r, options_.max_output_bytes, &out.is_error, &full);
  if (!full.empty()) out.full_text = std::move(full);
  if (out.content.empty()) out.content = Text("(no output)");
  return out;
}

void McpGateway::ForgetSession(const std::string& session_id) {
  std::map<std::string, std::shared_ptr<Server>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    dropped.swap(it->second.servers);
    sessions_.erase(it);
  }
  // Connections close here, outside the lock (legacy readers are joined).
}

Result<Json> McpGateway::Validate(const std::string& vault_id, const std::string& credential_id) {
  WARREN_ASSIGN_OR_RETURN(auto rec, store_->GetCredential(vault_id, credential_id));
  const Json& auth = Get(rec.body, "auth");
  Json out = {{"has_refresh_token", false}, {"refresh", nullptr}, {"mcp_probe", nullptr}, {"status", "unknown"}};
  bool refresh_failed = false;
  if (Get(auth, "refresh").is_object()) {
    RefreshReport rep = credentials_.Refresh(vault_id, credential_id, nullptr);
    out["has_refresh_token"] = rep.status != "no_refresh_token";
    out["refresh"] = {{"status", rep.status}, {"http_response", rep.http_response}};
    refresh_failed = rep.status != "succeeded" && rep.status != "no_refresh_token";
  }
  // Probe: initialize with the (possibly refreshed) token, no retry.
  ResolvedCredential c{vault_id, credential_id, Str(auth, "type")};
  auto token = credentials_.Bearer(c, false, nullptr);
  if (!token.ok()) {
    out["status"] = "invalid";
    return out;
  }
  HttpRequest req;
  req.method = "POST";
  req.url = Str(auth, "mcp_server_url");
  req.connect_timeout_ms = options_.connection.connect_timeout_ms;
  req.total_timeout_ms = options_.connection.request_timeout_ms;
  req.proxy = "-";
  req.headers = {{"Content-Type", "application/json"},
                 {"Accept", "application/json, text/event-stream"},
                 {"Authorization", "Bearer " + *token}};
  req.body = DumpJson({{"jsonrpc", "2.0"},
                       {"id", 1},
                       {"method", "initialize"},
                       {"params",
                        {{"protocolVersion", "2025-06-18"},
                         {"capabilities", Json::object()},
                         {"clientInfo", {{"name", "warren-validate"}, {"version", "0.1"}}}}}});
  auto r = http_->Send(req, nullptr);
  Json probe = {{"method", "initialize"}, {"http_response", nullptr}};
  if (r.ok()) {
    domain::CredentialSecrets scrub;
    scrub.access_token = *token;
    std::string body = domain::Redact(r->body, scrub);
    bool cut = body.size() > 4096;
    if (cut) body.resize(4096);
    probe["http_response"] = {{"status_code", r->status},
                              {"content_type", r->Header("content-type").value_or("")},
                              {"body", body},
                              {"body_truncated", cut}};
    if (r->status >= 200 && r->status < 300) out["status"] = refresh_failed ? "unknown" : "valid";
    else if (r->status == 401 || r->status == 403) out["status"] = "invalid";
  }
  out["mcp_probe"] = probe;
  return out;
}

}  // namespace warren::mcp
