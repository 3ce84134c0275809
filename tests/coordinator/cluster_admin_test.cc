// AdminService across a cluster: two txcoord processes on the harness's
// etcd (journal.backend: etcd, neither adopting), a bearer-token admin.
// Node B crashes between PREPARE and its decision (fault point) and comes
// back unable to roll its orphans back (fault point): its branches stay
// prepared while it runs. On node A:
// - ListNodes gives B's advertised address;
// - ListInDoubt shows B's branches as PEER, with B's node id and txn id;
// - ResolveTransaction for B's transaction is forwarded to B, which
//   journals the operator (named "via node A") and commits the branches;
// - a call that says it was forwarded already is not forwarded again;
// - once B has stopped, resolving its transaction says B is not running.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/participants/raw_clients.h"
#include "tests/testing/db_checks.h"
#include "tests/testing/local_db.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/txcoord_process.h"
#include "txcoord/v1/admin.grpc.pb.h"
#include "txcoord/v1/session.grpc.pb.h"

namespace txcoord::testing {
namespace {

namespace v1 = ::txcoord::v1;
using ::testing::HasSubstr;

constexpr char kToken[] = "cluster-admin-token";
// printf %s cluster-admin-token | sha256sum
constexpr char kTokenHash[] = "e8df6dfc80b905178b9df54028451b7aeb320c852cf402364e1b3f4667c2f42a";

class ClusterAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TXC_REQUIRE_DB_ENV(etcd_, "TXC_ETCD_ENDPOINTS");
    TXC_REQUIRE_DB_ENV(pg_, "TXC_PG_URI");
    TXC_REQUIRE_DB_ENV(maria_, "TXC_MARIADB_ODBC");
    suffix_ = std::to_string(std::random_device{}() % 1000000000u);
    table_ = "cadmin_" + suffix_;
    RawPostgres(pg_, absl::StrCat("CREATE TABLE ", table_, " (id int PRIMARY KEY, note text)"));
    RawOdbc my(maria_);
    ASSERT_TRUE(my.ok()) << my.error();
    my.Query(absl::StrCat("CREATE TABLE ", table_, " (id INT PRIMARY KEY, note TEXT) ENGINE=InnoDB"));
  }

  void TearDown() override {
    if (table_.empty()) return;
    // Branches a failed run left prepared would hold their locks: B's own
    // start-up recovery rolls its orphans back.
    if (nodes_.size() > 1 && PreparedBranchesOfNode(NodeId(1), {pg_}, maria_) > 0) {
      StartNode(1);
      for (int i = 0; i < 100 && PreparedBranchesOfNode(NodeId(1), {pg_}, maria_) > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    for (auto& node : nodes_) {
      if (node != nullptr) node->Stop();
    }
    RawPostgres(pg_, "DROP TABLE IF EXISTS " + table_);
    RawOdbc my(maria_);
    my.Query("DROP TABLE IF EXISTS " + table_);
  }

  std::string NodeId(int i) const { return absl::StrCat("ca", suffix_, "-", i); }

  // Starts node i (0: A, 1: B) with `failpoints`.
  TxcoordProcess& StartNode(int i, const std::string& failpoints = "") {
    const std::string dir = tmp_.Sub(absl::StrCat("node", i));
    std::filesystem::create_directories(dir);
    const std::string path = dir + "/txcoord.yaml";
    std::ofstream out(path);
    out << "node_id: " << NodeId(i) << "\nlisten: 127.0.0.1:0\nplaintext: true\n"
        << "journal:\n  backend: etcd\n  etcd:\n    cluster: cadmin" << suffix_ << "\n"
        << "    lease_ttl: 3s\n    call_timeout: 2s\n    acquire_timeout: 30s\n    adopt: false\n    endpoints: [";
    std::vector<std::string> eps = absl::StrSplit(etcd_, ',');
    for (size_t e = 0; e < eps.size(); ++e) out << (e ? ", " : "") << "\"" << eps[e] << "\"";
    out << "]\n"
        << "auth:\n  tokens: {" << kTokenHash
        << ": ops}\n  policies:\n    - {identity: ops, role: admin, binds: [pg, maria]}\n"
        << "timeouts: {transaction: 10s, orphan_safety: 1s}\n"
        << "recovery: {interval: 500ms, backoff: {initial: 50ms, max: 1s}}\n"
        << "binds:\n"
        << "  pg: {driver: postgres, dsn: \"" << pg_ << "\", pool: {size: 4}}\n"
        << "  maria: {driver: mariadb, dsn: \"" << maria_ << "\", pool: {size: 4}}\n";
    out.close();
    if (nodes_.size() <= static_cast<size_t>(i)) nodes_.resize(i + 1);
    if (nodes_[i] == nullptr) nodes_[i] = std::make_unique<TxcoordProcess>(TXC_BINARY, path, dir);
    EXPECT_TRUE(nodes_[i]->Start(failpoints)) << "node " << i << " did not start; see " << nodes_[i]->log_path();
    return *nodes_[i];
  }

  static std::unique_ptr<v1::AdminService::Stub> Admin(const TxcoordProcess& node) {
    return v1::AdminService::NewStub(grpc::CreateChannel(node.address(), grpc::InsecureChannelCredentials()));
  }

  static void Authorize(grpc::ClientContext* ctx) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    ctx->AddMetadata("x-txcoord-operator", "alice");
  }

  grpc::Status Resolve(const TxcoordProcess& via, const std::string& txn, v1::Transaction* out,
                       const std::string& forwarded_by = "") {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    if (!forwarded_by.empty()) ctx.AddMetadata("x-txcoord-forwarded-by", forwarded_by);
    v1::ResolveTransactionRequest req;
    req.set_txn_id(txn);
    req.set_decision(v1::ResolveTransactionRequest::COMMIT);
    req.set_reason("cluster admin test");
    return Admin(via)->ResolveTransaction(&ctx, req, out);
  }

  std::string etcd_, pg_, maria_, suffix_, table_;
  TempDir tmp_;
  std::vector<std::unique_ptr<TxcoordProcess>> nodes_;
};

TEST_F(ClusterAdminTest, AnyNodeResolvesAnotherRunningNodesTransaction) {
  TxcoordProcess& a = StartNode(0);
  TxcoordProcess& b = StartNode(1, "commit.before_decision_logged=crash");
  ASSERT_TRUE(a.running() && b.running());

  // B crashes after both branches are prepared, before its decision.
  {
    auto session = v1::SessionService::NewStub(grpc::CreateChannel(b.address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    Authorize(&ctx);
    v1::RunTransactionRequest req;
    auto* w = req.add_work();
    w->set_bind("pg");
    w->add_statements()->set_sql(absl::StrCat("INSERT INTO ", table_, " VALUES (1, 'from B')"));
    w = req.add_work();
    w->set_bind("maria");
    w->add_statements()->set_sql(absl::StrCat("INSERT INTO ", table_, " VALUES (1, 'from B')"));
    v1::RunTransactionResponse resp;
    grpc::Status st = session->RunTransaction(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();  // the process died
  }
  ASSERT_TRUE(b.WaitForCrash(10)) << "see " << b.log_path();
  ASSERT_EQ(PreparedBranchesOfNode(NodeId(1), {pg_}, maria_), 2);
  // Back (once its old lease has expired), unable to roll its orphans back.
  StartNode(1, "recovery.before_orphan_rollback=error");
  ASSERT_TRUE(b.running());

  // A lists B with its address, and B's branches as PEER.
  {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    v1::ListNodesResponse nodes;
    ASSERT_TRUE(Admin(a)->ListNodes(&ctx, v1::ListNodesRequest(), &nodes).ok());
    bool found = false;
    for (const v1::Node& n : nodes.nodes()) {
      if (n.node_id() != NodeId(1)) continue;
      found = true;
      EXPECT_EQ(n.address(), b.address());
    }
    EXPECT_TRUE(found);
  }
  std::string txn;
  {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    v1::ListInDoubtResponse doubts;
    ASSERT_TRUE(Admin(a)->ListInDoubt(&ctx, v1::ListInDoubtRequest(), &doubts).ok());
    int peers = 0;
    for (const v1::InDoubtBranch& d : doubts.branches()) {
      if (d.node_id() != NodeId(1)) continue;
      EXPECT_EQ(d.kind(), v1::InDoubtBranch::PEER) << d.xid();
      EXPECT_FALSE(d.txn_id().empty());
      txn = d.txn_id();
      ++peers;
    }
    EXPECT_EQ(peers, 2);
  }
  ASSERT_FALSE(txn.empty());

  // A call that was forwarded once is not forwarded again.
  v1::Transaction t;
  grpc::Status st = Resolve(a, txn, &t, /*forwarded_by=*/"elsewhere");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("forwarded by \"elsewhere\""));
  EXPECT_EQ(PreparedBranchesOfNode(NodeId(1), {pg_}, maria_), 2);

  // Resolved through A: B journals it and commits both branches.
  st = Resolve(a, txn, &t);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(t.state(), v1::COMMITTED);
  EXPECT_EQ(PreparedBranchesOfNode(NodeId(1), {pg_}, maria_), 0);
  EXPECT_EQ(PgScalar(pg_, absl::StrCat("SELECT note FROM ", table_, " WHERE id = 1")), "from B");
  RawOdbc my(maria_);
  EXPECT_THAT(my.Query(absl::StrCat("SELECT note FROM ", table_, " WHERE id = 1")), ::testing::ElementsAre("from B"));
  {
    std::ifstream log(b.log_path());
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_THAT(text, HasSubstr(absl::StrCat("alice (identity ops)")));
    EXPECT_THAT(text, HasSubstr(absl::StrCat("via node ", NodeId(0))));
  }

  // B stopped: A says so instead of forwarding.
  b.Stop();
  st = Resolve(a, txn, &t);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("not running"));
}

}  // namespace
}  // namespace txcoord::testing
