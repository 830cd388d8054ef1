// Skill download for a claimed session (spec section 3.6): for each of the
// session agent's skills, resolve an alias version (highest numeric version),
// fetch the version's metadata and archive, and extract it into
// `<workdir>/skills/<name>/` (mode 0700): the single top-level wrapper
// directory is stripped, absolute or `..` members refuse the whole archive,
// symlinks, hard links and devices are skipped, files become 0755 when any
// exec bit was set, else 0644. Like the TS SDK the archive is unpacked by
// `unzip` (zip) or `tar` (tar, tar.gz, ...) found on PATH. A failing skill
// does not block the others. Thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "runner/http_client.h"

namespace warren::runner {

// Downloads the skills of `session` (a GET /v1/sessions/{id} body). Returns
// the directories it created, for RemoveSkillDirs().
std::vector<std::string> DownloadSkills(const HttpClient& http, const std::string& token,
                                        const Json& session, const std::string& workdir);

void RemoveSkillDirs(const std::vector<std::string>& dirs);

// Extracts `archive` (bytes) into the existing directory `dest` with the
// rules above. Returns an error text, or "" on success.
std::string ExtractSkillArchive(const std::string& archive, const std::string& dest);

}  // namespace warren::runner
