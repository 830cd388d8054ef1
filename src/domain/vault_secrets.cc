#include "domain/vault_secrets.h"

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

std::string Redact(std::string text, const CredentialSecrets& secrets) {
  for (const std::string& s : secrets.All()) {
    if (s.size() < 4) continue;  // too short to scrub without mangling text
    for (size_t pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos)) {
      text.replace(pos, s.size(), "[redacted]");
      pos += 10;
    }
  }
  return text;
}

}  // namespace warren::domain
