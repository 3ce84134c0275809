#include "participants/connection_pool.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace txcoord::participants {
namespace {

struct FakeConnection {
  int id = 0;
};

class ConnectionPoolTest : public ::testing::Test {
 protected:
  std::shared_ptr<ConnectionPool<FakeConnection>> MakePool(int size, absl::Duration timeout) {
    return ConnectionPool<FakeConnection>::Create(
        "fake-bind", size, timeout,
        [this]() -> absl::StatusOr<std::unique_ptr<FakeConnection>> {
          if (fail_open_) return absl::UnavailableError("fake-bind: server down");
          auto c = std::make_unique<FakeConnection>();
          c->id = ++opened_;
          return c;
        });
  }
  std::atomic<int> opened_{0};
  std::atomic<bool> fail_open_{false};
};

TEST_F(ConnectionPoolTest, ReusesIdleConnections) {
  auto pool = MakePool(2, absl::Milliseconds(100));
  int first_id;
  {
    auto lease = pool->Acquire();
    ASSERT_TRUE(lease.ok());
    first_id = (*lease)->id;
    EXPECT_EQ(pool->stats().in_use, 1);
  }
  EXPECT_EQ(pool->stats().in_use, 0);
  EXPECT_EQ(pool->stats().open, 1);
  auto again = pool->Acquire();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->id, first_id);
  EXPECT_EQ(opened_, 1);
}

TEST_F(ConnectionPoolTest, ExhaustionIsResourceExhaustedAfterTheTimeout) {
  auto pool = MakePool(2, absl::Milliseconds(200));
  auto a = pool->Acquire();
  auto b = pool->Acquire();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(pool->stats().in_use, 2);
  const absl::Time start = absl::Now();
  auto c = pool->Acquire();
  const absl::Duration waited = absl::Now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("fake-bind"), absl::string_view::npos) << c.status();
  EXPECT_GE(waited, absl::Milliseconds(190));
  EXPECT_LT(waited, absl::Seconds(2));
  EXPECT_EQ(pool->exhausted_count(), 1);
}

TEST_F(ConnectionPoolTest, WaiterGetsAReleasedConnection) {
  auto pool = MakePool(1, absl::Seconds(5));
  auto a = pool->Acquire();
  ASSERT_TRUE(a.ok());
  const int id = (*a)->id;
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(100));
    a->Release();
  });
  auto b = pool->Acquire();
  releaser.join();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->id, id);
}

TEST_F(ConnectionPoolTest, BrokenConnectionIsEvictedWithTheIdleOnesAndReopened) {
  auto pool = MakePool(3, absl::Milliseconds(100));
  {
    auto a = pool->Acquire();
    auto b = pool->Acquire();
    auto c = pool->Acquire();
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    a->Release();
    b->Release();  // a and b idle, c in use
    EXPECT_EQ(pool->stats().open, 3);
    c->MarkBroken();
  }  // c returns broken: c, a and b are all closed
  EXPECT_EQ(pool->stats().open, 0);
  EXPECT_EQ(pool->stats().in_use, 0);
  auto d = pool->Acquire();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->id, 4) << "a fresh connection must be opened";
}

TEST_F(ConnectionPoolTest, FailedOpenFreesTheSlot) {
  auto pool = MakePool(1, absl::Milliseconds(50));
  fail_open_ = true;
  auto a = pool->Acquire();
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool->stats().open, 0);
  EXPECT_EQ(pool->stats().in_use, 0);
  fail_open_ = false;
  EXPECT_TRUE(pool->Acquire().ok());
}

TEST_F(ConnectionPoolTest, OpenUpToOpensIdleConnectionsThatAcquireTakes) {
  auto pool = MakePool(3, absl::Milliseconds(50));
  ASSERT_TRUE(pool->OpenUpTo(2).ok());
  EXPECT_EQ(pool->stats().open, 2);
  EXPECT_EQ(pool->stats().in_use, 0);
  EXPECT_EQ(opened_, 2);
  {
    auto a = pool->Acquire();
    auto b = pool->Acquire();
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(opened_, 2) << "the opened connections are the ones taken";
    // Counted with those in use: nothing more to open.
    ASSERT_TRUE(pool->OpenUpTo(2).ok());
    EXPECT_EQ(opened_, 2);
  }
  // Never beyond the pool's size.
  ASSERT_TRUE(pool->OpenUpTo(10).ok());
  EXPECT_EQ(pool->stats().open, 3);
  // A failed open gives its slot back and says why.
  auto small = MakePool(2, absl::Milliseconds(50));
  fail_open_ = true;
  absl::Status st = small->OpenUpTo(2);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(small->stats().open, 0);
}

TEST_F(ConnectionPoolTest, LeaseOutlivesThePoolOwner) {
  auto pool = MakePool(1, absl::Milliseconds(50));
  auto lease = pool->Acquire();
  ASSERT_TRUE(lease.ok());
  std::weak_ptr<ConnectionPool<FakeConnection>> weak = pool;
  pool.reset();
  EXPECT_FALSE(weak.expired());
  lease->Release();
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace txcoord::participants
