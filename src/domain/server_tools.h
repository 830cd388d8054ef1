// ServerTools: built-in tools the service itself runs (web_fetch,
// web_search), for every environment type, instead of a worker in a
// sandbox. The engine asks which of them are available (only those are
// offered to the model) and runs the calls; src/webtools implements it,
// tests fake it.
//
// Thread-safety: implementations are thread-safe (the engine calls Run from
// its worker threads, several sessions at once). Ownership: the composition
// root owns the implementation; it outlives the engine.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/http_client.h"
#include "common/json.h"

namespace warren::domain {

struct ServerToolResult {
  Json content = Json::array();  // session content blocks (text, document, search_result)
  bool is_error = false;
  // Set when the text in `content` was cut to fit the model's context (a
  // long page): the whole text (the engine writes it to the session's
  // sandbox when it has one; domain/session_files.h).
  std::optional<std::string> full_text;
};

class ServerTools {
 public:
  virtual ~ServerTools() = default;
  // True for the names this service runs (whether configured or not): their
  // calls never go to a worker.
  virtual bool Handles(std::string_view name) const = 0;
  // The model-facing definition {"name","description","input_schema"} of
  // `name` when it is configured here; nullopt when the tool is absent
  // (e.g. web_search without a provider), so the model never sees it.
  virtual std::optional<Json> Definition(std::string_view name) const = 0;
  // Runs one call. Never throws; failures are results with is_error.
  // `cancel` (may be null) aborts a call in flight (interrupts, shutdown).
  virtual ServerToolResult Run(std::string_view name, const Json& input, const CancelToken* cancel) = 0;
};

}  // namespace warren::domain
