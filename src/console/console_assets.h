// The web console's built files (console/ at the repo root, built by Vite),
// embedded in the binary at build time by embed.cmake, so `warren serve`
// needs no files at run time. Immutable static data; thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace warren::console {

struct Asset {
  std::string_view path;          // relative to /console/, e.g. "index.html", "assets/index-3f2a.js"
  std::string_view content_type;  // from the file extension
  std::string_view bytes;
  bool hashed;  // the name carries a content hash (Vite's assets/): cacheable forever
  // The same bytes gzip-compressed at build time (embed.cmake), or empty
  // when not worth it (small or binary files) or not allowed (index.html,
  // whose CSP nonce is written into every response).
  std::string_view gzip;
  // 32 hex digits of the SHA-256 of `bytes`: the strong validator of the
  // identity representation ("<etag>-gz" is the gzip one's).
  std::string_view etag;
};

// Every embedded file. When the front end could not be built (no
// console/node_modules), a single placeholder index.html says so.
std::span<const Asset> Assets();
// True when Assets() holds a real build, not the placeholder.
bool Built();

// The asset at `path` ("" means index.html), or nullptr.
const Asset* FindAsset(std::string_view path);

}  // namespace warren::console
