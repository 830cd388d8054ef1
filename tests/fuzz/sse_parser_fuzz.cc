// libFuzzer target for src/common/sse_parser.
//
// Beyond "does not crash" (ASan/UBSan), it checks two properties on every
// input: (1) chunking does not matter: feeding the bytes whole, split at a
// fuzzer-chosen offset, and byte by byte gives the same events and the same
// failure state; (2) the size bound holds: no dispatched event's data is
// larger than max_event_bytes.
//
// Input layout: byte 0-1 = max_event_bytes (1..4096), byte 2 = split point
// (scaled), rest = the stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/sse_parser.h"

namespace {

struct Outcome {
  std::vector<warren::SseEvent> events;
  bool failed = false;
};

bool Same(const Outcome& a, const Outcome& b) {
  if (a.failed != b.failed || a.events.size() != b.events.size()) return false;
  for (size_t i = 0; i < a.events.size(); i++) {
    const auto& x = a.events[i];
    const auto& y = b.events[i];
    if (x.event != y.event || x.data != y.data || x.id != y.id || x.retry_ms != y.retry_ms) return false;
  }
  return true;
}

Outcome Run(std::string_view in, const std::vector<size_t>& cuts, size_t bound) {
  Outcome o;
  warren::SseParser p([&](const warren::SseEvent& e) { o.events.push_back(e); }, bound);
  size_t prev = 0;
  for (size_t c : cuts) {
    p.Feed(in.substr(prev, c - prev));
    prev = c;
  }
  p.Feed(in.substr(prev));
  p.Finish();
  o.failed = p.failed();
  return o;
}

void Check(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "sse_parser_fuzz: property violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  size_t bound = 1 + ((static_cast<size_t>(data[0]) | (static_cast<size_t>(data[1]) << 8)) % 4096);
  std::string_view in(reinterpret_cast<const char*>(data + 3), size - 3);
  size_t split = in.empty() ? 0 : (static_cast<size_t>(data[2]) * in.size()) / 255;

  Outcome whole = Run(in, {}, bound);
  for (const auto& e : whole.events) Check(e.data.size() <= bound, "event data within max_event_bytes");
  Check(Same(whole, Run(in, {split}, bound)), "split feed == whole feed");
  if (in.size() <= 512) {
    std::vector<size_t> bytes;
    for (size_t i = 1; i < in.size(); i++) bytes.push_back(i);
    Check(Same(whole, Run(in, bytes, bound)), "byte-by-byte feed == whole feed");
  }
  return 0;
}
