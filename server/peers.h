// The other nodes of a cluster, as this node reaches them: where each one
// says its gRPC listener is (journal.etcd.advertise, published in etcd
// under the node's lease) and the channels this node opens to them when it
// forwards a call (AdminService.ResolveTransaction on another running
// node's transaction).
#ifndef TXCOORD_SERVER_PEERS_H_
#define TXCOORD_SERVER_PEERS_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "server/config.h"

namespace txcoord::coordinator {

// A PEM file's text; INVALID_ARGUMENT naming `key` (the config key) when
// it cannot be read or holds no PEM block.
absl::StatusOr<std::string> ReadPem(const std::string& path, const std::string& key);

// What this node advertises: config.advertise when set, else `bound` (the
// listen address as bound) with a wildcard host (0.0.0.0, [::], empty)
// replaced by this machine's host name.
std::string AdvertisedAddress(const Config& config, const std::string& bound);

class PeerChannels {
 public:
  // Plaintext channels under plaintext: true. Otherwise TLS: the peers'
  // certificates verified against tls.peer_ca (else tls.client_ca, else
  // the system's CAs), this node's own certificate presented as the client
  // certificate (a peer that requires one, mutual TLS, gets it; the call's
  // bearer token still decides who the caller is).
  static absl::StatusOr<std::unique_ptr<PeerChannels>> Create(const Config& config);

  // The channel to `address`, made at the first call and reused.
  std::shared_ptr<grpc::Channel> To(const std::string& address);

 private:
  explicit PeerChannels(std::shared_ptr<grpc::ChannelCredentials> credentials) : credentials_(std::move(credentials)) {}

  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_PEERS_H_
