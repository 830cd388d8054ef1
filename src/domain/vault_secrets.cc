#include "domain/vault_secrets.h"

#include <algorithm>
#include <cctype>

namespace warren::domain {
namespace {

std::string Aad(const std::string& id) { return "vault_credential:" + id; }

std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::vector<std::string> CredentialSecrets::All() const {
  std::vector<std::string> out;
  for (const std::string* s : {&token, &access_token, &refresh_token, &client_secret})
    if (!s->empty()) out.push_back(*s);
  return out;
}

Result<std::string> SealCredentialSecrets(const SecretBox& box, const std::string& credential_id,
                                          const CredentialSecrets& s) {
  Json j = {{"token", s.token},
            {"access_token", s.access_token},
            {"refresh_token", s.refresh_token},
            {"client_secret", s.client_secret}};
  return box.Seal(DumpJson(j), Aad(credential_id));
}

Result<CredentialSecrets> OpenCredentialSecrets(const SecretBox& box, const std::string& credential_id,
                                                const std::string& sealed) {
  auto plain = box.Open(sealed, Aad(credential_id));
  if (!plain.ok())
    return Status::Internal("the secrets of credential " + credential_id +
                            " do not open under this service's secrets key (was WARREN_SECRETS_KEY or secrets.key changed?)");
  auto j = ParseJson(*plain);
  if (!j.ok() || !j->is_object()) return Status::Internal("the secrets of credential " + credential_id + " are damaged");
  CredentialSecrets s;
  s.token = Str(*j, "token");
  s.access_token = Str(*j, "access_token");
  s.refresh_token = Str(*j, "refresh_token");
  s.client_secret = Str(*j, "client_secret");
  return s;
}

std::string Redact(std::string text, const CredentialSecrets& secrets) { return RedactAll(std::move(text), secrets.All()); }

std::string RedactAll(std::string text, const std::vector<std::string>& secrets) {
  static const char kUpper[] = "0123456789ABCDEF";
  static const char kLower[] = "0123456789abcdef";
  // keep(c): bytes an encoder leaves as they are.
  auto percent = [](const std::string& s, const char* hex, bool (*keep)(unsigned char), bool plus_for_space) {
    std::string out;
    for (unsigned char c : s) {
      if (keep(c)) {
        out += static_cast<char>(c);
      } else if (plus_for_space && c == ' ') {
        out += '+';
      } else {
        out += '%';
        out += hex[c >> 4];
        out += hex[c & 15];
      }
    }
    return out;
  };
  auto rfc3986 = [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~'; };
  auto whatwg_form = [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '*'; };
  std::vector<std::string> forms;
  for (const std::string& s : secrets) {
    if (s.size() < 4) continue;  // too short to scrub without mangling text
    forms.push_back(s);
    for (const char* hex : {kUpper, kLower}) {
      forms.push_back(percent(s, hex, rfc3986, false));
      forms.push_back(percent(s, hex, whatwg_form, true));
    }
    std::string json = DumpJson(Json(s));
    json = json.substr(1, json.size() - 2);
    forms.push_back(json);
    std::string slashed;
    for (char c : json) slashed += c == '/' ? std::string("\\/") : std::string(1, c);
    forms.push_back(slashed);
  }
  // Longest first, so a form that contains another is scrubbed whole.
  std::sort(forms.begin(), forms.end(),
            [](const std::string& a, const std::string& b) { return a.size() != b.size() ? a.size() > b.size() : a < b; });
  forms.erase(std::unique(forms.begin(), forms.end()), forms.end());
  for (const std::string& f : forms) {
    for (size_t pos = text.find(f); pos != std::string::npos; pos = text.find(f, pos)) {
      text.replace(pos, f.size(), "[redacted]");
      pos += 10;
    }
  }
  return text;
}

}  // namespace warren::domain
