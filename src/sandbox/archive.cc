#include "sandbox/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "common/log.h"
#include "common/unique_fd.h"
#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

using ReadPtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;
using WritePtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;
using EntryPtr = std::unique_ptr<struct archive_entry, void (*)(struct archive_entry*)>;
using LinkPtr = std::unique_ptr<struct archive_entry_linkresolver, void (*)(struct archive_entry_linkresolver*)>;

constexpr size_t kZeroBlock = 64 * 1024;

Status ArchiveError(struct archive* a, std::string_view what) {
  const char* msg = archive_error_string(a);
  return Status::IOError(std::string(what) + ": " + (msg ? msg : "libarchive error"));
}

// "a/b" style names only: relative, no "..", no empty components. "." is
// the root itself. A leading "./" is accepted.
std::optional<std::string> SafeRelative(std::string p) {
  while (p.rfind("./", 0) == 0) p = p.substr(2);
  while (!p.empty() && p.back() == '/') p.pop_back();
  if (p.empty() || p == ".") return std::string(".");
  if (p[0] == '/') return std::nullopt;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    std::string_view c(p.data() + start, end - start);
    if (c.empty() || c == "..") return std::nullopt;
    start = end + 1;
  }
  return p;
}

std::string UnderDir(const std::string& dir, const std::string& rel) { return rel == "." ? dir : dir + "/" + rel; }

// Copies one regular file's data from the disk reader to the archive
// writer; holes are fed as zeros, which the pax writer drops because the
// entry carries the file's sparse map (bsdtar does the same).
Status CopyData(struct archive* disk, struct archive* w, int64_t size, const std::string& name,
                ArchiveStats* stats) {
  static const std::vector<char> zeros(kZeroBlock, 0);
  int64_t progress = 0;
  auto pad_to = [&](int64_t target) -> Status {
    while (progress < target) {
      size_t n = static_cast<size_t>(std::min<int64_t>(kZeroBlock, target - progress));
      if (archive_write_data(w, zeros.data(), n) < 0) return ArchiveError(w, "archive " + name);
      progress += static_cast<int64_t>(n);
    }
    return Status::Ok();
  };
  const void* buf;
  size_t n;
  la_int64_t off;
  int r;
  while ((r = archive_read_data_block(disk, &buf, &n, &off)) == ARCHIVE_OK) {
    WARREN_RETURN_IF_ERROR(pad_to(off));
    if (n > 0 && archive_write_data(w, buf, n) < 0) return ArchiveError(w, "archive " + name);
    progress += static_cast<int64_t>(n);
    stats->data_bytes += static_cast<int64_t>(n);
  }
  if (r != ARCHIVE_EOF) return ArchiveError(disk, "read " + name);
  return pad_to(size);
}

Status WriteTo(const std::string& src, int fd, ArchiveStats* stats) {
  WritePtr w(archive_write_new(), archive_write_free);
  if (!w) return Status::Internal("archive_write_new");
  if (archive_write_add_filter_zstd(w.get()) != ARCHIVE_OK) return ArchiveError(w.get(), "zstd filter");
  if (archive_write_set_format_pax(w.get()) != ARCHIVE_OK) return ArchiveError(w.get(), "pax format");
  if (archive_write_open_fd(w.get(), fd) != ARCHIVE_OK) return ArchiveError(w.get(), "open archive");

  ReadPtr disk(archive_read_disk_new(), archive_read_free);
  if (!disk) return Status::Internal("archive_read_disk_new");
  // Physical walk: symlinks are archived as links, never followed; no
  // descent into anything mounted below the rootfs. No uid/gid name lookup:
  // owners are numeric.
  archive_read_disk_set_symlink_physical(disk.get());
  archive_read_disk_set_behavior(disk.get(), ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
  if (archive_read_disk_open(disk.get(), src.c_str()) != ARCHIVE_OK) return ArchiveError(disk.get(), "open " + src);
  LinkPtr links(archive_entry_linkresolver_new(), archive_entry_linkresolver_free);
  archive_entry_linkresolver_set_strategy(links.get(), archive_format(w.get()));

  for (;;) {
    EntryPtr e(archive_entry_new(), archive_entry_free);
    int r = archive_read_next_header2(disk.get(), e.get());
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return ArchiveError(disk.get(), "walk " + src);
    if (r == ARCHIVE_WARN) log::Warn("sandbox.archive.warn", {{"error", archive_error_string(disk.get())}});
    if (archive_read_disk_can_descend(disk.get())) archive_read_disk_descend(disk.get());
    std::string path = archive_entry_pathname(e.get());
    std::string rel;
    if (path == src) {
      rel = ".";
    } else if (path.size() > src.size() && path.compare(0, src.size(), src) == 0 && path[src.size()] == '/') {
      rel = path.substr(src.size() + 1);
    } else {
      return Status::Internal("archive walk left " + src + ": " + path);
    }
    auto type = archive_entry_filetype(e.get());
    if (type == AE_IFSOCK || type == AE_IFCHR || type == AE_IFBLK) continue;
    archive_entry_set_pathname(e.get(), rel.c_str());
    struct archive_entry* ent = e.get();
    struct archive_entry* spare = nullptr;
    archive_entry_linkify(links.get(), &ent, &spare);  // tar strategy: never swaps entries
    bool hardlink = archive_entry_hardlink(e.get()) != nullptr;
    if (hardlink) {
      archive_entry_set_size(e.get(), 0);
      archive_entry_sparse_clear(e.get());
    }
    if (archive_write_header(w.get(), e.get()) < ARCHIVE_WARN) return ArchiveError(w.get(), "archive " + rel);
    ++stats->entries;
    if (type == AE_IFREG && !hardlink && archive_entry_size(e.get()) > 0) {
      WARREN_RETURN_IF_ERROR(CopyData(disk.get(), w.get(), archive_entry_size(e.get()), rel, stats));
    }
  }
  if (archive_write_close(w.get()) != ARCHIVE_OK) return ArchiveError(w.get(), "finish archive");
  return Status::Ok();
}

}  // namespace

Result<ArchiveStats> WriteTreeArchive(const std::string& src_dir, const std::string& dst_file) {
  std::string tmp = dst_file + ".tmp";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return ErrnoStatus("create " + tmp);
  ArchiveStats stats;
  Status st = WriteTo(src_dir, fd.get(), &stats);
  if (st.ok() && fsync(fd.get()) != 0) st = ErrnoStatus("fsync " + tmp);
  struct stat sb;
  if (st.ok() && fstat(fd.get(), &sb) == 0) stats.archive_bytes = sb.st_size;
  fd.reset();
  if (st.ok() && rename(tmp.c_str(), dst_file.c_str()) != 0) st = ErrnoStatus("rename " + tmp);
  if (!st.ok()) {
    unlink(tmp.c_str());
    return st;
  }
  std::string dir = dst_file.substr(0, dst_file.rfind('/'));
  UniqueFd dfd(open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd || fsync(dfd.get()) != 0) return ErrnoStatus("fsync " + dir);
  return stats;
}

Result<ArchiveStats> ExtractTreeArchive(const std::string& file, const std::string& dst_dir, uint32_t max_id) {
  ReadPtr a(archive_read_new(), archive_read_free);
  if (!a) return Status::Internal("archive_read_new");
  // zstd for the runtime's own archives; gzip, xz and bzip2 for dataset
  // tarballs (orchestrator/prepare.h). All in-process (no external programs).
  archive_read_support_filter_zstd(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_xz(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_format_tar(a.get());
  WritePtr w(archive_write_disk_new(), archive_write_free);
  if (!w) return Status::Internal("archive_write_disk_new");
  // Numeric owners (no lookup set), modes incl. setuid, mtimes, xattrs,
  // file flags, holes; never through a symlink or "..".
  archive_write_disk_set_options(w.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                              ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_FFLAGS |
                                              ARCHIVE_EXTRACT_SPARSE | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                              ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "open " + file);
  }
  ArchiveStats stats;
  for (;;) {
    struct archive_entry* e;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return ArchiveError(a.get(), "read " + file);
    auto rel = SafeRelative(archive_entry_pathname(e));
    if (!rel) return Status::InvalidArgument(std::string("archive entry escapes the root: ") + archive_entry_pathname(e));
    if (archive_entry_uid(e) < 0 || archive_entry_uid(e) >= max_id || archive_entry_gid(e) < 0 ||
        archive_entry_gid(e) >= max_id) {
      return Status::InvalidArgument("archive entry " + *rel + " is owned outside the sandbox id range");
    }
    auto type = archive_entry_filetype(e);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK) continue;
    archive_entry_set_pathname(e, UnderDir(dst_dir, *rel).c_str());
    if (const char* hl = archive_entry_hardlink(e)) {
      auto target = SafeRelative(hl);
      if (!target || *target == ".") return Status::InvalidArgument(std::string("bad hardlink target: ") + hl);
      archive_entry_set_hardlink(e, UnderDir(dst_dir, *target).c_str());
    }
    if (archive_write_header(w.get(), e) < ARCHIVE_WARN) return ArchiveError(w.get(), "extract " + *rel);
    ++stats.entries;
    const void* buf;
    size_t n;
    la_int64_t off;
    while ((r = archive_read_data_block(a.get(), &buf, &n, &off)) == ARCHIVE_OK) {
      if (archive_write_data_block(w.get(), buf, n, off) < ARCHIVE_WARN) return ArchiveError(w.get(), "extract " + *rel);
      stats.data_bytes += static_cast<int64_t>(n);
    }
    if (r != ARCHIVE_EOF) return ArchiveError(a.get(), "read data of " + *rel);
    if (archive_write_finish_entry(w.get()) < ARCHIVE_WARN) return ArchiveError(w.get(), "finish " + *rel);
  }
  // Close applies the deferred directory modes and times.
  if (archive_write_close(w.get()) != ARCHIVE_OK) return ArchiveError(w.get(), "finish extract");
  UniqueFd dfd(open(dst_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd || syncfs(dfd.get()) != 0) return ErrnoStatus("sync " + dst_dir);
  struct stat sb;
  if (stat(file.c_str(), &sb) == 0) stats.archive_bytes = sb.st_size;
  return stats;
}

}  // namespace warren::sandbox
