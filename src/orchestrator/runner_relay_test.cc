#include "orchestrator/runner_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace warren::orchestrator {
namespace {

TEST(UpstreamUrl, Parses) {
  auto a = ParseUpstreamUrl("https://api.anthropic.com");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->host, "api.anthropic.com");
  EXPECT_EQ(a->port, "443");
  EXPECT_EQ(a->prefix, "");
  auto b = ParseUpstreamUrl("http://127.0.0.1:8400/base/");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->tls);
  EXPECT_EQ(b->port, "8400");
  EXPECT_EQ(b->prefix, "/base");
  auto c = ParseUpstreamUrl("http://[::1]:9");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_FALSE(ParseUpstreamUrl("ftp://x").ok());
  EXPECT_FALSE(ParseUpstreamUrl("http://user:pw@x").ok());
  EXPECT_FALSE(ParseUpstreamUrl("http://x:port").ok());
  EXPECT_FALSE(ParseUpstreamUrl("http://").ok());
}

TEST(RewriteRequestHead, SetsHostAndCloseAndKeepsOtherHeaders) {
  auto up = *ParseUpstreamUrl("https://api.example.com/p");
  auto h = RewriteRequestHead(
      "POST /v1/sessions/s/events HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n"
      "Authorization: Bearer k\r\nContent-Length: 12",
      up);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->content_length, 12u);
  EXPECT_EQ(h->head,
            "POST /p/v1/sessions/s/events HTTP/1.1\r\nAuthorization: Bearer k\r\nContent-Length: 12\r\n"
            "Host: api.example.com\r\nConnection: close\r\n\r\n");
}

TEST(RewriteRequestHead, IsNotAnOpenProxy) {
  auto up = *ParseUpstreamUrl("http://127.0.0.1:1");
  EXPECT_EQ(RewriteRequestHead("GET http://evil.example/ HTTP/1.1", up).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RewriteRequestHead("CONNECT evil.example:443 HTTP/1.1", up).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RewriteRequestHead("GET //evil.example/ HTTP/1.1", up).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(RewriteRequestHead("GET / HTTP/1.1\r\nTransfer-Encoding: chunked", up).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(RewriteRequestHead("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", up).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(RewriteRequestHead("garbage", up).status().code(), Code::kInvalidArgument);
}

// A one-shot upstream on 127.0.0.1 (port 0): records the request it got,
// answers with a streamed body in two writes.
class FakeUpstream {
 public:
  FakeUpstream() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    th_ = std::thread([this] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char b[4096];
      while (got_.find("hello-body") == std::string::npos) {
        ssize_t r = ::recv(c, b, sizeof b, 0);
        if (r <= 0) break;
        got_.append(b, static_cast<size_t>(r));
      }
      std::string h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
      ::send(c, h.data(), h.size(), MSG_NOSIGNAL);
      ::send(c, "data: one\n\n", 11, MSG_NOSIGNAL);
      ::send(c, "data: two\n\n", 11, MSG_NOSIGNAL);
      ::close(c);
    });
  }
  ~FakeUpstream() {
    ::shutdown(fd_, SHUT_RDWR);
    th_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  const std::string& got() const { return got_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::string got_;
  std::thread th_;
};

std::string Roundtrip(const std::string& sock, const std::string& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, sock.c_str(), sock.size());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char b[4096];
  for (;;) {
    ssize_t r = ::recv(fd, b, sizeof b, 0);
    if (r <= 0) break;
    out.append(b, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

std::string TempSocket() {
  std::string dir = std::filesystem::temp_directory_path() / ("relay-test-XXXXXX");
  char* d = ::mkdtemp(dir.data());
  return std::string(d) + "/api.sock";
}

TEST(RunnerRelay, ForwardsToTheOneUpstreamAndStreamsTheAnswer) {
  FakeUpstream up;
  RunnerRelayOptions o;
  o.socket_path = TempSocket();
  o.upstream_url = "http://127.0.0.1:" + std::to_string(up.port()) + "/pre";
  RunnerRelay relay(o);
  ASSERT_TRUE(relay.Start().ok());
  std::string answer = Roundtrip(o.socket_path,
                                 "POST /v1/x?y=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n"
                                 "Content-Length: 10\r\n\r\nhello-body");
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("data: one\n\ndata: two\n\n"), std::string::npos) << answer;
  relay.Stop();
  EXPECT_EQ(up.got().rfind("POST /pre/v1/x?y=1 HTTP/1.1\r\n", 0), 0u) << up.got();
  EXPECT_NE(up.got().find("Host: 127.0.0.1:" + std::to_string(up.port()) + "\r\n"), std::string::npos);
  EXPECT_NE(up.got().find("Authorization: Bearer k\r\n"), std::string::npos);
  EXPECT_EQ(up.got().find("localhost"), std::string::npos);
  std::filesystem::remove_all(std::filesystem::path(o.socket_path).parent_path());
}

TEST(RunnerRelay, RefusesAbsoluteTargetsAndReportsAnUnreachableUpstream) {
  RunnerRelayOptions o;
  o.socket_path = TempSocket();
  o.upstream_url = "http://127.0.0.1:1";  // nothing listens on port 1
  RunnerRelay relay(o);
  ASSERT_TRUE(relay.Start().ok());
  std::string a = Roundtrip(o.socket_path, "GET http://169.254.169.254/ HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a.rfind("HTTP/1.1 400 ", 0), 0u) << a;
  EXPECT_NE(a.find("\"type\":\"error\""), std::string::npos);
  std::string b = Roundtrip(o.socket_path, "GET /v1/sessions/s HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(b.rfind("HTTP/1.1 502 ", 0), 0u) << b;
  relay.Stop();
  std::filesystem::remove_all(std::filesystem::path(o.socket_path).parent_path());
}

}  // namespace
}  // namespace warren::orchestrator

// TLS upstream: a self-signed certificate for "localhost", made here.
namespace warren::orchestrator {
namespace {

struct TlsServer {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  SSL_CTX* ctx = nullptr;
  int fd = -1;
  int port = 0;
  std::string got;
  std::thread th;

  explicit TlsServer(const std::string& ca_path) {
    key = EVP_RSA_gen(2048);
    cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(cert, key, EVP_sha256());
    if (!ca_path.empty()) {
      FILE* f = std::fopen(ca_path.c_str(), "w");
      PEM_write_X509(f, cert);
      std::fclose(f);
    }
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    th = std::thread([this] {
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) return;
      SSL* ssl = SSL_new(ctx);
      SSL_set_fd(ssl, c);
      if (SSL_accept(ssl) == 1) {
        char b[4096];
        while (got.find("\r\n\r\n") == std::string::npos) {
          int r = SSL_read(ssl, b, sizeof b);
          if (r <= 0) break;
          got.append(b, static_cast<size_t>(r));
        }
        std::string ans = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\nsecure";
        SSL_write(ssl, ans.data(), static_cast<int>(ans.size()));
        SSL_shutdown(ssl);
      }
      SSL_free(ssl);
      ::close(c);
    });
  }
  ~TlsServer() {
    ::shutdown(fd, SHUT_RDWR);
    th.join();
    ::close(fd);
    SSL_CTX_free(ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

TEST(RunnerRelay, HttpsUpstreamIsVerifiedAgainstItsCa) {
  std::string sock = TempSocket();
  std::string ca = std::filesystem::path(sock).parent_path() / "ca.pem";
  TlsServer server(ca);
  RunnerRelayOptions o;
  o.socket_path = sock;
  o.upstream_url = "https://localhost:" + std::to_string(server.port);
  o.ca_file = ca;
  RunnerRelay relay(o);
  ASSERT_TRUE(relay.Start().ok());
  std::string a = Roundtrip(sock, "GET /v1/sessions/s HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_NE(a.find("200 OK"), std::string::npos) << a;
  EXPECT_NE(a.find("secure"), std::string::npos) << a;
  relay.Stop();
  EXPECT_NE(server.got.find("Host: localhost:" + std::to_string(server.port) + "\r\n"), std::string::npos) << server.got;
  std::filesystem::remove_all(std::filesystem::path(sock).parent_path());
}

TEST(RunnerRelay, HttpsUpstreamWithAnUntrustedCertificateIsRefused) {
  std::string sock = TempSocket();
  TlsServer server("");  // its certificate is in no CA store
  std::string other_ca = std::filesystem::path(sock).parent_path() / "other.pem";
  { TlsServer unrelated(other_ca); }  // writes a CA that did not sign `server`'s certificate
  RunnerRelayOptions o;
  o.socket_path = sock;
  o.upstream_url = "https://localhost:" + std::to_string(server.port);
  o.ca_file = other_ca;
  RunnerRelay relay(o);
  ASSERT_TRUE(relay.Start().ok());
  std::string a = Roundtrip(sock, "GET /v1/sessions/s HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(a.rfind("HTTP/1.1 502 ", 0), 0u) << a;
  EXPECT_NE(a.find("TLS handshake"), std::string::npos) << a;
  relay.Stop();
  EXPECT_EQ(server.got, "");  // nothing was sent to an unverified peer
  std::filesystem::remove_all(std::filesystem::path(sock).parent_path());
}

}  // namespace
}  // namespace warren::orchestrator
