#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "common/log.h"

namespace warren::cli {
namespace {

// Columns taken by UTF-8 text (one per code point: good enough for the
// labels, paths and log lines shown here).
size_t Columns(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n++;
  return n;
}

// The longest prefix of `s` that fits in `cols` columns (ending in "…" when
// cut), never splitting a UTF-8 sequence; control characters become spaces.
std::string Fit(std::string_view s, size_t cols) {
  std::string clean;
  for (char ch : s) clean += (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ? ' ' : ch;
  if (Columns(clean) <= cols) return clean;
  if (cols == 0) return "";
  std::string out;
  size_t used = 0;
  for (size_t i = 0; i < clean.size();) {
    size_t len = 1;
    unsigned char c = static_cast<unsigned char>(clean[i]);
    if (c >= 0xF0) len = 4;
    else if (c >= 0xE0) len = 3;
    else if (c >= 0xC0) len = 2;
    if (used + 1 >= cols) break;  // keep a column for the ellipsis
    out.append(clean, i, len);
    used++;
    i += len;
  }
  return out + "…";
}

}  // namespace

std::string HumanBytes(int64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

Progress::Style Progress::Style::Detect(int fd) {
  Style s;
  s.tty = isatty(fd) == 1;
  const char* nc = std::getenv("NO_COLOR");
  s.color = s.tty && !(nc && *nc);
  struct winsize ws = {};
  if (s.tty && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) s.columns = ws.ws_col;
  return s;
}

Progress::Progress(std::string label, Unit unit, int64_t total, Style style, int fd)
    : label_(std::move(label)), unit_(unit), style_(style), fd_(fd), start_(std::chrono::steady_clock::now()),
      total_(total) {
  std::lock_guard<std::mutex> l(mu_);
  if (style_.tty && log::GetLevel() < log::Level::kWarn) {
    saved_log_level_ = static_cast<int>(log::GetLevel());
    log::SetLevel(log::Level::kWarn);
  }
  DrawLocked(true);
}

Progress::~Progress() {
  std::lock_guard<std::mutex> l(mu_);
  ClearLocked();
  RestoreLogLevelLocked();
}

void Progress::RestoreLogLevelLocked() {
  if (saved_log_level_ >= 0) log::SetLevel(static_cast<log::Level>(saved_log_level_));
  saved_log_level_ = -1;
}

void Progress::SetTotal(int64_t total) {
  std::lock_guard<std::mutex> l(mu_);
  total_ = total;
  DrawLocked(true);
}

void Progress::Update(int64_t done, std::string_view detail) {
  std::lock_guard<std::mutex> l(mu_);
  if (finished_) return;
  const bool changed_step = unit_ == Unit::kSteps && (done != done_ || detail != detail_);
  done_ = done;
  if (!detail.empty() || unit_ == Unit::kSteps) detail_ = std::string(detail);
  if (!style_.tty) {
    // Plain lines: one per 10% of a known byte total (steps are logged by
    // the caller as they start, so they need no line of their own here).
    if (unit_ != Unit::kBytes || total_ <= 0) return;
    int decile = static_cast<int>(std::min<int64_t>(10, done_ * 10 / total_));
    if (decile < next_decile_ || decile >= 10) return;  // 100% is the summary's
    next_decile_ = decile + 1;
    WriteLocked(label_ + ": " + std::to_string(decile * 10) + "% (" + HumanBytes(done_) + " of " +
                HumanBytes(total_) + ")\n");
    return;
  }
  DrawLocked(changed_step);
}

void Progress::Log(std::string_view line) {
  std::lock_guard<std::mutex> l(mu_);
  ClearLocked();
  WriteLocked(std::string(line) + "\n");
  if (!finished_) DrawLocked(true);
}

void Progress::Done(std::string_view summary) {
  std::lock_guard<std::mutex> l(mu_);
  if (finished_) return;
  finished_ = true;
  ClearLocked();
  RestoreLogLevelLocked();
  std::string text(summary);
  if (text.empty()) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_).count();
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f s", static_cast<double>(ms) / 1000);
    text = (unit_ == Unit::kBytes ? HumanBytes(done_) : std::to_string(done_) + " steps") + " in " + secs;
  }
  const std::string head = label_ + ":";
  WriteLocked((style_.color ? "\033[32m" + head + "\033[0m" : head) + " " + text + "\n");
}

std::string Progress::RenderForTest(int columns) {
  std::lock_guard<std::mutex> l(mu_);
  return RenderLocked(columns, false);
}

std::string Progress::RenderLocked(int columns, bool color) const {
  // label  [bar]  amount  detail
  const size_t cols = static_cast<size_t>(std::max(columns - 1, 20));  // never the last column: no wrap
  std::string amount;
  double frac = -1;
  if (unit_ == Unit::kBytes) {
    if (total_ > 0) {
      frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
      amount = std::to_string(static_cast<int>(frac * 100)) + "%  " + HumanBytes(done_) + " / " + HumanBytes(total_);
    } else {
      amount = HumanBytes(done_);
    }
  } else {
    if (total_ > 0) frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    amount = total_ > 0 ? std::to_string(std::min(done_ + 1, total_)) + "/" + std::to_string(total_) : "…";
  }
  // The bar's width does not follow the amount's (which grows as it
  // counts): room is kept for the widest amount of this kind.
  const size_t widest = unit_ == Unit::kBytes ? (total_ > 0 ? 29 : 10) : 7;
  // line = label "  " [ "[" cells "]  " ] amount [ "  " detail ]
  // The label yields first (down to 12 columns) so that a bar of at least
  // 10 cells and the widest amount fit.
  constexpr size_t kMinBar = 10;
  const size_t label_room = cols > 2 + widest + 4 + kMinBar + 12 ? cols - 2 - widest - 4 - kMinBar : 12;
  std::string label = Fit(label_, std::min<size_t>(48, label_room));
  size_t fixed = Columns(label) + 2 + std::max(widest, Columns(amount));
  size_t bar_cells = cols >= fixed + 4 + kMinBar ? std::min<size_t>(24, cols - fixed - 4) : 0;
  std::string bar;
  if (bar_cells > 0) {
    size_t full = frac < 0 ? 0 : static_cast<size_t>(frac * static_cast<double>(bar_cells) + 0.5);
    std::string on, off;
    for (size_t i = 0; i < bar_cells; i++) (i < full ? on : off) += i < full ? "█" : "░";
    bar = "[" + (color ? "\033[36m" + on + "\033[0m\033[2m" + off + "\033[0m" : on + off) + "]  ";
    fixed += bar_cells + 4;
  }
  std::string line = (color ? "\033[1m" + label + "\033[0m" : label) + "  " + bar + amount;
  if (!detail_.empty() && cols > fixed + 2) {
    std::string d = Fit(detail_, cols - fixed - 2);
    line += "  " + (color ? "\033[2m" + d + "\033[0m" : d);
  }
  return line;
}

void Progress::DrawLocked(bool force) {
  if (!style_.tty || finished_) return;
  auto now = std::chrono::steady_clock::now();
  // At most ~20 redraws a second: a fast copy must not spend its time drawing.
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(50)) return;
  last_draw_ = now;
  WriteLocked("\r\033[K" + RenderLocked(style_.columns, style_.color));
  drawn_ = true;
}

void Progress::ClearLocked() {
  if (drawn_) WriteLocked("\r\033[K");
  drawn_ = false;
}

void Progress::WriteLocked(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd_, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed stderr loses the progress, never the work
    s.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace warren::cli
