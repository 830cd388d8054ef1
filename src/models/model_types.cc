#include "models/model_types.h"

#include <fmt/format.h>

namespace warren::models {
namespace {

Status Bad(std::string_view where, std::string_view what) {
  return Status::InvalidArgument(fmt::format("{}: {}", where, what));
}

// Reads an optional string field; error if present with another type.
Status GetString(const Json& j, const char* key, std::string* out, bool required, std::string_view where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return Bad(where, fmt::format("missing \"{}\"", key));
    return Status::Ok();
  }
  if (!it->is_string()) return Bad(where, fmt::format("\"{}\" must be a string, not {}", key, JsonTypeName(*it)));
  *out = it->get<std::string>();
  return Status::Ok();
}

bool HasCacheControl(const Json& j) {
  auto it = j.find("cache_control");
  return it != j.end() && it->is_object();
}

const Json kEphemeral = Json{{"type", "ephemeral"}};

}  // namespace

std::string_view BlockTypeName(BlockType type) {
  switch (type) {
    case BlockType::kText: return "text";
    case BlockType::kThinking: return "thinking";
    case BlockType::kRedactedThinking: return "redacted_thinking";
    case BlockType::kToolUse: return "tool_use";
    case BlockType::kToolResult: return "tool_result";
    case BlockType::kImage: return "image";
    case BlockType::kDocument: return "document";
    case BlockType::kOther: return "other";
  }
  return "other";
}

ContentBlock ContentBlock::Text(std::string text) {
  ContentBlock b;
  b.type = BlockType::kText;
  b.text = std::move(text);
  return b;
}

ContentBlock ContentBlock::Thinking(std::string thinking, std::string signature) {
  ContentBlock b;
  b.type = BlockType::kThinking;
  b.text = std::move(thinking);
  b.signature = std::move(signature);
  return b;
}

ContentBlock ContentBlock::ToolUse(std::string id, std::string name, Json input) {
  ContentBlock b;
  b.type = BlockType::kToolUse;
  b.id = std::move(id);
  b.name = std::move(name);
  b.input = std::move(input);
  return b;
}

ContentBlock ContentBlock::ToolResult(std::string tool_use_id, std::string text, bool is_error) {
  return ToolResultBlocks(std::move(tool_use_id), {Text(std::move(text))}, is_error);
}

ContentBlock ContentBlock::ToolResultBlocks(std::string tool_use_id, std::vector<ContentBlock> content,
                                            bool is_error) {
  ContentBlock b;
  b.type = BlockType::kToolResult;
  b.tool_use_id = std::move(tool_use_id);
  b.content = std::move(content);
  b.is_error = is_error;
  return b;
}

Message Message::User(std::string text) { return Message{Role::kUser, {ContentBlock::Text(std::move(text))}}; }
Message Message::User(std::vector<ContentBlock> blocks) { return Message{Role::kUser, std::move(blocks)}; }
Message Message::Assistant(std::vector<ContentBlock> blocks) { return Message{Role::kAssistant, std::move(blocks)}; }

ModelUsage& ModelUsage::operator+=(const ModelUsage& o) {
  input_tokens += o.input_tokens;
  output_tokens += o.output_tokens;
  cache_read_input_tokens += o.cache_read_input_tokens;
  cache_creation_input_tokens += o.cache_creation_input_tokens;
  return *this;
}

Json ModelUsage::ToJson() const {
  return Json{{"input_tokens", input_tokens},
              {"output_tokens", output_tokens},
              {"cache_read_input_tokens", cache_read_input_tokens},
              {"cache_creation_input_tokens", cache_creation_input_tokens}};
}

ModelUsage ModelUsage::FromJson(const Json& j) {
  ModelUsage u;
  if (!j.is_object()) return u;
  auto get = [&](const char* k) -> int64_t {
    auto it = j.find(k);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  u.input_tokens = get("input_tokens");
  u.output_tokens = get("output_tokens");
  u.cache_read_input_tokens = get("cache_read_input_tokens");
  u.cache_creation_input_tokens = get("cache_creation_input_tokens");
  return u;
}

std::vector<const ContentBlock*> ModelResponse::ToolUses() const {
  std::vector<const ContentBlock*> out;
  for (const auto& b : content) {
    if (b.type == BlockType::kToolUse) out.push_back(&b);
  }
  return out;
}

std::string ModelResponse::Text() const {
  std::string out;
  for (const auto& b : content) {
    if (b.type == BlockType::kText) out += b.text;
  }
  return out;
}

Json BlockToJson(const ContentBlock& b) {
  Json j;
  switch (b.type) {
    case BlockType::kText:
      j = {{"type", "text"}, {"text", b.text}};
      break;
    case BlockType::kThinking:
      j = {{"type", "thinking"}, {"thinking", b.text}, {"signature", b.signature}};
      break;
    case BlockType::kRedactedThinking:
      j = {{"type", "redacted_thinking"}, {"data", b.data}};
      break;
    case BlockType::kToolUse:
      j = {{"type", "tool_use"}, {"id", b.id}, {"name", b.name}, {"input", b.input.is_null() ? Json::object() : b.input}};
      break;
    case BlockType::kToolResult: {
      j = {{"type", "tool_result"}, {"tool_use_id", b.tool_use_id}};
      Json content = Json::array();
      for (const auto& c : b.content) content.push_back(BlockToJson(c));
      j["content"] = std::move(content);
      if (b.is_error) j["is_error"] = true;
      break;
    }
    case BlockType::kImage:
    case BlockType::kDocument:
    case BlockType::kOther:
      j = b.raw.is_object() ? b.raw : Json::object();
      j.erase("cache_control");
      break;
  }
  if (b.cache_control) j["cache_control"] = kEphemeral;
  return j;
}

Result<ContentBlock> BlockFromJson(const Json& j) {
  constexpr std::string_view where = "content block";
  if (!j.is_object()) return Bad(where, fmt::format("must be an object, not {}", JsonTypeName(j)));
  std::string type;
  WARREN_RETURN_IF_ERROR(GetString(j, "type", &type, true, where));
  ContentBlock b;
  b.cache_control = HasCacheControl(j);
  if (type == "text") {
    b.type = BlockType::kText;
    WARREN_RETURN_IF_ERROR(GetString(j, "text", &b.text, true, "text block"));
  } else if (type == "thinking") {
    b.type = BlockType::kThinking;
    WARREN_RETURN_IF_ERROR(GetString(j, "thinking", &b.text, true, "thinking block"));
    WARREN_RETURN_IF_ERROR(GetString(j, "signature", &b.signature, false, "thinking block"));
  } else if (type == "redacted_thinking") {
    b.type = BlockType::kRedactedThinking;
    WARREN_RETURN_IF_ERROR(GetString(j, "data", &b.data, true, "redacted_thinking block"));
  } else if (type == "tool_use") {
    b.type = BlockType::kToolUse;
    WARREN_RETURN_IF_ERROR(GetString(j, "id", &b.id, true, "tool_use block"));
    WARREN_RETURN_IF_ERROR(GetString(j, "name", &b.name, true, "tool_use block"));
    auto it = j.find("input");
    if (it != j.end() && !it->is_null()) {
      if (!it->is_object()) return Bad("tool_use block", "\"input\" must be an object");
      b.input = *it;
    }
  } else if (type == "tool_result") {
    b.type = BlockType::kToolResult;
    WARREN_RETURN_IF_ERROR(GetString(j, "tool_use_id", &b.tool_use_id, true, "tool_result block"));
    auto it = j.find("content");
    if (it != j.end() && it->is_string()) {
      b.content.push_back(ContentBlock::Text(it->get<std::string>()));
    } else if (it != j.end() && it->is_array()) {
      for (const auto& c : *it) {
        WARREN_ASSIGN_OR_RETURN(ContentBlock inner, BlockFromJson(c));
        b.content.push_back(std::move(inner));
      }
    } else if (it != j.end() && !it->is_null()) {
      return Bad("tool_result block", "\"content\" must be a string or an array");
    }
    auto err = j.find("is_error");
    if (err != j.end() && err->is_boolean()) b.is_error = err->get<bool>();
  } else {
    b.type = type == "image" ? BlockType::kImage : type == "document" ? BlockType::kDocument : BlockType::kOther;
    b.raw = j;
    b.raw.erase("cache_control");
  }
  return b;
}

Json MessageToJson(const Message& m) {
  Json content = Json::array();
  for (const auto& b : m.content) content.push_back(BlockToJson(b));
  return Json{{"role", m.role == Role::kUser ? "user" : "assistant"}, {"content", std::move(content)}};
}

Result<Message> MessageFromJson(const Json& j) {
  if (!j.is_object()) return Bad("message", "must be an object");
  std::string role;
  WARREN_RETURN_IF_ERROR(GetString(j, "role", &role, true, "message"));
  Message m;
  if (role == "user") {
    m.role = Role::kUser;
  } else if (role == "assistant") {
    m.role = Role::kAssistant;
  } else {
    return Bad("message", fmt::format("unknown role \"{}\"", role));
  }
  auto it = j.find("content");
  if (it == j.end()) return Bad("message", "missing \"content\"");
  if (it->is_string()) {
    m.content.push_back(ContentBlock::Text(it->get<std::string>()));
  } else if (it->is_array()) {
    for (const auto& c : *it) {
      WARREN_ASSIGN_OR_RETURN(ContentBlock b, BlockFromJson(c));
      m.content.push_back(std::move(b));
    }
  } else {
    return Bad("message", "\"content\" must be a string or an array");
  }
  return m;
}

Json ToolToJson(const ToolDefinition& t) {
  Json j = {{"name", t.name}, {"input_schema", t.input_schema}};
  if (!t.description.empty()) j["description"] = t.description;
  if (t.cache_control) j["cache_control"] = kEphemeral;
  return j;
}

Result<ToolDefinition> ToolFromJson(const Json& j) {
  if (!j.is_object()) return Bad("tool", "must be an object");
  ToolDefinition t;
  WARREN_RETURN_IF_ERROR(GetString(j, "name", &t.name, true, "tool"));
  WARREN_RETURN_IF_ERROR(GetString(j, "description", &t.description, false, "tool"));
  auto it = j.find("input_schema");
  if (it != j.end()) {
    if (!it->is_object()) return Bad("tool", "\"input_schema\" must be an object");
    t.input_schema = *it;
  }
  t.cache_control = HasCacheControl(j);
  return t;
}

Json RequestToJson(const ModelRequest& r, std::string_view default_model) {
  Json j;
  j["model"] = r.model.empty() ? std::string(default_model) : r.model;
  j["max_tokens"] = r.max_tokens;
  if (!r.system.empty()) {
    Json system = Json::array();
    for (const auto& b : r.system) system.push_back(BlockToJson(b));
    j["system"] = std::move(system);
  }
  Json messages = Json::array();
  for (const auto& m : r.messages) messages.push_back(MessageToJson(m));
  j["messages"] = std::move(messages);
  if (!r.tools.empty()) {
    Json tools = Json::array();
    for (const auto& t : r.tools) tools.push_back(ToolToJson(t));
    j["tools"] = std::move(tools);
  }
  if (r.thinking.enabled) j["thinking"] = {{"type", "enabled"}, {"budget_tokens", r.thinking.budget_tokens}};
  if (!r.tool_choice.is_null()) j["tool_choice"] = r.tool_choice;
  if (r.temperature) j["temperature"] = *r.temperature;
  if (!r.stop_sequences.empty()) j["stop_sequences"] = r.stop_sequences;
  if (!r.metadata.is_null()) j["metadata"] = r.metadata;
  return j;
}

Result<ModelRequest> RequestFromJson(const Json& j) {
  if (!j.is_object()) return Bad("request", "must be an object");
  ModelRequest r;
  WARREN_RETURN_IF_ERROR(GetString(j, "model", &r.model, false, "request"));
  if (auto it = j.find("max_tokens"); it != j.end()) {
    if (!it->is_number_integer()) return Bad("request", "\"max_tokens\" must be an integer");
    r.max_tokens = it->get<int64_t>();
  }
  if (auto it = j.find("system"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      r.system.push_back(ContentBlock::Text(it->get<std::string>()));
    } else if (it->is_array()) {
      for (const auto& b : *it) {
        WARREN_ASSIGN_OR_RETURN(ContentBlock block, BlockFromJson(b));
        r.system.push_back(std::move(block));
      }
    } else {
      return Bad("request", "\"system\" must be a string or an array");
    }
  }
  if (auto it = j.find("messages"); it != j.end()) {
    if (!it->is_array()) return Bad("request", "\"messages\" must be an array");
    for (const auto& m : *it) {
      WARREN_ASSIGN_OR_RETURN(Message msg, MessageFromJson(m));
      r.messages.push_back(std::move(msg));
    }
  }
  if (auto it = j.find("tools"); it != j.end()) {
    if (!it->is_array()) return Bad("request", "\"tools\" must be an array");
    for (const auto& t : *it) {
      WARREN_ASSIGN_OR_RETURN(ToolDefinition tool, ToolFromJson(t));
      r.tools.push_back(std::move(tool));
    }
  }
  if (auto it = j.find("thinking"); it != j.end() && it->is_object()) {
    r.thinking.enabled = JsonStr(*it, "type") == "enabled";
    if (auto b = it->find("budget_tokens"); b != it->end() && b->is_number_integer()) {
      r.thinking.budget_tokens = b->get<int64_t>();
    }
  }
  if (auto it = j.find("tool_choice"); it != j.end()) r.tool_choice = *it;
  if (auto it = j.find("temperature"); it != j.end() && it->is_number()) r.temperature = it->get<double>();
  if (auto it = j.find("stop_sequences"); it != j.end() && it->is_array()) {
    for (const auto& s : *it) {
      if (s.is_string()) r.stop_sequences.push_back(s.get<std::string>());
    }
  }
  if (auto it = j.find("metadata"); it != j.end()) r.metadata = *it;
  return r;
}

Json ResponseToJson(const ModelResponse& r) {
  Json content = Json::array();
  for (const auto& b : r.content) content.push_back(BlockToJson(b));
  Json j = {{"type", "message"},
            {"role", "assistant"},
            {"id", r.id},
            {"model", r.model},
            {"content", std::move(content)},
            {"stop_reason", r.stop_reason},
            {"usage", r.usage.ToJson()}};
  j["stop_sequence"] = r.stop_sequence.empty() ? Json(nullptr) : Json(r.stop_sequence);
  return j;
}

std::string JsonStr(const Json& j, std::string_view key, std::string_view def) {
  if (!j.is_object()) return std::string(def);
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string(def);
}

int64_t JsonInt(const Json& j, std::string_view key, int64_t def) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : def;
}

const Json& JsonObj(const Json& j, std::string_view key) {
  static const Json kEmpty = Json::object();
  if (!j.is_object()) return kEmpty;
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

std::string JoinText(const std::vector<ContentBlock>& blocks, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& b : blocks) {
    std::string piece;
    if (b.type == BlockType::kText) {
      piece = b.text;
    } else if (b.type == BlockType::kToolResult) {
      piece = JoinText(b.content, sep);
    } else {
      continue;
    }
    if (!first) out += sep;
    out += piece;
    first = false;
  }
  return out;
}

int64_t EstimateTokens(std::string_view text) { return static_cast<int64_t>((text.size() + 3) / 4); }

int64_t EstimateTokens(const ModelRequest& request) {
  return EstimateTokens(DumpJson(RequestToJson(request)));
}

}  // namespace warren::models
