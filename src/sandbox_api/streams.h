// Streaming helpers for the sandbox REST API: an SSE event queue fed by a
// producer thread (exec output, build logs), a chunked file download, and a
// streamed file upload. Thread-safety: EventStream is thread-safe; the
// download source and upload sink are driven by one thread at a time (the
// HTTP server guarantees it).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/json.h"
#include "common/unique_fd.h"
#include "http/http_server.h"
#include "sandbox/files.h"

namespace warren::sandbox_api {

// An SSE stream: `event: <name>` / `data: <json>` frames queued by a
// producer and pulled by the server's I/O loop. The producer waits while
// more than `max_backlog` bytes are queued (back-pressure on a slow client)
// and stops waiting once the client is gone.
class EventStream final : public http::StreamSource {
 public:
  explicit EventStream(size_t max_backlog) : max_backlog_(max_backlog) {}

  void SetWaker(std::function<void()> waker) override;
  bool Pull(std::vector<std::shared_ptr<const std::string>>* out) override;
  std::string KeepAliveChunk() const override { return "event: ping\ndata: {\"type\":\"ping\"}\n\n"; }
  void OnClose() override;

  // Queues one frame. Returns false (and drops it) when the client is gone.
  bool Send(std::string_view event, const Json& data);
  // Queues `text` as a frame {"type":event,"data":text}, holding back an
  // incomplete UTF-8 sequence at its end in `carry` for the next call (so a
  // multi-byte character split across reads is not mangled). With
  // `flush`, sends whatever is carried.
  bool SendText(std::string_view event, std::string* carry, std::string_view text, bool flush = false);
  // Marks the end of the stream (after the last Send).
  void End();
  bool closed();

 private:
  void Wake(std::unique_lock<std::mutex>& lock);
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<const std::string>> frames_;
  size_t backlog_ = 0;
  size_t max_backlog_;
  bool done_ = false;
  bool closed_ = false;
  std::function<void()> waker_;
};

// Reads [offset, offset+length) of an open file in pieces.
class FileDownload final : public http::BodySource {
 public:
  FileDownload(UniqueFd fd, int64_t offset, int64_t length)
      : fd_(std::move(fd)), offset_(offset), remaining_(length) {}
  Result<bool> Read(std::string* out, size_t max) override;

 private:
  UniqueFd fd_;
  int64_t offset_;
  int64_t remaining_;
};

// Writes an upload to a temporary file next to `path` as it arrives, then
// renames it over `path` (so a failed or cut upload never leaves a
// half-written file under the requested name). `respond` renders the
// answer from the final status.
class FileUpload final : public http::BodySink {
 public:
  using Responder = std::function<http::HandlerResult(const Status& status, int64_t bytes)>;
  // Opens the temporary file. Errors: the parent directory is missing or
  // outside the root, etc.
  static Result<std::shared_ptr<FileUpload>> Begin(sandbox::RootFs fs, std::string path, uint32_t mode,
                                                   uint64_t max_bytes, Responder respond);
  ~FileUpload() override;

  uint64_t MaxBytes() const override { return max_bytes_; }
  Status Write(std::string_view piece) override;
  http::HandlerResult Finish(const Status& body_status) override;

 private:
  FileUpload(sandbox::RootFs fs, std::string path, std::string tmp, UniqueFd fd, uint64_t max_bytes,
             Responder respond);
  sandbox::RootFs fs_;
  std::string path_, tmp_;
  UniqueFd fd_;
  uint64_t max_bytes_;
  Responder respond_;
  int64_t written_ = 0;
  bool committed_ = false;
};

// Parses a single-range "bytes=a-b" / "bytes=a-" / "bytes=-n" header for a
// file of `size` bytes into [*offset, *offset + *length). InvalidArgument
// for a malformed header, FailedPrecondition when unsatisfiable.
Status ParseRange(const std::string& header, int64_t size, int64_t* offset, int64_t* length);

}  // namespace warren::sandbox_api
