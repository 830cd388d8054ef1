// TLS path of HttpClient against `openssl s_server` with a throwaway CA-less
// self-signed certificate for "localhost" (skips without the openssl CLI).
#include "runner/http_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace warren::runner {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
    char tmpl[] = "/tmp/warren-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::string cmd = "cd " + dir_ +
                      " && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 "
                      "-subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1";
    ASSERT_EQ(system(cmd.c_str()), 0);
    port_ = FreePort();
    fflush(stdout);
    fflush(stderr);
    pid_ = fork();
    if (pid_ == 0) {
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      std::string accept = std::to_string(port_);
      execlp("openssl", "openssl", "s_server", "-accept", accept.c_str(), "-cert", (dir_ + "/cert.pem").c_str(),
             "-key", (dir_ + "/key.pem").c_str(), "-www", "-quiet", static_cast<char*>(nullptr));
      _exit(127);
    }
    // Wait until it listens.
    for (int i = 0; i < 100; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      close(fd);
      if (ok) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "s_server did not start";
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) system(("rm -rf " + dir_).c_str());
    unsetenv("SSL_CERT_FILE");
  }
  Result<HttpResponse> Get(const std::string& host) {
    HttpClient c(*ParseBaseUrl("https://" + host + ":" + std::to_string(port_)));
    HttpRequest req;
    req.target = "/";
    return c.Do(req, std::chrono::seconds(10));
  }
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

TEST_F(TlsTest, VerifiesTheServerCertificateAndHostName) {
  setenv("SSL_CERT_FILE", (dir_ + "/cert.pem").c_str(), 1);
  auto ok = Get("localhost");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->status, 200);
  // Right certificate, wrong name.
  auto wrong_name = Get("127.0.0.1");
  EXPECT_FALSE(wrong_name.ok());
  // Unknown issuer.
  setenv("SSL_CERT_FILE", "/nonexistent.pem", 1);
  auto untrusted = Get("localhost");
  EXPECT_FALSE(untrusted.ok());
}

}  // namespace
}  // namespace warren::runner
