// McpGateway: the production domain::McpTools (docs/MCP.md). For each
// session it keeps one McpConnection per MCP server of the session's agent
// (initialised on first use) and the server's tool list (listed once, again
// after notifications/tools/list_changed or a reconnect). Credentials come
// from the session's vaults (CredentialResolver).
//
// Failure handling: servers are listed in parallel, each bounded by its
// timeouts, so one slow or dead server never stalls the others. A failed
// server is dropped (reconnected at the next listing) and reported once
// per session until it works again. Errors never carry a secret.
//
// Large outputs: the text of a tool result is cut at max_output_bytes and
// the model gets that preview plus a note with the full size; the full text
// travels in McpCallOutcome::full_text, which the engine writes to the
// session's sandbox when it has one (domain/session_files.h).
//
// Thread-safety: thread-safe. Owns the connections; not the store, HTTP
// client, secrets box or clock, which outlive it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/secret_box.h"
#include "domain/mcp_tools.h"
#include "mcp/credentials.h"
#include "mcp/mcp_connection.h"
#include "store/store.h"

namespace warren::mcp {

struct McpGatewayOptions {
  McpConnectionOptions connection;
  size_t max_output_bytes = 400'000;  // ~100K tokens
  // A server that failed is not tried again by listings for this long (its
  // tools are absent meanwhile), so a hanging server does not delay every
  // model call of the session by its timeout.
  int64_t failure_backoff_ms = 30'000;
  // Sessions whose connections are kept; the least recently used beyond
  // this are closed (and reconnect on their next use).
  size_t max_sessions = 256;
};

// MCP tool result -> client content blocks (text, image), cut at max_bytes
// (then the last block is a note with the full size). When it was cut and
// `full_text` is not null, *full_text gets the text of every text piece in
// full, one per line (images are not in it).
Json ContentFromMcpResult(const Json& result, size_t max_bytes, bool* is_error, std::string* full_text = nullptr);

class McpGateway final : public domain::McpTools {
 public:
  McpGateway(store::Store* store, HttpClient* http, const SecretBox* box, Clock* clock, McpGatewayOptions options = {});
  ~McpGateway() override = default;
  McpGateway(const McpGateway&) = delete;
  McpGateway& operator=(const McpGateway&) = delete;

  CredentialResolver& credentials() { return credentials_; }

  domain::McpListing ListTools(const Json& session, const CancelToken* cancel) override;
  domain::McpCallOutcome CallTool(const Json& session, const std::string& server, const std::string& tool,
                                  const Json& input, const CancelToken* cancel) override;
  void ForgetSession(const std::string& session_id) override;

  // mcp_oauth_validate: a refresh attempt (when the credential has a
  // refresh token) and an `initialize` probe of its MCP server.
  Result<Json> Validate(const std::string& vault_id, const std::string& credential_id);

 private:
  struct Server {
    std::mutex mu;  // serialises connect and listing of this server
    std::string url;
    std::shared_ptr<McpConnection> conn;
    bool listed = false;
    std::vector<Json> tools;
    bool failure_reported = false;
    int64_t retry_after = 0;  // mono micros; listings skip the server until then
  };
  struct SessionServers {
    int64_t last_used = 0;  // mono micros
    std::map<std::string, std::shared_ptr<Server>> servers;
  };
  std::shared_ptr<Server> ServerFor(const std::string& session_id, const std::string& name, const std::string& url);
  // Connected (initialised) connection of `s`, or the failure.
  Result<std::shared_ptr<McpConnection>> Connect(const Json& session, const std::string& name, Server* s,
                                                 const CancelToken* cancel);
  domain::McpServerFailure FailureOf(const std::string& server, const Status& st) const;

  store::Store* store_;
  HttpClient* http_;
  Clock* clock_;
  McpGatewayOptions options_;
  CredentialResolver credentials_;
  std::mutex mu_;
  std::map<std::string, SessionServers> sessions_;
};

}  // namespace warren::mcp
