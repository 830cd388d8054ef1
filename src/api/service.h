// ApiService: the Managed Agents HTTP API (spec sections 0-2) over a Store.
//
// Owns the routing table; handlers validate input, authorise the caller,
// and perform each write as one store transaction. Persisted events are
// published to live streams through the EventBus from inside the commit.
// Thread-safe: handlers run concurrently on the HTTP worker pool.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "api/auth.h"
#include "api/event_bus.h"
#include "api/mux_stream.h"
#include "common/secret_box.h"
#include "domain/session_observer.h"
#include "api/router.h"
#include "common/clock.h"
#include "http/http_server.h"
#include "store/store.h"

namespace warren::api {

// Told after client events are persisted (the engine and the work queue
// implement it); the interface lives in the domain layer.
using SessionObserver = domain::SessionObserver;

struct ApiOptions {
  // Seals session secrets (github_repository authorization tokens) before
  // they reach the store; without it such resources are refused.
  const SecretBox* secret_box = nullptr;
  size_t max_events_per_request = 100;
  // True when an orchestrator serves `cloud` environments (warren serve's
  // built-in one): their workers post user.tool_result like self_hosted ones.
  bool cloud_tool_results = false;
  std::chrono::milliseconds sse_keepalive{15000};
  // Runs mcp_oauth_validate for a credential (refresh attempt + MCP probe;
  // src/mcp provides it). Returns the validation object without the ids.
  // Unset: the status is "unknown".
  std::function<Result<Json>(const std::string& vault_id, const std::string& credential_id)> validate_credential;
};

class ApiService final {
 public:
  ApiService(store::Store* store, EventBus* bus, Authenticator* auth, Clock* clock, ApiOptions options = {});

  // Set before the server starts (see ApiOptions::cloud_tool_results).
  void set_cloud_tool_results(bool on) { options_.cloud_tool_results = on; }

  // Entry point for the HTTP server.
  http::HandlerResult Handle(http::HttpRequest& req);
  // Body router for the HTTP server: streams the body of a request that
  // matches an upload route (Router::AddUpload); buffers any other.
  http::BodyRoute RouteBody(http::HttpRequest& head);

  // Observers are notified in registration order; add before serving.
  void add_observer(SessionObserver* observer) { observers_.push_back(observer); }
  // Extra routes (work queue, Warren extensions) registered by other modules.
  Router& router() { return router_; }

  // Shared helpers for route modules.
  static http::HandlerResult JsonResult(const Json& body, int status = 200);
  static http::HandlerResult ErrorResult(const Status& s, const http::HttpRequest& req);
  std::string Now() const { return FormatRfc3339(clock_->NowMicros()); }
  Result<Principal> Authenticate(const http::HttpRequest& req) const { return auth_->Authenticate(req); }

 private:
  void RegisterRoutes();
  using Fn = Result<http::HandlerResult> (ApiService::*)(http::HttpRequest&, const Params&, const Principal&);
  void Route(const char* method, const char* pattern, Fn fn);

  // agents
  Result<http::HandlerResult> CreateAgent(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> GetAgent(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> UpdateAgent(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListAgents(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ArchiveAgent(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListAgentVersions(http::HttpRequest&, const Params&, const Principal&);
  // environments
  Result<http::HandlerResult> CreateEnvironment(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> GetEnvironment(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> UpdateEnvironment(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListEnvironments(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ArchiveEnvironment(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> DeleteEnvironment(http::HttpRequest&, const Params&, const Principal&);
  // sessions
  Result<http::HandlerResult> CreateSession(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> GetSession(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> UpdateSession(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListSessions(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ArchiveSession(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> DeleteSession(http::HttpRequest&, const Params&, const Principal&);
  // events
  Result<http::HandlerResult> ListSessionResources(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> AddSessionResource(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> GetSessionResource(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> UpdateSessionResource(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> DeleteSessionResource(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> SendEvents(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListEvents(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> StreamEvents(http::HttpRequest&, const Params&, const Principal&);
  // GET /v1/warren/stream (mux_routes.cc)
  Result<http::HandlerResult> MultiplexedStream(http::HttpRequest&, const Params&, const Principal&);

  // vaults (vaults.cc)
  void RegisterVaultRoutes();
  Result<http::HandlerResult> CreateVault(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> GetVault(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> UpdateVault(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListVaults(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ArchiveVault(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> DeleteVault(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> CreateCredential(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> GetCredential(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ListCredentials(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> UpdateCredential(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ArchiveCredential(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> DeleteCredential(http::HttpRequest&, const Params&, const Principal&);
  Result<http::HandlerResult> ValidateCredential(http::HttpRequest&, const Params&, const Principal&);

  // Loads a session the principal may access (404 / 403).
  Result<Json> AccessibleSession(const std::string& id, const Principal& p);
  Result<Json> ResolveSessionAgent(const Json& spec, const std::string& path);
  // For each event of `events`, the answer already recorded in the session
  // for the same tool call when the event repeats it identically (nullopt
  // for events to append). Conflict (409) when a recorded answer differs.
  // A user.tool_result for an `ask` call is accepted only once a
  // user.tool_confirmation allowed it (409 before): the one result recorded
  // for a call is the one the engine uses.
  Status CheckGatedResults(const std::string& session_id, const std::vector<Json>& events);
  Result<std::vector<std::optional<Json>>> RecordedAnswers(const std::string& session_id,
                                                           const std::vector<Json>& events);
  Result<std::vector<Json>> ValidateClientEvents(const Json& events, const Json& session, const std::string& path,
                                                 bool initial);

  store::Store* store_;
  EventBus* bus_;
  Authenticator* auth_;
  Clock* clock_;
  ApiOptions options_;
  std::vector<SessionObserver*> observers_;
  Router router_;
  std::unique_ptr<SessionSnapshots> snapshots_;  // sessions_list frames of the multiplexed stream
};

// ---- paging helpers shared by route modules

struct ListQuery {
  store::PageSpec spec;
};
// Parses `limit`, `page`, and (if allow_order) `order` with defaults.
Result<store::PageSpec> ParsePaging(const http::HttpRequest& req, int default_limit, int max_limit,
                                    store::Order default_order, bool allow_order);
// Parses created_at[gt|gte|lt|lte] into `range`.
Status ParseTimeRange(const http::HttpRequest& req, const std::string& field, store::TimeRange* range);
// {"data":[...],"next_page":...[,"prev_page":...]}
Json PageBody(const store::Page& page, const store::PageSpec& spec, bool bidirectional);
// Parses the JSON body as an object (400 when empty, broken or not an object).
Result<Json> BodyObject(const http::HttpRequest& req, bool allow_empty = false);
// For actions that take no fields (archive, validate): no body or `{}`;
// a malformed body or any field is a 400, never ignored.
Status NoFieldsBody(const http::HttpRequest& req);

}  // namespace warren::api
