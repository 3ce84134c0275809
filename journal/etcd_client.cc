#include "journal/etcd_client.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "util/fiber.h"

namespace txcoord::journal {
namespace {

// One unary call on the stub's callback API, `start(done)`, waited for
// (util::AwaitCompletion): on an event loop's fiber only the fiber waits
// for etcd, not the loop's thread.
template <typename Start>
grpc::Status Await(Start&& start) {
  return util::AwaitCompletion<grpc::Status>([&](std::function<void(grpc::Status)> done) { start(std::move(done)); });
}

absl::StatusOr<std::string> ReadFile(const std::string& field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("etcd: ", field, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether a failed call may not have reached etcd's state machine (or its
// reply was lost): the endpoint is unreachable or silent.
bool Unreachable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

EtcdKeyValue FromProto(const etcdserverpb::KeyValue& kv) {
  EtcdKeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

}  // namespace

std::string EtcdClient::PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: endpoints is empty");
  for (const std::string& e : options.endpoints) {
    if (e.empty() || e.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("etcd: endpoint \"", e, "\" is not host:port"));
    }
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd: call_timeout must be positive");
  }
  if (options.user.empty() != options.password.empty()) {
    return absl::InvalidArgumentError("etcd: user and password go together");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("etcd: cert and key go together");
  }
  if (!options.cert_file.empty() && options.ca_file.empty()) {
    return absl::InvalidArgumentError("etcd: a client certificate needs ca (TLS)");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    auto ca = ReadFile("ca", options.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    if (!options.cert_file.empty()) {
      auto cert = ReadFile("cert", options.cert_file);
      if (!cert.ok()) return cert.status();
      auto key = ReadFile("key", options.key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
  }
  auto client = std::unique_ptr<EtcdClient>(new EtcdClient(std::move(options)));
  for (const std::string& address : client->options_.endpoints) {
    grpc::ChannelArguments args;
    // A member back from a restart is reconnected within a second, not
    // after gRPC's default backoff of up to two minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    Endpoint e;
    e.address = address;
    e.channel = grpc::CreateCustomChannel(address, credentials, args);
    e.kv = etcdserverpb::KV::NewStub(e.channel);
    e.lease = etcdserverpb::Lease::NewStub(e.channel);
    e.auth = etcdserverpb::Auth::NewStub(e.channel);
    client->endpoints_.push_back(std::move(e));
  }
  return client;
}

EtcdClient::EtcdClient(EtcdOptions options) : options_(std::move(options)) {}

void EtcdClient::Prepare(grpc::ClientContext& ctx, absl::Time deadline, bool wait_for_ready) {
  ctx.set_deadline(absl::ToChronoTime(deadline));
  // wait_for_ready: wait (within the deadline) for a connection instead of
  // failing at once while the channel is in its reconnect backoff: a call
  // is what makes gRPC try an endpoint again after a failure, so failing
  // fast everywhere would keep an etcd that came back unused.
  ctx.set_wait_for_ready(wait_for_ready);
  absl::MutexLock lock(&mu_);
  if (!token_.empty()) ctx.AddMetadata("token", token_);
}

absl::Status EtcdClient::Authenticate(Endpoint& e) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::microseconds(absl::ToInt64Microseconds(options_.call_timeout)));
  etcdserverpb::AuthenticateRequest req;
  req.set_name(options_.user);
  req.set_password(options_.password);
  etcdserverpb::AuthenticateResponse resp;
  grpc::Status s = Await([&](auto done) { e.auth->async()->Authenticate(&ctx, &req, &resp, std::move(done)); });
  if (!s.ok()) {
    if (Unreachable(s)) {
      return absl::UnavailableError(absl::StrCat("etcd at ", e.address, ": ", s.error_message()));
    }
    return absl::UnauthenticatedError(absl::StrCat("etcd at ", e.address, ": authentication as \"",
                                                   options_.user, "\" failed: ", s.error_message()));
  }
  absl::MutexLock lock(&mu_);
  token_ = resp.token();
  return absl::OkStatus();
}

template <typename Call>
absl::Status EtcdClient::Run(const char* what, bool retry_elsewhere, Call&& call) {
  size_t start;
  {
    absl::MutexLock lock(&mu_);
    start = current_;
  }
  const size_t n = endpoints_.size();
  const size_t attempts = retry_elsewhere ? n : 1;
  // The whole call, failover included, within one call_timeout. Endpoints
  // whose channel is failing go last (asking the state also starts a
  // reconnect of an idle one): a read does not spend its time waiting for a
  // member known to be down while another answers, and a write goes to a
  // member that is up.
  const absl::Time deadline = absl::Now() + options_.call_timeout;
  std::vector<size_t> order;
  for (size_t k = 0; k < n; ++k) order.push_back((start + k) % n);
  std::stable_partition(order.begin(), order.end(), [&](size_t i) {
    return endpoints_[i].channel->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_TRANSIENT_FAILURE;
  });
  bool authenticated_again = false;
  absl::Status last;
  for (size_t tried = 0; tried < attempts && (tried == 0 || absl::Now() < deadline);) {
    const size_t index = order[tried];
    Endpoint& e = endpoints_[index];
    if (!options_.user.empty()) {
      bool need;
      {
        absl::MutexLock lock(&mu_);
        need = token_.empty();
      }
      if (need) {
        last = Authenticate(e);
        if (!last.ok()) {
          if (last.code() != absl::StatusCode::kUnavailable) return last;
          absl::MutexLock lock(&mu_);
          current_ = (index + 1) % n;
          ++tried;
          continue;
        }
      }
    }
    grpc::ClientContext ctx;
    const bool last_chance = tried + 1 >= attempts;
    // An attempt with another endpoint after it fails at once on a refused
    // connection and gets half the call at most (a member that accepts
    // but does not answer); the last one waits for a connection within
    // what is left.
    Prepare(ctx, last_chance ? deadline : std::min(deadline, absl::Now() + options_.call_timeout / 2),
            /*wait_for_ready=*/last_chance);
    grpc::Status s = call(e, ctx);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      current_ = index;
      return absl::OkStatus();
    }
    if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED && !options_.user.empty() && !authenticated_again) {
      authenticated_again = true;  // the token expired (or etcd restarted): once more with a new one
      absl::MutexLock lock(&mu_);
      token_.clear();
      continue;
    }
    const std::string where = absl::StrCat("etcd at ", e.address, ": ", what, ": ");
    if (Unreachable(s)) {
      {
        absl::MutexLock lock(&mu_);
        current_ = (index + 1) % n;
      }
      const bool timed_out = s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      last = absl::UnavailableError(absl::StrCat(
          where, timed_out ? absl::StrCat("no reply within ", absl::FormatDuration(options_.call_timeout))
                           : s.error_message(),
          retry_elsewhere ? "" : " (a write: its outcome is unknown)"));
      ++tried;
      continue;
    }
    switch (s.error_code()) {
      case grpc::StatusCode::UNAUTHENTICATED: return absl::UnauthenticatedError(where + s.error_message());
      case grpc::StatusCode::PERMISSION_DENIED: return absl::PermissionDeniedError(where + s.error_message());
      case grpc::StatusCode::INVALID_ARGUMENT:
      case grpc::StatusCode::FAILED_PRECONDITION:
      case grpc::StatusCode::OUT_OF_RANGE: return absl::InvalidArgumentError(where + s.error_message());
      case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::ResourceExhaustedError(where + s.error_message());
      case grpc::StatusCode::NOT_FOUND: return absl::NotFoundError(where + s.error_message());
      default: return absl::UnavailableError(where + s.error_message());
    }
  }
  return last;
}

absl::StatusOr<std::optional<EtcdKeyValue>> EtcdClient::Get(const std::string& key) {
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  absl::Status s = Run("get", /*retry_elsewhere=*/true, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.kv->async()->Range(&ctx, &req, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  if (resp.kvs_size() == 0) return std::optional<EtcdKeyValue>();
  return std::optional<EtcdKeyValue>(FromProto(resp.kvs(0)));
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdClient::GetPrefix(const std::string& prefix, int64_t limit) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(PrefixEnd(prefix));
  req.set_limit(limit);
  etcdserverpb::RangeResponse resp;
  absl::Status s = Run("get prefix", /*retry_elsewhere=*/true, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.kv->async()->Range(&ctx, &req, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  std::vector<EtcdKeyValue> out;
  out.reserve(resp.kvs_size());
  for (const auto& kv : resp.kvs()) out.push_back(FromProto(kv));
  return out;
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(const etcdserverpb::RangeRequest& request) {
  etcdserverpb::RangeResponse resp;
  absl::Status s = Run("range", /*retry_elsewhere=*/true, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.kv->async()->Range(&ctx, &request, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  etcdserverpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  etcdserverpb::PutResponse resp;
  absl::Status s = Run("put", /*retry_elsewhere=*/false, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.kv->async()->Put(&ctx, &req, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  return resp.header().revision();
}

absl::StatusOr<int64_t> EtcdClient::Delete(const std::string& key) {
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(key);
  etcdserverpb::DeleteRangeResponse resp;
  absl::Status s = Run("delete", /*retry_elsewhere=*/false, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.kv->async()->DeleteRange(&ctx, &req, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  return resp.deleted();
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request) {
  etcdserverpb::TxnResponse resp;
  absl::Status s = Run("txn", /*retry_elsewhere=*/false, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.kv->async()->Txn(&ctx, &request, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(absl::Duration ttl) {
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse resp;
  absl::Status s = Run("grant lease", /*retry_elsewhere=*/false, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.lease->async()->LeaseGrant(&ctx, &req, &resp, std::move(done)); });
  });
  if (!s.ok()) return s;
  if (!resp.error().empty()) return absl::UnavailableError(absl::StrCat("etcd: grant lease: ", resp.error()));
  return resp.id();
}

absl::StatusOr<absl::Duration> EtcdClient::KeepAlive(int64_t lease) {
  etcdserverpb::LeaseKeepAliveResponse resp;
  bool answered = false;
  absl::Status s = Run("keep lease alive", /*retry_elsewhere=*/true, [&](Endpoint& e, grpc::ClientContext& ctx) {
    auto stream = e.lease->LeaseKeepAlive(&ctx);
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(lease);
    answered = stream->Write(req) && stream->WritesDone() && stream->Read(&resp);
    grpc::Status finished = stream->Finish();
    if (!finished.ok()) return finished;
    if (!answered) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the keep-alive stream ended without a reply");
    return grpc::Status::OK;
  });
  if (!s.ok()) return s;
  if (resp.ttl() <= 0) return absl::NotFoundError(absl::StrCat("etcd: lease ", lease, " has expired"));
  return absl::Seconds(resp.ttl());
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseRevokeResponse resp;
  absl::Status s = Run("revoke lease", /*retry_elsewhere=*/false, [&](Endpoint& e, grpc::ClientContext& ctx) {
    return Await([&](auto done) { e.lease->async()->LeaseRevoke(&ctx, &req, &resp, std::move(done)); });
  });
  return s;  // NOT_FOUND: no such lease (expired, or revoked already)
}

}  // namespace txcoord::journal
