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

TEST(ConsoleRoutes, AcceptEncodingParsing) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("gzip, deflate, br"));
  EXPECT_TRUE(AcceptsGzip("br;q=1.0, GZIP;q=0.5"));
  EXPECT_TRUE(AcceptsGzip("x-gzip"));
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_TRUE(AcceptsGzip("identity, *;q=0.1"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("br, deflate"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0.000"));
  EXPECT_FALSE(AcceptsGzip("*;q=0.5, gzip;q=0"));  // an explicit refusal wins over *
  EXPECT_FALSE(AcceptsGzip("*;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=2"));      // not a qvalue
  EXPECT_FALSE(AcceptsGzip("gzip;q=banana"));
  EXPECT_TRUE(AcceptsGzip(" gzip ; q=0.001 "));
}

TEST(ConsoleRoutes, PrecompressedGzipWhenAcceptedWithVaryAndEtags) {
  if (!Built()) GTEST_SKIP() << "console not built (no console/node_modules): placeholder embedded";
  int compressed = 0;
  for (const Asset& a : Assets()) {
    http::HttpResponse plain = Serve(a.path, "");
    http::HttpResponse gz = Serve(a.path, "gzip, deflate, br");
    EXPECT_EQ(Header(plain, "Content-Encoding"), "") << a.path;
    EXPECT_EQ(plain.body.size(), a.path == "index.html" ? plain.body.size() : a.bytes.size());
    if (a.gzip.empty()) {
      EXPECT_EQ(Header(gz, "Content-Encoding"), "") << a.path;
      continue;
    }
    compressed++;
    EXPECT_NE(a.path, "index.html") << "index.html changes per response: never precompressed";
    EXPECT_EQ(Header(gz, "Content-Encoding"), "gzip") << a.path;
    EXPECT_EQ(Header(gz, "Vary"), "Accept-Encoding") << a.path;
    EXPECT_EQ(Header(plain, "Vary"), "Accept-Encoding") << a.path;
    EXPECT_EQ(gz.content_type, plain.content_type);
    EXPECT_EQ(Header(gz, "Cache-Control"), Header(plain, "Cache-Control"));
    ASSERT_GE(gz.body.size(), 18u);
    EXPECT_EQ(gz.body.substr(0, 3), std::string("\x1f\x8b\x08", 3)) << "gzip magic, deflate";
    EXPECT_EQ(gz.body.substr(4, 4), std::string(4, '\0')) << "MTIME zeroed: reproducible builds";
    EXPECT_LT(gz.body.size(), a.bytes.size());
    // ISIZE (the last 4 bytes, little endian) is the original length.
    const auto* t = reinterpret_cast<const unsigned char*>(gz.body.data() + gz.body.size() - 4);
    EXPECT_EQ(static_cast<size_t>(t[0] | t[1] << 8 | t[2] << 16 | static_cast<uint32_t>(t[3]) << 24), a.bytes.size());
    // One strong ETag per representation; If-None-Match on the right one is 304.
    std::string e_plain = Header(plain, "ETag"), e_gz = Header(gz, "ETag");
    EXPECT_EQ(e_plain, "\"" + std::string(a.etag) + "\"");
    EXPECT_EQ(e_gz, "\"" + std::string(a.etag) + "-gz\"");
    http::HttpResponse nm = Serve(a.path, "gzip", e_gz);
    EXPECT_EQ(nm.status, 304);
    EXPECT_TRUE(nm.body.empty());
    EXPECT_EQ(Header(nm, "ETag"), e_gz);
    EXPECT_EQ(Header(nm, "Content-Encoding"), "");
    EXPECT_EQ(Serve(a.path, "gzip", "\"other\", W/" + e_gz).status, 304);
    EXPECT_EQ(Serve(a.path, "", e_gz).status, 200) << "the gzip tag does not validate the identity copy";
    EXPECT_EQ(Serve(a.path, "", e_plain).status, 304);
    EXPECT_EQ(Serve(a.path, "gzip", "\"nope\"").status, 200);
  }
  EXPECT_GE(compressed, 2) << "the script and the stylesheet are precompressed";
  // The page itself: never compressed, never validated (new nonce each time).
  http::HttpResponse index = Serve("", "gzip");
  EXPECT_EQ(Header(index, "Content-Encoding"), "");
  EXPECT_EQ(Header(index, "ETag"), "");
  EXPECT_EQ(Serve("", "gzip", "*").status, 200);
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
