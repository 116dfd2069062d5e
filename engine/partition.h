#ifndef TASKWAL_ENGINE_PARTITION_H_
#define TASKWAL_ENGINE_PARTITION_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/state_machine.h"
#include "engine/task_table.h"

namespace taskwal::engine {

// One partition of an engine: a slice of the tasks with its own commit
// lock, state machine (task table, key index, scheduler, counters) and
// record sequence. Partitions share nothing on the commit path, so
// mutations of different partitions run in parallel.
//
// So that ClaimNext can pick a partition without taking every partition's
// lock, a partition publishes two summaries after each change, read with
// plain atomic loads: the rank of its best ready task, and a lower bound
// of the earliest time something in it comes due (a delayed task's
// not-before time or a lease deadline). Each is written only when it
// changes, so readers on other cores mostly hit a clean cache line.
//
// Thread safety: the state machine and rng need mu; table() and the
// summaries may be read by any thread at any time.
class Partition {
 public:
  // "No such time / no ready task" in the summaries.
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  // REQUIRES: state is the state machine of partition `index`.
  Partition(uint32_t index, std::unique_ptr<StateMachine> state, uint64_t seed);
  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  const uint32_t index;
  // The commit lock. Lock order: partitions in ascending index order, then
  // the table's shard locks, then the journal's.
  mutable absl::Mutex mu;

  StateMachine& state() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return *state_; }
  const StateMachine& state() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return *state_;
  }
  // Readers use the table without mu; it locks its own shards. Writers
  // change it only through state().
  const TaskTable& table() const { return *table_; }
  // Backoff jitter.
  std::mt19937_64& rng() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return rng_; }

  // Rank (Scheduler::RankOf) of the best ready task; kNever if none.
  int64_t ready_rank() const {
    return ready_rank_.load(std::memory_order_acquire);
  }
  // At or before the earliest not-before time of a delayed task and the
  // earliest lease deadline; kNever if there is neither. It may be early
  // (a lease that ended since); PublishLocked(/*exact=*/true) makes it
  // exact again.
  int64_t next_due() const { return next_due_.load(std::memory_order_acquire); }

  // Publishes the summaries after a change. Returns true if next_due moved
  // earlier (a waiter sleeping until the old time must look again).
  bool PublishLocked(bool exact_due = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

 private:
  const std::unique_ptr<StateMachine> state_ ABSL_PT_GUARDED_BY(mu);
  const TaskTable* const table_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu);
  // Apart from mu and each other's writers' data.
  alignas(64) std::atomic<int64_t> ready_rank_{kNever};
  std::atomic<int64_t> next_due_{kNever};
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_PARTITION_H_
