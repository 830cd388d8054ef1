#include "common/sse_parser.h"

namespace warren {

bool SseParser::Feed(std::string_view chunk) {
  if (failed_) return false;
  if (!bom_checked_) {
    // A UTF-8 BOM may start the stream; it may arrive split across chunks.
    static constexpr std::string_view kBom = "\xEF\xBB\xBF";
    std::string probe = line_ + std::string(chunk.substr(0, 3));
    if (probe.size() < 3 && kBom.substr(0, probe.size()) == probe) {
      line_ = probe;
      return true;
    }
    bom_checked_ = true;
    if (probe.substr(0, 3) == kBom) {
      size_t from_chunk = 3 - line_.size();
      line_.clear();
      chunk.remove_prefix(from_chunk);
    } else if (line_.size() > max_bytes_) {
      // Bytes held back while probing for a split BOM count towards the
      // bound exactly as if they had arrived in one chunk (found by fuzzing).
      failed_ = true;
      return false;
    }
  }
  for (size_t i = 0; i < chunk.size(); i++) {
    char c = chunk[i];
    if (c == '\n' && last_was_cr_) {
      last_was_cr_ = false;
      continue;  // CRLF: the CR already ended the line
    }
    last_was_cr_ = (c == '\r');
    if (c == '\r' || c == '\n') {
      ProcessLine(line_);
      line_.clear();
      if (failed_) return false;
      continue;
    }
    // Copy a run of ordinary bytes at once.
    size_t j = i;
    while (j < chunk.size() && chunk[j] != '\r' && chunk[j] != '\n') j++;
    line_.append(chunk.data() + i, j - i);
    i = j - 1;
    if (line_.size() + data_.size() > max_bytes_) {
      failed_ = true;
      return false;
    }
  }
  return true;
}

void SseParser::Finish() {
  line_.clear();
  event_.clear();
  data_.clear();
  have_data_ = false;
}

void SseParser::ProcessLine(std::string_view line) {
  if (line.empty()) {
    Dispatch();
    return;
  }
  if (line[0] == ':') return;  // comment
  std::string_view field, value;
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    field = line;
  } else {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "event") {
    event_.assign(value);
  } else if (field == "data") {
    if (have_data_) data_.push_back('\n');
    data_.append(value);
    have_data_ = true;
    if (data_.size() > max_bytes_) failed_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
  } else if (field == "retry") {
    bool digits = !value.empty();
    long v = 0;
    for (char c : value) {
      if (c < '0' || c > '9' || v > 1'000'000'000) {
        digits = false;
        break;
      }
      v = v * 10 + (c - '0');
    }
    if (digits) retry_ = v;
  }
}

void SseParser::Dispatch() {
  if (!have_data_) {
    event_.clear();
    return;  // per spec: no data => no dispatch
  }
  SseEvent ev;
  ev.event = event_.empty() ? "message" : event_;
  ev.data = std::move(data_);
  ev.id = last_id_;
  ev.retry_ms = retry_;
  data_.clear();
  event_.clear();
  have_data_ = false;
  cb_(ev);
}

}  // namespace warren
