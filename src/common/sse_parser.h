// Incremental parser for text/event-stream (WHATWG HTML "server-sent
// events"). Feed it bytes in chunks of any size; it emits one SseEvent per
// dispatched event. Transport-independent: the libcurl client, the runner's
// Beast client and tests all share it. Thread-compatible.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace warren {

struct SseEvent {
  std::string event;  // "message" when the stream gave no "event:" field
  std::string data;   // data lines joined with '\n'
  std::string id;     // last seen "id:" (sticky, per spec)
  std::optional<long> retry_ms;
};

class SseParser final {
 public:
  using Callback = std::function<void(const SseEvent&)>;

  // `max_event_bytes` bounds the buffered line plus data of one event; a
  // stream that exceeds it puts the parser into the error state.
  explicit SseParser(Callback cb, size_t max_event_bytes = 16 << 20)
      : cb_(std::move(cb)), max_bytes_(max_event_bytes) {}

  // Consumes `chunk`. Returns false (and ignores further input) once the
  // stream has exceeded the size bound.
  bool Feed(std::string_view chunk);

  // End of stream: per spec an incomplete trailing event is discarded.
  void Finish();

  bool failed() const { return failed_; }

 private:
  void ProcessLine(std::string_view line);
  void Dispatch();

  Callback cb_;
  size_t max_bytes_;
  std::string line_;
  bool last_was_cr_ = false;
  bool bom_checked_ = false;
  bool failed_ = false;
  bool have_data_ = false;
  std::string event_;
  std::string data_;
  std::string last_id_;
  std::optional<long> retry_;
};

}  // namespace warren
