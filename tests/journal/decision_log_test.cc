#include "journal/decision_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace txcoord::journal {
namespace {

using ::testing::HasSubstr;
using txcoord::testing::TempDir;

constexpr uint64_t kSmall = DecisionLog::kMinBytes;  // 14 one-block groups a lap
constexpr uint64_t kFirstGroup = 2 * DecisionLog::kBlock;

std::vector<DecisionLog::Entry> Reopen(const std::string& path, uint64_t bytes = kSmall) {
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, bytes, &lap);
  EXPECT_TRUE(log.ok()) << log.status();
  return lap;
}

std::vector<std::string> Bytes(const std::vector<DecisionLog::Entry>& lap) {
  std::vector<std::string> out;
  for (const auto& e : lap) out.push_back(e.bytes);
  return out;
}

// Overwrites one byte of the file, as a damaged sector would.
void Damage(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

// A new small log at `path` with its first lap started.
std::unique_ptr<DecisionLog> StartedLog(const std::string& path) {
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, kSmall, &lap);
  EXPECT_TRUE(log.ok()) << log.status();
  if (!log.ok()) return nullptr;
  EXPECT_TRUE(lap.empty());
  EXPECT_TRUE((*log)->StartLap().ok());
  return *std::move(log);
}

// A log with three one-record groups (seq 1, 2, 3) in its first lap.
std::string ThreeGroups(const TempDir& tmp) {
  const std::string path = tmp.Sub("decisions.log");
  std::unique_ptr<DecisionLog> log = StartedLog(path);
  if (log == nullptr) return path;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    EXPECT_TRUE(log->Append(seq, {std::string("decision-") + std::to_string(seq)}).ok());
  }
  return path;
}

TEST(DecisionLogTest, MissingFileIsCreatedZeroFilledAtTheFirstLap) {
  TempDir tmp;
  const std::string path = tmp.Sub("decisions.log");
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, kSmall, &lap);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_TRUE(lap.empty());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE((*log)->Fits(10)) << "no lap started yet";
  ASSERT_TRUE((*log)->StartLap().ok());
  EXPECT_EQ(std::filesystem::file_size(path), kSmall);
  EXPECT_TRUE(Reopen(path).empty());
}

TEST(DecisionLogTest, GroupsAreReadBackInOrder) {
  TempDir tmp;
  const std::string path = tmp.Sub("decisions.log");
  {
    std::unique_ptr<DecisionLog> log = StartedLog(path);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->Append(7, {"a", "bb", ""}).ok());
    ASSERT_TRUE(log->Append(10, {std::string(5000, 'x')}).ok());  // two blocks
    ASSERT_TRUE(log->Append(11, {"c"}).ok());
  }
  std::vector<DecisionLog::Entry> lap = Reopen(path);
  ASSERT_EQ(lap.size(), 5u);
  EXPECT_THAT(Bytes(lap), ::testing::ElementsAre("a", "bb", "", std::string(5000, 'x'), "c"));
  for (size_t i = 0; i < lap.size(); ++i) EXPECT_EQ(lap[i].seq, 7 + i);
}

TEST(DecisionLogTest, ANewLapHidesThePreviousOne) {
  TempDir tmp;
  const std::string path = tmp.Sub("decisions.log");
  std::unique_ptr<DecisionLog> log = StartedLog(path);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append(1, {"one"}).ok());
  ASSERT_TRUE(log->Append(2, {"two"}).ok());
  ASSERT_TRUE(log->StartLap().ok());
  EXPECT_TRUE(Reopen(path).empty()) << "lap 2 has nothing yet";
  ASSERT_TRUE(log->Append(3, {"three"}).ok());
  std::vector<DecisionLog::Entry> read = Reopen(path);
  EXPECT_THAT(Bytes(read), ::testing::ElementsAre("three"));
  // The third lap goes to the other header slot and overwrites lap 2.
  ASSERT_TRUE(log->StartLap().ok());
  ASSERT_TRUE(log->Append(4, {"four"}).ok());
  EXPECT_THAT(Bytes(Reopen(path)), ::testing::ElementsAre("four"));
}

TEST(DecisionLogTest, AFullLapTakesNoMoreGroups) {
  TempDir tmp;
  std::unique_ptr<DecisionLog> log = StartedLog(tmp.Sub("decisions.log"));
  ASSERT_NE(log, nullptr);
  const uint64_t groups = (kSmall - kFirstGroup) / DecisionLog::kBlock;
  for (uint64_t i = 0; i < groups; ++i) {
    ASSERT_TRUE(log->Fits(100));
    ASSERT_TRUE(log->Append(i + 1, {"d"}).ok());
  }
  EXPECT_FALSE(log->Fits(1));
  EXPECT_EQ(log->Append(groups + 1, {"d"}).code(), absl::StatusCode::kInternal);
  EXPECT_LT(log->max_payload_bytes(), kSmall / 4);
  ASSERT_TRUE(log->StartLap().ok());
  EXPECT_TRUE(log->Fits(log->max_payload_bytes()));
}

// The last write never returned (a crash before its fdatasync): the lap ends
// before it, with no error.
TEST(DecisionLogTest, ATornLastGroupEndsTheLap) {
  TempDir tmp;
  const std::string path = ThreeGroups(tmp);
  Damage(path, kFirstGroup + 2 * DecisionLog::kBlock + 40);
  EXPECT_THAT(Bytes(Reopen(path)), ::testing::ElementsAre("decision-1", "decision-2"));
}

TEST(DecisionLogTest, ADamagedGroupInsideTheLapIsDataLoss) {
  TempDir tmp;
  const std::string path = ThreeGroups(tmp);
  Damage(path, kFirstGroup + DecisionLog::kBlock + 40);
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, kSmall, &lap);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("damaged at offset 12288"));
}

TEST(DecisionLogTest, DamagedHeadersAreDataLossWhenDecisionsFollow) {
  TempDir tmp;
  const std::string path = ThreeGroups(tmp);  // lap 1: header slot 1
  {
    std::vector<DecisionLog::Entry> lap;
    auto log = DecisionLog::Open(path, kSmall, &lap);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->StartLap().ok());  // lap 2: slot 0
    ASSERT_TRUE((*log)->Append(4, {"decision-4"}).ok());
  }
  // Lap 2's header lost: the file falls back to lap 1's, but lap 2's group
  // at the start says the header is wrong.
  Damage(path, 20);
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, kSmall, &lap);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("decisions of lap 2 (the header says 1)"));
  // Both headers lost.
  Damage(path, DecisionLog::kBlock + 20);
  log = DecisionLog::Open(path, kSmall, &lap);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("header blocks"));
}

TEST(DecisionLogTest, AFileOfAnotherSizeIsReadThenRecreated) {
  TempDir tmp;
  const std::string path = ThreeGroups(tmp);
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, 2 * kSmall, &lap);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(lap.size(), 3u);
  ASSERT_TRUE((*log)->StartLap().ok());
  EXPECT_EQ(std::filesystem::file_size(path), 2 * kSmall);
  ASSERT_TRUE((*log)->Append(4, {"decision-4"}).ok());
  EXPECT_THAT(Bytes(Reopen(path, 2 * kSmall)), ::testing::ElementsAre("decision-4"));
}

TEST(DecisionLogTest, ATruncatedFileIsDataLoss) {
  TempDir tmp;
  const std::string path = ThreeGroups(tmp);
  std::filesystem::resize_file(path, 5000);
  std::vector<DecisionLog::Entry> lap;
  auto log = DecisionLog::Open(path, kSmall, &lap);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("5000 bytes"));
}

}  // namespace
}  // namespace txcoord::journal
