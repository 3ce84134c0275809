// The admin console's HTTP endpoints (server/console.h) against a real
// txcoord: the page and its security headers, the JSON API as a gateway to
// AdminService (the same answers, refusals and status codes as the RPCs),
// and what it refuses — another origin, a body that is not JSON, no token
// or a token without the admin role, plain HTTP to its HTTPS port.
#include "server/console.h"

#include "gmock/gmock.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/auth.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/testing/pki.h"

namespace txcoord::testing {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

class ConsoleTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    CoordinatorTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    StopServer();
  }

  // txcoord with its console; `secure`: TLS and tokens ("tok-ops-…" admin,
  // "tok-orders-…" client).
  void StartWithConsole(bool secure) {
    coordinator::Config c = MakeConfig();
    c.console_listen = "127.0.0.1:0";
    if (secure) {
      pki_ = std::make_unique<Pki>(tmp_.path());
      ASSERT_TRUE(pki_->ok()) << "openssl could not make the test certificates";
      c.plaintext = false;
      c.tls.cert_file = pki_->Path("server.pem");
      c.tls.key_file = pki_->Path("server.key");
      c.auth.enabled = true;
      c.auth.token_hashes = {{coordinator::Sha256Hex("tok-orders-" + suffix_), "orders-service"},
                             {coordinator::Sha256Hex("tok-ops-" + suffix_), "ops"},
                             {coordinator::Sha256Hex("tok-audit-" + suffix_), "audit"}};
      c.auth.policies = {{"orders-service", coordinator::Role::kClient, {"pg"}},
                         {"ops", coordinator::Role::kAdmin, {"pg", "maria"}},
                         {"audit", coordinator::Role::kViewer, {}}};
    }
    auto server = coordinator::TxcoordServer::Start(c);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_NE(server_->console(), nullptr);
    const std::string& address = server_->console()->address();
    port_ = std::stoi(address.substr(address.rfind(':') + 1));
    if (!secure) {
      channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
      stub_ = v1::SessionService::NewStub(channel_);
    }
  }

  std::unique_ptr<httplib::Client> Http() {
    auto client = std::make_unique<httplib::Client>(absl::StrCat(server_->console()->scheme(), "://127.0.0.1:", port_));
    if (pki_ != nullptr) {
      client->set_ca_cert_path(pki_->Path("ca.pem"));
      client->enable_server_certificate_verification(true);
    }
    client->set_read_timeout(30, 0);
    return client;
  }

  // POSTs `body` to /api/<method>; returns the status and the JSON answer.
  std::pair<int, Json> Api(const std::string& method, const Json& body = Json::object(), const std::string& token = "",
                           httplib::Headers headers = {}) {
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = Http()->Post("/api/" + method, headers, body.dump(), "application/json");
    if (!res) return {-1, Json()};
    return {res->status, Json::parse(res->body, nullptr, /*allow_exceptions=*/false)};
  }

  std::unique_ptr<Pki> pki_;
  int port_ = 0;
};

TEST_F(ConsoleTest, ServesThePageWithItsSecurityHeaders) {
  StartWithConsole(/*secure=*/false);
  auto page = Http()->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("txcoord console"));
  EXPECT_THAT(page->get_header_value("Content-Security-Policy"), HasSubstr("default-src 'self'"));
  EXPECT_EQ(page->get_header_value("X-Frame-Options"), "DENY");
  auto script = Http()->Get("/app.js");
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_THAT(script->get_header_value("Content-Type"), HasSubstr("javascript"));
  EXPECT_THAT(script->body, HasSubstr("/api/"));
  auto none = Http()->Get("/nothing-here");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404);
}

TEST_F(ConsoleTest, TheApiAnswersAsAdminServiceDoes) {
  StartWithConsole(/*secure=*/false);
  v1::RunTransactionResponse done;
  grpc::Status st = RunWork(*stub_, {{"pg", {Debit(pg_table_, 5, 3)}}, {"maria", {Credit(my_table_, 5, 3)}}}, &done);
  ASSERT_TRUE(st.ok()) << st.error_message();

  auto [code, binds] = Api("ListBinds");
  ASSERT_EQ(code, 200) << binds.dump();
  std::vector<std::string> names;
  for (const Json& b : binds["binds"]) names.push_back(b["name"]);
  EXPECT_THAT(names, ::testing::IsSupersetOf({"pg", "maria"}));

  auto [listed_code, listed] = Api("ListTransactions", {{"states", {"COMMITTED"}}, {"page_size", 1000}});
  ASSERT_EQ(listed_code, 200) << listed.dump();
  bool found = false;
  for (const Json& t : listed["transactions"]) found = found || t["txn_id"] == done.txn_id();
  EXPECT_TRUE(found) << done.txn_id() << " not in " << listed.dump();

  auto [got_code, got] = Api("GetTransaction", {{"txn_id", done.txn_id()}});
  ASSERT_EQ(got_code, 200) << got.dump();
  EXPECT_EQ(got["state"], "COMMITTED");
  EXPECT_EQ(got["branches"].size(), 2u);
  EXPECT_TRUE(got.contains("started_at") && got.contains("decided_at")) << got.dump();

  // AdminService's refusals, with their codes.
  // The live figures' counters.
  auto [figures_code, figures] = Api("Figures");
  ASSERT_EQ(figures_code, 200) << figures.dump();
  EXPECT_GE(figures["committed"].get<double>(), 1) << figures.dump();
  ASSERT_FALSE(figures["commit_buckets"].empty()) << figures.dump();
  EXPECT_TRUE(figures["commit_buckets"].back()[0].is_null()) << "the +Inf bucket last: " << figures.dump();
  EXPECT_GE(figures["commit_buckets"].back()[1].get<double>(), 1) << figures.dump();
  EXPECT_EQ(figures["decisions_halted"], 0) << figures.dump();

  auto [missing_code, missing] = Api("GetTransaction", {{"txn_id", "nonode.1.1"}});
  EXPECT_EQ(missing_code, 404) << missing.dump();
  EXPECT_EQ(missing["code"], "NOT_FOUND");
  auto [reasonless_code, reasonless] = Api("ResolveTransaction", {{"txn_id", done.txn_id()}, {"decision", "ROLLBACK"}});
  EXPECT_EQ(reasonless_code, 400) << reasonless.dump();
  EXPECT_THAT(reasonless["message"].get<std::string>(), HasSubstr("reason is required"));
  auto [opposite_code, opposite] =
      Api("ResolveTransaction", {{"txn_id", done.txn_id()}, {"decision", "ROLLBACK"}, {"reason", "test"}});
  EXPECT_EQ(opposite_code, 409) << opposite.dump();
  EXPECT_EQ(opposite["code"], "FAILED_PRECONDITION");
  auto [recover_code, recovered] = Api("RecoverNow");
  EXPECT_EQ(recover_code, 200) << recovered.dump();
  EXPECT_TRUE(recovered.contains("redriven")) << recovered.dump();
  auto [doubt_code, doubts] = Api("ListInDoubt");
  EXPECT_EQ(doubt_code, 200) << doubts.dump();

  // What the gateway itself refuses.
  auto [unknown_code, unknown] = Api("DropEverything");
  EXPECT_EQ(unknown_code, 404) << unknown.dump();
  auto [bad_json_code, bad_json] = [&] {
    auto res = Http()->Post("/api/GetTransaction", "{\"txn_id\": ", "application/json");
    return std::pair{res ? res->status : -1, res ? res->body : ""};
  }();
  EXPECT_EQ(bad_json_code, 400) << bad_json;
  EXPECT_THAT(bad_json, HasSubstr("txcoord.v1.GetTransactionRequest"));
  auto text = Http()->Post("/api/ListBinds", "{}", "text/plain");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->status, 415);
  auto [foreign_code, foreign] = Api("ListBinds", Json::object(), "", {{"Origin", "http://evil.example"}});
  EXPECT_EQ(foreign_code, 403) << foreign.dump();
  auto [own_code, own] = Api("ListBinds", Json::object(), "", {{"Origin", absl::StrCat("http://127.0.0.1:", port_)}});
  EXPECT_EQ(own_code, 200) << own.dump();
}

TEST_F(ConsoleTest, OverHttpsTheApiRequiresTheAdminOrViewerRole) {
  StartWithConsole(/*secure=*/true);
  EXPECT_EQ(server_->console()->scheme(), "https");
  auto [anonymous, a] = Api("ListBinds");
  EXPECT_EQ(anonymous, 401) << a.dump();
  auto [wrong, w] = Api("ListBinds", Json::object(), "not-a-token");
  EXPECT_EQ(wrong, 401) << w.dump();
  auto [client, c] = Api("ListBinds", Json::object(), "tok-orders-" + suffix_);
  EXPECT_EQ(client, 403) << c.dump();
  auto [admin, ok] = Api("ListBinds", Json::object(), "tok-ops-" + suffix_);
  EXPECT_EQ(admin, 200) << ok.dump();
  // The figures too: for an admin only.
  EXPECT_EQ(Api("Figures").first, 401);
  EXPECT_EQ(Api("Figures", Json::object(), "tok-orders-" + suffix_).first, 403);
  EXPECT_EQ(Api("Figures", Json::object(), "tok-ops-" + suffix_).first, 200);
  // A viewer sees everything and changes nothing.
  const std::string audit = "tok-audit-" + suffix_;
  EXPECT_EQ(Api("ListBinds", Json::object(), audit).first, 200);
  EXPECT_EQ(Api("Figures", Json::object(), audit).first, 200);
  EXPECT_EQ(Api("ListInDoubt", Json::object(), audit).first, 200);
  EXPECT_EQ(Api("RecoverNow", Json::object(), audit).first, 403);
  EXPECT_EQ(
      Api("ResolveTransaction", Json{{"txn_id", "n.1.1"}, {"decision", "ROLLBACK"}, {"reason", "x"}}, audit).first,
      403);
  // Plain HTTP to the HTTPS port gets nothing.
  httplib::Client plain(absl::StrCat("http://127.0.0.1:", port_));
  plain.set_read_timeout(5, 0);
  auto res = plain.Post("/api/ListBinds", "{}", "application/json");
  EXPECT_TRUE(!res || res->status >= 400);
}

}  // namespace
}  // namespace txcoord::testing
