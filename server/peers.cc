#include "server/peers.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "util/status_macros.h"

namespace txcoord::coordinator {

absl::StatusOr<std::string> ReadPem(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("config: ", key, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", key, ": ", path, " is not PEM"));
  }
  return ss.str();
}

std::string AdvertisedAddress(const Config& config, const std::string& bound) {
  if (!config.advertise.empty()) return config.advertise;
  const size_t colon = bound.rfind(':');
  if (colon == std::string::npos) return bound;
  const std::string host = bound.substr(0, colon);
  if (host != "0.0.0.0" && host != "[::]" && host != "::" && !host.empty()) return bound;
  char name[256] = {0};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return bound;
  return absl::StrCat(name, bound.substr(colon));
}

absl::StatusOr<std::unique_ptr<PeerChannels>> PeerChannels::Create(const Config& config) {
  if (config.plaintext) return std::unique_ptr<PeerChannels>(new PeerChannels(grpc::InsecureChannelCredentials()));
  grpc::SslCredentialsOptions ssl;
  if (!config.tls.peer_ca_file.empty()) {
    TXC_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(config.tls.peer_ca_file, "tls.peer_ca"));
  } else if (!config.tls.client_ca_file.empty()) {
    TXC_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(config.tls.client_ca_file, "tls.client_ca"));
  }
  TXC_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(config.tls.key_file, "tls.key"));
  TXC_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(config.tls.cert_file, "tls.cert"));
  return std::unique_ptr<PeerChannels>(new PeerChannels(grpc::SslCredentials(ssl)));
}

std::shared_ptr<grpc::Channel> PeerChannels::To(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) channel = grpc::CreateChannel(address, credentials_);
  return channel;
}

}  // namespace txcoord::coordinator
