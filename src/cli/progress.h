// Progress of one long CLI operation (a snapshot build, an archive or
// restore, a file copy into or out of a sandbox), written to stderr so that
// stdout stays the command's result (an id, or JSON with --json).
//
//  - On a terminal (stderr isatty): one status line redrawn in place,
//      archive sbx_1  [█████████░░░░░░░░░░░]  45%  18.0 MiB / 40.0 MiB
//      build web      [██████░░░░░░░░░░░░░░]  2/6  RUN apt-get install -y git
//    with log lines printed above it; never wider than the terminal; ANSI
//    colour unless NO_COLOR is set (non-empty). The line is erased at the end
//    and replaced by a one-line summary. While the bar is up, info log lines
//    (common/log.h, which write to stderr on their own) are held back: the
//    log level is raised to warn until Done or destruction.
//  - Otherwise (a pipe, a file, CI logs): plain lines, nothing redrawn:
//    log lines as they come, and for byte counts one line per 10% passed
//    ("archive sbx_1: 40% (16.0 MiB of 40.0 MiB)"), then the summary.
//
// Thread-safety: every method may be called from any thread (one mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace warren::cli {

// "512 B", "1.5 KiB", "18.0 MiB", "2.3 GiB".
std::string HumanBytes(int64_t n);

class Progress final {
 public:
  enum class Unit { kBytes, kSteps };
  struct Style {
    bool tty = false;    // redraw one line in place
    bool color = false;  // ANSI colours (tty and NO_COLOR unset or empty)
    int columns = 80;    // terminal width (the line never wraps)
    // From the file descriptor (stderr by default) and the environment.
    static Style Detect(int fd = 2);
  };

  // `total` <= 0: not known yet (SetTotal later; bytes then show no %).
  // Writes to `fd` (stderr by default).
  Progress(std::string label, Unit unit, int64_t total, Style style, int fd = 2);
  ~Progress();  // erases a bar still drawn (an operation that failed)
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void SetTotal(int64_t total);
  // `done` units finished; `detail` (steps: what runs now) replaces the last.
  void Update(int64_t done, std::string_view detail = {});
  // A line of output (a build log line), printed above the bar.
  void Log(std::string_view line);
  // Ends the bar with "label: <summary>" (default: the amount done and the
  // time taken). Later calls print nothing.
  void Done(std::string_view summary = {});

  // The status line as it is drawn now, without escapes (tests).
  std::string RenderForTest(int columns);

 private:
  std::string RenderLocked(int columns, bool color) const;
  void DrawLocked(bool force);
  void ClearLocked();
  void WriteLocked(std::string_view s);
  void RestoreLogLevelLocked();

  const std::string label_;
  const Unit unit_;
  const Style style_;
  const int fd_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  int64_t total_ = 0, done_ = 0;
  std::string detail_;
  bool drawn_ = false, finished_ = false;
  int next_decile_ = 1;  // plain mode: the next 10% step to report
  int saved_log_level_ = -1;  // tty mode: the log level to restore
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace warren::cli
