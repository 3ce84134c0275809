#include "participants/xid.h"

#include <string>

#include "gtest/gtest.h"

namespace txcoord::participants {
namespace {

TEST(XidTest, NodeIdRules) {
  EXPECT_TRUE(ValidateNodeId("a").ok());
  EXPECT_TRUE(ValidateNodeId("node-1").ok());
  EXPECT_TRUE(ValidateNodeId(std::string(32, 'x')).ok());
  EXPECT_FALSE(ValidateNodeId("").ok());
  EXPECT_FALSE(ValidateNodeId(std::string(33, 'x')).ok());
  EXPECT_FALSE(ValidateNodeId("under_score").ok());
  EXPECT_FALSE(ValidateNodeId("dot.ted").ok());
  EXPECT_FALSE(ValidateNodeId("sp ace").ok());
  EXPECT_EQ(ValidateNodeId("a_b").code(), absl::StatusCode::kInvalidArgument);
}

TEST(XidTest, NodeIdOfGtrid) {
  EXPECT_EQ(NodeIdOfGtrid("node-1.7.42"), "node-1");
  EXPECT_EQ(NodeIdOfGtrid("n.0.0"), "n");
  EXPECT_EQ(NodeIdOfGtrid("node-1.7"), "");
  EXPECT_EQ(NodeIdOfGtrid("node-1.7.x"), "");
  EXPECT_EQ(NodeIdOfGtrid("node-1..1"), "");
  EXPECT_EQ(NodeIdOfGtrid(".1.1"), "");
  EXPECT_EQ(NodeIdOfGtrid("no_de.1.1"), "");
  EXPECT_EQ(NodeIdOfGtrid("node.1.2.3"), "");
  EXPECT_EQ(NodeIdOfGtrid(""), "");
}

TEST(XidTest, MakeXidEncodesGtridAndBqual) {
  absl::StatusOr<Xid> xid = MakeXid("node-1.3.17", 2, "orders_db");
  ASSERT_TRUE(xid.ok()) << xid.status();
  EXPECT_EQ(xid->format_id, kTxcFormatId);
  EXPECT_EQ(xid->gtrid, "node-1.3.17");
  EXPECT_EQ(xid->bqual, "2-orders_db");
  EXPECT_EQ(PostgresGid(*xid), "txc1_node-1.3.17_2-orders_db");
  EXPECT_EQ(XidToString(*xid), "node-1.3.17/2-orders_db");
  // "node-1.3.17" = 6e6f64652d312e332e3137, "2-orders_db" = 322d6f72646572735f6462
  EXPECT_EQ(XaLiteral(*xid), "X'6e6f64652d312e332e3137',X'322d6f72646572735f6462',1415070513");
}

TEST(XidTest, MakeXidChecksLimits) {
  // gtrid: exactly 64 bytes is fine, 65 is not.
  const std::string node(32, 'n');
  std::string txn64 = node + "." + std::string(20, '1') + "." + std::string(10, '2');
  ASSERT_EQ(txn64.size(), 64u);
  EXPECT_TRUE(MakeXid(txn64, 0, "b").ok());
  std::string txn65 = node + ".1." + std::string(65 - 35, '9');
  // the seq is then 30 digits: rejected as not a txn id or as too long.
  EXPECT_EQ(MakeXid(txn65, 0, "b").status().code(), absl::StatusCode::kInvalidArgument);
  std::string txn65b = node + "." + std::string(20, '1') + "." + std::string(11, '2');
  ASSERT_EQ(txn65b.size(), 65u);
  EXPECT_EQ(MakeXid(txn65b, 0, "b").status().code(), absl::StatusCode::kInvalidArgument);

  // bqual "<index>-<bind>": exactly 64 bytes is fine, 65 is not.
  EXPECT_TRUE(MakeXid("n.1.1", 1, std::string(62, 'b')).ok());
  EXPECT_EQ(MakeXid("n.1.1", 1, std::string(63, 'b')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeXid("n.1.1", 10, std::string(62, 'b')).status().code(),
            absl::StatusCode::kInvalidArgument);

  // The longest possible xid still gives a PostgreSQL gid below 200 bytes.
  absl::StatusOr<Xid> longest = MakeXid(txn64, 1, std::string(62, 'b'));
  ASSERT_TRUE(longest.ok());
  EXPECT_EQ(PostgresGid(*longest).size(), 5u + 64 + 1 + 64);
  EXPECT_LE(PostgresGid(*longest).size(), kMaxPostgresGidBytes);
}

TEST(XidTest, MakeXidRejectsBadInput) {
  EXPECT_FALSE(MakeXid("not-a-txn-id", 0, "b").ok());
  EXPECT_FALSE(MakeXid("bad_node.1.1", 0, "b").ok());
  EXPECT_FALSE(MakeXid("n.1.1", -1, "b").ok());
  EXPECT_FALSE(MakeXid("n.1.1", 0, "").ok());
  EXPECT_FALSE(MakeXid("n.1.1", 0, "it's").ok());
  EXPECT_FALSE(MakeXid("n.1.1", 0, "back\\slash").ok());
  EXPECT_FALSE(MakeXid("n.1.1", 0, "sp ace").ok());
}

TEST(XidTest, PostgresGidRoundTrip) {
  for (const auto& [txn, index, bind] :
       std::vector<std::tuple<std::string, int, std::string>>{
           {"n.0.0", 0, "a"},
           {"node-1.3.17", 2, "orders_db"},
           {"x.1.1", 7, "with_under_scores_and.dots:colons"}}) {
    absl::StatusOr<Xid> xid = MakeXid(txn, index, bind);
    ASSERT_TRUE(xid.ok()) << xid.status();
    absl::StatusOr<Xid> parsed = ParsePostgresGid(PostgresGid(*xid));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, *xid);
  }
}

TEST(XidTest, ParsePostgresGidRejectsForeignGids) {
  for (const char* gid : {"", "foreign", "txc1_", "txc1_n.1.1", "txc1__b", "txc2_n.1.1_0-b",
                          "TXC1_n.1.1_0-b", "txc1_n.1_0-b", "txc1_n.1.x_0-b", "txc1_n.1.1_",
                          "pgbouncer_1234"}) {
    EXPECT_EQ(ParsePostgresGid(gid).status().code(), absl::StatusCode::kInvalidArgument) << gid;
  }
  // Too long overall or in its parts.
  EXPECT_FALSE(ParsePostgresGid("txc1_n.1.1_" + std::string(65, 'b')).ok());
  EXPECT_FALSE(ParsePostgresGid("txc1_n.1.1_" + std::string(200, 'b')).ok());
  EXPECT_FALSE(
      ParsePostgresGid("txc1_" + std::string(32, 'n') + "." + std::string(20, '1') + "." +
                       std::string(11, '2') + "_0-b")
          .ok());
}

TEST(XidTest, XaRecoverRowsParseOrAreRefused) {
  auto ok = ParseXaRecoverRow(kTxcFormatId, 3, 2, "abcde");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->gtrid, "abc");
  EXPECT_EQ(ok->bqual, "de");
  EXPECT_FALSE(ParseXaRecoverRow(kTxcFormatId, 3, 3, "abcde").ok());   // lengths do not fit
  EXPECT_FALSE(ParseXaRecoverRow(kTxcFormatId, -1, 6, "abcde").ok());
  EXPECT_FALSE(ParseXaRecoverRow(kTxcFormatId, 65, 0, std::string(65, 'x')).ok());  // over the limit
  EXPECT_FALSE(ParseXaRecoverRow(int64_t{1} << 40, 1, 0, "x").ok());
}

}  // namespace
}  // namespace txcoord::participants
