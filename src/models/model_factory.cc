#include "models/model_factory.h"

#include <fmt/format.h>

#include <algorithm>

#include "models/anthropic_provider.h"
#include "models/bounded_provider.h"
#include "models/openai_provider.h"
#include "models/scripted_provider.h"

namespace warren::models {

Result<ModelConfig> ModelConfigFromJson(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("model config must be an object");
  ModelConfig c;
  for (const auto& [key, v] : j.items()) {
    auto str = [&](std::string* out) -> Status {
      if (!v.is_string()) return Status::InvalidArgument(fmt::format("model.{} must be a string", key));
      *out = v.get<std::string>();
      return Status::Ok();
    };
    if (key == "provider") {
      WARREN_RETURN_IF_ERROR(str(&c.provider));
    } else if (key == "model") {
      WARREN_RETURN_IF_ERROR(str(&c.model));
    } else if (key == "base_url") {
      WARREN_RETURN_IF_ERROR(str(&c.base_url));
    } else if (key == "api_key") {
      WARREN_RETURN_IF_ERROR(str(&c.api_key));
    } else if (key == "api_key_env") {
      WARREN_RETURN_IF_ERROR(str(&c.api_key_env));
    } else if (key == "script" || key == "script_path") {
      WARREN_RETURN_IF_ERROR(str(&c.script_path));
    } else if (key == "betas") {
      if (!v.is_array()) return Status::InvalidArgument("model.betas must be an array of strings");
      for (const auto& b : v) {
        if (!b.is_string()) return Status::InvalidArgument("model.betas must be an array of strings");
        c.betas.push_back(b.get<std::string>());
      }
    } else if (key == "max_attempts") {
      if (!v.is_number_integer() || v.get<int>() < 1) return Status::InvalidArgument("model.max_attempts must be a positive integer");
      c.max_attempts = v.get<int>();
    } else if (key == "context_window") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1) return Status::InvalidArgument("model.context_window must be a positive integer");
      c.context_window = v.get<int64_t>();
    } else if (key == "max_concurrent_calls") {
      // WARREN_MODEL_MAX_CONCURRENT arrives as a string.
      int64_t n = 0;
      bool ok = false;
      if (v.is_number_integer()) {
        n = v.get<int64_t>();
        ok = true;
      } else if (v.is_string()) {
        const std::string& t = v.get_ref<const std::string&>();
        ok = !t.empty() && t.size() <= 9 && t.find_first_not_of("0123456789") == std::string::npos;
        if (ok) n = std::stoll(t);
      }
      if (!ok || n < 1 || n > 100000)
        return Status::InvalidArgument("model.max_concurrent_calls must be an integer 1..100000");
      c.max_concurrent_calls = static_cast<int>(n);
    } else if (key == "latency_ms") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 3'600'000)
        return Status::InvalidArgument("model.latency_ms must be an integer 0..3600000");
      c.latency_ms = v.get<int64_t>();
    } else {
      return Status::InvalidArgument(fmt::format("model: unknown key \"{}\"", key));
    }
  }
  return c;
}

namespace {

Result<std::unique_ptr<ModelProvider>> NewUnboundedProvider(const ModelConfig& c, const ProviderDeps& deps) {
  RetryDeps retry_deps{deps.sleeper, deps.uniform01};
  if (c.provider == "anthropic") {
    AnthropicOptions o;
    o.api_key = c.api_key;
    if (!c.api_key_env.empty()) o.api_key_env = c.api_key_env;
    o.base_url = c.base_url;
    if (!c.model.empty()) o.default_model = c.model;
    o.betas = c.betas;
    if (c.max_attempts > 0) o.retry.max_attempts = c.max_attempts;
    o.retry_deps = retry_deps;
    o.clock = deps.clock;
    return NewAnthropicProvider(std::move(o), deps.http);
  }
  if (c.provider == "openai") {
    OpenAiOptions o;
    o.api_key = c.api_key;
    if (!c.api_key_env.empty()) o.api_key_env = c.api_key_env;
    o.base_url = c.base_url;
    if (!c.model.empty()) o.default_model = c.model;
    if (c.context_window > 0) o.context_window = c.context_window;
    if (c.max_attempts > 0) o.retry.max_attempts = c.max_attempts;
    o.retry_deps = retry_deps;
    o.clock = deps.clock;
    return NewOpenAiProvider(std::move(o), deps.http);
  }
  if (c.provider == "scripted" || c.provider.empty()) {
    ScriptedOptions o;
    o.script_path = c.script_path;
    if (!c.model.empty()) o.default_model = c.model;
    if (c.context_window > 0) o.context_window = c.context_window;
    if (c.max_attempts > 0) o.retry.max_attempts = c.max_attempts;
    o.retry_deps = retry_deps;
    o.latency_ms = c.latency_ms;
    return NewScriptedProvider(std::move(o));
  }
  return Status::InvalidArgument(fmt::format("unknown model provider \"{}\" (anthropic, openai, scripted)", c.provider));
}

}  // namespace

Result<std::unique_ptr<ModelProvider>> NewModelProvider(const ModelConfig& c, const ProviderDeps& deps) {
  if (c.latency_ms > 0 && c.provider != "scripted" && !c.provider.empty())
    return Status::InvalidArgument("model.latency_ms applies to the scripted provider only");
  WARREN_ASSIGN_OR_RETURN(auto inner, NewUnboundedProvider(c, deps));
  std::unique_ptr<ModelProvider> bounded =
      std::make_unique<BoundedProvider>(std::move(inner), std::max(1, c.max_concurrent_calls));
  return bounded;
}

}  // namespace warren::models
