// HTTP routes of the work queue (spec 3.3) and the parked long-poll.
//
// Credentials (spec 3.2, 9, and the SDK 1.10.0 docstrings):
//   poll, list, stats      org API key or the environment's key
//   ack, heartbeat, stop   org API key, the environment's key, or the
//                          item's own sessions token (the poll `secret`)
//   retrieve, update       org API key only (env key and secret rejected)
#include <limits>

#include "api/errors.h"
#include "api/validate.h"
#include "common/log.h"
#include "queue/work_queue.h"

namespace warren::queue {
namespace {

using api::ApiService;
using api::Params;
using api::Principal;
using http::HandlerResult;
using http::HttpRequest;
using http::HttpResponse;

enum class Access {
  kQueue,    // org key or this environment's key
  kItem,     // ... or the item's sessions token
  kOrgOnly,  // org key only
};

Status Authorize(const Principal& p, const std::string& env, const std::string& work_id, Access access) {
  switch (p.kind) {
    case store::KeyKind::kApi:
      return Status::Ok();
    case store::KeyKind::kEnvironment:
      if (access == Access::kOrgOnly)
        return Status::PermissionDenied(
            "this endpoint accepts only an organization API key; it rejects environment keys and work secrets");
      if (p.environment_id != env) return Status::PermissionDenied("this environment key cannot access environment " + env);
      return Status::Ok();
    case store::KeyKind::kSession:
      if (access != Access::kItem) return Status::PermissionDenied("a work item's sessions token cannot call this endpoint");
      if (p.work_id != work_id || p.environment_id != env)
        return Status::PermissionDenied("this sessions token belongs to another work item");
      return Status::Ok();
  }
  return Status::PermissionDenied("unknown credential kind");
}

HttpResponse JsonResponse(const Json& body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = DumpJson(body);
  return r;
}

// A parked GET …/work/poll?block_ms=N. Registered with the queue as a waiter
// of its environment while parked; never owns a thread.
class WorkPoll final : public http::LongPoll {
 public:
  WorkPoll(WorkQueue* queue, std::string env, int64_t reclaim_ms, std::chrono::milliseconds timeout,
           std::string request_id)
      : queue_(queue), env_(std::move(env)), reclaim_ms_(reclaim_ms), timeout_(timeout),
        request_id_(std::move(request_id)) {}
  ~WorkPoll() override { queue_->RemoveWaiter(env_, this); }
  WorkPoll(const WorkPoll&) = delete;
  WorkPoll& operator=(const WorkPoll&) = delete;

  void SetWaker(std::function<void()> waker) override { queue_->AddWaiter(env_, this, std::move(waker)); }

  std::optional<HttpResponse> TryComplete(bool deadline_passed) override {
    auto r = queue_->Claim(env_, reclaim_ms_);
    if (!r.ok()) {
      log::Error("work.poll_failed", {{"environment_id", env_}, {"error", r.status().ToString()}});
      return api::ErrorResponse(r.status(), request_id_);
    }
    if (*r) return JsonResponse(**r);
    if (deadline_passed) return JsonResponse(Json(nullptr));
    return std::nullopt;
  }

  std::chrono::milliseconds Timeout() const override { return timeout_; }
  void OnClose() override { queue_->RemoveWaiter(env_, this); }

 private:
  WorkQueue* queue_;
  std::string env_;
  int64_t reclaim_ms_;
  std::chrono::milliseconds timeout_;
  std::string request_id_;
};

using RouteFn = std::function<Result<HandlerResult>(HttpRequest&, const Params&, const Principal&)>;

}  // namespace

void WorkQueue::RegisterRoutes(api::ApiService* service) {
  auto add = [service](const char* method, const char* pattern, RouteFn fn) {
    service->router().Add(method, pattern, [service, fn](HttpRequest& req, const Params& params) -> HandlerResult {
      auto principal = service->Authenticate(req);
      if (!principal.ok()) return ApiService::ErrorResult(principal.status(), req);
      auto r = fn(req, params, *principal);
      if (!r.ok()) return ApiService::ErrorResult(r.status(), req);
      return std::move(r).value();
    });
  };
  const std::string base = "/v1/environments/{environment_id}/work";

  // Literal paths first: the router takes the first pattern that matches.
  add("GET", (base + "/poll").c_str(), [this](HttpRequest& req, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, "", Access::kQueue));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    std::optional<int64_t> block_ms;
    if (auto b = req.Query("block_ms")) {
      int64_t v;
      WARREN_RETURN_IF_ERROR(api::ParseIntParam(*b, "block_ms", 1, 999, &v));
      block_ms = v;
    }
    int64_t reclaim = options_.default_reclaim_ms;
    if (auto r = req.Query("reclaim_older_than_ms"))
      WARREN_RETURN_IF_ERROR(api::ParseIntParam(*r, "reclaim_older_than_ms", 1, int64_t{1} << 40, &reclaim));
    // An orchestrator (its Warren extension header; the SDK's worker sends
    // none and is not checked): one per environment (docs/ORCHESTRATOR.md,
    // "Several orchestrators").
    if (const std::string* o = req.headers.Find(kOrchestratorIdHeader)) {
      const std::string* host = req.headers.Find(kOrchestratorHostHeader);
      WARREN_RETURN_IF_ERROR(HoldEnvironment(env, *o, host ? *host : ""));
    }
    if (const std::string* w = req.headers.Find("anthropic-worker-id"); w && !w->empty()) {
      Status s = RecordWorker(env, w->substr(0, 256));
      if (!s.ok()) log::Warn("work.record_worker_failed", {{"error", s.ToString()}});
    }
    if (!block_ms) {
      WARREN_ASSIGN_OR_RETURN(auto item, Claim(env, reclaim));
      return ApiService::JsonResult(item ? *item : Json(nullptr));
    }
    HandlerResult hr;
    hr.poll = std::make_shared<WorkPoll>(this, env, reclaim, std::chrono::milliseconds(*block_ms), req.request_id);
    return hr;
  });

  add("GET", (base + "/stats").c_str(), [this](HttpRequest&, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, "", Access::kQueue));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    WARREN_ASSIGN_OR_RETURN(Json stats, Stats(env));
    return ApiService::JsonResult(stats);
  });

  add("GET", base.c_str(), [this](HttpRequest& req, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, "", Access::kQueue));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    WARREN_ASSIGN_OR_RETURN(auto spec, api::ParsePaging(req, 20, 100, store::Order::kDesc, false));
    WARREN_ASSIGN_OR_RETURN(auto page, List(env, spec));
    return ApiService::JsonResult(api::PageBody(page, spec, false));
  });

  add("POST", (base + "/{work_id}/ack").c_str(), [this](HttpRequest&, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    const std::string& id = params.at("work_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, id, Access::kItem));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    WARREN_ASSIGN_OR_RETURN(Json work, Ack(env, id));
    return ApiService::JsonResult(work);
  });

  add("POST", (base + "/{work_id}/heartbeat").c_str(), [this](HttpRequest& req, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    const std::string& id = params.at("work_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, id, Access::kItem));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    // Absent = renew without compare-and-set (docs/QUEUE.md); the SDK
    // declares the parameter optional.
    std::optional<std::string> expected;
    expected = req.Query("expected_last_heartbeat");
    std::optional<int64_t> ttl;
    if (auto t = req.Query("desired_ttl_seconds"); t && !t->empty()) {
      int64_t v;
      WARREN_RETURN_IF_ERROR(api::ParseIntParam(*t, "desired_ttl_seconds", std::numeric_limits<int32_t>::min(),
                                                std::numeric_limits<int32_t>::max(), &v));
      ttl = v;
    }
    Json current_state;
    auto r = Heartbeat(env, id, expected, ttl, &current_state);
    if (!r.ok() && r.status().code() == Code::kFailedPrecondition && !current_state.is_null()) {
      // Spec 8: the 412 body carries the lease as the server holds it.
      Json body = {{"type", "error"},
                   {"error",
                    {{"type", "invalid_request_error"},
                     {"message", r.status().message()},
                     {"details", {{"error_code", "heartbeat_precondition_failed"}, {"current_state", current_state}}}}},
                   {"request_id", req.request_id}};
      HandlerResult hr;
      hr.response = JsonResponse(body, 412);
      return hr;
    }
    if (!r.ok()) return r.status();
    return ApiService::JsonResult(*r);
  });

  add("POST", (base + "/{work_id}/stop").c_str(), [this](HttpRequest& req, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    const std::string& id = params.at("work_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, id, Access::kItem));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req, /*allow_empty=*/true));
    WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"force"}, ""));
    std::optional<bool> force;
    WARREN_RETURN_IF_ERROR(api::ReadBool(body, "force", "", &force));
    WARREN_ASSIGN_OR_RETURN(Json work, StopWork(env, id, force.value_or(false)));
    return ApiService::JsonResult(work);
  });

  add("GET", (base + "/{work_id}").c_str(), [this](HttpRequest&, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    const std::string& id = params.at("work_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, id, Access::kOrgOnly));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    WARREN_ASSIGN_OR_RETURN(Json work, Get(env, id));
    return ApiService::JsonResult(work);
  });

  add("POST", (base + "/{work_id}").c_str(), [this](HttpRequest& req, const Params& params, const Principal& p) -> Result<HandlerResult> {
    const std::string& env = params.at("environment_id");
    const std::string& id = params.at("work_id");
    WARREN_RETURN_IF_ERROR(Authorize(p, env, id, Access::kOrgOnly));
    WARREN_RETURN_IF_ERROR(SelfHostedEnvironment(env).status());
    WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
    WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"metadata"}, ""));
    if (!body.contains("metadata")) return api::Invalid("metadata", "field required");
    Json patch = body["metadata"].is_null() ? Json::object() : body["metadata"];
    WARREN_ASSIGN_OR_RETURN(Json work, UpdateMetadata(env, id, patch));
    return ApiService::JsonResult(work);
  });
}

}  // namespace warren::queue
