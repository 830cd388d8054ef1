#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/testing/fake_http_client.h"
#include "common/testing/fake_http_server.h"
#include "webtools/address_policy.h"
#include "webtools/charset.h"
#include "webtools/fetcher.h"
#include "webtools/html_text.h"
#include "webtools/web_tools.h"

namespace warren::webtools {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::ResponseWriter;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Public(const char* s) {
  auto ip = IpAddress::Parse(s);
  EXPECT_TRUE(ip.has_value()) << s;
  return ip && IsPublicAddress(*ip);
}

TEST(AddressPolicy, ClassifiesIpv4) {
  EXPECT_TRUE(Public("93.184.216.34"));
  EXPECT_TRUE(Public("8.8.8.8"));
  for (const char* s : {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                        "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1",
                        "192.0.2.1", "240.0.0.1"})
    EXPECT_FALSE(Public(s)) << s;
  EXPECT_TRUE(Public("172.32.0.1"));
  EXPECT_TRUE(Public("100.128.0.1"));
}

TEST(AddressPolicy, ClassifiesIpv6IncludingEmbeddedIpv4) {
  EXPECT_TRUE(Public("2606:4700:4700::1111"));
  for (const char* s : {"::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1",
                        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3", "::127.0.0.1",
                        "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:0:4136:e378::1", "100::1"})
    EXPECT_FALSE(Public(s)) << s;
  EXPECT_TRUE(Public("::ffff:8.8.8.8"));
  EXPECT_TRUE(Public("64:ff9b::808:808"));
  EXPECT_TRUE(Public("2002:0808:0808::1"));
}

TEST(AddressPolicy, AllowRules) {
  auto p = AddressPolicy::Make(false, {"127.0.0.1:8080", "10.0.0.0/8", "[::1]:9000"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->Check(*IpAddress::Parse("127.0.0.1"), 8080).ok());
  EXPECT_EQ(p->Check(*IpAddress::Parse("127.0.0.1"), 8081).code(), Code::kPermissionDenied);
  EXPECT_TRUE(p->Check(*IpAddress::Parse("10.9.8.7"), 1).ok());
  EXPECT_TRUE(p->Check(*IpAddress::Parse("::ffff:10.9.8.7"), 1).ok());
  EXPECT_TRUE(p->Check(*IpAddress::Parse("::1"), 9000).ok());
  EXPECT_FALSE(p->Check(*IpAddress::Parse("::1"), 9001).ok());
  EXPECT_FALSE(p->Check(*IpAddress::Parse("169.254.169.254"), 80).ok());
  for (const char* bad : {"nonsense", "10.0.0.0/33", "127.0.0.1:0", "[::1", "1.2.3.4:99999"})
    EXPECT_FALSE(AddressPolicy::Make(false, {bad}).ok()) << bad;
  auto all = AddressPolicy::Make(true, {});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->Check(*IpAddress::Parse("169.254.169.254"), 80).ok());
}

TEST(HtmlText, RealWorldShapedArticle) {
  std::string html = ReadFile(std::string(WARREN_WEBTOOLS_TESTDATA) + "/article.html");
  ASSERT_FALSE(html.empty());
  ReadableText r = HtmlToMarkdown(html, "https://example.com/news/v2.html");
  EXPECT_EQ(r.title, "Release notes & history | Example Project");
  const std::string& t = r.text;
  EXPECT_NE(t.find("# Version 2.0 released"), std::string::npos) << t;
  EXPECT_NE(t.find("## What changed"), std::string::npos) << t;
  EXPECT_NE(t.find("We are happy to announce version 2.0, with a new [installer](https://example.com/news/guide/install.html) and faster builds.\nThanks to all contributors!"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("1. New parser"), std::string::npos) << t;
  EXPECT_NE(t.find("2. Better `--verbose` output"), std::string::npos) << t;
  EXPECT_NE(t.find("- colours"), std::string::npos) << t;
  EXPECT_NE(t.find("```\n$ make install\n$ example --version\n2.0\n```"), std::string::npos) << t;
  EXPECT_NE(t.find("| Platform | Status |"), std::string::npos) << t;
  EXPECT_NE(t.find("| Linux | supported |"), std::string::npos) << t;
  EXPECT_NE(t.find("> Fast is a feature."), std::string::npos) << t;
  EXPECT_NE(t.find("diagram"), std::string::npos) << t;
  EXPECT_NE(t.find("[Legal](https://other.example.org/legal)"), std::string::npos) << t;
  EXPECT_NE(t.find("© 2026 Example — "), std::string::npos) << t;
  EXPECT_NE(t.find("[Home](https://example.com/)"), std::string::npos) << t;
  // Script, style, hidden, noscript and template content never shows; the
  // javascript: link keeps its text, not its target.
  for (const char* gone : {"dataLayer", "font-family", "tracking", "secret hidden", "Enable JavaScript", "template text",
                           "javascript:", "site.css"})
    EXPECT_EQ(t.find(gone), std::string::npos) << gone << "\n" << t;
  EXPECT_NE(t.find("bad link"), std::string::npos);
  EXPECT_EQ(t.find("\n\n\n"), std::string::npos) << t;
}

TEST(HtmlText, BrokenMarkupParsesLikeABrowser) {
  ReadableText r = HtmlToMarkdown("<p>one<p>two<b>bold<i>both</b>italic</i><div>three", "http://x/");
  // Mis-nested b/i are repaired by the adoption agency algorithm, as a browser does.
  EXPECT_EQ(r.text, "one\n\ntwoboldbothitalic\n\nthree") << r.text;
}

TEST(HtmlText, ResolveUrl) {
  EXPECT_EQ(ResolveUrl("https://a.example/b/c.html", "../d"), "https://a.example/d");
  EXPECT_EQ(ResolveUrl("https://a.example/b/c.html", "//cdn.example/x"), "https://cdn.example/x");
  EXPECT_EQ(ResolveUrl("https://a.example/b/c.html", "?q=1"), "https://a.example/b/c.html?q=1");
  EXPECT_EQ(ResolveUrl("https://a.example/", " JavaScript:alert(1)"), "");
  EXPECT_EQ(ResolveUrl("https://a.example/", "ftp://x/y"), "");
}

// A minimal one-page PDF with the text `text`, xref offsets computed.
std::string MakePdf(const std::string& text) {
  std::vector<std::string> objs = {
      "<< /Type /Catalog /Pages 2 0 R >>",
      "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
      "",
      "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
      "<< /Title (Test Document) >>"};
  std::string stream = "BT /F1 18 Tf 20 100 Td (" + text + ") Tj ET";
  objs[3] = "<< /Length " + std::to_string(stream.size()) + " >>\nstream\n" + stream + "\nendstream";
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objs.size(); i++) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objs[i] + "\nendobj\n";
  }
  size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objs.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t o : offsets) {
    char line[32];
    snprintf(line, sizeof line, "%010zu 00000 n \n", o);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objs.size() + 1) + " /Root 1 0 R /Info 6 0 R >>\nstartxref\n" +
         std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

TEST(PdfText, ExtractsText) {
  auto r = PdfToText(MakePdf("Hello from a PDF"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->text.find("Hello from a PDF"), std::string::npos) << r->text;
  EXPECT_EQ(r->title, "Test Document");
  EXPECT_FALSE(PdfToText("%PDF-1.4 garbage").ok());
}

FetchOptions LocalOptions(int port) {
  FetchOptions o;
  o.policy = *AddressPolicy::Make(false, {"127.0.0.1:" + std::to_string(port)});
  o.timeout_ms = 10000;
  return o;
}

TEST(Fetcher, HtmlPdfTextAndRedirects) {
  const std::string pdf = MakePdf("PDF body text");
  FakeHttpServer server([&](const FakeRequest& req, ResponseWriter& w) {
    if (req.target == "/page") {
      FakeHttpServer::Reply(w, 200, "<html><head><title>T</title></head><body><h1>Hi</h1><p>para</p></body></html>",
                            {{"Content-Type", "text/html; charset=utf-8"}});
    } else if (req.target == "/doc.pdf") {
      FakeHttpServer::Reply(w, 200, pdf, {{"Content-Type", "application/pdf"}});
    } else if (req.target == "/plain") {
      FakeHttpServer::Reply(w, 200, "just text", {{"Content-Type", "text/plain"}});
    } else if (req.target.rfind("/hop/", 0) == 0) {
      int n = std::stoi(req.target.substr(5));
      if (n == 0) {
        FakeHttpServer::Reply(w, 302, "", {{"Location", "/page"}});
      } else {
        FakeHttpServer::Reply(w, 302, "", {{"Location", "/hop/" + std::to_string(n - 1)}});
      }
    } else if (req.target == "/bin") {
      FakeHttpServer::Reply(w, 200, "\x01\x02", {{"Content-Type", "application/octet-stream"}});
    } else {
      FakeHttpServer::Reply(w, 404, "nope");
    }
  });
  auto f = NewCurlFetcher(LocalOptions(server.port()));
  auto page = f->Fetch(server.url() + "/page", nullptr);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->title, "T");
  EXPECT_EQ(page->text, "# Hi\n\npara");
  EXPECT_EQ(page->content_type, "text/html");

  auto doc = f->Fetch(server.url() + "/doc.pdf", nullptr);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_NE(doc->text.find("PDF body text"), std::string::npos);

  auto plain = f->Fetch(server.url() + "/plain", nullptr);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->text, "just text");

  auto hops = f->Fetch(server.url() + "/hop/4", nullptr);  // 5 redirects: the limit
  ASSERT_TRUE(hops.ok()) << hops.status().ToString();
  EXPECT_EQ(hops->redirects, 5);
  EXPECT_EQ(hops->url, server.url() + "/page");
  auto too_many = f->Fetch(server.url() + "/hop/5", nullptr);  // 6 redirects
  EXPECT_EQ(too_many.status().detail_code(), "url_not_accessible");
  EXPECT_NE(too_many.status().message().find("too many redirects"), std::string::npos);

  EXPECT_EQ(f->Fetch(server.url() + "/missing", nullptr).status().detail_code(), "url_not_accessible");
  EXPECT_EQ(f->Fetch(server.url() + "/bin", nullptr).status().detail_code(), "unsupported_content_type");
  EXPECT_EQ(f->Fetch("ftp://127.0.0.1/x", nullptr).status().detail_code(), "invalid_input");
  EXPECT_EQ(f->Fetch("file:///etc/passwd", nullptr).status().detail_code(), "invalid_input");
  EXPECT_EQ(f->Fetch("http://x/" + std::string(3000, 'a'), nullptr).status().detail_code(), "url_too_long");
}

// Charsets: the Content-Type's, else the <meta>'s, else UTF-8; iconv does
// the conversion; an unknown charset is said, not shown as mojibake.
TEST(Charset, FindsTheDeclaredCharset) {
  EXPECT_EQ(CharsetFromContentType("text/html; charset=ISO-8859-1"), "iso-8859-1");
  EXPECT_EQ(CharsetFromContentType("text/html;charset=\"Shift_JIS\"; x=y"), "shift_jis");
  EXPECT_EQ(CharsetFromContentType("text/html; foo=bar"), "");
  EXPECT_EQ(CharsetFromHtmlMeta("<html><head><meta charset=\"Shift_JIS\"><title>x</title>"), "shift_jis");
  EXPECT_EQ(CharsetFromHtmlMeta("<!-- <meta charset=koi8-r> --><meta http-equiv=\"Content-Type\" "
                                "content=\"text/html; charset=windows-1251\">"),
            "windows-1251");
  EXPECT_EQ(CharsetFromHtmlMeta("<p>no meta here</p>"), "");
  EXPECT_EQ(CharsetFromHtmlMeta(std::string(1100, ' ') + "<meta charset=latin1>"), "");  // past the prescan
  EXPECT_EQ(CharsetFromBom("\xEF\xBB\xBFhi"), "utf-8");
}

TEST(Charset, ConvertsWithIconvAndReplacesWhatItCannot) {
  auto latin = ToUtf8("caf\xE9 \x80", "iso-8859-1");  // read as windows-1252, as browsers do
  EXPECT_EQ(latin.text, "caf\xC3\xA9 \xE2\x82\xAC");
  EXPECT_TRUE(latin.supported);
  auto sjis = ToUtf8("\x93\xFA\x96\x7B\x8C\xEA", "shift_jis");
  EXPECT_EQ(sjis.text, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E");  // 日本語
  auto bad = ToUtf8("ok\xFF\xFEok", "utf-8");
  EXPECT_EQ(bad.text, "ok\xEF\xBF\xBD\xEF\xBF\xBDok");
  EXPECT_EQ(bad.replaced, 2u);
  auto unknown = DecodeBody("caf\xE9", "text/plain; charset=x-no-such-charset", false);
  EXPECT_FALSE(unknown.supported);
  EXPECT_EQ(unknown.charset, "x-no-such-charset");
  EXPECT_EQ(unknown.text, "caf\xEF\xBF\xBD");
  auto hostile = DecodeBody("abc", "text/plain; charset=UTF-8//TRANSLIT", false);
  EXPECT_FALSE(hostile.supported);  // never handed to iconv as given
  EXPECT_EQ(hostile.text, "abc");
}

TEST(Fetcher, DecodesLatin1AndShiftJisPages) {
  FakeHttpServer server([&](const FakeRequest& req, ResponseWriter& w) {
    if (req.target == "/latin1") {
      FakeHttpServer::Reply(w, 200, "<html><head><title>Caf\xE9</title></head><body><p>cr\xE8me br\xFBl\xE9\x65</p></body></html>",
                            {{"Content-Type", "text/html; charset=ISO-8859-1"}});
    } else if (req.target == "/sjis") {
      // No charset in the header: the parser's <meta> says Shift_JIS.
      FakeHttpServer::Reply(w, 200,
                            "<html><head><meta charset=\"Shift_JIS\"><title>\x93\xFA\x96\x7B</title></head>"
                            "<body><p>\x93\xFA\x96\x7B\x8C\xEA\x82\xCC\x83\x79\x81\x5B\x83\x57</p></body></html>",
                            {{"Content-Type", "text/html"}});
    } else if (req.target == "/plain-latin1") {
      FakeHttpServer::Reply(w, 200, "na\xEFve", {{"Content-Type", "text/plain; charset=latin1"}});
    } else if (req.target == "/unknown") {
      FakeHttpServer::Reply(w, 200, "<p>caf\xE9</p>", {{"Content-Type", "text/html; charset=x-martian"}});
    } else {
      FakeHttpServer::Reply(w, 200, "<p>caf\xC3\xA9</p>", {{"Content-Type", "text/html"}});
    }
  });
  auto f = NewCurlFetcher(LocalOptions(server.port()));
  auto latin = f->Fetch(server.url() + "/latin1", nullptr);
  ASSERT_TRUE(latin.ok()) << latin.status().ToString();
  EXPECT_EQ(latin->title, "Caf\xC3\xA9");
  EXPECT_EQ(latin->text, "cr\xC3\xA8me br\xC3\xBBl\xC3\xA9\x65");
  EXPECT_EQ(latin->charset, "iso-8859-1");
  EXPECT_EQ(latin->charset_source, "content-type");
  EXPECT_EQ(latin->charset_note, "");

  auto sjis = f->Fetch(server.url() + "/sjis", nullptr);
  ASSERT_TRUE(sjis.ok()) << sjis.status().ToString();
  EXPECT_EQ(sjis->title, "\xE6\x97\xA5\xE6\x9C\xAC");                                                   // 日本
  EXPECT_EQ(sjis->text, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x9A\xE3\x83\xBC\xE3\x82\xB8");  // 日本語のページ
  EXPECT_EQ(sjis->charset_source, "meta");

  auto plain = f->Fetch(server.url() + "/plain-latin1", nullptr);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->text, "na\xC3\xAFve");

  auto utf8 = f->Fetch(server.url() + "/utf8", nullptr);
  ASSERT_TRUE(utf8.ok());
  EXPECT_EQ(utf8->text, "caf\xC3\xA9");
  EXPECT_EQ(utf8->charset_source, "default");

  // An unknown charset: said in the tool result, no mojibake.
  WebTools tools(NewCurlFetcher(LocalOptions(server.port())), nullptr, 5);
  auto r = tools.Run("web_fetch", {{"url", server.url() + "/unknown"}}, nullptr);
  ASSERT_FALSE(r.is_error) << DumpJson(r.content);
  EXPECT_EQ(r.content[0]["source"]["data"], "caf\xEF\xBF\xBD");
  EXPECT_NE(r.content[0]["context"].get<std::string>().find("charset \"x-martian\" is not supported"), std::string::npos);
  ASSERT_EQ(r.content.size(), 2u);
  EXPECT_NE(r.content[1]["text"].get<std::string>().find("x-martian"), std::string::npos);
  auto l = tools.Run("web_fetch", {{"url", server.url() + "/latin1"}}, nullptr);
  EXPECT_NE(l.content[0]["context"].get<std::string>().find("decoded from iso-8859-1 (the Content-Type header)"),
            std::string::npos);
}

TEST(Fetcher, SizeLimit) {
  FakeHttpServer server([&](const FakeRequest&, ResponseWriter& w) {
    // Chunked, no Content-Length: the cap must hold while streaming.
    w.WriteHead(200, {{"Content-Type", "text/plain"}});
    for (int i = 0; i < 64; i++)
      if (!w.Write(std::string(4096, 'x'))) return;
    w.End();
  });
  FetchOptions o = LocalOptions(server.port());
  o.max_bytes = 64 * 1024;
  auto f = NewCurlFetcher(o);
  auto r = f->Fetch(server.url() + "/big", nullptr);
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_EQ(r.status().detail_code(), "url_too_large");
  o.max_bytes = 1 << 20;
  EXPECT_TRUE(NewCurlFetcher(o)->Fetch(server.url() + "/big", nullptr).ok());
}

// The time limit bounds the whole fetch, not each read: a server that drips
// one byte every 100 ms (never idle long enough for a read timeout) is cut
// off at timeout_ms with the web_fetch code for it.
TEST(Fetcher, TimeLimitBoundsTheWholeFetch) {
  FakeHttpServer server([&](const FakeRequest&, ResponseWriter& w) {
    w.WriteHead(200, {{"Content-Type", "text/plain"}});
    for (int i = 0; i < 600; i++) {  // at most a minute, unless the client leaves first
      if (!w.Write("x")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    w.End();
  });
  FetchOptions o = LocalOptions(server.port());
  o.timeout_ms = 700;
  auto r = NewCurlFetcher(o)->Fetch(server.url() + "/drip", nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout) << r.status().ToString();
  EXPECT_EQ(r.status().detail_code(), "unavailable") << r.status().ToString();
}

// A page longer than max_text_chars: the model's text is cut and the whole
// text travels beside it (the engine writes it to the session's sandbox).
TEST(WebTools, LongPageKeepsItsFullTextForTheSandbox) {
  FakeHttpServer server([&](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 200, std::string(500, 'p') + "END", {{"Content-Type", "text/plain"}});
  });
  WebToolsConfig cfg;
  cfg.fetch = LocalOptions(server.port());
  cfg.fetch.max_text_chars = 100;
  auto tools = WebTools::FromConfig(cfg, NewCurlHttpClient());
  ASSERT_TRUE(tools.ok());
  auto r = (*tools)->Run("web_fetch", {{"url", server.url() + "/long"}}, nullptr);
  ASSERT_FALSE(r.is_error) << r.content.dump();
  EXPECT_EQ(r.content[0]["source"]["data"].get<std::string>().size(), 100u);
  EXPECT_NE(r.content[0]["context"].get<std::string>().find("truncated"), std::string::npos);
  ASSERT_TRUE(r.full_text.has_value());
  EXPECT_EQ(*r.full_text, std::string(500, 'p') + "END");
  cfg.fetch.max_text_chars = 1000;
  auto roomy = WebTools::FromConfig(cfg, NewCurlHttpClient());
  ASSERT_TRUE(roomy.ok());
  EXPECT_FALSE((*roomy)->Run("web_fetch", {{"url", server.url() + "/long"}}, nullptr).full_text.has_value());
}

TEST(Fetcher, RefusesPrivateTargetsAtConnectTime) {
  std::atomic<int> other_hits{0};
  FakeHttpServer other([&](const FakeRequest&, ResponseWriter& w) {
    other_hits++;
    FakeHttpServer::Reply(w, 200, "internal secret", {{"Content-Type", "text/plain"}});
  });
  FakeHttpServer allowed([&](const FakeRequest& req, ResponseWriter& w) {
    if (req.target == "/to-internal") {
      FakeHttpServer::Reply(w, 302, "", {{"Location", other.url() + "/"}});
    } else if (req.target == "/to-metadata") {
      FakeHttpServer::Reply(w, 302, "", {{"Location", "http://169.254.169.254/latest/meta-data/"}});
    } else {
      FakeHttpServer::Reply(w, 200, "ok", {{"Content-Type", "text/plain"}});
    }
  });
  auto f = NewCurlFetcher(LocalOptions(allowed.port()));
  ASSERT_TRUE(f->Fetch(allowed.url() + "/", nullptr).ok());
  // The other server would answer (checked below with a permissive fetcher).
  for (const std::string& url : std::vector<std::string>{other.url() + "/", "http://localhost:" + std::to_string(other.port()) + "/",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]:" + std::to_string(other.port()) + "/",
                                 "http://[::ffff:127.0.0.1]:" + std::to_string(other.port()) + "/",
                                 allowed.url() + "/to-internal", allowed.url() + "/to-metadata"}) {
    auto r = f->Fetch(url, nullptr);
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << url << " " << r.status().ToString();
    EXPECT_EQ(r.status().detail_code(), "url_not_allowed") << url;
  }
  EXPECT_EQ(other_hits.load(), 0);
  FetchOptions open;
  open.policy = *AddressPolicy::Make(true, {});
  auto r = NewCurlFetcher(open)->Fetch(other.url() + "/", nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "internal secret");
  EXPECT_EQ(other_hits.load(), 1);
}

TEST(WebTools, DefinitionsFollowConfigAndResultsHaveSpecShapes) {
  auto http = std::make_shared<testing::FakeHttpClient>();
  WebTools none(nullptr, nullptr);
  EXPECT_FALSE(none.Definition("web_fetch").has_value());
  EXPECT_FALSE(none.Definition("web_search").has_value());
  EXPECT_TRUE(none.Handles("web_search"));
  auto r = none.Run("web_search", {{"query", "x"}}, nullptr);
  EXPECT_TRUE(r.is_error);

  FakeHttpServer searx([&](const FakeRequest& req, ResponseWriter& w) {
    EXPECT_NE(req.target.find("format=json"), std::string::npos);
    EXPECT_NE(req.target.find("q=warren%20agents"), std::string::npos) << req.target;
    FakeHttpServer::Reply(w, 200,
                          R"({"results":[{"url":"https://a.example/1","title":"One","content":"first"},
                                         {"url":"https://b.example/2","title":"Two","content":"second"},
                                         {"url":"javascript:x","title":"bad","content":"no"}]})",
                          {{"Content-Type", "application/json"}});
  });
  auto cfg = WebToolsConfigFromJson(Json{{"search", {{"provider", "searxng"}, {"base_url", searx.url()}}}},
                                    [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto tools = WebTools::FromConfig(*cfg, NewCurlHttpClient());
  ASSERT_TRUE(tools.ok());
  ASSERT_TRUE((*tools)->Definition("web_search").has_value());
  ASSERT_TRUE((*tools)->Definition("web_fetch").has_value());
  auto s = (*tools)->Run("web_search", {{"query", "warren agents"}}, nullptr);
  ASSERT_FALSE(s.is_error) << s.content.dump();
  ASSERT_EQ(s.content.size(), 2u) << s.content.dump();
  EXPECT_EQ(s.content[0]["type"], "search_result");
  EXPECT_EQ(s.content[0]["source"], "https://a.example/1");
  EXPECT_EQ(s.content[0]["content"][0]["text"], "first");
  auto filtered = (*tools)->Run("web_search", {{"query", "warren agents"}, {"blocked_domains", {"a.example"}}}, nullptr);
  ASSERT_EQ(filtered.content.size(), 1u);
  EXPECT_EQ(filtered.content[0]["source"], "https://b.example/2");
  auto f = (*tools)->Run("web_fetch", {{"url", "http://127.0.0.1:1/"}}, nullptr);
  EXPECT_TRUE(f.is_error);
  EXPECT_NE(f.content[0]["text"].get<std::string>().find("web_fetch error (url_not_allowed)"), std::string::npos);
}

TEST(WebTools, ConfigErrors) {
  auto env = [](const char*) -> const char* { return nullptr; };
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"search", {{"provider", "bing"}}}}, env).ok());
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"search", {{"provider", "brave"}}}}, env).ok());
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"search", {{"provider", "searxng"}}}}, env).ok());
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"search", {{"provider", "brave"}, {"api_key_env", "NOPE"}}}}, env).ok());
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"fetch", {{"allow", {"bogus"}}}}}, env).ok());
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"fetch", {{"max_bytes", 1}}}}, env).ok());
  EXPECT_FALSE(WebToolsConfigFromJson(Json{{"fetsh", Json::object()}}, env).ok());
  auto brave = WebToolsConfigFromJson(Json{{"search", {{"provider", "brave"}, {"api_key_env", "K"}}}},
                                      [](const char* n) -> const char* { return std::string(n) == "K" ? "secret" : nullptr; });
  ASSERT_TRUE(brave.ok());
  EXPECT_EQ(brave->search.api_key, "secret");
  EXPECT_EQ(brave->search.base_url, "https://api.search.brave.com");
}

TEST(WebTools, BraveAndTavilyRequests) {
  FakeHttpServer api([&](const FakeRequest& req, ResponseWriter& w) {
    if (req.target.rfind("/res/v1/web/search", 0) == 0) {
      EXPECT_EQ(req.Header("x-subscription-token"), "bk");
      FakeHttpServer::Reply(w, 200, R"({"web":{"results":[{"url":"https://b.example/","title":"B","description":"bd"}]}})",
                            {{"Content-Type", "application/json"}});
    } else if (req.target == "/search" && req.method == "POST") {
      EXPECT_EQ(req.Header("authorization"), "Bearer tk");
      EXPECT_NE(req.body.find("\"query\":\"q\""), std::string::npos);
      FakeHttpServer::Reply(w, 200, R"({"results":[{"url":"https://t.example/","title":"T","content":"td"}]})",
                            {{"Content-Type", "application/json"}});
    } else {
      FakeHttpServer::Reply(w, 404, "");
    }
  });
  auto env = [](const char*) -> const char* { return nullptr; };
  for (auto [provider, key, url] : {std::tuple{"brave", "bk", "https://b.example/"}, std::tuple{"tavily", "tk", "https://t.example/"}}) {
    auto cfg = WebToolsConfigFromJson(Json{{"search", {{"provider", provider}, {"api_key", key}, {"base_url", api.url()}}}}, env);
    ASSERT_TRUE(cfg.ok());
    auto tools = WebTools::FromConfig(*cfg, NewCurlHttpClient());
    ASSERT_TRUE(tools.ok());
    auto r = (*tools)->Run("web_search", {{"query", "q"}}, nullptr);
    ASSERT_FALSE(r.is_error) << r.content.dump();
    EXPECT_EQ(r.content[0]["source"], url);
  }
}

}  // namespace
}  // namespace warren::webtools
