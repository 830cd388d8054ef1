#include "engine/tool_schemas.h"

#include "engine/json_read.h"

namespace warren::engine {

bool BuiltinToolDefinition(const std::string& name, models::ToolDefinition* out) {
  out->name = name;
  if (name == "bash") {
    out->description =
        "Run a command in a persistent bash shell. The working directory, environment variables and background jobs "
        "persist between calls. stdout and stderr are combined; long output keeps its tail.";
    out->input_schema = Json::parse(R"({"type":"object","properties":{
      "command":{"type":"string","description":"The command to run."},
      "restart":{"type":"boolean","description":"Restart the shell (command may be omitted)."},
      "timeout_ms":{"type":"integer","description":"Timeout in milliseconds (default 120000)."}}})");
  } else if (name == "read") {
    out->description = "Read a text file (or an image or PDF). view_range selects 1-based inclusive lines.";
    out->input_schema = Json::parse(R"({"type":"object","properties":{
      "file_path":{"type":"string","description":"Path to the file."},
      "view_range":{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":2,
        "description":"[start_line, end_line], 1-based inclusive; end_line <= 0 reads to the end."}},
      "required":["file_path"]})");
  } else if (name == "write") {
    out->description = "Write a file, replacing it whole; parent directories are created.";
    out->input_schema = Json::parse(R"({"type":"object","properties":{
      "file_path":{"type":"string"},"content":{"type":"string"}},"required":["file_path","content"]})");
  } else if (name == "edit") {
    out->description =
        "Replace old_string with new_string in a file. old_string must occur exactly once unless replace_all is true.";
    out->input_schema = Json::parse(R"({"type":"object","properties":{
      "file_path":{"type":"string"},"old_string":{"type":"string"},"new_string":{"type":"string"},
      "replace_all":{"type":"boolean"}},"required":["file_path","old_string","new_string"]})");
  } else if (name == "glob") {
    out->description = "Find files by glob pattern (e.g. **/*.go), newest first.";
    out->input_schema = Json::parse(R"({"type":"object","properties":{
      "pattern":{"type":"string"},"path":{"type":"string","description":"Root directory (default: workdir)."}},
      "required":["pattern"]})");
  } else if (name == "grep") {
    out->description = "Search file contents with a regular expression; prints path:line:text.";
    out->input_schema = Json::parse(R"({"type":"object","properties":{
      "pattern":{"type":"string"},"path":{"type":"string"}},"required":["pattern"]})");
  } else {
    return false;
  }
  return true;
}

std::vector<models::ToolDefinition> ToolsForAgent(const Json& tools, const domain::ServerTools* server) {
  std::vector<models::ToolDefinition> out;
  for (const Json& t : jr::AsArr(tools)) {
    std::string type = jr::Str(t, "type");
    if (type == "agent_toolset_20260401") {
      for (const Json& c : jr::Arr(t, "configs")) {
        if (!jr::Bool(c, "enabled", true)) continue;
        models::ToolDefinition def;
        const std::string name = jr::Str(c, "name");
        if (BuiltinToolDefinition(name, &def)) {
          out.push_back(std::move(def));
        } else if (server != nullptr) {
          if (auto d = server->Definition(name)) {
            def.name = name;
            def.description = jr::Str(*d, "description");
            def.input_schema = jr::Get(*d, "input_schema");
            out.push_back(std::move(def));
          }
        }
      }
    } else if (type == "custom") {
      models::ToolDefinition def;
      def.name = jr::Str(t, "name");
      def.description = jr::Str(t, "description");
      def.input_schema = jr::Get(t, "input_schema");
      out.push_back(std::move(def));
    }
  }
  return out;
}

}  // namespace warren::engine
