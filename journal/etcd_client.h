// EtcdClient: the calls of etcd's v3 API that the cluster mode's journal
// makes (journal/etcd/etcd_api.proto), over gRPC.
//
// Every call has a deadline (EtcdOptions::call_timeout), failover to other
// endpoints included. Endpoints are tried in turn, those whose connection
// is failing last: a read (Get, GetPrefix) or a lease keep-alive that finds
// its endpoint unreachable goes on to the next one within the same call; a
// write (Put, Delete, Txn, GrantLease, RevokeLease) is sent once, and when
// no reply came its outcome is unknown — UNAVAILABLE saying so — and the
// next call starts at the next endpoint. With a user and password the
// client authenticates (etcd's Auth service) and sends the token with every
// call, authenticating again when etcd says the token is no longer valid.
// TLS when a CA file is given (and a client certificate when cert and key
// are).
//
// Errors: UNAVAILABLE etcd cannot be reached (or no reply: outcome
// unknown for writes); DEADLINE_EXCEEDED never from here (folded into
// UNAVAILABLE, naming the timeout); UNAUTHENTICATED / PERMISSION_DENIED
// from etcd's auth; INVALID_ARGUMENT bad options or a request etcd refused
// as malformed (too many operations in one Txn, a request too large).
//
// Thread-safe. Unary calls go out on gRPC's callback API: on an event
// loop's fiber (util/fiber.h) a call parks the fiber, not the loop's
// thread. KeepAlive (a stream) blocks its thread: the lease thread's.
#ifndef TXCOORD_JOURNAL_ETCD_CLIENT_H_
#define TXCOORD_JOURNAL_ETCD_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "journal/etcd/etcd_api.grpc.pb.h"

namespace txcoord::journal {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // host:port, at least one
  absl::Duration call_timeout = absl::Seconds(5);
  std::string user;      // with password: etcd's password authentication
  std::string password;
  std::string ca_file;   // PEM: TLS to etcd
  std::string cert_file; // PEM client certificate (with key_file)
  std::string key_file;
};

// A key as etcd stores it.
struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

class EtcdClient {
 public:
  // Checks the options and makes the channels (no call yet: etcd may be
  // down at start). INVALID_ARGUMENT for bad options, naming the field.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(EtcdOptions options);

  // The key, or nullopt when absent.
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key);
  // Keys starting with `prefix`, in key order, at most `limit` (0: all).
  absl::StatusOr<std::vector<EtcdKeyValue>> GetPrefix(const std::string& prefix, int64_t limit = 0);
  // A range read as it is (sorting, limits, count_only); a read, so it may
  // go on to the next endpoint.
  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request);
  // Returns the store's revision after the write.
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Returns how many keys were deleted (0 or 1).
  absl::StatusOr<int64_t> Delete(const std::string& key);
  // An etcd transaction as it is; the caller reads `succeeded`.
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);

  // A lease of `ttl` (whole seconds, at least 1); returns its id.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  // One keep-alive; returns the TTL etcd granted again. NOT_FOUND when the
  // lease has expired (or was revoked).
  absl::StatusOr<absl::Duration> KeepAlive(int64_t lease);
  absl::Status RevokeLease(int64_t lease);

  // The key just after every key with `prefix` (etcd's range end).
  static std::string PrefixEnd(const std::string& prefix);

 private:
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Auth::Stub> auth;
  };
  explicit EtcdClient(EtcdOptions options);

  // Runs `call` on endpoints starting at the current one: `retry_elsewhere`
  // lets an unreachable endpoint pass the call to the next one (reads);
  // otherwise the call is sent once. Attaches the auth token, and
  // authenticates again once when etcd refuses it.
  template <typename Call>
  absl::Status Run(const char* what, bool retry_elsewhere, Call&& call);
  // A context with the call's deadline and the token.
  void Prepare(grpc::ClientContext& ctx, absl::Time deadline, bool wait_for_ready);
  absl::Status Authenticate(Endpoint& e) ABSL_LOCKS_EXCLUDED(mu_);

  const EtcdOptions options_;
  std::vector<Endpoint> endpoints_;
  mutable absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;  // the endpoint calls start at
  std::string token_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txcoord::journal

#endif  // TXCOORD_JOURNAL_ETCD_CLIENT_H_
