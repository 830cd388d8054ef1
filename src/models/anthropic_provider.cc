#include "models/anthropic_provider.h"

#include <fmt/format.h>

#include <map>
#include <optional>

#include "common/log.h"
#include "common/sse_parser.h"
#include "models/provider_util.h"

namespace warren::models {
namespace {

using internal::ErrorFromHttp;
using internal::ErrorFromTransport;
using internal::ErrorFromType;
using internal::ProtocolError;

bool HasCc(const Json& j) { return j.is_object() && j.contains("cache_control"); }

bool Cacheable(const Json& block) {
  if (!block.is_object()) return false;
  std::string type = JsonStr(block, "type");
  if (type == "thinking" || type == "redacted_thinking") return false;
  if (type == "text") {
    auto it = block.find("text");
    return it != block.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
  }
  return true;
}

// Marks the last cacheable block of `blocks` (an array). Returns +1 if a
// breakpoint was added, 0 if the block already had one or none is cacheable.
int MarkLast(Json& blocks) {
  if (!blocks.is_array()) return 0;
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    if (!Cacheable(*it)) continue;
    if (HasCc(*it)) return 0;
    (*it)["cache_control"] = Json{{"type", "ephemeral"}};
    return 1;
  }
  return 0;
}

void NormalizeContent(Json& message) {
  auto it = message.find("content");
  if (it != message.end() && it->is_string()) *it = Json::array({Json{{"type", "text"}, {"text", it->get<std::string>()}}});
}

}  // namespace

int PlaceCacheBreakpoints(Json& body, int max_breakpoints) {
  int existing = 0;
  if (auto it = body.find("tools"); it != body.end() && it->is_array()) {
    for (const auto& t : *it) existing += HasCc(t) ? 1 : 0;
  }
  if (auto it = body.find("system"); it != body.end() && it->is_array()) {
    for (const auto& b : *it) existing += HasCc(b) ? 1 : 0;
  }
  if (auto it = body.find("messages"); it != body.end() && it->is_array()) {
    for (const auto& m : *it) {
      auto c = m.find("content");
      if (c == m.end() || !c->is_array()) continue;
      for (const auto& b : *c) existing += HasCc(b) ? 1 : 0;
    }
  }
  int budget = max_breakpoints - existing;
  int added = 0;
  auto spend = [&](int n) {
    added += n;
    budget -= n;
  };
  Json* messages = body.contains("messages") && body["messages"].is_array() ? &body["messages"] : nullptr;

  // 1. The end of the conversation: this turn writes the cache, the next
  //    turn (same prefix + new messages) reads it.
  if (budget > 0 && messages != nullptr && !messages->empty()) {
    Json& last = messages->back();
    NormalizeContent(last);
    spend(MarkLast(last["content"]));
  }
  // 2. The system prompt (stable across a session).
  if (budget > 0 && body.contains("system")) {
    Json& system = body["system"];
    if (system.is_string()) system = Json::array({Json{{"type", "text"}, {"text", system.get<std::string>()}}});
    spend(MarkLast(system));
  }
  // 3. The tools (stable; they precede the system prompt in the prefix).
  if (budget > 0 && body.contains("tools") && body["tools"].is_array() && !body["tools"].empty()) {
    Json& tool = body["tools"].back();
    if (!HasCc(tool)) {
      tool["cache_control"] = Json{{"type", "ephemeral"}};
      spend(1);
    }
  }
  // 4. The previous turn's end (the last user message before the latest
  //    assistant message): where the previous request wrote its cache, so
  //    the read hits even when a turn appends more than the ~20 blocks the
  //    API looks back from a breakpoint.
  if (budget > 0 && messages != nullptr && messages->size() >= 3) {
    int n = static_cast<int>(messages->size());
    int assistant = -1;
    for (int i = n - 2; i >= 0; i--) {
      if (JsonStr((*messages)[i], "role") == "assistant") {
        assistant = i;
        break;
      }
    }
    for (int i = assistant - 1; i >= 0; i--) {
      if (JsonStr((*messages)[i], "role") == "user") {
        NormalizeContent((*messages)[i]);
        spend(MarkLast((*messages)[i]["content"]));
        break;
      }
    }
  }
  return added;
}

Json BuildAnthropicBody(const ModelRequest& request, std::string_view default_model, bool stream,
                        int max_cache_breakpoints) {
  Json body = RequestToJson(request, default_model);
  if (stream) body["stream"] = true;
  if (request.auto_cache) PlaceCacheBreakpoints(body, max_cache_breakpoints);
  return body;
}

namespace {

// Decodes one attempt's event stream into a ModelResponse, forwarding deltas.
class StreamDecoder final {
 public:
  explicit StreamDecoder(ModelStreamObserver* obs) : obs_(obs) {}

  // Returns false to stop reading (an error was recorded).
  bool OnEvent(const SseEvent& ev) {
    auto parsed = ParseJson(ev.data);
    if (!parsed.ok() || !parsed->is_object()) {
      return Fail(ProtocolError(fmt::format("bad JSON in \"{}\" event: {}", ev.event, parsed.status().message())));
    }
    const Json& j = *parsed;
    std::string type = JsonStr(j, "type", ev.event);
    if (type == "ping") return true;
    if (type == "message_start") {
      const Json& m = JsonObj(j, "message");
      response_.id = JsonStr(m, "id");
      response_.model = JsonStr(m, "model");
      response_.usage = ModelUsage::FromJson(JsonObj(m, "usage"));
      started_ = true;
      if (obs_) obs_->OnMessageStart(response_.id, response_.usage);
      return true;
    }
    if (type == "content_block_start") return BlockStart(j);
    if (type == "content_block_delta") return BlockDelta(j);
    if (type == "content_block_stop") return BlockStop(j);
    if (type == "message_delta") {
      if (auto d = j.find("delta"); d != j.end() && d->is_object()) {
        if (auto s = d->find("stop_reason"); s != d->end() && s->is_string()) response_.stop_reason = *s;
        if (auto s = d->find("stop_sequence"); s != d->end() && s->is_string()) response_.stop_sequence = *s;
      }
      if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
        // Cumulative counts: a field present here replaces message_start's.
        auto take = [&](const char* k, int64_t* dst) {
          if (auto v = u->find(k); v != u->end() && v->is_number_integer()) *dst = v->get<int64_t>();
        };
        take("input_tokens", &response_.usage.input_tokens);
        take("output_tokens", &response_.usage.output_tokens);
        take("cache_read_input_tokens", &response_.usage.cache_read_input_tokens);
        take("cache_creation_input_tokens", &response_.usage.cache_creation_input_tokens);
      }
      return true;
    }
    if (type == "message_stop") {
      stopped_ = true;
      return true;
    }
    if (type == "error") {
      const Json& err = JsonObj(j, "error");
      ModelError e = ErrorFromType(JsonStr(err, "type", "api_error"), JsonStr(err, "message", "error event in stream"));
      e.mid_stream = true;
      return Fail(std::move(e));
    }
    return true;  // unknown event types are ignored (API versioning policy)
  }

  bool Fail(ModelError e) {
    if (!error_) error_ = std::move(e);
    return false;
  }

  const std::optional<ModelError>& error() const { return error_; }
  bool started() const { return started_; }
  bool stopped() const { return stopped_; }

  ModelResponse Finish() {
    for (auto& [index, p] : blocks_) response_.content.push_back(std::move(p.block));
    return std::move(response_);
  }

 private:
  struct Partial {
    ContentBlock block;
    std::string json;  // tool_use / server tool input being streamed
    bool stopped = false;
  };

  Partial* Find(const Json& j) {
    auto it = j.find("index");
    if (it == j.end() || !it->is_number_integer()) return nullptr;
    auto b = blocks_.find(it->get<int>());
    return b == blocks_.end() ? nullptr : &b->second;
  }

  bool BlockStart(const Json& j) {
    auto idx = j.find("index");
    auto cb = j.find("content_block");
    if (idx == j.end() || !idx->is_number_integer() || cb == j.end() || !cb->is_object()) {
      return Fail(ProtocolError("content_block_start without index or content_block"));
    }
    int index = idx->get<int>();
    if (blocks_.count(index)) return Fail(ProtocolError(fmt::format("content block {} started twice", index)));
    Partial p;
    std::string type = JsonStr(*cb, "type");
    if (type == "text") {
      p.block = ContentBlock::Text(JsonStr(*cb, "text"));
      if (obs_) {
        obs_->OnTextStart(index);
        if (!p.block.text.empty()) obs_->OnTextDelta(index, p.block.text);
      }
    } else if (type == "thinking") {
      p.block = ContentBlock::Thinking(JsonStr(*cb, "thinking"), JsonStr(*cb, "signature"));
      if (obs_) obs_->OnThinkingStart(index);
    } else if (type == "redacted_thinking") {
      p.block.type = BlockType::kRedactedThinking;
      p.block.data = JsonStr(*cb, "data");
      if (obs_) obs_->OnThinkingStart(index);
    } else if (type == "tool_use") {
      p.block = ContentBlock::ToolUse(JsonStr(*cb, "id"), JsonStr(*cb, "name"), Json::object());
      if (obs_) obs_->OnToolUseStart(index, p.block.id, p.block.name);
    } else {
      p.block.type = BlockType::kOther;
      p.block.raw = *cb;
    }
    blocks_.emplace(index, std::move(p));
    return true;
  }

  bool BlockDelta(const Json& j) {
    Partial* p = Find(j);
    if (p == nullptr || p->stopped) return Fail(ProtocolError("content_block_delta for an unknown block"));
    int index = j["index"].get<int>();
    const Json& d = JsonObj(j, "delta");
    std::string type = JsonStr(d, "type");
    if (type == "text_delta") {
      std::string t = JsonStr(d, "text");
      p->block.text += t;
      if (obs_) obs_->OnTextDelta(index, t);
    } else if (type == "input_json_delta") {
      std::string t = JsonStr(d, "partial_json");
      p->json += t;
      if (obs_ && p->block.type == BlockType::kToolUse) obs_->OnToolInputDelta(index, t);
    } else if (type == "thinking_delta") {
      std::string t = JsonStr(d, "thinking");
      p->block.text += t;
      if (obs_) obs_->OnThinkingDelta(index, t);
    } else if (type == "signature_delta") {
      p->block.signature += JsonStr(d, "signature");
    }  // citations_delta and future delta types: not kept in the canonical form
    return true;
  }

  bool BlockStop(const Json& j) {
    Partial* p = Find(j);
    if (p == nullptr || p->stopped) return Fail(ProtocolError("content_block_stop for an unknown block"));
    p->stopped = true;
    int index = j["index"].get<int>();
    if (!p->json.empty() || p->block.type == BlockType::kToolUse) {
      Json input = Json::object();
      if (!p->json.empty()) {
        auto parsed = ParseJson(p->json);
        if (!parsed.ok() || !parsed->is_object()) {
          return Fail(ProtocolError(fmt::format("tool input of block {} is not a JSON object", index)));
        }
        input = std::move(parsed).value();
      }
      if (p->block.type == BlockType::kToolUse) {
        p->block.input = std::move(input);
      } else if (p->block.raw.is_object()) {
        p->block.raw["input"] = std::move(input);
      }
    }
    if (obs_) obs_->OnBlockStop(index, p->block);
    return true;
  }

  ModelStreamObserver* obs_;
  ModelResponse response_;
  std::map<int, Partial> blocks_;
  std::optional<ModelError> error_;
  bool started_ = false;
  bool stopped_ = false;
};

class AnthropicProvider final : public ModelProvider {
 public:
  AnthropicProvider(AnthropicOptions options, std::shared_ptr<HttpClient> http)
      : options_(std::move(options)), http_(std::move(http)) {
    api_key_ = internal::FromEnv(options_.api_key, options_.api_key_env.c_str());
    auth_token_ = internal::FromEnv(options_.auth_token, "ANTHROPIC_AUTH_TOKEN");
    base_url_ = internal::TrimSlash(internal::FromEnv(options_.base_url, "ANTHROPIC_BASE_URL", "https://api.anthropic.com"));
  }

  std::string_view name() const override { return "anthropic"; }
  std::string default_model() const override { return options_.default_model; }

  void CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                 ModelCallback done) override {
    if (api_key_.empty() && auth_token_.empty()) {
      ModelError e;
      e.kind = ModelErrorKind::kAuthentication;
      e.message = fmt::format("no API key: set {} or the provider's api_key", options_.api_key_env);
      done(std::move(e));
      return;
    }
    auto req = std::make_shared<HttpRequest>();
    req->method = "POST";
    req->url = base_url_ + "/v1/messages";
    req->body = DumpJson(BuildAnthropicBody(request, options_.default_model, true, options_.max_cache_breakpoints));
    req->connect_timeout_ms = options_.connect_timeout_ms;
    req->idle_timeout_ms = options_.idle_timeout_ms;
    req->total_timeout_ms = options_.total_timeout_ms;
    if (!api_key_.empty()) {
      req->headers.emplace_back("x-api-key", api_key_);
    } else {
      req->headers.emplace_back("authorization", "Bearer " + auth_token_);
    }
    req->headers.emplace_back("anthropic-version", options_.version);
    if (!options_.betas.empty()) {
      std::string betas;
      for (const auto& b : options_.betas) betas += (betas.empty() ? "" : ",") + b;
      req->headers.emplace_back("anthropic-beta", betas);
    }
    req->headers.emplace_back("content-type", "application/json");
    req->headers.emplace_back("accept", "text/event-stream");
    for (const auto& h : options_.extra_headers) req->headers.push_back(h);

    CallWithRetriesAsync(
        options_.retry, options_.retry_deps, options, observer,
        [this, req, observer, options](int attempt, AttemptDone attempt_done) {
          Attempt(*req, observer, options, attempt, std::move(attempt_done));
        },
        [done = std::move(done)](ModelResult result) {
          if (!result.ok()) {
            const ModelError& e = result.error();
            log::Warn("model.error", {{"provider", "anthropic"}, {"kind", ModelErrorKindName(e.kind)},
                                      {"status", e.http_status}, {"attempts", e.attempts}, {"message", e.message}});
          }
          done(std::move(result));
        });
  }

 private:
  // One attempt's decoding state, shared by the stream's handlers and its
  // completion (which run on the HTTP client's event loop).
  struct AttemptState {
    explicit AttemptState(ModelStreamObserver* observer) : decoder(observer) {}
    StreamDecoder decoder;
    std::unique_ptr<SseParser> parser;
    HttpResponse head;
    bool json_body = false;
    std::string raw_body;  // error bodies and non-streamed JSON answers
  };

  void Attempt(const HttpRequest& req, ModelStreamObserver* observer, const CallOptions& options, int attempt,
               AttemptDone done) {
    auto st = std::make_shared<AttemptState>(observer);
    AttemptState* s = st.get();
    s->parser = std::make_unique<SseParser>([s](const SseEvent& ev) {
      if (s->decoder.error()) return;
      // Backstop: no exception may unwind through libcurl's C frames.
      try {
        s->decoder.OnEvent(ev);
      } catch (const std::exception& e) {
        s->decoder.Fail(ProtocolError(std::string("undecodable event: ") + e.what()));
      }
    }, options_.max_event_bytes);
    StreamHandlers handlers;
    handlers.on_headers = [st](const HttpResponse& h) {
      st->head = h;
      std::string ct = h.Header("content-type").value_or("");
      st->json_body = h.status == 200 && ct.rfind("application/json", 0) == 0;
      return true;
    };
    handlers.on_data = [st](std::string_view chunk) {
      if (st->head.status != 200 || st->json_body) {
        if (st->raw_body.size() < (8u << 20)) st->raw_body.append(chunk);
        return true;
      }
      if (!st->parser->Feed(chunk)) {
        st->decoder.Fail(ProtocolError("SSE event over the size bound"));
        return false;
      }
      return !st->decoder.error().has_value();
    };
    http_->StreamAsync(req, std::move(handlers), options.cancel,
                       [this, st, observer, cancel = options.cancel, attempt,
                        done = std::move(done)](Result<HttpResponse> r) {
                         ModelResult result = [&]() -> ModelResult {
                           try {
                             return Complete(*st, r, observer, cancel, attempt);
                           } catch (const std::exception& e) {
                             return ProtocolError(std::string("undecodable answer: ") + e.what());
                           }
                         }();
                         done(std::move(result));
                       });
  }

  ModelResult Complete(AttemptState& st, const Result<HttpResponse>& r, ModelStreamObserver* observer,
                       const CancelToken* cancel, int attempt) {
    if (st.decoder.error()) return *st.decoder.error();
    if (!r.ok()) {
      if (cancel != nullptr && cancel->cancelled()) {
        return ErrorFromTransport(Status::Cancelled("cancelled"), st.decoder.started());
      }
      ModelError e = ErrorFromTransport(r.status(), st.decoder.started());
      return e;
    }
    const HttpResponse& head = st.head;
    if (head.status != 200) {
      ModelError e = ErrorFromHttp(head, st.raw_body, options_.clock);
      log::Info("model.attempt_failed", {{"provider", "anthropic"}, {"attempt", attempt}, {"status", head.status},
                                         {"kind", ModelErrorKindName(e.kind)}});
      return e;
    }
    if (st.json_body) return FromJsonBody(st.raw_body, observer);
    st.parser->Finish();
    if (!st.decoder.stopped()) return ProtocolError("stream ended before message_stop");
    ModelResponse resp = st.decoder.Finish();
    resp.attempts = attempt;
    return resp;
  }

  // A proxy or server that ignored "stream": a complete Message object.
  ModelResult FromJsonBody(const std::string& body, ModelStreamObserver* observer) {
    auto j = ParseJson(body);
    if (!j.ok() || !j->is_object()) return ProtocolError("non-streamed response is not a JSON object");
    ModelResponse resp;
    resp.id = JsonStr(*j, "id");
    resp.model = JsonStr(*j, "model");
    resp.stop_reason = JsonStr(*j, "stop_reason");
    if (auto s = j->find("stop_sequence"); s != j->end() && s->is_string()) resp.stop_sequence = *s;
    resp.usage = ModelUsage::FromJson(JsonObj(*j, "usage"));
    if (auto c = j->find("content"); c != j->end() && c->is_array()) {
      for (const auto& b : *c) {
        auto block = BlockFromJson(b);
        if (!block.ok()) return ProtocolError(block.status().message());
        resp.content.push_back(std::move(block).value());
      }
    }
    if (observer != nullptr) {
      observer->OnMessageStart(resp.id, resp.usage);
      for (size_t i = 0; i < resp.content.size(); i++) observer->OnBlockStop(static_cast<int>(i), resp.content[i]);
    }
    return resp;
  }

  const AnthropicOptions options_;
  const std::shared_ptr<HttpClient> http_;
  std::string api_key_;
  std::string auth_token_;
  std::string base_url_;
};

}  // namespace

std::unique_ptr<ModelProvider> NewAnthropicProvider(AnthropicOptions options, std::shared_ptr<HttpClient> http) {
  if (!http) http = NewCurlHttpClient();
  return std::make_unique<AnthropicProvider>(std::move(options), std::move(http));
}

}  // namespace warren::models
