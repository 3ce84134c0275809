// txc_branch_service: a stand-in for a microservice that owns its database,
// run as its own process by transaction_service_test. It prepares one
// branch of a global transaction on its own connection, under the xid
// txcoord minted, registers it, and may then commit the global transaction.
//
//   txc_branch_service --target ADDR --txn ID --bind NAME --xid XID
//                      (--pg URI | --odbc DSN) --sql SQL
//                      [--stop-after prepare|register] [--commit-when FILE]
//
// Progress goes to stdout, one line each: "prepared", "registered",
// "committed <STATE>" (or "commit-failed <code> <message>"). With
// --stop-after the process then waits (at most 60 s) to be killed. With
// --commit-when it waits (at most 30 s) for FILE to exist, then calls
// CommitGlobal. Exit status 0 on success, 1 on any error (on stderr).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "tests/participants/raw_clients.h"
#include "txcoord/v1/transaction.grpc.pb.h"

namespace {

int Fail(const std::string& why) {
  std::cerr << "txc_branch_service: " << why << std::endl;
  return 1;
}

void Say(const std::string& line) { std::cout << line << std::endl; }

}  // namespace

int main(int argc, char** argv) {
  std::string target, txn, bind, xid, pg, odbc, sql, stop_after, commit_when;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--target") target = v;
    else if (k == "--txn") txn = v;
    else if (k == "--bind") bind = v;
    else if (k == "--xid") xid = v;
    else if (k == "--pg") pg = v;
    else if (k == "--odbc") odbc = v;
    else if (k == "--sql") sql = v;
    else if (k == "--stop-after") stop_after = v;
    else if (k == "--commit-when") commit_when = v;
    else return Fail("unknown argument " + k);
  }
  if (target.empty() || txn.empty() || bind.empty() || xid.empty() || sql.empty() || pg.empty() == odbc.empty()) {
    return Fail("need --target --txn --bind --xid --sql and one of --pg/--odbc");
  }
  // The service's own work, prepared on its own connection.
  try {
    if (!pg.empty()) {
      pqxx::connection c(pg);
      pqxx::nontransaction n(c);
      n.exec("BEGIN");
      n.exec(sql);
      n.exec("PREPARE TRANSACTION " + n.quote(xid));
    } else {
      txcoord::testing::RawOdbc my(odbc);
      if (!my.ok()) return Fail("ODBC connect: " + my.error());
      for (const std::string& q : {"XA START " + xid, sql, "XA END " + xid, "XA PREPARE " + xid}) {
        std::string err;
        my.Query(q, 1, &err);
        if (!err.empty()) return Fail(q + ": " + err);
      }
    }
  } catch (const std::exception& e) {
    return Fail(std::string("PostgreSQL: ") + e.what());
  }
  Say("prepared");
  auto park = [] {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // the test kills us before
    return Fail("was not killed");
  };
  if (stop_after == "prepare") return park();

  auto stub = txcoord::v1::TransactionService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    txcoord::v1::RegisterBranchRequest req;
    req.set_txn_id(txn);
    req.set_bind(bind);
    req.set_xid(xid);
    txcoord::v1::RegisterBranchResponse resp;
    grpc::Status s = stub->RegisterBranch(&ctx, req, &resp);
    if (!s.ok()) return Fail("RegisterBranch: " + s.error_message());
  }
  Say("registered");
  if (stop_after == "register") return park();
  if (commit_when.empty()) return 0;

  for (int i = 0; i < 300 && !std::filesystem::exists(commit_when); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!std::filesystem::exists(commit_when)) return Fail("gave up waiting for " + commit_when);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  txcoord::v1::CommitGlobalRequest req;
  req.set_txn_id(txn);
  txcoord::v1::Transaction resp;
  grpc::Status s = stub->CommitGlobal(&ctx, req, &resp);
  if (!s.ok()) {
    Say("commit-failed " + std::to_string(s.error_code()) + " " + s.error_message());
    return 1;
  }
  Say("committed " + txcoord::v1::TransactionState_Name(resp.state()));
  return 0;
}
