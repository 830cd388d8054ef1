// List prices of Anthropic models, for `usage.list_cost` and budgets
// (spec section 6 "Budgets"). Amounts are kept in micro-dollars internally
// and shown as BetaMonetaryAmount {"amount": "<cents>", "currency": "USD"}.
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "common/json.h"

namespace warren::domain {

struct ModelPrice {
  // USD per million tokens.
  double input = 0, output = 0, cache_read = 0, cache_write_5m = 0;
};

// The list price of `model` (matched by family: opus, sonnet, haiku), or
// nullopt for models without a public price (local or scripted models).
std::optional<ModelPrice> PriceFor(std::string_view model);

// Cost in micro-dollars of one request's usage.
int64_t CostMicros(const ModelPrice& price, int64_t input, int64_t output, int64_t cache_read, int64_t cache_write);

// {"amount": "<cents>", "currency": "USD"} (cents rounded down).
Json MonetaryAmount(int64_t micros);
// Parses a BetaMonetaryAmount into micro-dollars; false if malformed.
bool ParseMonetaryAmount(const Json& j, int64_t* micros);

}  // namespace warren::domain
