#ifndef TASKWAL_ENGINE_ENGINE_IMPL_H_
#define TASKWAL_ENGINE_ENGINE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "engine/claim_waiters.h"
#include "engine/journal.h"
#include "engine/partition.h"
#include "engine/schedule.h"
#include "engine/snapshot_store.h"
#include "engine/state_machine.h"
#include "taskwal/engine.h"
#include "taskwal/env.h"

namespace taskwal::engine {

// Checks EngineOptions; kInvalidArgument names the bad field.
absl::Status ValidateOptions(const EngineOptions& options);

// Where an engine keeps what its journal does not: snapshots, and for a
// data directory its lock.
struct Storage {
  Env* env = nullptr;  // Not owned; null without a data directory.
  std::string dir;
  std::unique_ptr<FileLock> lock;  // Held until Close.
  std::unique_ptr<SnapshotStore> snapshots;
  RecoveryReport recovery;
  // The snapshot recovery used: records it held, in all partitions.
  uint64_t snapshot_records = 0;
};

// The Engine behind api/engine.h.
//
// The tasks are split into partitions (engine/partition.h) by idempotency
// key; a task's id names its partition. Every mutation of a task runs under
// its partition's commit lock: decide a Transition from the current state,
// Journal::Append it to the partition's record sequence,
// StateMachine::Apply it, release the lock, then Journal::Sync to the
// record before acknowledging. One lock per partition makes the
// partition's journal order equal its apply order, which is what makes
// replay exact; partitions share nothing on this path, so they commit in
// parallel, and the slow part (the sync) is shared by every writer of every
// partition waiting at the same time. A SubmitBatch whose keys fall into
// several partitions locks them in ascending order and journals one group
// (all or nothing across a crash). Readers never take a commit lock: they
// read the partitions' TaskTables, which lock one shard at a time.
//
// ClaimNext picks a partition from the summaries each partition publishes
// (see Partition): the best published rank wins, ties go round robin from
// a per-thread position, so no partition starves and claimers spread over
// partitions instead of queueing on one. Waiting callers sleep in
// ClaimWaiters and are woken one per task that becomes ready.
//
// Lock order: close_mu_, snapshot_mu_, then partition commit locks in
// ascending index order, then a TaskTable shard lock, then the journal's
// locks. sticky_mu_ and the waiters' lock are leaves.
class EngineImpl final : public Engine {
 public:
  // REQUIRES: ValidateOptions(options).ok(); states[i] is partition i of
  // states.size() (1 to kMaxPartitions) and holds what recovery rebuilt (or
  // is empty); their LSNs must match `journal`, which has as many
  // partitions. `storage` is null for an in-memory engine.
  EngineImpl(const EngineOptions& options, std::unique_ptr<Journal> journal,
             std::vector<std::unique_ptr<StateMachine>> states,
             std::unique_ptr<Storage> storage = nullptr);
  ~EngineImpl() override;

  absl::Status Close() override ABSL_LOCKS_EXCLUDED(close_mu_, snapshot_mu_);
  absl::StatusOr<SubmitResult> Submit(const TaskSpec& spec) override
      ABSL_LOCKS_EXCLUDED(close_mu_);
  // The analysis cannot follow a set of partition locks chosen at run
  // time; they are locked in ascending order and released together.
  absl::StatusOr<std::vector<SubmitResult>> SubmitBatch(
      absl::Span<const TaskSpec> specs) override ABSL_NO_THREAD_SAFETY_ANALYSIS;
  absl::StatusOr<ClaimedTask> Claim(uint64_t task_id,
                                    absl::string_view worker_id,
                                    absl::Duration lease) override;
  absl::StatusOr<ClaimedTask> ClaimNext(
      absl::string_view worker_id, const ClaimNextOptions& options) override;
  absl::StatusOr<std::vector<ClaimedTask>> ClaimNextBatch(
      absl::string_view worker_id, const ClaimNextOptions& options,
      size_t max_tasks) override;
  absl::StatusOr<std::optional<absl::Time>> NextDueTime(
      absl::string_view type) override;
  absl::Status Complete(const ClaimRef& claim,
                        absl::string_view result) override;
  absl::StatusOr<std::vector<absl::Status>> CompleteBatch(
      absl::Span<const Completion> completions) override;
  absl::Status Fail(const ClaimRef& claim, absl::string_view error) override;
  absl::Status Fail(const ClaimRef& claim, absl::string_view error,
                    const FailOptions& options) override;
  absl::StatusOr<absl::Time> Heartbeat(const ClaimRef& claim,
                                       absl::Duration extension) override;
  absl::Status Retry(uint64_t task_id) override;
  absl::Status Cancel(uint64_t task_id) override;
  absl::Status Delete(uint64_t task_id) override;
  absl::StatusOr<BulkResult> RetryMatching(const BulkFilter& filter) override;
  absl::StatusOr<BulkResult> CancelMatching(const BulkFilter& filter) override;
  absl::StatusOr<BulkResult> DeleteMatching(const BulkFilter& filter) override;
  absl::StatusOr<Schedule> PutSchedule(const ScheduleSpec& spec) override;
  absl::Status DeleteSchedule(absl::string_view name) override;
  absl::StatusOr<Schedule> GetSchedule(absl::string_view name) override;
  absl::StatusOr<std::vector<Schedule>> ListSchedules() override;
  absl::Status Pause(absl::string_view type) override;
  absl::Status Resume(absl::string_view type) override;
  absl::StatusOr<std::vector<std::string>> PausedTypes() override;
  absl::StatusOr<Task> Get(uint64_t task_id) override;
  absl::StatusOr<Task> GetByIdempotencyKey(absl::string_view key) override;
  absl::StatusOr<ListPage> List(const ListFilter& filter) override;
  absl::StatusOr<std::vector<HistoryEntry>> History(uint64_t task_id) override;
  absl::StatusOr<EngineStats> Stats() override;
  absl::Status RunMaintenance() override;
  absl::Status Snapshot() override ABSL_LOCKS_EXCLUDED(snapshot_mu_);
  RecoveryReport Recovery() const override;
  absl::Status Health() const override ABSL_LOCKS_EXCLUDED(sticky_mu_);

  uint32_t partitions() const {
    return static_cast<uint32_t>(partitions_.size());
  }

 private:
  // What a claim check found.
  enum class ClaimState { kCurrent, kAlreadyCompleted };

  // Waiters to wake once the commit lock is released.
  struct Wake {
    // Tasks that became ready, by type (usually one type).
    absl::InlinedVector<std::pair<std::string, size_t>, 1> ready;
    bool timekeeper = false;  // Something comes due earlier.
    // Tasks that ended and that other tasks wait for: their dependents are
    // resolved (ResolveDependents) once the caller has let go of its lock.
    std::vector<uint64_t> finished;
    void Ready(absl::string_view type, size_t count);
  };

  Partition& PartitionOfTask(uint64_t task_id) const;
  Partition& PartitionOfTaskKey(absl::string_view key) const;

  int64_t NowMicros() const;
  absl::Status CheckOpen() const;
  // Fails when the engine is closed, read-only, or a journal error made it
  // stop writing.
  absl::Status CheckWritable() const;
  // Records a journal (or apply) failure; the first one sticks. Returns the
  // sticky error, which every caller returns in place of `s`: kInternal,
  // whatever s's code (a full disk's kResourceExhausted must not read as a
  // limit), with s in its message. REQUIRES: !s.ok().
  absl::Status SetSticky(const absl::Status& s) const
      ABSL_LOCKS_EXCLUDED(sticky_mu_);
  // SetSticky(journal's own failure) if it met one with no caller waiting
  // (a background fdatasync); OK otherwise. Lock-free while all is well.
  absl::Status CheckJournal() const ABSL_LOCKS_EXCLUDED(sticky_mu_);
  absl::Status CheckWorker(absl::string_view worker_id) const;
  absl::StatusOr<int64_t> LeaseMicros(absl::Duration lease) const;
  absl::Status CheckSpec(const TaskSpec& spec) const;
  // Fills the new task *t for spec. REQUIRES: *t is a fresh message (fields
  // it leaves unset stay at their defaults).
  void NewTask(const TaskSpec& spec, uint64_t id, int64_t now, Task* t) const;
  // The task's retry policy: its own, or the engine's default.
  RetryPolicy PolicyOf(const TaskEntry& entry) const;
  // Makes *task what callers see: its retry policy filled in.
  void Resolve(Task* task) const;
  void Notify(const Wake& wake);

  // Dependencies (TaskSpec::depends_on). A waiting task sits in no
  // scheduler set; waiters_of_ finds it from each task it waits for. When
  // such a task ends, ApplyLocked notes it in Wake::finished, and
  // ResolveDependents journals a DependencyRecord for each waiter, after
  // the ending is synced. Idempotent: it reads the dependency's status and
  // whether the waiter still waits for it, so that Open can run it for
  // every waiting task (a crash between the two records is repaired).
  //
  // Notes in *wake whether `record` ended a task that others wait for.
  void NoteFinishedLocked(Partition& p, const Transition& record, Wake* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu) ABSL_LOCKS_EXCLUDED(deps_mu_);
  // Resolves the waiters of every task in `finished` (which have ended, or
  // no longer exist), and of the tasks that this in turn ends. Takes the
  // waiters' partition locks one at a time. An error is sticky.
  absl::Status ResolveDependents(std::vector<uint64_t> finished)
      ABSL_LOCKS_EXCLUDED(deps_mu_);
  // Runs ResolveDependents for wake.finished, if any. Its failure is
  // sticky: the next call reports it, and Open repairs what is left.
  void ResolveFinished(const Wake& wake);
  // Whether a task still waits for task_id (reads the waiters' tables).
  bool HasWaiters(uint64_t task_id) const ABSL_LOCKS_EXCLUDED(deps_mu_);
  // Indexes the dependencies of every waiting task (at construction).
  void IndexWaitingTasks() ABSL_LOCKS_EXCLUDED(deps_mu_);
  // SubmitBatch's work; single: the batch is one Submit (messages name no
  // batch index).
  absl::StatusOr<std::vector<SubmitResult>> SubmitMany(
      absl::Span<const TaskSpec> specs,
      bool single) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // Journals and applies one record in p (ApplyLocked); returns the
  // record's LSN. An error is made sticky.
  absl::StatusOr<uint64_t> CommitLocked(Partition& p, const Transition& record,
                                        Wake* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // Applies a journaled record at lsn, promotes what came due with it and
  // publishes p's summaries, noting in *wake what became ready and whether
  // something comes due earlier. An error is made sticky.
  absl::Status ApplyLocked(Partition& p, const Transition& record, uint64_t lsn,
                           Wake* wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);

  // One partition's share of a submit: its record of new tasks, and what
  // the submit must wait for before it is acknowledged.
  struct SubmitPart {
    Partition* p = nullptr;
    Transition record;
    // Keys new in this batch -> index into record.submit().tasks() (a
    // single submit needs none).
    absl::flat_hash_map<absl::string_view, int> batch_keys;
    uint64_t next_id = 0;   // The next id of the partition to hand out.
    uint64_t wait_lsn = 0;  // 0: nothing to wait for.
  };
  // Fills in the dependencies of the new tasks of a batch: resolves keys
  // (to a spec of the batch, else an existing task), refuses unknown
  // keys, failed dependencies and cycles. REQUIRES: every partition of
  // the batch's keys and of their dependencies is locked.
  absl::Status DecideDependenciesLocked(
      absl::Span<const TaskSpec> specs, absl::Span<const uint32_t> of,
      absl::Span<const SubmitResult> results,
      absl::FunctionRef<SubmitPart&(uint32_t)> part_of,
      bool single) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Decides one spec in its partition's share: the task its key already
  // names (a duplicate: same type and payload, else kAlreadyExists with
  // `where` appended), an earlier spec of the batch with its key, or a new
  // task added to part->record.
  absl::Status DecideLocked(const TaskSpec& spec, absl::string_view where,
                            bool batch, int64_t now, SubmitPart* part,
                            SubmitResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(part->p->mu);
  // Notes in *wake the tasks that p's scheduler made ready since the last
  // call (so that as many waiters are woken).
  void TakeReadied(Partition& p, Wake* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // Waits for the journal to cover the records; an error is made sticky.
  absl::Status SyncTo(absl::Span<const PartitionLsn> records);
  absl::Status SyncTo(uint32_t partition, uint64_t lsn) {
    const PartitionLsn record{partition, lsn};
    return SyncTo(absl::MakeConstSpan(&record, 1));
  }

  // After a snapshot: removes the snapshots and log segments it made
  // unnecessary. An error leaves files behind, for the next snapshot.
  // REQUIRES: storage_ != nullptr.
  absl::Status RemoveUnneededFiles()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(snapshot_mu_);

  // Reserves room for n new tasks under max_tasks; Release gives it back.
  absl::Status ReserveTasks(size_t n, absl::string_view where);
  void ReleaseTasks(size_t n);

  // A failed attempt of task_id (an expired lease, or a Fail call with
  // `error`), with backoff, or claimable retry_after_micros after now if
  // set; permanent: FAILED whatever attempts are left. *lsn: the record's
  // LSN.
  absl::Status FailAttemptLocked(Partition& p, uint64_t task_id, int64_t now,
                                 absl::string_view error, bool lease_expired,
                                 std::optional<int64_t> retry_after_micros,
                                 bool permanent, uint64_t* lsn, Wake* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // Expires task_id's lease if it is due at now (a failed attempt, as the
  // maintenance thread would have done). *lsn is raised to the LSN written.
  absl::Status ExpireIfDueLocked(Partition& p, uint64_t task_id, int64_t now,
                                 uint64_t* lsn, Wake* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // Expires every due lease of p and promotes its due delayed tasks.
  absl::Status ServiceLocked(Partition& p, int64_t now, uint64_t* lsn,
                             Wake* wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // ServiceLocked for every partition whose published next_due has come.
  absl::Status ServiceDuePartitions(int64_t now);

  // Checks that `claim` is its task's current claim: kAborted if it is
  // lost (see api/engine.h).
  absl::StatusOr<ClaimState> CheckClaimLocked(const Partition& p,
                                              const ClaimRef& claim,
                                              uint64_t* last_lsn) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // The start of Complete, Fail and Heartbeat: the engine takes writes, the
  // task's lease is expired if due (raising *lsn), and `claim` is its
  // current claim (*last_lsn: the task's last record).
  absl::StatusOr<ClaimState> ClaimOpLocked(Partition& p, const ClaimRef& claim,
                                           int64_t now, uint64_t* lsn,
                                           uint64_t* last_lsn, Wake* wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // When p's next PENDING task of `type` (empty: any) is claimable: now if
  // one is ready, else the earliest not-before time; kNever if none is
  // PENDING. Reads only.
  int64_t NextDueLocked(const Partition& p, absl::string_view type,
                        int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // The earliest NextDueLocked over every partition (each locked in turn).
  int64_t NextDue(absl::string_view type, int64_t now) const;
  // Claims a PENDING, due task (the caller has checked both) into
  // *claimed. (The claim is filled in place: a ClaimedTask carries the
  // task's payload, and moving it is not free.)
  absl::Status ClaimLocked(Partition& p, uint64_t task_id,
                           absl::string_view worker_id, int64_t lease_micros,
                           int64_t now, uint64_t* lsn, Wake* wake,
                           ClaimedTask* claimed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // One look over the partitions for the best ready task (of `type`, or any
  // when empty), and its claim into *claimed. false: none is ready.
  // *partition and *lsn: where the claim was journaled.
  absl::StatusOr<bool> TryClaimNext(absl::string_view worker_id,
                                    absl::string_view type,
                                    int64_t lease_micros, uint32_t* partition,
                                    uint64_t* lsn, ClaimedTask* claimed);
  // ClaimNext's checks of its arguments; OK: the lease in microseconds.
  absl::StatusOr<int64_t> CheckClaimNext(absl::string_view worker_id,
                                         const ClaimNextOptions& options) const;
  // ClaimNext without the wait for durability: *partition and *lsn say
  // what to SyncTo. lease_micros: LeaseMicros(options.lease).
  absl::StatusOr<ClaimedTask> ClaimNextUnsynced(absl::string_view worker_id,
                                                const ClaimNextOptions& options,
                                                int64_t lease_micros,
                                                uint32_t* partition,
                                                uint64_t* lsn);
  // Complete without the wait for durability (nor CheckOpen): *partition
  // and *lsn say what to SyncTo (*lsn 0: nothing).
  absl::Status CompleteUnsynced(const ClaimRef& claim, absl::string_view result,
                                uint32_t* partition, uint64_t* lsn);
  // Claims p's best ready task of `type` into *claimed if its rank is at
  // most max_rank; *seen_rank (if not null) receives that rank, kNever if
  // none is ready. Without wait_for_lock, a partition whose lock is held is
  // left alone: false, and *busy set.
  absl::StatusOr<bool> ClaimBestIn(Partition& p, absl::string_view worker_id,
                                   absl::string_view type, int64_t max_rank,
                                   int64_t lease_micros, bool wait_for_lock,
                                   bool* busy, uint64_t* lsn,
                                   int64_t* seen_rank, ClaimedTask* claimed)
      ABSL_LOCKS_EXCLUDED(p.mu);
  absl::StatusOr<bool> ClaimBestInLocked(
      Partition& p, absl::string_view worker_id, absl::string_view type,
      int64_t max_rank, int64_t lease_micros, uint64_t* lsn, int64_t* seen_rank,
      ClaimedTask* claimed, Wake* wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // Delay before the next attempt after `attempts` failed ones.
  int64_t BackoffMicros(Partition& p, const RetryPolicy& policy,
                        uint32_t attempts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu);
  // Runs an operator transition (Retry, Cancel, Delete) after checking the
  // task exists and `refusal(entry)` is empty (else it says why not);
  // refuse_if_waited_for: also refuse while another task waits for it.
  template <typename Refusal, typename Build>
  absl::Status OperatorTransition(uint64_t task_id, const char* what,
                                  Refusal refusal, Build build,
                                  bool refuse_if_waited_for = false);
  // The bulk operations: `op` is "retry", "cancel" or "delete"; `allowed`
  // its statuses, defaults first (`defaults` of them).
  enum class BulkOp { kRetry, kCancel, kDelete };
  absl::StatusOr<BulkResult> Bulk(BulkOp op, const BulkFilter& filter);
  // Schedules (engine/schedule.h computes due times). Firing, putting and
  // deleting hold every partition's lock: they are rare, and a fire's tasks
  // may fall into any partition.
  absl::Status CheckScheduleName(absl::string_view name) const;
  // Submits the tasks of every schedule due at `now`.
  absl::Status FireDueSchedules(int64_t now) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Handles `pass`, the due times of schedule `s` (in partition ps) up to
  // now, computed beforehand: one group of records. kResourceExhausted
  // (max_tasks) and kInvalidArgument (a record too large) change nothing
  // and are not sticky. REQUIRES: every partition's lock is held, and `s`
  // is the schedule as stored.
  absl::Status FireLocked(Partition& ps, const Schedule& s,
                          const ScheduleTiming::Pass& pass, int64_t now,
                          std::vector<PartitionLsn>* synced,
                          Wake* wake) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Recomputes next_schedule_due_ (leaving out unfireable schedules).
  // REQUIRES: every partition's lock.
  void UpdateNextScheduleDueLocked() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Schedules this engine cannot compute due times for (a time zone
  // missing on this machine, found by a maintenance pass): they do not
  // fire until replaced, or until an engine that has the zone opens the
  // directory. A leaf lock.
  absl::Mutex unfireable_mu_;
  absl::flat_hash_set<std::string> unfireable_ ABSL_GUARDED_BY(unfireable_mu_);
  // Journals records[g] in partition group[g] (ascending, distinct), as
  // one group (one plain record when there is one), applies them and adds
  // their LSNs to *synced. An error is sticky, except kInvalidArgument (a
  // record too large: nothing staged, nothing applied). REQUIRES: the
  // locks of the group's partitions are held.
  absl::Status CommitGroupLocked(absl::Span<const uint32_t> group,
                                 absl::Span<const Transition* const> records,
                                 std::vector<PartitionLsn>* synced,
                                 Wake* wake) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void LockAll() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockAll() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  absl::Status SetPaused(absl::string_view type, bool paused);
  // Deletes p's terminal tasks past retention, a chunk at a time.
  absl::Status ApplyRetention(Partition& p, int64_t now,
                              std::vector<PartitionLsn>* synced);

  void MaintenanceLoop();

  const EngineOptions options_;
  Clock* const clock_;
  const std::unique_ptr<Journal> journal_;
  const std::unique_ptr<Storage> storage_;
  const std::vector<std::unique_ptr<Partition>> partitions_;
  ClaimWaiters waiters_;

  std::atomic<bool> closed_{false};
  // Set once any task has dependencies (in this run): until then the
  // commit path does not look for waiters.
  std::atomic<bool> has_dependencies_{false};
  // A leaf lock, taken under partition locks.
  mutable absl::Mutex deps_mu_;
  // Task id -> tasks that waited for it when they were indexed; a waiter
  // may have stopped waiting since (cancelled, failed by another).
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> waiters_of_
      ABSL_GUARDED_BY(deps_mu_);
  // The earliest next due time of any schedule (Partition::kNever: none),
  // so that a maintenance pass with nothing due takes no lock for them.
  std::atomic<int64_t> next_schedule_due_{Partition::kNever};
  // Serializes Close(): a second caller waits for the first to finish and
  // gets its result.
  absl::Mutex close_mu_ ABSL_ACQUIRED_BEFORE(snapshot_mu_);
  bool close_done_ ABSL_GUARDED_BY(close_mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(close_mu_);
  std::atomic<uint64_t> deduplicated_{0};
  // Tasks held, kept only when max_tasks is set (a shared counter costs
  // every submit a contended cache line otherwise).
  std::atomic<uint64_t> live_tasks_{0};

  // The first journal error, as SetSticky made it; failed_ is set once it
  // is, so the write path checks a flag instead of taking sticky_mu_.
  // Mutable: Health() and CheckWritable() record a failure the journal met
  // on its own (CheckJournal).
  mutable std::atomic<bool> failed_{false};
  mutable absl::Mutex sticky_mu_;
  mutable absl::Status sticky_error_ ABSL_GUARDED_BY(sticky_mu_);

  // One snapshot at a time.
  absl::Mutex snapshot_mu_;
  std::atomic<uint64_t> snapshots_{0};
  // Records (all partitions) the last snapshot holds.
  std::atomic<uint64_t> last_snapshot_records_{0};
  // Records at the last automatic attempt, so a failing snapshot is
  // retried only after as many new records again.
  std::atomic<uint64_t> last_snapshot_attempt_{0};
  std::atomic<int64_t> last_snapshot_micros_{0};

  absl::Notification stop_maintenance_;
  std::thread maintenance_thread_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_ENGINE_IMPL_H_
