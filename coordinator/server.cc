#include "coordinator/server.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coordinator/service/session_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/resource_quota.h"
#include "spdlog/spdlog.h"
#include "util/status_macros.h"

namespace txcoord::coordinator {

absl::StatusOr<std::unique_ptr<TxcoordServer>> TxcoordServer::Start(const Config& config,
                                                                     Clock* clock) {
  auto server = std::unique_ptr<TxcoordServer>(new TxcoordServer());
  TXC_ASSIGN_OR_RETURN(server->journal_, journal::OpenRocksDbJournal(config.journal));
  spdlog::info("journal {} opened: node_id={} epoch={}", config.journal.dir,
               server->journal_->node_id(), server->journal_->epoch());

  std::map<std::string, std::unique_ptr<participants::Participant>> binds;
  for (const participants::BindOptions& b : config.binds) {
    auto p = participants::CreateParticipant(b);
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat("bind \"", b.name, "\": ", p.status().message()));
    }
    spdlog::info("bind {}: driver={} dialect={} two_phase={} dsn={}", b.name,
                 (*p)->capabilities().driver, (*p)->capabilities().dialect,
                 (*p)->capabilities().two_phase, RedactDsn(b.dsn));
    binds[b.name] = std::move(*p);
  }
  CoordinatorOptions options;
  options.node_id = config.node_id;
  options.timeouts = config.timeouts;
  options.recovery = config.recovery;
  options.max_rows = config.limits.max_rows;
  options.max_sql_bytes = config.limits.max_sql_bytes;
  server->coordinator_ = std::make_unique<Coordinator>(server->journal_.get(), std::move(binds),
                                                       options, clock);
  TXC_RETURN_IF_ERROR(server->coordinator_->Start());

  SessionOptions session_options;
  session_options.max_sessions = config.limits.max_sessions;
  session_options.default_idle_timeout = config.timeouts.idle;
  server->sessions_ = std::make_unique<SessionManager>(server->coordinator_.get(), session_options, clock);
  server->session_service_ =
      std::make_unique<SessionServiceImpl>(server->coordinator_.get(), server->sessions_.get());

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(config.limits.max_message_bytes);
  builder.SetMaxSendMessageSize(config.limits.max_message_bytes);
  grpc::ResourceQuota quota("txcoord");
  quota.SetMaxThreads(config.limits.server_threads);
  builder.SetResourceQuota(quota);
  builder.RegisterService(server->session_service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen));
  }
  std::vector<std::string> host_port = absl::StrSplit(config.listen, absl::MaxSplits(':', 1));
  std::string host = config.listen.substr(0, config.listen.rfind(':'));
  server->address_ = absl::StrCat(host, ":", port);
  spdlog::info("txcoord serving on {}", server->address_);
  return server;
}

void TxcoordServer::Wait() {
  if (server_) server_->Wait();
}

void TxcoordServer::Shutdown() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

TxcoordServer::~TxcoordServer() {
  Shutdown();
  if (server_) server_->Wait();
  server_.reset();
  session_service_.reset();
  sessions_.reset();  // rolls back open transactions
  if (coordinator_) coordinator_->Stop();
  coordinator_.reset();
  journal_.reset();
}

}  // namespace txcoord::coordinator
