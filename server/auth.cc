#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace txcoord::coordinator {
namespace {

std::string Sha256Raw(const std::string& text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
}

}  // namespace

std::string Sha256Hex(const std::string& text) { return absl::BytesToHexString(Sha256Raw(text)); }

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(const AuthOptions& options) {
  auto a = std::unique_ptr<Authenticator>(new Authenticator(options));
  std::vector<std::pair<std::string, std::string>> hex = options.token_hashes;
  if (!options.tokens_file.empty()) {
    std::ifstream in(options.tokens_file);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("auth.tokens_file: cannot read ", options.tokens_file));
    int n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
      absl::string_view l = absl::StripAsciiWhitespace(line);
      if (l.empty() || l[0] == '#') continue;
      std::vector<std::string> parts = absl::StrSplit(l, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (parts.size() != 2 || parts[0].size() != 64 ||
          !std::all_of(parts[0].begin(), parts[0].end(), [](char c) { return absl::ascii_isxdigit(c); })) {
        return absl::InvalidArgumentError(absl::StrCat("auth.tokens_file ", options.tokens_file, " line ", n,
                                                       ": expected \"<sha256 hex of the token> <identity>\""));
      }
      hex.emplace_back(absl::AsciiStrToLower(parts[0]), parts[1]);
    }
  }
  for (auto& [h, identity] : hex) a->tokens_.emplace_back(absl::HexStringToBytes(h), identity);
  return a;
}

absl::StatusOr<Identity> Authenticator::ForName(const std::string& name, const std::string& how) const {
  for (const Policy& p : options_.policies) {
    if (p.identity != name) continue;
    Identity id;
    id.name = name;
    id.role = p.role;
    id.binds.insert(p.binds.begin(), p.binds.end());
    return id;
  }
  return absl::PermissionDeniedError(absl::StrCat("identity \"", name, "\" (", how, ") has no policy"));
}

absl::StatusOr<Identity> Authenticator::Identify(const grpc::ServerContextBase& ctx) const {
  if (!options_.enabled) {
    Identity anyone;
    anyone.name = "anonymous";
    anyone.role = Role::kAdmin;
    anyone.all_binds = true;
    return anyone;
  }
  // A bearer token, when sent, decides (a certificate may only prove the
  // channel).
  auto md = ctx.client_metadata().find("authorization");
  if (md != ctx.client_metadata().end()) {
    absl::string_view value(md->second.data(), md->second.size());
    if (!absl::ConsumePrefix(&value, "Bearer ") || value.empty()) {
      return absl::UnauthenticatedError("the authorization metadata must be \"Bearer <token>\"");
    }
    const std::string presented = Sha256Raw(std::string(value));
    const std::string* match = nullptr;
    for (const auto& [hash, identity] : tokens_) {  // every entry, no early exit
      if (CRYPTO_memcmp(hash.data(), presented.data(), presented.size()) == 0) match = &identity;
    }
    if (match == nullptr) return absl::UnauthenticatedError("invalid token");
    return ForName(*match, "token");
  }
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth && auth->IsPeerAuthenticated()) {
    std::vector<grpc::string_ref> cn = auth->FindPropertyValues("x509_common_name");
    if (!cn.empty()) return ForName(std::string(cn[0].data(), cn[0].size()), "client certificate");
  }
  return absl::UnauthenticatedError(
      "no credentials: send \"authorization: Bearer <token>\" or connect with a client certificate");
}

absl::Status Authenticator::RequireAdmin(const Identity& who) {
  if (who.role == Role::kAdmin) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("identity \"", who.name, "\" is not an admin"));
}

absl::Status Authenticator::RequireViewer(const Identity& who) {
  if (who.role == Role::kAdmin || who.role == Role::kViewer) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("identity \"", who.name, "\" is neither an admin nor a viewer"));
}

absl::Status Authenticator::RequireBind(const Identity& who, const std::string& bind) {
  if (who.all_binds || who.binds.count(bind)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("identity \"", who.name, "\" may not use bind \"", bind, "\""));
}

}  // namespace txcoord::coordinator
