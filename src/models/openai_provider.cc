#include "models/openai_provider.h"

#include <fmt/format.h>

#include <map>
#include <optional>

#include "common/ids.h"
#include "common/log.h"
#include "common/sse_parser.h"
#include "models/provider_util.h"

namespace warren::models {
namespace {

using internal::ErrorFromHttp;
using internal::ErrorFromTransport;
using internal::ErrorFromType;
using internal::ProtocolError;

Json UserParts(const std::vector<const ContentBlock*>& blocks, bool* text_only) {
  Json parts = Json::array();
  *text_only = true;
  for (const ContentBlock* b : blocks) {
    if (b->type == BlockType::kText) {
      parts.push_back({{"type", "text"}, {"text", b->text}});
    } else if (b->type == BlockType::kImage && b->raw.contains("source") && b->raw["source"].is_object()) {
      const Json& src = b->raw["source"];
      std::string kind = JsonStr(src, "type");
      std::string url;
      if (kind == "base64") {
        url = "data:" + JsonStr(src, "media_type", "image/png") + ";base64," + JsonStr(src, "data");
      } else if (kind == "url") {
        url = JsonStr(src, "url");
      }
      if (!url.empty()) {
        parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
        *text_only = false;
      }
    } else if (b->type == BlockType::kDocument && b->raw.contains("source") && b->raw["source"].is_object() &&
               JsonStr(b->raw["source"], "type") == "text") {
      parts.push_back({{"type", "text"}, {"text", JsonStr(b->raw["source"], "data")}});
    }
  }
  return parts;
}

std::string ToolResultText(const ContentBlock& b) {
  std::string text;
  for (const auto& c : b.content) {
    if (!text.empty()) text += "\n";
    text += c.type == BlockType::kText ? c.text : "[" + std::string(BlockTypeName(c.type)) + " omitted]";
  }
  return b.is_error ? "Error: " + text : text;
}

}  // namespace

Json BuildOpenAiBody(const ModelRequest& r, std::string_view default_model, bool stream, bool stream_usage) {
  Json messages = Json::array();
  if (!r.system.empty()) messages.push_back({{"role", "system"}, {"content", JoinText(r.system, "\n\n")}});
  for (const auto& m : r.messages) {
    if (m.role == Role::kUser) {
      std::vector<const ContentBlock*> rest;
      for (const auto& b : m.content) {
        if (b.type == BlockType::kToolResult) {
          messages.push_back({{"role", "tool"}, {"tool_call_id", b.tool_use_id}, {"content", ToolResultText(b)}});
        } else {
          rest.push_back(&b);
        }
      }
      if (rest.empty()) continue;
      bool text_only = true;
      Json parts = UserParts(rest, &text_only);
      if (parts.empty()) continue;
      if (text_only) {
        std::string text;
        for (const auto& p : parts) text += (text.empty() ? "" : "\n") + p["text"].get<std::string>();
        messages.push_back({{"role", "user"}, {"content", text}});
      } else {
        messages.push_back({{"role", "user"}, {"content", parts}});
      }
    } else {
      std::string text;
      Json calls = Json::array();
      for (const auto& b : m.content) {
        if (b.type == BlockType::kText) text += b.text;
        if (b.type == BlockType::kToolUse) {
          calls.push_back({{"id", b.id}, {"type", "function"},
                           {"function", {{"name", b.name}, {"arguments", DumpJson(b.input.is_null() ? Json::object() : b.input)}}}});
        }
      }
      Json msg = {{"role", "assistant"}, {"content", text.empty() && !calls.empty() ? Json(nullptr) : Json(text)}};
      if (!calls.empty()) msg["tool_calls"] = std::move(calls);
      messages.push_back(std::move(msg));
    }
  }
  Json body = {{"model", r.model.empty() ? std::string(default_model) : r.model}, {"messages", std::move(messages)}};
  body["max_tokens"] = r.max_tokens;
  if (!r.tools.empty()) {
    Json tools = Json::array();
    for (const auto& t : r.tools) {
      Json fn = {{"name", t.name}, {"parameters", t.input_schema}};
      if (!t.description.empty()) fn["description"] = t.description;
      tools.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
    body["tools"] = std::move(tools);
  }
  if (r.tool_choice.is_object()) {
    std::string type = JsonStr(r.tool_choice, "type", "auto");
    if (type == "any") {
      body["tool_choice"] = "required";
    } else if (type == "tool") {
      body["tool_choice"] = {{"type", "function"}, {"function", {{"name", JsonStr(r.tool_choice, "name")}}}};
    } else if (type == "none") {
      body["tool_choice"] = "none";
    } else {
      body["tool_choice"] = "auto";
    }
  }
  if (r.temperature) body["temperature"] = *r.temperature;
  if (!r.stop_sequences.empty()) body["stop"] = r.stop_sequences;
  if (stream) {
    body["stream"] = true;
    if (stream_usage) body["stream_options"] = {{"include_usage", true}};
  }
  return body;
}

namespace {

// Decodes chat.completion.chunk objects into canonical blocks.
class ChunkDecoder final {
 public:
  explicit ChunkDecoder(ModelStreamObserver* obs) : obs_(obs) {}

  // Returns false once an error is recorded.
  bool OnChunk(const Json& j) {
    if (!j.is_object()) return Fail(ProtocolError("chunk is not a JSON object"));
    if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
      std::string type, message;
      if (e->is_object()) {
        type = JsonStr(*e, "type");
        if (type.empty() && e->contains("code") && (*e)["code"].is_string()) type = (*e)["code"];
        message = JsonStr(*e, "message", "error in stream");
      } else if (e->is_string()) {
        message = e->get<std::string>();
      }
      ModelError err = ErrorFromType(type.empty() ? "api_error" : type, message);
      err.mid_stream = true;
      return Fail(std::move(err));
    }
    if (!started_) {
      started_ = true;
      response_.id = JsonStr(j, "id");
      response_.model = JsonStr(j, "model");
      if (obs_) obs_->OnMessageStart(response_.id, ModelUsage{});
    }
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
      int64_t prompt = JsonInt(*u, "prompt_tokens");
      int64_t cached = 0;
      if (auto d = u->find("prompt_tokens_details"); d != u->end() && d->is_object()) {
        cached = JsonInt(*d, "cached_tokens");
      }
      response_.usage.input_tokens = std::max<int64_t>(0, prompt - cached);
      response_.usage.cache_read_input_tokens = cached;
      response_.usage.output_tokens = JsonInt(*u, "completion_tokens");
    }
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array() || choices->empty()) return true;
    const Json& c = (*choices)[0];
    if (!c.is_object()) return true;
    const Json& d = JsonObj(c, "delta");
    for (const char* key : {"reasoning_content", "reasoning"}) {
      if (auto r = d.find(key); r != d.end() && r->is_string() && !r->get_ref<const std::string&>().empty()) {
        if (thinking_ < 0) {
          thinking_ = Add(ContentBlock::Thinking(""));
          if (obs_) obs_->OnThinkingStart(thinking_);
        }
        blocks_[thinking_].text += r->get<std::string>();
        if (obs_) obs_->OnThinkingDelta(thinking_, r->get<std::string>());
        break;
      }
    }
    if (auto t = d.find("content"); t != d.end() && t->is_string() && !t->get_ref<const std::string&>().empty()) {
      if (text_ < 0) {
        text_ = Add(ContentBlock::Text(""));
        if (obs_) obs_->OnTextStart(text_);
      }
      blocks_[text_].text += t->get<std::string>();
      if (obs_) obs_->OnTextDelta(text_, t->get<std::string>());
    }
    if (auto calls = d.find("tool_calls"); calls != d.end() && calls->is_array()) {
      int position = 0;
      for (const auto& tc : *calls) {
        if (!tc.is_object()) continue;
        int key = tc.contains("index") && tc["index"].is_number_integer() ? tc["index"].get<int>() : position;
        position++;
        const Json& fn = JsonObj(tc, "function");
        auto it = tools_.find(key);
        if (it == tools_.end()) {
          std::string id = JsonStr(tc, "id");
          if (id.empty()) id = NewId("call_", 24);
          int index = Add(ContentBlock::ToolUse(id, JsonStr(fn, "name"), Json::object()));
          it = tools_.emplace(key, index).first;
          if (obs_) obs_->OnToolUseStart(index, id, blocks_[index].name);
        } else if (auto n = fn.find("name"); n != fn.end() && n->is_string() && blocks_[it->second].name.empty()) {
          blocks_[it->second].name = n->get<std::string>();
        }
        if (auto a = fn.find("arguments"); a != fn.end()) {
          std::string piece = a->is_string() ? a->get<std::string>() : a->is_object() ? DumpJson(*a) : "";
          args_[it->second] += piece;
          if (obs_ && !piece.empty()) obs_->OnToolInputDelta(it->second, piece);
        }
      }
    }
    if (auto f = c.find("finish_reason"); f != c.end() && f->is_string()) finish_ = f->get<std::string>();
    return true;
  }

  void Done() { done_ = true; }
  bool Fail(ModelError e) {
    if (!error_) error_ = std::move(e);
    return false;
  }
  const std::optional<ModelError>& error() const { return error_; }
  bool started() const { return started_; }
  bool complete() const { return done_ || !finish_.empty(); }

  ModelResponse Finish() {
    bool any_tool = false;
    for (size_t i = 0; i < blocks_.size(); i++) {
      ContentBlock& b = blocks_[i];
      if (b.type == BlockType::kToolUse) {
        any_tool = true;
        const std::string& raw = args_[static_cast<int>(i)];
        if (!raw.empty()) {
          auto parsed = ParseJson(raw);
          // Small local models sometimes emit broken JSON: keep the text so the
          // tool reports the problem to the model instead of failing the turn.
          b.input = parsed.ok() && parsed->is_object() ? std::move(parsed).value()
                                                       : Json{{"_invalid_arguments", raw}};
        }
      }
      if (obs_) obs_->OnBlockStop(static_cast<int>(i), b);
    }
    if (finish_ == "tool_calls" || finish_ == "function_call" || (any_tool && finish_ != "length")) {
      response_.stop_reason = "tool_use";
    } else if (finish_ == "length") {
      response_.stop_reason = "max_tokens";
    } else if (finish_ == "content_filter") {
      response_.stop_reason = "refusal";
    } else {
      response_.stop_reason = "end_turn";
    }
    response_.content = std::move(blocks_);
    return std::move(response_);
  }

 private:
  int Add(ContentBlock b) {
    blocks_.push_back(std::move(b));
    return static_cast<int>(blocks_.size()) - 1;
  }

  ModelStreamObserver* obs_;
  ModelResponse response_;
  std::vector<ContentBlock> blocks_;
  std::map<int, int> tools_;        // OpenAI tool_calls index -> block index
  std::map<int, std::string> args_;  // block index -> arguments text
  int thinking_ = -1;
  int text_ = -1;
  std::string finish_;
  std::optional<ModelError> error_;
  bool started_ = false;
  bool done_ = false;
};

class OpenAiProvider final : public ModelProvider {
 public:
  OpenAiProvider(OpenAiOptions options, std::shared_ptr<HttpClient> http)
      : options_(std::move(options)), http_(std::move(http)) {
    api_key_ = internal::FromEnv(options_.api_key, options_.api_key_env.c_str());
    std::string base = internal::TrimSlash(internal::FromEnv(options_.base_url, "OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"));
    bool has_v1 = base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0;
    endpoint_ = base + (has_v1 ? "/chat/completions" : "/v1/chat/completions");
  }

  std::string_view name() const override { return "openai"; }
  std::string default_model() const override { return options_.default_model; }
  int64_t context_window(std::string_view) const override { return options_.context_window; }

  void CallAsync(ModelRequest request, ModelStreamObserver* observer, CallOptions options,
                 ModelCallback done) override {
    auto req = std::make_shared<HttpRequest>();
    req->method = "POST";
    req->url = endpoint_;
    req->body = DumpJson(BuildOpenAiBody(request, options_.default_model, true, options_.stream_usage));
    req->connect_timeout_ms = options_.connect_timeout_ms;
    req->idle_timeout_ms = options_.idle_timeout_ms;
    req->total_timeout_ms = options_.total_timeout_ms;
    if (!api_key_.empty()) req->headers.emplace_back("authorization", "Bearer " + api_key_);
    req->headers.emplace_back("content-type", "application/json");
    req->headers.emplace_back("accept", "text/event-stream");
    for (const auto& h : options_.extra_headers) req->headers.push_back(h);
    CallWithRetriesAsync(
        options_.retry, options_.retry_deps, options, observer,
        [this, req, observer, options](int, AttemptDone attempt_done) {
          Attempt(*req, observer, options, std::move(attempt_done));
        },
        [done = std::move(done)](ModelResult result) {
          if (!result.ok()) {
            const ModelError& e = result.error();
            log::Warn("model.error", {{"provider", "openai"}, {"kind", ModelErrorKindName(e.kind)},
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
    ChunkDecoder decoder;
    std::unique_ptr<SseParser> parser;
    HttpResponse head;
    bool json_body = false;
    std::string raw_body;
  };

  void Attempt(const HttpRequest& req, ModelStreamObserver* observer, const CallOptions& options, AttemptDone done) {
    auto st = std::make_shared<AttemptState>(observer);
    AttemptState* s = st.get();
    s->parser = std::make_unique<SseParser>([s](const SseEvent& ev) {
      ChunkDecoder& decoder = s->decoder;
      if (decoder.error()) return;
      if (ev.data == "[DONE]") {
        decoder.Done();
        return;
      }
      auto j = ParseJson(ev.data);
      if (!j.ok()) {
        decoder.Fail(ProtocolError("bad JSON chunk: " + j.status().message()));
        return;
      }
      // Backstop: no exception may unwind through libcurl's C frames.
      try {
        if (ev.event == "error" && j->is_object() && !j->contains("error")) {
          decoder.OnChunk(Json{{"error", *j}});
          return;
        }
        decoder.OnChunk(*j);
      } catch (const std::exception& e) {
        decoder.Fail(ProtocolError(std::string("undecodable chunk: ") + e.what()));
      }
    }, options_.max_event_bytes);
    StreamHandlers handlers;
    handlers.on_headers = [st](const HttpResponse& h) {
      st->head = h;
      st->json_body = h.status == 200 && h.Header("content-type").value_or("").rfind("application/json", 0) == 0;
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
                       [this, st, cancel = options.cancel, done = std::move(done)](Result<HttpResponse> r) {
                         ModelResult result = [&]() -> ModelResult {
                           try {
                             return Complete(*st, r, cancel);
                           } catch (const std::exception& e) {
                             return ProtocolError(std::string("undecodable answer: ") + e.what());
                           }
                         }();
                         done(std::move(result));
                       });
  }

  ModelResult Complete(AttemptState& st, const Result<HttpResponse>& r, const CancelToken* cancel) {
    ChunkDecoder& decoder = st.decoder;
    if (decoder.error()) return *decoder.error();
    if (!r.ok()) {
      if (cancel != nullptr && cancel->cancelled()) {
        return ErrorFromTransport(Status::Cancelled("cancelled"), decoder.started());
      }
      return ErrorFromTransport(r.status(), decoder.started());
    }
    const HttpResponse& head = st.head;
    const std::string& raw_body = st.raw_body;
    if (head.status != 200) return ErrorFromHttp(head, raw_body, options_.clock);
    if (st.json_body) {
      // A server that ignored "stream": one chat.completion object, decoded
      // as a single chunk whose delta is the message.
      auto j = ParseJson(raw_body);
      if (!j.ok() || !j->is_object()) return ProtocolError("non-streamed response is not a JSON object");
      Json chunk = *j;
      if (chunk.contains("choices") && chunk["choices"].is_array()) {
        for (auto& c : chunk["choices"]) {
          if (!c.is_object() || !c.contains("message")) continue;
          Json msg = c["message"];
          if (msg.contains("tool_calls") && msg["tool_calls"].is_array()) {
            for (size_t i = 0; i < msg["tool_calls"].size(); i++) msg["tool_calls"][i]["index"] = i;
          }
          c["delta"] = std::move(msg);
        }
      }
      decoder.OnChunk(chunk);
      if (decoder.error()) return *decoder.error();
      decoder.Done();
      return decoder.Finish();
    }
    st.parser->Finish();
    if (!decoder.complete()) return ProtocolError("stream ended before a finish_reason or [DONE]");
    return decoder.Finish();
  }

  const OpenAiOptions options_;
  const std::shared_ptr<HttpClient> http_;
  std::string api_key_;
  std::string endpoint_;
};

}  // namespace

std::unique_ptr<ModelProvider> NewOpenAiProvider(OpenAiOptions options, std::shared_ptr<HttpClient> http) {
  if (!http) http = NewCurlHttpClient();
  return std::make_unique<OpenAiProvider>(std::move(options), std::move(http));
}

}  // namespace warren::models
