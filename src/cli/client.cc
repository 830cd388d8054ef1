#include "cli/client.h"

#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/http_client.h"
#include "common/sse_parser.h"

namespace warren::cli {
namespace {

constexpr const char* kBeta = "managed-agents-2026-04-01";

struct Conn {
  std::string base_url;
  std::string api_key;
  bool json = false;
};

std::string EnvOr(const char* a, const char* b, const std::string& dflt) {
  if (const char* v = std::getenv(a); v && *v) return v;
  if (b != nullptr)
    if (const char* v = std::getenv(b); v && *v) return v;
  return dflt;
}

HttpClient& Http() {
  static std::shared_ptr<HttpClient> client = NewCurlHttpClient();
  return *client;
}

HttpRequest NewRequest(const Conn& c, const std::string& method, const std::string& path) {
  HttpRequest r;
  r.method = method;
  std::string base = c.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  r.url = base + path;
  r.headers = {{"x-api-key", c.api_key}, {"anthropic-version", "2023-06-01"}, {"anthropic-beta", kBeta}};
  r.total_timeout_ms = 60'000;
  return r;
}

// A non-2xx answer as a Status carrying the service's error envelope.
Status ApiError(const HttpResponse& resp) {
  std::string msg = "HTTP " + std::to_string(resp.status);
  auto j = ParseJson(resp.body);
  if (j.ok() && j->is_object() && j->contains("error") && (*j)["error"].is_object()) {
    const Json& e = (*j)["error"];
    msg += " " + e.value("type", std::string()) + ": " + e.value("message", std::string());
    if (j->contains("request_id") && (*j)["request_id"].is_string())
      msg += " (request " + (*j)["request_id"].get<std::string>() + ")";
  } else if (!resp.body.empty()) {
    msg += ": " + resp.body.substr(0, 300);
  }
  if (resp.status == 401 || resp.status == 403) return Status::PermissionDenied(msg);
  if (resp.status == 404) return Status::NotFound(msg);
  if (resp.status == 409) return Status::Conflict(msg);
  if (resp.status >= 400 && resp.status < 500) return Status::InvalidArgument(msg);
  return Status::Unavailable(msg);
}

Result<Json> Call(const Conn& c, const std::string& method, const std::string& path, const Json& body = nullptr) {
  HttpRequest req = NewRequest(c, method, path);
  if (!body.is_null()) req.body = DumpJson(body);
  WARREN_ASSIGN_OR_RETURN(HttpResponse resp, Http().Send(req));
  if (resp.status < 200 || resp.status >= 300) return ApiError(resp);
  if (resp.body.empty()) return Json(nullptr);
  return ParseJson(resp.body);
}

// Every item of a paged list (`data` + `next_page`).
Result<std::vector<Json>> ListAll(const Conn& c, const std::string& path, size_t max_items = 10'000) {
  std::vector<Json> out;
  std::string page;
  for (;;) {
    std::string sep = path.find('?') == std::string::npos ? "?" : "&";
    WARREN_ASSIGN_OR_RETURN(Json j, Call(c, "GET", path + sep + "limit=100" + (page.empty() ? "" : "&page=" + page)));
    if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
      return Status::Internal("unexpected list answer from " + path);
    for (Json& item : j["data"]) out.push_back(std::move(item));
    if (!j.contains("next_page") || !j["next_page"].is_string() || out.size() >= max_items) break;
    page = j["next_page"].get<std::string>();
  }
  return out;
}

std::string Truncate(std::string s, size_t n) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  if (s.size() > n) s = s.substr(0, n) + "…";
  return s;
}

std::string TextOf(const Json& content) {
  std::string out;
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return out;
  for (const Json& b : content) {
    if (!b.is_object()) continue;
    if (b.value("type", std::string()) == "text" && b.contains("text") && b["text"].is_string()) {
      if (!out.empty()) out += "\n";
      out += b["text"].get<std::string>();
    } else if (b.contains("type")) {
      if (!out.empty()) out += "\n";
      out += "[" + b.value("type", std::string()) + "]";
    }
  }
  return out;
}

std::string Str(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// Prints `j` in the output mode: the id alone, or the whole object.
void PrintObject(const Conn& c, const Json& j) {
  if (c.json) std::cout << DumpJson(j) << "\n";
  else std::cout << Str(j, "id") << "\n";
}

int Report(const Status& s) {
  std::cerr << "warren: " << s.ToString() << "\n";
  return 1;
}

Status SendEvents(const Conn& c, const std::string& sid, const Json& events) {
  return Call(c, "POST", "/v1/sessions/" + sid + "/events", Json{{"events", events}}).status();
}

Json UserMessage(const std::string& text) {
  return {{"type", "user.message"}, {"content", Json::array({{{"type", "text"}, {"text", text}}})}};
}

// ------------------------------------------------------------------ watching

struct WatchOptions {
  bool until_idle = false;     // return at the first idle that is not requires_action
  bool interactive = false;    // ask about always_ask calls on the terminal
  std::function<void()> on_open;  // after the stream's headers arrived
};

// Outcome of a watch: the stop reason of the idle that ended it ("" when the
// stream ended otherwise), and pending calls nobody answered.
struct WatchEnd {
  std::string stop_reason;
  std::vector<std::string> unanswered;
};

// Streams the session's events to stdout until the stream ends, or (with
// until_idle) the session idles for a reason other than requires_action, or
// requires_action leaves calls this terminal cannot answer.
Result<WatchEnd> Watch(const Conn& c, const std::string& sid, const WatchOptions& opts) {
  WatchEnd end;
  std::map<std::string, Json> uses;  // tool-use event id -> event
  std::set<std::string> answered;
  bool done = false;
  Status inner = Status::Ok();
  CancelToken cancel;
  std::set<std::string> printed;  // a queued user event is echoed again once processed
  auto handle = [&](const Json& ev) {
    const std::string type = Str(ev, "type");
    if (type == "ping") return;
    if (c.json) {
      std::cout << DumpJson(ev) << "\n" << std::flush;
    } else if (printed.insert(Str(ev, "id")).second || Str(ev, "id").empty()) {
      std::string line = FormatEventLine(ev, sid);
      if (!line.empty()) std::cout << line << "\n" << std::flush;
    }
    if (type == "agent.tool_use" || type == "agent.custom_tool_use" || type == "agent.mcp_tool_use")
      uses[Str(ev, "id")] = ev;
    if (type == "user.tool_confirmation") answered.insert(Str(ev, "tool_use_id"));
    if (type == "session.status_terminated" || type == "session.deleted") {
      end.stop_reason = type;
      done = true;
    }
    if (type != "session.status_idle" || !opts.until_idle) return;
    const Json sr = ev.contains("stop_reason") ? ev["stop_reason"] : Json::object();
    const std::string reason = Str(sr, "type");
    if (reason != "requires_action") {
      end.stop_reason = reason;
      done = true;
      return;
    }
    // requires_action: answer the confirmations we can, report the rest.
    std::vector<std::string> ids;
    if (sr.contains("event_ids") && sr["event_ids"].is_array())
      for (const Json& id : sr["event_ids"])
        if (id.is_string()) ids.push_back(id.get<std::string>());
    Json confirmations = Json::array();
    std::vector<std::string> rest;
    for (const std::string& id : ids) {
      auto it = uses.find(id);
      // A built-in call already allowed is a worker's to answer (the
      // orchestrator's sandbox runner on cloud environments): keep watching.
      if (it != uses.end() && Str(it->second, "type") == "agent.tool_use" &&
          (Str(it->second, "evaluated_permission") == "allow" || answered.count(id)))
        continue;
      bool askable = it != uses.end() && Str(it->second, "type") != "agent.custom_tool_use" &&
                     Str(it->second, "evaluated_permission") == "ask" && !answered.count(id);
      if (!askable || !opts.interactive) {
        rest.push_back(id);
        continue;
      }
      const Json& use = it->second;
      std::cerr << "approve " << Str(use, "name") << " " << Truncate(DumpJson(use.value("input", Json::object())), 300)
                << "? [y/N] " << std::flush;
      std::string answer;
      if (!std::getline(std::cin, answer)) answer.clear();
      bool yes = !answer.empty() && (answer[0] == 'y' || answer[0] == 'Y');
      Json conf = {{"type", "user.tool_confirmation"}, {"tool_use_id", id}, {"result", yes ? "allow" : "deny"}};
      if (!yes) conf["deny_message"] = "denied at the terminal";
      confirmations.push_back(conf);
      answered.insert(id);
    }
    if (!confirmations.empty()) {
      Status s = SendEvents(c, sid, confirmations);
      if (!s.ok()) {
        inner = s;
        done = true;
        return;
      }
    }
    if (!rest.empty() && confirmations.empty()) {
      end.stop_reason = reason;
      end.unanswered = rest;
      done = true;
    }
  };

  SseParser parser([&](const SseEvent& e) {
    if (done || e.data.empty()) return;
    auto j = ParseJson(e.data);
    if (!j.ok() || !j->is_object()) return;
    if (Str(*j, "type") == "error" || j->contains("error")) {
      inner = Status::Unavailable("stream error: " + e.data.substr(0, 300));
      done = true;
      return;
    }
    handle(*j);
  });
  HttpRequest req = NewRequest(c, "GET", "/v1/sessions/" + sid + "/events/stream");
  req.headers.emplace_back("accept", "text/event-stream");
  req.total_timeout_ms = 0;
  req.idle_timeout_ms = 0;
  HttpResponse head;
  StreamHandlers h;
  h.on_headers = [&](const HttpResponse& r) {
    head = r;
    if (r.status != 200) return true;  // body is the error envelope
    if (opts.on_open) opts.on_open();
    return true;
  };
  std::string error_body;
  h.on_data = [&](std::string_view chunk) {
    if (head.status != 200) {
      error_body.append(chunk);
      return error_body.size() < 65536;
    }
    parser.Feed(chunk);
    return !done;
  };
  auto r = Http().Stream(req, h, &cancel);
  if (head.status != 0 && head.status != 200) {
    head.body = error_body;
    return ApiError(head);
  }
  if (!inner.ok()) return inner;
  if (!r.ok() && !(done && r.status().code() == Code::kCancelled)) return r.status();
  return end;
}

// Exit code of a finished turn: 0 end_turn, 3 waiting for answers this
// terminal could not give, 4 any other stop reason.
int TurnExit(const Conn& c, const std::string& sid, const WatchEnd& end) {
  if (end.stop_reason == "end_turn") return 0;
  if (!end.unanswered.empty()) {
    std::cerr << "warren: the session waits for " << end.unanswered.size() << " answer(s):";
    for (const auto& id : end.unanswered) std::cerr << " " << id;
    std::cerr << "\n  approve with: warren approve " << sid << " <event id> [--deny]\n";
    return 3;
  }
  std::cerr << "warren: the turn ended with " << (end.stop_reason.empty() ? "a closed stream" : end.stop_reason)
            << "\n";
  return 4;
}

// Sends `events` once the stream is open, then watches until idle.
int SendAndWatch(const Conn& c, const std::string& sid, const Json& events, bool interactive) {
  Status send_status = Status::Ok();
  WatchOptions wo;
  wo.until_idle = true;
  wo.interactive = interactive;
  // Runs on the stream's thread before any event is read: the message
  // cannot be missed because the stream is already attached.
  wo.on_open = [&] { send_status = SendEvents(c, sid, events); };
  auto end = Watch(c, sid, wo);
  if (!send_status.ok()) return Report(send_status);
  if (!end.ok()) return Report(end.status());
  return TurnExit(c, sid, *end);
}

void AddConnOptions(CLI::App* cmd, Conn* c) {
  cmd->add_option("--base-url", c->base_url, "service URL (WARREN_BASE_URL)");
  cmd->add_option("--api-key", c->api_key, "organization API key (WARREN_API_KEY, ANTHROPIC_API_KEY)");
  cmd->add_flag("--json", c->json, "print JSON objects instead of ids and lines");
}

// Shared state of all client commands (CLI11 binds options to it).
struct ClientArgs {
  Conn conn;
  std::string name, model = "claude-sonnet-4-6", system, agent, env, title, session, tool_use_id, text_opt;
  std::vector<std::string> text;
  bool self_hosted = false, ask = false, no_tools = false, until_idle = false, deny = false, yes = false;
  std::string deny_message;
};

std::string Joined(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

Json AgentBody(const ClientArgs& a) {
  Json body = {{"name", a.name}, {"model", a.model}};
  if (!a.system.empty()) body["system"] = a.system;
  if (!a.no_tools) {
    Json ts = {{"type", "agent_toolset_20260401"}};
    if (a.ask) ts["default_config"] = {{"permission_policy", {{"type", "always_ask"}}}};
    body["tools"] = Json::array({ts});
  }
  return body;
}

// The environment for `run` without --env: "warren-cli" (cloud), made once.
Result<std::string> DefaultEnvironment(const Conn& c) {
  WARREN_ASSIGN_OR_RETURN(auto envs, ListAll(c, "/v1/environments"));
  for (const Json& e : envs)
    if (Str(e, "name") == "warren-cli") return Str(e, "id");
  WARREN_ASSIGN_OR_RETURN(Json env, Call(c, "POST", "/v1/environments",
                                         Json{{"name", "warren-cli"}, {"config", {{"type", "cloud"}}}}));
  return Str(env, "id");
}

// The agent for `run` without --agent: "warren-cli" with the built-in
// toolset, made once.
Result<std::string> DefaultAgent(const Conn& c) {
  WARREN_ASSIGN_OR_RETURN(auto agents, ListAll(c, "/v1/agents"));
  for (const Json& a : agents)
    if (Str(a, "name") == "warren-cli") return Str(a, "id");
  WARREN_ASSIGN_OR_RETURN(Json agent, Call(c, "POST", "/v1/agents",
                                           Json{{"name", "warren-cli"},
                                                {"model", "claude-sonnet-4-5"},
                                                {"tools", Json::array({{{"type", "agent_toolset_20260401"}}})}}));
  return Str(agent, "id");
}

}  // namespace

std::string FormatEventLine(const Json& ev, const std::string& session_id) {
  const std::string type = Str(ev, "type");
  const std::string id = Str(ev, "id");
  if (type == "agent.message") return "agent: " + TextOf(ev.value("content", Json::array()));
  if (type == "user.message") return "user: " + TextOf(ev.value("content", Json::array()));
  if (type == "agent.thinking") return "  (thinking)";
  if (type == "agent.tool_use" || type == "agent.custom_tool_use" || type == "agent.mcp_tool_use") {
    std::string line = "  → " + Str(ev, "name") + " " + Truncate(DumpJson(ev.value("input", Json::object())), 200) +
                       "  [" + id + "]";
    if (Str(ev, "evaluated_permission") == "ask")
      line += "\n    needs approval: warren approve " + session_id + " " + id + " [--deny]";
    return line;
  }
  if (type == "user.tool_result" || type == "user.custom_tool_result") {
    bool err = ev.contains("is_error") && ev["is_error"].is_boolean() && ev["is_error"].get<bool>();
    std::string text = TextOf(ev.value("content", Json::array()));
    return std::string("  ← ") + (err ? "error: " : "") + Truncate(text.empty() ? "(no output)" : text, 300);
  }
  if (type == "user.tool_confirmation") return "  ✓ " + Str(ev, "result") + " " + Str(ev, "tool_use_id");
  if (type == "user.interrupt") return "user: (interrupt)";
  if (type == "session.status_idle") {
    const Json sr = ev.contains("stop_reason") ? ev["stop_reason"] : Json::object();
    return "[idle: " + Str(sr, "type") + "]";
  }
  if (type == "session.status_running") return "[running]";
  if (type == "session.status_rescheduled") return "[rescheduled]";
  if (type == "session.status_terminated") return "[terminated]";
  if (type == "session.error") {
    const Json e = ev.contains("error") ? ev["error"] : Json::object();
    return "[error: " + Str(e, "message") + "]";
  }
  if (type == "agent.thread_context_compacted") return "[context compacted]";
  if (type.rfind("span.", 0) == 0 || type == "session.usage" || type.empty()) return "";
  return "[" + type + "]";
}

void RegisterClientCommands(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ClientArgs>();
  auto conn_of = [args]() -> Conn& {
    Conn& c = args->conn;
    if (c.base_url.empty()) c.base_url = EnvOr("WARREN_BASE_URL", nullptr, "http://127.0.0.1:8400");
    if (c.api_key.empty()) c.api_key = EnvOr("WARREN_API_KEY", "ANTHROPIC_API_KEY", "");
    return c;
  };
  auto run = [exit_code](std::function<int()> fn) { return [exit_code, fn] { *exit_code = fn(); }; };
  auto print_result = [conn_of](Result<Json> r) -> int {
    if (!r.ok()) return Report(r.status());
    PrintObject(conn_of(), *r);
    return 0;
  };
  auto print_list = [conn_of](const std::string& path, std::function<std::string(const Json&)> line) -> int {
    Conn& c = conn_of();
    auto items = ListAll(c, path);
    if (!items.ok()) return Report(items.status());
    for (const Json& j : *items) std::cout << (c.json ? DumpJson(j) : line(j)) << "\n";
    return 0;
  };

  // agent
  auto* agent = app.add_subcommand("agent", "Agents: create, list");
  agent->require_subcommand(1);
  auto* agent_create = agent->add_subcommand("create", "Create an agent; prints its id");
  agent_create->add_option("--name", args->name, "agent name")->required();
  agent_create->add_option("--model", args->model, "model id")->capture_default_str();
  agent_create->add_option("--system", args->system, "system prompt");
  agent_create->add_flag("--ask", args->ask, "built-in tools need approval (always_ask)");
  agent_create->add_flag("--no-tools", args->no_tools, "no built-in toolset");
  AddConnOptions(agent_create, &args->conn);
  agent_create->callback(run([=] { return print_result(Call(conn_of(), "POST", "/v1/agents", AgentBody(*args))); }));
  auto* agent_list = agent->add_subcommand("list", "List agents");
  AddConnOptions(agent_list, &args->conn);
  agent_list->callback(run([=] {
    return print_list("/v1/agents", [](const Json& j) { return Str(j, "id") + "  " + Str(j, "name") + "  " + Str(j, "model"); });
  }));

  // env
  auto* env = app.add_subcommand("env", "Environments: create, list");
  env->require_subcommand(1);
  auto* env_create = env->add_subcommand("create", "Create an environment; prints its id");
  env_create->add_option("--name", args->name, "environment name")->required();
  env_create->add_flag("--self-hosted", args->self_hosted, "tools run by your own workers (warren-runner)");
  AddConnOptions(env_create, &args->conn);
  env_create->callback(run([=] {
    Json body = {{"name", args->name}, {"config", {{"type", args->self_hosted ? "self_hosted" : "cloud"}}}};
    return print_result(Call(conn_of(), "POST", "/v1/environments", body));
  }));
  auto* env_list = env->add_subcommand("list", "List environments");
  AddConnOptions(env_list, &args->conn);
  env_list->callback(run([=] {
    return print_list("/v1/environments", [](const Json& j) {
      const Json cfg = j.contains("config") ? j["config"] : Json::object();
      return Str(j, "id") + "  " + Str(j, "name") + "  " + Str(cfg, "type");
    });
  }));

  // session
  auto* session = app.add_subcommand("session", "Sessions: create, list, get, archive, rm");
  session->require_subcommand(1);
  auto* s_create = session->add_subcommand("create", "Create a session; prints its id");
  s_create->add_option("--agent", args->agent, "agent id")->required();
  s_create->add_option("--env", args->env, "environment id")->required();
  s_create->add_option("--title", args->title, "title");
  AddConnOptions(s_create, &args->conn);
  s_create->callback(run([=] {
    Json body = {{"agent", args->agent}, {"environment_id", args->env}};
    if (!args->title.empty()) body["title"] = args->title;
    return print_result(Call(conn_of(), "POST", "/v1/sessions", body));
  }));
  auto* s_list = session->add_subcommand("list", "List sessions");
  AddConnOptions(s_list, &args->conn);
  s_list->callback(run([=] {
    return print_list("/v1/sessions", [](const Json& j) {
      return Str(j, "id") + "  " + Str(j, "status") + "  " + (j.contains("title") && j["title"].is_string() ? Str(j, "title") : "-");
    });
  }));
  for (const char* verb : {"get", "archive", "rm"}) {
    auto* cmd = session->add_subcommand(verb, std::string(verb) == "get" ? "Print a session as JSON"
                                                : std::string(verb) == "archive" ? "Archive a session"
                                                                                 : "Delete a session");
    cmd->add_option("SESSION", args->session, "session id")->required();
    AddConnOptions(cmd, &args->conn);
    std::string v = verb;
    cmd->callback(run([=] {
      Conn& c = conn_of();
      std::string path = "/v1/sessions/" + args->session;
      Result<Json> r = v == "get" ? Call(c, "GET", path)
                       : v == "archive" ? Call(c, "POST", path + "/archive")
                                        : Call(c, "DELETE", path);
      if (!r.ok()) return Report(r.status());
      std::cout << (v == "get" || c.json ? DumpJson(*r) : args->session) << "\n";
      return 0;
    }));
  }

  // send / interrupt / approve / watch
  auto* send = app.add_subcommand("send", "Send a user message to a session");
  send->add_option("SESSION", args->session, "session id")->required();
  send->add_option("TEXT", args->text, "message text")->required();
  send->add_flag("--wait", args->until_idle, "stream the turn until the session idles");
  send->add_flag("--yes", args->yes, "with --wait: ask about gated tool calls on this terminal");
  AddConnOptions(send, &args->conn);
  send->callback(run([=] {
    Conn& c = conn_of();
    Json events = Json::array({UserMessage(Joined(args->text))});
    if (args->until_idle) return SendAndWatch(c, args->session, events, args->yes && isatty(0));
    Status s = SendEvents(c, args->session, events);
    return s.ok() ? 0 : Report(s);
  }));
  auto* interrupt = app.add_subcommand("interrupt", "Interrupt a session's turn");
  interrupt->add_option("SESSION", args->session, "session id")->required();
  AddConnOptions(interrupt, &args->conn);
  interrupt->callback(run([=] {
    Status s = SendEvents(conn_of(), args->session, Json::array({{{"type", "user.interrupt"}}}));
    return s.ok() ? 0 : Report(s);
  }));
  auto* approve = app.add_subcommand("approve", "Allow (or --deny) a gated tool call");
  approve->add_option("SESSION", args->session, "session id")->required();
  approve->add_option("TOOL_USE_ID", args->tool_use_id, "event id of the agent.tool_use")->required();
  approve->add_flag("--deny", args->deny, "deny instead of allow");
  approve->add_option("--message", args->deny_message, "with --deny: why (shown to the model)");
  AddConnOptions(approve, &args->conn);
  approve->callback(run([=] {
    Json conf = {{"type", "user.tool_confirmation"}, {"tool_use_id", args->tool_use_id},
                 {"result", args->deny ? "deny" : "allow"}};
    if (args->deny && !args->deny_message.empty()) conf["deny_message"] = args->deny_message;
    if (!args->deny && !args->deny_message.empty()) {
      std::cerr << "warren: --message goes with --deny\n";
      return 2;
    }
    Status s = SendEvents(conn_of(), args->session, Json::array({conf}));
    return s.ok() ? 0 : Report(s);
  }));
  auto* watch = app.add_subcommand("watch", "Stream a session's events live");
  watch->add_option("SESSION", args->session, "session id")->required();
  watch->add_flag("--until-idle", args->until_idle, "return when the session idles (exit 0 on end_turn)");
  AddConnOptions(watch, &args->conn);
  watch->callback(run([=] {
    Conn& c = conn_of();
    WatchOptions wo;
    wo.until_idle = args->until_idle;
    wo.on_open = [&] { std::cerr << "watching " << args->session << "\n" << std::flush; };
    auto end = Watch(c, args->session, wo);
    if (!end.ok()) return Report(end.status());
    return args->until_idle ? TurnExit(c, args->session, *end) : 0;
  }));

  // run: one prompt in a new session, streamed
  auto* runcmd = app.add_subcommand("run", "New session, one message, stream the turn until it ends");
  runcmd->add_option("--agent", args->agent, "agent id (default: an agent named warren-cli with the built-in tools)");
  runcmd->add_option("--env", args->env, "environment id (default: a cloud environment named warren-cli)");
  runcmd->add_option("--title", args->title, "session title");
  runcmd->add_option("TEXT", args->text, "message text")->required();
  runcmd->add_flag("--yes", args->yes, "ask about gated tool calls on this terminal");
  AddConnOptions(runcmd, &args->conn);
  runcmd->callback(run([=] {
    Conn& c = conn_of();
    std::string env_id = args->env;
    std::string agent_id = args->agent;
    if (agent_id.empty()) {
      auto a = DefaultAgent(c);
      if (!a.ok()) return Report(a.status());
      agent_id = *a;
    }
    if (env_id.empty()) {
      auto e = DefaultEnvironment(c);
      if (!e.ok()) return Report(e.status());
      env_id = *e;
    }
    Json body = {{"agent", agent_id}, {"environment_id", env_id}};
    if (!args->title.empty()) body["title"] = args->title;
    auto s = Call(c, "POST", "/v1/sessions", body);
    if (!s.ok()) return Report(s.status());
    std::string sid = Str(*s, "id");
    std::cerr << "session " << sid << "\n";
    return SendAndWatch(c, sid, Json::array({UserMessage(Joined(args->text))}), args->yes && isatty(0));
  }));
}

}  // namespace warren::cli
