#include "domain/pricing.h"

#include <cmath>

namespace warren::domain {

std::optional<ModelPrice> PriceFor(std::string_view m) {
  auto has = [&](std::string_view s) { return m.find(s) != std::string_view::npos; };
  if (!has("claude")) return std::nullopt;
  ModelPrice p;
  if (has("opus-4-5") || has("opus-4-6") || has("opus-4-7") || has("opus-4-8")) p = {5, 25, 0, 0};
  else if (has("opus")) p = {15, 75, 0, 0};
  else if (has("sonnet")) p = {3, 15, 0, 0};
  else if (has("haiku-3")) p = {0.8, 4, 0, 0};
  else if (has("haiku")) p = {1, 5, 0, 0};
  else return std::nullopt;
  p.cache_read = p.input * 0.1;
  p.cache_write_5m = p.input * 1.25;
  return p;
}

int64_t CostMicros(const ModelPrice& p, int64_t input, int64_t output, int64_t cache_read, int64_t cache_write) {
  // USD per MTok == micro-dollars per token.
  double micros = p.input * static_cast<double>(input) + p.output * static_cast<double>(output) +
                  p.cache_read * static_cast<double>(cache_read) + p.cache_write_5m * static_cast<double>(cache_write);
  return static_cast<int64_t>(std::llround(micros));
}

Json MonetaryAmount(int64_t micros) {
  return {{"amount", std::to_string(std::max<int64_t>(0, micros) / 10000)}, {"currency", "USD"}};
}

bool ParseMonetaryAmount(const Json& j, int64_t* micros) {
  if (!j.is_object() || !j.contains("amount") || !j["amount"].is_string()) return false;
  if (j.value("currency", Json()) != "USD") return false;
  const std::string& a = j["amount"].get_ref<const std::string&>();
  if (a.empty() || a.size() > 15 || (a.size() > 1 && a[0] == '0')) return false;
  for (char c : a)
    if (c < '0' || c > '9') return false;
  *micros = std::stoll(a) * 10000;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "amount" && it.key() != "currency") return false;
  return true;
}

}  // namespace warren::domain
