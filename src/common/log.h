// Structured logging to stderr: one line per record, either
//   text: "2026-11-24T05:04:05.123456Z INFO  http.request method=GET path=/v1/agents status=200"
//   json: {"ts":"...","level":"info","msg":"http.request","method":"GET",...}
// Thread-safe (a line is written with one write(2)).
#pragma once

#include <string_view>

#include "common/json.h"

namespace warren::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format { kText, kJson };

void SetLevel(Level level);
void SetFormat(Format format);
Level GetLevel();
// Parses "debug|info|warn|error" / "text|json"; false on unknown.
bool ParseLevel(std::string_view s, Level* out);
bool ParseFormat(std::string_view s, Format* out);

// `fields` must be a JSON object (or null for none).
void Write(Level level, std::string_view msg, const Json& fields = nullptr);

inline void Debug(std::string_view msg, const Json& f = nullptr) {
  if (GetLevel() <= Level::kDebug) Write(Level::kDebug, msg, f);
}
inline void Info(std::string_view msg, const Json& f = nullptr) { Write(Level::kInfo, msg, f); }
inline void Warn(std::string_view msg, const Json& f = nullptr) { Write(Level::kWarn, msg, f); }
inline void Error(std::string_view msg, const Json& f = nullptr) { Write(Level::kError, msg, f); }

}  // namespace warren::log
