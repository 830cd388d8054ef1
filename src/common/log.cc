#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "common/clock.h"

namespace warren::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};

std::string_view LevelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}
}  // namespace

void SetLevel(Level level) { g_level = level; }
void SetFormat(Format format) { g_format = format; }
Level GetLevel() { return g_level.load(); }

bool ParseLevel(std::string_view s, Level* out) {
  if (s == "debug") *out = Level::kDebug;
  else if (s == "info") *out = Level::kInfo;
  else if (s == "warn" || s == "warning") *out = Level::kWarn;
  else if (s == "error") *out = Level::kError;
  else return false;
  return true;
}

bool ParseFormat(std::string_view s, Format* out) {
  if (s == "text") *out = Format::kText;
  else if (s == "json") *out = Format::kJson;
  else return false;
  return true;
}

void Write(Level level, std::string_view msg, const Json& fields) {
  if (level < g_level.load()) return;
  std::string ts = FormatRfc3339(Clock::Real()->NowMicros());
  std::string line;
  if (g_format.load() == Format::kJson) {
    Json j = Json::object();
    j["ts"] = ts;
    j["level"] = LevelName(level);
    j["msg"] = msg;
    if (fields.is_object())
      for (auto it = fields.begin(); it != fields.end(); ++it) j[it.key()] = it.value();
    line = DumpJson(j);
  } else {
    line = ts;
    line += ' ';
    std::string lv(LevelName(level));
    for (auto& c : lv) c = static_cast<char>(toupper(c));
    lv.resize(5, ' ');
    line += lv;
    line += ' ';
    line += msg;
    if (fields.is_object()) {
      for (auto it = fields.begin(); it != fields.end(); ++it) {
        line += ' ';
        line += it.key();
        line += '=';
        line += it.value().is_string() ? it.value().get<std::string>() : DumpJson(it.value());
      }
    }
  }
  line += '\n';
  ssize_t unused = ::write(2, line.data(), line.size());
  (void)unused;
}

}  // namespace warren::log
