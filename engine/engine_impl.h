#ifndef TASKWAL_ENGINE_ENGINE_IMPL_H_
#define TASKWAL_ENGINE_ENGINE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "api/engine.h"
#include "api/env.h"
#include "engine/journal.h"
#include "engine/state_machine.h"
#include "engine/wal_journal.h"

namespace taskwal::engine {

// Checks EngineOptions; kInvalidArgument names the bad field.
absl::Status ValidateOptions(const EngineOptions& options);

// What an engine with a data directory holds besides its journal.
struct Storage {
  Env* env = nullptr;  // Not owned.
  std::string dir;
  std::unique_ptr<FileLock> lock;  // Held until Close.
  WalJournal* journal = nullptr;   // The engine's journal.
  RecoveryReport recovery;
};

// The Engine behind api/engine.h.
//
// Every mutation runs under commit_mu_: decide a Transition from the current
// state, Journal::Append it, StateMachine::Apply it, release the lock, then
// Journal::Sync to the record's LSN before acknowledging. One lock makes the
// journal order equal the apply order, which is what makes replay exact;
// the work under it is a few map operations and a buffered append, while
// the slow part (the sync) happens outside it and is shared by every writer
// waiting at the same time. Readers never take commit_mu_: they read the
// TaskTable, which locks one shard at a time.
//
// Lock order: commit_mu_, then a TaskTable shard lock, then the journal's
// internal lock.
class EngineImpl final : public Engine {
 public:
  // REQUIRES: ValidateOptions(options).ok(). `state` holds what recovery
  // rebuilt (or is empty); its LSNs must match `journal`. `storage` is null
  // for an in-memory engine.
  EngineImpl(const EngineOptions& options, std::unique_ptr<Journal> journal,
             std::unique_ptr<StateMachine> state,
             std::unique_ptr<Storage> storage = nullptr);
  ~EngineImpl() override;

  absl::Status Close() override
      ABSL_LOCKS_EXCLUDED(close_mu_, snapshot_mu_, commit_mu_);
  absl::StatusOr<SubmitResult> Submit(const TaskSpec& spec) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::StatusOr<std::vector<SubmitResult>> SubmitBatch(
      absl::Span<const TaskSpec> specs) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::StatusOr<ClaimedTask> Claim(uint64_t task_id,
                                    absl::string_view worker_id,
                                    absl::Duration lease) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::StatusOr<ClaimedTask> ClaimNext(absl::string_view worker_id,
                                        const ClaimNextOptions& options)
      override ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status Complete(uint64_t task_id, absl::string_view worker_id,
                        uint64_t claim_token,
                        absl::string_view result) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status Fail(uint64_t task_id, absl::string_view worker_id,
                    uint64_t claim_token, absl::string_view error) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::StatusOr<absl::Time> Heartbeat(uint64_t task_id,
                                       absl::string_view worker_id,
                                       uint64_t claim_token,
                                       absl::Duration extension) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status Retry(uint64_t task_id) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status Cancel(uint64_t task_id) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status Delete(uint64_t task_id) override
      ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::StatusOr<Task> Get(uint64_t task_id) override;
  absl::StatusOr<Task> GetByIdempotencyKey(absl::string_view key) override;
  absl::StatusOr<ListPage> List(const ListFilter& filter) override;
  absl::StatusOr<std::vector<HistoryEntry>> History(uint64_t task_id) override;
  absl::StatusOr<EngineStats> Stats() override ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status RunMaintenance() override ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status Snapshot() override
      ABSL_LOCKS_EXCLUDED(snapshot_mu_, commit_mu_);
  RecoveryReport Recovery() const override;

 private:
  // What a claim check found.
  enum class ClaimState { kCurrent, kAlreadyCompleted };

  int64_t NowMicros() const;
  absl::Status CheckOpen() const;
  absl::Status CheckWorker(absl::string_view worker_id) const;
  absl::StatusOr<int64_t> LeaseMicros(absl::Duration lease) const;
  absl::Status CheckSpec(const TaskSpec& spec) const;
  // Fills the new task *t for spec. REQUIRES: *t is a fresh message (fields
  // it leaves unset stay at their defaults).
  void NewTask(const TaskSpec& spec, uint64_t id, int64_t now, Task* t) const;
  // The task's retry policy: its own, or the engine's default.
  RetryPolicy PolicyOf(const TaskEntry& entry) const;
  // The task as callers see it: with its retry policy filled in.
  Task Resolved(Task task) const;

  // Fails when the engine is closed or a journal error made it read-only.
  absl::Status CheckWritableLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Journals and applies one record; returns its LSN. An error is made
  // sticky.
  absl::StatusOr<uint64_t> CommitLocked(const Transition& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Waits for the journal to cover lsn; an error is made sticky.
  absl::Status SyncTo(uint64_t lsn) ABSL_LOCKS_EXCLUDED(commit_mu_);

  // Expires task_id's lease if it is due at now (a failed attempt, as the
  // maintenance thread would have done). *lsn is raised to the LSN written.
  void WakeIfEarliestLeaseLocked(int64_t deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  absl::Status ExpireIfDueLocked(uint64_t task_id, int64_t now, uint64_t* lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  absl::Status ExpireDueLeasesLocked(int64_t now, uint64_t* lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  absl::Status ExpireLocked(uint64_t task_id, int64_t now, uint64_t* lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);

  // Checks that (worker_id, claim_token) is task_id's current claim.
  absl::StatusOr<ClaimState> CheckClaimLocked(uint64_t task_id,
                                              absl::string_view worker_id,
                                              uint64_t claim_token,
                                              uint64_t* last_lsn) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // The start of Complete, Fail and Heartbeat: the engine takes writes, the
  // task's lease is expired if due (raising *lsn), and (worker_id,
  // claim_token) is its current claim (*last_lsn: the task's last record).
  absl::StatusOr<ClaimState> ClaimOpLocked(uint64_t task_id,
                                           absl::string_view worker_id,
                                           uint64_t claim_token, int64_t now,
                                           uint64_t* lsn, uint64_t* last_lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Claims a PENDING, due task; the caller has checked both.
  absl::StatusOr<ClaimedTask> ClaimLocked(uint64_t task_id,
                                          absl::string_view worker_id,
                                          int64_t lease_micros, int64_t now,
                                          uint64_t* lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Delay before the next attempt after `attempts` failed ones.
  int64_t BackoffMicros(const RetryPolicy& policy, uint32_t attempts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Runs an operator transition (Retry, Cancel, Delete) after checking the
  // task exists and `allowed(status)`.
  template <typename Allowed, typename Build>
  absl::Status OperatorTransition(uint64_t task_id, const char* what,
                                  Allowed allowed, Build build)
      ABSL_LOCKS_EXCLUDED(commit_mu_);

  void MaintenanceLoop();

  const EngineOptions options_;
  Clock* const clock_;
  const std::unique_ptr<Journal> journal_;
  const std::unique_ptr<Storage> storage_;
  // Readers use the table through this pointer without commit_mu_; the
  // table locks its own shards. Writers change it only through state_.
  TaskTable* const table_;

  std::atomic<bool> closed_{false};
  // Serializes Close(): a second caller waits for the first to finish and
  // gets its result.
  absl::Mutex close_mu_ ABSL_ACQUIRED_BEFORE(snapshot_mu_);
  bool close_done_ ABSL_GUARDED_BY(close_mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(close_mu_);
  std::atomic<uint64_t> deduplicated_{0};

  mutable absl::Mutex commit_mu_;
  // Signalled whenever a task may have become claimable, and on Close.
  absl::CondVar ready_cv_;
  const std::unique_ptr<StateMachine> state_ ABSL_PT_GUARDED_BY(commit_mu_);
  absl::Status sticky_error_ ABSL_GUARDED_BY(commit_mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(commit_mu_);

  // One snapshot at a time. Lock order: snapshot_mu_ before commit_mu_.
  absl::Mutex snapshot_mu_ ABSL_ACQUIRED_BEFORE(commit_mu_);
  std::atomic<uint64_t> snapshots_{0};
  std::atomic<uint64_t> last_snapshot_lsn_{0};
  // LSN at the last automatic attempt, so a failing snapshot is retried
  // only after as many new records again.
  std::atomic<uint64_t> last_snapshot_attempt_lsn_{0};
  std::atomic<int64_t> last_snapshot_micros_{0};

  absl::Notification stop_maintenance_;
  std::thread maintenance_thread_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_ENGINE_IMPL_H_
