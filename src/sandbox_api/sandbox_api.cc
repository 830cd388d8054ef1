#include "sandbox_api/sandbox_api.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "api/auth.h"
#include "api/errors.h"
#include "api/validate.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "sandbox/recipe.h"
#include "sandbox/sys.h"
#include "orchestrator/prepare.h"
#include "sandbox_api/executor.h"
#include "sandbox_api/streams.h"

namespace warren::sandbox_api {

using api::Invalid;
using api::Params;
using http::HandlerResult;
using http::HttpRequest;
using sandbox::SandboxRuntime;

// ============================================================ LazyRuntime

LazyRuntime::LazyRuntime(bool enabled, sandbox::RuntimeOptions options)
    : enabled_(enabled), options_(std::move(options)) {}

LazyRuntime::~LazyRuntime() { Close(); }

Result<SandboxRuntime*> LazyRuntime::Get() {
  std::lock_guard<std::mutex> lock(mu_);
  if (runtime_) return runtime_.get();
  if (closed_) return Status::Unavailable("the sandbox runtime is shutting down");
  if (!enabled_) return Status::Unavailable("the sandbox runtime is disabled (sandbox.enabled = false)");
  if (geteuid() != 0) return Status::Unavailable("the sandbox runtime needs root; warren serve is not running as root");
  auto rt = SandboxRuntime::Open(options_);
  if (!rt.ok()) {
    log::Error("sandbox_api.open_failed", {{"error", rt.status().ToString()}, {"data_dir", options_.data_dir}});
    return Status::Unavailable("the sandbox runtime could not be opened: " + rt.status().message());
  }
  runtime_ = std::move(*rt);
  log::Info("sandbox_api.runtime_opened", {{"data_dir", options_.data_dir},
                                           {"features", runtime_->features().ToJson()}});
  return runtime_.get();
}

SandboxRuntime* LazyRuntime::IfOpen() {
  std::lock_guard<std::mutex> lock(mu_);
  return runtime_.get();
}

void LazyRuntime::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  if (!runtime_) return;
  Status s = runtime_->UnmountPoolIfIdle();
  if (!s.ok()) log::Warn("sandbox_api.unmount_failed", {{"error", s.ToString()}});
  runtime_.reset();
}

// ================================================================ helpers
namespace {

std::string Rfc(int64_t micros) { return micros > 0 ? FormatRfc3339(micros) : std::string(); }
Json NullIfEmpty(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

std::string ModeString(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

Json SandboxJson(const sandbox::SandboxRecord& r) {
  Json vols = Json::array();
  for (const auto& v : r.volumes)
    vols.push_back({{"volume", v.volume}, {"path", v.path}, {"subpath", v.subpath}, {"read_only", v.read_only}});
  Json network = {{"type", r.network}, {"allow_cidrs", r.allow_cidrs}, {"block_all", r.block_all}, {"dns", r.dns}};
  if (r.network == "limited") network["allow_hosts"] = r.allow_hosts;  // the egress proxy's allowlist
  return Json{{"type", "sandbox"},
              {"id", r.id},
              {"name", NullIfEmpty(r.name)},
              {"state", sandbox::StateName(r.state)},
              {"error", NullIfEmpty(r.error)},
              {"snapshot", r.snapshot},
              {"snapshot_hash", r.snapshot_hash},
              {"labels", r.labels},
              {"env", r.env},
              {"resources", sandbox::ResourcesToJson(r.resources)},
              {"network", network},
              {"user", NullIfEmpty(r.user)},
              {"workdir", NullIfEmpty(r.workdir)},
              {"volumes", vols},
              {"parent", NullIfEmpty(r.parent)},
              {"children", r.children},
              {"auto_stop_minutes", r.auto_stop_minutes},
              {"auto_archive_minutes", r.auto_archive_minutes},
              {"auto_delete_minutes", r.auto_delete_minutes},
              {"stopped_at", r.stopped_at ? Json(Rfc(r.stopped_at)) : Json(nullptr)},
              {"archive_bytes", r.archive_bytes},
              {"created_at", Rfc(r.created_at)},
              {"updated_at", Rfc(r.updated_at)},
              {"last_activity_at", Rfc(r.last_activity)}};
}

Json SnapshotJson(const sandbox::SnapshotRecord& s) {
  return Json{{"type", "snapshot"},
              {"name", s.name},
              {"hash", s.hash},
              {"ref", s.Ref()},
              {"env", s.env},
              {"workdir", s.workdir},
              {"user", s.user},
              {"resources", sandbox::ResourcesToJson(s.resources)},
              {"layers", s.layers},
              {"recipe", s.recipe},
              {"created_at", Rfc(s.created_at)}};
}

Json FileJson(const sandbox::FileInfo& f, const std::string& path = "") {
  Json j = {{"type", f.type},     {"name", f.name}, {"size", f.size},
            {"mode", ModeString(f.mode)}, {"uid", f.uid}, {"gid", f.gid},
            {"modified_at", Rfc(f.mtime_micros)}};
  if (!path.empty()) j["path"] = path;
  if (f.type == "symlink") j["link_target"] = f.link_target;
  return j;
}

// A path inside the sandbox: non-empty, no NUL, bounded. Resolution (and
// confinement) is RootFs's job.
Status CheckPath(const std::string& p, std::string_view field) {
  if (p.empty()) return Invalid(field, "must be a non-empty path");
  if (p.size() > 4096) return Invalid(field, "longer than 4096 bytes");
  if (p.find('\0') != std::string::npos) return Invalid(field, "contains a NUL byte");
  return Status::Ok();
}

Result<std::string> PathQuery(const HttpRequest& req) {
  auto p = req.Query("path");
  if (!p) return Invalid("path", "query parameter is required");
  WARREN_RETURN_IF_ERROR(CheckPath(*p, "path"));
  return *p;
}

// Octal permission bits from "0644" / "644" (string) or an integer.
Result<uint32_t> ParseModeText(const std::string& s, std::string_view field) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("01234567") != std::string::npos)
    return Invalid(field, "expected octal permission bits like \"0644\", got '" + s.substr(0, 32) + "'");
  uint32_t v = static_cast<uint32_t>(std::stoul(s, nullptr, 8));
  if (v > 07777) return Invalid(field, "permission bits must be at most 07777");
  return v;
}

Result<uint32_t> ReadMode(const Json& obj, const char* key, uint32_t def, bool required) {
  if (!obj.contains(key) || obj[key].is_null()) {
    if (required) return Invalid(key, "is required");
    return def;
  }
  const Json& v = obj[key];
  if (v.is_string()) return ParseModeText(v.get<std::string>(), key);
  if (v.is_number_integer()) {
    int64_t n = v.get<int64_t>();
    if (n < 0 || n > 07777) return Invalid(key, "permission bits must be 0..4095 (07777)");
    return static_cast<uint32_t>(n);
  }
  return Invalid(key, "expected an octal string like \"0644\" or an integer");
}

// A JSON object of string -> string (labels, env).
Result<std::map<std::string, std::string>> ReadStringMap(const Json& obj, const char* key, size_t max_items,
                                                         size_t max_key, size_t max_value) {
  std::map<std::string, std::string> out;
  if (!obj.contains(key) || obj[key].is_null()) return out;
  const Json& m = obj[key];
  if (!m.is_object()) return Invalid(key, "expected an object of string values");
  if (m.size() > max_items) return Invalid(key, "at most " + std::to_string(max_items) + " entries");
  for (auto it = m.begin(); it != m.end(); ++it) {
    std::string p = api::JoinPath(key, it.key());
    if (it.key().empty() || it.key().size() > max_key)
      return Invalid(p, "keys must be 1.." + std::to_string(max_key) + " characters");
    if (!it.value().is_string()) return Invalid(p, "expected a string, got " + std::string(JsonTypeName(it.value())));
    if (it.value().get<std::string>().size() > max_value)
      return Invalid(p, "at most " + std::to_string(max_value) + " characters");
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

Status CheckLabels(const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : labels) {
    for (char c : k) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '/')
        return Invalid(api::JoinPath("labels", k), "keys may contain letters, digits, '-', '_', '.', '/' only");
    }
  }
  return Status::Ok();
}

// env as {"K":"v"} -> ["K=v"]; keys must be shell-like names.
Result<std::vector<std::string>> ReadEnv(const Json& obj) {
  WARREN_ASSIGN_OR_RETURN(auto m, ReadStringMap(obj, "env", 256, 256, 32768));
  std::vector<std::string> out;
  for (const auto& [k, v] : m) {
    if (k.find('=') != std::string::npos || std::isdigit(static_cast<unsigned char>(k[0])))
      return Invalid(api::JoinPath("env", k), "not a valid variable name");
    out.push_back(k + "=" + v);
  }
  return out;
}

Result<std::vector<std::string>> ReadStringArray(const Json& obj, const char* key, size_t max_items) {
  std::vector<std::string> out;
  const Json& a = obj[key];
  if (!a.is_array()) return Invalid(key, "expected an array of strings");
  if (a.empty() || a.size() > max_items) return Invalid(key, "expected 1.." + std::to_string(max_items) + " entries");
  for (size_t i = 0; i < a.size(); i++) {
    if (!a[i].is_string()) return Invalid(api::IndexPath(key, i), "expected a string");
    if (a[i].get<std::string>().find('\0') != std::string::npos)
      return Invalid(api::IndexPath(key, i), "contains a NUL byte");
    out.push_back(a[i].get<std::string>());
  }
  return out;
}

Result<sandbox::Resources> ReadResources(const Json& body) {
  sandbox::Resources r;
  if (!body.contains("resources") || body["resources"].is_null()) return r;
  const Json& j = body["resources"];
  WARREN_RETURN_IF_ERROR(api::ExpectObject(j, "resources"));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(j, {"cpus", "memory_bytes", "pids", "disk_bytes"}, "resources"));
  if (j.contains("cpus") && !j["cpus"].is_null()) {
    if (!j["cpus"].is_number()) return Invalid("resources.cpus", "expected a number of cores");
    double c = j["cpus"].get<double>();
    if (c < 0 || c > 1024) return Invalid("resources.cpus", "must be 0..1024 (0 = the snapshot's default)");
    r.cpus = c;
  }
  std::optional<int64_t> v;
  WARREN_RETURN_IF_ERROR(api::ReadInt(j, "memory_bytes", "resources", 0, int64_t{1} << 50, &v));
  if (v) r.memory_bytes = *v;
  if (r.memory_bytes != 0 && r.memory_bytes < (4 << 20))
    return Invalid("resources.memory_bytes", "must be 0 (default) or at least 4194304 (4 MiB)");
  v.reset();
  WARREN_RETURN_IF_ERROR(api::ReadInt(j, "pids", "resources", 0, 1 << 22, &v));
  if (v) r.pids = *v;
  v.reset();
  WARREN_RETURN_IF_ERROR(api::ReadInt(j, "disk_bytes", "resources", 0, int64_t{1} << 50, &v));
  if (v) r.disk_bytes = *v;
  return r;
}

Result<std::vector<sandbox::VolumeMount>> ReadVolumes(const Json& body) {
  std::vector<sandbox::VolumeMount> out;
  if (!body.contains("volumes") || body["volumes"].is_null()) return out;
  const Json& a = body["volumes"];
  if (!a.is_array()) return Invalid("volumes", "expected an array");
  if (a.size() > 32) return Invalid("volumes", "at most 32 entries");
  for (size_t i = 0; i < a.size(); i++) {
    std::string p = api::IndexPath("volumes", i);
    WARREN_RETURN_IF_ERROR(api::ExpectObject(a[i], p));
    WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(a[i], {"volume", "path", "subpath", "read_only"}, p));
    std::optional<std::string> vol, path, sub;
    std::optional<bool> ro;
    WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "volume", p, {.required = true, .min = 1, .max = 128}, &vol));
    WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "path", p, {.required = true, .min = 1, .max = 4096}, &path));
    WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "subpath", p, {.max = 4096}, &sub));
    WARREN_RETURN_IF_ERROR(api::ReadBool(a[i], "read_only", p, &ro));
    if ((*path)[0] != '/') return Invalid(api::JoinPath(p, "path"), "must be an absolute path");
    out.push_back({*vol, *path, sub.value_or(""), ro.value_or(false)});
  }
  return out;
}

// "network": "none" | "isolated" | "limited" | {"type", "allow_cidrs",
// "block_all", "dns", "allow_hosts"}. CIDR, address and host pattern syntax
// is checked by the runtime.
Status ReadNetwork(const Json& body, sandbox::CreateOptions* o) {
  if (!body.contains("network") || body["network"].is_null()) return Status::Ok();
  const Json& n = body["network"];
  auto check_type = [](const std::string& t, std::string_view field) -> Status {
    if (t != "none" && t != "isolated" && t != "limited")
      return Invalid(field, "must be \"none\", \"isolated\" or \"limited\"");
    return Status::Ok();
  };
  if (n.is_string()) {
    WARREN_RETURN_IF_ERROR(check_type(n.get<std::string>(), "network"));
    o->network = n.get<std::string>();
    return Status::Ok();
  }
  if (!n.is_object()) return Invalid("network", "expected \"none\", \"isolated\", \"limited\" or an object");
  WARREN_RETURN_IF_ERROR(
      api::ExpectKnownFields(n, {"type", "allow_cidrs", "block_all", "dns", "allow_hosts"}, "network"));
  std::optional<std::string> type;
  WARREN_RETURN_IF_ERROR(api::ReadString(n, "type", "network", {.required = true, .min = 1, .max = 32}, &type));
  WARREN_RETURN_IF_ERROR(check_type(*type, "network.type"));
  o->network = *type;
  if (n.contains("allow_hosts") && !n["allow_hosts"].is_null()) {
    const Json& a = n["allow_hosts"];
    if (!a.is_array() || a.size() > 1024) return Invalid("network.allow_hosts", "expected an array of at most 1024 host names");
    for (size_t i = 0; i < a.size(); i++) {
      if (!a[i].is_string() || a[i].get<std::string>().size() > 255)
        return Invalid(api::IndexPath("network.allow_hosts", i), "expected a host name");
      o->allow_hosts.push_back(a[i].get<std::string>());
    }
  }
  for (const char* key : {"allow_cidrs", "dns"}) {
    if (!n.contains(key) || n[key].is_null()) continue;
    const Json& a = n[key];
    std::string p = api::JoinPath("network", key);
    if (!a.is_array()) return Invalid(p, "expected an array of strings");
    std::vector<std::string> v;
    for (size_t i = 0; i < a.size(); i++) {
      if (!a[i].is_string() || a[i].get<std::string>().size() > 64) return Invalid(api::IndexPath(p, i), "expected an address string");
      v.push_back(a[i].get<std::string>());
    }
    if (std::string(key) == "dns") o->dns = std::move(v);
    else o->allow_cidrs = std::move(v);
  }
  std::optional<bool> block_all;
  WARREN_RETURN_IF_ERROR(api::ReadBool(n, "block_all", "network", &block_all));
  o->block_all = block_all.value_or(false);
  if (o->network == "none" && (o->block_all || !o->allow_cidrs.empty() || !o->dns.empty()))
    return Invalid("network", "allow_cidrs, block_all and dns apply to the \"isolated\" and \"limited\" types only");
  if (o->network != "limited" && !o->allow_hosts.empty())
    return Invalid("network.allow_hosts", "applies to the \"limited\" type only");
  return Status::Ok();
}

bool IsGone(const sandbox::SandboxRecord& r) {
  return r.deleted || r.state == sandbox::SandboxState::kDestroyed;
}

// Loads a live sandbox (404 for unknown or deleted ones).
Result<sandbox::SandboxRecord> Live(SandboxRuntime* rt, const std::string& id) {
  auto r = rt->Get(id);
  if (!r.ok()) {
    if (r.status().code() == Code::kNotFound) return Status::NotFound("sandbox " + id + " not found");
    return r.status();
  }
  if (IsGone(*r)) return Status::NotFound("sandbox " + id + " not found");
  return r;
}

// Ids and names in a URL: letters, digits and "-_.:@" (never a path).
Status CheckId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return Status::NotFound("sandbox not found");
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ':' && c != '@')
      return Status::NotFound("sandbox " + id.substr(0, 128) + " not found");
  return Status::Ok();
}

HandlerResult Json200(const Json& j) { return api::ApiService::JsonResult(j); }

// An empty-or-object body for the lifecycle verbs.
Result<Json> OptionalBody(const HttpRequest& req, std::initializer_list<std::string_view> allowed) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req, /*allow_empty=*/true));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, allowed, ""));
  return body;
}

bool WantsEventStream(const HttpRequest& req, const Json& body) {
  if (body.contains("stream") && body["stream"].is_boolean() && body["stream"].get<bool>()) return true;
  const std::string* accept = req.headers.Find("accept");
  return accept && accept->find("text/event-stream") != std::string::npos;
}

Json ErrorEvent(const Status& s) {
  int code = api::HttpStatusFor(s.code());
  std::string msg = s.code() == Code::kIOError || s.code() == Code::kInternal ? "internal server error" : s.message();
  return Json{{"type", "error"}, {"error", {{"type", api::ErrorTypeFor(code)}, {"message", msg}}}};
}

// The fields of a create body (also accepted by prepare), for ExpectKnownFields.
#define WARREN_CREATE_FIELDS                                                                           \
  "snapshot", "name", "labels", "env", "resources", "network", "user", "workdir", "volumes", \
      "auto_stop_minutes", "auto_archive_minutes", "auto_delete_minutes", "start"

// The sandbox fields of a create (or prepare) body; unknown fields are the
// caller's check.
Status ReadCreateOptions(const Json& body, sandbox::CreateOptions* out) {
  sandbox::CreateOptions& o = *out;
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "snapshot", "", {.nullable = true, .min = 1, .max = 256}, &s));
  if (s) o.snapshot = *s;
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "name", "", {.nullable = true, .min = 1, .max = 63}, &s));
  if (s) o.name = *s;
  WARREN_ASSIGN_OR_RETURN(o.labels, ReadStringMap(body, "labels", 64, 128, 512));
  WARREN_RETURN_IF_ERROR(CheckLabels(o.labels));
  WARREN_ASSIGN_OR_RETURN(o.env, ReadEnv(body));
  WARREN_ASSIGN_OR_RETURN(o.resources, ReadResources(body));
  WARREN_RETURN_IF_ERROR(ReadNetwork(body, &o));
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "user", "", {.nullable = true, .min = 1, .max = 64}, &s));
  if (s) o.user = *s;
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "workdir", "", {.nullable = true, .min = 1, .max = 4096}, &s));
  if (s) {
    if ((*s)[0] != '/') return Invalid("workdir", "must be an absolute path");
    o.workdir = *s;
  }
  WARREN_ASSIGN_OR_RETURN(o.volumes, ReadVolumes(body));
  std::optional<int64_t> minutes;
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "auto_stop_minutes", "", 0, 60 * 24 * 365, &minutes));
  if (minutes) o.auto_stop_minutes = *minutes;
  minutes.reset();
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "auto_archive_minutes", "", 0, 60 * 24 * 365, &minutes));
  if (minutes) o.auto_archive_minutes = *minutes;
  minutes.reset();
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "auto_delete_minutes", "", sandbox::kNeverDelete, 60 * 24 * 365, &minutes));
  if (minutes) o.auto_delete_minutes = *minutes;
  std::optional<bool> start;
  WARREN_RETURN_IF_ERROR(api::ReadBool(body, "start", "", &start));
  o.start = start.value_or(true);
  return Status::Ok();
}

}  // namespace

// ============================================================== SandboxApi

SandboxApi::SandboxApi(api::ApiService* service, SandboxApiOptions options)
    : service_(service),
      options_(std::move(options)),
      runtime_(options_.enabled, options_.runtime),
      executor_(options_.long_call_threads, options_.long_call_queue) {
  RegisterRoutes();
}

SandboxApi::~SandboxApi() { Stop(); }

void SandboxApi::StartIdleTicker(std::chrono::milliseconds interval) {
  ticker_ = std::thread([this, interval] {
    std::unique_lock<std::mutex> lock(ticker_mu_);
    while (!ticker_cv_.wait_for(lock, interval, [this] { return ticker_stop_; })) {
      lock.unlock();
      if (SandboxRuntime* rt = runtime_.IfOpen()) {
        auto report = rt->EnforceIdlePolicies();
        if (!report.ok()) {
          log::Warn("sandbox_api.idle_tick_failed", {{"error", report.status().ToString()}});
        } else if (!report->stopped.empty() || !report->archived.empty() || !report->deleted.empty()) {
          log::Info("sandbox_api.idle_sweep", report->ToJson());
        }
      }
      lock.lock();
    }
  });
}

void SandboxApi::Stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(ticker_mu_);
    ticker_stop_ = true;
  }
  ticker_cv_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  executor_.Stop();
  {
    // Programs of terminals still open are killed.
    std::lock_guard<std::mutex> lock(pump_mu_);
    pump_.reset();
  }
  runtime_.Close();
}

http::HandlerResult SandboxApi::Error(const Status& s, const HttpRequest& req) const {
  // The sandbox API answers state conflicts with 409 and an unavailable
  // runtime with 503 (the Managed Agents mapping uses 412 and 529).
  if (s.code() == Code::kFailedPrecondition) return api::ApiService::ErrorResult(Status::Conflict(s.message()), req);
  if (s.code() == Code::kUnavailable) {
    HandlerResult r;
    r.response = api::RenderError(503, api::ErrorTypeFor(503), s.message(), req.request_id);
    return r;
  }
  if (s.code() == Code::kResourceExhausted) {
    HandlerResult r;
    r.response = api::RenderError(507, "api_error", s.message(), req.request_id);
    return r;
  }
  return api::ApiService::ErrorResult(s, req);
}

Result<SandboxRuntime*> SandboxApi::Admit(const HttpRequest& req) {
  WARREN_ASSIGN_OR_RETURN(api::Principal p, service_->Authenticate(req));
  WARREN_RETURN_IF_ERROR(api::RequireOrg(p));
  return runtime_.Get();
}

Result<SandboxRuntime*> SandboxApi::AdmitRoute(const HttpRequest& req, const Params& params) {
  WARREN_ASSIGN_OR_RETURN(SandboxRuntime * rt, Admit(req));
  if (auto it = params.find("id"); it != params.end()) WARREN_RETURN_IF_ERROR(CheckId(it->second));
  if (auto it = params.find("name"); it != params.end()) {
    if (!CheckId(it->second).ok()) return Status::NotFound("snapshot " + it->second.substr(0, 128) + " not found");
  }
  return rt;
}

void SandboxApi::Route(const char* method, const char* pattern, Fn fn) {
  service_->router().Add(method, pattern, [this, fn](HttpRequest& req, const Params& params) -> HandlerResult {
    auto rt = AdmitRoute(req, params);
    if (!rt.ok()) return Error(rt.status(), req);
    auto r = (this->*fn)(req, params, *rt);
    if (!r.ok()) return Error(r.status(), req);
    return std::move(r).value();
  });
}

void SandboxApi::RouteLong(const char* method, const char* pattern, Fn fn) {
  service_->router().Add(method, pattern, [this, fn](HttpRequest& req, const Params& params) -> HandlerResult {
    auto rt = AdmitRoute(req, params);
    if (!rt.ok()) return Error(rt.status(), req);
    // The whole handler runs on the executor, on a copy of the request.
    return Defer(req, std::chrono::hours(25),
                 [this, fn, copy = req, params, runtime = *rt](const CancelToken&) mutable -> HandlerResult {
                   auto r = (this->*fn)(copy, params, runtime);
                   if (!r.ok()) return Error(r.status(), copy);
                   return std::move(r).value();
                 });
  });
}

HandlerResult SandboxApi::Defer(const HttpRequest& req, std::chrono::milliseconds timeout,
                                std::function<HandlerResult(const CancelToken&)> call) {
  auto resp = std::make_shared<AsyncResponse>(timeout, req.request_id);
  std::string rid = req.request_id;
  Status s = executor_.Submit(
      [resp, rid, call = std::move(call)](const CancelToken& token) {
        if (token->load()) {
          resp->Complete(api::RenderError(503, api::ErrorTypeFor(503), "the sandbox API is shutting down", rid));
          return;
        }
        try {
          HandlerResult h = call(token);
          resp->Complete(std::move(h.response));
        } catch (const std::exception& e) {
          log::Error("sandbox_api.call_exception", {{"error", e.what()}});
          resp->Complete(api::RenderError(500, "api_error", "internal error", rid));
        }
      },
      resp->token());
  if (!s.ok()) return Error(s, req);
  HandlerResult h;
  h.poll = std::move(resp);
  return h;
}

void SandboxApi::RegisterRoutes() {
  constexpr const char* kSb = "/v1/warren/sandboxes/{id}";
  Route("GET", "/v1/warren/features", &SandboxApi::GetFeatures);
  RouteLong("POST", "/v1/warren/sandboxes", &SandboxApi::CreateSandbox);
  RouteLong("POST", "/v1/warren/prepare", &SandboxApi::PrepareSandbox);
  Route("PUT", "/v1/warren/sandboxes/{id}/dataset", &SandboxApi::UploadDataset);
  Route("GET", "/v1/warren/sandboxes", &SandboxApi::ListSandboxes);
  Route("GET", kSb, &SandboxApi::GetSandbox);
  RouteLong("DELETE", kSb, &SandboxApi::DeleteSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/start", &SandboxApi::StartSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/stop", &SandboxApi::StopSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/pause", &SandboxApi::PauseSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/resume", &SandboxApi::ResumeSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/archive", &SandboxApi::ArchiveSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/restore", &SandboxApi::RestoreSandbox);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/fork", &SandboxApi::ForkSandbox);
  Route("GET", "/v1/warren/sandboxes/{id}/tree", &SandboxApi::SandboxTree);
  Route("PUT", "/v1/warren/sandboxes/{id}/labels", &SandboxApi::PutLabels);
  Route("PUT", "/v1/warren/sandboxes/{id}/network", &SandboxApi::PutNetwork);
  Route("GET", "/v1/warren/sandboxes/{id}/stats", &SandboxApi::SandboxStats);
  Route("POST", "/v1/warren/sandboxes/{id}/exec", &SandboxApi::Exec);
  Route("POST", "/v1/warren/sandboxes/{id}/terminal_tickets", &SandboxApi::CreateTerminalTicket);
  // No API key here (browsers cannot set headers on a WebSocket): the
  // single-use ticket is the credential.
  service_->router().Add("GET", "/v1/warren/sandboxes/{id}/terminal",
                         [this](HttpRequest& req, const Params& params) { return OpenTerminal(req, params); });
  Route("POST", "/v1/warren/sandboxes/{id}/sessions", &SandboxApi::CreateSession);
  Route("GET", "/v1/warren/sandboxes/{id}/sessions", &SandboxApi::ListSessions);
  Route("GET", "/v1/warren/sandboxes/{id}/sessions/{sid}", &SandboxApi::GetSession);
  Route("DELETE", "/v1/warren/sandboxes/{id}/sessions/{sid}", &SandboxApi::DeleteSession);
  RouteLong("POST", "/v1/warren/sandboxes/{id}/sessions/{sid}/exec", &SandboxApi::SessionExec);
  Route("GET", "/v1/warren/sandboxes/{id}/sessions/{sid}/commands/{cid}", &SandboxApi::GetCommand);
  Route("POST", "/v1/warren/sandboxes/{id}/sessions/{sid}/commands/{cid}/input", &SandboxApi::SendInput);
  Route("GET", "/v1/warren/sandboxes/{id}/files", &SandboxApi::ListFiles);
  Route("DELETE", "/v1/warren/sandboxes/{id}/files", &SandboxApi::DeleteFile);
  Route("GET", "/v1/warren/sandboxes/{id}/files/stat", &SandboxApi::StatFile);
  Route("GET", "/v1/warren/sandboxes/{id}/files/content", &SandboxApi::Download);
  Route("PUT", "/v1/warren/sandboxes/{id}/files/content", &SandboxApi::UploadSmall);
  service_->router().AddUpload("PUT", "/v1/warren/sandboxes/{id}/files/content",
                               [this](HttpRequest& head, const Params& params) { return UploadRoute(head, params); });
  Route("POST", "/v1/warren/sandboxes/{id}/files/mkdir", &SandboxApi::Mkdir);
  Route("POST", "/v1/warren/sandboxes/{id}/files/move", &SandboxApi::Move);
  Route("POST", "/v1/warren/sandboxes/{id}/files/chmod", &SandboxApi::Chmod);
  Route("POST", "/v1/warren/snapshots", &SandboxApi::BuildSnapshot);
  Route("GET", "/v1/warren/snapshots", &SandboxApi::ListSnapshots);
  Route("GET", "/v1/warren/snapshots/{name}", &SandboxApi::GetSnapshot);
  Route("DELETE", "/v1/warren/snapshots/{name}", &SandboxApi::DeleteSnapshot);
  Route("POST", "/v1/warren/volumes", &SandboxApi::CreateVolume);
  Route("GET", "/v1/warren/volumes", &SandboxApi::ListVolumes);
  Route("GET", "/v1/warren/volumes/{name}", &SandboxApi::GetVolume);
  Route("DELETE", "/v1/warren/volumes/{name}", &SandboxApi::DeleteVolume);
}

// ------------------------------------------------------- shell sessions
// Persistent shells owned by this server's runtime (docs/SANDBOX_API.md):
// they live as long as `warren serve` and end with the sandbox's stop.

namespace {

// Session and command ids in a URL or body: 1-64 of [A-Za-z0-9_.-].
Status CheckName(const std::string& v, const char* what) {
  if (v.empty() || v.size() > 64 || v == "." || v == "..")
    return Status::InvalidArgument(std::string(what) + " must be 1-64 characters of letters, digits, '_', '-', '.'");
  for (char c : v)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return Status::InvalidArgument(std::string(what) + " must be 1-64 characters of letters, digits, '_', '-', '.'");
  return Status::Ok();
}

Json SessionJson(const sandbox::SessionInfo& s) {
  Json j = s.ToJson();
  j["type"] = "sandbox_session";
  return j;
}

Json CommandJson(const sandbox::CommandInfo& c) {
  Json j = c.ToJson();
  j["type"] = "sandbox_command";
  return j;
}

}  // namespace

Result<HandlerResult> SandboxApi::CreateSession(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, OptionalBody(req, {"session_id", "user", "cwd", "env"}));
  std::optional<std::string> sid, s;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "session_id", "", {.required = true, .min = 1, .max = 64}, &sid));
  if (Status st = CheckName(*sid, "session_id"); !st.ok()) return Invalid("session_id", st.message());
  sandbox::SessionOptions o;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "user", "", {.nullable = true, .min = 1, .max = 64}, &s));
  if (s) o.user = *s;
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "cwd", "", {.nullable = true, .min = 1, .max = 4096}, &s));
  if (s) {
    if ((*s)[0] != '/') return Invalid("cwd", "must be an absolute path");
    o.cwd = *s;
  }
  WARREN_ASSIGN_OR_RETURN(o.env, ReadEnv(body));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  if (rec.state != sandbox::SandboxState::kStarted)
    return Status::Conflict("sandbox " + rec.id + " is " + sandbox::StateName(rec.state) + ", not started");
  WARREN_ASSIGN_OR_RETURN(auto info, rt->CreateSession(rec.id, *sid, o));
  return api::ApiService::JsonResult(SessionJson(info), 201);
}

Result<HandlerResult> SandboxApi::ListSessions(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto list, rt->ListSessions(rec.id));
  Json data = Json::array();
  for (const auto& s : list) data.push_back(SessionJson(s));
  return Json200(Json{{"data", data}});
}

Result<HandlerResult> SandboxApi::GetSession(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  if (!CheckName(p.at("sid"), "session id").ok()) return Status::NotFound("session not found");
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto info, rt->GetSession(rec.id, p.at("sid")));
  return Json200(SessionJson(info));
}

Result<HandlerResult> SandboxApi::DeleteSession(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  if (!CheckName(p.at("sid"), "session id").ok()) return Status::NotFound("session not found");
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_RETURN_IF_ERROR(rt->DeleteSession(rec.id, p.at("sid")));
  return Json200(Json{{"id", p.at("sid")}, {"type", "sandbox_session_deleted"}});
}

Result<HandlerResult> SandboxApi::SessionExec(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  if (!CheckName(p.at("sid"), "session id").ok()) return Status::NotFound("session not found");
  WARREN_ASSIGN_OR_RETURN(Json body, OptionalBody(req, {"command", "async", "timeout_ms"}));
  std::optional<std::string> command;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "command", "", {.required = true, .min = 1, .max = 1u << 20}, &command));
  sandbox::SessionExecOptions o;
  std::optional<bool> async;
  WARREN_RETURN_IF_ERROR(api::ReadBool(body, "async", "", &async));
  o.async = async.value_or(false);
  std::optional<int64_t> timeout;
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "timeout_ms", "", 0, int64_t{24} * 3600 * 1000, &timeout));
  o.timeout = std::chrono::milliseconds(timeout.value_or(0));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto cmd, rt->SessionExec(rec.id, p.at("sid"), *command, o));
  return Json200(CommandJson(cmd));
}

Result<HandlerResult> SandboxApi::GetCommand(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  if (!CheckName(p.at("sid"), "session id").ok() || !CheckName(p.at("cid"), "command id").ok())
    return Status::NotFound("command not found");
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto cmd, rt->GetCommand(rec.id, p.at("sid"), p.at("cid")));
  return Json200(CommandJson(cmd));
}

Result<HandlerResult> SandboxApi::SendInput(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  if (!CheckName(p.at("sid"), "session id").ok() || !CheckName(p.at("cid"), "command id").ok())
    return Status::NotFound("command not found");
  WARREN_ASSIGN_OR_RETURN(Json body, OptionalBody(req, {"data"}));
  std::optional<std::string> data;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "data", "", {.required = true, .max = 1u << 20}, &data));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_RETURN_IF_ERROR(rt->SendInput(rec.id, p.at("sid"), p.at("cid"), *data));
  return Json200(Json{{"type", "sandbox_input_sent"}, {"bytes", data->size()}});
}

// ------------------------------------------------------------- sandboxes

Result<HandlerResult> SandboxApi::GetFeatures(HttpRequest&, const Params&, SandboxRuntime* rt) {
  Json j = rt->features().ToJson();
  j["type"] = "features";
  return Json200(j);
}

Result<HandlerResult> SandboxApi::CreateSandbox(HttpRequest& req, const Params&, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req, /*allow_empty=*/true));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {WARREN_CREATE_FIELDS}, ""));
  sandbox::CreateOptions o;
  WARREN_RETURN_IF_ERROR(ReadCreateOptions(body, &o));
  auto rec = rt->Create(o);
  if (!rec.ok()) {
    // An unknown snapshot is the caller's mistake, not a missing route.
    if (rec.status().code() == Code::kNotFound) return Invalid("snapshot", rec.status().message());
    return rec.status();
  }
  return api::ApiService::JsonResult(SandboxJson(*rec), 201);
}

Result<HandlerResult> SandboxApi::ListSandboxes(HttpRequest& req, const Params&, SandboxRuntime* rt) {
  for (const auto& [k, v] : req.query)
    if (k != "label" && k != "state" && k != "limit" && k != "page")
      return Invalid(k, "unknown query parameter (expected label, state, limit, page)");
  std::vector<std::pair<std::string, std::string>> labels;
  for (const auto& l : req.QueryAll("label")) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) return Invalid("label", "expected key=value, got '" + l.substr(0, 64) + "'");
    labels.emplace_back(l.substr(0, eq), l.substr(eq + 1));
  }
  std::optional<sandbox::SandboxState> state;
  if (auto st = req.Query("state")) {
    auto parsed = sandbox::ParseState(*st);
    if (!parsed.ok() || *parsed == sandbox::SandboxState::kDestroyed)
      return Invalid("state", "unknown state '" + st->substr(0, 32) + "'");
    state = *parsed;
  }
  int64_t limit = 20;
  if (auto l = req.Query("limit")) WARREN_RETURN_IF_ERROR(api::ParseIntParam(*l, "limit", 1, 100, &limit));
  // Cursor: (created_at, id) of the last item of the previous page.
  int64_t after_t = -1;
  std::string after_id;
  if (auto p = req.Query("page"); p && !p->empty()) {
    std::string raw;
    if (p->rfind("page_", 0) != 0 || !Base64UrlDecode(p->substr(5), &raw)) return Invalid("page", "invalid page cursor");
    auto c = ParseJson(raw);
    if (!c.ok() || !c->is_object() || !(*c)["t"].is_number_integer() || !(*c)["i"].is_string())
      return Invalid("page", "invalid page cursor");
    after_t = (*c)["t"].get<int64_t>();
    after_id = (*c)["i"].get<std::string>();
  }
  // A keyset page from the runtime: filtered in place and copied only for
  // the records returned (one more than the page: whether another follows),
  // so paging through 10,000 sandboxes costs O(n), not a copy of every
  // record per request (docs/BENCHMARKS.md, idle footprint).
  std::optional<sandbox::RecordKey> after;
  if (after_t >= 0) after = sandbox::RecordKey{after_t, after_id};
  auto match = [&](const sandbox::SandboxRecord& r) {
    if (IsGone(r) || (state && r.state != *state)) return false;
    for (const auto& [k, v] : labels) {
      auto it = r.labels.find(k);
      if (it == r.labels.end() || it->second != v) return false;
    }
    return true;
  };
  WARREN_ASSIGN_OR_RETURN(auto page, rt->ListPage(after, static_cast<size_t>(limit) + 1, match, state));
  Json data = Json::array();
  std::string next;
  for (const auto& r : page) {
    if (static_cast<int64_t>(data.size()) == limit) {
      // Something matching follows the page: hand out a cursor at its end.
      const auto& last = page[static_cast<size_t>(limit) - 1];
      next = "page_" + Base64UrlEncode(DumpJson(Json{{"t", last.created_at}, {"i", last.id}}));
      break;
    }
    data.push_back(SandboxJson(r));
  }
  return Json200(Json{{"data", data}, {"next_page", NullIfEmpty(next)}});
}

Result<HandlerResult> SandboxApi::GetSandbox(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::DeleteSandbox(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_RETURN_IF_ERROR(rt->Delete(rec.id));
  return Json200(Json{{"id", rec.id}, {"type", "sandbox_deleted"}});
}

Result<HandlerResult> SandboxApi::StartSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_RETURN_IF_ERROR(OptionalBody(req, {}).status());
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->Start(rec.id));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::StopSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, OptionalBody(req, {"force"}));
  std::optional<bool> force;
  WARREN_RETURN_IF_ERROR(api::ReadBool(body, "force", "", &force));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->Stop(rec.id, force.value_or(false)));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::PauseSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_RETURN_IF_ERROR(OptionalBody(req, {}).status());
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->Pause(rec.id));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::ResumeSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_RETURN_IF_ERROR(OptionalBody(req, {}).status());
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->Resume(rec.id));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::ArchiveSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_RETURN_IF_ERROR(OptionalBody(req, {}).status());
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->Archive(rec.id));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::RestoreSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_RETURN_IF_ERROR(OptionalBody(req, {}).status());
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->Restore(rec.id));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::ForkSandbox(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, OptionalBody(req, {"count", "disk_bytes"}));
  std::optional<int64_t> count, disk;
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "count", "", 1, 100, &count));
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "disk_bytes", "", 0, int64_t{1} << 50, &disk));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto children,
                          rt->Fork(rec.id, static_cast<int>(count.value_or(1)), disk.value_or(-1)));
  Json data = Json::array();
  for (const auto& c : children) data.push_back(SandboxJson(c));
  return api::ApiService::JsonResult(Json{{"data", data}}, 201);
}

Result<HandlerResult> SandboxApi::SandboxTree(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto tree, rt->Tree(rec.id));
  return Json200(Json{{"type", "sandbox_tree"},
                      {"id", tree.id},
                      {"parent", NullIfEmpty(tree.parent)},
                      {"ancestors", tree.ancestors},
                      {"children", tree.children}});
}

Result<HandlerResult> SandboxApi::PutLabels(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"labels"}, ""));
  if (!body.contains("labels") || !body["labels"].is_object()) return Invalid("labels", "is required (an object)");
  WARREN_ASSIGN_OR_RETURN(auto labels, ReadStringMap(body, "labels", 64, 128, 512));
  WARREN_RETURN_IF_ERROR(CheckLabels(labels));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->SetLabels(rec.id, std::move(labels)));
  return Json200(SandboxJson(rec));
}

// PUT .../{id}/network {"network": <as in create>}: the policy is replaced
// (not merged) and applied to a running sandbox at once (runtime.h
// SetNetwork).
Result<HandlerResult> SandboxApi::PutNetwork(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"network"}, ""));
  if (!body.contains("network") || body["network"].is_null()) {
    return Invalid("network", "is required (\"none\", \"isolated\", \"limited\" or an object)");
  }
  sandbox::CreateOptions o;
  WARREN_RETURN_IF_ERROR(ReadNetwork(body, &o));
  sandbox::NetworkPolicy policy{o.network, o.allow_cidrs, o.block_all, o.dns, o.allow_hosts};
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(rec, rt->SetNetwork(rec.id, policy));
  return Json200(SandboxJson(rec));
}

Result<HandlerResult> SandboxApi::SandboxStats(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(auto st, rt->Stats(rec.id));
  return Json200(Json{{"type", "sandbox_stats"},
                      {"id", rec.id},
                      {"state", sandbox::StateName(rec.state)},
                      {"memory_bytes", st.memory_bytes},
                      {"memory_peak_bytes", st.memory_peak_bytes},
                      {"oom_kills", st.oom_kills},
                      {"pids", st.pids},
                      {"cpu_usage_ns", st.cpu_usage_ns}});
}

Result<HandlerResult> SandboxApi::Exec(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(
      body, {"command", "argv", "cwd", "env", "user", "timeout_ms", "stdin", "stream"}, ""));
  sandbox::ExecRequest x;
  bool has_cmd = body.contains("command") && !body["command"].is_null();
  bool has_argv = body.contains("argv") && !body["argv"].is_null();
  if (has_cmd == has_argv) return Status::InvalidArgument("exactly one of 'command' (a shell string) or 'argv' is required");
  if (has_cmd) {
    std::optional<std::string> cmd;
    WARREN_RETURN_IF_ERROR(api::ReadString(body, "command", "", {.required = true, .min = 1, .max = 1 << 20}, &cmd));
    if (cmd->find('\0') != std::string::npos) return Invalid("command", "contains a NUL byte");
    x.argv = {"/bin/sh", "-c", *cmd};
  } else {
    WARREN_ASSIGN_OR_RETURN(x.argv, ReadStringArray(body, "argv", 4096));
    if (x.argv[0].empty()) return Invalid("argv[0]", "must be a non-empty program name");
  }
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "cwd", "", {.nullable = true, .min = 1, .max = 4096}, &s));
  if (s) {
    if ((*s)[0] != '/') return Invalid("cwd", "must be an absolute path");
    x.cwd = *s;
  }
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "user", "", {.nullable = true, .min = 1, .max = 64}, &s));
  if (s) x.user = *s;
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "stdin", "", {.nullable = true, .max = 16u << 20}, &s));
  if (s) x.stdin_data = *s;
  WARREN_ASSIGN_OR_RETURN(x.env, ReadEnv(body));
  std::optional<int64_t> timeout;
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "timeout_ms", "", 0, int64_t{24} * 3600 * 1000, &timeout));
  x.timeout = std::chrono::milliseconds(timeout.value_or(0));
  std::optional<bool> stream_flag;
  WARREN_RETURN_IF_ERROR(api::ReadBool(body, "stream", "", &stream_flag));

  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  if (rec.state != sandbox::SandboxState::kStarted)
    return Status::Conflict("sandbox " + rec.id + " is " + sandbox::StateName(rec.state) + ", not started");

  if (!WantsEventStream(req, body)) {
    // On the executor; the connection is parked meanwhile. The response
    // gives up (and kills the command) a minute after the command's own
    // timeout, or at shutdown.
    auto deadline = x.timeout.count() > 0 ? x.timeout + std::chrono::minutes(1) : std::chrono::hours(25);
    std::string id = rec.id;
    const size_t cap = options_.max_exec_output_bytes;
    return Defer(req, std::chrono::duration_cast<std::chrono::milliseconds>(deadline),
                 [this, rt, id, cap, x = std::move(x), copy = req](const CancelToken& token) mutable -> HandlerResult {
                   // Collected output, bounded per stream.
                   std::string out, err;
                   bool out_cut = false, err_cut = false;
                   x.on_stdout = [&out, &out_cut, cap](std::string_view d) {
                     size_t room = cap - std::min(cap, out.size());
                     if (d.size() > room) out_cut = true;
                     out.append(d.substr(0, room));
                   };
                   x.on_stderr = [&err, &err_cut, cap](std::string_view d) {
                     size_t room = cap - std::min(cap, err.size());
                     if (d.size() > room) err_cut = true;
                     err.append(d.substr(0, room));
                   };
                   x.cancelled = [token] { return token->load(); };
                   auto r = rt->Exec(id, x);
                   if (!r.ok()) return Error(r.status(), copy);
                   return api::ApiService::JsonResult(Json{{"type", "exec_result"},
                                                           {"exit_code", r->exit_code},
                                                           {"timed_out", r->timed_out},
                                                           {"stdout", out},
                                                           {"stderr", err},
                                                           {"stdout_truncated", out_cut},
                                                           {"stderr_truncated", err_cut}},
                                                      200);
                 });
  }

  // SSE: the command runs on the executor; output frames are queued with
  // back-pressure and pulled by the I/O loop.
  auto es = std::make_shared<EventStream>(options_.max_stream_backlog_bytes);
  std::string id = rec.id;
  WARREN_RETURN_IF_ERROR(executor_.Submit([rt, id, x = std::move(x), es](const CancelToken& token) mutable {
    auto out_carry = std::make_shared<std::string>();
    auto err_carry = std::make_shared<std::string>();
    x.on_stdout = [es, out_carry](std::string_view d) { es->SendText("stdout", out_carry.get(), d); };
    x.on_stderr = [es, err_carry](std::string_view d) { es->SendText("stderr", err_carry.get(), d); };
    // A client that goes away (or server shutdown) kills the command.
    x.cancelled = [es, token] { return es->closed() || token->load(); };
    auto r = rt->Exec(id, x);
    es->SendText("stdout", out_carry.get(), "", /*flush=*/true);
    es->SendText("stderr", err_carry.get(), "", /*flush=*/true);
    if (r.ok()) {
      es->Send("exit", Json{{"type", "exit"}, {"exit_code", r->exit_code}, {"timed_out", r->timed_out}});
    } else {
      Status st = r.status();
      if (st.code() == Code::kFailedPrecondition) st = Status::Conflict(st.message());
      es->Send("error", ErrorEvent(st));
    }
    es->End();
  }));
  HandlerResult h;
  h.stream = es;
  return h;
}

// ----------------------------------------------------------------- files

Result<HandlerResult> SandboxApi::ListFiles(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(std::string path, PathQuery(req));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_ASSIGN_OR_RETURN(auto entries, fs.List(path));
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Json data = Json::array();
  for (const auto& e : entries) data.push_back(FileJson(e));
  return Json200(Json{{"data", data}, {"path", path}});
}

Result<HandlerResult> SandboxApi::StatFile(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(std::string path, PathQuery(req));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_ASSIGN_OR_RETURN(auto info, fs.Stat(path));
  return Json200(FileJson(info, path));
}

Result<HandlerResult> SandboxApi::Download(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(std::string path, PathQuery(req));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, fs.OpenRead(path));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "fstat");
  int64_t size = st.st_size, offset = 0, length = size;
  HandlerResult h;
  h.response.status = 200;
  if (const std::string* range = req.headers.Find("range")) {
    Status rs = ParseRange(*range, size, &offset, &length);
    if (rs.code() == Code::kFailedPrecondition) {
      h.response = api::RenderError(416, "invalid_request_error",
                                    "range not satisfiable for a file of " + std::to_string(size) + " bytes",
                                    req.request_id);
      h.response.headers.Add("content-range", "bytes */" + std::to_string(size));
      return h;
    }
    WARREN_RETURN_IF_ERROR(rs);
    h.response.status = 206;
    h.response.headers.Add("content-range", "bytes " + std::to_string(offset) + "-" +
                                                std::to_string(offset + length - 1) + "/" + std::to_string(size));
  }
  h.response.content_type = "application/octet-stream";
  h.response.headers.Add("accept-ranges", "bytes");
  h.response.headers.Add("x-warren-file-size", std::to_string(size));
  h.body = std::make_shared<FileDownload>(std::move(fd), offset, length);
  return h;
}

// The upload route: decided from the head, before the body is read.
http::BodyRoute SandboxApi::UploadRoute(HttpRequest& head, const Params& params) {
  http::BodyRoute route;
  auto fail = [&](const Status& s) {
    route.reject = Error(s, head).response;
    return route;
  };
  auto rt = Admit(head);
  if (!rt.ok()) return fail(rt.status());
  Status st = CheckId(params.at("id"));
  if (!st.ok()) return fail(st);
  auto path = PathQuery(head);
  if (!path.ok()) return fail(path.status());
  uint32_t mode = 0644;
  if (auto m = head.Query("mode")) {
    auto parsed = ParseModeText(*m, "mode");
    if (!parsed.ok()) return fail(parsed.status());
    mode = *parsed;
  }
  auto rec = Live(*rt, params.at("id"));
  if (!rec.ok()) return fail(rec.status());
  auto fs = (*rt)->Files(rec->id);
  if (!fs.ok()) return fail(fs.status());
  std::string rid = head.request_id;
  std::string shown = *path;
  auto respond = [this, rid, shown, req = head](const Status& s, int64_t bytes) -> HandlerResult {
    if (!s.ok()) return Error(s, req);
    return Json200(Json{{"type", "file_written"}, {"path", shown}, {"size", bytes}});
  };
  auto up = FileUpload::Begin(std::move(*fs), *path, mode, options_.max_upload_bytes, respond);
  if (!up.ok()) return fail(up.status());
  route.sink = *up;
  return route;
}

// A PUT without a body (an empty file) or small enough to have been
// buffered: same path as the streamed upload.
Result<HandlerResult> SandboxApi::UploadSmall(HttpRequest& req, const Params& p, SandboxRuntime*) {
  http::BodyRoute route = UploadRoute(req, p);
  if (route.reject) {
    HandlerResult h;
    h.response = *route.reject;
    return h;
  }
  Status st = Status::Ok();
  if (!req.body.empty()) st = route.sink->Write(req.body);
  return route.sink->Finish(st);
}

Result<HandlerResult> SandboxApi::Mkdir(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"path", "parents", "mode"}, ""));
  std::optional<std::string> path;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "path", "", {.required = true, .min = 1, .max = 4096}, &path));
  WARREN_RETURN_IF_ERROR(CheckPath(*path, "path"));
  std::optional<bool> parents;
  WARREN_RETURN_IF_ERROR(api::ReadBool(body, "parents", "", &parents));
  WARREN_ASSIGN_OR_RETURN(uint32_t mode, ReadMode(body, "mode", 0755, false));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_RETURN_IF_ERROR(fs.Mkdir(*path, parents.value_or(false), mode));
  WARREN_ASSIGN_OR_RETURN(auto info, fs.Stat(*path));
  return api::ApiService::JsonResult(FileJson(info, *path), 201);
}

Result<HandlerResult> SandboxApi::Move(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"from", "to"}, ""));
  std::optional<std::string> from, to;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "from", "", {.required = true, .min = 1, .max = 4096}, &from));
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "to", "", {.required = true, .min = 1, .max = 4096}, &to));
  WARREN_RETURN_IF_ERROR(CheckPath(*from, "from"));
  WARREN_RETURN_IF_ERROR(CheckPath(*to, "to"));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_RETURN_IF_ERROR(fs.Move(*from, *to));
  WARREN_ASSIGN_OR_RETURN(auto info, fs.Stat(*to));
  return Json200(FileJson(info, *to));
}

Result<HandlerResult> SandboxApi::Chmod(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"path", "mode"}, ""));
  std::optional<std::string> path;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "path", "", {.required = true, .min = 1, .max = 4096}, &path));
  WARREN_RETURN_IF_ERROR(CheckPath(*path, "path"));
  WARREN_ASSIGN_OR_RETURN(uint32_t mode, ReadMode(body, "mode", 0, true));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_RETURN_IF_ERROR(fs.Chmod(*path, mode));
  WARREN_ASSIGN_OR_RETURN(auto info, fs.Stat(*path));
  return Json200(FileJson(info, *path));
}

Result<HandlerResult> SandboxApi::DeleteFile(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(std::string path, PathQuery(req));
  bool recursive = false;
  if (auto r = req.Query("recursive")) WARREN_RETURN_IF_ERROR(api::ParseBoolParam(*r, "recursive", &recursive));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs fs, rt->Files(rec.id));
  WARREN_RETURN_IF_ERROR(fs.Delete(path, recursive));
  return Json200(Json{{"type", "file_deleted"}, {"path", path}});
}

// ------------------------------------------------------------- snapshots

Result<HandlerResult> SandboxApi::BuildSnapshot(HttpRequest& req, const Params&, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"name", "recipe", "stream"}, ""));
  std::optional<std::string> name, recipe;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "name", "", {.required = true, .min = 1, .max = 128}, &name));
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "recipe", "", {.required = true, .min = 1, .max = 1 << 20}, &recipe));
  std::optional<bool> stream_flag;
  WARREN_RETURN_IF_ERROR(api::ReadBool(body, "stream", "", &stream_flag));
  if (name->rfind("builtin:", 0) == 0) return Invalid("name", "the builtin: prefix is reserved");
  auto parsed = sandbox::ParseRecipe(*recipe);
  if (!parsed.ok()) return Invalid("recipe", parsed.status().message());
  // Over the API a recipe may not read host paths (FROM dir:/tar:) and has
  // no build context (COPY): an API caller must not be able to import host
  // files. Upload files into a sandbox instead.
  for (const auto& step : parsed->steps) {
    if (step.kind == sandbox::RecipeStep::Kind::kFrom &&
        (step.text.rfind("dir:", 0) == 0 || step.text.rfind("tar:", 0) == 0))
      return Invalid("recipe", "line " + std::to_string(step.line) +
                                   ": FROM dir:/tar: reads host paths and is only allowed from the CLI");
    if (step.kind == sandbox::RecipeStep::Kind::kCopy)
      return Invalid("recipe", "line " + std::to_string(step.line) + ": COPY needs a build context, which the API does not take");
  }
  if (auto existing = rt->GetSnapshot(*name); existing.ok())
    return Status::Conflict("a snapshot named " + *name + " exists; delete it first");

  // An empty context directory (COPY is refused above).
  std::string ctx = rt->options().data_dir + "/api-context-" + NewId("", 12);
  if (::mkdir(ctx.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir build context");

  if (!WantsEventStream(req, body)) {
    auto h = Defer(req, std::chrono::hours(25),
                   [this, rt, n = *name, r = *recipe, ctx, copy = req](const CancelToken&) -> HandlerResult {
                     auto snap = rt->BuildSnapshot(n, r, ctx);
                     ::rmdir(ctx.c_str());
                     if (!snap.ok()) {
                       Status st = snap.status();
                       if (st.code() == Code::kIOError || st.code() == Code::kInternal)
                         st = Status::InvalidArgument("build failed: " + st.message());
                       return Error(st, copy);
                     }
                     return api::ApiService::JsonResult(SnapshotJson(*snap), 201);
                   });
    if (!h.poll) ::rmdir(ctx.c_str());  // not queued (503)
    return h;
  }
  auto es = std::make_shared<EventStream>(options_.max_stream_backlog_bytes);
  Status queued = executor_.Submit([rt, es, n = *name, r = *recipe, ctx](const CancelToken&) {
    auto log = [es](std::string_view line) { es->Send("log", Json{{"type", "log"}, {"line", line}}); };
    auto snap = rt->BuildSnapshot(n, r, ctx, log);
    ::rmdir(ctx.c_str());
    if (snap.ok()) {
      es->Send("snapshot", SnapshotJson(*snap));
    } else {
      Status st = snap.status();
      if (st.code() == Code::kIOError || st.code() == Code::kInternal)
        st = Status::InvalidArgument("build failed: " + st.message());
      es->Send("error", ErrorEvent(st));
    }
    es->End();
  });
  if (!queued.ok()) {
    ::rmdir(ctx.c_str());
    return queued;
  }
  HandlerResult h;
  h.stream = es;
  return h;
}

Result<HandlerResult> SandboxApi::ListSnapshots(HttpRequest&, const Params&, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto all, rt->ListSnapshots());
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Json data = Json::array();
  for (const auto& s : all) data.push_back(SnapshotJson(s));
  return Json200(Json{{"data", data}, {"next_page", nullptr}});
}

Result<HandlerResult> SandboxApi::GetSnapshot(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  auto s = rt->GetSnapshot(p.at("name"));
  if (!s.ok() && s.status().code() == Code::kNotFound) return Status::NotFound("snapshot " + p.at("name") + " not found");
  WARREN_RETURN_IF_ERROR(s.status());
  return Json200(SnapshotJson(*s));
}

Result<HandlerResult> SandboxApi::DeleteSnapshot(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  auto s = rt->GetSnapshot(p.at("name"));
  if (!s.ok() && s.status().code() == Code::kNotFound) return Status::NotFound("snapshot " + p.at("name") + " not found");
  WARREN_RETURN_IF_ERROR(s.status());
  WARREN_RETURN_IF_ERROR(rt->DeleteSnapshot(s->name));
  return Json200(Json{{"name", s->name}, {"type", "snapshot_deleted"}});
}

// ---------------------------------------------------------------- volumes

namespace {

Json VolumeJson(const sandbox::VolumeInfo& v) {
  Json j = v.ToJson();
  j["type"] = "volume";
  return j;
}

}  // namespace

// POST {"name": "...", "size_bytes": N}: size_bytes 0 or absent = no limit
// of its own, else at least 1 MiB (a btrfs qgroup on the volume).
Result<HandlerResult> SandboxApi::CreateVolume(HttpRequest& req, const Params&, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req));
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(body, {"name", "size_bytes"}, ""));
  std::optional<std::string> name;
  std::optional<int64_t> size;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "name", "", {.required = true, .min = 1, .max = 63}, &name));
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "size_bytes", "", 0, int64_t{1} << 50, &size));
  if (size && *size > 0 && *size < sandbox::kMinVolumeBytes) return Invalid("size_bytes", "must be 0 (no limit) or at least 1048576 (1 MiB)");
  auto v = rt->CreateVolume(*name, size.value_or(0));
  if (!v.ok() && v.status().code() == Code::kInvalidArgument) return Invalid("name", v.status().message());
  WARREN_RETURN_IF_ERROR(v.status());
  return api::ApiService::JsonResult(VolumeJson(*v), 201);
}

Result<HandlerResult> SandboxApi::ListVolumes(HttpRequest&, const Params&, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(auto all, rt->ListVolumes());
  Json data = Json::array();
  for (const auto& v : all) data.push_back(VolumeJson(v));
  return Json200(Json{{"data", data}, {"next_page", nullptr}});
}

Result<HandlerResult> SandboxApi::GetVolume(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  auto v = rt->GetVolume(p.at("name"));
  if (!v.ok() && (v.status().code() == Code::kNotFound || v.status().code() == Code::kInvalidArgument))
    return Status::NotFound("volume " + p.at("name") + " not found");
  WARREN_RETURN_IF_ERROR(v.status());
  return Json200(VolumeJson(*v));
}

Result<HandlerResult> SandboxApi::DeleteVolume(HttpRequest&, const Params& p, SandboxRuntime* rt) {
  Status s = rt->DeleteVolume(p.at("name"));
  if (s.code() == Code::kNotFound || s.code() == Code::kInvalidArgument)
    return Status::NotFound("volume " + p.at("name") + " not found");
  WARREN_RETURN_IF_ERROR(s);
  return Json200(Json{{"name", p.at("name")}, {"type", "volume_deleted"}});
}

// ------------------------------------------------------------ preparation

orchestrator::Preparer* SandboxApi::PreparerFor(SandboxRuntime* rt) {
  std::lock_guard<std::mutex> l(preparer_mu_);
  if (!preparer_ || preparer_rt_ != rt) {
    preparer_ = std::make_unique<orchestrator::Preparer>(rt);
    preparer_rt_ = rt;
  }
  return preparer_.get();
}

Result<HandlerResult> SandboxApi::PrepareSandbox(HttpRequest& req, const Params&, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, api::BodyObject(req, /*allow_empty=*/false));
  Json rest = body;
  for (const char* k : {"environment_id", "repositories", "credentials"}) rest.erase(k);
  WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(rest, {WARREN_CREATE_FIELDS}, ""));
  orchestrator::PrepareRequest pr;
  WARREN_RETURN_IF_ERROR(ReadCreateOptions(body, &pr.sandbox));
  std::optional<std::string> env;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "environment_id", "", {.min = 1, .max = 128}, &env));
  if (!env) return Invalid("environment_id", "is required");
  pr.environment_id = *env;
  if (body.contains("repositories") && !body["repositories"].is_null()) {
    const Json& a = body["repositories"];
    if (!a.is_array() || a.size() > 16) return Invalid("repositories", "expected an array of at most 16 objects");
    for (size_t i = 0; i < a.size(); i++) {
      std::string p = api::IndexPath("repositories", i);
      WARREN_RETURN_IF_ERROR(api::ExpectObject(a[i], p));
      WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(
          a[i], {"url", "authorization_token", "username", "branch", "commit", "mount_path"}, p));
      orchestrator::RepoSource r;
      std::optional<std::string> v;
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "url", p, {.min = 1, .max = 2048}, &v));
      if (!v) return Invalid(api::JoinPath(p, "url"), "is required");
      r.url = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "authorization_token", p, {.nullable = true, .min = 1, .max = 4096}, &v));
      if (v) r.token = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "username", p, {.nullable = true, .min = 1, .max = 128}, &v));
      if (v) r.username = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "branch", p, {.nullable = true, .min = 1, .max = 255}, &v));
      if (v) r.branch = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "commit", p, {.nullable = true, .min = 4, .max = 64}, &v));
      if (v) r.commit = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "mount_path", p, {.nullable = true, .min = 1, .max = 4096}, &v));
      if (v) r.path = *v;
      pr.repos.push_back(std::move(r));
    }
  }
  if (body.contains("credentials") && !body["credentials"].is_null()) {
    const Json& a = body["credentials"];
    if (!a.is_array() || a.size() > 64) return Invalid("credentials", "expected an array of at most 64 objects");
    for (size_t i = 0; i < a.size(); i++) {
      std::string p = api::IndexPath("credentials", i);
      WARREN_RETURN_IF_ERROR(api::ExpectObject(a[i], p));
      WARREN_RETURN_IF_ERROR(api::ExpectKnownFields(a[i], {"name", "value", "type", "ttl_seconds"}, p));
      orchestrator::CredentialSpec c;
      std::optional<std::string> v;
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "name", p, {.min = 1, .max = 64}, &v));
      if (!v) return Invalid(api::JoinPath(p, "name"), "is required");
      c.name = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "value", p, {.min = 0, .max = 65536}, &v));
      if (!v) return Invalid(api::JoinPath(p, "value"), "is required");
      c.value = *v;
      v.reset();
      WARREN_RETURN_IF_ERROR(api::ReadString(a[i], "type", p, {.nullable = true, .min = 1, .max = 8}, &v));
      if (v && *v != "file" && *v != "env") return Invalid(api::JoinPath(p, "type"), "must be 'file' or 'env'");
      c.kind = v && *v == "env" ? orchestrator::CredentialSpec::Kind::kEnv : orchestrator::CredentialSpec::Kind::kFile;
      std::optional<int64_t> ttl;
      WARREN_RETURN_IF_ERROR(api::ReadInt(a[i], "ttl_seconds", p, 1, 30LL * 24 * 3600, &ttl));
      if (ttl) c.ttl_seconds = *ttl;
      pr.credentials.push_back(std::move(c));
    }
  }
  pr.allow_host_paths = false;  // no host paths over HTTP (like FROM dir:)
  auto res = PreparerFor(rt)->Prepare(pr);
  if (!res.ok()) {
    if (res.status().code() == Code::kNotFound) return Invalid("snapshot", res.status().message());
    // A clone that git refused (bad URL, bad token, unknown branch) is the
    // caller's to fix.
    if (res.status().code() == Code::kFailedPrecondition) return Invalid("repositories", res.status().message());
    return res.status();
  }
  Json j = res->ToJson();
  j["type"] = "prepared_sandbox";
  j["sandbox"] = SandboxJson(res->sandbox);
  return api::ApiService::JsonResult(j, 201);
}

Result<HandlerResult> SandboxApi::UploadDataset(HttpRequest& req, const Params& params, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(std::string path, PathQuery(req));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, params.at("id")));
  WARREN_RETURN_IF_ERROR(PreparerFor(rt)->LoadDatasetBytes(rec.id, req.body, path));
  return Json200(Json{{"type", "dataset_loaded"}, {"path", path}, {"bytes", req.body.size()}});
}

// ---------------------------------------------------------------- terminal

PtyPump* SandboxApi::Pump() {
  std::lock_guard<std::mutex> lock(pump_mu_);
  if (!pump_ && !stopped_.load()) pump_ = std::make_unique<PtyPump>();
  return pump_.get();
}

Result<HandlerResult> SandboxApi::CreateTerminalTicket(HttpRequest& req, const Params& p, SandboxRuntime* rt) {
  WARREN_ASSIGN_OR_RETURN(Json body, OptionalBody(req, {"cols", "rows", "command", "user", "cwd", "env"}));
  TerminalSpec spec;
  std::optional<int64_t> n;
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "cols", "", 1, 1000, &n));
  if (n) spec.pty.cols = static_cast<uint16_t>(*n);
  n.reset();
  WARREN_RETURN_IF_ERROR(api::ReadInt(body, "rows", "", 1, 1000, &n));
  if (n) spec.pty.rows = static_cast<uint16_t>(*n);
  if (body.contains("command") && !body["command"].is_null()) {
    const Json& c = body["command"];
    if (!c.is_array() || c.empty() || c.size() > 256)
      return Invalid("command", "expected a non-empty array of strings (argv), at most 256");
    for (size_t i = 0; i < c.size(); i++) {
      if (!c[i].is_string() || c[i].get<std::string>().size() > 4096 ||
          c[i].get<std::string>().find('\0') != std::string::npos)
        return Invalid(api::IndexPath("command", i), "expected a string of at most 4096 bytes");
      spec.pty.argv.push_back(c[i].get<std::string>());
    }
    if (spec.pty.argv[0].empty()) return Invalid("command[0]", "the program must not be empty");
  }
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "user", "", {.nullable = true, .min = 1, .max = 64}, &s));
  if (s) spec.pty.user = *s;
  s.reset();
  WARREN_RETURN_IF_ERROR(api::ReadString(body, "cwd", "", {.nullable = true, .min = 1, .max = 4096}, &s));
  if (s) {
    if ((*s)[0] != '/') return Invalid("cwd", "must be an absolute path");
    spec.pty.cwd = *s;
  }
  WARREN_ASSIGN_OR_RETURN(spec.pty.env, ReadEnv(body));
  WARREN_ASSIGN_OR_RETURN(auto rec, Live(rt, p.at("id")));
  if (rec.state != sandbox::SandboxState::kStarted)
    return Status::Conflict("sandbox " + rec.id + " is " + sandbox::StateName(rec.state) +
                            ", not started; a terminal needs a running sandbox");
  spec.sandbox_id = rec.id;
  spec.sandbox_name = rec.name;
  WARREN_ASSIGN_OR_RETURN(auto issued, tickets_.Issue(std::move(spec)));
  return api::ApiService::JsonResult(Json{{"type", "terminal_ticket"},
                                          {"ticket", issued.ticket},
                                          {"sandbox_id", rec.id},
                                          {"expires_at", FormatRfc3339(issued.expires_at_micros)}},
                                     201);
}

HandlerResult SandboxApi::OpenTerminal(HttpRequest& req, const Params& params) {
  // Refusals are plain HTTP answers in the error envelope, before any 101.
  if (!http::IsWebSocketUpgrade(req)) {
    HandlerResult r;
    r.response = api::RenderError(426, "invalid_request_error",
                                  "the terminal is a WebSocket: send Upgrade: websocket (Sec-WebSocket-Version: 13)",
                                  req.request_id);
    r.response.headers.Add("Upgrade", "websocket");
    return r;
  }
  for (const auto& [k, v] : req.query)
    if (k != "ticket") return Error(Invalid(k.substr(0, 64), "unknown query parameter (expected ticket)"), req);
  auto ticket = req.Query("ticket");
  if (!ticket || ticket->empty())
    return Error(Status::Unauthenticated("a terminal needs ?ticket= from POST /v1/warren/sandboxes/{id}/terminal_tickets"),
                 req);
  auto spec = tickets_.Redeem(*ticket, params.at("id"));
  if (!spec.ok()) return Error(spec.status(), req);
  auto rt = runtime_.Get();
  if (!rt.ok()) return Error(rt.status(), req);
  auto rec = Live(*rt, spec->sandbox_id);
  if (!rec.ok()) return Error(rec.status(), req);
  if (rec->state != sandbox::SandboxState::kStarted)
    return Error(Status::Conflict("sandbox " + rec->id + " is " + sandbox::StateName(rec->state) + ", not started"),
                 req);
  PtyPump* pump = Pump();
  if (pump == nullptr) return Error(Status::Unavailable("the server is shutting down"), req);
  if (!pump->status().ok()) return Error(pump->status(), req);
  auto pty = (*rt)->OpenPty(rec->id, spec->pty);
  if (!pty.ok()) {
    // A command that does not exist is the caller's to fix.
    if (pty.status().code() == Code::kNotFound) return Error(Invalid("command", pty.status().message()), req);
    return Error(pty.status(), req);
  }
  log::Info("terminal.open", {{"sandbox_id", rec->id}, {"request_id", req.request_id}});
  HandlerResult r;
  r.websocket = pump->Bridge(std::move(*pty));
  return r;
}

}  // namespace warren::sandbox_api
