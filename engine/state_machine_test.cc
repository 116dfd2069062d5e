#include "engine/state_machine.h"

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/engine_impl.h"
#include "engine/engine_testing.h"
#include "engine/journal.h"
#include "engine/snapshot.pb.h"
#include "engine/task_entry.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"

namespace taskwal::engine {
namespace {

Transition SubmitOf(uint64_t id, const std::string& key, int64_t now = 10) {
  Transition t;
  t.set_time_micros(now);
  Task* task = t.mutable_submit()->add_tasks();
  task->set_id(id);
  task->set_idempotency_key(key);
  task->set_status(PENDING);
  task->set_max_attempts(2);
  task->set_created_micros(now);
  return t;
}

Transition ClaimOf(uint64_t id, uint64_t token, int64_t deadline) {
  Transition t;
  t.set_time_micros(20);
  t.mutable_claim()->set_task_id(id);
  t.mutable_claim()->set_worker_id("w");
  t.mutable_claim()->set_claim_token(token);
  t.mutable_claim()->set_lease_deadline_micros(deadline);
  return t;
}

// The per-type counts and each type's oldest ready task (delayed ones
// counted as due), sorted by type.
std::string TypeDump(const StateMachine& sm) {
  std::map<std::string, std::string> types;
  for (const auto& [type, counts] : sm.counters().by_type) {
    std::string& line = types[type];
    for (uint64_t n : counts.by_status) absl::StrAppend(&line, n, ",");
    absl::StrAppend(&line, counts.tasks, " oldest ",
                    sm.scheduler().OldestReady(type, INT64_MAX).value_or(-1));
  }
  std::string out;
  for (const auto& [type, line] : types) {
    absl::StrAppend(&out, type, ":", line, "\n");
  }
  return out;
}

// Everything replay must reproduce, in a comparable form.
std::string Dump(const StateMachine& sm) {
  std::map<uint64_t, std::string> tasks;
  sm.table().ForEach([&](const TaskEntry& e) {
    std::string s = e.ToTask().SerializeAsString();
    for (const HistoryEntry& h : e.History()) {
      s += "|" + h.SerializeAsString();
    }
    tasks[e.id()] = s;
  });
  std::string out;
  for (const auto& [id, s] : tasks) absl::StrAppend(&out, id, ":", s, "\n");
  const Counters& c = sm.counters();
  for (uint64_t n : c.by_status) absl::StrAppend(&out, n, ",");
  absl::StrAppend(&out, c.submitted, ",", c.claims, ",", c.completions, ",",
                  c.failed_attempts, ",", c.lease_expiries, ",", c.retries, ",",
                  c.cancellations, ",", c.deletions, ",", c.retention_removals,
                  ",", c.transitions, ";", sm.next_task_id(), ",",
                  sm.next_claim_token());
  absl::StrAppend(&out, "\n", TypeDump(sm));
  return out;
}

class StateMachineTest : public ::testing::Test {
 protected:
  StateMachine sm_{4, 8};
};

TEST_F(StateMachineTest, SubmitClaimCompleteMovesThroughLifecycle) {
  ASSERT_TRUE(sm_.Apply(SubmitOf(1, "k"), 1).ok());
  EXPECT_EQ(sm_.counters().by_status[PENDING], 1u);
  EXPECT_EQ(sm_.next_task_id(), 2u);
  sm_.scheduler().PromoteDue(100);
  EXPECT_EQ(sm_.scheduler().PeekReady(""), 1u);

  ASSERT_TRUE(sm_.Apply(ClaimOf(1, 7, 1000), 2).ok());
  EXPECT_EQ(sm_.scheduler().PeekReady(""), std::nullopt);
  EXPECT_EQ(sm_.scheduler().DueLeases(1000), std::vector<uint64_t>{1});
  EXPECT_EQ(sm_.next_claim_token(), 8u);

  Transition done;
  done.set_time_micros(30);
  done.mutable_complete()->set_task_id(1);
  done.mutable_complete()->set_result("ok");
  ASSERT_TRUE(sm_.Apply(done, 3).ok());
  std::optional<Task> t = sm_.table().GetTask(1);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->status(), COMPLETED);
  EXPECT_EQ(t->result(), "ok");
  EXPECT_EQ(t->finished_micros(), 30);
  EXPECT_EQ(sm_.table().LastLsn(1), 3u);
  EXPECT_TRUE(sm_.scheduler().DueLeases(1000).empty());
  EXPECT_EQ(sm_.table().GetHistory(1)->size(), 3u);
}

TEST_F(StateMachineTest, RecordsThatDoNotFitAreRejectedWithoutChange) {
  ASSERT_TRUE(sm_.Apply(SubmitOf(1, "k"), 1).ok());
  const std::string before = Dump(sm_);

  Transition complete_pending;
  complete_pending.mutable_complete()->set_task_id(1);
  EXPECT_EQ(sm_.Apply(complete_pending, 2).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(sm_.Apply(ClaimOf(99, 5, 10), 2).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(sm_.Apply(SubmitOf(1, "other"), 2).code(),
            absl::StatusCode::kInternal);  // Id reused.
  EXPECT_EQ(sm_.Apply(Transition(), 2).code(), absl::StatusCode::kInternal);

  // A batch whose second task reuses a key must not apply its first task.
  Transition batch = SubmitOf(2, "fresh");
  *batch.mutable_submit()->add_tasks() = SubmitOf(3, "k").submit().tasks(0);
  EXPECT_EQ(sm_.Apply(batch, 2).code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(sm_.table().Contains(2));
  EXPECT_EQ(Dump(sm_), before);
}

TEST_F(StateMachineTest, FailAtLastAttemptIsTerminalAndRetryResetsBudget) {
  ASSERT_TRUE(sm_.Apply(SubmitOf(1, "k"), 1).ok());
  Transition fail;
  fail.set_time_micros(40);
  fail.mutable_fail()->set_task_id(1);
  fail.mutable_fail()->set_error("boom");
  fail.mutable_fail()->set_retry_at_micros(500);

  ASSERT_TRUE(sm_.Apply(ClaimOf(1, 1, 100), 2).ok());
  ASSERT_TRUE(sm_.Apply(fail, 3).ok());
  EXPECT_EQ(sm_.table().GetTask(1)->status(), PENDING);
  EXPECT_EQ(sm_.scheduler().NextDelayed(), 500);

  ASSERT_TRUE(sm_.Apply(ClaimOf(1, 2, 100), 4).ok());
  ASSERT_TRUE(sm_.Apply(fail, 5).ok());
  Task t = *sm_.table().GetTask(1);
  EXPECT_EQ(t.status(), FAILED);
  EXPECT_EQ(t.attempts(), 2u);
  EXPECT_EQ(t.last_error(), "boom");

  Transition retry;
  retry.mutable_retry()->set_task_id(1);
  ASSERT_TRUE(sm_.Apply(retry, 6).ok());
  t = *sm_.table().GetTask(1);
  EXPECT_EQ(t.status(), PENDING);
  EXPECT_EQ(t.attempts(), 0u);
  EXPECT_EQ(sm_.counters().by_status[FAILED], 0u);
  EXPECT_EQ(sm_.counters().by_status[PENDING], 1u);
}

TEST_F(StateMachineTest, HistoryIsBoundedKeepingNewest) {
  ASSERT_TRUE(sm_.Apply(SubmitOf(1, "k"), 1).ok());
  Transition retry;
  retry.mutable_retry()->set_task_id(1);
  for (int i = 0; i < 20; ++i) {
    retry.set_time_micros(100 + i);
    ASSERT_TRUE(sm_.Apply(retry, 2 + i).ok());
  }
  std::vector<HistoryEntry> h = *sm_.table().GetHistory(1);
  ASSERT_EQ(h.size(), 8u);
  EXPECT_EQ(h.back().time_micros(), 119);
  EXPECT_EQ(h.front().time_micros(), 112);
}

Transition DependencyOf(uint64_t id, uint64_t dependency, TaskStatus status) {
  Transition t;
  t.set_time_micros(30);
  t.mutable_dependency()->set_task_id(id);
  t.mutable_dependency()->set_dependency_id(dependency);
  t.mutable_dependency()->set_dependency_status(status);
  return t;
}

TEST_F(StateMachineTest, WaitingTaskBecomesReadyWithItsLastDependency) {
  Transition submit = SubmitOf(3, "c");
  Task* t = submit.mutable_submit()->mutable_tasks(0);
  t->add_depends_on(1);
  t->add_depends_on(2);
  t->add_waiting_for(1);
  t->add_waiting_for(2);
  ASSERT_TRUE(sm_.Apply(submit, 1).ok());
  sm_.scheduler().PromoteDue(100);
  EXPECT_EQ(sm_.scheduler().PeekReady(""), std::nullopt);
  // A waiting task is neither claimed nor retried.
  EXPECT_FALSE(sm_.Apply(ClaimOf(3, 7, 1000), 2).ok());
  Transition retry;
  retry.mutable_retry()->set_task_id(3);
  EXPECT_FALSE(sm_.Apply(retry, 2).ok());
  // Only a dependency it waits for.
  EXPECT_FALSE(sm_.Apply(DependencyOf(3, 4, COMPLETED), 2).ok());
  ASSERT_TRUE(sm_.Apply(DependencyOf(3, 1, COMPLETED), 2).ok());
  EXPECT_FALSE(sm_.Apply(DependencyOf(3, 1, COMPLETED), 3).ok());
  EXPECT_EQ(sm_.scheduler().PeekReady(""), std::nullopt);
  ASSERT_TRUE(sm_.Apply(DependencyOf(3, 2, COMPLETED), 3).ok());
  EXPECT_EQ(sm_.scheduler().PeekReady(""), 3u);
  EXPECT_EQ(sm_.table().GetTask(3)->waiting_for_size(), 0);
}

TEST_F(StateMachineTest, FailedDependencyEndsTheTaskByItsPolicy) {
  Transition submit = SubmitOf(3, "c");
  Task* t = submit.mutable_submit()->mutable_tasks(0);
  t->add_depends_on(1);
  t->add_waiting_for(1);
  t->set_on_dependency_failure(DEPENDENCY_FAILURE_CANCEL);
  ASSERT_TRUE(sm_.Apply(submit, 1).ok());
  ASSERT_TRUE(sm_.Apply(DependencyOf(3, 1, TASK_STATUS_UNSPECIFIED), 2).ok());
  const Task after = *sm_.table().GetTask(3);
  EXPECT_EQ(after.status(), CANCELLED);
  EXPECT_EQ(after.last_error(), "dependency 1 no longer exists");
  EXPECT_EQ(sm_.counters().by_status[CANCELLED], 1u);
  EXPECT_EQ(sm_.scheduler().FinishedBefore(100, 10), std::vector<uint64_t>{3});

  // Dependencies that cannot be a task's are refused.
  Transition self = SubmitOf(5, "e");
  self.mutable_submit()->mutable_tasks(0)->add_depends_on(5);
  EXPECT_FALSE(sm_.Apply(self, 3).ok());
  Transition stray = SubmitOf(5, "e");
  stray.mutable_submit()->mutable_tasks(0)->add_waiting_for(1);
  EXPECT_FALSE(sm_.Apply(stray, 3).ok());
}

TEST_F(StateMachineTest, DeleteFreesKeyAndIdIsNeverReused) {
  ASSERT_TRUE(sm_.Apply(SubmitOf(1, "k"), 1).ok());
  Transition cancel;
  cancel.mutable_cancel()->set_task_id(1);
  ASSERT_TRUE(sm_.Apply(cancel, 2).ok());
  Transition del;
  del.mutable_delete_()->set_task_id(1);
  ASSERT_TRUE(sm_.Apply(del, 3).ok());
  EXPECT_FALSE(sm_.table().LookupKey("k").has_value());
  EXPECT_EQ(sm_.Apply(SubmitOf(1, "k"), 4).code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(sm_.Apply(SubmitOf(2, "k"), 4).ok());
  EXPECT_EQ(sm_.counters().deletions, 1u);
}

Transition Typed(Transition t, const std::string& type) {
  for (Task& task : *t.mutable_submit()->mutable_tasks()) task.set_type(type);
  return t;
}

// One type's counts as "pending,claimed,completed,failed,cancelled", or
// "none" when the type has no entry.
std::string CountsOf(const StateMachine& sm, const std::string& type) {
  auto it = sm.counters().by_type.find(type);
  if (it == sm.counters().by_type.end()) return "none";
  const TypeCounts& c = it->second;
  EXPECT_EQ(c.tasks, c.by_status[PENDING] + c.by_status[CLAIMED] +
                         c.by_status[COMPLETED] + c.by_status[FAILED] +
                         c.by_status[CANCELLED]);
  return absl::StrCat(c.by_status[PENDING], ",", c.by_status[CLAIMED], ",",
                      c.by_status[COMPLETED], ",", c.by_status[FAILED], ",",
                      c.by_status[CANCELLED]);
}

// A state machine rebuilt from sm's tasks and meta, as snapshot loading
// does.
std::unique_ptr<StateMachine> Restored(const StateMachine& sm) {
  auto restored = std::make_unique<StateMachine>(4, 8);
  std::vector<std::unique_ptr<TaskEntry>> entries;
  sm.table().ForEach([&](const TaskEntry& e) { entries.push_back(e.Clone()); });
  for (auto& entry : entries) {
    EXPECT_TRUE(restored->RestoreTask(std::move(entry)).ok());
  }
  restored->RestoreMeta(sm.MakeSnapshotMeta());
  return restored;
}

TEST_F(StateMachineTest, TypeCountsFollowEveryTransition) {
  ASSERT_TRUE(sm_.Apply(Typed(SubmitOf(1, "a", 10), "mail"), 1).ok());
  ASSERT_TRUE(sm_.Apply(Typed(SubmitOf(2, "b", 11), "mail"), 2).ok());
  ASSERT_TRUE(sm_.Apply(Typed(SubmitOf(3, "c", 12), "sms"), 3).ok());
  EXPECT_EQ(CountsOf(sm_, "mail"), "2,0,0,0,0");
  EXPECT_EQ(CountsOf(sm_, "sms"), "1,0,0,0,0");
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 100), 10);

  ASSERT_TRUE(sm_.Apply(ClaimOf(1, 1, 1000), 4).ok());
  EXPECT_EQ(CountsOf(sm_, "mail"), "1,1,0,0,0");
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 100), 11);
  Transition complete;
  complete.set_time_micros(30);
  complete.mutable_complete()->set_task_id(1);
  ASSERT_TRUE(sm_.Apply(complete, 5).ok());
  EXPECT_EQ(CountsOf(sm_, "mail"), "1,0,1,0,0");

  // Fail with attempts left (a lease expiry is one too), then on the last.
  Transition fail;
  fail.set_time_micros(40);
  fail.mutable_fail()->set_task_id(2);
  fail.mutable_fail()->set_lease_expired(true);
  ASSERT_TRUE(sm_.Apply(ClaimOf(2, 5, 1000), 6).ok());
  ASSERT_TRUE(sm_.Apply(fail, 7).ok());
  EXPECT_EQ(CountsOf(sm_, "mail"), "1,0,1,0,0");
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 100), 40);
  ASSERT_TRUE(sm_.Apply(ClaimOf(2, 9, 1000), 8).ok());
  fail.mutable_fail()->set_lease_expired(false);
  ASSERT_TRUE(sm_.Apply(fail, 9).ok());
  EXPECT_EQ(CountsOf(sm_, "mail"), "0,0,1,1,0");
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 100), std::nullopt);

  Transition retry;
  retry.set_time_micros(50);
  retry.mutable_retry()->set_task_id(2);
  ASSERT_TRUE(sm_.Apply(retry, 10).ok());
  EXPECT_EQ(CountsOf(sm_, "mail"), "1,0,1,0,0");
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 100), 50);

  Transition cancel;
  cancel.mutable_cancel()->set_task_id(3);
  ASSERT_TRUE(sm_.Apply(cancel, 11).ok());
  EXPECT_EQ(CountsOf(sm_, "sms"), "0,0,0,0,1");

  // A dependency that fails ends its dependent by its policy.
  Transition dependent = Typed(SubmitOf(5, "e", 60), "sms");
  dependent.mutable_submit()->mutable_tasks(0)->add_depends_on(3);
  dependent.mutable_submit()->mutable_tasks(0)->add_waiting_for(3);
  ASSERT_TRUE(sm_.Apply(dependent, 12).ok());
  EXPECT_EQ(CountsOf(sm_, "sms"), "1,0,0,0,1");
  EXPECT_EQ(sm_.scheduler().OldestReady("sms", 100), std::nullopt);
  ASSERT_TRUE(sm_.Apply(DependencyOf(5, 3, CANCELLED), 13).ok());
  EXPECT_EQ(CountsOf(sm_, "sms"), "0,0,0,1,1");

  // The last task of a type takes its entry with it, by Delete or by
  // retention.
  Transition del;
  del.mutable_delete_()->set_task_id(3);
  ASSERT_TRUE(sm_.Apply(del, 14).ok());
  EXPECT_EQ(CountsOf(sm_, "sms"), "0,0,0,1,0");
  del.mutable_delete_()->set_task_id(5);
  del.mutable_delete_()->set_retention(true);
  ASSERT_TRUE(sm_.Apply(del, 15).ok());
  EXPECT_EQ(CountsOf(sm_, "sms"), "none");
  EXPECT_EQ(sm_.counters().by_type.size(), 1u);

  // A snapshot carries no counts: restoring the tasks rebuilds them, and
  // each ready task's wait counts from its newest history entry.
  std::unique_ptr<StateMachine> restored = Restored(sm_);
  EXPECT_EQ(TypeDump(*restored), TypeDump(sm_));
  EXPECT_EQ(CountsOf(*restored, "mail"), "1,0,1,0,0");
  EXPECT_EQ(restored->scheduler().OldestReady("mail", 100), 50);
}

TEST_F(StateMachineTest, OldestReadyOfADelayedTaskIsItsNotBefore) {
  Transition submit = Typed(SubmitOf(1, "a", 10), "mail");
  submit.mutable_submit()->mutable_tasks(0)->set_not_before_micros(500);
  ASSERT_TRUE(sm_.Apply(submit, 1).ok());
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 499), std::nullopt);
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 500), 500);
  ASSERT_TRUE(sm_.Apply(Typed(SubmitOf(2, "b", 700), "mail"), 2).ok());
  sm_.scheduler().PromoteDue(800);
  EXPECT_EQ(sm_.scheduler().OldestReady("mail", 800), 500);
  EXPECT_EQ(TypeDump(*Restored(sm_)), TypeDump(sm_));
}

// Partition 1 of 4 owns ids 5, 9, 13, ...
class PartitionedStateMachineTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kPartition = 1;
  static constexpr uint32_t kPartitions = 4;

  static std::unique_ptr<TaskEntry> EntryOf(uint64_t id,
                                            const std::string& key) {
    return TaskEntry::Create(SubmitOf(id, key).submit().tasks(0),
                             /*last_lsn=*/3);
  }

  StateMachine sm_{4, 8, /*track_finished=*/true, kPartition, kPartitions};
};

TEST_F(PartitionedStateMachineTest, IdsStepByThePartitionCount) {
  EXPECT_EQ(sm_.partition(), kPartition);
  EXPECT_EQ(sm_.partitions(), kPartitions);
  EXPECT_EQ(sm_.next_task_id(), 5u);
  ASSERT_TRUE(sm_.Apply(SubmitOf(5, "a"), 1).ok());
  EXPECT_EQ(sm_.next_task_id(), 9u);
  Transition batch = SubmitOf(9, "b");
  *batch.mutable_submit()->add_tasks() = SubmitOf(17, "c").submit().tasks(0);
  ASSERT_TRUE(sm_.Apply(batch, 2).ok());
  EXPECT_EQ(sm_.next_task_id(), 21u);
  EXPECT_EQ(sm_.table().LookupKey("c"), 17u);

  const SnapshotMeta meta = sm_.MakeSnapshotMeta();
  EXPECT_EQ(meta.partition(), kPartition);
  EXPECT_EQ(meta.partitions(), kPartitions);
  EXPECT_EQ(meta.next_task_id(), 21u);
  EXPECT_EQ(meta.lsn(), 2u);
}

TEST_F(PartitionedStateMachineTest, SubmitOfAnotherPartitionsIdIsRejected) {
  ASSERT_TRUE(sm_.Apply(SubmitOf(5, "a"), 1).ok());
  const std::string before = Dump(sm_);
  for (uint64_t id : {6, 7, 8, 10, 12}) {
    EXPECT_EQ(sm_.Apply(SubmitOf(id, "fresh"), 2).code(),
              absl::StatusCode::kInternal)
        << id;
  }
  // Of this partition, but below its first id.
  EXPECT_EQ(sm_.Apply(SubmitOf(1, "fresh"), 2).code(),
            absl::StatusCode::kInternal);
  // A batch whose second id belongs elsewhere must not apply its first.
  Transition batch = SubmitOf(9, "fresh");
  *batch.mutable_submit()->add_tasks() =
      SubmitOf(10, "other").submit().tasks(0);
  EXPECT_EQ(sm_.Apply(batch, 2).code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(sm_.table().Contains(9));
  EXPECT_FALSE(sm_.table().LookupKey("fresh").has_value());
  EXPECT_EQ(Dump(sm_), before);
}

TEST_F(PartitionedStateMachineTest, RestoreTaskRefusesAnIdOfAnotherPartition) {
  const std::string before = Dump(sm_);
  // Other partitions' ids, this partition's residue below its first id,
  // and 0.
  for (uint64_t id : {4, 6, 7, 8, 14, 1, 0}) {
    EXPECT_EQ(sm_.RestoreTask(EntryOf(id, absl::StrCat("k", id))).code(),
              absl::StatusCode::kDataLoss)
        << id;
  }
  EXPECT_EQ(sm_.table().size(), 0u);
  EXPECT_FALSE(sm_.table().LookupKey("k6").has_value());
  EXPECT_EQ(Dump(sm_), before);

  ASSERT_TRUE(sm_.RestoreTask(EntryOf(13, "k13")).ok());
  EXPECT_EQ(sm_.next_task_id(), 17u);
  ASSERT_TRUE(sm_.RestoreTask(EntryOf(5, "k5")).ok());
  EXPECT_EQ(sm_.next_task_id(), 17u);
  EXPECT_EQ(sm_.counters().by_status[PENDING], 2u);
  EXPECT_EQ(sm_.last_applied_lsn(), 3u);
  // The restored state goes on with this partition's next id.
  EXPECT_TRUE(sm_.Apply(SubmitOf(17, "next"), 4).ok());
}

// The heart of recovery: replaying the journal of a random workload through
// Apply rebuilds the live state exactly (tasks, histories, counters, ids).
class StateMachineReplayTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(StateMachineReplayTest, ReplayOfRandomWorkloadRebuildsLiveState) {
  const uint32_t partitions = GetParam();
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(seed);
    ManualClock clock;
    EngineOptions options;
    options.clock = &clock;
    options.maintenance_interval = absl::ZeroDuration();
    options.random_seed = seed;
    options.num_shards = 4;
    options.max_history_per_task = 6;
    options.retention = absl::Seconds(50);
    testing::RecordedEngine recorded =
        testing::OpenRecorded(options, partitions);
    EngineImpl& engine = *recorded.engine;

    std::mt19937_64 rng(seed);
    std::vector<ClaimedTask> held;
    for (int step = 0; step < 3000; ++step) {
      clock.Advance(absl::Milliseconds(rng() % 700));
      switch (rng() % 9) {
        case 0:
        case 1: {
          TaskSpec spec;
          spec.idempotency_key = absl::StrCat("k", rng() % 400);
          spec.payload = "p";
          spec.priority = static_cast<int32_t>(rng() % 3);
          spec.type = rng() % 2 ? "a" : "b";
          engine.Submit(spec).IgnoreError();
          break;
        }
        case 2:
        case 3: {
          ClaimNextOptions o;
          o.lease = absl::Seconds(1 + rng() % 5);
          auto c = engine.ClaimNext(absl::StrCat("w", rng() % 3), o);
          if (c.ok()) held.push_back(*c);
          break;
        }
        case 4:
        case 5:
        case 6: {
          if (held.empty()) break;
          size_t i = rng() % held.size();
          const ClaimedTask& c = held[i];
          switch (rng() % 3) {
            case 0:
              engine.Complete(c.claim, "r").IgnoreError();
              break;
            case 1:
              engine.Fail(c.claim, "e").IgnoreError();
              break;
            default:
              engine.Heartbeat(c.claim, absl::Seconds(3)).IgnoreError();
              continue;  // Keep holding it.
          }
          held.erase(held.begin() + i);
          break;
        }
        case 7: {
          uint64_t id = 1 + rng() % (400 + 16 * partitions);
          switch (rng() % 3) {
            case 0:
              engine.Retry(id).IgnoreError();
              break;
            case 1:
              engine.Cancel(id).IgnoreError();
              break;
            default:
              engine.Delete(id).IgnoreError();
          }
          break;
        }
        default:
          ASSERT_TRUE(engine.RunMaintenance().ok());
      }
    }

    ASSERT_GT(recorded.journal->records(), 1000u);
    absl::StatusOr<std::vector<std::unique_ptr<StateMachine>>> replayed =
        testing::Replay(*recorded.journal, options);
    ASSERT_TRUE(replayed.ok()) << replayed.status();
    Counters live;
    for (uint32_t p = 0; p < partitions; ++p) {
      EXPECT_EQ(Dump(*(*replayed)[p]), Dump(*recorded.states[p])) << p;
      live.completions += recorded.states[p]->counters().completions;
      live.lease_expiries += recorded.states[p]->counters().lease_expiries;
      live.retention_removals +=
          recorded.states[p]->counters().retention_removals;
    }
    EXPECT_GT(live.completions, 0u);
    EXPECT_GT(live.lease_expiries, 0u);
    EXPECT_GT(live.retention_removals, 0u);
    ASSERT_TRUE(engine.Close().ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Partitions, StateMachineReplayTest,
                         ::testing::Values(1u, 16u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat(info.param, "Partitions");
                         });

}  // namespace
}  // namespace taskwal::engine
