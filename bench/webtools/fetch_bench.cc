// web_fetch overhead on loopback: p50/p99 of Fetcher::Fetch (SSRF check in
// OPENSOCKETFUNCTION, HTML -> Markdown with gumbo) for a real-world-shaped
// article (src/webtools/testdata/article.html, repeated to ~100 KiB), against
// the peer: a plain libcurl GET of the same URL into memory, interleaved in
// the same run. Also the HTML conversion alone. Usage: bench_webtools [iterations]
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/testing/fake_http_server.h"
#include "webtools/fetcher.h"
#include "webtools/html_text.h"

using namespace warren;

namespace {

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

size_t Sink(char* d, size_t s, size_t n, void* ctx) {
  static_cast<std::string*>(ctx)->append(d, s * n);
  return s * n;
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::max(10, std::atoi(argv[1])) : 300;
  std::ifstream in(std::string(WARREN_WEBTOOLS_TESTDATA) + "/article.html");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string one = ss.str();
  std::string body = one.substr(0, one.find("</main>"));
  while (body.size() < 100 * 1024) body += one.substr(one.find("<article>"), one.find("</article>") - one.find("<article>") + 10);
  body += "</main></body></html>";
  testing::FakeHttpServer server([&](const testing::FakeRequest&, testing::ResponseWriter& w) {
    testing::FakeHttpServer::Reply(w, 200, body, {{"Content-Type", "text/html; charset=utf-8"}});
  });
  webtools::FetchOptions o;
  o.policy = *webtools::AddressPolicy::Make(false, {"127.0.0.1:" + std::to_string(server.port())});
  o.max_text_chars = 10'000'000;
  auto fetcher = webtools::NewCurlFetcher(o);
  const std::string url = server.url() + "/article";
  std::vector<double> fetch_ms, curl_ms, convert_ms;
  for (int i = 0; i < iters + 10; i++) {
    double t0 = NowMs();
    auto page = fetcher->Fetch(url, nullptr);
    double t1 = NowMs();
    if (!page.ok()) {
      std::fprintf(stderr, "fetch failed: %s\n", page.status().ToString().c_str());
      return 1;
    }
    std::string raw;
    CURL* c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &raw);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    double t2 = NowMs();
    CURLcode rc = curl_easy_perform(c);
    double t3 = NowMs();
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) return 1;
    double t4 = NowMs();
    auto text = webtools::HtmlToMarkdown(raw, url);
    double t5 = NowMs();
    if (text.text.empty()) return 1;
    if (i < 10) continue;  // warm-up
    fetch_ms.push_back(t1 - t0);
    curl_ms.push_back(t3 - t2);
    convert_ms.push_back(t5 - t4);
  }
  std::printf("web_fetch of a %zu-byte HTML page on loopback, %d iterations\n", body.size(), iters);
  std::printf("  Fetcher::Fetch (SSRF check + HTML to Markdown): p50 %.3f ms  p99 %.3f ms\n", Pct(fetch_ms, 50), Pct(fetch_ms, 99));
  std::printf("  peer: plain libcurl GET:                        p50 %.3f ms  p99 %.3f ms\n", Pct(curl_ms, 50), Pct(curl_ms, 99));
  std::printf("  HtmlToMarkdown alone:                           p50 %.3f ms  p99 %.3f ms\n", Pct(convert_ms, 50), Pct(convert_ms, 99));
  std::printf("  ratio Fetch / plain GET (p50): %.2f\n", Pct(fetch_ms, 50) / Pct(curl_ms, 50));
  return 0;
}
