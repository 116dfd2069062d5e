#ifndef TASKWAL_API_ENGINE_H_
#define TASKWAL_API_ENGINE_H_

// taskwal: an embedded, persistent job engine.
//
// An Engine holds tasks that move through the lifecycle documented in
// api/task.proto. Every state transition is recorded as one record and
// applied by one deterministic state machine, so the state after a restart is
// exactly the state before it.
//
// Thread safety: an Engine is safe for concurrent use by any number of
// threads. Every method may be called concurrently with every other, Close()
// included; a call that starts after Close() returns kCancelled, whatever
// its arguments (Health() reports a sticky error first).
//
// Status codes (absl canonical codes). Each code means one thing, so a
// caller acts on the code and never on the message text; every method
// below lists the codes it returns.
//   kInvalidArgument     bad input: empty or oversized ids, keys, payloads,
//                        negative durations, ... Nothing changes; the same
//                        call fails again.
//   kNotFound            no task with that id or key. ClaimNext: no task is
//                        ready within the wait (NextDueTime tells whether
//                        and when one will be).
//   kAborted             the claim is lost: Complete, Fail or Heartbeat with
//                        a claim that is no longer the task's current one
//                        (another worker holds the task, the token is stale,
//                        the lease expired, an operator released it, or the
//                        task ended otherwise). Nothing changes. The worker
//                        drops the task and moves on; someone else runs it
//                        (or ran it).
//   kFailedPrecondition  the call is not allowed in the current state: the
//                        task's status forbids it (Claim of a task that is
//                        not PENDING or not yet due, Cancel of a task that
//                        is not PENDING, Delete of an active task, ...), a
//                        mutating call on a read-only engine, Snapshot of an
//                        in-memory engine, Open of a directory with another
//                        partition count or format version. Nothing
//                        changes; retrying the same call cannot help.
//   kCancelled           the engine is closed: the call started after
//                        Close(), or a ClaimNext was waiting when Close()
//                        came. Nothing changes. A worker loop stops.
//   kAlreadyExists       an idempotency key already names a different task.
//   kResourceExhausted   a configured limit (max_tasks) is reached; it
//                        frees up as tasks are deleted, so a retry may
//                        succeed. Never a storage error from an open
//                        engine: a full disk is kInternal like any other
//                        failed write (Open passes the Env's code on,
//                        since nothing is sticky yet: see Open).
//   kUnavailable         try again later: Open of a data directory that
//                        another engine (process) holds locked, a read-only
//                        Open whose directory changed on every try, or a
//                        Snapshot that failed without making the engine
//                        stop writing (the log still holds everything).
//   kInternal            the engine takes no more writes: the journal failed
//                        to persist a transition (a failed write or
//                        fdatasync, a full disk included). Sticky: from then
//                        on every mutating call fails with this same status,
//                        and so does Close; Health() returns it without a
//                        write; reads keep working. Retrying cannot help;
//                        Close the engine and Open it again (recovery keeps
//                        every acknowledged transition). The message holds
//                        the original error.
//   kDataLoss            Open: the log or snapshots are damaged; the message
//                        names the file and offset.
// When several apply: kCancelled (closed) first, then kInvalidArgument, then
// the engine's own state (read-only: kFailedPrecondition; the sticky
// kInternal), then the task's (kNotFound, kAborted, kFailedPrecondition).

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "taskwal/clock.h"
#include "taskwal/env.h"
#include "taskwal/task.pb.h"

namespace taskwal {

// When a mutating call returns OK, relative to its transition record. See
// README.md ("Durability") for what each mode survives.
enum class SyncMode {
  // The record is on disk (fdatasync). Survives process crash and power
  // loss. Concurrent callers share one fdatasync (group commit).
  kAlways,
  // The record has been written to the OS. Survives a process crash; a power
  // loss can lose the last sync_interval of acknowledged transitions.
  kInterval,
  // The record may still be in the engine's memory. A process crash can
  // lose up to the last log buffer (1 MiB) of acknowledged transitions; for
  // tests and benchmarks. Close() still flushes and syncs everything.
  kNone,
};

// The partition count of a new data directory or in-memory engine when
// EngineOptions::partitions is 0.
inline constexpr uint32_t kDefaultPartitions = 16;

struct EngineOptions {
  // Where the log and snapshots live. Created (mode 0700) if missing, and
  // locked: a second Open of the same directory fails (kUnavailable) until
  // Close. Empty
  // means an in-memory engine whose state ends with the process.
  std::string data_dir;

  // File system for data_dir. Not owned; must outlive the engine. nullptr
  // means Env::Default() (POSIX). Tests pass a FaultInjectionEnv.
  Env* env = nullptr;

  SyncMode sync_mode = SyncMode::kAlways;
  // kInterval: how often the background fdatasync runs. Must be positive
  // in kInterval mode; ignored otherwise.
  absl::Duration sync_interval = absl::Milliseconds(10);
  // A log segment is closed and a new one started past this size. At least
  // 4096.
  uint64_t segment_bytes = 64 << 20;
  // Take a snapshot (in the maintenance thread) after this many records
  // since the last one. 0: only when Snapshot() is called. Any value.
  uint64_t snapshot_every_records = 1000000;
  // Recovery from a damaged log. false: Open fails with kDataLoss naming the
  // file and offset. true: keep the valid prefix, set the rest aside
  // (renamed *.salvaged) and open; Recovery() reports what was dropped.
  bool salvage = false;
  // Inspect a data directory without changing it, also while another engine
  // (another process) holds it: no lock is taken, no file is written,
  // truncated or renamed, a torn tail is skipped rather than cut, and there
  // is no maintenance thread. The engine shows the state the files held at
  // one moment during Open, however busy their owner: Open holds every
  // file open from the start, so a snapshot that discards older files
  // meanwhile changes nothing (wal/pinned_dir.h; up to 512 files, beyond
  // which a vanished file makes Open start over). Every mutating call
  // returns kFailedPrecondition. The directory must exist. Not combinable
  // with salvage.
  bool read_only = false;
  // Every writer's Open stores its data options in the directory (the
  // OPTIONS file: the input limits, max_tasks, default_max_attempts,
  // max_max_attempts, default_lease, max_lease, default_retry_policy,
  // max_history_per_task and retention; partitions are stored apart). true:
  // the values stored there replace the ones given here, so that a program
  // opening a directory another one owns (the CLI) accepts, refuses and
  // keeps what the owner does. A directory without an OPTIONS file keeps
  // the values given. Open fails with kDataLoss if the file is damaged (the
  // owner's next Open rewrites it) and kInvalidArgument if a stored value
  // is out of range. Ignored without a data_dir.
  bool use_stored_options = false;

  // Partitions: independent slices of the tasks, each with its own commit
  // lock, state and record sequence, so that calls on different partitions
  // commit in parallel (one fdatasync still covers them all). A task lives
  // in the partition of its idempotency key (deduplication stays within
  // one partition) and its id names that partition. See "Partitions" in
  // README.md for what is ordered across partitions and what is not.
  // 0 means: the data directory's count, or kDefaultPartitions (16) for a
  // new directory or an in-memory engine. A data directory keeps the count
  // it was created with (stored in it); Open with another nonzero count
  // fails with kFailedPrecondition and changes nothing. In [0, 256].
  uint32_t partitions = 0;

  // Number of lock shards for the task tables and idempotency indexes, all
  // partitions together (each gets num_shards / partitions, at least one).
  // Must be in [1, 4096].
  int num_shards = 16;

  // Source of time. Not owned; must outlive the engine. nullptr means
  // Clock::Real().
  Clock* clock = nullptr;

  // Seed for backoff jitter. 0 picks a random seed. Any value.
  uint64_t random_seed = 0;

  // Input limits. Calls that exceed one get kInvalidArgument. Open refuses
  // (kInvalidArgument) a limit that would refuse every call: keys and
  // worker ids are required, so their limits must be at least 1; types,
  // payloads, results and errors may be empty, so 0 there allows only
  // empty ones. With a data_dir, a call whose record would exceed 64 MiB
  // gets kInvalidArgument whatever the limits.
  size_t max_idempotency_key_bytes = 512;  // At least 1.
  size_t max_type_bytes = 256;             // Any value.
  size_t max_payload_bytes = 1 << 20;      // Any value.
  size_t max_result_bytes = 1 << 20;       // Any value.
  size_t max_error_bytes = 4096;           // Any value.
  size_t max_worker_id_bytes = 256;        // At least 1.
  size_t max_batch_size = 10000;           // At least 1.

  // Tasks held at once (all statuses). 0 means no limit. Submitting past it
  // gets kResourceExhausted.
  uint64_t max_tasks = 0;

  // Defaults for tasks whose spec leaves them unset.
  uint32_t default_max_attempts = 3;  // In [1, max_max_attempts].
  uint32_t max_max_attempts = 1000;   // At least 1.
  absl::Duration default_lease = absl::Seconds(30);  // Positive.
  absl::Duration max_lease = absl::Hours(24);        // At least default_lease.
  // Backoffs at least 0, multiplier finite and at least 1, jitter in [0, 1].
  RetryPolicy default_retry_policy = DefaultRetryPolicy();

  // History entries kept per task; older entries are dropped first, and
  // counted in Task::history_dropped. 0 keeps no history (History returns
  // no entries; history_dropped counts them all). Any value. An engine
  // opened with a smaller bound than the directory's last writer (see
  // use_stored_options) cuts a task's history on the task's next event, and
  // a snapshot then keeps the cut.
  size_t max_history_per_task = 32;

  // Terminal tasks (COMPLETED, FAILED, CANCELLED) are deleted this long after
  // they finished, freeing their idempotency keys. Zero keeps them forever.
  // Not negative.
  absl::Duration retention = absl::ZeroDuration();

  // How often a background thread expires leases, applies retention and
  // takes automatic snapshots. Zero disables the thread; RunMaintenance()
  // still works, and every mutating call on a task (and ClaimNext, for all
  // tasks) first expires a lease that is due. Reads show a task as it was
  // last changed: a CLAIMED task past its deadline stays CLAIMED in Get()
  // until one of those runs. Not negative.
  absl::Duration maintenance_interval = absl::Milliseconds(100);

  static RetryPolicy DefaultRetryPolicy() {
    RetryPolicy p;
    p.set_initial_backoff_micros(1000000);
    p.set_max_backoff_micros(300000000);
    p.set_multiplier(2.0);
    p.set_jitter(0.2);
    return p;
  }
};

// What a producer asks for. Keys, types, worker ids and errors are text:
// they must be valid UTF-8 (kInvalidArgument otherwise); payloads and
// results are any bytes.
struct TaskSpec {
  // Required; the same key (with the same type and payload) yields the same
  // task until that task is deleted. UTF-8.
  std::string idempotency_key;
  std::string type;     // UTF-8.
  std::string payload;  // Under 1 GiB, whatever max_payload_bytes says.
  int32_t priority = 0;
  // 0 means EngineOptions::default_max_attempts.
  uint32_t max_attempts = 0;
  // The task is not claimable before this time.
  absl::Time not_before = absl::InfinitePast();
  // Overrides EngineOptions::default_retry_policy for this task.
  std::optional<RetryPolicy> retry_policy;
  // Dependencies: the idempotency keys of the tasks this one waits for,
  // existing tasks or specs of the same SubmitBatch (earlier or later).
  // The task is PENDING but not claimable (ClaimNext skips it, Claim
  // refuses it, NextDueTime does not count it) until every one of them is
  // COMPLETED; Task::waiting_for lists those it still waits for. If one
  // ends otherwise (FAILED or CANCELLED, and not revived first by Retry),
  // the task becomes FAILED or CANCELLED as on_dependency_failure says,
  // with last_error naming the dependency, and so on down the chain. At
  // most 64 keys, each checked like idempotency_key, no repeats, not the
  // task's own key. Ignored when the key names an existing task (the
  // submit returns that task, whatever its dependencies). Not allowed in
  // a ScheduleSpec's task.
  std::vector<std::string> depends_on;
  DependencyFailurePolicy on_dependency_failure = DEPENDENCY_FAILURE_FAIL;
};

struct SubmitResult {
  uint64_t task_id = 0;
  // True when the key already named a task and that task was returned.
  bool deduplicated = false;
};

// One claim of one task: what Complete, Fail and Heartbeat need, as one
// value, so that its parts cannot be passed in the wrong order. Take it from
// ClaimedTask::claim. A program that hands claims to other processes (its
// own RPC) may send the three fields and build a ClaimRef from them again.
struct ClaimRef {
  uint64_t task_id = 0;
  std::string worker_id;  // The worker that claimed the task.
  // Fences the claim: every claim of a task gets a new token, so a worker
  // whose lease ran out cannot complete the task someone else now holds.
  uint64_t token = 0;
};

// A claim held by a worker.
struct ClaimedTask {
  Task task;             // The task as of the claim.
  ClaimRef claim;        // For Complete, Fail and Heartbeat.
  uint32_t attempt = 0;  // 1 for the first attempt.
  absl::Time lease_deadline;
};

struct ClaimNextOptions {
  // Only tasks of this type; empty means any type.
  std::string type;
  // Lease length; zero means EngineOptions::default_lease.
  absl::Duration lease = absl::ZeroDuration();
  // How long to wait for a ready task before returning kNotFound. Zero
  // returns at once. Waiting does not poll: the caller sleeps until a task
  // becomes ready, the wait ends, or the engine closes. A task that comes
  // due (backoff, not_before) within the wait is claimed.
  absl::Duration wait = absl::ZeroDuration();
};

// One completion of Engine::CompleteBatch: Complete(claim, result).
struct Completion {
  ClaimRef claim;
  std::string result;
};

// The most claims ClaimNextBatch takes, and completions CompleteBatch
// makes, in one call.
inline constexpr size_t kMaxClaimBatch = 1000;

// How Fail treats the failed attempt. The defaults are Fail(claim, error).
struct FailOptions {
  // With attempts left, the task becomes claimable this long after the
  // failure instead of after its retry policy's backoff. Unset: the
  // backoff. Zero: at once. Not negative, finite.
  std::optional<absl::Duration> retry_after;
  // No more attempts: the task becomes FAILED now, whatever attempts it has
  // left (retry_after is then ignored). Retry() still revives it.
  bool permanent = false;
};

struct ListFilter {
  std::optional<TaskStatus> status;  // Unset: every status.
  std::string type;                  // Empty: every type.
  size_t limit = 100;                // In [1, 10000].
  uint64_t after_id = 0;             // Resume cursor: ids greater than this.
  // false: the tasks come without their payload and result (both left
  // empty), for a listing that does not show them: a page of large tasks
  // is then read and sent at the cost of small ones. Get returns them.
  bool payloads = true;
};

struct ListPage {
  std::vector<Task> tasks;  // Ascending id.
  // Pass as ListFilter::after_id to get the next page; 0 when there is none.
  uint64_t next_cursor = 0;
};

// Which tasks a bulk operation (RetryMatching, CancelMatching,
// DeleteMatching) changes: every task that matches all of the fields set.
struct BulkFilter {
  // One status the operation allows (see each operation); unset: every
  // status it allows by default.
  std::optional<TaskStatus> status;
  std::string type;  // Empty: every type.
  // Only tasks created before this time.
  absl::Time created_before = absl::InfiniteFuture();
  // Only tasks that finished (became COMPLETED, FAILED or CANCELLED) before
  // this time; a task that has not finished never matches once it is set.
  absl::Time finished_before = absl::InfiniteFuture();
  // At most this many tasks are changed, lowest ids first; 0: every
  // matching task.
  uint64_t limit = 0;
  // Find the tasks, change nothing (BulkResult lists those that would
  // change).
  bool dry_run = false;
};

struct BulkResult {
  uint64_t changed = 0;  // Tasks changed (0 for a dry run).
  // The tasks changed (or that would be, for a dry run), ascending.
  std::vector<uint64_t> task_ids;
  // The limit was reached and more tasks match: run again for the next.
  bool more = false;
};

// A durable periodic task (Engine::PutSchedule). The engine submits one
// task per due time, from its maintenance pass (every
// EngineOptions::maintenance_interval, or RunMaintenance), with the
// idempotency key "schedule:<name>@<due time, RFC 3339 UTC>" and not_before
// the due time: a restart, two maintenance passes at once or a clock jump
// never submit a due time twice (firing is one journaled group: the
// schedule's advance and its tasks, all or none).
struct ScheduleSpec {
  // Unique among schedules; non-empty UTF-8, at most 128 bytes, and short
  // enough for the task keys (max_idempotency_key_bytes).
  std::string name;
  // When, one of:
  //   cron: five fields "minute hour day-of-month month day-of-week" or a
  //     macro (@hourly, @daily, @weekly, @monthly, @yearly), evaluated in
  //     time_zone (an IANA name such as "Europe/Berlin"; "" is UTC; zones
  //     come from /usr/share/zoneinfo). Grammar and daylight-saving rules:
  //     README "Periodic tasks". A skipped local time fires once at the end
  //     of the gap; a repeated one fires once, the first time.
  //   interval: due at start + k * interval, k = 0, 1, ...; at least one
  //     second. start: absl::InfinitePast() means the time of the first
  //     PutSchedule.
  std::string cron;
  std::string time_zone;
  absl::Duration interval = absl::ZeroDuration();
  absl::Time start = absl::InfinitePast();
  // Due times found more than misfire_grace late (the engine was not
  // running, maintenance was held up, or the clock jumped forward):
  // MISSED_SKIP skips them (Schedule::skipped counts them), MISSED_CATCH_UP
  // submits every one, oldest first (at most 1000 per maintenance pass).
  Schedule::MissedPolicy missed = Schedule::MISSED_SKIP;
  // Not negative. Keep it well above maintenance_interval: a pass finds a
  // due time up to one interval late, and MISSED_SKIP with a grace of 0
  // skips nearly every one.
  absl::Duration misfire_grace = absl::Minutes(1);
  // The tasks: type, payload (at most 16 KiB: a scheduled task refers to
  // large data rather than carrying it), priority, max_attempts,
  // retry_policy as for Submit; idempotency_key and not_before must be
  // left unset. A due time whose task the engine's options refuse when it
  // comes (they changed since the Put) is skipped and counted in
  // Schedule::skipped. At max_tasks the due times wait for room.
  TaskSpec task;
};

// What Open found and did to the data directory.
// LSNs count records per partition; the LSNs here are sums over the
// partitions (records since the data began).
struct RecoveryReport {
  uint64_t snapshot_lsn = 0;       // 0: no snapshot was used.
  uint64_t records_replayed = 0;   // Log records applied after it.
  uint64_t last_lsn = 0;           // Records recovered in all.
  uint64_t truncated_bytes = 0;    // Torn tail (or salvage) cut off.
  absl::Duration duration;         // Wall time of the recovery.
  std::vector<std::string> notes;  // Repairs, set-aside files, salvage.
};

// The tasks of one type, in EngineStats::by_type.
struct TypeStats {
  uint64_t pending = 0;  // Waiting for dependencies or not_before included.
  uint64_t claimed = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t cancelled = 0;
  // When the longest-waiting ready PENDING task of this type became ready:
  // its submission, the end of its not_before (a retry backoff included),
  // or the Fail, lease expiry or Retry that made it PENDING again.
  // InfiniteFuture: no task of the type is ready (none PENDING, or all of
  // them wait for dependencies or a not_before still to come). Paused types
  // are counted all the same. A task whose last dependency completed counts
  // from that moment, or, once recovered from a snapshot, from when it last
  // became PENDING (snapshots keep no more).
  absl::Time oldest_ready = absl::InfiniteFuture();

  uint64_t tasks() const {
    return pending + claimed + completed + failed + cancelled;
  }
  // Adds other's counts and keeps the earlier oldest_ready: how partitions
  // and shards of one engine combine.
  void Merge(const TypeStats& other) {
    pending += other.pending;
    claimed += other.claimed;
    completed += other.completed;
    failed += other.failed;
    cancelled += other.cancelled;
    oldest_ready = std::min(oldest_ready, other.oldest_ready);
  }
};

struct EngineStats {
  uint64_t pending = 0;
  uint64_t claimed = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t cancelled = 0;
  uint64_t tasks = 0;  // Sum of the above.
  // The same counts by task type, with the oldest ready task of each. Only
  // types that have a task are listed (a type whose last task is deleted
  // or removed by retention leaves the map); the counts of all of them sum
  // to the counts above.
  std::map<std::string, TypeStats> by_type;

  // Submits answered with an existing task since this Open.
  uint64_t deduplicated = 0;

  // Totals since the engine's data began (they survive restarts).
  uint64_t submitted = 0;  // Tasks created.
  uint64_t claims = 0;
  uint64_t completions = 0;
  uint64_t failed_attempts = 0;  // Fail calls and lease expiries.
  uint64_t lease_expiries = 0;
  uint64_t retries = 0;
  uint64_t cancellations = 0;
  uint64_t deletions = 0;  // Delete calls.
  uint64_t retention_removals = 0;
  uint64_t transitions = 0;  // Records applied.

  uint32_t partitions = 0;
  uint64_t paused_types = 0;  // Types paused (PausedTypes() lists them).
  uint64_t schedules = 0;     // Schedules (ListSchedules() lists them).

  // Storage (zero for an in-memory engine), since this Open. LSNs count
  // records per partition; last_lsn and last_snapshot_lsn are sums over
  // the partitions, i.e. records since the data began.
  uint64_t last_lsn = 0;
  uint64_t fsyncs = 0;
  uint64_t wal_bytes = 0;            // Log bytes written.
  uint64_t wal_flushes = 0;          // Group-commit batches written.
  uint64_t wal_records_flushed = 0;  // Records in those batches.
  uint64_t snapshots = 0;            // Snapshots taken.
  uint64_t last_snapshot_lsn = 0;
  absl::Time last_snapshot_time = absl::InfinitePast();
};

class Engine {
 public:
  // Opens an engine: with a data_dir, loads the newest valid snapshot and
  // replays the log after it, so the engine is exactly where it was.
  // OK: the engine, ready for calls.
  // kInvalidArgument: an option out of its range (each option's comment
  //   gives it), or a stored option out of range (use_stored_options); the
  //   message names the option.
  // kUnavailable: data_dir is locked by another engine, in this process or
  //   another (the message names the holding process when known): retry
  //   once it closes. Or: read_only, and the owner changed the directory's
  //   files every time Open tried to take hold of them (many tries); try
  //   later.
  // kFailedPrecondition: data_dir was created with another partition count
  //   than options.partitions, or holds a format version this build does
  //   not read (version 1: taskwal before partitions). Nothing changes.
  // kDataLoss: the log or snapshots are damaged beyond a torn final record
  //   (see EngineOptions::salvage), or the OPTIONS file is damaged
  //   (use_stored_options); the message names the file and offset.
  //   Nothing in the directory is changed in that case.
  // kNotFound: read_only and data_dir does not exist.
  // Other codes: I/O errors from the Env (kPermissionDenied, kInternal, a
  //   full disk's kResourceExhausted, ...).
  static absl::StatusOr<std::unique_ptr<Engine>> Open(
      const EngineOptions& options);

  Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Closes the engine if Close() was not called.
  virtual ~Engine() = default;

  // Stops the background thread, wakes blocked ClaimNext calls (they return
  // kCancelled), makes every later call fail with kCancelled, flushes and
  // syncs the log and releases the data directory's lock.
  // OK: everything acknowledged is durable.
  // kInternal: the sticky error, one from before or one that closing the
  //   journal made.
  // Idempotent: a second call returns the first one's result.
  virtual absl::Status Close() = 0;

  // Creates a task, or returns the task that already has spec's key.
  // OK: the task exists (deduplicated tells which case).
  // kInvalidArgument: empty or oversized key, type or payload; max_attempts
  //   out of range; not_before infinite-future; a retry policy with a
  //   negative backoff, a multiplier below 1 or not finite, or a jitter
  //   outside [0, 1]; more than 64 depends_on keys, a bad, repeated or own
  //   key among them (a cycle), or an unknown on_dependency_failure.
  // kAlreadyExists: the key names a task with a different type or payload;
  //   the message names that task.
  // kNotFound: a depends_on key names no task (and, in a batch, no spec).
  // kFailedPrecondition: a depends_on key names a task that is already
  //   FAILED or CANCELLED (Retry it first, or leave the dependency out).
  // kResourceExhausted: max_tasks reached.
  // kFailedPrecondition: read-only engine. kCancelled: closed.
  // kInternal: the sticky error.
  virtual absl::StatusOr<SubmitResult> Submit(const TaskSpec& spec) = 0;

  // Submits many tasks as one transition: all of them or none. Each spec is
  // deduplicated as Submit would (against existing tasks and against earlier
  // specs in the batch). Any error rejects the whole batch, nothing changes,
  // and the message names the index of the offending spec.
  // OK: results in spec order.
  // Dependencies may name specs of the batch, in any order; a cycle among
  // them (A waits for B, B for A, or longer) is kInvalidArgument naming
  // the keys.
  // Codes as Submit; also kInvalidArgument for an empty batch or one longer
  // than max_batch_size.
  virtual absl::StatusOr<std::vector<SubmitResult>> SubmitBatch(
      absl::Span<const TaskSpec> specs) = 0;

  // Claims a specific PENDING task whose not-before time has come. Counts an
  // attempt. lease zero means default_lease.
  // OK: the claim; pass ClaimedTask::claim to Complete, Fail, Heartbeat.
  // kInvalidArgument: empty, oversized or non-UTF-8 worker id, negative or
  //   too long lease.
  // kNotFound: no such task.
  // kFailedPrecondition: the task is not PENDING, or not yet due (the
  //   message says when), or waits for dependencies; or a read-only engine.
  // kCancelled: closed. kInternal: the sticky error.
  virtual absl::StatusOr<ClaimedTask> Claim(uint64_t task_id,
                                            absl::string_view worker_id,
                                            absl::Duration lease) = 0;

  // Claims a ready task, optionally only of one type, optionally waiting.
  // Order: a task of the highest priority any partition has ready (as
  // published when the call looks); within a partition, oldest (lowest id)
  // first among equals; across partitions with equal priorities, round
  // robin from a position that moves per thread and call, so no partition
  // waits behind another's backlog. With one partition this is exactly
  // "highest priority, then oldest". A waiting caller is woken by a task
  // of its type becoming ready (one caller per task), not by every change.
  // OK: the claim; pass ClaimedTask::claim to Complete, Fail, Heartbeat.
  // kNotFound: nothing ready within options.wait. Not "nothing left": tasks
  //   may wait out a backoff or their not_before time; the message says
  //   when the next is due, and NextDueTime(options.type) returns it. A
  //   worker loop goes on while NextDueTime returns a time.
  // kInvalidArgument: as Claim, a negative wait, or an oversized or
  //   non-UTF-8 type.
  // kFailedPrecondition: read-only engine.
  // kCancelled: the engine is closed, or closed while this call waited.
  // kInternal: the sticky error.
  virtual absl::StatusOr<ClaimedTask> ClaimNext(
      absl::string_view worker_id, const ClaimNextOptions& options) = 0;

  // Claims up to max_tasks ready tasks in one call: as ClaimNext called
  // until it finds none ready, waiting (options.wait) only for the first.
  // Each claim is a transition of its own (it counts an attempt, gets a
  // token and its lease from when it is made), but the call waits for
  // them to become durable (per sync_mode) together: a worker taking tasks
  // in batches pays one journal round trip per batch, not per task.
  // OK: 1 to max_tasks claims, in the order they were made.
  // kInvalidArgument: max_tasks is 0 or above kMaxClaimBatch (or, for a
  //   local engine, above its max_batch_size); or as ClaimNext.
  // kNotFound: nothing ready within options.wait, as ClaimNext.
  // Other codes as ClaimNext. A failure after the first claim was made
  // ends the batch there: the claims made are returned (once durable).
  // An engine without a batched path of its own (this default) calls
  // ClaimNext once per claim.
  virtual absl::StatusOr<std::vector<ClaimedTask>> ClaimNextBatch(
      absl::string_view worker_id, const ClaimNextOptions& options,
      size_t max_tasks);

  // When a PENDING task of `type` (empty: any type) is claimable: a time
  // at or before now if one is ready (ClaimNext would take it), else the
  // earliest not-before time among those that wait out a backoff or their
  // TaskSpec::not_before. Tasks that wait for dependencies do not count:
  // they become claimable when their last dependency completes, at no time
  // known in advance. nullopt: no task of that type is PENDING, so
  // ClaimNext finds one only after a Submit, a Retry, or a Fail or lease
  // expiry of a CLAIMED task (EngineStats::claimed counts those). A read:
  // it changes nothing, and works on a read-only engine.
  // OK: as above.
  // kInvalidArgument: an oversized or non-UTF-8 type.
  // kCancelled: closed.
  virtual absl::StatusOr<std::optional<absl::Time>> NextDueTime(
      absl::string_view type) = 0;

  // Completes the task held by this claim and stores result. Repeating the
  // call with the same claim returns OK and keeps the first result.
  // OK: the task is COMPLETED (durably, per sync_mode).
  // kInvalidArgument: empty, oversized or non-UTF-8 claim.worker_id,
  //   oversized result.
  // kAborted: the claim is lost: another worker holds the task, the token
  //   is stale, the lease expired (the task went back to PENDING or to
  //   FAILED), an operator released it with Retry, or it ended otherwise
  //   (deleted since included). Nothing changes; drop the task.
  // kFailedPrecondition: read-only engine. kCancelled: closed.
  // kInternal: the sticky error.
  virtual absl::Status Complete(const ClaimRef& claim,
                                absl::string_view result) = 0;

  // Completes many claims in one call, each on its own as Complete would
  // (one that is refused leaves the others done), the engine waiting for
  // them to become durable (per sync_mode) together.
  // OK: one status per completion, in order: OK, or the code Complete
  //   would return for it alone (kInvalidArgument, kAborted).
  // kInvalidArgument: no completions, or more than kMaxClaimBatch.
  // kFailedPrecondition: read-only engine. kCancelled: closed.
  // kInternal: the sticky error. Other codes as Complete. On any of these
  //   some completions may have been made; repeating the call is safe
  //   (Complete is idempotent for a claim).
  // An engine without a batched path of its own (this default) calls
  // Complete once per completion.
  virtual absl::StatusOr<std::vector<absl::Status>> CompleteBatch(
      absl::Span<const Completion> completions);

  // Fails the current attempt. With attempts left the task returns to
  // PENDING and becomes claimable after the task's backoff (NextDueTime
  // shows when); on the last attempt it becomes FAILED.
  // OK: the attempt is recorded as failed.
  // Codes as Complete (kInvalidArgument for an oversized or non-UTF-8
  // error), and kAborted also when this claim already completed the task.
  virtual absl::Status Fail(const ClaimRef& claim, absl::string_view error) = 0;

  // Fail with options: a retry delay chosen by the caller, or a permanent
  // failure (FAILED whatever attempts are left). Journaled as one record,
  // as Fail.
  // OK: the attempt is recorded as failed (the task is FAILED if permanent
  //   or on its last attempt, else PENDING until the delay has passed).
  // Codes as Fail, plus kInvalidArgument for a negative or infinite
  // retry_after.
  virtual absl::Status Fail(const ClaimRef& claim, absl::string_view error,
                            const FailOptions& options) = 0;

  // Extends the claim's lease to now + extension (zero means default_lease).
  // OK: the new deadline.
  // Codes as Fail, plus kInvalidArgument for a negative or too long
  // extension.
  virtual absl::StatusOr<absl::Time> Heartbeat(const ClaimRef& claim,
                                               absl::Duration extension) = 0;

  // Operator action. CLAIMED: releases the claim (the attempt in progress is
  // not counted, so this works on the last attempt too; the holder's next
  // call gets kAborted). FAILED: back to PENDING with a fresh attempt
  // budget. PENDING: claimable now, skipping any remaining backoff. A task
  // with dependencies that Retry revives from FAILED does not wait for
  // them again: it is claimable at once.
  // OK: the task is PENDING and claimable.
  // kNotFound: no such task. kFailedPrecondition: COMPLETED or CANCELLED,
  // a PENDING task that waits for dependencies, or a read-only engine.
  // kCancelled: closed. kInternal: the sticky error.
  virtual absl::Status Retry(uint64_t task_id) = 0;

  // Cancels a PENDING task (terminal state CANCELLED), one that waits for
  // dependencies included; the tasks that wait for it fail or are
  // cancelled (TaskSpec::on_dependency_failure).
  // OK: the task is CANCELLED.
  // kNotFound: no such task. kFailedPrecondition: not PENDING, or a
  // read-only engine. kCancelled: closed. kInternal: the sticky error.
  virtual absl::Status Cancel(uint64_t task_id) = 0;

  // Deletes a terminal task and frees its idempotency key.
  // OK: the task is gone.
  // kNotFound: no such task. kFailedPrecondition: PENDING or CLAIMED; a
  // task that another task still waits for (only for the moment between
  // its end and the engine's resolving its dependents, or before that
  // repair after a crash), or a read-only engine. kCancelled: closed.
  // kInternal: the sticky error.
  virtual absl::Status Delete(uint64_t task_id) = 0;

  // Bulk operator actions: Retry, Cancel or Delete every task that matches
  // `filter`, as the single-task calls would, each task its own journaled
  // transition. The engine works through the matching tasks in batches
  // (a bounded number per partition lock hold, one sync per batch), so
  // other calls go on meanwhile; a task that changes status while the
  // operation runs is taken as it is when its batch reaches it, and a task
  // created meanwhile may or may not be included. Statuses allowed (and
  // the default set when filter.status is unset):
  //   RetryMatching:  FAILED (default), PENDING (not those that wait for
  //                   dependencies), CLAIMED (releases the claims: the
  //                   holders' next calls get kAborted).
  //   CancelMatching: PENDING (default).
  //   DeleteMatching: COMPLETED, FAILED, CANCELLED (all three by default;
  //                   not one that a task still waits for, see Delete).
  // OK: what changed (BulkResult), durably per sync_mode.
  // kInvalidArgument: a status the operation does not allow (or
  //   TASK_STATUS_UNSPECIFIED), an oversized or non-UTF-8 type.
  // kFailedPrecondition: read-only engine (a dry run works on one).
  // kCancelled: closed.
  // kInternal: the sticky error; the tasks changed before it stay changed
  //   and the message says how many.
  virtual absl::StatusOr<BulkResult> RetryMatching(
      const BulkFilter& filter) = 0;
  virtual absl::StatusOr<BulkResult> CancelMatching(
      const BulkFilter& filter) = 0;
  virtual absl::StatusOr<BulkResult> DeleteMatching(
      const BulkFilter& filter) = 0;

  // Creates the schedule, or replaces the one with spec.name. Its first due
  // time is the earliest one strictly after now. A replacement that keeps
  // the timing (cron, time_zone, interval, start) keeps the schedule's
  // position and counters; one that changes it starts from now. Either way
  // no due time at or before the last one handled is submitted again.
  // OK: the schedule as stored (next_due_micros says when it fires).
  // kInvalidArgument: a bad name; neither or both of cron and interval; a
  //   cron expression or time zone that does not parse, or never matches
  //   (the message names the field); a time zone or a start with an
  //   interval or a cron expression respectively; an interval under one
  //   second; a negative misfire_grace; a start outside 1970-9999; a task
  //   spec that Submit would refuse, with a payload over 16 KiB, or with an
  //   idempotency_key or not_before set.
  // kResourceExhausted: a new schedule when 1000 exist.
  // kFailedPrecondition: read-only engine. kCancelled: closed.
  // kInternal: the sticky error.
  virtual absl::StatusOr<Schedule> PutSchedule(const ScheduleSpec& spec) = 0;
  // Removes a schedule; the tasks it submitted stay.
  // OK: removed. kNotFound: no schedule of that name. kInvalidArgument: an
  // empty, non-UTF-8 or over 128-byte name. Other codes as PutSchedule.
  virtual absl::Status DeleteSchedule(absl::string_view name) = 0;
  // Reads (they work on a read-only engine).
  // Schedule::next_due_micros is INT64_MAX when it is never due again. A
  // schedule whose time zone this machine lacks does not fire until it is
  // replaced or an engine that has the zone opens the directory.
  // OK: the schedule. kNotFound: none of that name. kInvalidArgument: as
  // DeleteSchedule. kCancelled: closed.
  virtual absl::StatusOr<Schedule> GetSchedule(absl::string_view name) = 0;
  // OK: every schedule, by name. kCancelled: closed.
  virtual absl::StatusOr<std::vector<Schedule>> ListSchedules() = 0;

  // Flow control: stops claiming tasks of `type` until Resume(type).
  // ClaimNext skips the type's PENDING tasks (for its type and for "any
  // type"), Claim refuses them (kFailedPrecondition), NextDueTime(type)
  // returns nullopt, and nothing else changes: submits, completes, fails,
  // lease expiries and operator calls go on, and running claims run to
  // their end. Durable: one journaled transition, so the pause survives a
  // restart. Idempotent: pausing a paused type is OK and writes nothing.
  // A type need not have tasks yet.
  // OK: the type is paused.
  // kInvalidArgument: an empty (empty means "every type" elsewhere),
  //   oversized or non-UTF-8 type.
  // kResourceExhausted: 10000 types are paused already.
  // kFailedPrecondition: read-only engine. kCancelled: closed.
  // kInternal: the sticky error.
  virtual absl::Status Pause(absl::string_view type) = 0;
  // Claims of `type` resume: its ready tasks wake waiting ClaimNext calls.
  // Idempotent as Pause. Codes as Pause (a type up to 64 KiB is taken, so
  // that one paused before max_type_bytes shrank can be resumed).
  virtual absl::Status Resume(absl::string_view type) = 0;
  // The paused types, sorted. A read (works on a read-only engine).
  // OK: the list. kCancelled: closed.
  virtual absl::StatusOr<std::vector<std::string>> PausedTypes() = 0;

  // Reads. They see every acknowledged transition; they may also see a
  // transition whose call has not returned yet. They work on a read-only
  // engine and after a sticky error; after Close they return kCancelled.
  // kNotFound: no such task (or key). kInvalidArgument: empty, oversized or
  // non-UTF-8 key.
  virtual absl::StatusOr<Task> Get(uint64_t task_id) = 0;
  virtual absl::StatusOr<Task> GetByIdempotencyKey(absl::string_view key) = 0;
  // OK: one page (possibly empty).
  // kInvalidArgument: limit out of range, or status TASK_STATUS_UNSPECIFIED.
  virtual absl::StatusOr<ListPage> List(const ListFilter& filter) = 0;
  // Oldest entry first; at most max_history_per_task entries. The task's
  // older entries are gone; Task::history_dropped (Get) says how many.
  // kNotFound: no such task.
  virtual absl::StatusOr<std::vector<HistoryEntry>> History(
      uint64_t task_id) = 0;
  // OK: the counters. Fails only with kCancelled (closed).
  virtual absl::StatusOr<EngineStats> Stats() = 0;

  // Writes a snapshot of the whole state now, then removes the log segments
  // and snapshots it makes unnecessary (the newest two snapshots and the log
  // after the older of them are kept). Writers keep going meanwhile.
  // OK: the snapshot is durable (or nothing changed since the last one).
  // kCancelled: closed.
  // kFailedPrecondition: in-memory engine, or read-only.
  // kUnavailable: writing the snapshot, or removing the files it made
  //   unnecessary, failed; the engine keeps running on its log and nothing
  //   is lost; a later Snapshot may succeed.
  // kInternal: the sticky error (see the top of this file), which a failure
  //   to end or sync the log also makes.
  virtual absl::Status Snapshot() = 0;

  // What Open recovered. Empty for an in-memory engine. Never fails.
  virtual RecoveryReport Recovery() const = 0;

  // Whether the engine takes writes, found without attempting one.
  // OK: it does (a read-only engine included).
  // kInternal: the sticky error, the very status mutating calls return, if
  //   a storage failure made one, even after Close.
  // kCancelled: the engine is closed (and had no sticky error).
  // Cheap: a monitor may call it often.
  virtual absl::Status Health() const = 0;

  // Submits the tasks of every schedule that is due, expires every lease
  // that is due and deletes every terminal task past retention (not one
  // that a task still waits for, see Delete), as the
  // background thread does each maintenance_interval.
  // OK: done. kFailedPrecondition: read-only engine. kCancelled: closed.
  // kInternal: the sticky error, made now or before.
  virtual absl::Status RunMaintenance() = 0;

 protected:
  // For implementations of ClaimNextBatch and CompleteBatch:
  // kInvalidArgument unless 1 <= n <= kMaxClaimBatch.
  static absl::Status CheckClaimBatch(size_t max_tasks);
  static absl::Status CheckCompletionBatch(size_t completions);
};

inline absl::Status Engine::CheckClaimBatch(size_t max_tasks) {
  if (max_tasks >= 1 && max_tasks <= kMaxClaimBatch) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "max_tasks must be from 1 to kMaxClaimBatch (1000), not " +
      std::to_string(max_tasks));
}

inline absl::Status Engine::CheckCompletionBatch(size_t completions) {
  if (completions >= 1 && completions <= kMaxClaimBatch) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      "a batch of completions holds 1 to kMaxClaimBatch (1000), not " +
      std::to_string(completions));
}

// The defaults: one call per claim or completion.
inline absl::StatusOr<std::vector<ClaimedTask>> Engine::ClaimNextBatch(
    absl::string_view worker_id, const ClaimNextOptions& options,
    size_t max_tasks) {
  if (absl::Status s = CheckClaimBatch(max_tasks); !s.ok()) return s;
  absl::StatusOr<ClaimedTask> first = ClaimNext(worker_id, options);
  if (!first.ok()) return first.status();
  std::vector<ClaimedTask> claimed;
  claimed.push_back(*std::move(first));
  ClaimNextOptions more = options;
  more.wait = absl::ZeroDuration();
  while (claimed.size() < max_tasks) {
    absl::StatusOr<ClaimedTask> next = ClaimNext(worker_id, more);
    if (!next.ok()) break;  // None ready, or a failure: keep what we have.
    claimed.push_back(*std::move(next));
  }
  return claimed;
}

inline absl::StatusOr<std::vector<absl::Status>> Engine::CompleteBatch(
    absl::Span<const Completion> completions) {
  if (absl::Status s = CheckCompletionBatch(completions.size()); !s.ok()) {
    return s;
  }
  std::vector<absl::Status> done;
  done.reserve(completions.size());
  for (const Completion& c : completions) {
    absl::Status s = Complete(c.claim, c.result);
    if (!s.ok() && !absl::IsInvalidArgument(s) && !absl::IsAborted(s)) {
      return s;
    }
    done.push_back(std::move(s));
  }
  return done;
}

}  // namespace taskwal

#endif  // TASKWAL_API_ENGINE_H_
