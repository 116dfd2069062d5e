#ifndef TASKWAL_ENGINE_STATE_MACHINE_H_
#define TASKWAL_ENGINE_STATE_MACHINE_H_

#include <cstdint>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/scheduler.h"
#include "engine/snapshot.pb.h"
#include "engine/task_table.h"
#include "engine/transition.pb.h"
#include "taskwal/task.pb.h"

namespace taskwal::engine {

// The tasks of one type, by status.
struct TypeCounts {
  uint64_t by_status[6] = {};  // Indexed by TaskStatus.
  uint64_t tasks = 0;          // Sum of by_status.
};

// Totals that survive restarts because they are derived from records.
// by_status and by_type count the tasks held: snapshots do not store them,
// RestoreTask counts each task again.
struct Counters {
  uint64_t by_status[6] = {};  // Indexed by TaskStatus.
  // By task type. A type without tasks has no entry, so deleted and
  // retention-removed types do not pile up.
  absl::flat_hash_map<std::string, TypeCounts> by_type;
  uint64_t submitted = 0;
  uint64_t claims = 0;
  uint64_t completions = 0;
  uint64_t failed_attempts = 0;
  uint64_t lease_expiries = 0;
  uint64_t retries = 0;
  uint64_t cancellations = 0;
  uint64_t deletions = 0;
  uint64_t retention_removals = 0;
  uint64_t transitions = 0;
};

// Whether t's dependency fields can be a task's: at most
// TaskEntry::kMaxDependencies distinct nonzero ids other than its own, a
// known policy, and waiting_for a subset of depends_on without repeats.
bool ValidDependencies(const Task& t);

// The one place where task state changes. The live path decides a
// Transition, journals it, then calls Apply; recovery calls Apply on the same
// records in LSN order. Apply is deterministic: it reads nothing but the
// current state and the record (no clock, no randomness), so replay rebuilds
// exactly the state the live path had.
//
// One state machine holds one partition of the engine's tasks: those whose
// ids are `partition` modulo `partitions` (engine/partitioning.h). Its LSNs
// are the partition's.
//
// Thread safety: mutations (Apply and the scheduler) need external
// serialization, the partition's commit lock. table() may be read by any
// thread at any time: TaskTable locks its own shards.
class StateMachine {
 public:
  // REQUIRES: num_shards >= 1, partition < partitions. track_finished:
  // whether the scheduler indexes terminal tasks by finish time (needed for
  // retention only).
  StateMachine(int num_shards, size_t max_history_per_task,
               bool track_finished = true, uint32_t partition = 0,
               uint32_t partitions = 1);
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;

  // Applies one record. OK: the state now includes it. kInternal: the record
  // does not fit the state (an unknown task, a transition its status does
  // not allow, a duplicate id or key); the state is unchanged. A record never
  // half-applies.
  absl::Status Apply(const Transition& record, uint64_t lsn);

  // Snapshot support. MakeSnapshotMeta captures counters and id counters;
  // a snapshot is that plus every task. Restoring is RestoreTask for each
  // task, then RestoreMeta. kDataLoss: a task that cannot be part of a valid
  // state (duplicate id or key, unknown status); nothing is added.
  SnapshotMeta MakeSnapshotMeta() const;
  absl::Status RestoreTask(std::unique_ptr<TaskEntry> entry);
  void RestoreMeta(const SnapshotMeta& meta);

  TaskTable& table() { return table_; }
  const TaskTable& table() const { return table_; }
  Scheduler& scheduler() { return scheduler_; }
  const Scheduler& scheduler() const { return scheduler_; }
  const Counters& counters() const { return counters_; }
  // The schedules whose names fall in this partition, by name.
  const absl::btree_map<std::string, Schedule>& schedules() const {
    return schedules_;
  }

  // The next id / claim token the live path should hand out: the next one
  // of this partition (ids and tokens alike are partition modulo
  // partitions, so they are unique across partitions) after the largest
  // seen in any applied record.
  uint64_t next_task_id() const { return next_task_id_; }
  uint64_t next_claim_token() const { return next_claim_token_; }
  uint64_t last_applied_lsn() const { return last_applied_lsn_; }
  uint32_t partition() const { return partition_; }
  uint32_t partitions() const { return partitions_; }

 private:
  absl::Status ApplySubmit(const SubmitRecord& r, int64_t now, uint64_t lsn);
  absl::Status ApplyClaim(const ClaimRecord& r, int64_t now, uint64_t lsn);
  absl::Status ApplyComplete(const CompleteRecord& r, int64_t now,
                             uint64_t lsn);
  absl::Status ApplyFail(const FailRecord& r, int64_t now, uint64_t lsn);
  absl::Status ApplyHeartbeat(const HeartbeatRecord& r, uint64_t lsn);
  absl::Status ApplyRetry(const RetryRecord& r, int64_t now, uint64_t lsn);
  absl::Status ApplyCancel(const CancelRecord& r, int64_t now, uint64_t lsn);
  absl::Status ApplyDelete(const DeleteRecord& r);
  absl::Status ApplyPause(const PauseRecord& r);
  absl::Status ApplySchedulePut(const SchedulePutRecord& r);
  absl::Status ApplyScheduleDelete(const ScheduleDeleteRecord& r);
  absl::Status ApplyScheduleFire(const ScheduleFireRecord& r, int64_t now,
                                 uint64_t lsn);
  absl::Status ApplyDependency(const DependencyRecord& r, int64_t now,
                               uint64_t lsn);

  void AppendHistory(TaskEntry& entry, const HistoryEvent& h) const;
  // Per-status and per-type task counts: a task of `type` changed status,
  // was added, or was removed.
  void CountStatusChange(absl::string_view type, TaskStatus from,
                         TaskStatus to);
  void CountAdded(absl::string_view type, TaskStatus status);
  void CountRemoved(absl::string_view type, TaskStatus status);

  const size_t max_history_per_task_;
  const uint32_t partition_;
  const uint32_t partitions_;
  TaskTable table_;
  Scheduler scheduler_;
  Counters counters_;
  absl::btree_map<std::string, Schedule> schedules_;
  uint64_t next_task_id_;
  uint64_t next_claim_token_;
  uint64_t last_applied_lsn_ = 0;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_STATE_MACHINE_H_
