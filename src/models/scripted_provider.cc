#include "models/scripted_provider.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "common/log.h"
#include "common/timer_loop.h"

namespace warren::models {
namespace {

constexpr std::string_view kBuiltin = R"({
  // Warren's built-in offline model: no script configured. When the agent
  // has the built-in tools it runs a small demo in the session's sandbox
  // (writes a program, runs it, reads its output); otherwise it echoes.
  "rules": [
    {"name": "demo: write", "when": {"offered_tool": {"equals": "bash"}, "user": {"regex": "(?s).+"}, "step": 0},
     "reply": {"text": "(Scripted demo model: offline, no script configured; set ANTHROPIC_API_KEY for Claude.) You asked: {{user}}\nI will write a small program, run it, and read its output.",
               "tool_calls": [{"name": "write", "input": {"file_path": "/workspace/hello.sh",
                 "content": "#!/bin/sh\necho \"Hello from $(hostname), a Warren sandbox\"\necho \"kernel: $(uname -sr)\"\necho \"files in /workspace: $(ls /workspace | wc -l)\"\n"}}]}},
    {"name": "demo: run", "when": {"tool_name": "write", "is_error": false, "step": 1},
     "reply": {"text": "Wrote /workspace/hello.sh. Running it:",
               "tool_calls": [{"name": "bash", "input": {"command": "sh /workspace/hello.sh > /workspace/hello.out 2>&1; echo \"exit status $?\""}}]}},
    {"name": "demo: read", "when": {"tool_name": "bash", "is_error": false, "step": 2},
     "reply": {"text": "It ran ({{tool_result}}). Reading its output:",
               "tool_calls": [{"name": "read", "input": {"file_path": "/workspace/hello.out"}}]}},
    {"name": "demo: report", "when": {"tool_name": "read", "is_error": false, "step": 3},
     "reply": "Done. I wrote /workspace/hello.sh, ran it with sh (output saved to /workspace/hello.out), and read the output back:\n{{tool_result}}"},
    {"name": "demo: tool failed", "when": {"is_error": true},
     "reply": "A tool call failed, so I stopped the demo: {{tool_result}}"}
  ],
  "default": {"text": "Scripted model (no script configured). You said: {{user}}"}
})";

// ---------------------------------------------------------------- matchers

struct Matcher {
  enum class Kind { kContains, kEquals, kRegex };
  Kind kind = Kind::kContains;
  std::string text;
  std::shared_ptr<RE2> re;

  // On a regex match, fills `captures` with groups 1..n.
  bool Match(std::string_view s, std::vector<std::string>* captures) const {
    switch (kind) {
      case Kind::kContains: return s.find(text) != std::string_view::npos;
      case Kind::kEquals: return s == text;
      case Kind::kRegex: {
        int n = re->NumberOfCapturingGroups();
        std::vector<re2::StringPiece> groups(static_cast<size_t>(n) + 1);
        if (!re->Match(re2::StringPiece(s.data(), s.size()), 0, s.size(), RE2::UNANCHORED, groups.data(),
                       n + 1)) {
          return false;
        }
        if (captures != nullptr && captures->empty()) {
          for (int i = 1; i <= n; i++) captures->emplace_back(groups[i].data() ? std::string(groups[i]) : "");
        }
        return true;
      }
    }
    return false;
  }
};

Result<Matcher> ParseMatcher(const Json& j, const std::string& where) {
  Matcher m;
  if (j.is_string()) {
    m.text = j.get<std::string>();
    return m;
  }
  if (!j.is_object() || j.size() != 1) {
    return Status::InvalidArgument(where + ": a matcher is a string or one of {\"contains\"|\"equals\"|\"regex\": \"...\"}");
  }
  auto [key, value] = *j.items().begin();
  if (!value.is_string()) return Status::InvalidArgument(where + ": matcher value must be a string");
  m.text = value.get<std::string>();
  if (key == "contains") {
    m.kind = Matcher::Kind::kContains;
  } else if (key == "equals") {
    m.kind = Matcher::Kind::kEquals;
  } else if (key == "regex") {
    m.kind = Matcher::Kind::kRegex;
    RE2::Options opts;
    opts.set_log_errors(false);
    opts.set_dot_nl(true);
    m.re = std::make_shared<RE2>(m.text, opts);
    if (!m.re->ok()) return Status::InvalidArgument(where + ": bad regex: " + m.re->error());
  } else {
    return Status::InvalidArgument(where + ": unknown matcher \"" + key + "\" (contains, equals, regex)");
  }
  return m;
}

// ------------------------------------------------------------------- rules

struct Conditions {
  bool any = false;
  std::optional<Matcher> user;         // the new user message this turn answers
  std::optional<Matcher> tool_result;  // the tool results this turn answers
  std::optional<Matcher> tool_name;    // ... of a call to this tool
  std::optional<bool> is_error;        // ... one of which is an error
  std::optional<Matcher> last_user;    // the latest user text anywhere
  std::optional<Matcher> system;       // the system prompt
  std::optional<int> step;             // model calls since the latest user text (0 = answering it)
  std::optional<Matcher> offered_tool;  // a tool offered to the model in this request
};

struct ErrorSpec {
  ModelErrorKind kind = ModelErrorKind::kOverloaded;
  std::string message;
  std::optional<int64_t> retry_after_ms;
  std::optional<bool> retryable;
};

struct Reply {
  std::string thinking;
  std::vector<std::string> text;
  Json tool_calls = Json::array();  // [{name, input, id?}]
  std::string stop_reason;
  Json usage;                       // partial ModelUsage JSON or null
  std::optional<ErrorSpec> error;
  int chunk = 0;
};

struct Rule {
  std::string name;
  Conditions when;
  int times = -1;  // -1 = unlimited
  std::vector<Reply> replies;
};

struct Script {
  std::vector<Rule> rules;
  Reply fallback;
};

Status CheckKeys(const Json& j, std::initializer_list<std::string_view> allowed, const std::string& where) {
  for (const auto& [k, v] : j.items()) {
    bool ok = false;
    for (auto a : allowed) ok = ok || k == a;
    if (!ok) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return Status::InvalidArgument(fmt::format("{}: unknown key \"{}\" (allowed: {})", where, k, list));
    }
  }
  return Status::Ok();
}

Result<ErrorSpec> ParseError(const Json& j, const std::string& where) {
  ErrorSpec e;
  Json obj = j.is_string() ? Json{{"type", j}} : j;
  if (!obj.is_object()) return Status::InvalidArgument(where + ": \"error\" must be a string or an object");
  WARREN_RETURN_IF_ERROR(CheckKeys(obj, {"type", "message", "retry_after_ms", "retryable"}, where + ".error"));
  if (obj.contains("type") && !obj["type"].is_string()) return Status::InvalidArgument(where + ": error \"type\" must be a string");
  std::string type = JsonStr(obj, "type", "overloaded");
  static const std::pair<std::string_view, ModelErrorKind> kKinds[] = {
      {"overloaded", ModelErrorKind::kOverloaded},         {"rate_limited", ModelErrorKind::kRateLimited},
      {"request_failed", ModelErrorKind::kRequestFailed},  {"authentication", ModelErrorKind::kAuthentication},
      {"permission", ModelErrorKind::kPermission},         {"invalid_request", ModelErrorKind::kInvalidRequest},
      {"request_too_large", ModelErrorKind::kRequestTooLarge}, {"billing", ModelErrorKind::kBilling}};
  bool found = false;
  for (const auto& [name, kind] : kKinds) {
    if (type == name) {
      e.kind = kind;
      found = true;
    }
  }
  if (!found) {
    return Status::InvalidArgument(fmt::format(
        "{}: unknown error type \"{}\" (overloaded, rate_limited, request_failed, authentication, permission, "
        "invalid_request, request_too_large, billing)", where, type));
  }
  e.message = JsonStr(obj, "message", "scripted " + type + " error");
  if (obj.contains("retry_after_ms")) {
    if (!obj["retry_after_ms"].is_number_integer()) return Status::InvalidArgument(where + ": retry_after_ms must be an integer");
    e.retry_after_ms = obj["retry_after_ms"].get<int64_t>();
  }
  if (obj.contains("retryable")) {
    if (!obj["retryable"].is_boolean()) return Status::InvalidArgument(where + ": retryable must be a boolean");
    e.retryable = obj["retryable"].get<bool>();
  }
  return e;
}

Result<Reply> ParseReply(const Json& j, const std::string& where) {
  Reply r;
  Json obj = j.is_string() ? Json{{"text", j}} : j;
  if (!obj.is_object()) return Status::InvalidArgument(where + ": a reply is a string or an object");
  WARREN_RETURN_IF_ERROR(CheckKeys(obj, {"text", "thinking", "tool_calls", "tool_call", "stop_reason", "usage", "error", "chunk"}, where));
  if (obj.contains("text")) {
    const Json& t = obj["text"];
    if (t.is_string()) {
      r.text.push_back(t.get<std::string>());
    } else if (t.is_array()) {
      for (const auto& p : t) {
        if (!p.is_string()) return Status::InvalidArgument(where + ": \"text\" array items must be strings");
        r.text.push_back(p.get<std::string>());
      }
    } else {
      return Status::InvalidArgument(where + ": \"text\" must be a string or an array of strings");
    }
  }
  if (obj.contains("thinking")) {
    if (!obj["thinking"].is_string()) return Status::InvalidArgument(where + ": \"thinking\" must be a string");
    r.thinking = obj["thinking"].get<std::string>();
  }
  Json calls = Json::array();
  if (obj.contains("tool_call")) calls.push_back(obj["tool_call"]);
  if (obj.contains("tool_calls")) {
    if (!obj["tool_calls"].is_array()) return Status::InvalidArgument(where + ": \"tool_calls\" must be an array");
    for (const auto& c : obj["tool_calls"]) calls.push_back(c);
  }
  for (size_t i = 0; i < calls.size(); i++) {
    const Json& c = calls[i];
    std::string w = fmt::format("{}.tool_calls[{}]", where, i);
    if (!c.is_object()) return Status::InvalidArgument(w + ": must be an object {\"name\", \"input\"}");
    WARREN_RETURN_IF_ERROR(CheckKeys(c, {"name", "input", "id"}, w));
    if (!c.contains("name") || !c["name"].is_string() || c["name"].get<std::string>().empty()) {
      return Status::InvalidArgument(w + ": \"name\" (a non-empty string) is required");
    }
    if (c.contains("input") && !c["input"].is_object()) return Status::InvalidArgument(w + ": \"input\" must be an object");
    if (c.contains("id") && !c["id"].is_string()) return Status::InvalidArgument(w + ": \"id\" must be a string");
    r.tool_calls.push_back(c);
  }
  if (obj.contains("stop_reason")) {
    if (!obj["stop_reason"].is_string()) return Status::InvalidArgument(where + ": \"stop_reason\" must be a string");
    r.stop_reason = obj["stop_reason"].get<std::string>();
  }
  if (obj.contains("usage")) {
    const Json& u = obj["usage"];
    if (!u.is_object()) return Status::InvalidArgument(where + ": \"usage\" must be an object");
    WARREN_RETURN_IF_ERROR(CheckKeys(u, {"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}, where + ".usage"));
    for (const auto& [k, v] : u.items()) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) return Status::InvalidArgument(where + ".usage." + k + ": must be a non-negative integer");
    }
    r.usage = u;
  }
  if (obj.contains("error")) {
    WARREN_ASSIGN_OR_RETURN(ErrorSpec e, ParseError(obj["error"], where));
    r.error = std::move(e);
  }
  if (obj.contains("chunk")) {
    if (!obj["chunk"].is_number_integer() || obj["chunk"].get<int>() < 0) return Status::InvalidArgument(where + ": \"chunk\" must be a non-negative integer");
    r.chunk = obj["chunk"].get<int>();
  }
  return r;
}

Result<Conditions> ParseWhen(const Json& j, const std::string& where) {
  Conditions c;
  if ((j.is_string() && j.get<std::string>() == "any") || (j.is_boolean() && j.get<bool>())) {
    c.any = true;
    return c;
  }
  if (!j.is_object()) return Status::InvalidArgument(where + ": \"when\" is \"any\" or an object of conditions");
  WARREN_RETURN_IF_ERROR(CheckKeys(j, {"any", "user", "tool_result", "tool_name", "is_error", "last_user", "system", "step", "offered_tool"}, where));
  if (j.contains("any")) c.any = j["any"] == true;
  auto matcher = [&](const char* key, std::optional<Matcher>* out) -> Status {
    if (!j.contains(key)) return Status::Ok();
    WARREN_ASSIGN_OR_RETURN(Matcher m, ParseMatcher(j[key], where + "." + key));
    *out = std::move(m);
    return Status::Ok();
  };
  WARREN_RETURN_IF_ERROR(matcher("user", &c.user));
  WARREN_RETURN_IF_ERROR(matcher("tool_result", &c.tool_result));
  WARREN_RETURN_IF_ERROR(matcher("tool_name", &c.tool_name));
  WARREN_RETURN_IF_ERROR(matcher("last_user", &c.last_user));
  WARREN_RETURN_IF_ERROR(matcher("system", &c.system));
  WARREN_RETURN_IF_ERROR(matcher("offered_tool", &c.offered_tool));
  if (j.contains("is_error")) {
    if (!j["is_error"].is_boolean()) return Status::InvalidArgument(where + ".is_error: must be a boolean");
    c.is_error = j["is_error"].get<bool>();
  }
  if (j.contains("step")) {
    if (!j["step"].is_number_integer()) return Status::InvalidArgument(where + ".step: must be an integer");
    c.step = j["step"].get<int>();
  }
  if (!c.any && !c.user && !c.tool_result && !c.tool_name && !c.is_error && !c.last_user && !c.system && !c.step &&
      !c.offered_tool) {
    return Status::InvalidArgument(where + ": no condition given (use \"any\" to match everything)");
  }
  return c;
}

Result<Rule> ParseRule(const Json& j, const std::string& where_in) {
  if (!j.is_object()) return Status::InvalidArgument(where_in + ": a rule must be an object");
  std::string where = where_in;
  if (j.contains("name") && j["name"].is_string()) where += " (\"" + j["name"].get<std::string>() + "\")";
  WARREN_RETURN_IF_ERROR(CheckKeys(j, {"name", "when", "match", "times", "reply", "replies"}, where));
  Rule r;
  r.name = JsonStr(j, "name", where_in);
  const Json* when = j.contains("when") ? &j["when"] : j.contains("match") ? &j["match"] : nullptr;
  if (when == nullptr) return Status::InvalidArgument(where + ": \"when\" is required (use \"any\" to match everything)");
  WARREN_ASSIGN_OR_RETURN(r.when, ParseWhen(*when, where + ".when"));
  if (j.contains("times")) {
    if (!j["times"].is_number_integer() || j["times"].get<int>() < 1) return Status::InvalidArgument(where + ": \"times\" must be a positive integer");
    r.times = j["times"].get<int>();
  }
  if (j.contains("reply") == j.contains("replies")) return Status::InvalidArgument(where + ": exactly one of \"reply\" or \"replies\" is required");
  if (j.contains("reply")) {
    WARREN_ASSIGN_OR_RETURN(Reply reply, ParseReply(j["reply"], where + ".reply"));
    r.replies.push_back(std::move(reply));
  } else {
    if (!j["replies"].is_array() || j["replies"].empty()) return Status::InvalidArgument(where + ": \"replies\" must be a non-empty array");
    for (size_t i = 0; i < j["replies"].size(); i++) {
      WARREN_ASSIGN_OR_RETURN(Reply reply, ParseReply(j["replies"][i], fmt::format("{}.replies[{}]", where, i)));
      r.replies.push_back(std::move(reply));
    }
  }
  return r;
}

Result<Script> ParseScript(std::string_view text) {
  Script s;
  s.fallback.text.push_back("(scripted) no rule matched");
  // A JSON document with "rules" (comments allowed) ...
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (!doc.is_discarded() && doc.is_object() && (doc.contains("rules") || doc.contains("default"))) {
    WARREN_RETURN_IF_ERROR(CheckKeys(doc, {"rules", "default", "description"}, "script"));
    if (doc.contains("rules")) {
      if (!doc["rules"].is_array()) return Status::InvalidArgument("script: \"rules\" must be an array");
      for (size_t i = 0; i < doc["rules"].size(); i++) {
        WARREN_ASSIGN_OR_RETURN(Rule r, ParseRule(doc["rules"][i], fmt::format("rules[{}]", i)));
        s.rules.push_back(std::move(r));
      }
    }
    if (doc.contains("default")) {
      WARREN_ASSIGN_OR_RETURN(s.fallback, ParseReply(doc["default"], "default"));
    }
    return s;
  }
  // ... or JSON Lines: one rule per line, {"default": reply} for the
  // fallback, blank lines and lines starting with # or // ignored.
  std::istringstream in{std::string(text)};
  std::string line;
  int lineno = 0;
  bool any = false;
  while (std::getline(in, line)) {
    lineno++;
    size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#' || line.compare(first, 2, "//") == 0) continue;
    Json j = Json::parse(line, nullptr, false, true);
    std::string where = fmt::format("line {}", lineno);
    if (j.is_discarded()) return Status::InvalidArgument(where + ": not valid JSON (a JSON Lines script has one rule per line)");
    any = true;
    if (j.is_object() && j.size() == 1 && j.contains("default")) {
      WARREN_ASSIGN_OR_RETURN(s.fallback, ParseReply(j["default"], where + ".default"));
      continue;
    }
    WARREN_ASSIGN_OR_RETURN(Rule r, ParseRule(j, where));
    s.rules.push_back(std::move(r));
  }
  if (!any) {
    return Status::InvalidArgument("script: neither a JSON object with \"rules\" nor JSON Lines with at least one rule");
  }
  return s;
}

// ------------------------------------------------------------ conversation

struct Turn {
  bool answering_user = false;          // last message is a user message with text
  std::string user;                     // its text
  bool answering_tools = false;         // last message carries tool results
  std::string tool_result;              // their text, joined with "\n"
  std::vector<std::string> tool_names;  // the tools those results answer
  bool any_error = false;
  std::string last_user;                // newest user text anywhere
  std::string system;
  int step = 0;
  std::vector<std::string> offered;  // names of the tools in the request
};

// Characters a block adds to the serialised prompt, roughly: its text and
// ~24 characters of JSON around it.
size_t BlockChars(const ContentBlock& b) {
  size_t n = 24 + b.text.size() + b.signature.size() + b.data.size() + b.id.size() + b.name.size() +
             b.tool_use_id.size();
  if (b.type == BlockType::kToolUse) n += DumpJson(b.input).size();
  for (const auto& c : b.content) n += BlockChars(c);
  if (!b.raw.is_null()) n += DumpJson(b.raw).size();
  return n;
}

// The prompt's input tokens, estimated at 4 characters per token like
// EstimateTokens(request), without serialising the whole request: the
// scripted model is the benchmarks' instant model, and the cost of one of
// its calls should not be dominated by re-encoding a long transcript.
int64_t EstimateInputTokens(const ModelRequest& req) {
  size_t chars = 64 + req.model.size();
  for (const auto& b : req.system) chars += BlockChars(b);
  for (const auto& t : req.tools) chars += 48 + t.name.size() + t.description.size() + DumpJson(t.input_schema).size();
  for (const auto& m : req.messages) {
    chars += 32;
    for (const auto& b : m.content) chars += BlockChars(b);
  }
  return static_cast<int64_t>((chars + 3) / 4);
}

Turn Inspect(const ModelRequest& req) {
  Turn t;
  t.system = JoinText(req.system);
  for (const auto& tool : req.tools) t.offered.push_back(tool.name);
  if (!req.messages.empty() && req.messages.back().role == Role::kUser) {
    const Message& m = req.messages.back();
    std::vector<ContentBlock> texts;
    std::vector<ContentBlock> results;
    for (const auto& b : m.content) {
      if (b.type == BlockType::kText) texts.push_back(b);
      if (b.type == BlockType::kToolResult) results.push_back(b);
    }
    if (!texts.empty()) {
      t.answering_user = true;
      t.user = JoinText(texts);
    }
    if (!results.empty()) {
      t.answering_tools = true;
      t.tool_result = JoinText(results);
      std::set<std::string> ids;
      for (const auto& r : results) {
        ids.insert(r.tool_use_id);
        t.any_error = t.any_error || r.is_error;
      }
      if (req.messages.size() >= 2) {
        for (const auto& b : req.messages[req.messages.size() - 2].content) {
          if (b.type == BlockType::kToolUse && ids.count(b.id)) t.tool_names.push_back(b.name);
        }
      }
    }
  }
  for (auto it = req.messages.rbegin(); it != req.messages.rend(); ++it) {
    if (it->role == Role::kAssistant) {
      t.step++;
      continue;
    }
    bool has_text = false;
    for (const auto& b : it->content) has_text = has_text || b.type == BlockType::kText;
    if (has_text) {
      std::vector<ContentBlock> texts;
      for (const auto& b : it->content) {
        if (b.type == BlockType::kText) texts.push_back(b);
      }
      t.last_user = JoinText(texts);
      break;
    }
  }
  if (t.last_user.empty() && t.answering_user) t.last_user = t.user;
  return t;
}

bool Matches(const Conditions& c, const Turn& t, std::vector<std::string>* caps) {
  if (c.any) return true;
  bool constrained = false;
  if (c.user) {
    constrained = true;
    if (!t.answering_user || !c.user->Match(t.user, caps)) return false;
  }
  if (c.tool_result) {
    constrained = true;
    if (!t.answering_tools || !c.tool_result->Match(t.tool_result, caps)) return false;
  }
  if (c.tool_name) {
    constrained = true;
    bool hit = false;
    for (const auto& n : t.tool_names) hit = hit || c.tool_name->Match(n, caps);
    if (!t.answering_tools || !hit) return false;
  }
  if (c.is_error) {
    constrained = true;
    if (!t.answering_tools || t.any_error != *c.is_error) return false;
  }
  if (c.last_user) {
    constrained = true;
    if (!c.last_user->Match(t.last_user, caps)) return false;
  }
  if (c.system) {
    constrained = true;
    if (!c.system->Match(t.system, caps)) return false;
  }
  if (c.offered_tool) {
    constrained = true;
    bool hit = false;
    for (const auto& n : t.offered) hit = hit || c.offered_tool->Match(n, caps);
    if (!hit) return false;
  }
  if (c.step) {
    constrained = true;
    if (t.step != *c.step) return false;
  }
  return constrained;
}

std::string Expand(const std::string& in, const Turn& t, const std::vector<std::string>& caps, int call) {
  if (in.find("{{") == std::string::npos) return in;
  std::string out;
  size_t i = 0;
  while (i < in.size()) {
    size_t open = in.find("{{", i);
    if (open == std::string::npos) break;
    size_t close = in.find("}}", open + 2);
    if (close == std::string::npos) break;
    out.append(in, i, open - i);
    std::string key = in.substr(open + 2, close - open - 2);
    std::string value;
    bool known = true;
    if (key == "user") {
      value = t.last_user;
    } else if (key == "tool_result") {
      value = t.tool_result;
    } else if (key == "tool_name") {
      value = t.tool_names.empty() ? "" : t.tool_names.front();
    } else if (key == "call") {
      value = std::to_string(call);
    } else if (key.size() == 1 && key[0] >= '1' && key[0] <= '9') {
      size_t n = static_cast<size_t>(key[0] - '1');
      value = n < caps.size() ? caps[n] : "";
    } else {
      known = false;
    }
    out += known ? value : in.substr(open, close + 2 - open);
    i = close + 2;
  }
  out.append(in, i, std::string::npos);
  return out;
}

Json ExpandJson(const Json& j, const Turn& t, const std::vector<std::string>& caps, int call) {
  if (j.is_string()) return Expand(j.get<std::string>(), t, caps, call);
  if (j.is_array() || j.is_object()) {
    Json out = j;
    for (auto& [k, v] : out.items()) v = ExpandJson(v, t, caps, call);
    return out;
  }
  return j;
}

void Deltas(const std::string& s, int chunk, const std::function<void(std::string_view)>& emit) {
  if (s.empty()) return;
  if (chunk <= 0) {
    emit(s);
    return;
  }
  for (size_t i = 0; i < s.size(); i += static_cast<size_t>(chunk)) emit(std::string_view(s).substr(i, chunk));
}

class ScriptedProvider final : public ModelProvider {
 public:
  ScriptedProvider(Script script, ScriptedOptions options)
      : script_(std::move(script)), options_(std::move(options)), fired_(script_.rules.size(), 0) {}

  std::string_view name() const override { return "scripted"; }
  std::string default_model() const override { return options_.default_model; }
  int64_t context_window(std::string_view) const override { return options_.context_window; }

  // Instant without latency_ms (the answer and `done` run inline, before
  // CallAsync returns); with it, each attempt answers from a TimerLoop timer,
  // so a slow scripted model holds no thread either.
  void CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                 ModelCallback done) override {
    auto turn = std::make_shared<const Turn>(Inspect(request));
    auto req = std::make_shared<const ModelRequest>(std::move(request));
    const CancelToken* cancel = options.cancel;
    CallWithRetriesAsync(
        options_.retry, options_.retry_deps, options, observer,
        [this, req, turn, observer, cancel](int, AttemptDone attempt_done) {
          if (options_.latency_ms <= 0) {
            attempt_done(Attempt(*req, *turn, observer));
            return;
          }
          TimerLoop::Shared()->After(options_.latency_ms, cancel,
                                     [this, req, turn, observer, attempt_done = std::move(attempt_done)](bool fired) {
                                       if (!fired) {
                                         ModelError e;
                                         e.kind = ModelErrorKind::kCancelled;
                                         e.message = "cancelled";
                                         attempt_done(std::move(e));
                                         return;
                                       }
                                       attempt_done(Attempt(*req, *turn, observer));
                                     });
        },
        std::move(done));
  }

 private:
  ModelResult Attempt(const ModelRequest& request, const Turn& turn, ModelStreamObserver* obs) {
    // Choose the rule and the reply under the lock; emit outside it.
    Reply reply;
    std::vector<std::string> caps;
    std::string rule_name = "default";
    int call;
    {
      std::lock_guard<std::mutex> lock(mu_);
      call = ++calls_;
      bool chosen = false;
      for (size_t i = 0; i < script_.rules.size() && !chosen; i++) {
        const Rule& r = script_.rules[i];
        if (r.times >= 0 && fired_[i] >= r.times) continue;
        std::vector<std::string> c;
        if (!Matches(r.when, turn, &c)) continue;
        size_t k = std::min(static_cast<size_t>(fired_[i]), r.replies.size() - 1);
        reply = r.replies[k];
        fired_[i]++;
        caps = std::move(c);
        rule_name = r.name;
        chosen = true;
      }
      if (!chosen) reply = script_.fallback;
    }
    log::Debug("model.scripted", {{"rule", rule_name}, {"call", call}});

    ModelResponse resp;
    resp.id = fmt::format("msg_scripted_{:04d}", call);
    resp.model = request.model.empty() ? options_.default_model : request.model;
    ModelUsage usage;
    usage.input_tokens = EstimateInputTokens(request);
    if (obs) obs->OnMessageStart(resp.id, usage);
    std::string output;
    auto add = [&](ContentBlock b) {
      int index = static_cast<int>(resp.content.size());
      resp.content.push_back(std::move(b));
      return index;
    };
    if (!reply.thinking.empty()) {
      int i = add(ContentBlock::Thinking(Expand(reply.thinking, turn, caps, call)));
      if (obs) {
        obs->OnThinkingStart(i);
        Deltas(resp.content[i].text, reply.chunk, [&](std::string_view d) { obs->OnThinkingDelta(i, d); });
        obs->OnBlockStop(i, resp.content[i]);
      }
      output += resp.content[i].text;
    }
    for (const auto& t : reply.text) {
      int i = add(ContentBlock::Text(Expand(t, turn, caps, call)));
      if (obs) {
        obs->OnTextStart(i);
        Deltas(resp.content[i].text, reply.chunk, [&](std::string_view d) { obs->OnTextDelta(i, d); });
        obs->OnBlockStop(i, resp.content[i]);
      }
      output += resp.content[i].text;
    }
    if (reply.error) {
      ModelError e;
      e.kind = reply.error->kind;
      e.message = reply.error->message;
      e.retry_after_ms = reply.error->retry_after_ms;
      e.retryable = reply.error->retryable.value_or(e.kind == ModelErrorKind::kOverloaded ||
                                                    e.kind == ModelErrorKind::kRateLimited ||
                                                    e.kind == ModelErrorKind::kRequestFailed);
      e.mid_stream = !resp.content.empty();
      e.upstream_type = "scripted";
      return e;
    }
    for (size_t n = 0; n < reply.tool_calls.size(); n++) {
      const Json& c = reply.tool_calls[n];
      std::string id = c.contains("id") ? Expand(c["id"].get<std::string>(), turn, caps, call)
                                        : fmt::format("toolu_s{:04d}_{}", call, n);
      Json input = c.contains("input") ? ExpandJson(c["input"], turn, caps, call) : Json::object();
      int i = add(ContentBlock::ToolUse(id, c["name"].get<std::string>(), input));
      std::string json = DumpJson(input);
      if (obs) {
        obs->OnToolUseStart(i, id, resp.content[i].name);
        Deltas(json, reply.chunk, [&](std::string_view d) { obs->OnToolInputDelta(i, d); });
        obs->OnBlockStop(i, resp.content[i]);
      }
      output += json;
    }
    resp.stop_reason = !reply.stop_reason.empty()       ? reply.stop_reason
                       : reply.tool_calls.empty() ? "end_turn"
                                                        : "tool_use";
    usage.output_tokens = std::max<int64_t>(1, EstimateTokens(output));
    if (reply.usage.is_object()) {
      ModelUsage given = ModelUsage::FromJson(reply.usage);
      if (reply.usage.contains("input_tokens")) usage.input_tokens = given.input_tokens;
      if (reply.usage.contains("output_tokens")) usage.output_tokens = given.output_tokens;
      usage.cache_read_input_tokens = given.cache_read_input_tokens;
      usage.cache_creation_input_tokens = given.cache_creation_input_tokens;
    }
    resp.usage = usage;
    return resp;
  }

  const Script script_;
  const ScriptedOptions options_;
  std::mutex mu_;
  std::vector<int> fired_;
  int calls_ = 0;
};

}  // namespace

std::string_view BuiltinScript() { return kBuiltin; }

Status ValidateScript(std::string_view text) { return ParseScript(text).status(); }

Result<std::unique_ptr<ModelProvider>> NewScriptedProvider(ScriptedOptions options) {
  std::string text = options.script_text;
  std::string source = "inline script";
  if (!options.script_path.empty()) {
    std::ifstream in(options.script_path, std::ios::binary);
    if (!in) return Status::IOError("cannot read model script " + options.script_path);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    source = options.script_path;
  } else if (text.empty()) {
    text = std::string(kBuiltin);
    source = "built-in script";
  }
  auto script = ParseScript(text);
  if (!script.ok()) return script.status().WithContext(source);
  std::unique_ptr<ModelProvider> p = std::make_unique<ScriptedProvider>(std::move(script).value(), std::move(options));
  return p;
}

}  // namespace warren::models
