#include "runner/tool_mode.h"

#include <string>

namespace warren::runner {

int RunToolMode(Toolset* tools, FILE* in, FILE* out) {
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, in)) >= 0) {
    std::string text(line, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty()) continue;
    ToolResult r;
    auto parsed = ParseJson(text);
    if (!parsed.ok() || !parsed->is_object() || !(*parsed)["name"].is_string()) {
      r.is_error = true;
      r.content = Json::array({Json{{"type", "text"}, {"text", "invalid tool call line"}}});
    } else {
      const Json& call = *parsed;
      Json input = call.contains("input") ? call["input"] : Json::object();
      r = tools->Run(call["name"].get<std::string>(), input);
    }
    std::string s = DumpJson(Json{{"is_error", r.is_error}, {"content", r.content}});
    s += '\n';
    fwrite(s.data(), 1, s.size(), out);
    fflush(out);
  }
  free(line);
  tools->Close();
  return 0;
}

}  // namespace warren::runner
