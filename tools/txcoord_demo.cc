// txcoord_demo: a money transfer from a PostgreSQL account to a MariaDB
// account, committed atomically through a running txcoord, then one that
// must fail (overdraft) and is rolled back on both databases.
//
//   txcoord_demo --address 127.0.0.1:7600 [--pg pg --maria maria]
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "txcoord/v1/session.grpc.pb.h"

namespace v1 = ::txcoord::v1;

namespace {

class Demo {
 public:
  Demo(const std::string& address, std::string pg, std::string maria)
      : stub_(v1::SessionService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        pg_(std::move(pg)),
        maria_(std::move(maria)) {}

  bool Run() {
    session_ = Open();
    if (session_.empty()) return false;
    // Schema and the starting balances, each bind in its own one-phase
    // transaction. The balances are reset at every run: run again, the demo
    // starts from the same state (each run moves 25.00).
    if (!Step("create PostgreSQL table", pg_,
              "CREATE TABLE IF NOT EXISTS demo_accounts (id int PRIMARY KEY, owner text NOT NULL, "
              "balance numeric(12,2) NOT NULL CHECK (balance >= 0))") ||
        !Step("seed PostgreSQL", pg_,
              "INSERT INTO demo_accounts VALUES (1, 'alice', 100.00) "
              "ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, balance = EXCLUDED.balance") ||
        !Commit("setup PostgreSQL") ||
        // MariaDB's DDL commits implicitly and is refused inside an XA
        // transaction: its table comes from the schema step of deploy/demo.sh.
        !Step("seed MariaDB", maria_,
              "INSERT INTO demo_accounts VALUES (1, 'bob', 0.00) "
              "ON DUPLICATE KEY UPDATE owner = VALUES(owner), balance = VALUES(balance)") ||
        !Commit("setup MariaDB")) {
      return false;
    }
    ShowBalances("before");

    std::cout << "\n== transfer 25.00 from alice (PostgreSQL) to bob (MariaDB), one transaction\n";
    if (!Transfer("25.00")) return false;
    v1::CommitResponse done;
    if (!Commit("transfer", &done)) return false;
    std::cout << "   commit: " << v1::TransactionState_Name(done.state()) << " (txn " << done.txn_id() << ")\n";
    ShowRecord(done.txn_id());
    ShowBalances("after");

    std::cout << "\n== transfer 1000.00 (more than alice has): bob is credited on MariaDB, then PostgreSQL\n"
                 "   refuses the debit; the rollback undoes the credit: nothing moves\n";
    bool ok = Transfer("1000.00");
    if (ok) {
      v1::CommitResponse r;
      Commit("overdraft", &r);
    } else {
      grpc::ClientContext ctx;
      v1::RollbackRequest req;
      req.set_session_id(session_);
      v1::RollbackResponse resp;
      grpc::Status s = stub_->Rollback(&ctx, req, &resp);
      std::cout << "   rollback of " << resp.txn_id() << ": " << (s.ok() ? "OK" : s.error_message()) << "\n";
    }
    ShowBalances("after the refused transfer");
    grpc::ClientContext ctx;
    v1::CloseSessionRequest req;
    req.set_session_id(session_);
    v1::CloseSessionResponse resp;
    (void)stub_->CloseSession(&ctx, req, &resp);
    return true;
  }

 private:
  std::string Open() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::OpenSessionRequest req;
    (*req.mutable_labels())["app"] = "txcoord_demo";
    v1::OpenSessionResponse resp;
    grpc::Status s = stub_->OpenSession(&ctx, req, &resp);
    if (!s.ok()) {
      std::cerr << "demo: OpenSession: " << s.error_message() << "\n";
      return "";
    }
    return resp.session_id();
  }

  bool Step(const std::string& what, const std::string& bind, const std::string& sql,
            const std::vector<std::string>& decimals = {}, v1::ExecuteResponse* out = nullptr) {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    req.set_session_id(session_);
    req.set_bind(bind);
    auto* st = req.add_statements();
    st->set_sql(sql);
    for (const auto& d : decimals) st->add_params()->set_decimal_value(d);
    v1::ExecuteResponse resp;
    grpc::Status s = stub_->Execute(&ctx, req, out ? out : &resp);
    if (!s.ok()) {
      std::cout << "   " << what << " on " << bind << ": " << StatusName(s) << ": " << s.error_message() << "\n";
      return false;
    }
    return true;
  }

  // Credits bob on MariaDB first, then debits alice on PostgreSQL, so that
  // a refused debit shows the MariaDB credit being undone too.
  bool Transfer(const std::string& amount) {
    return Step("credit bob", maria_, "UPDATE demo_accounts SET balance = balance + ? WHERE id = 1", {amount}) &&
           Step("debit alice", pg_, "UPDATE demo_accounts SET balance = balance - $1::numeric WHERE id = 1",
                {amount});
  }

  bool Commit(const std::string& what, v1::CommitResponse* out = nullptr) {
    grpc::ClientContext ctx;
    v1::CommitRequest req;
    req.set_session_id(session_);
    v1::CommitResponse resp;
    grpc::Status s = stub_->Commit(&ctx, req, out ? out : &resp);
    if (!s.ok()) {
      std::cout << "   " << what << ": commit " << StatusName(s) << ": " << s.error_message() << "\n";
      return false;
    }
    return true;
  }

  void ShowBalances(const std::string& when) {
    v1::ExecuteResponse a, b;
    Step("read", pg_, "SELECT owner, balance FROM demo_accounts WHERE id = 1", {}, &a);
    Step("read", maria_, "SELECT owner, balance FROM demo_accounts WHERE id = 1", {}, &b);
    Commit("read");
    auto cell = [](const v1::ExecuteResponse& r, int col) -> std::string {
      if (r.results_size() == 0 || r.results(0).rows_size() == 0) return "?";
      const v1::Value& v = r.results(0).rows(0).values(col);
      if (v.has_decimal_value()) return v.decimal_value();
      if (v.has_string_value()) return v.string_value();
      if (v.has_double_value()) return std::to_string(v.double_value());
      return v.ShortDebugString();
    };
    std::cout << "   balances " << when << ": " << cell(a, 0) << "@PostgreSQL=" << cell(a, 1) << "  "
              << cell(b, 0) << "@MariaDB=" << cell(b, 1) << "\n";
  }

  void ShowRecord(const std::string& txn_id) {
    grpc::ClientContext ctx;
    v1::GetTransactionRequest req;
    req.set_txn_id(txn_id);
    v1::Transaction t;
    grpc::Status s = stub_->GetTransaction(&ctx, req, &t);
    if (!s.ok()) {
      std::cout << "   GetTransaction: " << s.error_message() << "\n";
      return;
    }
    std::cout << "   journal record: txn " << t.txn_id() << " state " << v1::TransactionState_Name(t.state())
              << "\n";
    for (const auto& b : t.branches()) {
      std::cout << "     branch bind=" << b.bind() << " xid=" << b.xid()
                << " state=" << v1::BranchState_Name(b.state()) << " attempts=" << b.attempts() << "\n";
    }
  }

  static std::string StatusName(const grpc::Status& s) {
    static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                  "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    int c = s.error_code();
    return c >= 0 && c <= 16 ? names[c] : std::to_string(c);
  }

  std::unique_ptr<v1::SessionService::Stub> stub_;
  std::string pg_, maria_, session_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"txcoord_demo: an atomic transfer from PostgreSQL to MariaDB"};
  std::string address = "127.0.0.1:7600", pg = "pg", maria = "maria";
  app.add_option("--address", address, "txcoord's gRPC address");
  app.add_option("--pg", pg, "the PostgreSQL bind");
  app.add_option("--maria", maria, "the MariaDB bind");
  CLI11_PARSE(app, argc, argv);
  Demo demo(address, pg, maria);
  return demo.Run() ? 0 : 1;
}
