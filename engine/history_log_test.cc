#include "engine/history_log.h"

#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

HistoryEntry Entry(int64_t time, const std::string& worker = "") {
  HistoryEntry h;
  h.set_time_micros(time);
  h.set_event(HistoryEntry::CLAIMED);
  h.set_worker_id(worker);
  h.set_attempt(static_cast<uint32_t>(time));
  return h;
}

class HistoryLogTest : public ::testing::Test {
 protected:
  HistoryLog log_;
};

TEST_F(HistoryLogTest, EntriesComeBackInOrderAndIntact) {
  log_.Append(Entry(1, "w"), 10);
  log_.Append(Entry(2, std::string(300, 'x')), 10);  // A multi-byte length.
  log_.Append(Entry(3), 10);
  std::vector<HistoryEntry> e = log_.Entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(log_.size(), 3u);
  EXPECT_EQ(e[0].SerializeAsString(), Entry(1, "w").SerializeAsString());
  EXPECT_EQ(e[1].worker_id(), std::string(300, 'x'));
  EXPECT_EQ(e[2].time_micros(), 3);
}

TEST_F(HistoryLogTest, OldestEntriesAreDroppedPastTheBound) {
  for (int i = 1; i <= 10; ++i) log_.Append(Entry(i, std::string(i * 20, 'w')), 4);
  std::vector<HistoryEntry> e = log_.Entries();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(log_.size(), 4u);
  EXPECT_EQ(e.front().time_micros(), 7);
  EXPECT_EQ(e.back().time_micros(), 10);
  // A smaller bound later (another owner's options) cuts more at once.
  log_.Append(Entry(11), 2);
  e = log_.Entries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e.front().time_micros(), 10);
}

TEST_F(HistoryLogTest, ZeroBoundKeepsNothing) {
  log_.Append(Entry(1), 0);
  EXPECT_EQ(log_.size(), 0u);
  EXPECT_TRUE(log_.Entries().empty());
}

}  // namespace
}  // namespace taskwal::engine
