// Small text helpers shared by the runner's tools: UTF-8 validation and
// repair, ANSI escape stripping, JS-compatible string quoting, errno names and
// random sentinels. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace warren::runner {

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view s);

// Replaces every ill-formed subsequence with U+FFFD using the WHATWG
// "maximal subpart" rule, which is what Node's TextDecoder/Buffer do.
std::string RepairUtf8(std::string_view s);

// Removes ANSI CSI sequences matching /\x1b\[[0-9;?]*[ -\/]*[@-~]/.
std::string StripAnsi(std::string_view s);

// "\r\n" -> "\n".
std::string NormalizeCrlf(std::string_view s);

// JSON.stringify(s) for a string: double quotes, escapes as in JSON.
std::string JsQuote(std::string_view s);

// Number of UTF-16 code units the UTF-8 string `s` occupies in JavaScript.
size_t Utf16Length(std::string_view s);

// "ENOENT", "EACCES", ... ("E<number>" when unknown).
std::string ErrnoName(int err);

// A random RFC 4122 version 4 UUID string (36 characters, lower case).
std::string RandomUuid();

// JavaScript Number -> string for integral or simple decimal values
// (120000 -> "120000", 1.5 -> "1.5").
std::string JsNumber(double v);

}  // namespace warren::runner
