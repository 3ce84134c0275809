#include "server/config.h"

#include <unistd.h>

#include <cstdlib>

#include "coordinator/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/peers.h"

namespace txcoord::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr char kGood[] = R"(
# ${COMMENTS_ARE_NOT_SUBSTITUTED}
node_id: coord-1
plaintext: true
listen: 127.0.0.1:7600
journal:
  dir: /tmp/j
  retention: {finished_max: 10, finished_max_age: 2h}
  decision_log_bytes: 1048576
timeouts: {transaction: 5s, idle: 1m, prepare: 500ms, orphan_safety: 30s}
recovery: {interval: 2s, backoff: {initial: 100ms, max: 30s}}
limits: {max_sessions: 7}
binds:
  pg_main:
    driver: postgres
    dsn: "postgresql://app:${TXC_TEST_SECRET}@127.0.0.1:5432/app"
    pool: {size: 3, acquire_timeout: 250ms, min_open: 2}
    last_resource: true
  maria:
    driver: odbc
    dsn: "Driver=MariaDB Unicode;Server=127.0.0.1;Password=${TXC_TEST_SECRET};User=x"
)";

TEST(ConfigTest, ParsesEveryKeyAndSubstitutesTheEnvironment) {
  ::setenv("TXC_TEST_SECRET", "s3cret", 1);
  auto c = ParseConfig(kGood);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, "coord-1");
  EXPECT_EQ(c->journal.dir, "/tmp/j");
  EXPECT_EQ(c->journal.node_id, "coord-1");
  EXPECT_EQ(c->journal.retention.finished_max, 10);
  EXPECT_EQ(c->journal.retention.finished_max_age, absl::Hours(2));
  EXPECT_TRUE(c->journal.decision_log);
  EXPECT_EQ(c->journal.decision_log_bytes, 1048576u);
  EXPECT_EQ(c->timeouts.transaction, absl::Seconds(5));
  EXPECT_EQ(c->timeouts.idle, absl::Minutes(1));
  EXPECT_EQ(c->timeouts.prepare, absl::Milliseconds(500));
  EXPECT_TRUE(c->timeouts.prepare_set) << "set: txcoord warns that it is not applied";
  EXPECT_EQ(c->recovery.backoff_max, absl::Seconds(30));
  EXPECT_EQ(c->limits.max_sessions, 7);
  ASSERT_EQ(c->binds.size(), 2u);
  EXPECT_EQ(c->binds[0].name, "pg_main");
  EXPECT_EQ(c->binds[0].dsn, "postgresql://app:s3cret@127.0.0.1:5432/app");
  EXPECT_EQ(c->binds[0].pool_size, 3);
  EXPECT_EQ(c->binds[0].acquire_timeout, absl::Milliseconds(250));
  EXPECT_EQ(c->binds[0].pool_min_open, 2);
  EXPECT_EQ(c->binds[1].pool_min_open, 0);
  EXPECT_EQ(c->binds[1].driver, "odbc");
  EXPECT_TRUE(c->binds[0].last_resource);
  EXPECT_FALSE(c->binds[1].last_resource);
}

TEST(ConfigTest, ErrorsNameTheKey) {
  ::setenv("TXC_TEST_SECRET", "s3cret", 1);
  struct Case {
    std::string yaml;
    std::string key;
  } cases[] = {
      {"listen: x\nbinds: {a: {driver: postgres, dsn: x}}", "node_id"},
      {"plaintext: true\nnode_id: bad_id\nbinds: {a: {driver: postgres, dsn: x}}", "node_id"},
      {"plaintext: true\nnode_id: n\n", "binds"},
      {"plaintext: true\nnode_id: n\nbinds: {a: {driver: oracle, dsn: x}}", "binds.a.driver"},
      {"plaintext: true\nnode_id: n\nbinds: {a: {driver: postgres}}", "binds.a.dsn"},
      {"plaintext: true\nnode_id: n\nbinds: {a: {driver: postgres, dsn: x, pool: {size: 0}}}", "binds.a.pool.size"},
      {"plaintext: true\nnode_id: n\nbinds: {a: {driver: postgres, dsn: x, pool: {size: 4, min_open: 5}}}",
       "binds.a.pool.min_open"},
      {"plaintext: true\nnode_id: n\njournal: {backend: etcd, etcd: {endpoints: [\"e:2379\"], advertise: nope}}\n"
       "binds: {a: {driver: postgres, dsn: x}}",
       "journal.etcd.advertise"},
      {"plaintext: true\nnode_id: n\ntimeouts: {idle: soon}\nbinds: {a: {driver: postgres, dsn: x}}", "timeouts.idle"},
      {"plaintext: true\nnode_id: n\ntimeout: {idle: 1s}\nbinds: {a: {driver: postgres, dsn: x}}", "timeout"},
      {"plaintext: true\nnode_id: n\nbinds: {a: {driver: postgres, dsn: \"${TXC_NOT_SET_ANYWHERE}\"}}",
       "TXC_NOT_SET_ANYWHERE"},
      {"plaintext: true\nnode_id: n\nbinds: [1, 2]", "binds"},
      {"plaintext: true\nnode_id: n\nbinds: {a: {driver: postgres, dsn: x, last_resource: yes}}",
       "binds.a.last_resource"},
      {"plaintext: maybe\nnode_id: n\nbinds: {a: {driver: postgres, dsn: x}}", "plaintext"},
      {"plaintext: true\nnode_id: n\njournal: {decision_log_bytes: 100000}\nbinds: {a: {driver: postgres, dsn: x}}",
       "journal.decision_log_bytes"},
      {"plaintext: true\nnode_id: n\njournal: {decision_log_bytes: 4096}\nbinds: {a: {driver: postgres, dsn: x}}",
       "journal.decision_log_bytes"},
      {"plaintext: true\nnode_id: n\njournal: {decision_log: on}\nbinds: {a: {driver: postgres, dsn: x}}",
       "journal.decision_log"},
      {"plaintext: true\nnode_id: [\n", "YAML"},
      {"plaintext: true\nnode_id: n\nlimits: {server_threads: 8, server_idle_threads: 9}\n"
       "binds: {a: {driver: postgres, dsn: x}}",
       "limits.server_idle_threads"},
      {"plaintext: true\nnode_id: n\ntimeouts: {transaction: 30s, database_reply: 10s}\n"
       "binds: {a: {driver: postgres, dsn: x}}",
       "timeouts.database_reply"},
  };
  for (const Case& c : cases) {
    auto parsed = ParseConfig(c.yaml);
    ASSERT_FALSE(parsed.ok()) << c.yaml;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.key)) << c.yaml;
  }
}

TEST(ConfigTest, EveryBindWaitsForADatabaseReplyAtMostTheReplyTimeout) {
  // Unset: the transaction timeout plus a margin.
  auto c = ParseConfig(
      "plaintext: true\nnode_id: n\ntimeouts: {transaction: 45s}\n"
      "binds: {a: {driver: postgres, dsn: x}, b: {driver: odbc, dsn: y}}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->timeouts.database_reply, absl::Seconds(45) + coordinator::kDatabaseReplyMargin);
  ASSERT_EQ(c->binds.size(), 2u);
  for (const auto& b : c->binds) EXPECT_EQ(b.io_timeout, absl::Seconds(45) + coordinator::kDatabaseReplyMargin);
  // Set: as given (at least the transaction timeout).
  c = ParseConfig(
      "plaintext: true\nnode_id: n\ntimeouts: {transaction: 5s, database_reply: 5s}\n"
      "binds: {a: {driver: postgres, dsn: x}}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->binds[0].io_timeout, absl::Seconds(5));
}

TEST(ConfigTest, IdleServerThreadsDefaultWithinTheThreadCap) {
  auto c = ParseConfig("plaintext: true\nnode_id: n\nbinds: {a: {driver: postgres, dsn: x}}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->limits.server_idle_threads, 64);
  EXPECT_FALSE(c->timeouts.prepare_set);
  c = ParseConfig("plaintext: true\nnode_id: n\nlimits: {server_threads: 8}\nbinds: {a: {driver: postgres, dsn: x}}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->limits.server_idle_threads, 8);
  c = ParseConfig(
      "plaintext: true\nnode_id: n\nlimits: {server_idle_threads: 3}\nbinds: {a: {driver: postgres, dsn: x}}");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->limits.server_idle_threads, 3);
}

TEST(ConfigTest, MemoryBoundsHaveDefaultsAndLimits) {
  const std::string binds = "binds: {a: {driver: postgres, dsn: x}}\n";
  auto c = ParseConfig("plaintext: true\nnode_id: n\n" + binds);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->journal.memtable_bytes, 16u << 20);
  EXPECT_EQ(c->journal.block_cache_bytes, 8u << 20);
  EXPECT_EQ(c->limits.recent_outcomes, 10000);
  EXPECT_EQ(c->limits.malloc_arenas, 2);
  EXPECT_EQ(c->limits.http_threads, 2);
  c = ParseConfig("plaintext: true\nnode_id: n\njournal: {memtable_mb: 64, block_cache_mb: 32}\n"
                  "limits: {recent_outcomes: 0, malloc_arenas: 0, http_threads: 1}\n" + binds);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->journal.memtable_bytes, 64u << 20);
  EXPECT_EQ(c->journal.block_cache_bytes, 32u << 20);
  EXPECT_EQ(c->limits.recent_outcomes, 0);
  EXPECT_EQ(c->limits.malloc_arenas, 0);
  EXPECT_EQ(c->limits.http_threads, 1);
  c = ParseConfig("plaintext: true\nnode_id: n\nlimits: {http_threads: 0}\n" + binds);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("limits.http_threads"));
  c = ParseConfig("plaintext: true\nnode_id: n\njournal: {memtable_mb: 1}\n" + binds);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("journal.memtable_mb"));
  c = ParseConfig("plaintext: true\nnode_id: n\nlimits: {malloc_arenas: -1}\n" + binds);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("limits.malloc_arenas"));
}

TEST(ConfigTest, DurationsParse) {
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("7d"), absl::Hours(168));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
  EXPECT_FALSE(ParseDuration("10 parsecs").ok());
  EXPECT_FALSE(ParseDuration("").ok());
}

TEST(ConfigTest, RedactDsnHidesPasswords) {
  EXPECT_EQ(RedactDsn("postgresql://app:pw123@h:5432/db"), "postgresql://app:***@h:5432/db");
  EXPECT_EQ(RedactDsn("Driver=X;Server=h;Password=pw123;User=u"), "Driver=X;Server=h;Password=***;User=u");
  EXPECT_EQ(RedactDsn("Driver=X;PWD={p;w};UID=u"), "Driver=X;PWD=***;UID=u");
  EXPECT_EQ(RedactDsn("host=h password=pw123 dbname=d"), "host=h password=*** dbname=d");
}

TEST(ConfigTest, EtcdBackendReadsItsSectionAndRefusesBadValues) {
  const std::string base = "node_id: n1\nplaintext: true\nbinds: {pg: {driver: postgres, dsn: \"postgresql://x@h/d\"}}\n";
  auto c = ParseConfig(base + "journal:\n  backend: etcd\n  etcd:\n    endpoints: [\"127.0.0.1:2379\", \"127.0.0.1:2380\"]\n"
                              "    cluster: prod\n    lease_ttl: 5s\n    call_timeout: 1s\n    acquire_timeout: 20s\n"
                              "    max_txn_ops: 64\n    adopt: false\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->journal.backend, journal::Backend::kEtcd);
  EXPECT_EQ(c->journal.etcd.client.endpoints, (std::vector<std::string>{"127.0.0.1:2379", "127.0.0.1:2380"}));
  EXPECT_EQ(c->journal.etcd.prefix, "/txcoord/prod/");
  EXPECT_EQ(c->journal.etcd.lease_ttl, absl::Seconds(5));
  EXPECT_EQ(c->journal.etcd.client.call_timeout, absl::Seconds(1));
  EXPECT_EQ(c->journal.etcd.acquire_timeout, absl::Seconds(20));
  EXPECT_EQ(c->journal.etcd.max_txn_ops, 64);
  EXPECT_FALSE(c->adopt);
  auto rocks = ParseConfig(base);
  ASSERT_TRUE(rocks.ok()) << rocks.status();
  EXPECT_EQ(rocks->journal.backend, journal::Backend::kRocksDb);
  EXPECT_TRUE(rocks->adopt);
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"journal: {backend: zookeeper}", "journal.backend"},
           {"journal: {backend: etcd}", "journal.etcd"},
           {"journal: {backend: etcd, etcd: {endpoints: []}}", "journal.etcd.endpoints"},
           {"journal: {backend: etcd, etcd: {endpoints: [\"nohostport\"]}}", "journal.etcd.endpoints"},
           {"journal: {backend: etcd, etcd: {endpoints: [\"h:1\"], cluster: \"a/b\"}}", "journal.etcd.cluster"},
           {"journal: {backend: etcd, etcd: {endpoints: [\"h:1\"], lease_ttl: 1s}}", "journal.etcd.lease_ttl"},
           {"journal: {backend: etcd, etcd: {endpoints: [\"h:1\"], lease_ttl: 5s, call_timeout: 5s}}",
            "journal.etcd.call_timeout"},
           {"journal: {backend: etcd, etcd: {endpoints: [\"h:1\"], lesae_ttl: 5s}}", "lesae_ttl"},
       }) {
    auto bad = ParseConfig(base + yaml + "\n");
    ASSERT_FALSE(bad.ok()) << yaml;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << yaml;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << yaml << ": " << bad.status();
  }
}

// journal.etcd.advertise, or the bound address with a wildcard host
// replaced by the host name.
TEST(ConfigTest, TheAdvertisedAddressIsConfiguredOrTheBoundOne) {
  Config c;
  EXPECT_EQ(AdvertisedAddress(c, "127.0.0.1:7600"), "127.0.0.1:7600");
  EXPECT_EQ(AdvertisedAddress(c, "coord-1.example:7600"), "coord-1.example:7600");
  char host[256] = {0};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  ASSERT_NE(host[0], '\0');
  EXPECT_EQ(AdvertisedAddress(c, "0.0.0.0:7600"), std::string(host) + ":7600");
  EXPECT_EQ(AdvertisedAddress(c, "[::]:7600"), std::string(host) + ":7600");
  c.advertise = "txcoord-0.txcoord-nodes:7600";
  EXPECT_EQ(AdvertisedAddress(c, "0.0.0.0:7600"), "txcoord-0.txcoord-nodes:7600");
}

}  // namespace
}  // namespace txcoord::coordinator
