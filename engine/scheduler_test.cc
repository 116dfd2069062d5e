#include "engine/scheduler.h"

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
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

std::map<std::string, size_t> Readied(Scheduler& s) {
  std::map<std::string, size_t> readied;
  s.TakeReadied([&](absl::string_view type, size_t n) {
    readied[std::string(type)] += n;
  });
  return readied;
}

TEST_F(SchedulerTest, PausedTypeIsHiddenAndResumeCountsItsReadyTasks) {
  s_.AddPending(1, "email", 9, 0);
  s_.AddPending(2, "order", 0, 0);
  s_.AddPending(3, "email", 0, 500);
  s_.AddPending(4, "order", 0, 900);
  EXPECT_TRUE(s_.SetPaused("email", true));
  EXPECT_FALSE(s_.SetPaused("email", true));
  EXPECT_TRUE(s_.IsPaused("email"));
  // email's readied count from before the pause is dropped.
  EXPECT_EQ(Readied(s_), (std::map<std::string, size_t>{{"order", 1}}));
  EXPECT_EQ(s_.PeekReady(""), 2u);
  EXPECT_EQ(s_.PeekReady("email"), std::nullopt);
  EXPECT_EQ(s_.NextDelayed(""), 900);
  EXPECT_EQ(s_.NextDelayed("email"), std::nullopt);
  // Promotion goes on while paused, silently.
  s_.PromoteDue(600);
  EXPECT_TRUE(Readied(s_).empty());
  EXPECT_EQ(s_.PeekReady("email"), std::nullopt);
  EXPECT_EQ(s_.PausedTypes(), (std::vector<std::string>{"email"}));

  EXPECT_TRUE(s_.SetPaused("email", false));
  EXPECT_EQ(Readied(s_), (std::map<std::string, size_t>{{"email", 2}}));
  EXPECT_EQ(s_.PeekReady(""), 1u);
  EXPECT_EQ(s_.NextDelayed(""), 900);
  EXPECT_TRUE(s_.PausedTypes().empty());
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

// Every task that enters a ready set is reported once by TakeReadied, by
// type: added ready at once (no not-before time, or one already passed by
// PromoteDue) or promoted.
TEST_F(SchedulerTest, TakeReadiedReportsEveryTaskThatBecameReady) {
  std::map<std::string, size_t> readied;
  const auto take = [&] {
    readied.clear();
    s_.TakeReadied([&](absl::string_view type, size_t count) {
      readied[std::string(type)] += count;
    });
  };
  s_.PromoteDue(100);
  s_.AddPending(1, "email", 0, 300);
  s_.AddPending(2, "sms", 0, 200);
  s_.AddPending(3, "email", 0, 200);
  s_.AddPending(4, "email", 0, 900);
  s_.AddPending(5, "sms", 0, 0);   // Ready at once.
  s_.AddPending(6, "sms", 0, 50);  // Not before a time already passed.
  take();
  EXPECT_EQ(readied, (std::map<std::string, size_t>{{"sms", 2}}));
  take();
  EXPECT_TRUE(readied.empty());
  EXPECT_EQ(s_.PromoteDue(199), 0u);
  take();
  EXPECT_TRUE(readied.empty());
  // Due first, then lowest id: 2 and 3 at 200, then 1 at 300.
  EXPECT_EQ(s_.PromoteDue(300), 3u);
  take();
  EXPECT_EQ(readied, (std::map<std::string, size_t>{{"email", 2}, {"sms", 1}}));
  // A clock moved backwards promotes (and reports) nothing.
  EXPECT_EQ(s_.PromoteDue(250), 0u);
  // A task whose time has already passed goes to the ready set at once.
  s_.AddPending(7, "email", 0, 280);
  EXPECT_EQ(s_.PromoteDue(1000), 1u);
  take();
  EXPECT_EQ(readied, (std::map<std::string, size_t>{{"email", 2}}));
  EXPECT_EQ(s_.ready_count(), 7u);
  EXPECT_EQ(s_.delayed_count(), 0u);
}

// The rank the engine compares across partitions: minus the priority of
// the task PeekReady would return.
TEST_F(SchedulerTest, BestReadyRankIsMinusTheBestReadyPriority) {
  EXPECT_EQ(s_.BestReadyRank(""), std::nullopt);
  EXPECT_EQ(s_.BestReadyRank("email"), std::nullopt);
  EXPECT_LT(Scheduler::RankOf(9), Scheduler::RankOf(0));
  EXPECT_LT(Scheduler::RankOf(INT32_MAX), Scheduler::RankOf(INT32_MIN));

  s_.AddPending(1, "email", -3, 0);
  s_.AddPending(2, "sms", 7, 0);
  s_.AddPending(3, "email", 4, 500);  // Delayed: not ready, not ranked.
  EXPECT_EQ(s_.BestReadyRank("email"), Scheduler::RankOf(-3));
  EXPECT_EQ(s_.BestReadyRank("sms"), Scheduler::RankOf(7));
  EXPECT_EQ(s_.BestReadyRank(""), Scheduler::RankOf(7));
  EXPECT_EQ(s_.BestReadyRank("fax"), std::nullopt);

  s_.PromoteDue(500);
  EXPECT_EQ(s_.BestReadyRank("email"), Scheduler::RankOf(4));
  EXPECT_EQ(s_.PeekReady("email"), 3u);

  // Extreme priorities do not overflow the rank.
  s_.AddPending(4, "sms", INT32_MIN, 0);
  s_.RemovePending(2, "sms", 7, 0);
  EXPECT_EQ(s_.BestReadyRank("sms"), -static_cast<int64_t>(INT32_MIN));
  s_.AddPending(5, "sms", INT32_MAX, 0);
  EXPECT_EQ(s_.BestReadyRank(""), -static_cast<int64_t>(INT32_MAX));
  EXPECT_EQ(s_.PeekReady(""), 5u);

  // Empty again once every ready task is gone.
  s_.RemovePending(5, "sms", INT32_MAX, 0);
  s_.RemovePending(4, "sms", INT32_MIN, 0);
  EXPECT_EQ(s_.BestReadyRank("sms"), std::nullopt);
  EXPECT_EQ(s_.BestReadyRank(""), Scheduler::RankOf(4));
}

TEST_F(SchedulerTest, RemovePendingWorksForDelayedTasks) {
  s_.AddPending(1, "", 0, 500);
  s_.RemovePending(1, "", 0, 500);
  EXPECT_EQ(s_.delayed_count(), 0u);
  s_.PromoteDue(1000);
  EXPECT_EQ(s_.PeekReady(""), std::nullopt);
}

// The oldest ready task is the one ready longest, whatever its priority or
// id, paused or not; a delayed task counts from its not_before once due.
TEST_F(SchedulerTest, OldestReadyIsTheLongestReadyTask) {
  EXPECT_EQ(s_.OldestReady("email", 1000), std::nullopt);
  s_.AddPending(5, "email", 0, 0, /*pending_since=*/100);
  s_.AddPending(3, "email", 9, 0, /*pending_since=*/200);
  s_.AddPending(4, "email", 0, 600, /*pending_since=*/150);  // Delayed.
  s_.AddPending(6, "sms", 0, 0, /*pending_since=*/50);
  EXPECT_EQ(s_.OldestReady("email", 1000), 100);
  EXPECT_EQ(s_.OldestReady("sms", 1000), 50);
  EXPECT_EQ(s_.OldestReady("none", 1000), std::nullopt);

  // The best task (priority 9) goes first; the oldest stays.
  EXPECT_EQ(s_.PeekReady("email"), 3u);
  s_.RemovePending(3, "email", 9, 0);
  EXPECT_EQ(s_.OldestReady("email", 1000), 100);
  s_.RemovePending(5, "email", 0, 0);
  // Only the delayed one is left: ready from 600, promoted or not.
  EXPECT_EQ(s_.OldestReady("email", 500), std::nullopt);
  EXPECT_EQ(s_.OldestReady("email", 600), 600);
  s_.PromoteDue(700);
  EXPECT_EQ(s_.OldestReady("email", 700), 600);
  // A not_before already past counts from when the task became PENDING.
  s_.AddPending(7, "email", 0, 20, /*pending_since=*/800);
  EXPECT_EQ(s_.OldestReady("email", 900), 600);
  s_.RemovePending(4, "email", 0, 600);
  EXPECT_EQ(s_.OldestReady("email", 900), 800);

  s_.SetPaused("sms", true);
  EXPECT_EQ(s_.OldestReady("sms", 1000), 50);
  s_.RemovePending(6, "sms", 0, 0);
  EXPECT_EQ(s_.OldestReady("sms", 1000), std::nullopt);
}

// OldestReady against a plain model through many random adds, removals
// (claims in any order, with priorities) and re-adds of the same task: the
// heap's lazily dropped entries and its rebuilds never show.
TEST(SchedulerOldestReadyTest, MatchesAModelThroughRandomChanges) {
  Scheduler s;
  struct Task {
    int32_t priority;
    int64_t since;
  };
  std::map<uint64_t, Task> ready;  // The model: ready tasks of type "t".
  std::mt19937_64 rng(7);
  uint64_t next_id = 1;
  int64_t now = 1000;
  for (int step = 0; step < 20000; ++step) {
    now += static_cast<int64_t>(rng() % 3);
    const int op = static_cast<int>(rng() % 10);
    if (op < 5 || ready.empty()) {
      // A new task.
      const uint64_t id = next_id++;
      const int32_t priority = static_cast<int32_t>(rng() % 4);
      // Ready since now or a little before (a due retry).
      const int64_t since = now - static_cast<int64_t>(rng() % 50);
      s.AddPending(id, "t", priority, /*not_before=*/0, since);
      ready[id] = {priority, since};
    } else {
      // Remove: the best by priority (a claim), or any (a cancel).
      auto it = ready.begin();
      if (op < 8) {
        for (auto j = ready.begin(); j != ready.end(); ++j) {
          if (j->second.priority > it->second.priority) it = j;
        }
      } else {
        std::advance(it, static_cast<long>(rng() % ready.size()));
      }
      s.RemovePending(it->first, "t", it->second.priority, 0);
      if (op == 9) {
        // Back to PENDING at once, ready since later.
        s.AddPending(it->first, "t", it->second.priority, 0, now);
        it->second.since = now;
      } else {
        ready.erase(it);
      }
    }
    if (step % 7 == 0 || step > 19900) {
      std::optional<int64_t> want;
      for (const auto& [id, task] : ready) {
        if (!want.has_value() || task.since < *want) want = task.since;
      }
      ASSERT_EQ(s.OldestReady("t", now), want) << "step " << step;
    }
  }
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
