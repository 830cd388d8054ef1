// The canonical model-call format shared by every provider: the shape of the
// Anthropic Messages API (system blocks, user/assistant messages made of
// content blocks, tools with input_schema, max_tokens, thinking,
// cache_control), as plain value types plus lossless JSON conversion.
//
// Providers translate from/to it (anthropic: nearly 1:1; openai: chat
// completions; scripted: matched rules). Values only; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace warren::models {

enum class BlockType {
  kText,              // {"type":"text","text"}
  kThinking,          // {"type":"thinking","thinking","signature"}
  kRedactedThinking,  // {"type":"redacted_thinking","data"}
  kToolUse,           // {"type":"tool_use","id","name","input"}
  kToolResult,        // {"type":"tool_result","tool_use_id","content":[...],"is_error"}
  kImage,             // passed through verbatim (raw)
  kDocument,          // passed through verbatim (raw)
  kOther,             // any other type (server_tool_use, search_result, ...): raw
};

std::string_view BlockTypeName(BlockType type);

struct ContentBlock {
  BlockType type = BlockType::kText;
  std::string text;                   // kText: text; kThinking: the thinking text
  std::string signature;              // kThinking
  std::string data;                   // kRedactedThinking
  std::string id;                     // kToolUse: "toolu_..."
  std::string name;                   // kToolUse
  Json input = Json::object();        // kToolUse
  std::string tool_use_id;            // kToolResult
  std::vector<ContentBlock> content;  // kToolResult: text/image/document blocks
  bool is_error = false;              // kToolResult
  Json raw;                           // kImage/kDocument/kOther: the whole block
  bool cache_control = false;         // explicit {"type":"ephemeral"} breakpoint

  static ContentBlock Text(std::string text);
  static ContentBlock Thinking(std::string thinking, std::string signature = "");
  static ContentBlock ToolUse(std::string id, std::string name, Json input);
  static ContentBlock ToolResult(std::string tool_use_id, std::string text, bool is_error = false);
  static ContentBlock ToolResultBlocks(std::string tool_use_id, std::vector<ContentBlock> content,
                                       bool is_error = false);
};

enum class Role { kUser, kAssistant };

struct Message {
  Role role = Role::kUser;
  std::vector<ContentBlock> content;

  static Message User(std::string text);
  static Message User(std::vector<ContentBlock> blocks);
  static Message Assistant(std::vector<ContentBlock> blocks);
};

struct ToolDefinition {
  std::string name;
  std::string description;
  Json input_schema = Json{{"type", "object"}, {"properties", Json::object()}};
  bool cache_control = false;
};

struct ThinkingConfig {
  bool enabled = false;
  int64_t budget_tokens = 0;  // >= 1024 upstream when enabled
};

struct ModelRequest {
  std::string model;                 // "" = the provider's default model
  std::vector<ContentBlock> system;  // text blocks
  std::vector<Message> messages;     // alternating user/assistant, starting with user
  std::vector<ToolDefinition> tools;
  int64_t max_tokens = 4096;
  ThinkingConfig thinking;
  Json tool_choice;                  // null = auto; else Anthropic shape {"type":"auto"|"any"|"tool"|"none",...}
  std::optional<double> temperature;
  std::vector<std::string> stop_sequences;
  Json metadata;                     // null or {"user_id": ...}
  // Let the provider place prompt-cache breakpoints (anthropic; see
  // docs/MODELS.md). Explicit ContentBlock/ToolDefinition::cache_control
  // flags are always sent and count towards the limit of 4.
  bool auto_cache = true;
};

struct ModelUsage {
  int64_t input_tokens = 0;  // uncached input (Anthropic semantics)
  int64_t output_tokens = 0;
  int64_t cache_read_input_tokens = 0;
  int64_t cache_creation_input_tokens = 0;

  ModelUsage& operator+=(const ModelUsage& o);
  bool operator==(const ModelUsage& o) const = default;
  // {"input_tokens","output_tokens","cache_read_input_tokens","cache_creation_input_tokens"}
  Json ToJson() const;
  static ModelUsage FromJson(const Json& j);  // missing fields = 0
};

struct ModelResponse {
  std::string id;     // upstream message id ("msg_...") when known
  std::string model;  // the model that answered
  std::vector<ContentBlock> content;
  // "end_turn" | "tool_use" | "max_tokens" | "stop_sequence" | "pause_turn" | "refusal"
  std::string stop_reason;
  std::string stop_sequence;
  ModelUsage usage;
  int attempts = 1;  // HTTP attempts made, including the successful one

  // The tool_use blocks, in order.
  std::vector<const ContentBlock*> ToolUses() const;
  // All text blocks joined with "".
  std::string Text() const;
};

// JSON in the Anthropic wire shape. *FromJson are used at trust boundaries
// (scripts, stored events) and never throw.
Json BlockToJson(const ContentBlock& block);
Result<ContentBlock> BlockFromJson(const Json& j);
Json MessageToJson(const Message& message);
// Accepts "content" as a string (one text block) or an array of blocks.
Result<Message> MessageFromJson(const Json& j);
Json ToolToJson(const ToolDefinition& tool);
Result<ToolDefinition> ToolFromJson(const Json& j);
// The Messages API body without "stream" and without automatic cache
// breakpoints. `default_model` fills an empty request.model.
Json RequestToJson(const ModelRequest& request, std::string_view default_model = "");
Result<ModelRequest> RequestFromJson(const Json& j);
Json ResponseToJson(const ModelResponse& response);

// Field accessors for untrusted JSON: the default when `j` is not an object,
// the key is missing or the value has another type (nlohmann's value()
// throws on a type mismatch; these never do).
std::string JsonStr(const Json& j, std::string_view key, std::string_view def = "");
int64_t JsonInt(const Json& j, std::string_view key, int64_t def = 0);
// The member if it is an object, else an empty object.
const Json& JsonObj(const Json& j, std::string_view key);

// Text of a block list: text blocks joined with "\n" (tool results: their
// nested text). Used by the scripted and openai providers.
std::string JoinText(const std::vector<ContentBlock>& blocks, std::string_view sep = "\n");

// A rough, deterministic token estimate (bytes / 4, rounded up) for
// compaction thresholds and the scripted provider's default usage.
int64_t EstimateTokens(const ModelRequest& request);
int64_t EstimateTokens(std::string_view text);

}  // namespace warren::models
