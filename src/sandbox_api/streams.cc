#include "sandbox_api/streams.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ids.h"
#include "common/log.h"

namespace warren::sandbox_api {

// ------------------------------------------------------------ EventStream

void EventStream::Wake(std::unique_lock<std::mutex>& lock) {
  std::function<void()> w = waker_;
  lock.unlock();
  if (w) w();
}

void EventStream::SetWaker(std::function<void()> waker) {
  std::unique_lock<std::mutex> lock(mu_);
  waker_ = std::move(waker);
  if (!frames_.empty() || done_) Wake(lock);
}

bool EventStream::Pull(std::vector<std::shared_ptr<const std::string>>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& f : frames_) out->push_back(std::move(f));
  frames_.clear();
  backlog_ = 0;
  cv_.notify_all();
  return !done_;
}

void EventStream::OnClose() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

bool EventStream::closed() {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

bool EventStream::Send(std::string_view event, const Json& data) {
  auto frame = std::make_shared<std::string>();
  *frame = "event: " + std::string(event) + "\ndata: " + DumpJson(data) + "\n\n";
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return closed_ || backlog_ <= max_backlog_; });
  if (closed_) return false;
  backlog_ += frame->size();
  frames_.push_back(std::move(frame));
  Wake(lock);
  return true;
}

// Length of the longest prefix of `s` that does not end inside a UTF-8
// sequence (a truncated lead byte at the end is held back).
static size_t CompleteUtf8Prefix(std::string_view s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

bool EventStream::SendText(std::string_view event, std::string* carry, std::string_view text, bool flush) {
  std::string all = *carry;
  all.append(text);
  size_t keep = flush ? all.size() : CompleteUtf8Prefix(all);
  *carry = all.substr(keep);
  if (keep == 0) return !closed();
  return Send(event, Json{{"type", event}, {"data", all.substr(0, keep)}});
}

void EventStream::End() {
  std::unique_lock<std::mutex> lock(mu_);
  done_ = true;
  Wake(lock);
}

// ----------------------------------------------------------- FileDownload

Result<bool> FileDownload::Read(std::string* out, size_t max) {
  size_t want = static_cast<size_t>(std::min<int64_t>(remaining_, static_cast<int64_t>(max)));
  if (want == 0) return false;
  out->resize(want);
  ssize_t got;
  do {
    got = pread(fd_.get(), out->data(), want, offset_);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return Status::FromErrno(errno, "read");
  out->resize(static_cast<size_t>(got));
  offset_ += got;
  remaining_ -= got;
  // A file that shrank while we read ends early (the client sees fewer bytes).
  if (got == 0) return false;
  return remaining_ > 0;
}

// ------------------------------------------------------------- FileUpload

Result<std::shared_ptr<FileUpload>> FileUpload::Begin(sandbox::RootFs fs, std::string path, uint32_t mode,
                                                      uint64_t max_bytes, Responder respond) {
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") return Status::InvalidArgument("path: must name a file");
  std::string tmp = dir + ".warren-upload-" + NewId("", 12);
  WARREN_ASSIGN_OR_RETURN(UniqueFd fd, fs.OpenWrite(tmp, mode));
  // OpenWrite's mode is filtered by our umask; apply it exactly.
  if (fchmod(fd.get(), mode) != 0) {
    int err = errno;
    (void)fs.Delete(tmp, false);
    return Status::FromErrno(err, "chmod upload");
  }
  return std::shared_ptr<FileUpload>(
      new FileUpload(std::move(fs), std::move(path), std::move(tmp), std::move(fd), max_bytes, std::move(respond)));
}

FileUpload::FileUpload(sandbox::RootFs fs, std::string path, std::string tmp, UniqueFd fd, uint64_t max_bytes,
                       Responder respond)
    : fs_(std::move(fs)), path_(std::move(path)), tmp_(std::move(tmp)), fd_(std::move(fd)), max_bytes_(max_bytes),
      respond_(std::move(respond)) {}

FileUpload::~FileUpload() {
  if (!committed_) {
    fd_.reset();
    (void)fs_.Delete(tmp_, false);
  }
}

Status FileUpload::Write(std::string_view piece) {
  while (!piece.empty()) {
    ssize_t n = ::write(fd_.get(), piece.data(), piece.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC || errno == EDQUOT) return Status::ResourceExhausted("upload: no space left in the sandbox");
      return Status::FromErrno(errno, "write upload");
    }
    piece.remove_prefix(static_cast<size_t>(n));
    written_ += n;
  }
  return Status::Ok();
}

http::HandlerResult FileUpload::Finish(const Status& body_status) {
  Status st = body_status;
  if (st.ok()) {
    fd_.reset();
    st = fs_.Move(tmp_, path_);
    if (st.ok()) committed_ = true;
  }
  if (!committed_) {
    fd_.reset();
    (void)fs_.Delete(tmp_, false);
    committed_ = true;  // nothing left to clean
  }
  return respond_(st, written_);
}

// ------------------------------------------------------------- ParseRange

Status ParseRange(const std::string& header, int64_t size, int64_t* offset, int64_t* length) {
  auto bad = [&] { return Status::InvalidArgument("Range: expected 'bytes=START-END', 'bytes=START-' or 'bytes=-N'"); };
  if (header.rfind("bytes=", 0) != 0) return bad();
  std::string spec = header.substr(6);
  if (spec.find(',') != std::string::npos) return Status::InvalidArgument("Range: multiple ranges are not supported");
  size_t dash = spec.find('-');
  if (dash == std::string::npos) return bad();
  std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  auto num = [](const std::string& s, int64_t* v) {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *v = std::stoll(s);
    return true;
  };
  int64_t first = 0, last = 0;
  if (a.empty()) {
    int64_t n;
    if (!num(b, &n)) return bad();
    if (n == 0 || size == 0) return Status::FailedPrecondition("range not satisfiable");
    first = std::max<int64_t>(0, size - n);
    last = size - 1;
  } else {
    if (!num(a, &first)) return bad();
    if (b.empty()) last = size - 1;
    else if (!num(b, &last) || last < first) return bad();
    if (first >= size) return Status::FailedPrecondition("range not satisfiable");
    last = std::min(last, size - 1);
  }
  *offset = first;
  *length = last - first + 1;
  return Status::Ok();
}

}  // namespace warren::sandbox_api
