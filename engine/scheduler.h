#ifndef TASKWAL_ENGINE_SCHEDULER_H_
#define TASKWAL_ENGINE_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

namespace taskwal::engine {

// The time- and priority-ordered indexes over tasks: which PENDING tasks are
// ready (by type, highest priority then lowest id first), which wait for a
// not-before time, which claims hold a lease until when, and when terminal
// tasks finished (for retention).
//
// Everything here is derived from task state and rebuilt by replay; whether a
// delayed task is ready depends on the clock, so promotion is an explicit
// PromoteDue(now) step that does not change any task.
//
// Thread safety: none; the engine guards it with its commit lock. Times are
// microseconds since the Unix epoch.
class Scheduler {
 public:
  // Without track_finished, terminal tasks are not indexed by finish time
  // (AddFinished and RemoveFinished do nothing; FinishedBefore finds
  // nothing): an engine without retention never asks, and saves an ordered
  // index entry per finished task.
  explicit Scheduler(bool track_finished = true)
      : track_finished_(track_finished) {}
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // A PENDING task. Ready at once if it has no not-before time (<= 0) or it
  // is at or before the last PromoteDue time, else delayed. pending_since:
  // when it became PENDING (its record's time); it is ready since the later
  // of that and not_before (OldestReady).
  void AddPending(uint64_t id, absl::string_view type, int32_t priority,
                  int64_t not_before, int64_t pending_since = 0);
  // Removes a PENDING task added with the same arguments.
  void RemovePending(uint64_t id, absl::string_view type, int32_t priority,
                     int64_t not_before);

  // Moves every delayed task due at `now` to the ready sets; returns how
  // many.
  size_t PromoteDue(int64_t now);

  // Calls fn(type, count) for the tasks that entered a ready set (added
  // ready at once, or promoted) since the last call, by type, and forgets
  // them: so that whoever changed the scheduler can wake as many waiters.
  // Counts only grow between calls (at most one entry per type).
  void TakeReadied(
      absl::FunctionRef<void(absl::string_view type, size_t count)> fn);

  // The best ready task (of `type`, or of any type when empty).
  std::optional<uint64_t> PeekReady(absl::string_view type) const;
  // The rank of that task: lower is claimed first (minus its priority).
  std::optional<int64_t> BestReadyRank(absl::string_view type) const;
  static int64_t RankOf(int32_t priority) {
    return -static_cast<int64_t>(priority);
  }

  // When the longest-waiting ready task of `type` became ready, paused or
  // not; nullopt when none is ready. Delayed tasks due at `now` that no
  // PromoteDue has moved yet count as ready (judged by the earliest due of
  // them). O(log n): no walk over the tasks.
  std::optional<int64_t> OldestReady(absl::string_view type, int64_t now) const;

  // Earliest not-before time among delayed tasks (of `type`; of any type
  // when empty).
  std::optional<int64_t> NextDelayed(absl::string_view type = "") const;

  void AddLease(uint64_t id, int64_t deadline);
  void RemoveLease(uint64_t id, int64_t deadline);
  // Claims whose lease deadline is at or before now, earliest first.
  std::vector<uint64_t> DueLeases(int64_t now) const;
  std::optional<int64_t> NextLeaseDeadline() const;

  void AddFinished(uint64_t id, int64_t finished);
  void RemoveFinished(uint64_t id, int64_t finished);
  // Terminal tasks finished at or before cutoff, earliest first, at most
  // `limit`.
  std::vector<uint64_t> FinishedBefore(int64_t cutoff, size_t limit) const;

  size_t ready_count() const;
  size_t delayed_count() const { return delayed_.size(); }

  // Pausing a type hides its tasks from PeekReady, BestReadyRank,
  // NextDelayed and TakeReadied (they stay indexed, and are promoted as
  // they come due); resuming shows them again and counts every ready one
  // as readied, so that TakeReadied wakes as many waiters. Returns whether
  // the state changed.
  bool SetPaused(absl::string_view type, bool paused);
  bool IsPaused(absl::string_view type) const;
  // The paused types, sorted.
  std::vector<std::string> PausedTypes() const;
  size_t paused_count() const { return paused_count_; }

 private:
  // Ordered so that begin() is the next task to claim.
  using ReadyKey = std::pair<int64_t, uint64_t>;  // (-priority, id)
  // Each with the time it is ready since.
  using ReadySet = absl::btree_map<ReadyKey, int64_t>;
  struct DelayedValue {
    int type_index;
    int32_t priority;
    int64_t ready_since;
  };

  int TypeIndex(absl::string_view type);
  const ReadyKey* BestReady(absl::string_view type) const;
  void NoteReadied(int type_index);
  void InsertReady(int type_index, int32_t priority, uint64_t id,
                   int64_t ready_since);
  const ReadySet* FindReady(absl::string_view type) const;

  const bool track_finished_;
  int64_t promoted_through_ = INT64_MIN;
  absl::flat_hash_map<std::string, int> type_index_;
  std::vector<ReadySet> ready_;  // By type index.
  // For OldestReady, by type index: a min-heap by (since, id) of the tasks
  // in ready_, and of some that have left it (a claim does not touch the
  // heap: cheaper on the claim path than an ordered set). OldestReady pops
  // departed entries off the top; the heap is rebuilt from ready_ once
  // departed entries outnumber live ones (CompactAges), so it holds at
  // most twice the ready tasks plus a constant.
  struct ReadyAge {
    int64_t since;
    uint64_t id;
    int64_t rank;
  };
  // Whether `a` comes after `b` (std::push_heap keeps a min-heap with it).
  static bool AgeAfter(const ReadyAge& a, const ReadyAge& b) {
    return a.since != b.since ? a.since > b.since : a.id > b.id;
  }
  // Whether `age` is still a ready task's entry.
  bool IsLive(int type_index, const ReadyAge& age) const;
  void CompactAges(int type_index);
  // Mutable: OldestReady, const, drops departed entries.
  mutable std::vector<std::vector<ReadyAge>> ready_ages_;
  std::vector<bool> paused_;  // By type index.
  size_t paused_count_ = 0;
  std::deque<std::string> type_names_;  // By type index; stable addresses.
  // Tasks readied since the last TakeReadied, by type index, and the
  // indexes with a count.
  std::vector<size_t> readied_;
  std::vector<int> readied_types_;
  absl::btree_map<std::pair<int64_t, uint64_t>, DelayedValue> delayed_;
  // The keys of delayed_ by type index, for NextDelayed(type).
  std::vector<absl::btree_set<std::pair<int64_t, uint64_t>>> delayed_by_type_;
  absl::btree_set<std::pair<int64_t, uint64_t>> leases_;
  absl::btree_set<std::pair<int64_t, uint64_t>> finished_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_SCHEDULER_H_
