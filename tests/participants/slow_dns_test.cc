// Opening a database connection on a fiber while the bind's host name takes
// long to resolve: the lookup must not hold the fiber's event loop. libpq
// and Connector/C resolve with getaddrinfo(3), which can only block its
// thread; a name server that does not answer blocks it for seconds.
//
// The slow name server is injected (util::ReplaceGetaddrinfoForTest):
// looking up kSlowHost blocks the calling thread for kSlowLookup, then
// resolves 127.0.0.1; every other name goes to the C library.
#include <dlfcn.h>
#include <netdb.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participants/mariadb/mariadb_connection.h"
#include "participants/postgres/postgres_connection.h"
#include "tests/testing/local_db.h"
#include "util/fiber.h"

namespace {

constexpr char kSlowHost[] = "slow-dns.txcoord.test";
constexpr auto kSlowLookup = std::chrono::milliseconds(400);
std::atomic<int> slow_lookups{0};
// When the last lookup of kSlowHost began and ended (absl::GetCurrentTimeNanos).
std::atomic<int64_t> lookup_began{0};
std::atomic<int64_t> lookup_ended{0};

int SlowNameServer(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  static const auto libc_getaddrinfo = reinterpret_cast<txcoord::util::GetaddrinfoFn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (node != nullptr && std::strcmp(node, kSlowHost) == 0) {
    slow_lookups.fetch_add(1);
    lookup_began = absl::GetCurrentTimeNanos();
    std::this_thread::sleep_for(kSlowLookup);  // the thread's sleep, as a resolver waiting for its server
    lookup_ended = absl::GetCurrentTimeNanos();
    node = "127.0.0.1";
  }
  return libc_getaddrinfo(node, service, hints, res);
}

}  // namespace

namespace txcoord::participants {
namespace {

// Runs `open` on a fiber of a one-loop FiberLoops beside a second fiber
// that ticks every 20 ms until `open` returns; true when a tick fell inside
// the slow lookup (the loop ran meanwhile). Also checks that the open
// looked kSlowHost up.
bool LoopRanDuringLookup(const std::function<void()>& open) {
  util::ReplaceGetaddrinfoForTest(SlowNameServer);
  const int lookups_before = slow_lookups.load();
  std::atomic<bool> open_done{false};
  std::vector<int64_t> ticks;
  {
    util::FiberLoops loops(1);
    loops.Spawn([&] {
      while (!open_done.load()) {
        util::Sleep(absl::Milliseconds(20));
        ticks.push_back(absl::GetCurrentTimeNanos());
      }
    });
    loops.Spawn([&] {
      open();
      open_done = true;
    });
  }  // waits for both fibers
  util::ReplaceGetaddrinfoForTest(nullptr);
  EXPECT_GT(slow_lookups.load(), lookups_before) << "the open did not look " << kSlowHost << " up";
  return std::any_of(ticks.begin(), ticks.end(),
                     [](int64_t t) { return t > lookup_began.load() && t < lookup_ended.load(); });
}

// The local harness's PostgreSQL bind with its host written as `host`.
BindOptions PgBindNamed(const std::string& uri, const std::string& host) {
  BindOptions o;
  o.name = "pg";
  o.driver = "postgres";
  o.dsn = absl::StrReplaceAll(uri, {{"@127.0.0.1:", absl::StrCat("@", host, ":")}});
  o.io_timeout = absl::Seconds(10);
  return o;
}

TEST(SlowDnsTest, APostgresOpenWaitingForTheNameLeavesTheLoopFree) {
  std::string uri;
  TXC_REQUIRE_DB_ENV(uri, "TXC_PG_URI");
  ASSERT_THAT(uri, ::testing::HasSubstr("@127.0.0.1:")) << "the local harness's URI";
  const BindOptions o = PgBindNamed(uri, kSlowHost);
  absl::StatusOr<std::unique_ptr<postgres_internal::PgConnection>> conn;
  const bool free = LoopRanDuringLookup([&] { conn = postgres_internal::OpenConnection(o); });
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_TRUE((*conn)->conn->is_open());
  EXPECT_TRUE(free) << "the host name's lookup held the loop's thread";
}

TEST(SlowDnsTest, AMariadbOpenWaitingForTheNameLeavesTheLoopFree) {
  std::string text;
  TXC_REQUIRE_DB_ENV(text, "TXC_MARIADB_ODBC");
  absl::StatusOr<mariadb::MariadbDsn> dsn = mariadb::ParseMariadbDsn("m", text);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  ASSERT_EQ(dsn->host, "127.0.0.1") << "the local harness's DSN";
  dsn->host = kSlowHost;
  absl::StatusOr<std::unique_ptr<mariadb::MariadbConnection>> conn;
  const bool free = LoopRanDuringLookup([&] { conn = mariadb::MariadbConnection::Open("m", *dsn, absl::Seconds(10)); });
  ASSERT_TRUE(conn.ok()) << conn.status();
  absl::StatusOr<ResultSet> one = (*conn)->Execute("SELECT 1", absl::Seconds(10), 0);
  EXPECT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(free) << "the host name's lookup held the loop's thread";
}

// The same path with the C library's own lookup: a bind named `localhost`
// opens from a fiber (the lookup on the blocking pool, libpq then trying
// each address it returned).
TEST(SlowDnsTest, ABindNamedByHostNameOpensFromAFiber) {
  std::string uri;
  TXC_REQUIRE_DB_ENV(uri, "TXC_PG_URI");
  ASSERT_THAT(uri, ::testing::HasSubstr("@127.0.0.1:")) << "the local harness's URI";
  const BindOptions o = PgBindNamed(uri, "localhost");
  absl::StatusOr<std::unique_ptr<postgres_internal::PgConnection>> conn;
  {
    util::FiberLoops loops(1);
    loops.Spawn([&] { conn = postgres_internal::OpenConnection(o); });
  }
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_TRUE((*conn)->conn->is_open());
}

}  // namespace
}  // namespace txcoord::participants
