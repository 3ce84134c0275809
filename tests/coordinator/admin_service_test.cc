// AdminService, health, reflection, /metrics and txctl against a real
// coordinator and real databases.
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <sstream>

#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "httplib.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/run_command.h"
#include "tests/testing/txcoord_process.h"
#include "txcoord/v1/admin.grpc.pb.h"

#ifndef TXC_BINARY
#error "TXC_BINARY must name the txcoord binary"
#endif
#ifndef TXC_TXCTL
#error "TXC_TXCTL must name the txctl binary"
#endif

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

class AdminTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    CoordinatorTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    admin_ = v1::AdminService::NewStub(channel_);
  }
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(AdminTest, ListsAndChecksBinds) {
  grpc::ClientContext ctx;
  v1::ListBindsResponse resp;
  ASSERT_TRUE(admin_->CheckBinds(&ctx, v1::CheckBindsRequest(), &resp).ok());
  ASSERT_EQ(resp.binds_size(), 4);
  std::map<std::string, v1::BindStatus> by_name;
  for (const auto& b : resp.binds()) by_name[b.name()] = b;
  EXPECT_EQ(by_name["pg"].dialect(), "postgresql");
  EXPECT_TRUE(by_name["pg"].two_phase());
  EXPECT_EQ(by_name["maria"].dialect(), "mariadb");
  EXPECT_TRUE(by_name["maria"].two_phase());
  EXPECT_EQ(by_name["lite"].dialect(), "sqlite");
  EXPECT_FALSE(by_name["lite"].two_phase());
  for (const auto& [name, b] : by_name) {
    EXPECT_TRUE(b.reachable()) << name << ": " << b.last_error();
    EXPECT_GT(b.pool_size(), 0) << name;
  }
}

TEST_F(AdminTest, ListsTransactionsWithFiltersAndPages) {
  std::vector<std::string> committed;
  for (int i = 0; i < 3; ++i) {
    std::string s = Open();
    ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 20 + i, 1))}).ok());
    ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 20 + i, 1))}).ok());
    v1::CommitResponse c;
    ASSERT_TRUE(Commit(s, &c).ok());
    committed.push_back(c.txn_id());
  }
  std::string live = Open();
  v1::ExecuteResponse e;
  ASSERT_TRUE(Exec(live, "pg", {Sql(Debit(pg_table_, 30, 1))}, &e).ok());

  {
    grpc::ClientContext ctx;
    v1::ListTransactionsRequest req;
    v1::ListTransactionsResponse resp;
    ASSERT_TRUE(admin_->ListTransactions(&ctx, req, &resp).ok());
    std::map<std::string, v1::TransactionState> seen;
    for (const auto& t : resp.transactions()) seen[t.txn_id()] = t.state();
    EXPECT_EQ(seen[e.txn_id()], v1::ACTIVE);
    for (const auto& id : committed) EXPECT_EQ(seen[id], v1::COMMITTED) << id;
  }
  {  // Only COMMITTED, on bind maria, one per page.
    std::set<std::string> paged;
    std::string token;
    for (int page = 0; page < 10; ++page) {
      grpc::ClientContext ctx;
      v1::ListTransactionsRequest req;
      req.add_states(v1::COMMITTED);
      req.set_bind("maria");
      req.set_page_size(1);
      req.set_page_token(token);
      v1::ListTransactionsResponse resp;
      ASSERT_TRUE(admin_->ListTransactions(&ctx, req, &resp).ok());
      for (const auto& t : resp.transactions()) {
        EXPECT_EQ(t.state(), v1::COMMITTED);
        paged.insert(t.txn_id());
      }
      token = resp.next_page_token();
      if (token.empty()) break;
    }
    EXPECT_EQ(paged, std::set<std::string>(committed.begin(), committed.end()));
  }
  {
    grpc::ClientContext ctx;
    v1::ListTransactionsRequest req;
    req.set_page_token("not-a-token");
    v1::ListTransactionsResponse resp;
    EXPECT_EQ(admin_->ListTransactions(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::GetTransactionRequest req;
    req.set_txn_id(e.txn_id());
    v1::Transaction t;
    ASSERT_TRUE(admin_->GetTransaction(&ctx, req, &t).ok());
    EXPECT_EQ(t.state(), v1::ACTIVE);
    ASSERT_EQ(t.branches_size(), 1);
    EXPECT_EQ(t.branches(0).bind(), "pg");
    EXPECT_EQ(t.branches(0).state(), v1::BRANCH_ACTIVE);
  }
}

TEST_F(AdminTest, InDoubtClassifiesOrphanedAndForeignBranchesAndResolvesThem) {
  // A foreign branch (another transaction manager) and two of this node's
  // branches without a decision, prepared by hand.
  const std::string foreign = "foreign_" + suffix_;
  const std::string orphan_c = absl::StrCat("txc1_", node_id_, ".1.900001_0-pg");
  const std::string orphan_r = absl::StrCat("txc1_", node_id_, ".1.900002_0-pg");
  for (const auto& [gid, id] : {std::pair{foreign, 40}, std::pair{orphan_c, 41}, std::pair{orphan_r, 42}}) {
    pqxx::connection c(pg_uri_);
    pqxx::nontransaction n(c);
    n.exec("BEGIN");
    n.exec(Debit(pg_table_, id, 5));
    n.exec("PREPARE TRANSACTION " + n.quote(gid));
  }
  grpc::ClientContext ctx;
  v1::ListInDoubtRequest req;
  req.add_binds("pg");
  v1::ListInDoubtResponse resp;
  ASSERT_TRUE(admin_->ListInDoubt(&ctx, req, &resp).ok());
  std::map<std::string, v1::InDoubtBranch> by_xid;
  for (const auto& b : resp.branches()) by_xid[b.xid()] = b;
  ASSERT_TRUE(by_xid.count(foreign));
  EXPECT_EQ(by_xid[foreign].kind(), v1::InDoubtBranch::FOREIGN);
  EXPECT_TRUE(by_xid[foreign].txn_id().empty());
  ASSERT_TRUE(by_xid.count(orphan_c));
  EXPECT_EQ(by_xid[orphan_c].kind(), v1::InDoubtBranch::ORPHANED);
  EXPECT_EQ(by_xid[orphan_c].txn_id(), node_id_ + ".1.900001");

  auto resolve = [&](const std::string& txn, v1::ResolveTransactionRequest::Decision d, const std::string& why,
                     v1::Transaction* t) {
    grpc::ClientContext rctx;
    rctx.AddMetadata("x-txcoord-operator", "alice");
    v1::ResolveTransactionRequest r;
    r.set_txn_id(txn);
    r.set_decision(d);
    r.set_reason(why);
    return admin_->ResolveTransaction(&rctx, r, t);
  };
  v1::Transaction t;
  EXPECT_EQ(resolve(node_id_ + ".1.900001", v1::ResolveTransactionRequest::COMMIT, "", &t).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // a reason is required
  EXPECT_EQ(resolve("othernode.1.1", v1::ResolveTransactionRequest::COMMIT, "x", &t).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // never another node's
  ASSERT_TRUE(resolve(node_id_ + ".1.900001", v1::ResolveTransactionRequest::COMMIT, "ticket 42", &t).ok());
  EXPECT_EQ(t.state(), v1::COMMITTED);
  ASSERT_TRUE(resolve(node_id_ + ".1.900002", v1::ResolveTransactionRequest::ROLLBACK, "ticket 43", &t).ok());
  EXPECT_EQ(t.state(), v1::ABORTED);
  EXPECT_EQ(PgBalance(pg_uri_, 41), kInitial - 5);
  EXPECT_EQ(PgBalance(pg_uri_, 42), kInitial);
  // The opposite decision is refused now that the journal holds one.
  grpc::Status refused = resolve(node_id_ + ".1.900001", v1::ResolveTransactionRequest::ROLLBACK, "oops", &t);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("COMMIT"));
  // Who and why are in the journal.
  auto record = server_->coordinator()->journal()->Find(node_id_ + ".1.900001");
  ASSERT_TRUE(record.ok() && record->has_value());
  ASSERT_GE((*record)->resolutions_size(), 1);
  EXPECT_THAT((*record)->resolutions(0).operator_identity(), HasSubstr("alice"));
  EXPECT_EQ((*record)->resolutions(0).reason(), "ticket 42");
  RawPostgres(pg_uri_, "ROLLBACK PREPARED " + pqxx::connection(pg_uri_).quote(foreign));
}

TEST_F(AdminTest, RecoverNowAndDrain) {
  grpc::ClientContext ctx;
  v1::RecoverNowResponse r;
  ASSERT_TRUE(admin_->RecoverNow(&ctx, v1::RecoverNowRequest(), &r).ok());
  EXPECT_EQ(r.still_pending(), 0);
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 50, 1))}).ok());
  auto drain = std::async(std::launch::async, [&] {
    grpc::ClientContext dctx;
    v1::DrainRequest req;
    req.mutable_timeout()->set_seconds(10);
    v1::DrainResponse resp;
    grpc::Status st = admin_->Drain(&dctx, req, &resp);
    return std::make_pair(st, resp);
  });
  absl::SleepFor(absl::Milliseconds(300));
  // Draining: no new sessions; the one in flight may finish.
  grpc::ClientContext octx;
  v1::OpenSessionResponse oresp;
  EXPECT_EQ(stub_->OpenSession(&octx, v1::OpenSessionRequest(), &oresp).error_code(), grpc::StatusCode::UNAVAILABLE);
  ASSERT_TRUE(Commit(s).ok());
  auto [st, resp] = drain.get();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(PgBalance(pg_uri_, 50), kInitial - 1);
}

TEST_F(AdminTest, HealthAndReflectionAnswer) {
  server_->UpdateHealth();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"", "txcoord.v1.SessionService", "txcoord.bind.pg", "txcoord.bind.maria"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health->Check(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << service << ": " << s.error_message();
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  // Reflection lists the API, so standard gRPC tools can use it. (The
  // reflection messages live inside libgrpc++_reflection, so the request is
  // sent as raw bytes: field 7, list_services = "".)
  grpc::internal::RpcMethod method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                   grpc::internal::RpcMethod::BIDI_STREAMING);
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(channel_.get(), method,
                                                                                             &ctx));
  grpc::Slice request(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request_bytes(&request, 1);
  ASSERT_TRUE(stream->Write(request_bytes));
  stream->WritesDone();
  grpc::ByteBuffer response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string listed;
  for (const auto& sl : slices) listed.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_THAT(listed, HasSubstr("txcoord.v1.SessionService"));
  EXPECT_THAT(listed, HasSubstr("txcoord.v1.AdminService"));
  EXPECT_THAT(listed, HasSubstr("grpc.health.v1.Health"));
  while (stream->Read(&response)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

// A health Watch on the running server: SERVING, then, when txcoord stops,
// NOT_SERVING and the stream's end (UNAVAILABLE) — the stop does not wait
// out its 5 s grace period for the open stream.
TEST_F(AdminTest, HealthWatchIsToldWhenTxcoordStops) {
  server_->UpdateHealth();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::health::v1::HealthCheckRequest req;
  auto stream = health->Watch(&ctx, req);
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  const absl::Time start = absl::Now();
  StopServer();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4)) << "the stop waited for the Watch stream";
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

// The exposition format, parsed: every sample line is `name{labels} value`
// of a family declared by # TYPE before it; histogram buckets are
// cumulative and end with +Inf equal to _count.
TEST_F(AdminTest, MetricsEndpointServesValidPrometheusText) {
  StopServer();
  coordinator::Config c = MakeConfig();
  c.metrics_listen = "127.0.0.1:0";
  auto server = coordinator::TxcoordServer::Start(c);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  stub_ = v1::SessionService::NewStub(channel_);
  std::string s = Open();
  ASSERT_TRUE(Exec(s, "pg", {Sql(Debit(pg_table_, 60, 1))}).ok());
  ASSERT_TRUE(Exec(s, "maria", {Sql(Credit(my_table_, 60, 1))}).ok());
  ASSERT_TRUE(Commit(s).ok());

  auto colon = server_->metrics_address().rfind(':');
  httplib::Client http(server_->metrics_address().substr(0, colon),
                       std::stoi(server_->metrics_address().substr(colon + 1)));
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res) << "no answer from /metrics";
  ASSERT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain"));
  const std::string& body = res->body;
  std::map<std::string, std::string> types;
  std::map<std::string, double> samples;
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  std::istringstream in(body);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_FALSE(types.count(name)) << "family declared twice: " << name;
      types[name] = type;
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << "not a sample line: " << line;
    std::string name = m[1];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && family.size() > strlen(suffix) &&
          family.compare(family.size() - strlen(suffix), strlen(suffix), suffix) == 0) {
        family = family.substr(0, family.size() - strlen(suffix));
      }
    }
    EXPECT_TRUE(types.count(family)) << "sample before its # TYPE: " << line;
    samples[name + std::string(m[2])] = m[5] == "+Inf" ? 1e300 : std::stod(m[5]);
  }
  EXPECT_GT(lines, 10);
  EXPECT_EQ(types["txcoord_transactions_total"], "counter");
  EXPECT_EQ(types["txcoord_commit_duration_seconds"], "histogram");
  EXPECT_EQ(types["txcoord_pool_connections"], "gauge");
  EXPECT_GE(samples["txcoord_transactions_total{outcome=\"committed\"}"], 1);
  EXPECT_GE(samples["txcoord_prepares_total{bind=\"pg\",vote=\"prepared\"}"], 1);
  EXPECT_EQ(samples["txcoord_commit_duration_seconds_bucket{le=\"+Inf\"}"],
            samples["txcoord_commit_duration_seconds_count"]);
  EXPECT_GE(samples["txcoord_journal_write_duration_seconds_count"], 1);
  EXPECT_EQ(types["txcoord_branch_step_duration_seconds"], "histogram");
  for (const char* bind : {"pg", "maria"}) {
    for (const char* step : {"prepare", "commit"}) {
      EXPECT_EQ(samples[absl::StrCat("txcoord_branch_step_duration_seconds_count{bind=\"", bind, "\",step=\"", step,
                                     "\"}")],
                1)
          << bind << " " << step;
    }
  }
  EXPECT_EQ(samples["txcoord_sessions"], 1);
  EXPECT_EQ(types["txcoord_decisions_halted"], "gauge");
  EXPECT_EQ(samples.count("txcoord_decisions_halted"), 1u);
  EXPECT_EQ(samples["txcoord_decisions_halted"], 0);
  double previous = 0;
  for (const char* le : {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
                         "10", "+Inf"}) {
    double v = samples[absl::StrCat("txcoord_commit_duration_seconds_bucket{le=\"", le, "\"}")];
    EXPECT_GE(v, previous) << "buckets must be cumulative at le=" << le;
    previous = v;
  }
}

// txctl end to end on the real binary: a crash between PREPARE and the
// decision leaves prepared branches; with the orphan rollback failing (an
// injected fault), they stay in doubt until an operator resolves them.
// And a decided transaction cannot be rolled back by an operator.
class TxctlTest : public CoordinatorTest {
 protected:
  std::string WriteConfig() {
    std::string path = tmp_.Sub("txcoord.yaml");
    std::ofstream out(path);
    out << "node_id: " << node_id_ << "\nlisten: 127.0.0.1:0\nplaintext: true\njournal: {dir: " << tmp_.Sub("journal-proc") << "}\n"
        << "timeouts: {orphan_safety: 1s}\nrecovery: {interval: 200ms}\n"
        << "binds:\n  pg: {driver: postgres, dsn: \"" << pg_uri_ << "\"}\n"
        << "  maria: {driver: odbc, dsn: \"" << maria_dsn_ << "\"}\n";
    return path;
  }
  std::string Txctl(const std::string& address, const std::string& args, int* code) {
    auto [c, out] = RunCommand(absl::StrCat(TXC_TXCTL, " --address ", address, " --operator bob ", args));
    *code = c;
    return out;
  }
  // Runs a transfer on the process and returns its txn id (the process
  // crashes during the commit).
  std::string TransferUntilCrash(TxcoordProcess& p, int account) {
    auto channel = grpc::CreateChannel(p.address(), grpc::InsecureChannelCredentials());
    auto stub = v1::SessionService::NewStub(channel);
    grpc::ClientContext octx;
    v1::OpenSessionResponse o;
    EXPECT_TRUE(stub->OpenSession(&octx, v1::OpenSessionRequest(), &o).ok());
    std::string txn;
    for (const auto& [bind, sql] : {std::pair{std::string("pg"), Debit(pg_table_, account, 7)},
                                    std::pair{std::string("maria"), Credit(my_table_, account, 7)}}) {
      grpc::ClientContext ctx;
      v1::ExecuteRequest req;
      req.set_session_id(o.session_id());
      req.set_bind(bind);
      req.add_statements()->set_sql(sql);
      v1::ExecuteResponse resp;
      EXPECT_TRUE(stub->Execute(&ctx, req, &resp).ok());
      txn = resp.txn_id();
    }
    grpc::ClientContext cctx;
    v1::CommitRequest creq;
    creq.set_session_id(o.session_id());
    v1::CommitResponse cresp;
    (void)stub->Commit(&cctx, creq, &cresp);
    EXPECT_TRUE(p.WaitForCrash(10));
    return txn;
  }
};

TEST_F(TxctlTest, OperatorResolvesWhatACrashLeftInDoubt) {
  StopServer();  // this test runs the real binary instead
  TxcoordProcess p(TXC_BINARY, WriteConfig(), tmp_.path());
  ASSERT_TRUE(p.Start("commit.before_decision_logged=crash"));
  std::string orphan = TransferUntilCrash(p, 70);
  ASSERT_TRUE(p.Start("recovery.before_orphan_rollback=error"));

  int code = 0;
  std::string out = Txctl(p.address(), "in-doubt", &code);
  EXPECT_EQ(code, 7) << out;  // branches need an operator
  EXPECT_THAT(out, HasSubstr("ORPHANED"));
  EXPECT_THAT(out, HasSubstr(orphan));
  out = Txctl(p.address(), "--json in-doubt", &code);
  EXPECT_THAT(out, HasSubstr("\"kind\": \"ORPHANED\""));

  out = Txctl(p.address(), absl::StrCat("resolve ", orphan, " commit"), &code);
  EXPECT_EQ(code, 2) << "--reason is required: " << out;
  out = Txctl(p.address(), absl::StrCat("resolve ", orphan, " commit --reason 'customer confirmed'"), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("COMMITTED"));
  EXPECT_EQ(PgBalance(pg_uri_, 70), kInitial - 7);
  EXPECT_EQ(MyBalance(70), kInitial + 7);
  EXPECT_EQ(PreparedLeft(), 0);
  out = Txctl(p.address(), absl::StrCat("get ", orphan), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("COMMITTED"));
  out = Txctl(p.address(), "get nonode.1.1", &code);
  EXPECT_EQ(code, 3) << out;

  // A decided transaction whose phase 2 could not run: rollback is refused.
  ASSERT_TRUE(p.Start("commit.after_decision_logged=crash"));
  std::string decided = TransferUntilCrash(p, 71);
  ASSERT_TRUE(p.Start("recovery.before_redrive=error"));
  out = Txctl(p.address(), absl::StrCat("resolve ", decided, " rollback --reason 'try it'"), &code);
  EXPECT_EQ(code, 4) << out;
  EXPECT_THAT(out, HasSubstr("COMMIT decision"));
  out = Txctl(p.address(), "in-doubt --bind pg", &code);
  EXPECT_THAT(out, HasSubstr("DECIDED"));
  out = Txctl(p.address(), absl::StrCat("resolve ", decided, " commit --reason 'finish it'"), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(MyBalance(71), kInitial + 7);
  EXPECT_EQ(PgBalance(pg_uri_, 71), kInitial - 7);

  out = Txctl(p.address(), "check", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("postgresql"));
  // gRPC's health check, as a container's probe runs it.
  out = Txctl(p.address(), "health", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("SERVING"));
  out = Txctl(p.address(), "health --service txcoord.v1.AdminService", &code);
  EXPECT_EQ(code, 0) << out;
  out = Txctl(p.address(), "health --service no.such.Service", &code);
  EXPECT_EQ(code, 3) << out;  // NOT_FOUND
  out = Txctl(p.address(), "list --state COMMITTED", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr(decided));
  out = Txctl(p.address(), "list --state NONSENSE", &code);
  EXPECT_EQ(code, 2) << out;
  out = Txctl("127.0.0.1:1", "--rpc-timeout 2 binds", &code);
  EXPECT_EQ(code, 5) << out;  // unreachable
  p.Stop();
}

// A known password never shows in logs, errors, admin replies or metrics.
TEST_F(TxctlTest, PasswordsNeverLeak) {
  StopServer();
  const std::string secret = "S3cret-" + suffix_;
  std::string path = tmp_.Sub("secret.yaml");
  {
    std::ofstream out(path);
    out << "node_id: " << node_id_ << "\nlisten: 127.0.0.1:0\nplaintext: true\nmetrics_listen: 127.0.0.1:0\n"
        << "journal: {dir: " << tmp_.Sub("journal-secret") << "}\nlog: {format: json, level: debug}\n"
        << "binds:\n  pg: {driver: postgres, dsn: \"" << pg_uri_ << "\"}\n"
        << "  wrongpw: {driver: postgres, dsn: \"postgresql://txcoord:" << secret << "@127.0.0.1:"
        << EnvOrEmpty("TXC_PG_PORT") << "/txcoord_a\"}\n";
  }
  TxcoordProcess p(TXC_BINARY, path, tmp_.path());
  ASSERT_TRUE(p.Start());
  int code = 0;
  std::string out = Txctl(p.address(), "check", &code);
  EXPECT_EQ(code, 6) << out;  // the bind with the wrong password is unreachable
  EXPECT_THAT(out, HasSubstr("wrongpw"));
  std::string all = out + Txctl(p.address(), "--json check", &code) + Txctl(p.address(), "binds", &code);
  // A session using the bad bind: the error reaches the client.
  auto channel = grpc::CreateChannel(p.address(), grpc::InsecureChannelCredentials());
  auto stub = v1::SessionService::NewStub(channel);
  grpc::ClientContext octx;
  v1::OpenSessionResponse o;
  ASSERT_TRUE(stub->OpenSession(&octx, v1::OpenSessionRequest(), &o).ok());
  grpc::ClientContext ctx;
  v1::ExecuteRequest req;
  req.set_session_id(o.session_id());
  req.set_bind("wrongpw");
  req.add_statements()->set_sql("SELECT 1");
  v1::ExecuteResponse resp;
  grpc::Status s = stub->Execute(&ctx, req, &resp);
  EXPECT_FALSE(s.ok());
  all += s.error_message();
  p.Stop();
  std::ifstream log(p.log_path());
  std::stringstream ss;
  ss << log.rdbuf();
  all += ss.str();
  EXPECT_THAT(ss.str(), HasSubstr("wrongpw"));  // the log does talk about the bind
  EXPECT_THAT(ss.str(), HasSubstr("\"level\":"));  // JSON lines
  EXPECT_EQ(all.find(secret), std::string::npos) << "the password leaked:\n" << all;
  // The journal the binary wrote is private to its user.
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(tmp_.Sub("journal-secret"))) {
    struct stat st;
    ASSERT_EQ(::stat(entry.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 077, 0u) << entry.path() << " is readable by others";
    ++files;
  }
  EXPECT_GT(files, 3);
}

}  // namespace
}  // namespace txcoord::testing
