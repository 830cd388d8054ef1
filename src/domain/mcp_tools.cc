#include "domain/mcp_tools.h"

#include "common/ids.h"

namespace warren::domain {

std::string McpExposedName(std::string_view server, std::string_view tool) {
  auto clean = [](std::string_view s) {
    std::string out(s);
    for (char& c : out)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) c = '_';
    return out;
  };
  std::string name = "mcp__" + clean(server) + "__" + clean(tool);
  if (name.size() <= 128) return name;
  std::string full = std::string(server) + '\0' + std::string(tool);
  return name.substr(0, 119) + "_" + Sha256Hex(full).substr(0, 8);
}

}  // namespace warren::domain
