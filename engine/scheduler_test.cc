#include "engine/scheduler.h"

#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  Scheduler s_;
};

TEST_F(SchedulerTest, HighestPriorityThenLowestIdFirst) {
  s_.AddPending(3, "", 0, 0);
  s_.AddPending(1, "", 0, 0);
  s_.AddPending(2, "", 5, 0);
  s_.PromoteDue(0);
  EXPECT_EQ(s_.PeekReady(""), 2u);
  s_.RemovePending(2, "", 5, 0);
  EXPECT_EQ(s_.PeekReady(""), 1u);
  s_.RemovePending(1, "", 0, 0);
  EXPECT_EQ(s_.PeekReady(""), 3u);
}

TEST_F(SchedulerTest, TaskWithoutNotBeforeIsReadyWithoutPromotion) {
  s_.AddPending(1, "", 0, 0);
  EXPECT_EQ(s_.PeekReady(""), 1u);
  EXPECT_EQ(s_.delayed_count(), 0u);
}

TEST_F(SchedulerTest, TypeFilterPicksOnlyThatType) {
  s_.PromoteDue(0);
  s_.AddPending(1, "email", 0, 0);
  s_.AddPending(2, "sms", 9, 0);
  EXPECT_EQ(s_.PeekReady("email"), 1u);
  EXPECT_EQ(s_.PeekReady("sms"), 2u);
  EXPECT_EQ(s_.PeekReady(""), 2u);
  EXPECT_EQ(s_.PeekReady("fax"), std::nullopt);
}

TEST_F(SchedulerTest, DelayedTasksBecomeReadyOnlyWhenDue) {
  s_.PromoteDue(100);
  s_.AddPending(1, "", 0, 500);
  EXPECT_EQ(s_.PeekReady(""), std::nullopt);
  EXPECT_EQ(s_.NextDelayed(), 500);
  s_.PromoteDue(499);
  EXPECT_EQ(s_.PeekReady(""), std::nullopt);
  s_.PromoteDue(500);
  EXPECT_EQ(s_.PeekReady(""), 1u);
  EXPECT_EQ(s_.NextDelayed(), std::nullopt);
  s_.RemovePending(1, "", 0, 500);
  EXPECT_EQ(s_.ready_count(), 0u);
}

TEST_F(SchedulerTest, RemovePendingWorksForDelayedTasks) {
  s_.AddPending(1, "", 0, 500);
  s_.RemovePending(1, "", 0, 500);
  EXPECT_EQ(s_.delayed_count(), 0u);
  s_.PromoteDue(1000);
  EXPECT_EQ(s_.PeekReady(""), std::nullopt);
}

TEST_F(SchedulerTest, LeasesAndFinishedAreOrderedByTime) {
  s_.AddLease(1, 300);
  s_.AddLease(2, 100);
  s_.AddLease(3, 200);
  EXPECT_EQ(s_.DueLeases(200), (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(s_.NextLeaseDeadline(), 100);
  s_.RemoveLease(2, 100);
  EXPECT_EQ(s_.NextLeaseDeadline(), 200);

  s_.AddFinished(7, 50);
  s_.AddFinished(8, 60);
  s_.AddFinished(9, 70);
  EXPECT_EQ(s_.FinishedBefore(65, 10), (std::vector<uint64_t>{7, 8}));
  EXPECT_EQ(s_.FinishedBefore(100, 1), (std::vector<uint64_t>{7}));
  s_.RemoveFinished(7, 50);
  EXPECT_EQ(s_.FinishedBefore(65, 10), (std::vector<uint64_t>{8}));
}

// Without retention nothing asks which tasks finished when: no index.
TEST(SchedulerNoRetentionTest, FinishedTasksAreNotIndexed) {
  Scheduler s(/*track_finished=*/false);
  s.AddFinished(7, 50);
  s.AddFinished(8, 60);
  EXPECT_TRUE(s.FinishedBefore(100, 10).empty());
  s.RemoveFinished(7, 50);  // Not there: nothing to do.
  EXPECT_TRUE(s.FinishedBefore(100, 10).empty());
}

}  // namespace
}  // namespace taskwal::engine
