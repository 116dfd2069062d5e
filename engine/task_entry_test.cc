#include "engine/task_entry.h"

#include <limits>
#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

// A task with every field set to a value that is not its default.
Task FullTask() {
  Task t;
  t.set_id(42);
  t.set_idempotency_key("key-42");
  t.set_type("email");
  t.set_payload(std::string("pay\0load", 8));
  t.set_priority(-7);
  t.set_status(CLAIMED);
  t.set_attempts(3);
  t.set_max_attempts(5);
  t.set_claimed_by("worker-9");
  t.set_claim_token(1234567890123ull);
  t.set_lease_deadline_micros(std::numeric_limits<int64_t>::max());
  t.set_not_before_micros(-1);
  t.set_created_micros(1700000000000000);
  t.set_claimed_micros(1700000000000001);
  t.set_finished_micros(1700000000000002);
  t.set_result(std::string(300, 'r'));
  t.set_last_error("boom");
  RetryPolicy* p = t.mutable_retry_policy();
  p->set_initial_backoff_micros(1000);
  p->set_max_backoff_micros(60000000);
  p->set_multiplier(2.5);
  p->set_jitter(0.25);
  t.set_history_dropped(17);
  t.add_depends_on(7);
  t.add_depends_on(9);
  t.add_waiting_for(9);
  t.set_on_dependency_failure(DEPENDENCY_FAILURE_CANCEL);
  return t;
}

TEST(TaskEntryTest, EveryFieldRoundTrips) {
  const Task t = FullTask();
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(t, 99);
  EXPECT_EQ(e->ToTask().SerializeAsString(), t.SerializeAsString());
  EXPECT_EQ(e->state.last_lsn, 99u);
  EXPECT_EQ(e->idempotency_key(), "key-42");
  EXPECT_EQ(e->type(), "email");
  EXPECT_EQ(e->payload(), std::string("pay\0load", 8));
  EXPECT_EQ(e->claimed_by(), "worker-9");
  EXPECT_EQ(e->result(), std::string(300, 'r'));
  EXPECT_EQ(e->last_error(), "boom");
  ASSERT_TRUE(e->retry_policy().has_value());
  EXPECT_EQ(e->retry_policy()->multiplier(), 2.5);
}

TEST(TaskEntryTest, AbsentPolicyAndEmptyStringsStayAbsent) {
  Task t;
  t.set_id(1);
  t.set_idempotency_key("k");
  t.set_status(PENDING);
  t.set_max_attempts(1);
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(t, 0);
  EXPECT_FALSE(e->retry_policy().has_value());
  EXPECT_EQ(e->type(), "");
  EXPECT_EQ(e->payload(), "");
  EXPECT_EQ(e->claimed_by(), "");
  const Task back = e->ToTask();
  EXPECT_FALSE(back.has_retry_policy());
  EXPECT_EQ(back.SerializeAsString(), t.SerializeAsString());

  // A policy at all defaults is still the task's own.
  *t.mutable_retry_policy() = RetryPolicy();
  e = TaskEntry::Create(t, 0);
  EXPECT_TRUE(e->retry_policy().has_value());
  EXPECT_TRUE(e->ToTask().has_retry_policy());
}

TEST(TaskEntryTest, ToTaskOverwritesEveryField) {
  Task t;
  t.set_id(7);
  t.set_idempotency_key("seven");
  t.set_status(PENDING);
  t.set_max_attempts(2);
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(t, 0);
  Task reused = FullTask();  // A message reused from an earlier task.
  e->ToTask(&reused);
  EXPECT_EQ(reused.SerializeAsString(), t.SerializeAsString());
}

TEST(TaskEntryTest, SetStringsAcceptsItsOwnStrings) {
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(FullTask(), 0);
  // Arguments that point into the block being replaced.
  e->SetStrings(e->last_error(), e->result(), e->claimed_by());
  EXPECT_EQ(e->claimed_by(), "boom");
  EXPECT_EQ(e->result(), std::string(300, 'r'));
  EXPECT_EQ(e->last_error(), "worker-9");
  e->SetStrings("", "", "");
  EXPECT_EQ(e->claimed_by(), "");
  EXPECT_EQ(e->result(), "");
  EXPECT_EQ(e->last_error(), "");
  e->SetStrings("", "done", "");
  EXPECT_EQ(e->claimed_by(), "");
  EXPECT_EQ(e->result(), "done");
  EXPECT_EQ(e->last_error(), "");
}

TEST(TaskEntryTest, CloneIsDeepAndIndependent) {
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(FullTask(), 5);
  HistoryEvent h;
  h.time_micros = 10;
  h.event = HistoryEntry::CLAIMED;
  h.worker_id = "worker-9";
  e->AppendHistory(h, 8);
  std::unique_ptr<TaskEntry> copy = e->Clone();
  EXPECT_EQ(copy->ToTask().SerializeAsString(),
            e->ToTask().SerializeAsString());
  EXPECT_EQ(copy->state.last_lsn, 5u);
  ASSERT_EQ(copy->history_size(), 1u);
  EXPECT_EQ(copy->History()[0].worker_id(), "worker-9");
  EXPECT_NE(copy->idempotency_key().data(), e->idempotency_key().data());

  // Changing the original leaves the copy as it was.
  e->state.status = COMPLETED;
  e->SetStrings("other", "", "");
  e->AppendHistory(h, 8);
  EXPECT_EQ(copy->state.status, CLAIMED);
  EXPECT_EQ(copy->claimed_by(), "worker-9");
  EXPECT_EQ(copy->history_size(), 1u);
  e.reset();
  EXPECT_EQ(copy->idempotency_key(), "key-42");
}

TEST(TaskEntryTest, DependenciesStopWaitingOneByOne) {
  Task t;
  t.set_id(100);
  t.set_idempotency_key("k");
  t.set_status(PENDING);
  t.set_max_attempts(1);
  for (uint64_t id = 1; id <= TaskEntry::kMaxDependencies; ++id) {
    t.add_depends_on(id * 3);
    t.add_waiting_for(id * 3);
  }
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(t, 0);
  EXPECT_EQ(e->ToTask().SerializeAsString(), t.SerializeAsString());
  EXPECT_EQ(e->dependency_count(), TaskEntry::kMaxDependencies);
  EXPECT_FALSE(e->cancel_on_dependency_failure());
  EXPECT_TRUE(e->WaitsFor(3 * TaskEntry::kMaxDependencies));
  EXPECT_FALSE(e->WaitsFor(4));
  for (uint64_t id = 1; id < TaskEntry::kMaxDependencies; ++id) {
    EXPECT_TRUE(e->StopWaitingFor(id * 3));
    EXPECT_FALSE(e->WaitsFor(id * 3));
  }
  std::unique_ptr<TaskEntry> copy = e->Clone();
  EXPECT_FALSE(e->StopWaitingFor(3 * TaskEntry::kMaxDependencies));
  EXPECT_FALSE(e->waiting());
  EXPECT_EQ(e->ToTask().waiting_for_size(), 0);
  EXPECT_EQ(e->ToTask().depends_on_size(), 64);
  // The copy still waits for the last one; the key stayed in place.
  EXPECT_TRUE(copy->waiting());
  EXPECT_EQ(copy->ToTask().waiting_for_size(), 1);
  EXPECT_EQ(copy->idempotency_key(), "k");
}

// Entries the bound drops are counted on top of those a snapshot's task
// says were dropped before; a copy keeps the count, and it saturates.
TEST(TaskEntryTest, DroppedHistoryIsCounted) {
  std::unique_ptr<TaskEntry> e = TaskEntry::Create(FullTask(), 1);
  EXPECT_EQ(e->history_dropped(), 17u);
  HistoryEvent h;
  h.event = HistoryEntry::RETRIED;
  for (int i = 0; i < 5; ++i) e->AppendHistory(h, 2);
  EXPECT_EQ(e->history_size(), 2u);
  EXPECT_EQ(e->history_dropped(), 20u);
  std::unique_ptr<TaskEntry> copy = e->Clone();
  EXPECT_EQ(copy->history_dropped(), 20u);
  EXPECT_EQ(copy->ToTask().history_dropped(), 20u);
  // The payload's size and the policy flag share a word with the count.
  EXPECT_EQ(copy->payload(), std::string("pay\0load", 8));
  EXPECT_TRUE(copy->retry_policy().has_value());

  Task near_max = FullTask();
  near_max.set_history_dropped(std::numeric_limits<uint32_t>::max() - 1);
  e = TaskEntry::Create(near_max, 1);
  for (int i = 0; i < 4; ++i) e->AppendHistory(h, 1);
  EXPECT_EQ(e->history_dropped(), std::numeric_limits<uint32_t>::max());
  near_max.set_history_dropped(uint64_t{1} << 40);
  EXPECT_EQ(TaskEntry::Create(near_max, 1)->history_dropped(),
            std::numeric_limits<uint32_t>::max());
}

// Every live task carries one entry: its fixed part is part of the memory
// budget (BENCHMARKS.md, "Memory").
TEST(TaskEntryTest, FixedPartStaysCompact) {
  EXPECT_LE(sizeof(TaskEntry), 104u);
  EXPECT_LE(sizeof(HistoryLog), sizeof(void*));
}

}  // namespace
}  // namespace taskwal::engine
