// Authentication and authorization of gRPC callers.
//
// Identity: the common name of a verified client certificate (mutual TLS),
// or a bearer token ("authorization: Bearer <token>") whose SHA-256 matches
// a configured hash (compared in constant time). Authorization: the
// identity's policy gives its role (client: session RPCs on its binds;
// admin: AdminService, and session RPCs on its binds). Without an `auth`
// section every caller is an anonymous admin with every bind (development
// only: the server warns at start).
// Thread-safe after construction.
#ifndef TXCOORD_SERVER_AUTH_H_
#define TXCOORD_SERVER_AUTH_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/config.h"
#include "grpcpp/server_context.h"

namespace txcoord::coordinator {

struct Identity {
  std::string name;
  Role role = Role::kClient;
  bool all_binds = false;           // auth disabled
  std::set<std::string> binds;
};

class Authenticator {
 public:
  // Reads the tokens file. INVALID_ARGUMENT names a bad line.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(const AuthOptions& options);

  bool enabled() const { return options_.enabled; }
  // UNAUTHENTICATED: no or invalid credentials; PERMISSION_DENIED: an
  // identity without a policy.
  absl::StatusOr<Identity> Identify(const grpc::ServerContextBase& ctx) const;

  static absl::Status RequireAdmin(const Identity& who);
  // An admin or a viewer (AdminService's reads).
  static absl::Status RequireViewer(const Identity& who);
  static absl::Status RequireBind(const Identity& who, const std::string& bind);

 private:
  explicit Authenticator(AuthOptions options) : options_(std::move(options)) {}
  absl::StatusOr<Identity> ForName(const std::string& name, const std::string& how) const;
  AuthOptions options_;
  std::vector<std::pair<std::string, std::string>> tokens_;  // raw sha256 (32 bytes), identity
};

// In a gRPC handler with `grpc::ServerContext* ctx` and a member
// `const Authenticator* auth_`: puts the caller's Identity in `who`, or
// returns UNAUTHENTICATED / PERMISSION_DENIED to the client.
#define TXC_IDENTIFY(who)                                                 \
  auto who##_or = auth_->Identify(*ctx);                                  \
  if (!who##_or.ok()) return ::txcoord::coordinator::ToGrpc(who##_or.status()); \
  const ::txcoord::coordinator::Identity& who = *who##_or

// Lower-case hex SHA-256 of `text` (for token hashes).
std::string Sha256Hex(const std::string& text);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_AUTH_H_
