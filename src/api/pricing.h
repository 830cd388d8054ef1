// List prices moved to the domain layer (domain/pricing.h) so that the
// engine can use them without depending on the API; these names keep the
// API's route code unchanged.
#pragma once

#include "domain/pricing.h"

namespace warren::api {

using domain::CostMicros;
using domain::ModelPrice;
using domain::MonetaryAmount;
using domain::ParseMonetaryAmount;
using domain::PriceFor;

}  // namespace warren::api
