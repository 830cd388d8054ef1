// Glob matching for the `glob` tool, modelled on what Node 22's fs.glob
// (used by the TypeScript SDK) returns: brace expansion, `*`, `?`, `[...]`
// and `**`; wildcards never match a leading dot unless the pattern segment
// starts with one; `**` does not enter dot directories, `.git`,
// `node_modules` or symlinked directories; only regular files are returned.
// Pure functions over the filesystem; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace warren::runner {

// Expands `{a,b}` alternatives (nested allowed). A brace without a comma at
// its level stays literal.
std::vector<std::string> ExpandBraces(std::string_view pattern);

// Matches one path segment against one pattern segment (no '/').
bool MatchSegment(std::string_view pattern, std::string_view name);

// Files (relative to `root`, '/'-separated) matching `pattern`, in walk
// order, de-duplicated. Stops after visiting `max_entries` directory entries.
std::vector<std::string> GlobFiles(const std::string& root, std::string_view pattern,
                                   size_t max_entries);

}  // namespace warren::runner
