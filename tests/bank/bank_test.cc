// The bank: accounts on two PostgreSQL databases and one MariaDB database
// (the native Connector/C driver);
// concurrent clients move money between them through txcoord while txcoord
// is SIGKILLed and restarted every few seconds. At the end, after recovery:
// the total is unchanged, no balance is negative, no prepared branch of
// this node is left, and every transfer a client was told COMMITTED is in
// the databases (each transfer logs its id in a table on the credit side;
// the clients write the ids they saw acknowledged to a file).
//
// TXC_BANK_SECONDS (default 20) sets the run time; TXC_BANK_CLIENTS (16)
// the clients; TXC_BANK_KILL_EVERY_MS (3000) the kill period. The full run:
//   TXC_BANK_SECONDS=90 build/tests/bank/bank_test   (after sourcing the env)
// Prints: bank: transfers_acked=N kills=K invariant=ok|BROKEN
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/db_checks.h"
#include "tests/testing/local_db.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/txcoord_process.h"
#include "txcoord/v1/session.grpc.pb.h"
#include "txcoord/v1/transaction.grpc.pb.h"

namespace txcoord::testing {
namespace {

namespace v1 = ::txcoord::v1;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}


std::vector<std::string> PgColumn(const std::string& uri, const std::string& sql) {
  pqxx::connection c(uri);
  pqxx::nontransaction n(c);
  std::vector<std::string> out;
  for (const auto& row : n.exec(sql)) out.push_back(row[0].as<std::string>());
  return out;
}

constexpr int kAccounts = 20;
constexpr int64_t kInitial = 1000;

// One transfer through TransactionService: the client plays two services
// that prepare their own branches on their own connections, registers them,
// and commits the global transaction. Returns true when acknowledged
// COMMITTED; *definite_abort when it surely did not commit.
bool GlobalTransfer(v1::TransactionService::Stub* txs, const std::map<std::string, std::string>& dsn,
                    const std::string& acct, const std::string& log, const std::string& from_bind, int from,
                    const std::string& to_bind, int to, int64_t amount, const std::string& id,
                    bool* definite_abort) {
  *definite_abort = true;
  auto deadline = [](grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  };
  v1::BeginGlobalResponse g;
  {
    grpc::ClientContext ctx;
    deadline(ctx);
    v1::BeginGlobalRequest req;
    req.add_binds(from_bind);
    req.add_binds(to_bind);
    req.mutable_timeout()->set_seconds(5);
    if (!txs->BeginGlobal(&ctx, req, &g).ok()) return false;
  }
  auto rollback_global = [&] {
    grpc::ClientContext ctx;
    deadline(ctx);
    v1::RollbackGlobalRequest req;
    req.set_txn_id(g.txn_id());
    v1::Transaction t;
    (void)txs->RollbackGlobal(&ctx, req, &t);
  };
  // Runs `statements` as a branch prepared under `xid`; false if a
  // statement changed no row (insufficient funds) or failed.
  auto prepare = [&](const std::string& bind, const std::string& xid, const std::vector<std::string>& statements) {
    try {
      if (bind == "maria") {
        RawOdbc my(dsn.at("maria"));
        if (!my.ok()) return false;
        std::string err;
        my.Query("XA START " + xid, 1, &err);
        for (const std::string& sql : statements) {
          my.Query(sql, 1, &err);
          auto changed = my.Query("SELECT ROW_COUNT()", 1, &err);
          if (!err.empty() || changed.empty() || changed[0] != "1") {
            my.Query("XA END " + xid, 1, &err);
            my.Query("XA ROLLBACK " + xid, 1, &err);
            return false;
          }
        }
        my.Query("XA END " + xid, 1, &err);
        my.Query("XA PREPARE " + xid, 1, &err);
        return err.empty();
      }
      pqxx::connection c(dsn.at(bind));
      pqxx::nontransaction n(c);
      n.exec("BEGIN");
      // Bounded: a lock held by a prepared branch of a killed txcoord waits
      // for its recovery, which may not come before the run ends.
      n.exec("SET LOCAL lock_timeout = '5s'");
      for (const std::string& sql : statements) {
        if (n.exec(sql).affected_rows() != 1) {
          n.exec("ROLLBACK");
          return false;
        }
      }
      n.exec("PREPARE TRANSACTION " + n.quote(xid));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  };
  std::string from_xid, to_xid;
  for (const auto& x : g.xids()) (x.bind() == from_bind ? from_xid : to_xid) = x.xid();
  bool ok = prepare(from_bind, from_xid,
                    {absl::StrCat("UPDATE ", acct, " SET balance = balance - ", amount, " WHERE id = ", from,
                                  " AND balance >= ", amount)}) &&
            prepare(to_bind, to_xid,
                    {absl::StrCat("UPDATE ", acct, " SET balance = balance + ", amount, " WHERE id = ", to),
                     absl::StrCat("INSERT INTO ", log, " VALUES ('", id, "')")});
  for (const auto& [bind, xid] : {std::pair{from_bind, from_xid}, std::pair{to_bind, to_xid}}) {
    if (!ok) break;
    grpc::ClientContext ctx;
    deadline(ctx);
    v1::RegisterBranchRequest req;
    req.set_txn_id(g.txn_id());
    req.set_bind(bind);
    req.set_xid(xid);
    v1::RegisterBranchResponse resp;
    ok = txs->RegisterBranch(&ctx, req, &resp).ok();
  }
  if (!ok) {
    rollback_global();  // prepared leftovers: rolled back here, or as orphans by recovery
    return false;
  }
  grpc::ClientContext ctx;
  deadline(ctx);
  v1::CommitGlobalRequest req;
  req.set_txn_id(g.txn_id());
  v1::Transaction t;
  grpc::Status s = txs->CommitGlobal(&ctx, req, &t);
  if (s.ok() && (t.state() == v1::COMMITTED || t.state() == v1::COMMITTING)) return true;
  *definite_abort = s.error_code() == grpc::StatusCode::ABORTED;
  return false;
}

void RunBank(bool half_on_transaction_rpcs, bool pg_last_resource = false) {
  std::string pg_uri, pg2_uri, maria_dsn;
  TXC_REQUIRE_DB_ENV(pg_uri, "TXC_PG_URI");
  TXC_REQUIRE_DB_ENV(pg2_uri, "TXC_PG2_URI");
  TXC_REQUIRE_DB_ENV(maria_dsn, "TXC_MARIADB_ODBC");
  const int seconds = EnvInt("TXC_BANK_SECONDS", 20);
  const int clients = EnvInt("TXC_BANK_CLIENTS", 16);
  const int kill_every_ms = EnvInt("TXC_BANK_KILL_EVERY_MS", 3000);

  TempDir tmp;
  std::mt19937_64 seed_rng(std::random_device{}());
  const std::string suffix = std::to_string(seed_rng() % 1000000000ull);
  const std::string node = "bank" + suffix;
  const std::string acct = "bank_acct_" + suffix, log = "bank_log_" + suffix;
  for (const std::string& uri : {pg_uri, pg2_uri}) {
    RawPostgres(uri, absl::StrCat("CREATE TABLE ", acct, " (id int PRIMARY KEY, balance bigint NOT NULL)"));
    RawPostgres(uri, absl::StrCat("INSERT INTO ", acct, " SELECT g, ", kInitial, " FROM generate_series(1, ",
                                  kAccounts, ") g"));
    RawPostgres(uri, absl::StrCat("CREATE TABLE ", log, " (transfer_id text PRIMARY KEY)"));
  }
  {
    RawOdbc my(maria_dsn);
    ASSERT_TRUE(my.ok()) << my.error();
    my.Query(absl::StrCat("CREATE TABLE ", acct, " (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"));
    for (int i = 1; i <= kAccounts; ++i) {
      my.Query(absl::StrCat("INSERT INTO ", acct, " VALUES (", i, ", ", kInitial, ")"));
    }
    my.Query(absl::StrCat("CREATE TABLE ", log, " (transfer_id VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB"));
  }
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  const std::string config = tmp.Sub("txcoord.yaml");
  {
    std::ofstream out(config);
    out << "node_id: " << node << "\nlisten: " << address << "\nplaintext: true\n"
        << "journal: {dir: " << tmp.Sub("journal") << "}\n"
        << "timeouts: {transaction: 10s, orphan_safety: 2s}\n"
        << "recovery: {interval: 500ms, backoff: {initial: 50ms, max: 1s}}\n"
        << "binds:\n"
        << "  pg: {driver: postgres, dsn: \"" << pg_uri << "\", pool: {size: 24}"
        << (pg_last_resource ? ", last_resource: true" : "") << "}\n"
        << "  pg2: {driver: postgres, dsn: \"" << pg2_uri << "\", pool: {size: 24}}\n"
        << "  maria: {driver: mariadb, dsn: \"" << maria_dsn << "\", pool: {size: 24}}\n";
  }
  TxcoordProcess txcoord(TXC_BINARY, config, tmp.path());
  ASSERT_TRUE(txcoord.Start()) << "see " << txcoord.log_path();

  std::atomic<bool> stop{false};
  std::atomic<int> kills{0}, acked{0}, aborted{0}, unknown{0}, global_acked{0};
  std::mutex ack_mu;
  std::ofstream acks(tmp.Sub("acked.txt"));
  std::atomic<bool> restart_failed{false};

  std::thread killer([&] {
    while (!stop) {
      for (int waited = 0; waited < kill_every_ms && !stop; waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (stop) break;
      txcoord.Kill();
      ++kills;
      if (!txcoord.Start()) {
        restart_failed = true;
        return;
      }
    }
  });

  const std::vector<std::string> binds = {"pg", "pg2", "maria"};
  std::vector<std::thread> workers;
  for (int c = 0; c < clients; ++c) {
    workers.emplace_back([&, c] {
      std::mt19937 rng(c * 7919 + 1);
      auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
      auto stub = v1::SessionService::NewStub(channel);
      auto txs = v1::TransactionService::NewStub(channel);
      const std::map<std::string, std::string> dsn = {{"pg", pg_uri}, {"pg2", pg2_uri}, {"maria", maria_dsn}};
      std::string session;
      auto deadline = [](grpc::ClientContext& ctx) {
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      };
      for (int n = 0; !stop; ++n) {
        if (session.empty()) {
          grpc::ClientContext ctx;
          deadline(ctx);
          v1::OpenSessionRequest req;
          req.mutable_transaction_timeout()->set_seconds(5);
          v1::OpenSessionResponse resp;
          if (!stub->OpenSession(&ctx, req, &resp).ok()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            continue;
          }
          session = resp.session_id();
        }
        int from_bind = rng() % 3, to_bind = (from_bind + 1 + rng() % 2) % 3;
        int from = 1 + rng() % kAccounts, to = 1 + rng() % kAccounts;
        int64_t amount = 1 + rng() % 50;
        std::string id = absl::StrCat("c", c, "-", n);
        if (half_on_transaction_rpcs && n % 2 == 1) {
          bool definite_abort = false;
          if (GlobalTransfer(txs.get(), dsn, acct, log, binds[from_bind], from, binds[to_bind], to, amount, id,
                             &definite_abort)) {
            ++acked;
            ++global_acked;
            std::lock_guard<std::mutex> lock(ack_mu);
            acks << id << "\n";
          } else if (definite_abort) {
            ++aborted;
          } else {
            ++unknown;
          }
          continue;
        }
        auto exec = [&](const std::string& bind, const std::string& sql, int64_t* affected) {
          grpc::ClientContext ctx;
          deadline(ctx);
          v1::ExecuteRequest req;
          req.set_session_id(session);
          req.set_bind(bind);
          req.add_statements()->set_sql(sql);
          v1::ExecuteResponse resp;
          grpc::Status s = stub->Execute(&ctx, req, &resp);
          if (affected && s.ok() && resp.results_size() > 0) *affected = resp.results(0).rows_affected();
          return s;
        };
        int64_t debited = 0;
        grpc::Status s = exec(binds[from_bind],
                              absl::StrCat("UPDATE ", acct, " SET balance = balance - ", amount, " WHERE id = ",
                                           from, " AND balance >= ", amount),
                              &debited);
        if (s.ok() && debited == 1) {
          s = exec(binds[to_bind],
                   absl::StrCat("UPDATE ", acct, " SET balance = balance + ", amount, " WHERE id = ", to), nullptr);
        }
        if (s.ok() && debited == 1) {
          s = exec(binds[to_bind], absl::StrCat("INSERT INTO ", log, " VALUES ('", id, "')"), nullptr);
        }
        if (!s.ok() || debited != 1) {
          grpc::ClientContext ctx;
          deadline(ctx);
          v1::RollbackRequest req;
          req.set_session_id(session);
          v1::RollbackResponse resp;
          grpc::Status r = stub->Rollback(&ctx, req, &resp);
          if (!s.ok() || !r.ok()) session.clear();  // reopen after a restart
          ++aborted;
          continue;
        }
        grpc::ClientContext ctx;
        deadline(ctx);
        v1::CommitRequest req;
        req.set_session_id(session);
        v1::CommitResponse resp;
        grpc::Status cs = stub->Commit(&ctx, req, &resp);
        if (cs.ok() && (resp.state() == v1::COMMITTED || resp.state() == v1::COMMITTING)) {
          ++acked;
          std::lock_guard<std::mutex> lock(ack_mu);
          acks << id << "\n";
        } else if (cs.error_code() == grpc::StatusCode::ABORTED) {
          ++aborted;
        } else {
          ++unknown;  // txcoord died during the commit: the outcome is unknown to us
          session.clear();
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  killer.join();
  acks.close();
  ASSERT_FALSE(restart_failed) << "txcoord did not restart; see " << txcoord.log_path();

  // A last restart, then recovery.
  txcoord.Kill();
  ASSERT_TRUE(txcoord.Start()) << "see " << txcoord.log_path();
  auto prepared_left = [&] { return PreparedBranchesOfNode(node, {pg_uri, pg2_uri}, maria_dsn); };

  int left = -1;
  for (int i = 0; i < 300 && (left = prepared_left()) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  int64_t total = 0, negative = 0;
  for (const std::string& uri : {pg_uri, pg2_uri}) {
    total += std::stoll(PgScalar(uri, absl::StrCat("SELECT sum(balance) FROM ", acct)));
    negative += std::stoll(PgScalar(uri, absl::StrCat("SELECT count(*) FROM ", acct, " WHERE balance < 0")));
  }
  std::set<std::string> logged;
  for (const std::string& uri : {pg_uri, pg2_uri}) {
    for (auto& id : PgColumn(uri, absl::StrCat("SELECT transfer_id FROM ", log))) logged.insert(id);
  }
  {
    RawOdbc my(maria_dsn);
    total += std::stoll(my.Query(absl::StrCat("SELECT sum(balance) FROM ", acct))[0]);
    negative += std::stoll(my.Query(absl::StrCat("SELECT count(*) FROM ", acct, " WHERE balance < 0"))[0]);
    for (auto& id : my.Query(absl::StrCat("SELECT transfer_id FROM ", log))) logged.insert(id);
  }
  int missing = 0;
  std::ifstream in(tmp.Sub("acked.txt"));
  for (std::string id; std::getline(in, id);) {
    if (!logged.count(id) && ++missing <= 5) ADD_FAILURE() << "acknowledged transfer " << id << " is missing";
  }
  const bool ok = total == 3 * kAccounts * kInitial && negative == 0 && left == 0 && missing == 0;
  std::printf("bank: mode=%s transfers_acked=%d (transaction_rpcs=%d) kills=%d aborted=%d unknown=%d invariant=%s\n",
              half_on_transaction_rpcs ? "mixed" : "sessions", acked.load(), global_acked.load(), kills.load(),
              aborted.load(), unknown.load(), ok ? "ok" : "BROKEN");
  EXPECT_EQ(total, 3 * kAccounts * kInitial);
  EXPECT_EQ(negative, 0);
  EXPECT_EQ(left, 0);
  EXPECT_EQ(missing, 0);
  EXPECT_GT(acked.load(), 0);
  EXPECT_GT(kills.load(), 0);
  if (pg_last_resource) {
    // Every decision row of this node goes once its transaction ended (after
    // the restarts too: recovery removes what a killed process left).
    std::string rows;
    for (int i = 0; i < 100; ++i) {
      rows = PgDecisionRows(pg_uri, node + ".");
      if (rows == "0") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(rows, "0") << "decision rows of " << node << " left in the last resource";
  }

  txcoord.Stop();
  for (const std::string& uri : {pg_uri, pg2_uri}) {
    RawPostgres(uri, absl::StrCat("DROP TABLE ", acct, ", ", log));
  }
  RawOdbc my(maria_dsn);
  my.Query(absl::StrCat("DROP TABLE ", acct, ", ", log));
}

TEST(BankTest, InvariantsHoldWhileTxcoordIsKilled) { RunBank(/*half_on_transaction_rpcs=*/false); }

// Half of the transfers use TransactionService: the client prepares its own
// branches and registers them.
TEST(BankTest, InvariantsHoldWithHalfTheTransfersOnTransactionRpcs) { RunBank(/*half_on_transaction_rpcs=*/true); }

// "pg" configured as last resource: every transfer touching it commits it
// locally with the decision row instead of PREPARE / COMMIT PREPARED.
TEST(BankTest, InvariantsHoldWithPostgresAsConfiguredLastResource) {
  RunBank(/*half_on_transaction_rpcs=*/false, /*pg_last_resource=*/true);
}

}  // namespace
}  // namespace txcoord::testing
