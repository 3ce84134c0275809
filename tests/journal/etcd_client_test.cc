// EtcdClient against the real etcd that deploy/local/start.sh runs
// (TXC_ETCD_ENDPOINTS): reads and writes, fenced transactions, leases, an
// unreachable endpoint passed over, a silent one bounded by the call
// timeout. Every test uses keys under a prefix of its own.
#include "journal/etcd_client.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/etcd_cluster.h"
#include "tests/testing/local_db.h"
#include "tests/testing/pki.h"
#include "util/fiber.h"

namespace txcoord::journal {
namespace {

// A loopback TCP port that accepts connections (the kernel completes the
// handshake from the listen backlog) and never answers: a silent server.
class SilentPort {
 public:
  SilentPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentPort() { ::close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TXC_REQUIRE_DB_ENV(endpoints_, "TXC_ETCD_ENDPOINTS");
    prefix_ = absl::StrCat("/txcoord-test/", std::random_device{}(), "/");
    client_ = Make(Endpoints());
  }

  std::vector<std::string> Endpoints() const { return absl::StrSplit(endpoints_, ','); }

  std::unique_ptr<EtcdClient> Make(std::vector<std::string> endpoints,
                                   absl::Duration timeout = absl::Seconds(5)) {
    EtcdOptions o;
    o.endpoints = std::move(endpoints);
    o.call_timeout = timeout;
    auto c = EtcdClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::string endpoints_;
  std::string prefix_;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdClientTest, PutGetPrefixAndDelete) {
  auto absent = client_->Get(prefix_ + "a");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_FALSE(absent->has_value());
  auto rev1 = client_->Put(prefix_ + "a", std::string("one\0two", 7));
  ASSERT_TRUE(rev1.ok()) << rev1.status();
  auto rev2 = client_->Put(prefix_ + "b", "2");
  ASSERT_TRUE(rev2.ok()) << rev2.status();
  EXPECT_GT(*rev2, *rev1);
  auto a = client_->Get(prefix_ + "a");
  ASSERT_TRUE(a.ok() && a->has_value()) << a.status();
  EXPECT_EQ((*a)->value, std::string("one\0two", 7));
  EXPECT_EQ((*a)->create_revision, *rev1);
  EXPECT_EQ((*a)->version, 1);
  auto all = client_->GetPrefix(prefix_);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].key, prefix_ + "a");
  EXPECT_EQ((*all)[1].key, prefix_ + "b");
  EXPECT_EQ(client_->GetPrefix(prefix_, 1)->size(), 1u);
  EXPECT_EQ(*client_->Delete(prefix_ + "a"), 1);
  EXPECT_EQ(*client_->Delete(prefix_ + "a"), 0);
  EXPECT_EQ(*client_->Delete(prefix_ + "b"), 1);
  EXPECT_TRUE(client_->GetPrefix(prefix_)->empty());
}

// The fencing rule of the cluster mode: a write guarded by the owner key's
// create_revision applies only while that key is the one the writer made.
TEST_F(EtcdClientTest, TxnAppliesOnlyWhileItsCompareHolds) {
  const std::string owner = prefix_ + "nodes/n1";
  auto create_if_absent = [&](const std::string& value) {
    etcdserverpb::TxnRequest txn;
    auto* c = txn.add_compare();
    c->set_key(owner);
    c->set_target(etcdserverpb::Compare::CREATE);
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_create_revision(0);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(owner);
    put->set_value(value);
    txn.add_failure()->mutable_request_range()->set_key(owner);
    return client_->Txn(txn);
  };
  auto first = create_if_absent("first");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded());
  const int64_t epoch = first->header().revision();
  auto second = create_if_absent("second");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->succeeded());
  ASSERT_EQ(second->responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(second->responses(0).response_range().kvs(0).create_revision(), epoch);

  auto fenced_put = [&](int64_t expected_epoch) {
    etcdserverpb::TxnRequest txn;
    auto* c = txn.add_compare();
    c->set_key(owner);
    c->set_target(etcdserverpb::Compare::CREATE);
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_create_revision(expected_epoch);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(prefix_ + "decisions/n1/t1");
    put->set_value("COMMIT");
    return client_->Txn(txn);
  };
  EXPECT_TRUE(fenced_put(epoch)->succeeded());
  // The owner key made again (another epoch): the old epoch's write fails.
  ASSERT_EQ(*client_->Delete(owner), 1);
  ASSERT_TRUE(create_if_absent("again")->succeeded());
  EXPECT_FALSE(fenced_put(epoch)->succeeded());
  (void)client_->Delete(owner);
  (void)client_->Delete(prefix_ + "decisions/n1/t1");
}

TEST_F(EtcdClientTest, LeaseKeepsItsKeysUntilRevokedOrExpired) {
  auto lease = client_->GrantLease(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put(prefix_ + "leased", "x", *lease).ok());
  auto ttl = client_->KeepAlive(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GE(*ttl, absl::Seconds(1));
  EXPECT_EQ((*client_->Get(prefix_ + "leased"))->lease, *lease);
  ASSERT_TRUE(client_->RevokeLease(*lease).ok());
  EXPECT_FALSE(client_->Get(prefix_ + "leased")->has_value()) << "a revoked lease's keys are deleted";
  EXPECT_EQ(client_->KeepAlive(*lease).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->RevokeLease(*lease).code(), absl::StatusCode::kNotFound);

  // Not kept alive: it expires, and its keys with it.
  auto short_lease = client_->GrantLease(absl::Seconds(2));
  ASSERT_TRUE(short_lease.ok()) << short_lease.status();
  ASSERT_TRUE(client_->Put(prefix_ + "expiring", "x", *short_lease).ok());
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  while (client_->Get(prefix_ + "expiring")->has_value() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_FALSE(client_->Get(prefix_ + "expiring")->has_value());
  EXPECT_EQ(client_->KeepAlive(*short_lease).status().code(), absl::StatusCode::kNotFound);
}

// An endpoint that refuses connections: reads go on to the next one; a
// write is sent once (UNAVAILABLE, its outcome unknown) and the next call
// starts at the next endpoint.
TEST_F(EtcdClientTest, AnUnreachableEndpointIsPassedOver) {
  std::vector<std::string> endpoints = {testing::FreeLoopbackAddress()};
  for (const std::string& e : Endpoints()) endpoints.push_back(e);
  auto client = Make(endpoints, absl::Seconds(1));
  ASSERT_NE(client, nullptr);
  auto read = client->Get(prefix_ + "x");
  ASSERT_TRUE(read.ok()) << read.status();
  auto other = Make(endpoints, absl::Seconds(1));
  auto write = other->Put(prefix_ + "x", "1");
  if (!write.ok()) {
    EXPECT_EQ(write.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(write.status().message().find("outcome is unknown"), std::string::npos) << write.status();
    write = other->Put(prefix_ + "x", "1");
  }
  ASSERT_TRUE(write.ok()) << write.status();
  EXPECT_EQ((*client->Get(prefix_ + "x"))->value, "1");
  (void)client->Delete(prefix_ + "x");
}

// A server that accepts and never answers: every call ends within the call
// timeout, UNAVAILABLE naming it.
TEST_F(EtcdClientTest, ASilentEndpointFailsWithinTheCallTimeout) {
  SilentPort silent;
  auto client = Make({silent.address()}, absl::Milliseconds(800));
  ASSERT_NE(client, nullptr);
  for (int call = 0; call < 3; ++call) {
    const absl::Time start = absl::Now();
    absl::Status s = call == 0   ? client->Get(prefix_ + "x").status()
                     : call == 1 ? client->Put(prefix_ + "x", "1").status()
                                 : client->KeepAlive(1).status();
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_LT(took, absl::Seconds(3)) << "call " << call;
  }
}

// On a fiber a call parks only its fiber: with the endpoint silent for the
// whole call timeout, the loop's other fibers run meanwhile. (No etcd
// needed: the silent port is the whole server.)
TEST(EtcdClientOnAFiberTest, ACallWaitingForEtcdLeavesTheLoopFree) {
  SilentPort silent;
  EtcdOptions o;
  o.endpoints = {silent.address()};
  o.call_timeout = absl::Milliseconds(600);
  auto client = EtcdClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  std::atomic<bool> call_done{false};
  std::atomic<bool> other_ran_during_call{false};
  absl::Status get, put;
  {
    util::FiberLoops loops(1);
    loops.Spawn([&] {
      get = (*client)->Get("/txcoord-test/fiber").status();
      put = (*client)->Put("/txcoord-test/fiber", "1").status();
      call_done = true;
    });
    loops.Spawn([&] {
      util::Sleep(absl::Milliseconds(50));
      other_ran_during_call = !call_done.load();
    });
  }  // waits for both fibers
  EXPECT_EQ(get.code(), absl::StatusCode::kUnavailable) << get;
  EXPECT_EQ(put.code(), absl::StatusCode::kUnavailable) << put;
  EXPECT_TRUE(other_ran_during_call.load()) << "the etcd call held the loop's thread";
}

// A real etcd of this test's own, frozen (SIGSTOP) while the client is
// connected: every call ends within the call timeout ("no reply within"),
// and once it thaws the same client works again.
TEST(EtcdClientFrozenTest, AFrozenEtcdFailsCallsWithinTheTimeoutAndTheClientRecovers) {
  std::string unused;
  TXC_REQUIRE_DB_ENV(unused, "TXC_ETCD_ENDPOINTS");  // etcd is installed where the harness runs
  testing::EtcdCluster etcd(1);
  etcd.StartAll();
  EtcdOptions o;
  o.endpoints = etcd.endpoint_list();
  o.call_timeout = absl::Seconds(1);
  auto client = EtcdClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    up = (*client)->Put("/frozen/k", "v").ok();  // started with the client: it connects when etcd is up
    if (!up) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(up) << "the test's etcd did not start: " << (*client)->Put("/frozen/k", "v").status() << "\n"
                  << etcd.Logs();
  etcd.Signal(0, SIGSTOP);
  for (int call = 0; call < 2; ++call) {
    const absl::Time start = absl::Now();
    absl::Status s = call == 0 ? (*client)->Get("/frozen/k").status() : (*client)->Put("/frozen/k", "w").status();
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find("no reply within"), std::string::npos) << s;
    EXPECT_LT(took, absl::Milliseconds(2500)) << "call " << call;
  }
  etcd.Signal(0, SIGCONT);
  absl::StatusOr<std::optional<EtcdKeyValue>> again = absl::UnavailableError("not yet");
  for (int i = 0; i < 50 && !again.ok(); ++i) {
    again = (*client)->Get("/frozen/k");
    if (!again.ok()) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(again.ok()) << again.status();
}

// An etcd that requires TLS with client certificates: the client with the
// CA and a certificate signed by it works; without a certificate, or
// trusting another CA, every call fails.
TEST(EtcdClientSecurityTest, TlsWithAClientCertificate) {
  std::string unused;
  TXC_REQUIRE_DB_ENV(unused, "TXC_ETCD_ENDPOINTS");
  char dir_template[] = "/tmp/txcoord-etcd-pki.XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  testing::Pki pki(dir);
  ASSERT_TRUE(pki.ok()) << "openssl could not make the test certificates";
  testing::EtcdCluster etcd(1, {pki.Path("server.pem"), pki.Path("server.key"), pki.Path("ca.pem")});
  etcd.StartAll();
  EtcdOptions o;
  o.endpoints = etcd.endpoint_list();
  o.call_timeout = absl::Seconds(2);
  o.ca_file = pki.Path("ca.pem");
  o.cert_file = pki.Path("ops.pem");
  o.key_file = pki.Path("ops.key");
  auto client = EtcdClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<int64_t> put = absl::UnavailableError("not yet");
  for (int i = 0; i < 100 && !put.ok(); ++i) {
    put = (*client)->Put("/tls/k", "v");
    if (!put.ok()) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(put.ok()) << put.status() << "\n" << etcd.Logs();
  EXPECT_EQ((*(*client)->Get("/tls/k"))->value, "v");

  EtcdOptions no_cert = o;
  no_cert.cert_file.clear();
  no_cert.key_file.clear();
  auto anonymous = EtcdClient::Create(no_cert);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_FALSE((*anonymous)->Get("/tls/k").ok()) << "etcd served a client without a certificate";
  EtcdOptions wrong_ca = o;
  wrong_ca.ca_file = pki.Path("rogue.pem");
  auto distrustful = EtcdClient::Create(wrong_ca);
  ASSERT_TRUE(distrustful.ok());
  EXPECT_FALSE((*distrustful)->Get("/tls/k").ok()) << "the client trusted a server its CA did not sign";
  std::filesystem::remove_all(dir);
}

// An etcd with authentication on (users made with etcdctl): the client
// with the password authenticates and works; a wrong password is refused
// UNAUTHENTICATED, and without credentials etcd refuses the writes.
TEST(EtcdClientSecurityTest, PasswordAuthentication) {
  std::string unused;
  TXC_REQUIRE_DB_ENV(unused, "TXC_ETCD_ENDPOINTS");
  testing::EtcdCluster etcd(1);
  etcd.StartAll();
  const std::string ctl = "ETCDCTL_API=3 etcdctl --endpoints " + etcd.endpoints() + " ";
  int rc = -1;
  for (int i = 0; i < 100 && rc != 0; ++i) {
    rc = testing::Sh(ctl + "endpoint health");
    if (rc != 0) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(rc, 0) << etcd.Logs();
  ASSERT_EQ(testing::Sh(ctl + "user add root --new-user-password=rootpw"), 0);
  ASSERT_EQ(testing::Sh(ctl + "user grant-role root root"), 0);
  ASSERT_EQ(testing::Sh(ctl + "auth enable"), 0);
  EtcdOptions o;
  o.endpoints = etcd.endpoint_list();
  o.call_timeout = absl::Seconds(2);
  o.user = "root";
  o.password = "rootpw";
  auto client = EtcdClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  auto put = (*client)->Put("/auth/k", "v");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ((*(*client)->Get("/auth/k"))->value, "v");

  EtcdOptions wrong = o;
  wrong.password = "nope";
  auto refused = (*EtcdClient::Create(wrong))->Put("/auth/k", "w");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated) << refused.status();
  EtcdOptions none = o;
  none.user.clear();
  none.password.clear();
  auto anonymous = (*EtcdClient::Create(none))->Put("/auth/k", "w");
  EXPECT_FALSE(anonymous.ok()) << "etcd took a write without credentials";
  EXPECT_EQ((*(*client)->Get("/auth/k"))->value, "v");
}

TEST(EtcdClientOptionsTest, BadOptionsAreRefusedNamingTheField) {
  EtcdOptions o;
  EXPECT_EQ(EtcdClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.endpoints = {"localhost"};
  EXPECT_EQ(EtcdClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.endpoints = {"127.0.0.1:2379"};
  o.user = "u";
  EXPECT_EQ(EtcdClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.password = "p";
  o.ca_file = "/nonexistent/ca.pem";
  absl::Status s = EtcdClient::Create(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ca"), std::string::npos) << s;
  o.ca_file.clear();
  o.call_timeout = absl::ZeroDuration();
  EXPECT_EQ(EtcdClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EtcdClient::PrefixEnd("a/"), "a0");
  EXPECT_EQ(EtcdClient::PrefixEnd(std::string("a\xff", 2)), "b");
}

}  // namespace
}  // namespace txcoord::journal
