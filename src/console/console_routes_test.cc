#include "console/console_routes.h"

#include <gtest/gtest.h>

#include "console/console_assets.h"

namespace warren::console {
namespace {

std::string Header(const http::HttpResponse& r, std::string_view name) {
  const std::string* v = r.headers.Find(name);
  return v ? *v : std::string();
}

TEST(ConsoleRoutes, IndexIsHtmlNoCacheWithStrictCsp) {
  http::HttpResponse r = Serve("");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(Header(r, "Cache-Control"), "no-cache");
  std::string csp = Header(r, "Content-Security-Policy");
  EXPECT_NE(csp.find("script-src 'self';"), std::string::npos) << csp;
  // A fresh nonce per response, the same in the header and the page.
  size_t n = csp.find("'nonce-");
  ASSERT_NE(n, std::string::npos) << csp;
  std::string nonce = csp.substr(n + 7, csp.find('\'', n + 7) - n - 7);
  EXPECT_GE(nonce.size(), 22u);
  if (Built()) {
    EXPECT_NE(r.body.find("content=\"" + nonce + "\""), std::string::npos);
    EXPECT_EQ(r.body.find(kNoncePlaceholder), std::string::npos);
  }
  EXPECT_EQ(Serve("").body.find(nonce), std::string::npos) << "nonce reused";
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-eval"), std::string::npos) << csp;
  EXPECT_EQ(Header(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_NE(r.body.find("<html"), std::string::npos);
  EXPECT_EQ(Serve("index.html").status, 200);
}

TEST(ConsoleRoutes, HashedAssetsAreImmutableAndTyped) {
  if (!Built()) GTEST_SKIP() << "console not built (no console/node_modules): placeholder embedded";
  int scripts = 0, styles = 0;
  for (const Asset& a : Assets()) {
    if (a.path.rfind("assets/", 0) != 0) continue;
    http::HttpResponse r = Serve(a.path);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(Header(r, "Cache-Control"), "public, max-age=31536000, immutable") << a.path;
    EXPECT_EQ(r.body.size(), a.bytes.size());
    EXPECT_EQ(Header(r, "Content-Security-Policy").find("nonce"), std::string::npos) << a.path;
    if (a.path.ends_with(".js")) {
      scripts++;
      EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
    }
    if (a.path.ends_with(".css")) {
      styles++;
      EXPECT_EQ(r.content_type, "text/css; charset=utf-8");
    }
  }
  EXPECT_GE(scripts, 1);
  EXPECT_GE(styles, 1);
  // index.html names its hashed script, which is embedded.
  std::string index(FindAsset("")->bytes);
  size_t at = index.find("/console/assets/");
  ASSERT_NE(at, std::string::npos) << index;
  size_t end = index.find('"', at);
  EXPECT_NE(FindAsset(index.substr(at + 9, end - at - 9)), nullptr) << index.substr(at, end - at);
}

TEST(ConsoleRoutes, UnknownPathIs404WithoutLeakingAnything) {
  http::HttpResponse r = Serve("nope.js");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(Serve("../CMakeLists.txt").status, 404);
  EXPECT_EQ(Serve("assets/../index.html").status, 404);
  EXPECT_EQ(Header(r, "Content-Security-Policy").find("nonce"), std::string::npos);
  EXPECT_FALSE(Header(r, "Content-Security-Policy").empty());
}

}  // namespace
}  // namespace warren::console
