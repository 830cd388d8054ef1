#include "common/secret_box.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/unique_fd.h"

namespace warren {
namespace {

constexpr std::string_view kMagic = "w1";
constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Status Random(unsigned char* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(out + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(std::string("getrandom: ") + strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

}  // namespace

Result<SecretBox> SecretBox::FromHex(std::string_view hex) {
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) hex.remove_suffix(1);
  if (hex.size() != 2 * kKeySize) return Status::InvalidArgument("secrets key: expected 64 hex digits");
  std::array<unsigned char, kKeySize> key{};
  for (size_t i = 0; i < kKeySize; i++) {
    int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("secrets key: expected 64 hex digits");
    key[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return SecretBox(key);
}

Result<SecretBox> SecretBox::FromKeyFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid() && errno == ENOENT) {
    std::array<unsigned char, kKeySize> key{};
    WARREN_RETURN_IF_ERROR(Random(key.data(), key.size()));
    static const char* kHex = "0123456789abcdef";
    std::string hex;
    for (unsigned char b : key) {
      hex.push_back(kHex[b >> 4]);
      hex.push_back(kHex[b & 15]);
    }
    hex.push_back('\n');
    std::string tmp = path + ".tmp";
    UniqueFd out(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out.valid()) return Status::IOError("create " + tmp + ": " + strerror(errno));
    if (write(out.get(), hex.data(), hex.size()) != static_cast<ssize_t>(hex.size()) || fsync(out.get()) != 0)
      return Status::IOError("write " + tmp + ": " + strerror(errno));
    // link() fails if another process created the key meanwhile: use theirs.
    if (link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
      int err = errno;
      unlink(tmp.c_str());
      return Status::IOError("create " + path + ": " + strerror(err));
    }
    unlink(tmp.c_str());
    fd = UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  }
  if (!fd.valid()) return Status::IOError("open " + path + ": " + strerror(errno));
  char buf[128];
  ssize_t n = read(fd.get(), buf, sizeof(buf));
  if (n < 0) return Status::IOError("read " + path + ": " + strerror(errno));
  auto box = FromHex(std::string_view(buf, static_cast<size_t>(n)));
  if (!box.ok()) return box.status().WithContext(path);
  return box;
}

Result<std::string> SecretBox::Seal(std::string_view plaintext, std::string_view aad) const {
  std::string out(kMagic);
  unsigned char nonce[kNonce];
  WARREN_RETURN_IF_ERROR(Random(nonce, kNonce));
  out.append(reinterpret_cast<const char*>(nonce), kNonce);
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce) != 1)
    return Status::Internal("AES-256-GCM init failed");
  if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                                        static_cast<int>(aad.size())) != 1)
    return Status::Internal("AES-256-GCM aad failed");
  std::string ct(plaintext.size() + 16, '\0');
  if (EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()), &len,
                        reinterpret_cast<const unsigned char*>(plaintext.data()), static_cast<int>(plaintext.size())) != 1)
    return Status::Internal("AES-256-GCM encrypt failed");
  int total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()) + total, &len) != 1)
    return Status::Internal("AES-256-GCM final failed");
  total += len;
  ct.resize(static_cast<size_t>(total));
  unsigned char tag[kTag];
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, tag) != 1) return Status::Internal("AES-256-GCM tag failed");
  out += ct;
  out.append(reinterpret_cast<const char*>(tag), kTag);
  return out;
}

Result<std::string> SecretBox::Open(std::string_view sealed, std::string_view aad) const {
  if (sealed.size() < kMagic.size() + kNonce + kTag || sealed.substr(0, kMagic.size()) != kMagic)
    return Status::InvalidArgument("sealed secret: malformed");
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data() + kMagic.size());
  std::string_view ct = sealed.substr(kMagic.size() + kNonce, sealed.size() - kMagic.size() - kNonce - kTag);
  std::string tag(sealed.substr(sealed.size() - kTag));
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce) != 1)
    return Status::Internal("AES-256-GCM init failed");
  if (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                                        static_cast<int>(aad.size())) != 1)
    return Status::Internal("AES-256-GCM aad failed");
  std::string pt(ct.size() + 16, '\0');
  if (EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(pt.data()), &len,
                        reinterpret_cast<const unsigned char*>(ct.data()), static_cast<int>(ct.size())) != 1)
    return Status::InvalidArgument("sealed secret: does not open");
  int total = len;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) != 1)
    return Status::Internal("AES-256-GCM tag failed");
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(pt.data()) + total, &len) != 1)
    return Status::InvalidArgument("sealed secret: does not open (wrong key, aad or tampered)");
  total += len;
  pt.resize(static_cast<size_t>(total));
  return pt;
}

}  // namespace warren
