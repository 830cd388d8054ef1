// warren-webhook-tool: a tiny command line over webhooks.h, used by the Node
// conformance suite to check Warren's signatures against the npm
// `standardwebhooks` package in both directions.
//
//   warren-webhook-tool sign KEY ID TIMESTAMP       body on stdin; prints the
//                                                   webhook-signature value
//   warren-webhook-tool verify KEY NOW_SECONDS      JSON lines on stdin
//       {"id","timestamp","signature","body"}; one verifier for all lines (so
//       a repeated id is a replay); prints one JSON line per input:
//       {"ok":bool,"code":"...","detail":"..."}
#include <iostream>
#include <iterator>
#include <string>

#include "common/clock.h"
#include "common/json.h"
#include "orchestrator/webhooks.h"

using namespace warren;
using namespace warren::orchestrator;

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (argc < 4 || (cmd != "sign" && cmd != "verify") || (cmd == "sign" && argc != 5)) {
    std::cerr << "usage: warren-webhook-tool sign KEY ID TIMESTAMP < body\n"
                 "       warren-webhook-tool verify KEY NOW_SECONDS < deliveries.jsonl\n";
    return 2;
  }
  auto key = WebhookKey::Parse(argv[2]);
  if (!key.ok()) {
    std::cerr << key.status().ToString() << "\n";
    return 2;
  }
  if (cmd == "sign") {
    std::string body((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::cout << SignWebhook(*key, argv[3], std::stoll(argv[4]), body).signature << "\n";
    return 0;
  }
  FakeClock clock(std::stoll(argv[3]) * 1'000'000);
  WebhookVerifier verifier({*key}, &clock);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    auto j = ParseJson(line);
    if (!j.ok() || !j->is_object()) {
      std::cerr << "bad input line\n";
      return 2;
    }
    auto str = [&](const char* k) {
      return j->contains(k) && (*j)[k].is_string() ? (*j)[k].get<std::string>() : std::string();
    };
    Status s = verifier.Verify({str("id"), str("timestamp"), str("signature")}, str("body"));
    Json out = {{"ok", s.ok()}, {"code", std::string(CodeName(s.code()))}, {"detail", s.detail_code()}};
    std::cout << DumpJson(out) << std::endl;
  }
  return 0;
}
