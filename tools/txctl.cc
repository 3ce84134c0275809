// txctl: the operator's command line for a running txcoord (AdminService).
//
//   txctl [--address HOST:PORT] [--json] [--operator NAME]
//         [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem] [--tls-server-name NAME]]
//         [--token T] COMMAND ...
//     list [--state S]... [--bind B] [--older-than 10m] [--page-size N] [--page-token T]
//     get TXN_ID
//     in-doubt [--bind B]...
//     resolve TXN_ID commit|rollback --reason "why"
//     binds | check | recover | drain [--timeout 30s] | nodes
//     health [--service NAME]   gRPC's health check (a container's probe)
//
// Exit codes (scripts may rely on them):
//   0 success; 1 any other error; 2 usage error; 3 not found;
//   4 refused (FAILED_PRECONDITION: e.g. the journal holds the opposite decision);
//   5 txcoord unreachable (UNAVAILABLE / DEADLINE_EXCEEDED);
//   6 `check`: a bind is unreachable;  7 `in-doubt`: branches need an operator
//     (orphaned or foreign ones are listed);  8 `health`: not SERVING.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "txcoord/v1/admin.grpc.pb.h"

namespace v1 = ::txcoord::v1;

namespace {

int ExitCodeFor(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK: return 0;
    case grpc::StatusCode::INVALID_ARGUMENT: return 2;
    case grpc::StatusCode::NOT_FOUND: return 3;
    case grpc::StatusCode::FAILED_PRECONDITION: return 4;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 5;
    default: return 1;
  }
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out;
}

// A plain text table: column widths from the widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out += std::string(w[i] - cells[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  if (rows.empty()) std::cout << "(none)\n";
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos()),
                          absl::UTCTimeZone());
}

std::string Dur(const google::protobuf::Duration& d) {
  return absl::FormatDuration(absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos()));
}

std::string StateName(int s) { return v1::TransactionState_Name(static_cast<v1::TransactionState>(s)); }

void PrintTransaction(const v1::Transaction& t) {
  std::cout << "txn        " << t.txn_id() << "\n"
            << "state      " << StateName(t.state()) << "\n"
            << "started    " << Time(t.started_at()) << "\n"
            << "decided    " << Time(t.decided_at()) << "\n"
            << "finished   " << Time(t.finished_at()) << "\n";
  if (!t.session_id().empty()) std::cout << "session    " << t.session_id() << "\n";
  if (!t.abort_reason().empty()) std::cout << "reason     " << t.abort_reason() << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : t.branches()) {
    rows.push_back({b.bind(), b.xid(), v1::BranchState_Name(b.state()), std::to_string(b.attempts()),
                    b.last_resource() ? "yes" : "no", b.last_error()});
  }
  std::cout << "\n";
  PrintTable({"BIND", "XID", "STATE", "ATTEMPTS", "LAST_RESOURCE", "LAST_ERROR"}, rows);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"txctl: inspect and repair a running txcoord"};
  app.set_version_flag("--version", "txctl " TXC_VERSION);
  app.require_subcommand(1);
  std::string address = "127.0.0.1:7600", operator_name;
  bool json = false;
  double timeout_s = 30;
  app.add_option("--address,-a", address, "txcoord's gRPC address")->envname("TXCTL_ADDRESS");
  app.add_flag("--json", json, "print JSON instead of tables");
  app.add_option("--operator", operator_name, "your name, journaled with resolutions")->envname("USER");
  app.add_option("--rpc-timeout", timeout_s, "seconds to wait for txcoord");
  std::string tls_ca, tls_cert, tls_key, tls_server_name, token;
  app.add_option("--tls-ca", tls_ca, "PEM CA that signed txcoord's certificate (TLS on)")->envname("TXCTL_TLS_CA");
  app.add_option("--tls-cert", tls_cert, "PEM client certificate (mutual TLS)")->envname("TXCTL_TLS_CERT");
  app.add_option("--tls-key", tls_key, "PEM client key (mutual TLS)")->envname("TXCTL_TLS_KEY");
  app.add_option("--tls-server-name", tls_server_name,
                 "the name txcoord's certificate must hold, when it is not the address's host (a probe on 127.0.0.1)")
      ->envname("TXCTL_TLS_SERVER_NAME");
  app.add_option("--token", token, "bearer token")->envname("TXCTL_TOKEN");

  auto* list = app.add_subcommand("list", "list transactions (live, unfinished, then history)");
  std::vector<std::string> states;
  std::string bind, older_than, page_token;
  int page_size = 50;
  list->add_option("--state", states, "ACTIVE, PREPARING, COMMITTING, COMMITTED, ABORTING, ABORTED, HEURISTIC");
  list->add_option("--bind", bind, "only transactions with a branch on this bind");
  list->add_option("--older-than", older_than, "only transactions older than this (e.g. 10m)");
  list->add_option("--page-size", page_size, "at most this many");
  list->add_option("--page-token", page_token, "the next_page_token of the previous page");

  auto* get = app.add_subcommand("get", "one transaction, with its branches");
  std::string txn_id;
  get->add_option("txn_id", txn_id)->required();

  auto* in_doubt = app.add_subcommand("in-doubt", "prepared branches on the binds, matched against the journal");
  std::vector<std::string> binds;
  in_doubt->add_option("--bind", binds, "only these binds");

  auto* resolve = app.add_subcommand("resolve", "commit or roll back an in-doubt transaction");
  std::string decision, reason;
  resolve->add_option("txn_id", txn_id)->required();
  resolve->add_option("decision", decision, "commit or rollback")->required()->check(CLI::IsMember({"commit", "rollback"}));
  resolve->add_option("--reason", reason, "why (journaled with --operator)")->required();

  auto* binds_cmd = app.add_subcommand("binds", "the configured binds and their pools");
  auto* check = app.add_subcommand("check", "check every bind: reachable, latency");
  auto* recover = app.add_subcommand("recover", "run a recovery pass now");
  auto* drain = app.add_subcommand("drain", "stop taking sessions; wait for transactions in flight");
  std::string drain_timeout = "30s";
  drain->add_option("--timeout", drain_timeout, "how long to wait");
  auto* nodes = app.add_subcommand("nodes", "the cluster's nodes: epochs, leases, adoptions");
  auto* health =
      app.add_subcommand("health",
                         "gRPC's health check: exit 0 when SERVING (\"\": every bind and the journal answer; "
                         "txcoord.v1.AdminService: the process serves)");
  std::string health_service;
  health->add_option("--service", health_service, "the health service name (default \"\")");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is 0; every usage error is 2
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!tls_ca.empty()) {
    auto read = [](const std::string& path) {
      std::ifstream in(path);
      std::stringstream ss;
      ss << in.rdbuf();
      return ss.str();
    };
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = read(tls_ca);
    if (!tls_cert.empty()) o.pem_cert_chain = read(tls_cert);
    if (!tls_key.empty()) o.pem_private_key = read(tls_key);
    if (o.pem_root_certs.empty()) {
      std::cerr << "txctl: --tls-ca: cannot read " << tls_ca << "\n";
      return 2;
    }
    credentials = grpc::SslCredentials(o);
  }
  grpc::ChannelArguments channel_args;
  if (!tls_server_name.empty()) channel_args.SetSslTargetNameOverride(tls_server_name);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(address, credentials, channel_args);
  auto stub = v1::AdminService::NewStub(channel);
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000)));
  if (!operator_name.empty()) ctx.AddMetadata("x-txcoord-operator", operator_name);
  auto fail = [&](const grpc::Status& s) {
    std::cerr << "txctl: " << s.error_message() << " (" << s.error_code() << ")\n";
    return ExitCodeFor(s);
  };
  auto duration = [](const std::string& text, google::protobuf::Duration* out) {
    absl::Duration d;
    if (!absl::ParseDuration(text, &d)) return false;
    out->set_seconds(absl::ToInt64Seconds(d));
    out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d % absl::Seconds(1))));
    return true;
  };

  if (*health) {
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(health_service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = grpc::health::v1::Health::NewStub(channel)->Check(&ctx, req, &resp);
    if (!s.ok()) return fail(s);
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
    return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 8;
  }
  if (*list) {
    v1::ListTransactionsRequest req;
    for (const std::string& s : states) {
      v1::TransactionState st;
      if (!v1::TransactionState_Parse(s, &st)) {
        std::cerr << "txctl: unknown state " << s << "\n";
        return 2;
      }
      req.add_states(st);
    }
    req.set_bind(bind);
    if (!older_than.empty() && !duration(older_than, req.mutable_older_than())) {
      std::cerr << "txctl: --older-than: not a duration (like 10m)\n";
      return 2;
    }
    req.set_page_size(page_size);
    req.set_page_token(page_token);
    v1::ListTransactionsResponse resp;
    grpc::Status s = stub->ListTransactions(&ctx, req, &resp);
    if (!s.ok()) return fail(s);
    if (json) {
      PrintJson(resp);
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : resp.transactions()) {
      std::string b;
      for (const auto& br : t.branches()) b += (b.empty() ? "" : ",") + br.bind();
      rows.push_back({t.txn_id(), StateName(t.state()), Time(t.started_at()), Time(t.finished_at()), b});
    }
    PrintTable({"TXN", "STATE", "STARTED", "FINISHED", "BINDS"}, rows);
    if (!resp.next_page_token().empty()) std::cout << "next page: --page-token " << resp.next_page_token() << "\n";
    return 0;
  }
  if (*get) {
    v1::GetTransactionRequest req;
    req.set_txn_id(txn_id);
    v1::Transaction t;
    grpc::Status s = stub->GetTransaction(&ctx, req, &t);
    if (!s.ok()) return fail(s);
    json ? PrintJson(t) : PrintTransaction(t);
    return 0;
  }
  if (*in_doubt) {
    v1::ListInDoubtRequest req;
    for (const auto& b : binds) req.add_binds(b);
    v1::ListInDoubtResponse resp;
    grpc::Status s = stub->ListInDoubt(&ctx, req, &resp);
    if (!s.ok()) return fail(s);
    bool needs_operator = false;
    std::vector<std::vector<std::string>> rows;
    for (const auto& b : resp.branches()) {
      // A peer's branch is its node's to finish (listed there as DECIDED or ORPHANED).
      needs_operator |= b.kind() != v1::InDoubtBranch::DECIDED && b.kind() != v1::InDoubtBranch::PEER;
      rows.push_back({b.bind(), b.xid(), b.txn_id().empty() ? "-" : b.txn_id(), v1::InDoubtBranch::Kind_Name(b.kind()),
                      b.node_id().empty() ? "-" : b.node_id(), b.has_age() ? Dur(b.age()) : "?"});
    }
    json ? PrintJson(resp) : PrintTable({"BIND", "XID", "TXN", "KIND", "NODE", "AGE"}, rows);
    return needs_operator ? 7 : 0;
  }
  if (*resolve) {
    v1::ResolveTransactionRequest req;
    req.set_txn_id(txn_id);
    req.set_decision(decision == "commit" ? v1::ResolveTransactionRequest::COMMIT
                                          : v1::ResolveTransactionRequest::ROLLBACK);
    req.set_reason(reason);
    v1::Transaction t;
    grpc::Status s = stub->ResolveTransaction(&ctx, req, &t);
    if (!s.ok()) return fail(s);
    json ? PrintJson(t) : PrintTransaction(t);
    return 0;
  }
  if (*binds_cmd || *check) {
    v1::ListBindsResponse resp;
    grpc::Status s = *check ? stub->CheckBinds(&ctx, v1::CheckBindsRequest(), &resp)
                            : stub->ListBinds(&ctx, v1::ListBindsRequest(), &resp);
    if (!s.ok()) return fail(s);
    bool all_up = true;
    std::vector<std::vector<std::string>> rows;
    for (const auto& b : resp.binds()) {
      all_up &= b.reachable();
      rows.push_back({b.name(), b.driver(), b.dialect(), !b.two_phase() ? "last-resource" : b.last_resource() ? "2pc, last resource first" : "2pc",
                      absl::StrCat(b.pool_in_use(), "/", b.pool_size()),
                      *check ? (b.reachable() ? "yes" : "NO") : "-", *check ? Dur(b.latency()) : "-",
                      b.last_error()});
    }
    json ? PrintJson(resp)
         : PrintTable({"BIND", "DRIVER", "DIALECT", "COMMIT", "POOL", "REACHABLE", "LATENCY", "ERROR"}, rows);
    return *check && !all_up ? 6 : 0;
  }
  if (*recover) {
    v1::RecoverNowResponse resp;
    grpc::Status s = stub->RecoverNow(&ctx, v1::RecoverNowRequest(), &resp);
    if (!s.ok()) return fail(s);
    if (json) {
      PrintJson(resp);
    } else {
      std::cout << "redriven=" << resp.redriven() << " orphans_rolled_back=" << resp.orphans_rolled_back()
                << " still_pending=" << resp.still_pending() << "\n";
    }
    return 0;
  }
  if (*drain) {
    v1::DrainRequest req;
    if (!duration(drain_timeout, req.mutable_timeout())) {
      std::cerr << "txctl: --timeout: not a duration\n";
      return 2;
    }
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(req.timeout().seconds() + 10));
    v1::DrainResponse resp;
    grpc::Status s = stub->Drain(&ctx, req, &resp);
    if (!s.ok()) return fail(s);
    json ? PrintJson(resp) : (void)(std::cout << "sessions_left=" << resp.sessions_left() << "\n");
    return 0;
  }
  if (*nodes) {
    v1::ListNodesResponse resp;
    grpc::Status s = stub->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
    if (!s.ok()) return fail(s);
    if (json) {
      PrintJson(resp);
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& n : resp.nodes()) {
      std::string state = n.epoch() == 0 ? (n.settled() ? "down, settled" : "DOWN, to adopt")
                          : !n.adopted_by().empty() ? "being adopted"
                                                    : "up";
      rows.push_back(
          {absl::StrCat(n.node_id(), n.self() ? " (this)" : ""), state, n.epoch() == 0 ? "-" : absl::StrCat(n.epoch()),
           n.lease_id() == 0 ? "-" : absl::StrCat(absl::Hex(n.lease_id())), n.holder().empty() ? "-" : n.holder(),
           n.address().empty() ? "-" : n.address(), absl::StrCat(n.unfinished_decisions())});
    }
    std::cout << "backend: " << resp.backend() << "\n";
    PrintTable({"NODE", "STATE", "EPOCH", "LEASE", "HELD BY", "ADDRESS", "UNFINISHED"}, rows);
    if (resp.adoptions_size() > 0) {
      std::cout << "\nadoptions by this node (newest first):\n";
      std::vector<std::vector<std::string>> done;
      for (const auto& a : resp.adoptions()) {
        done.push_back({a.node_id(), absl::StrCat(a.epoch()), a.settled() ? "settled" : "NOT settled", Dur(a.took()),
                        absl::StrCat(a.redriven(), "/", a.decided_committed(), "/", a.orphans_rolled_back()),
                        a.error()});
      }
      PrintTable({"NODE", "EPOCH", "RESULT", "TOOK", "REDRIVEN/COMMITTED/ROLLED BACK", "ERROR"}, done);
    }
    return 0;
  }
  return 2;
}
