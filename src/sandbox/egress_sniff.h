// Egress sniffing: the pure parsers and the host matcher of the egress
// proxy (egress_proxy.h) for `limited` sandboxes. Everything here reads
// bytes a hostile sandbox wrote, so every parser is bounded, never throws,
// never reads past its input and says "need more" rather than guess on a
// short read.
//
//   - HostAllowlist: exact names, `*.suffix` patterns and IPv4 literals.
//   - SniffClientHello: the SNI of a TLS ClientHello, across TLS records
//     (a ClientHello split over several records) and TCP reads.
//   - SniffHttpHead: the destination of a plain HTTP/1.x request
//     (origin-form + Host, absolute-form, CONNECT) and its body framing.
//   - HttpRequestFramer: splits the client's bytes on a plain HTTP
//     connection into request heads and bodies (Content-Length, chunked),
//     so the proxy checks every request, not only the first.
//   - AnswerDnsQuery: the proxy's tiny DNS responder (every valid name
//     resolves to one given address; nothing is forwarded anywhere).
//
// Ownership: value types. Thread-safety: all functions are reentrant;
// a HostAllowlist is immutable after Parse and may be shared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace warren::sandbox {

// Limits of what the proxy buffers before deciding.
inline constexpr size_t kMaxClientHello = 16384;  // handshake message bytes
inline constexpr size_t kMaxTlsRecord = 16384 + 256;
inline constexpr size_t kMaxHttpHead = 16384;

// A DNS host name in canonical form: lower case, no trailing dot, LDH
// labels of 1..63 characters (underscores allowed: some real hosts use
// them), total <= 253. Returns nullopt for anything else (IP literals too).
std::optional<std::string> CanonicalHostName(std::string_view s);
// True when `s` is a dotted-quad IPv4 literal.
bool IsIpv4Literal(std::string_view s);

// The host allowlist of one limited sandbox. Entries:
//   "example.com"     exactly that name;
//   "*.example.com"   any name below example.com (any depth), not the apex;
//   "203.0.113.7"     that IPv4 literal (a request naming the address).
// Matching is case-insensitive and ignores one trailing dot.
class HostAllowlist final {
 public:
  // InvalidArgument naming the bad entry: empty, "*", "*.com"-style
  // patterns with a single label, wildcards anywhere but a leading "*.",
  // ports, schemes, paths, IPv6, more than `max_entries`.
  static Result<HostAllowlist> Parse(const std::vector<std::string>& entries, size_t max_entries = 1024);
  bool Allows(std::string_view host) const;
  const std::vector<std::string>& entries() const { return entries_; }  // canonical

 private:
  std::vector<std::string> entries_;
};

enum class SniffState { kNeedMore, kDone, kMalformed };

struct TlsSniff {
  SniffState state = SniffState::kNeedMore;
  std::string sni;     // canonical host name; empty when the hello has none
  std::string reason;  // kMalformed: what was wrong
};
// `data` is everything the client sent so far, from its first byte.
TlsSniff SniffClientHello(std::string_view data);

struct HttpSniff {
  SniffState state = SniffState::kNeedMore;
  std::string method;
  std::string host;      // canonical name or IPv4 literal
  uint16_t port = 0;     // 0 = the port the client dialed (origin-form)
  bool connect = false;  // CONNECT host:port
  bool absolute = false; // GET http://host/... (a proxy request)
  size_t head_len = 0;   // bytes up to and including the blank line
  // The body that follows the head (RFC 9112 section 6): `chunked`, or
  // `content_length` bytes (0 when neither header is present). Anything a
  // server could frame differently is kMalformed: Content-Length and
  // Transfer-Encoding together, two of either, a Transfer-Encoding other
  // than exactly "chunked" (or any in HTTP/1.0), a Content-Length that is
  // not plain digits, a bare CR or LF anywhere in the head.
  bool chunked = false;
  uint64_t content_length = 0;
  bool upgrade = false;  // an Upgrade header: the connection may switch protocols
  std::string reason;    // kMalformed
};
// Also kMalformed as soon as the request line is complete and invalid, so
// a protocol that is not HTTP is refused without waiting for a blank line.
HttpSniff SniffHttpHead(std::string_view data);

// Frames the client-to-server byte stream of a plain HTTP/1.x connection
// (keep-alive and pipelining included) as a server must read it: a head,
// its body (Content-Length bytes, or chunks up to the last chunk and its
// trailers), the next head, and so on. The proxy checks each head before
// forwarding it, and forwards body bytes without looking for heads in
// them. Bounded: a head or trailer section of at most kMaxHttpHead bytes,
// a chunk-size line of at most kMaxChunkLine bytes.
//
// Use: Next(data) on the bytes not yet consumed; handle the step; drop its
// `len` bytes from the front; call again. kNeedMore: read more and call
// again with the longer buffer. kMalformed: stop (close the connection).
// Thread-safety: none (one per connection).
inline constexpr size_t kMaxChunkLine = 4096;
class HttpRequestFramer final {
 public:
  struct Step {
    enum Kind { kNeedMore, kHead, kBody, kMalformed } kind = kNeedMore;
    size_t len = 0;      // kHead, kBody: bytes at the front of `data`
    HttpSniff head;      // kHead: the parsed head (state kDone)
    std::string reason;  // kMalformed
  };
  Step Next(std::string_view data);
  // True between requests (the next byte starts a head).
  bool at_head() const { return state_ == State::kHead; }

 private:
  enum class State { kHead, kFixed, kChunkSize, kChunkData, kChunkCrlf, kTrailer };
  State state_ = State::kHead;
  uint64_t remaining_ = 0;
  size_t trailer_bytes_ = 0;
};

// True when the first bytes look like the start of an HTTP request line
// (an upper-case token then a space), false when they cannot be, nullopt
// when too few bytes arrived to tell.
std::optional<bool> LooksLikeHttp(std::string_view data);

// The answer to one DNS query datagram: for a standard query (opcode 0)
// with one question, an A/IN question for a valid host name gets `answer`
// (TTL `ttl`); AAAA and other types get an empty NOERROR answer; an invalid
// name gets NXDOMAIN; other opcodes NOTIMP. nullopt = malformed (drop it).
std::optional<std::string> AnswerDnsQuery(std::string_view query, uint32_t answer, uint32_t ttl = 5);

}  // namespace warren::sandbox
