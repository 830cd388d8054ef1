// File primitives of the runner's call journal directory (`--call-journal`):
// the per-call result files (session_runner.cc) and the lease record
// (worker.cc). Neither follows a link at the final component (O_NOFOLLOW).
// Thread-safety: stateless.
#pragma once

#include <cstddef>
#include <string>

namespace warren::runner {

// Reads at most `max_bytes` (plus one read buffer) of `path` into *out.
// False when the file cannot be opened; a longer file is cut, not an error
// (the caller's parser refuses what it cannot read).
bool ReadSmallFile(const std::string& path, std::string* out, size_t max_bytes);

// Writes `data` to `path` through `path`.tmp (mode 0600) and a rename, so a
// reader never sees half a file. False on any failure (the temp file is
// removed when its write fails).
bool WriteFileAtomic(const std::string& path, const std::string& data);

}  // namespace warren::runner
