// FakeHttpClient: an in-memory HttpClient for tests that want a provider or
// any other HTTP user without sockets. Responses are scripted in order; every
// request is recorded. Streamed bodies are delivered in the scripted chunks.
//
// Thread-safe (one mutex); handlers run on the calling thread. StreamAsync
// runs the same scripted reply inline: handlers and `done` run before it
// returns (no thread per call, deterministic for the fuzz targets).
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/http_client.h"

namespace warren::testing {

struct FakeHttpReply {
  Status transport;            // non-OK: the call fails with it (after `chunks`, if any)
  int status = 200;
  HttpHeaders headers;         // lower-case names
  std::vector<std::string> chunks;
};

class FakeHttpClient final : public HttpClient {
 public:
  void Push(FakeHttpReply reply) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_.push_back(std::move(reply));
  }
  std::vector<HttpRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  Result<HttpResponse> Send(const HttpRequest& request, const CancelToken* cancel) override {
    std::string body;
    StreamHandlers h;
    h.on_data = [&](std::string_view c) {
      body.append(c);
      return true;
    };
    auto r = Stream(request, h, cancel);
    if (!r.ok()) return r;
    r->body = std::move(body);
    return r;
  }

  void StreamAsync(HttpRequest request, StreamHandlers handlers, const CancelToken* cancel,
                   StreamDone done) override {
    done(Stream(request, handlers, cancel));
  }

  Result<HttpResponse> Stream(const HttpRequest& request, const StreamHandlers& handlers,
                              const CancelToken* cancel) override {
    FakeHttpReply reply;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(request);
      if (replies_.empty()) return Status::Unavailable("FakeHttpClient: no reply scripted");
      reply = std::move(replies_.front());
      replies_.pop_front();
    }
    HttpResponse head;
    head.status = reply.status;
    head.headers = reply.headers;
    head.effective_url = request.url;
    if (handlers.on_headers && !handlers.on_headers(head)) return Status::Cancelled("aborted by the response handler");
    for (const auto& c : reply.chunks) {
      if (cancel != nullptr && cancel->cancelled()) return Status::Cancelled("request cancelled");
      if (handlers.on_data && !handlers.on_data(c)) return Status::Cancelled("aborted by the response handler");
    }
    if (!reply.transport.ok()) return reply.transport;
    return head;
  }

 private:
  mutable std::mutex mu_;
  std::deque<FakeHttpReply> replies_;
  std::vector<HttpRequest> requests_;
};

}  // namespace warren::testing
