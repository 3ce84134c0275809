#include "server/server.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/resource_quota.h"
#include "httplib.h"
#include "server/auth.h"
#include "server/cluster.h"
#include "server/console.h"
#include "server/http_threads.h"
#include "server/peers.h"
#include "server/service/admin_service.h"
#include "server/service/async_edge.h"
#include "server/service/health_service.h"
#include "server/service/session_service.h"
#include "server/service/transaction_service.h"
#include "util/status_macros.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const Config& config) {
  if (config.plaintext) {
    Log(spdlog::level::warn, "",
        "plaintext: true: the gRPC port is NOT encrypted; use it only on a trusted network");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  TXC_ASSIGN_OR_RETURN(pair.private_key, ReadPem(config.tls.key_file, "tls.key"));
  TXC_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(config.tls.cert_file, "tls.cert"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!config.tls.client_ca_file.empty()) {
    TXC_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem(config.tls.client_ca_file, "tls.client_ca"));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  return grpc::SslServerCredentials(options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TxcoordServer>> TxcoordServer::Start(const Config& config,
                                                                     Clock* clock) {
  ConfigureLogging(config.log_format, config.log_level);
  auto server = std::unique_ptr<TxcoordServer>(new TxcoordServer());
  TXC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, Credentials(config));
  TXC_ASSIGN_OR_RETURN(server->auth_, Authenticator::Create(config.auth));
  if (!config.auth.enabled) {
    Log(spdlog::level::warn, "",
        "no auth section: every caller is an anonymous admin with every bind (development only)");
  }
  if (config.timeouts.prepare_set) {
    Log(spdlog::level::warn, "",
        "timeouts.prepare is not applied: a PREPARE is bounded by timeouts.transaction (its lock timeout), "
        "the database, and timeouts.database_reply when the database stops answering; remove the key to "
        "silence this warning");
  }
  journal::JournalOptions journal_options = config.journal;
  const bool cluster = config.journal.backend == journal::Backend::kEtcd;
  if (cluster && journal_options.etcd.owner_description.empty()) {
    char host[256] = {0};
    (void)::gethostname(host, sizeof host - 1);
    journal_options.etcd.owner_description = absl::StrCat(host, " pid ", ::getpid(), " listen ", config.listen);
  }
  if (cluster) {
    Log(spdlog::level::info, "",
        absl::StrCat("journal on etcd (", absl::StrJoin(config.journal.etcd.client.endpoints, ","), ", prefix ",
                     config.journal.etcd.prefix, "): taking node id \"", config.node_id, "\""));
  }
  TXC_ASSIGN_OR_RETURN(server->journal_, journal::OpenJournal(journal_options));
  Log(spdlog::level::info, "",
      absl::StrCat("journal ", cluster ? std::string("etcd") : config.journal.dir,
                   " opened: node_id=", server->journal_->node_id(), " epoch=", server->journal_->epoch()));
  if (cluster) {
    TXC_ASSIGN_OR_RETURN(server->peers_, PeerChannels::Create(config));
    server->etcd_journal_ = static_cast<journal::EtcdJournal*>(server->journal_.get());
    TxcoordServer* self = server.get();
    server->etcd_journal_->SetLeaseLostCallback([self](const absl::Status& why) {
      Log(spdlog::level::critical, "",
          absl::StrCat(why.message(), ". No commit decision is taken any more; txcoord stops (exit code ",
                       kExitLeaseLost, ") so that a restart takes the id back with a new epoch."));
      absl::MutexLock lock(&self->health_mu_);
      self->lease_lost_ = true;
    });
  }

  std::map<std::string, std::unique_ptr<participants::Participant>> binds;
  for (const participants::BindOptions& b : config.binds) {
    auto p = participants::CreateParticipant(b);
    if (!p.ok()) {
      return absl::Status(p.status().code(), RedactDsn(absl::StrCat("bind \"", b.name, "\": ",
                                                                    p.status().message())));
    }
    participants::Capabilities caps = (*p)->capabilities();
    Log(spdlog::level::info, "",
        absl::StrCat("bind ", b.name, ": driver=", caps.driver, " dialect=", caps.dialect,
                     " two_phase=", caps.two_phase ? "true" : "false",
                     b.last_resource ? " last_resource=true" : "", " dsn=", RedactDsn(b.dsn)));
    binds[b.name] = std::move(*p);
  }
  CoordinatorOptions options = CoordinatorOptionsFor(config, config.node_id);
  server->coordinator_ = std::make_unique<Coordinator>(server->journal_.get(), std::move(binds),
                                                       options, clock);
  TXC_RETURN_IF_ERROR(server->coordinator_->Start());

  SessionOptions session_options;
  session_options.max_sessions = config.limits.max_sessions;
  session_options.default_idle_timeout = config.timeouts.idle;
  session_options.max_sessions_per_identity = config.limits.max_sessions_per_identity;
  server->sessions_ = std::make_unique<SessionManager>(server->coordinator_.get(), session_options, clock);
  const int loops = config.limits.event_loops >= 0
                        ? config.limits.event_loops
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (loops > 0) server->fibers_ = std::make_unique<util::FiberLoops>(loops);
  server->session_service_ =
      std::make_unique<SessionServiceImpl>(server->coordinator_.get(), server->sessions_.get(),
                                           server->auth_.get(), server->fibers_.get());
  server->admin_service_ =
      std::make_unique<AdminServiceImpl>(server->coordinator_.get(), server->sessions_.get(),
                                         server->auth_.get());
  server->transaction_service_ =
      std::make_unique<TransactionServiceImpl>(server->coordinator_.get(), server->auth_.get(), server->fibers_.get());
  server->health_service_ = std::make_unique<HealthServiceImpl>();
  SessionManager* sessions = server->sessions_.get();
  server->coordinator_->metrics().RegisterGauge(
      "txcoord_sessions", "Open sessions.", [sessions] {
        return std::vector<std::pair<Labels, double>>{{{}, double(sessions->size())}};
      });

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, credentials, &port);
  builder.SetMaxReceiveMessageSize(config.limits.max_message_bytes);
  builder.SetMaxSendMessageSize(config.limits.max_message_bytes);
  grpc::ResourceQuota quota("txcoord");
  quota.SetMaxThreads(config.limits.server_threads);
  builder.SetResourceQuota(quota);
  // Every txcoord service and the health service are on the async API,
  // served by the edge's one thread (server/service/async_edge.h). gRPC's
  // sync server is left with the reflection service. It runs each call on
  // a thread that polled for it; threads beyond MAX_POLLERS idle ones exit
  // after their call.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              config.limits.server_idle_threads);
  builder.RegisterService(server->session_service_.get());
  builder.RegisterService(server->transaction_service_.get());
  builder.RegisterService(server->admin_service_.get());
  builder.RegisterService(server->health_service_.get());
  server->edge_ = std::make_unique<AsyncEdge>(builder.AddCompletionQueue());
  server->session_service_->ServeOn(*server->edge_);
  server->transaction_service_->ServeOn(*server->edge_);
  server->admin_service_->ServeOn(*server->edge_);
  server->health_service_->ServeOn(*server->edge_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen));
  }
  server->edge_->Start();
  std::string host = config.listen.substr(0, config.listen.rfind(':'));
  server->address_ = absl::StrCat(host, ":", port);
  if (cluster) {
    const std::string advertised = AdvertisedAddress(config, server->address_);
    if (absl::Status st = server->journal_->Advertise(advertised); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("cannot advertise ", advertised, " in etcd: ", st.message()));
    }
    server->admin_service_->SetPeers(server->peers_.get());
  }

  if (!config.metrics_listen.empty()) {
    auto colon = config.metrics_listen.rfind(':');
    int metrics_port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(config.metrics_listen.substr(colon + 1), &metrics_port)) {
      return absl::InvalidArgumentError(absl::StrCat("config: metrics_listen: \"", config.metrics_listen,
                                                     "\" is not host:port"));
    }
    server->http_ = std::make_unique<httplib::Server>();
    UseNamedHttpThreads(*server->http_, config.limits.http_threads, "txc-metrics-w");
    Coordinator* coordinator = server->coordinator_.get();
    server->http_->Get("/metrics", [coordinator](const httplib::Request&, httplib::Response& res) {
      res.set_content(coordinator->metrics().Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    std::string metrics_host = config.metrics_listen.substr(0, colon);
    if (metrics_port == 0) {
      metrics_port = server->http_->bind_to_any_port(metrics_host);
    } else if (!server->http_->bind_to_port(metrics_host, metrics_port)) {
      metrics_port = -1;
    }
    if (metrics_port <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", config.metrics_listen, " for /metrics"));
    }
    server->metrics_address_ = absl::StrCat(metrics_host, ":", metrics_port);
    server->http_thread_ = std::thread([http = server->http_.get()] {
      util::NameThisThread("txc-metrics");
      http->listen_after_bind();
    });
  }
  if (!config.console_listen.empty()) {
    absl::StatusOr<std::unique_ptr<Console>> console =
        Console::Start(config, server->server_->InProcessChannel(grpc::ChannelArguments()),
                       [coordinator = server->coordinator_.get()] { return coordinator->metrics().Render(); });
    if (!console.ok()) return console.status();
    server->console_ = *std::move(console);
  }
  if (cluster && config.adopt) {
    server->cluster_ = std::make_unique<ClusterMember>(config, server->etcd_journal_, &server->coordinator_->metrics());
    server->cluster_->Start();
    server->admin_service_->SetCluster(server->cluster_.get());
  }
  server->health_thread_ = std::thread([s = server.get()] {
    util::NameThisThread("txc-health");
    s->HealthLoop();
  });
  Log(spdlog::level::info, "",
      absl::StrCat(
          "txcoord serving on ", server->address_,
          server->metrics_address_.empty() ? ""
                                           : absl::StrCat(", metrics on http://", server->metrics_address_, "/metrics"),
          server->console_ == nullptr
              ? ""
              : absl::StrCat(", console on ", server->console_->scheme(), "://", server->console_->address(), "/")));
  return server;
}

void TxcoordServer::UpdateHealth() {
  HealthServiceImpl* health = health_service_.get();
  bool all = true;
  for (const std::string& name : coordinator_->BindNames()) {
    // A bind that cannot open its minimum is reported by its health check.
    (void)coordinator_->FindBind(name)->OpenMinimumConnections();
    bool ok = coordinator_->FindBind(name)->CheckHealth().ok();
    health->SetServingStatus("txcoord.bind." + name, ok);
    all &= ok;
  }
  // Serving means: every bind answers and the journal takes decisions (a
  // decision write that failed and could not be withdrawn, or a failed
  // write of the decision log, stops them until txcoord is restarted).
  all &= coordinator_->CommitHealth().ok();
  health->SetServingStatus("", all);
  health->SetServingStatus("txcoord.v1.SessionService", all);
  health->SetServingStatus("txcoord.v1.AdminService", true);
}

void TxcoordServer::HealthLoop() {
  for (;;) {
    UpdateHealth();
    absl::MutexLock lock(&health_mu_);
    auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(health_mu_) {
      return stopping_ || (lease_lost_ && !shutting_down_for_lease_);
    };
    health_mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Seconds(5));
    if (stopping_) return;
    if (lease_lost_ && !shutting_down_for_lease_) {
      shutting_down_for_lease_ = true;
      health_mu_.Unlock();
      UpdateHealth();  // NOT_SERVING at once
      Shutdown();
      health_mu_.Lock();
      stopped_by_itself_ = true;
      if (on_stopped_by_itself_) on_stopped_by_itself_();
    }
  }
}

void TxcoordServer::NotifyWhenStoppedByItself(std::function<void()> fn) {
  absl::MutexLock lock(&health_mu_);
  on_stopped_by_itself_ = std::move(fn);
  if (stopped_by_itself_ && on_stopped_by_itself_) on_stopped_by_itself_();
}

void TxcoordServer::Wait() {
  if (server_) server_->Wait();
}

void TxcoordServer::Shutdown() {
  if (!server_) return;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  StartCancellingAfter(deadline);
  health_service_->Shutdown();  // ends the Watch streams, which the server's Shutdown would wait for
  server_->Shutdown(absl::ToChronoTime(deadline));
}

void TxcoordServer::StartCancellingAfter(absl::Time deadline) {
  absl::MutexLock lock(&shutdown_mu_);
  if (cancelling_started_ || calls_done_) return;
  cancelling_started_ = true;
  canceller_ = std::thread([this, deadline] {
    util::NameThisThread("txc-shutdown");
    absl::MutexLock lock(&shutdown_mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(shutdown_mu_) { return calls_done_; };
    if (shutdown_mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) return;
    Log(spdlog::level::warn, "", "stopping: the grace period is over; cancelling the statements still running");
    while (!calls_done_) {
      shutdown_mu_.Unlock();
      (void)coordinator_->CancelRunningStatements();
      shutdown_mu_.Lock();
      shutdown_mu_.AwaitWithTimeout(absl::Condition(&done), absl::Milliseconds(500));
    }
  });
}

TxcoordServer::~TxcoordServer() {
  {
    absl::MutexLock lock(&health_mu_);
    stopping_ = true;
  }
  if (health_thread_.joinable()) health_thread_.join();
  if (http_) http_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  console_.reset();  // before the gRPC server its calls go to
  Shutdown();
  if (server_) server_->Wait();
  // The async services' calls still running are waited for here, while
  // the canceller may still cancel their statements.
  if (edge_) edge_->Stop();
  {
    absl::MutexLock lock(&shutdown_mu_);
    calls_done_ = true;
  }
  if (canceller_.joinable()) canceller_.join();
  server_.reset();
  edge_.reset();
  fibers_.reset();  // every call has finished; a fiber may still be ending
  health_service_.reset();
  admin_service_.reset();
  transaction_service_.reset();
  session_service_.reset();
  sessions_.reset();  // rolls back open transactions
  if (cluster_) cluster_->Stop();
  if (coordinator_) coordinator_->Stop();
  cluster_.reset();
  coordinator_.reset();
  // A clean stop lets the id go at once (settled when nothing is left).
  if (etcd_journal_ != nullptr && etcd_journal_->DecisionWriteHealth().code() != absl::StatusCode::kFailedPrecondition) {
    if (absl::Status left = etcd_journal_->Leave(); !left.ok()) {
      Log(spdlog::level::warn, "", absl::StrCat("leaving the cluster: ", left.message()));
    }
  }
  journal_.reset();
}

}  // namespace txcoord::coordinator
