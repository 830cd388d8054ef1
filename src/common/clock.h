// Clock: the injectable time seam (leveldb's Env idea, for time only).
// RealClock reads CLOCK_REALTIME / CLOCK_MONOTONIC; FakeClock is advanced by
// tests. Implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace warren {

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch (wall clock; used for timestamps).
  virtual int64_t NowMicros() const = 0;
  // Monotonic microseconds (durations, timeouts).
  virtual int64_t MonoMicros() const = 0;
  // The process-wide real clock.
  static Clock* Real();
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_micros = 1'780'000'000'000'000) : now_(start_micros) {}
  int64_t NowMicros() const override { return now_.load(); }
  int64_t MonoMicros() const override { return now_.load(); }
  void Advance(int64_t micros) { now_ += micros; }

 private:
  std::atomic<int64_t> now_;
};

// RFC 3339 in UTC with microseconds: "2026-11-24T05:04:05.123456Z".
std::string FormatRfc3339(int64_t micros);
// Parses RFC 3339 / ISO 8601 date-times ("2026-11-24T05:04:05Z",
// fractional seconds, "+01:00" offsets) and plain dates ("2026-11-24").
std::optional<int64_t> ParseRfc3339(std::string_view s);

}  // namespace warren
