// TLS, mutual TLS, bearer tokens, roles and per-bind authorization, with
// certificates made by openssl in the test.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "gmock/gmock.h"
#include "server/auth.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/pki.h"
#include "tests/testing/run_command.h"
#include "txcoord/v1/admin.grpc.pb.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;

class SecurityTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    CoordinatorTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    StopServer();
    pki_ = std::make_unique<Pki>(tmp_.path());
    ASSERT_TRUE(pki_->ok()) << "openssl could not make the test certificates";
  }

  void StartSecure(bool mutual) {
    coordinator::Config c = MakeConfig();
    c.plaintext = false;
    c.tls.cert_file = pki_->Path("server.pem");
    c.tls.key_file = pki_->Path("server.key");
    if (mutual) c.tls.client_ca_file = pki_->Path("ca.pem");
    c.auth.enabled = true;
    c.auth.token_hashes = {{coordinator::Sha256Hex("tok-orders-" + suffix_), "orders-service"},
                           {coordinator::Sha256Hex("tok-ops-" + suffix_), "ops"},
                           {coordinator::Sha256Hex("tok-audit-" + suffix_), "audit"}};
    c.auth.policies = {{"orders-service", coordinator::Role::kClient, {"pg", "lite"}},
                       {"ops", coordinator::Role::kAdmin, {"pg"}},
                       {"audit", coordinator::Role::kViewer, {}}};
    c.limits.max_sessions_per_identity = 3;
    auto server = coordinator::TxcoordServer::Start(c);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::unique_ptr<v1::SessionService::Stub> Sessions(std::shared_ptr<grpc::ChannelCredentials> creds) {
    return v1::SessionService::NewStub(grpc::CreateChannel(server_->address(), creds));
  }
  std::unique_ptr<v1::AdminService::Stub> Admin(std::shared_ptr<grpc::ChannelCredentials> creds) {
    return v1::AdminService::NewStub(grpc::CreateChannel(server_->address(), creds));
  }
  static void Deadline(grpc::ClientContext& ctx, const std::string& token = "") {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  }
  grpc::Status OpenWith(v1::SessionService::Stub* stub, const std::string& token, std::string* id,
                        std::vector<std::string> binds = {}) {
    grpc::ClientContext ctx;
    Deadline(ctx, token);
    v1::OpenSessionRequest req;
    for (auto& b : binds) req.add_binds(b);
    v1::OpenSessionResponse resp;
    grpc::Status s = stub->OpenSession(&ctx, req, &resp);
    *id = resp.session_id();
    return s;
  }
  grpc::Status ExecWith(v1::SessionService::Stub* stub, const std::string& token, const std::string& session,
                        const std::string& bind, const std::string& sql) {
    grpc::ClientContext ctx;
    Deadline(ctx, token);
    v1::ExecuteRequest req;
    req.set_session_id(session);
    req.set_bind(bind);
    req.add_statements()->set_sql(sql);
    v1::ExecuteResponse resp;
    return stub->Execute(&ctx, req, &resp);
  }
  grpc::Status ListBindsWith(v1::AdminService::Stub* stub, const std::string& token) {
    grpc::ClientContext ctx;
    Deadline(ctx, token);
    v1::ListBindsResponse resp;
    return stub->ListBinds(&ctx, v1::ListBindsRequest(), &resp);
  }

  std::unique_ptr<Pki> pki_;
};

TEST_F(SecurityTest, TlsWithTokensAuthenticatesAndAuthorizes) {
  StartSecure(/*mutual=*/false);
  const std::string orders = "tok-orders-" + suffix_, ops = "tok-ops-" + suffix_;
  std::string id;
  // Plaintext to a TLS port: no connection.
  auto plain = Sessions(grpc::InsecureChannelCredentials());
  EXPECT_EQ(OpenWith(plain.get(), orders, &id).error_code(), grpc::StatusCode::UNAVAILABLE);

  auto tls = Sessions(pki_->Client());
  EXPECT_EQ(OpenWith(tls.get(), "", &id).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(OpenWith(tls.get(), "wrong-token", &id).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::ClientContext ctx;
    Deadline(ctx);
    ctx.AddMetadata("authorization", "Basic abc");
    v1::OpenSessionResponse resp;
    EXPECT_EQ(tls->OpenSession(&ctx, v1::OpenSessionRequest(), &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // A bind outside the policy.
  EXPECT_EQ(OpenWith(tls.get(), orders, &id, {"maria"}).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status opened = OpenWith(tls.get(), orders, &id);
  ASSERT_TRUE(opened.ok()) << opened.error_message();
  EXPECT_TRUE(ExecWith(tls.get(), orders, id, "pg", Debit(pg_table_, 1, 1)).ok());
  grpc::Status denied = ExecWith(tls.get(), orders, id, "maria", Credit(my_table_, 1, 1));
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("maria"));
  // Another identity cannot use this session.
  EXPECT_EQ(ExecWith(tls.get(), ops, id, "pg", "SELECT 1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Admin RPCs: admins only.
  auto admin = Admin(pki_->Client());
  EXPECT_EQ(ListBindsWith(admin.get(), orders).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ListBindsWith(admin.get(), "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ListBindsWith(admin.get(), ops).ok());
  // At most 3 sessions per identity (one is open).
  std::string more;
  EXPECT_TRUE(OpenWith(tls.get(), orders, &more).ok());
  EXPECT_TRUE(OpenWith(tls.get(), orders, &more).ok());
  EXPECT_EQ(OpenWith(tls.get(), orders, &more).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(OpenWith(tls.get(), ops, &more).ok()) << "the limit is per identity";
}

// The viewer role: AdminService's reads, none of its writes, and no bind.
TEST_F(SecurityTest, AViewerReadsButNeitherResolvesNorRecoversNorDrains) {
  StartSecure(/*mutual=*/false);
  const std::string audit = "tok-audit-" + suffix_, orders = "tok-orders-" + suffix_;
  auto admin = Admin(pki_->Client());
  auto ok = [&](const char* what, const std::function<grpc::Status(grpc::ClientContext*)>& call) {
    grpc::ClientContext ctx;
    Deadline(ctx, audit);
    grpc::Status st = call(&ctx);
    EXPECT_TRUE(st.ok()) << what << ": " << st.error_message();
  };
  auto denied = [&](const char* what, const std::string& token,
                    const std::function<grpc::Status(grpc::ClientContext*)>& call) {
    grpc::ClientContext ctx;
    Deadline(ctx, token);
    grpc::Status st = call(&ctx);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << what << ": " << st.error_message();
  };
  v1::ListTransactionsResponse txns;
  v1::ListInDoubtResponse doubts;
  v1::ListBindsResponse binds;
  v1::ListNodesResponse nodes;
  ok("ListTransactions", [&](auto* c) { return admin->ListTransactions(c, v1::ListTransactionsRequest(), &txns); });
  ok("ListInDoubt", [&](auto* c) { return admin->ListInDoubt(c, v1::ListInDoubtRequest(), &doubts); });
  ok("ListBinds", [&](auto* c) { return admin->ListBinds(c, v1::ListBindsRequest(), &binds); });
  ok("CheckBinds", [&](auto* c) { return admin->CheckBinds(c, v1::CheckBindsRequest(), &binds); });
  ok("ListNodes", [&](auto* c) { return admin->ListNodes(c, v1::ListNodesRequest(), &nodes); });
  v1::Transaction t;
  v1::ResolveTransactionRequest resolve;
  resolve.set_txn_id("n.1.1");
  resolve.set_decision(v1::ResolveTransactionRequest::ROLLBACK);
  resolve.set_reason("a viewer tries");
  denied("ResolveTransaction", audit, [&](auto* c) { return admin->ResolveTransaction(c, resolve, &t); });
  v1::RecoverNowResponse recovered;
  denied("RecoverNow", audit, [&](auto* c) { return admin->RecoverNow(c, v1::RecoverNowRequest(), &recovered); });
  v1::DrainResponse drained;
  denied("Drain", audit, [&](auto* c) { return admin->Drain(c, v1::DrainRequest(), &drained); });
  // A client is not a viewer.
  denied("ListInDoubt as a client", orders,
         [&](auto* c) { return admin->ListInDoubt(c, v1::ListInDoubtRequest(), &doubts); });
  // No bind in its policy: no session.
  std::string id;
  auto tls = Sessions(pki_->Client());
  EXPECT_EQ(OpenWith(tls.get(), audit, &id, {"pg"}).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

// txctl health over TLS, as a probe inside a pod runs it: to 127.0.0.1
// with the name txcoord's certificate holds (--tls-server-name); gRPC's
// health service needs no token.
TEST_F(SecurityTest, TxctlHealthProbesOverTls) {
  StartSecure(/*mutual=*/false);
  const std::string port = server_->address().substr(server_->address().rfind(':') + 1);
  auto txctl = [&](const std::string& args) {
    return RunCommand(absl::StrCat(TXC_TXCTL, " --rpc-timeout 5 --address 127.0.0.1:", port, " ", args));
  };
  const std::string ca = " --tls-ca " + pki_->Path("ca.pem");
  auto [code, out] = txctl(ca + " health");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("SERVING"));
  std::tie(code, out) = txctl(ca + " --tls-server-name localhost health");
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = txctl(ca + " --tls-server-name wrong.example health");
  EXPECT_EQ(code, 5) << out;  // the certificate does not name it: no connection
  std::tie(code, out) = txctl("health");
  EXPECT_EQ(code, 5) << out;  // plaintext to a TLS port
}

TEST_F(SecurityTest, MutualTlsTakesTheIdentityFromTheCertificate) {
  StartSecure(/*mutual=*/true);
  std::string id;
  auto orders = Sessions(pki_->Client("orders"));
  grpc::Status s = OpenWith(orders.get(), "", &id);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(ExecWith(orders.get(), "", id, "pg", "SELECT 1").ok());
  EXPECT_EQ(ExecWith(orders.get(), "", id, "maria", "SELECT 1").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ListBindsWith(Admin(pki_->Client("orders")).get(), "").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(ListBindsWith(Admin(pki_->Client("ops")).get(), "").ok());
  // No client certificate, or one from another CA: no connection.
  EXPECT_EQ(OpenWith(Sessions(pki_->Client()).get(), "", &id).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(OpenWith(Sessions(pki_->Client("intruder")).get(), "", &id).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, ConfigRefusesAnUnprotectedPortAndBadTokenFiles) {
  auto no_tls = coordinator::ParseConfig("node_id: n\nbinds: {a: {driver: postgres, dsn: x}}");
  ASSERT_FALSE(no_tls.ok());
  EXPECT_THAT(std::string(no_tls.status().message()), HasSubstr("tls"));
  auto both = coordinator::ParseConfig(
      "node_id: n\nplaintext: true\ntls: {cert: a, key: b}\nbinds: {a: {driver: postgres, dsn: x}}");
  EXPECT_FALSE(both.ok());
  auto bad_policy = coordinator::ParseConfig(
      "node_id: n\nplaintext: true\nauth: {policies: [{identity: x, role: king}]}\nbinds: {a: {driver: postgres, dsn: "
      "x}}");
  ASSERT_FALSE(bad_policy.ok());
  EXPECT_THAT(std::string(bad_policy.status().message()), HasSubstr("auth.policies[0].role"));
  std::ofstream(tmp_.Sub("tokens")) << "# comment\nnot-a-hash someone\n";
  coordinator::AuthOptions o;
  o.enabled = true;
  o.tokens_file = tmp_.Sub("tokens");
  auto a = coordinator::Authenticator::Create(o);
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("line 2"));
  // A secret from a file.
  std::ofstream(tmp_.Sub("pw")) << "from-a-file\n";
  auto from_file = coordinator::ParseConfig(absl::StrCat(
      "node_id: n\nplaintext: true\nbinds: {a: {driver: postgres, dsn: \"password=${file:", tmp_.Sub("pw"), "}\"}}"));
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->binds[0].dsn, "password=from-a-file");
}

}  // namespace
}  // namespace txcoord::testing
