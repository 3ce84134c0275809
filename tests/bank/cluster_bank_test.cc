// The bank in cluster mode: three txcoord processes on the real etcd of
// deploy/local/start.sh (journal.backend: etcd), clients on all of them
// moving money between two PostgreSQL databases and MariaDB with
// RunTransaction. One node is SIGKILLed and its data directory deleted; a
// survivor adopts it; later it is restarted empty and serves again.
// Invariant: the total is unchanged, every acknowledged transfer is in the
// databases, and the dead node's prepared branches are gone within the
// lease TTL + 5 s of the kill.
//
// Also: a node paused past its TTL is adopted, its late decision refused
// (it stops with exit code 75 when it wakes), and a second process with a
// node id that is held never starts deciding.
//
// TXC_CLUSTER_BANK_SECONDS (default 15) sets the run time;
// TXC_CLUSTER_BANK_CLIENTS (9) the clients.
// Prints: cluster-bank: nodes=3 transfers_acked=N node_losses=K adopted=K invariant=ok|BROKEN
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/db_checks.h"
#include "tests/testing/etcd_cluster.h"
#include "tests/testing/local_db.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/txcoord_process.h"
#include "txcoord/v1/admin.grpc.pb.h"
#include "txcoord/v1/session.grpc.pb.h"

namespace txcoord::testing {
namespace {

namespace v1 = ::txcoord::v1;
using Clock = std::chrono::steady_clock;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

constexpr int kAccounts = 20;
constexpr int64_t kInitial = 1000;
constexpr int kLeaseTtlSeconds = 3;

class ClusterBankTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TXC_REQUIRE_DB_ENV(etcd_, "TXC_ETCD_ENDPOINTS");
    TXC_REQUIRE_DB_ENV(pg_, "TXC_PG_URI");
    TXC_REQUIRE_DB_ENV(pg2_, "TXC_PG2_URI");
    TXC_REQUIRE_DB_ENV(maria_, "TXC_MARIADB_ODBC");
    suffix_ = std::to_string(std::random_device{}() % 1000000000u);
    acct_ = "cbank_acct_" + suffix_;
    log_ = "cbank_log_" + suffix_;
    for (const std::string& uri : {pg_, pg2_}) {
      RawPostgres(uri, absl::StrCat("CREATE TABLE ", acct_, " (id int PRIMARY KEY, balance bigint NOT NULL)"));
      RawPostgres(uri, absl::StrCat("INSERT INTO ", acct_, " SELECT g, ", kInitial, " FROM generate_series(1, ",
                                    kAccounts, ") g"));
      RawPostgres(uri, absl::StrCat("CREATE TABLE ", log_, " (transfer_id text PRIMARY KEY)"));
    }
    RawOdbc my(maria_);
    ASSERT_TRUE(my.ok()) << my.error();
    my.Query(absl::StrCat("CREATE TABLE ", acct_, " (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"));
    for (int i = 1; i <= kAccounts; ++i) my.Query(absl::StrCat("INSERT INTO ", acct_, " VALUES (", i, ", ", kInitial, ")"));
    my.Query(absl::StrCat("CREATE TABLE ", log_, " (transfer_id VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB"));
  }

  void TearDown() override {
    if (acct_.empty() || pg_.empty()) return;
    for (const std::string& uri : {pg_, pg2_}) RawPostgres(uri, absl::StrCat("DROP TABLE IF EXISTS ", acct_, ", ", log_));
    RawOdbc my(maria_);
    my.Query(absl::StrCat("DROP TABLE IF EXISTS ", acct_, ", ", log_));
  }

  std::string NodeId(int i) const { return absl::StrCat("cb", suffix_, "-", i); }

  // Writes node i's config into `dir` (created) and returns its path.
  // `acquire_timeout`: how long a start waits for a held node id.
  std::string WriteConfig(int i, const std::string& dir, const std::string& acquire_timeout = "30s",
                          int lease_ttl = kLeaseTtlSeconds) {
    std::filesystem::create_directories(dir);
    const std::string path = dir + "/txcoord.yaml";
    std::ofstream out(path);
    out << "node_id: " << NodeId(i) << "\nlisten: 127.0.0.1:0\nplaintext: true\n"
        << "journal:\n  backend: etcd\n  etcd:\n    cluster: cbank" << suffix_ << "\n"
        << "    lease_ttl: " << lease_ttl << "s\n    call_timeout: 2s\n    acquire_timeout: " << acquire_timeout << "\n"
        << "    endpoints: [";
    std::vector<std::string> eps = absl::StrSplit(etcd_, ',');
    for (size_t e = 0; e < eps.size(); ++e) out << (e ? ", " : "") << "\"" << eps[e] << "\"";
    out << "]\n"
        << "timeouts: {transaction: 10s, orphan_safety: 2s}\n"
        << "recovery: {interval: 500ms, backoff: {initial: 50ms, max: 1s}}\n"
        << "binds:\n"
        << "  pg: {driver: postgres, dsn: \"" << pg_ << "\", pool: {size: 16}}\n"
        << "  pg2: {driver: postgres, dsn: \"" << pg2_ << "\", pool: {size: 16}}\n"
        << "  maria: {driver: odbc, dsn: \"" << maria_ << "\", pool: {size: 16}}\n";
    return path;
  }

  int PreparedOf(const std::string& node) { return PreparedBranchesOfNode(node, {pg_, pg2_}, maria_); }

  // The sum of every balance, and the transfer ids logged.
  int64_t Total(std::set<std::string>* logged) {
    int64_t total = 0;
    for (const std::string& uri : {pg_, pg2_}) {
      total += std::stoll(PgScalar(uri, absl::StrCat("SELECT sum(balance) FROM ", acct_)));
      pqxx::connection c(uri);
      pqxx::nontransaction n(c);
      for (const auto& row : n.exec(absl::StrCat("SELECT transfer_id FROM ", log_))) logged->insert(row[0].c_str());
    }
    RawOdbc my(maria_);
    total += std::stoll(my.Query(absl::StrCat("SELECT sum(balance) FROM ", acct_))[0]);
    for (auto& id : my.Query(absl::StrCat("SELECT transfer_id FROM ", log_))) logged->insert(id);
    return total;
  }

  // One transfer as RunTransaction on `address`: OK (acknowledged),
  // ABORTED, or another code (unknown outcome, or not run).
  // `lane` >= 0: only accounts lane*5+1 … lane*5+5, so that clients in
  // different lanes never wait for each other's row locks (two transfers
  // locking the same rows in two databases in opposite orders wait for each
  // other until a timeout: no database sees that deadlock).
  grpc::StatusCode Transfer(const std::string& address, const std::string& id, std::mt19937& rng,
                            bool keyed = true, int lane = -1) {
    static const char* kBinds[] = {"pg", "pg2", "maria"};
    const int from_bind = rng() % 3, to_bind = (from_bind + 1 + rng() % 2) % 3;
    const int span = lane >= 0 ? 5 : kAccounts, base = lane >= 0 ? lane * 5 : 0;
    const int from = base + 1 + rng() % span, to = base + 1 + rng() % span;
    const int64_t amount = 1 + rng() % 50;
    auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    auto stub = v1::SessionService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RunTransactionRequest req;
    if (keyed) req.set_idempotency_key(id);
    auto* debit = req.add_work();
    debit->set_bind(kBinds[from_bind]);
    debit->add_statements()->set_sql(
        absl::StrCat("UPDATE ", acct_, " SET balance = balance - ", amount, " WHERE id = ", from));
    auto* credit = req.add_work();
    credit->set_bind(kBinds[to_bind]);
    credit->add_statements()->set_sql(
        absl::StrCat("UPDATE ", acct_, " SET balance = balance + ", amount, " WHERE id = ", to));
    credit->add_statements()->set_sql(absl::StrCat("INSERT INTO ", log_, " VALUES ('", id, "')"));
    v1::RunTransactionResponse resp;
    grpc::Status s = stub->RunTransaction(&ctx, req, &resp);
    if (s.ok() && resp.state() != v1::COMMITTED && resp.state() != v1::COMMITTING) return grpc::StatusCode::UNKNOWN;
    return s.error_code();
  }

  v1::ListNodesResponse Nodes(const std::string& address) {
    auto stub = v1::AdminService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListNodesResponse resp;
    EXPECT_TRUE(stub->ListNodes(&ctx, v1::ListNodesRequest(), &resp).ok());
    return resp;
  }

  std::string etcd_, pg_, pg2_, maria_, suffix_, acct_, log_;
};

TEST_F(ClusterBankTest, ANodeLostWithItsDiskIsAdoptedAndNothingIsLost) {
  const int seconds = EnvInt("TXC_CLUSTER_BANK_SECONDS", 15);
  const int clients = EnvInt("TXC_CLUSTER_BANK_CLIENTS", 9);
  TempDir tmp;
  std::vector<std::unique_ptr<TxcoordProcess>> nodes;
  std::vector<std::string> dirs, configs;
  for (int i = 0; i < 3; ++i) {
    dirs.push_back(tmp.Sub(absl::StrCat("node", i)));
    configs.push_back(WriteConfig(i, dirs[i]));
    nodes.push_back(std::make_unique<TxcoordProcess>(TXC_BINARY, configs[i], dirs[i]));
    ASSERT_TRUE(nodes[i]->Start()) << "see " << nodes[i]->log_path();
  }
  std::vector<std::string> addresses;
  for (auto& n : nodes) addresses.push_back(n->address());
  std::mutex addresses_mu;

  std::atomic<bool> stop{false};
  std::atomic<int> acked{0}, aborted{0}, unknown{0};
  std::mutex ack_mu;
  std::set<std::string> acked_ids;
  std::vector<std::thread> workers;
  for (int c = 0; c < clients; ++c) {
    workers.emplace_back([&, c] {
      std::mt19937 rng(c * 7919 + 1);
      int node = c % 3;
      for (int n = 0; !stop; ++n) {
        std::string address;
        {
          std::lock_guard<std::mutex> lock(addresses_mu);
          address = addresses[node];
        }
        const std::string id = absl::StrCat("c", c, "-", n);
        grpc::StatusCode code = Transfer(address, id, rng);
        if (code == grpc::StatusCode::OK) {
          ++acked;
          std::lock_guard<std::mutex> lock(ack_mu);
          acked_ids.insert(id);
        } else if (code == grpc::StatusCode::ABORTED) {
          ++aborted;
        } else {
          ++unknown;
          node = (node + 1) % 3;  // that node may be gone: the next one
        }
      }
    });
  }

  // A third of the way in: node 0 is lost with its disk.
  std::this_thread::sleep_for(std::chrono::seconds(seconds / 3));
  const std::string lost = NodeId(0);
  // Killed while it holds prepared branches (polled for up to 3 s).
  int prepared_at_kill = 0;
  for (int i = 0; i < 300 && (prepared_at_kill = PreparedOf(lost)) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  nodes[0]->Kill();
  const auto killed_at = Clock::now();
  std::filesystem::remove_all(dirs[0]);
  int left = -1;
  double settled_after = -1;
  while (Clock::now() - killed_at < std::chrono::seconds(kLeaseTtlSeconds + 15)) {
    left = PreparedOf(lost);
    if (left == 0) {
      settled_after = std::chrono::duration<double>(Clock::now() - killed_at).count();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Adopted: a survivor reports the adoption once it ends (it goes on for
  // timeouts.transaction, 10 s, after it began).
  int adopted = 0;
  std::string adoption;
  for (int i = 0; i < 300 && adopted == 0; ++i) {
    for (int s = 1; s < 3; ++s) {
      const v1::ListNodesResponse listed = Nodes(addresses[s]);
      for (const auto& a : listed.adoptions()) {
        if (a.node_id() != lost || !a.settled()) continue;
        ++adopted;
        adoption = absl::StrCat("redriven=", a.redriven(), " committed=", a.decided_committed(),
                                " rolled_back=", a.orphans_rolled_back());
      }
    }
    if (adopted == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  // Two thirds in: the node comes back from an empty directory.
  std::this_thread::sleep_for(std::chrono::seconds(seconds / 3));
  configs[0] = WriteConfig(0, dirs[0]);
  nodes[0] = std::make_unique<TxcoordProcess>(TXC_BINARY, configs[0], dirs[0]);
  const bool restarted = nodes[0]->Start();
  if (restarted) {
    std::lock_guard<std::mutex> lock(addresses_mu);
    addresses[0] = nodes[0]->address();
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds - 2 * (seconds / 3)));
  stop = true;
  for (auto& w : workers) w.join();
  ASSERT_TRUE(restarted) << "see " << nodes[0]->log_path();

  // The restarted node serves.
  std::mt19937 rng(42);
  const grpc::StatusCode after = Transfer(nodes[0]->address(), "after-restart", rng);
  if (after == grpc::StatusCode::OK) acked_ids.insert("after-restart"), ++acked;

  int still_prepared = -1;
  for (int i = 0; i < 200; ++i) {
    still_prepared = 0;
    for (int n = 0; n < 3; ++n) still_prepared += PreparedOf(NodeId(n));
    if (still_prepared == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::set<std::string> logged;
  const int64_t total = Total(&logged);
  int missing = 0;
  for (const std::string& id : acked_ids) {
    if (!logged.count(id) && ++missing <= 5) ADD_FAILURE() << "acknowledged transfer " << id << " is missing";
  }
  const bool in_time = settled_after >= 0 && settled_after <= kLeaseTtlSeconds + 5;
  const bool ok = total == 3 * kAccounts * kInitial && missing == 0 && still_prepared == 0 && in_time &&
                  adopted == 1 && after == grpc::StatusCode::OK;
  std::printf("cluster-bank: nodes=3 transfers_acked=%d node_losses=1 adopted=%d invariant=%s "
              "(aborted=%d unknown=%d prepared_at_kill=%d settled_after=%.1fs adoption: %s)\n",
              acked.load(), adopted, ok ? "ok" : "BROKEN", aborted.load(), unknown.load(), prepared_at_kill,
              settled_after, adoption.c_str());
  EXPECT_EQ(total, 3 * kAccounts * kInitial);
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(still_prepared, 0);
  EXPECT_TRUE(in_time) << "the lost node's branches settled after " << settled_after << " s (left: " << left << ")";
  EXPECT_EQ(adopted, 1);
  EXPECT_EQ(after, grpc::StatusCode::OK) << "the restarted node does not serve";
  EXPECT_GT(acked.load(), 0);
  for (auto& n : nodes) n->Stop();
}

TEST_F(ClusterBankTest, ANodePausedPastItsTtlIsAdoptedAndItsLateDecisionRefused) {
  TempDir tmp;
  const std::string d0 = tmp.Sub("node0"), d1 = tmp.Sub("node1");
  // Node 0's first decision waits 4 s before it is sent to etcd: its
  // branches are prepared, the decision not yet written, when it is paused.
  TxcoordProcess n0(TXC_BINARY, WriteConfig(0, d0), d0);
  TxcoordProcess n1(TXC_BINARY, WriteConfig(1, d1), d1);
  ASSERT_TRUE(n0.Start("journal.etcd.before_txn=delay(4000)@1")) << "see " << n0.log_path();
  ASSERT_TRUE(n1.Start()) << "see " << n1.log_path();
  std::mt19937 rng(7);
  grpc::StatusCode late = grpc::StatusCode::OK;
  std::thread client([&] { late = Transfer(n0.address(), "late", rng); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_GT(PreparedOf(NodeId(0)), 0) << "the transfer did not reach its decision";
  ::kill(n0.pid(), SIGSTOP);
  // Adopted while paused: its prepared branches are rolled back.
  int left = -1;
  const auto paused_at = Clock::now();
  while (Clock::now() - paused_at < std::chrono::seconds(kLeaseTtlSeconds + 10) && (left = PreparedOf(NodeId(0))) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(left, 0) << "the paused node was not adopted";
  ::kill(n0.pid(), SIGCONT);
  client.join();
  EXPECT_NE(late, grpc::StatusCode::OK) << "a decision of a fenced node was acknowledged";
  // It steps down: exit code 75 (lease lost), and nothing was committed.
  EXPECT_EQ(n0.WaitExit(20), 75) << "see " << n0.log_path();
  std::set<std::string> logged;
  EXPECT_EQ(Total(&logged), 3 * kAccounts * kInitial);
  EXPECT_EQ(logged.count("late"), 0u);
  EXPECT_EQ(PreparedOf(NodeId(0)), 0);
  // Its id comes back: restarted, it serves.
  ASSERT_TRUE(n0.Start()) << "see " << n0.log_path();
  EXPECT_EQ(Transfer(n0.address(), "after", rng), grpc::StatusCode::OK);
  n0.Stop();
  n1.Stop();
}

// A RunTransaction retried on another node with the same key while the
// first still runs is not run again: it is told to ask later, then gets the
// first run's outcome.
TEST_F(ClusterBankTest, ARetryOnAnotherNodeWhileTheFirstRunsIsNotRunTwice) {
  TempDir tmp;
  const std::string d0 = tmp.Sub("a"), d1 = tmp.Sub("b");
  TxcoordProcess a(TXC_BINARY, WriteConfig(0, d0), d0);
  TxcoordProcess b(TXC_BINARY, WriteConfig(1, d1), d1);
  ASSERT_TRUE(a.Start("journal.etcd.before_txn=delay(3000)@1")) << "see " << a.log_path();
  ASSERT_TRUE(b.Start()) << "see " << b.log_path();
  auto run = [&](const std::string& address, v1::RunTransactionResponse* resp) {
    auto stub = v1::SessionService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RunTransactionRequest req;
    req.set_idempotency_key("once");
    auto* w = req.add_work();
    w->set_bind("pg");
    w->add_statements()->set_sql(absl::StrCat("UPDATE ", acct_, " SET balance = balance - 5 WHERE id = 1"));
    auto* w2 = req.add_work();
    w2->set_bind("maria");
    w2->add_statements()->set_sql(absl::StrCat("UPDATE ", acct_, " SET balance = balance + 5 WHERE id = 1"));
    return stub->RunTransaction(&ctx, req, resp);
  };
  v1::RunTransactionResponse first;
  grpc::Status first_status;
  std::thread slow([&] { first_status = run(a.address(), &first); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  v1::RunTransactionResponse meanwhile;
  grpc::Status s = run(b.address(), &meanwhile);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  slow.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  v1::RunTransactionResponse later;
  s = run(b.address(), &later);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(later.txn_id(), first.txn_id());
  EXPECT_EQ(later.state(), v1::COMMITTED);
  EXPECT_EQ(PgScalar(pg_, absl::StrCat("SELECT balance FROM ", acct_, " WHERE id = 1")), "995") << "ran twice";
  a.Stop();
  b.Stop();
}

TEST_F(ClusterBankTest, ASecondProcessWithAHeldNodeIdNeverDecides) {
  TempDir tmp;
  const std::string d0 = tmp.Sub("a"), d1 = tmp.Sub("b");
  TxcoordProcess first(TXC_BINARY, WriteConfig(0, d0), d0);
  ASSERT_TRUE(first.Start()) << "see " << first.log_path();
  TxcoordProcess second(TXC_BINARY, WriteConfig(0, d1, "2s"), d1);
  EXPECT_FALSE(second.Start()) << "a second process took a held node id";
  std::ifstream in(second.log_path());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("is held in etcd by"), std::string::npos) << text;
  std::mt19937 rng(3);
  EXPECT_EQ(Transfer(first.address(), "first", rng), grpc::StatusCode::OK);
  first.Stop();
}

// One transfer's start (seconds into the run), outcome and duration.
struct Outcome {
  double at;
  grpc::StatusCode code;
  double took;
};

// An etcd cluster of the test's own (three members) loses the member the
// node talks to while clients commit through the node.
TEST_F(ClusterBankTest, EtcdLosingOneMemberOfThreeInterruptsNoMoreThanAnElection) {
  EtcdCluster etcd(3);
  etcd.StartAll();
  etcd_ = etcd.endpoints();
  TempDir tmp;
  const std::string d0 = tmp.Sub("a");
  TxcoordProcess node(TXC_BINARY, WriteConfig(0, d0, "30s", /*lease_ttl=*/10), d0);
  ASSERT_TRUE(node.Start()) << "see " << node.log_path() << "\n" << etcd.Logs();
  const auto t0 = Clock::now();
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<Outcome> outcomes;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(c + 11);
      for (int n = 0; !stop; ++n) {
        const auto start = Clock::now();
        grpc::StatusCode code = Transfer(node.address(), absl::StrCat("e", c, "-", n), rng, true, /*lane=*/c);
        std::lock_guard<std::mutex> lock(mu);
        outcomes.push_back({std::chrono::duration<double>(start - t0).count(), code,
                            std::chrono::duration<double>(Clock::now() - start).count()});
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const double killed_at = std::chrono::duration<double>(Clock::now() - t0).count();
  etcd.Kill(0);  // the member the node's client starts at
  std::this_thread::sleep_for(std::chrono::seconds(8));
  stop = true;
  for (auto& t : clients) t.join();
  int failed_late = 0, acked_late = 0, failed_window = 0;
  for (const Outcome& o : outcomes) {
    const bool late = o.at > killed_at + 5;  // past an election and a reconnect
    if (o.code == grpc::StatusCode::OK) acked_late += late;
    else if (late) ++failed_late;
    else ++failed_window;
  }
  std::set<std::string> logged;
  EXPECT_EQ(Total(&logged), 3 * kAccounts * kInitial);
  EXPECT_EQ(failed_late, 0) << "commits failed more than 5 s after the member was killed";
  EXPECT_GT(acked_late, 0);
  EXPECT_TRUE(node.running()) << "see " << node.log_path();
  std::printf("cluster-etcd: member killed; failed within 5 s: %d, failed later: %d, acknowledged later: %d\n",
              failed_window, failed_late, acked_late);
  node.Stop();
}

// Every member of the test's etcd is killed, then started again.
TEST_F(ClusterBankTest, EtcdAllDownFailsCommitsInTimeAndServiceResumesWhenItReturns) {
  EtcdCluster etcd(3);
  etcd.StartAll();
  etcd_ = etcd.endpoints();
  TempDir tmp;
  const std::string d0 = tmp.Sub("a");
  TxcoordProcess node(TXC_BINARY, WriteConfig(0, d0, "30s", /*lease_ttl=*/10), d0);
  ASSERT_TRUE(node.Start()) << "see " << node.log_path() << "\n" << etcd.Logs();
  std::mt19937 rng(5);
  ASSERT_EQ(Transfer(node.address(), "before", rng), grpc::StatusCode::OK);
  for (int m = 0; m < 3; ++m) etcd.Kill(m);
  // Every commit fails UNAVAILABLE: without a key within the call timeout
  // (2 s: its decision write), with one within two (taking the key, then
  // recording that nothing ran under it).
  int failed = 0;
  double slowest[2] = {0, 0};
  for (int n = 0; n < 4; ++n) {
    const bool keyed = n % 2 == 1;
    const auto start = Clock::now();
    grpc::StatusCode code = Transfer(node.address(), absl::StrCat("down-", n), rng, keyed);
    slowest[keyed] = std::max(slowest[keyed], std::chrono::duration<double>(Clock::now() - start).count());
    failed += code == grpc::StatusCode::UNAVAILABLE;
  }
  EXPECT_EQ(failed, 4) << "a commit did not answer UNAVAILABLE while etcd was down";
  EXPECT_LT(slowest[0], 2 + 1.0) << "a commit took longer than the call timeout";
  EXPECT_LT(slowest[1], 2 * 2 + 1.0) << "a keyed commit took longer than two call timeouts";
  etcd.StartAll();
  // Back without restarting txcoord.
  grpc::StatusCode resumed = grpc::StatusCode::UNKNOWN;
  const auto back = Clock::now();
  for (int n = 0; Clock::now() - back < std::chrono::seconds(30) && resumed != grpc::StatusCode::OK; ++n) {
    resumed = Transfer(node.address(), absl::StrCat("after-", n), rng);
    if (resumed != grpc::StatusCode::OK) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_EQ(resumed, grpc::StatusCode::OK) << "see " << node.log_path() << "\n" << etcd.Logs();
  EXPECT_TRUE(node.running()) << "txcoord stopped; see " << node.log_path();
  // Nothing half done: what failed left no branch and no money moved on one side only.
  int left = -1;
  for (int i = 0; i < 100 && (left = PreparedOf(NodeId(0))) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(left, 0);
  std::set<std::string> logged;
  EXPECT_EQ(Total(&logged), 3 * kAccounts * kInitial);
  EXPECT_EQ(logged.count("before"), 1u);
  for (int n = 0; n < 4; ++n) EXPECT_EQ(logged.count(absl::StrCat("down-", n)), 0u) << "down-" << n;
  node.Stop();
}

}  // namespace
}  // namespace txcoord::testing
