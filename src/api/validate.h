// Request validation helpers. Every failure is Status::InvalidArgument with
// a message that names the field path ("agent.tools[2].name: ...").
// Stateless; thread-safe.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/status.h"
#include "events/fields.h"

namespace warren::api {

// The generic field readers live in the domain (src/events/fields.h) so that
// the API and the engine read client events through one schema.
using events::ExpectKnownFields;
using events::ExpectObject;
using events::FieldOrNull;
using events::IndexPath;
using events::Invalid;
using events::JoinPath;
using events::ReadBool;
using events::ReadInt;
using events::ReadString;
using events::StringField;
using events::StringRule;
using events::TypeOf;
using events::ValidateContent;

// Metadata: map string->string, <=16 pairs, key 1..64, value <=512. With
// `patch`, null values are allowed (they delete a key).
Status ValidateMetadata(const Json& m, std::string_view path, bool patch);
// Applies a metadata patch (null or "" deletes) to `target`.
void ApplyMetadataPatch(Json* target, const Json& patch);

// Parses an integer query parameter.
Status ParseIntParam(const std::string& s, std::string_view name, int64_t min, int64_t max, int64_t* out);
// "true"/"false"/"1"/"0".
Status ParseBoolParam(const std::string& s, std::string_view name, bool* out);

}  // namespace warren::api
