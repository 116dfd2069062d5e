#include "engine/engine_impl.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/parallel.h"
#include "engine/partitioning.h"
#include "engine/recovery.h"
#include "engine/schedule.h"
#include "engine/snapshot.h"
#include "engine/stored_options.h"
#include "engine/utf8.h"
#include "engine/wal_journal.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/pinned_dir.h"
#include "wal/status_macros.h"

namespace taskwal {

namespace engine {

namespace {

constexpr size_t kMaxListLimit = 10000;

// Bounds on what a snapshot's meta record of one partition holds (every
// schedule and paused type may fall into one partition), and on a
// schedule's fire record (up to kMaxSubmitPerPass tasks): together far
// below a record's 64 MiB.
constexpr size_t kMaxSchedules = 1000;
constexpr size_t kMaxSchedulePayloadBytes = 16 << 10;
constexpr size_t kMaxSubmitPerPass = 1000;
constexpr size_t kMaxPausedTypes = 10000;
constexpr size_t kRetentionChunk = 4096;

absl::Status CheckRetryPolicy(const RetryPolicy& p, absl::string_view where) {
  if (p.initial_backoff_micros() < 0 || p.max_backoff_micros() < 0 ||
      !std::isfinite(p.multiplier()) || p.multiplier() < 1.0 ||
      !std::isfinite(p.jitter()) || p.jitter() < 0.0 || p.jitter() > 1.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ": retry policy needs backoffs >= 0, multiplier >= 1 and jitter in "
        "[0, 1]"));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(absl::string_view what, absl::string_view value,
                       size_t max, bool required) {
  if (required && value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  }
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", value.size(), " bytes; the limit is ", max));
  }
  return absl::OkStatus();
}

// Keys, types, worker ids and errors are journaled in protobuf `string`
// fields, which must hold UTF-8: a record with anything else would not parse
// back at Open.
absl::Status CheckText(absl::string_view what, absl::string_view value,
                       size_t max, bool required) {
  TASKWAL_RETURN_IF_ERROR(CheckSize(what, value, max, required));
  if (!IsValidUtf8(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not valid UTF-8"));
  }
  return absl::OkStatus();
}

absl::Status TaskNotFound(uint64_t id) {
  return absl::NotFoundError(absl::StrCat("task ", id, " not found"));
}

// A snapshot that failed without making the engine stop writing: the log
// still holds everything, so a later Snapshot may succeed. kUnavailable,
// whatever the Env said (a full disk's kResourceExhausted means a limit
// to callers; kInternal means the engine stopped writing).
absl::Status SnapshotFailed(absl::string_view what, const absl::Status& s) {
  return absl::UnavailableError(absl::StrCat(
      what, " (the log keeps everything; try again later): ", s.ToString()));
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a + b;
}

std::vector<std::unique_ptr<Partition>> MakePartitions(
    std::vector<std::unique_ptr<StateMachine>> states, uint64_t seed) {
  if (seed == 0) seed = std::random_device{}();
  std::vector<std::unique_ptr<Partition>> partitions;
  partitions.reserve(states.size());
  for (size_t i = 0; i < states.size(); ++i) {
    partitions.push_back(std::make_unique<Partition>(
        static_cast<uint32_t>(i), std::move(states[i]),
        seed + 0x9e3779b97f4a7c15ull * i));
  }
  return partitions;
}

// Where this thread's ClaimNext starts looking: a per-thread position that
// moves on each call, so every partition gets its turn. Threads start
// spread apart (the golden-ratio sequence), so that claimers moving in step
// look at different partitions.
uint32_t NextClaimStart() {
  static std::atomic<uint32_t> threads{0};
  thread_local uint32_t cursor =
      threads.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b9u;
  return cursor++;
}

}  // namespace

absl::Status ValidateOptions(const EngineOptions& o) {
  if (o.num_shards < 1 || o.num_shards > 4096) {
    return absl::InvalidArgumentError("num_shards must be in [1, 4096]");
  }
  if (o.partitions > wal::kMaxPartitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("partitions must be in [0, ", wal::kMaxPartitions, "]"));
  }
  if (o.max_max_attempts < 1) {
    return absl::InvalidArgumentError("max_max_attempts must be at least 1");
  }
  if (o.default_max_attempts < 1 ||
      o.default_max_attempts > o.max_max_attempts) {
    return absl::InvalidArgumentError(
        "default_max_attempts must be in [1, max_max_attempts]");
  }
  if (o.default_lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_lease must be positive");
  }
  if (o.max_lease < o.default_lease) {
    return absl::InvalidArgumentError(
        "max_lease must be at least default_lease");
  }
  if (o.retention < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("retention must not be negative");
  }
  if (o.maintenance_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "maintenance_interval must not be negative");
  }
  if (o.max_batch_size < 1) {
    return absl::InvalidArgumentError("max_batch_size must be at least 1");
  }
  // Keys and worker ids are required: a limit of 0 would refuse every
  // Submit, or every claim. The other byte limits may be 0 (empty only).
  if (o.max_idempotency_key_bytes < 1) {
    return absl::InvalidArgumentError(
        "max_idempotency_key_bytes must be at least 1");
  }
  if (o.max_worker_id_bytes < 1) {
    return absl::InvalidArgumentError("max_worker_id_bytes must be at least 1");
  }
  if (o.read_only && o.salvage) {
    return absl::InvalidArgumentError(
        "read_only and salvage cannot be combined");
  }
  if (o.read_only && o.data_dir.empty()) {
    return absl::InvalidArgumentError("read_only needs a data_dir");
  }
  if (o.segment_bytes < 4096) {
    return absl::InvalidArgumentError("segment_bytes must be at least 4096");
  }
  if (o.sync_mode == SyncMode::kInterval &&
      o.sync_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "sync_interval must be positive in kInterval mode");
  }
  return CheckRetryPolicy(o.default_retry_policy, "default_retry_policy");
}

void EngineImpl::Wake::Ready(absl::string_view type, size_t count) {
  for (auto& [t, n] : ready) {
    if (t == type) {
      n += count;
      return;
    }
  }
  ready.emplace_back(std::string(type), count);
}

EngineImpl::EngineImpl(const EngineOptions& options,
                       std::unique_ptr<Journal> journal,
                       std::vector<std::unique_ptr<StateMachine>> states,
                       std::unique_ptr<Storage> storage)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      journal_(std::move(journal)),
      storage_(std::move(storage)),
      partitions_(MakePartitions(std::move(states), options.random_seed)) {
  if (options_.max_tasks != 0) {
    uint64_t tasks = 0;
    for (const auto& p : partitions_) tasks += p->table().size();
    live_tasks_.store(tasks);
  }
  if (storage_ != nullptr) {
    last_snapshot_records_.store(storage_->snapshot_records);
    last_snapshot_attempt_.store(storage_->snapshot_records);
  }
  {
    // No other thread runs yet. One partition lock at a time: holding them
    // all exceeds what TSan's deadlock detector tracks (64) with many
    // partitions.
    int64_t next = Partition::kNever;
    for (const auto& p : partitions_) {
      absl::MutexLock l(&p->mu);
      for (const auto& [name, schedule] : p->state().schedules()) {
        next = std::min(next, schedule.next_due_micros());
      }
    }
    next_schedule_due_.store(next, std::memory_order_release);
  }
  IndexWaitingTasks();
  if (!options_.read_only) {
    // A crash may have come between a dependency's end and its waiters'
    // records: resolve every waiting task whose dependency has ended.
    std::vector<uint64_t> dependencies;
    {
      absl::MutexLock l(&deps_mu_);
      for (const auto& [dependency, waiters] : waiters_of_) {
        dependencies.push_back(dependency);
      }
    }
    std::sort(dependencies.begin(), dependencies.end());
    // A failure is sticky: the first call reports it.
    ResolveDependents(std::move(dependencies)).IgnoreError();
  }
  if (options_.maintenance_interval > absl::ZeroDuration() &&
      !options_.read_only) {
    maintenance_thread_ = std::thread([this] { MaintenanceLoop(); });
  }
}

EngineImpl::~EngineImpl() { Close().IgnoreError(); }

absl::Status EngineImpl::Close() {
  absl::MutexLock close(&close_mu_);
  if (close_done_) return close_status_;
  closed_.store(true, std::memory_order_release);
  // A mutation that got past its check holds its partition's lock until it
  // has journaled; wait those out, so the journal closes after them.
  for (const auto& p : partitions_) absl::MutexLock l(&p->mu);
  waiters_.Close();
  stop_maintenance_.Notify();
  if (maintenance_thread_.joinable()) maintenance_thread_.join();
  // A snapshot in flight finishes before the journal closes.
  absl::MutexLock snap(&snapshot_mu_);
  absl::Status s = journal_->Close();
  if (storage_ != nullptr) storage_->lock.reset();
  if (!s.ok()) SetSticky(s).IgnoreError();  // Read just below.
  {
    absl::MutexLock l(&sticky_mu_);
    if (!sticky_error_.ok()) s = sticky_error_;
  }
  close_done_ = true;
  close_status_ = s;
  return s;
}

void EngineImpl::MaintenanceLoop() {
  while (!stop_maintenance_.WaitForNotificationWithTimeout(
      options_.maintenance_interval)) {
    // A journal error is sticky and surfaces on the next call; a failed
    // snapshot leaves the log in place and is tried again later.
    RunMaintenance().IgnoreError();
    if (storage_ != nullptr && options_.snapshot_every_records > 0) {
      const uint64_t records = journal_->records();
      if (records - last_snapshot_records_.load() >=
              options_.snapshot_every_records &&
          records - last_snapshot_attempt_.load() >=
              options_.snapshot_every_records) {
        last_snapshot_attempt_.store(records);
        Snapshot().IgnoreError();
      }
    }
  }
}

Partition& EngineImpl::PartitionOfTask(uint64_t task_id) const {
  return *partitions_[PartitionOfId(task_id, partitions())];
}

Partition& EngineImpl::PartitionOfTaskKey(absl::string_view key) const {
  return *partitions_[PartitionOfKey(key, partitions())];
}

int64_t EngineImpl::NowMicros() const {
  return absl::ToUnixMicros(clock_->Now());
}

absl::Status EngineImpl::CheckOpen() const {
  if (closed_.load(std::memory_order_acquire)) {
    return absl::CancelledError("engine is closed");
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::CheckWritable() const {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (options_.read_only) {
    return absl::FailedPreconditionError("the engine was opened read-only");
  }
  if (failed_.load(std::memory_order_acquire)) {
    absl::MutexLock l(&sticky_mu_);
    return sticky_error_;
  }
  return CheckJournal();
}

absl::Status EngineImpl::CheckJournal() const {
  const absl::Status failure = journal_->Failure();
  return failure.ok() ? failure : SetSticky(failure);
}

absl::Status EngineImpl::SetSticky(const absl::Status& s) const {
  absl::MutexLock l(&sticky_mu_);
  if (sticky_error_.ok()) {
    absl::Status sticky = absl::InternalError(
        absl::StrCat("the engine takes no more writes (a storage error is "
                     "sticky; Close and reopen): ",
                     s.ToString(absl::StatusToStringMode::kWithNoExtraData)));
    // Kept, so that callers can tell why (kNotLeaderPayload).
    s.ForEachPayload(
        [&sticky](absl::string_view url, const absl::Cord& payload) {
          sticky.SetPayload(url, payload);
        });
    sticky_error_ = std::move(sticky);
    failed_.store(true, std::memory_order_release);
  }
  return sticky_error_;
}

absl::Status EngineImpl::Health() const {
  {
    absl::MutexLock l(&sticky_mu_);
    if (!sticky_error_.ok()) return sticky_error_;
  }
  // In kInterval mode a background fdatasync may have failed while no call
  // was waiting on it: acknowledged records are then not durable.
  TASKWAL_RETURN_IF_ERROR(CheckJournal());
  return CheckOpen();
}

absl::Status EngineImpl::CheckWorker(absl::string_view worker_id) const {
  return CheckText("worker id", worker_id, options_.max_worker_id_bytes,
                   /*required=*/true);
}

absl::StatusOr<int64_t> EngineImpl::LeaseMicros(absl::Duration lease) const {
  if (lease < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease must not be negative");
  }
  if (lease > options_.max_lease) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lease ", absl::FormatDuration(lease), " exceeds max_lease ",
        absl::FormatDuration(options_.max_lease)));
  }
  if (lease == absl::ZeroDuration()) lease = options_.default_lease;
  return std::max<int64_t>(1, absl::ToInt64Microseconds(lease));
}

absl::Status EngineImpl::CheckSpec(const TaskSpec& spec) const {
  TASKWAL_RETURN_IF_ERROR(CheckText("idempotency key", spec.idempotency_key,
                                    options_.max_idempotency_key_bytes, true));
  TASKWAL_RETURN_IF_ERROR(
      CheckText("type", spec.type, options_.max_type_bytes, false));
  TASKWAL_RETURN_IF_ERROR(
      CheckSize("payload", spec.payload, options_.max_payload_bytes, false));
  if (spec.max_attempts > options_.max_max_attempts) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_attempts ", spec.max_attempts, " exceeds ",
                     options_.max_max_attempts));
  }
  if (spec.not_before != absl::InfinitePast() &&
      spec.not_before == absl::InfiniteFuture()) {
    return absl::InvalidArgumentError("not_before must be finite");
  }
  if (spec.retry_policy.has_value()) {
    TASKWAL_RETURN_IF_ERROR(CheckRetryPolicy(*spec.retry_policy, "spec"));
  }
  // A payload's size must fit TaskEntry's 30 bits.
  if (spec.payload.size() >= (size_t{1} << 30)) {
    return absl::InvalidArgumentError("payload of 1 GiB or more");
  }
  if (spec.depends_on.size() > TaskEntry::kMaxDependencies) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.depends_on.size(), " dependencies exceed ",
                     TaskEntry::kMaxDependencies));
  }
  if (!DependencyFailurePolicy_IsValid(spec.on_dependency_failure)) {
    return absl::InvalidArgumentError("unknown on_dependency_failure");
  }
  for (size_t i = 0; i < spec.depends_on.size(); ++i) {
    const std::string& key = spec.depends_on[i];
    TASKWAL_RETURN_IF_ERROR(CheckText(
        "depends_on key", key, options_.max_idempotency_key_bytes, true));
    if (key == spec.idempotency_key) {
      return absl::InvalidArgumentError(
          absl::StrCat("dependency cycle: \"", key, "\" depends on itself"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (spec.depends_on[j] == key) {
        return absl::InvalidArgumentError(
            absl::StrCat("depends_on repeats \"", key, "\""));
      }
    }
  }
  return absl::OkStatus();
}

RetryPolicy EngineImpl::PolicyOf(const TaskEntry& e) const {
  std::optional<RetryPolicy> own = e.retry_policy();
  return own.has_value() ? *std::move(own) : options_.default_retry_policy;
}

void EngineImpl::Resolve(Task* task) const {
  if (!task->has_retry_policy()) {
    *task->mutable_retry_policy() = options_.default_retry_policy;
  }
}

void EngineImpl::NewTask(const TaskSpec& spec, uint64_t id, int64_t now,
                         Task* t) const {
  t->set_id(id);
  t->set_idempotency_key(spec.idempotency_key);
  if (!spec.type.empty()) t->set_type(spec.type);
  if (!spec.payload.empty()) t->set_payload(spec.payload);
  t->set_priority(spec.priority);
  t->set_status(PENDING);
  t->set_max_attempts(spec.max_attempts != 0 ? spec.max_attempts
                                             : options_.default_max_attempts);
  t->set_created_micros(now);
  if (spec.not_before != absl::InfinitePast()) {
    t->set_not_before_micros(absl::ToUnixMicros(spec.not_before));
  }
  // Only a policy of the task's own is stored (it is most of a task's
  // fixed size otherwise); PolicyOf and Resolve fill in the default.
  if (spec.retry_policy.has_value()) {
    *t->mutable_retry_policy() = *spec.retry_policy;
  }
}

void EngineImpl::Notify(const Wake& wake) {
  for (const auto& [type, count] : wake.ready) {
    waiters_.NotifyReady(type, count);
  }
  if (wake.timekeeper) waiters_.NotifyTimekeeper();
}

absl::StatusOr<uint64_t> EngineImpl::CommitLocked(Partition& p,
                                                  const Transition& record,
                                                  Wake* wake) {
  absl::StatusOr<uint64_t> lsn = journal_->Append(p.index, record);
  if (!lsn.ok()) {
    // kInvalidArgument: the record is too large and nothing was staged.
    if (absl::IsInvalidArgument(lsn.status())) return lsn.status();
    return SetSticky(lsn.status());
  }
  TASKWAL_RETURN_IF_ERROR(ApplyLocked(p, record, *lsn, wake));
  return *lsn;
}

absl::Status EngineImpl::ApplyLocked(Partition& p, const Transition& record,
                                     uint64_t lsn, Wake* wake) {
  absl::Status s = p.state().Apply(record, lsn);
  if (!s.ok()) {
    // The record is journaled but does not fit the state: a bug. Stop
    // writing rather than let memory and journal disagree further.
    return SetSticky(s);
  }
  if (has_dependencies_.load(std::memory_order_acquire)) {
    NoteFinishedLocked(p, record, wake);
  }
  // A task whose not-before time has already come (a retry without
  // backoff, a submit with a past not_before) is ready now.
  Scheduler& scheduler = p.state().scheduler();
  scheduler.PromoteDue(record.time_micros());
  TakeReadied(p, wake);
  if (p.PublishLocked()) wake->timekeeper = true;
  return absl::OkStatus();
}

absl::Status EngineImpl::SyncTo(absl::Span<const PartitionLsn> records) {
  // LSN 0 (nothing was written) needs no wait.
  absl::InlinedVector<PartitionLsn, 4> wanted;
  if (std::any_of(records.begin(), records.end(),
                  [](const PartitionLsn& r) { return r.lsn == 0; })) {
    for (const PartitionLsn& r : records) {
      if (r.lsn != 0) wanted.push_back(r);
    }
    records = wanted;
  }
  if (records.empty()) return absl::OkStatus();
  absl::Status s = journal_->Sync(records);
  if (!s.ok()) return SetSticky(s);
  return absl::OkStatus();
}

absl::Status EngineImpl::ReserveTasks(size_t n, absl::string_view where) {
  if (options_.max_tasks == 0 || n == 0) return absl::OkStatus();
  // Compare-and-swap, so a reservation that does not fit never takes room
  // from one that would.
  uint64_t live = live_tasks_.load();
  do {
    if (live + n > options_.max_tasks) {
      return absl::ResourceExhaustedError(
          absl::StrCat("max_tasks ", options_.max_tasks, " reached", where));
    }
  } while (!live_tasks_.compare_exchange_weak(live, live + n));
  return absl::OkStatus();
}

void EngineImpl::ReleaseTasks(size_t n) {
  if (options_.max_tasks != 0 && n != 0) live_tasks_.fetch_sub(n);
}

int64_t EngineImpl::BackoffMicros(Partition& p, const RetryPolicy& policy,
                                  uint32_t attempts) {
  if (policy.initial_backoff_micros() == 0) return 0;
  const double cap = static_cast<double>(policy.max_backoff_micros());
  double base = static_cast<double>(policy.initial_backoff_micros()) *
                std::pow(policy.multiplier(),
                         static_cast<double>(attempts > 0 ? attempts - 1 : 0));
  base = std::min(base, cap);
  if (policy.jitter() > 0) {
    std::uniform_real_distribution<double> factor(1.0 - policy.jitter(),
                                                  1.0 + policy.jitter());
    base *= factor(p.rng());
  }
  return static_cast<int64_t>(std::llround(std::max(0.0, base)));
}

absl::Status EngineImpl::FailAttemptLocked(
    Partition& p, uint64_t task_id, int64_t now, absl::string_view error,
    bool lease_expired, std::optional<int64_t> retry_after_micros,
    bool permanent, uint64_t* lsn, Wake* wake) {
  RetryPolicy policy;
  uint32_t attempts = 0;
  p.table().Read(task_id, [&](const TaskEntry& e) {
    policy = PolicyOf(e);
    attempts = e.state.attempts;
  });
  Transition t;
  t.set_time_micros(now);
  FailRecord* f = t.mutable_fail();
  f->set_task_id(task_id);
  if (!error.empty()) f->set_error(error.data(), error.size());
  if (lease_expired) f->set_lease_expired(true);
  if (permanent) {
    f->set_permanent(true);
  } else {
    // The backoff draws jitter from p.rng() only when it is used, so a
    // caller's delay leaves the random sequence of later backoffs as it was.
    f->set_retry_at_micros(
        SaturatingAdd(now, retry_after_micros.has_value()
                               ? *retry_after_micros
                               : BackoffMicros(p, policy, attempts)));
  }
  TASKWAL_ASSIGN_OR_RETURN(*lsn, CommitLocked(p, t, wake));
  return absl::OkStatus();
}

absl::Status EngineImpl::ExpireIfDueLocked(Partition& p, uint64_t task_id,
                                           int64_t now, uint64_t* lsn,
                                           Wake* wake) {
  bool due = false;
  p.table().Read(task_id, [&](const TaskEntry& e) {
    due = e.state.status == CLAIMED && e.state.lease_deadline_micros <= now;
  });
  if (!due) return absl::OkStatus();
  return FailAttemptLocked(p, task_id, now, "lease expired",
                           /*lease_expired=*/true, std::nullopt,
                           /*permanent=*/false, lsn, wake);
}

absl::Status EngineImpl::ServiceLocked(Partition& p, int64_t now, uint64_t* lsn,
                                       Wake* wake) {
  for (uint64_t id : p.state().scheduler().DueLeases(now)) {
    TASKWAL_RETURN_IF_ERROR(FailAttemptLocked(p, id, now, "lease expired",
                                              /*lease_expired=*/true,
                                              std::nullopt,
                                              /*permanent=*/false, lsn, wake));
  }
  p.state().scheduler().PromoteDue(now);
  TakeReadied(p, wake);
  p.PublishLocked(/*exact_due=*/true);
  return absl::OkStatus();
}

absl::Status EngineImpl::ServiceDuePartitions(int64_t now) {
  for (const auto& part : partitions_) {
    Partition& p = *part;
    if (p.next_due() > now) continue;
    Wake wake;
    {
      absl::MutexLock l(&p.mu);
      TASKWAL_RETURN_IF_ERROR(CheckWritable());
      uint64_t lsn = 0;
      TASKWAL_RETURN_IF_ERROR(ServiceLocked(p, now, &lsn, &wake));
    }
    Notify(wake);
    ResolveFinished(wake);
  }
  return absl::OkStatus();
}

absl::StatusOr<EngineImpl::ClaimState> EngineImpl::CheckClaimLocked(
    const Partition& p, const ClaimRef& claim, uint64_t* last_lsn) const {
  const uint64_t task_id = claim.task_id;
  const absl::string_view worker_id = claim.worker_id;
  const uint64_t claim_token = claim.token;
  // Messages are built only on the error paths: this runs on every
  // Complete, Fail and Heartbeat. Every way a claim can be lost is
  // kAborted: the worker's answer (drop the task) is the same.
  absl::StatusOr<ClaimState> result = ClaimState::kCurrent;
  const bool found = p.table().Read(task_id, [&](const TaskEntry& e) {
    const TaskState& t = e.state;
    *last_lsn = t.last_lsn;
    const bool same_claim =
        e.claimed_by() == worker_id && t.claim_token == claim_token;
    if (t.status == CLAIMED && same_claim) {
      result = ClaimState::kCurrent;
    } else if (t.status == COMPLETED && same_claim) {
      result = ClaimState::kAlreadyCompleted;
    } else if (t.status == CLAIMED && e.claimed_by() != worker_id) {
      result = absl::AbortedError(
          absl::StrCat("task ", task_id, " is claimed by worker \"",
                       e.claimed_by(), "\", not \"", worker_id, "\""));
    } else if (t.status == CLAIMED) {
      result = absl::AbortedError(absl::StrCat(
          "claim token ", claim_token, " for task ", task_id,
          " is stale: the current claim is token ", t.claim_token));
    } else {
      result = absl::AbortedError(absl::StrCat(
          "task ", task_id, " is ", TaskStatus_Name(t.status),
          ": the claim by \"", worker_id, "\" with token ", claim_token,
          " is no longer current (lease expired, released or finished)"));
    }
  });
  if (!found) {
    // A claim names a task that existed: it was deleted since (retention,
    // or Delete after someone else finished it). Lost, like any other end.
    return absl::AbortedError(absl::StrCat(
        "task ", task_id, " no longer exists (deleted): the claim by \"",
        worker_id, "\" with token ", claim_token, " is no longer current"));
  }
  return result;
}

absl::StatusOr<EngineImpl::ClaimState> EngineImpl::ClaimOpLocked(
    Partition& p, const ClaimRef& claim, int64_t now, uint64_t* lsn,
    uint64_t* last_lsn, Wake* wake) {
  TASKWAL_RETURN_IF_ERROR(CheckWritable());
  TASKWAL_RETURN_IF_ERROR(ExpireIfDueLocked(p, claim.task_id, now, lsn, wake));
  return CheckClaimLocked(p, claim, last_lsn);
}

int64_t EngineImpl::NextDueLocked(const Partition& p, absl::string_view type,
                                  int64_t now) const {
  const Scheduler& scheduler = p.state().scheduler();
  if (scheduler.BestReadyRank(type).has_value()) return now;
  return scheduler.NextDelayed(type).value_or(Partition::kNever);
}

int64_t EngineImpl::NextDue(absl::string_view type, int64_t now) const {
  int64_t due = Partition::kNever;
  for (const auto& p : partitions_) {
    absl::MutexLock l(&p->mu);
    due = std::min(due, NextDueLocked(*p, type, now));
    if (due <= now) break;
  }
  return due;
}

absl::Status EngineImpl::ClaimLocked(Partition& p, uint64_t task_id,
                                     absl::string_view worker_id,
                                     int64_t lease_micros, int64_t now,
                                     uint64_t* lsn, Wake* wake,
                                     ClaimedTask* claimed) {
  Transition t;
  t.set_time_micros(now);
  ClaimRecord* c = t.mutable_claim();
  c->set_task_id(task_id);
  c->set_worker_id(worker_id.data(), worker_id.size());
  c->set_claim_token(p.state().next_claim_token());
  c->set_lease_deadline_micros(SaturatingAdd(now, lease_micros));
  TASKWAL_ASSIGN_OR_RETURN(*lsn, CommitLocked(p, t, wake));
  p.table().Read(task_id,
                 [&](const TaskEntry& e) { e.ToTask(&claimed->task); });
  Resolve(&claimed->task);
  claimed->claim.task_id = task_id;
  claimed->claim.worker_id.assign(worker_id.data(), worker_id.size());
  claimed->claim.token = c->claim_token();
  claimed->attempt = claimed->task.attempts();
  claimed->lease_deadline = absl::FromUnixMicros(c->lease_deadline_micros());
  return absl::OkStatus();
}

absl::Status EngineImpl::DecideLocked(const TaskSpec& spec,
                                      absl::string_view where, bool batch,
                                      int64_t now, SubmitPart* part,
                                      SubmitResult* result) {
  SubmitRecord* submit = part->record.mutable_submit();
  bool same = false;
  uint64_t existing_id = 0;
  if (std::optional<uint64_t> id =
          part->p->table().LookupKey(spec.idempotency_key);
      id.has_value()) {
    existing_id = *id;
    part->p->table().Read(*id, [&](const TaskEntry& e) {
      same = e.type() == spec.type && e.payload() == spec.payload;
      // A duplicate is acknowledged once the task's last record is durable.
      part->wait_lsn = std::max(part->wait_lsn, e.state.last_lsn);
    });
  } else if (auto it = batch ? part->batch_keys.find(spec.idempotency_key)
                             : part->batch_keys.end();
             it != part->batch_keys.end()) {
    const Task& t = submit->tasks(it->second);
    existing_id = t.id();
    same = t.type() == spec.type && t.payload() == spec.payload;
  } else {
    Task* t = submit->add_tasks();
    NewTask(spec, part->next_id, now, t);
    part->next_id += partitions();
    if (batch) {
      part->batch_keys.emplace(t->idempotency_key(), submit->tasks_size() - 1);
    }
    *result = SubmitResult{t->id(), false};
    return absl::OkStatus();
  }
  if (!same) {
    return absl::AlreadyExistsError(absl::StrCat(
        "idempotency key \"", spec.idempotency_key, "\" already names task ",
        existing_id, " with a different type or payload", where));
  }
  *result = SubmitResult{existing_id, true};
  return absl::OkStatus();
}

absl::Status EngineImpl::DecideDependenciesLocked(
    absl::Span<const TaskSpec> specs, absl::Span<const uint32_t> of,
    absl::Span<const SubmitResult> results,
    absl::FunctionRef<SubmitPart&(uint32_t)> part_of, bool single) {
  auto where = [single](size_t i) {
    return single ? std::string() : absl::StrCat(" (batch index ", i, ")");
  };
  const uint32_t n = partitions();
  // Each key of the batch -> its first spec, the one that made its task.
  absl::flat_hash_map<absl::string_view, size_t> spec_of;
  for (size_t i = 0; i < specs.size(); ++i) {
    spec_of.emplace(specs[i].idempotency_key, i);
  }
  // Spec i waits for the new tasks of these specs: the graph that a cycle
  // would be in (an existing task never waits for a new one).
  std::vector<std::vector<size_t>> waits_for(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TaskSpec& spec = specs[i];
    if (results[i].deduplicated || spec.depends_on.empty()) continue;
    SubmitPart& part = part_of(of[i]);
    Task* t = part.record.mutable_submit()->mutable_tasks(
        part.batch_keys.find(spec.idempotency_key)->second);
    if (spec.on_dependency_failure != DEPENDENCY_FAILURE_FAIL) {
      t->set_on_dependency_failure(spec.on_dependency_failure);
    }
    for (const std::string& key : spec.depends_on) {
      uint64_t id = 0;
      if (auto it = spec_of.find(key);
          it != spec_of.end() && !results[it->second].deduplicated) {
        id = results[it->second].task_id;
        waits_for[i].push_back(it->second);
        t->add_depends_on(id);
        t->add_waiting_for(id);
        continue;
      } else if (it != spec_of.end()) {
        id = results[it->second].task_id;
      } else {
        std::optional<uint64_t> found =
            partitions_[PartitionOfKey(key, n)]->table().LookupKey(key);
        if (!found.has_value()) {
          return absl::NotFoundError(
              absl::StrCat("dependency \"", key, "\" names no task", where(i)));
        }
        id = *found;
      }
      TaskStatus status = TASK_STATUS_UNSPECIFIED;
      uint64_t last_lsn = 0;
      partitions_[PartitionOfId(id, n)]->table().Read(
          id, [&](const TaskEntry& e) {
            status = e.state.status;
            last_lsn = e.state.last_lsn;
          });
      if (status == FAILED || status == CANCELLED) {
        return absl::FailedPreconditionError(
            absl::StrCat("dependency \"", key, "\" (task ", id, ") is ",
                         TaskStatus_Name(status), where(i)));
      }
      // Met already: acknowledged once the completion is durable.
      SubmitPart& dependency_part = part_of(PartitionOfId(id, n));
      dependency_part.wait_lsn = std::max(dependency_part.wait_lsn, last_lsn);
      t->add_depends_on(id);
      if (status != COMPLETED) t->add_waiting_for(id);
    }
  }
  // Cycles among the new tasks: depth-first, without recursion (a batch
  // may be a long chain).
  std::vector<uint8_t> color(specs.size(), 0);  // 1: on the path, 2: done.
  for (size_t root = 0; root < specs.size(); ++root) {
    if (color[root] != 0 || waits_for[root].empty()) continue;
    std::vector<std::pair<size_t, size_t>> path = {{root, 0}};
    color[root] = 1;
    while (!path.empty()) {
      auto& [v, next] = path.back();
      if (next == waits_for[v].size()) {
        color[v] = 2;
        path.pop_back();
        continue;
      }
      const size_t w = waits_for[v][next++];
      if (color[w] == 0) {
        color[w] = 1;
        path.emplace_back(w, 0);
      } else if (color[w] == 1) {
        std::vector<std::string> keys;
        bool in_cycle = false;
        for (const auto& step : path) {
          in_cycle = in_cycle || step.first == w;
          if (in_cycle) {
            keys.push_back(
                absl::StrCat("\"", specs[step.first].idempotency_key, "\""));
          }
        }
        keys.push_back(absl::StrCat("\"", specs[w].idempotency_key, "\""));
        return absl::InvalidArgumentError(absl::StrCat(
            "dependency cycle: ", absl::StrJoin(keys, " -> "), where(w)));
      }
    }
  }
  return absl::OkStatus();
}

void EngineImpl::NoteFinishedLocked(Partition& p, const Transition& record,
                                    Wake* wake) {
  uint64_t id = 0;
  switch (record.kind_case()) {
    case Transition::kComplete:
      id = record.complete().task_id();
      break;
    case Transition::kFail:
      id = record.fail().task_id();
      break;
    case Transition::kCancel:
      id = record.cancel().task_id();
      break;
    case Transition::kDependency:
      id = record.dependency().task_id();
      break;
    default:
      return;
  }
  {
    absl::MutexLock l(&deps_mu_);
    if (!waiters_of_.contains(id)) return;
  }
  bool finished = false;
  p.table().Read(id, [&](const TaskEntry& e) {
    finished = e.state.status == COMPLETED || e.state.status == FAILED ||
               e.state.status == CANCELLED;
  });
  if (finished) wake->finished.push_back(id);
}

absl::Status EngineImpl::ResolveDependents(std::vector<uint64_t> finished) {
  std::vector<PartitionLsn> written;
  while (!finished.empty()) {
    const uint64_t dependency = finished.back();
    finished.pop_back();
    std::vector<uint64_t> waiters;
    {
      absl::MutexLock l(&deps_mu_);
      auto it = waiters_of_.find(dependency);
      if (it == waiters_of_.end()) continue;
      waiters = it->second;
    }
    Partition& dp = PartitionOfTask(dependency);
    TaskStatus status = TASK_STATUS_UNSPECIFIED;  // Gone.
    uint64_t last_lsn = 0;
    dp.table().Read(dependency, [&](const TaskEntry& e) {
      status = e.state.status;
      last_lsn = e.state.last_lsn;
    });
    // Revived by Retry since: its next end resolves the waiters.
    if (status == PENDING || status == CLAIMED) continue;
    // A waiter's record must never outlive (in a crash) the end it
    // follows from.
    TASKWAL_RETURN_IF_ERROR(SyncTo(dp.index, last_lsn));
    for (uint64_t waiter : waiters) {
      Partition& wp = PartitionOfTask(waiter);
      Wake wake;
      absl::Status s;
      {
        absl::MutexLock l(&wp.mu);
        s = CheckWritable();
        bool waits = false;
        wp.table().Read(waiter, [&](const TaskEntry& e) {
          waits = e.state.status == PENDING && e.WaitsFor(dependency);
        });
        if (s.ok() && waits) {
          Transition t;
          t.set_time_micros(NowMicros());
          DependencyRecord* d = t.mutable_dependency();
          d->set_task_id(waiter);
          d->set_dependency_id(dependency);
          d->set_dependency_status(status);
          absl::StatusOr<uint64_t> lsn = CommitLocked(wp, t, &wake);
          s = lsn.status();
          if (lsn.ok()) written.push_back({wp.index, *lsn});
        }
      }
      Notify(wake);
      TASKWAL_RETURN_IF_ERROR(s);
      finished.insert(finished.end(), wake.finished.begin(),
                      wake.finished.end());
    }
    absl::MutexLock l(&deps_mu_);
    auto it = waiters_of_.find(dependency);
    if (it == waiters_of_.end()) continue;
    std::vector<uint64_t>& left = it->second;
    left.erase(std::remove_if(left.begin(), left.end(),
                              [&](uint64_t w) {
                                return std::find(waiters.begin(), waiters.end(),
                                                 w) != waiters.end();
                              }),
               left.end());
    if (left.empty()) waiters_of_.erase(it);
  }
  return SyncTo(written);
}

void EngineImpl::ResolveFinished(const Wake& wake) {
  if (wake.finished.empty()) return;
  // Sticky if it fails: the next call reports it, and Open repairs the
  // waiters left behind.
  ResolveDependents(wake.finished).IgnoreError();
}

bool EngineImpl::HasWaiters(uint64_t task_id) const {
  if (!has_dependencies_.load(std::memory_order_acquire)) return false;
  std::vector<uint64_t> waiters;
  {
    absl::MutexLock l(&deps_mu_);
    auto it = waiters_of_.find(task_id);
    if (it == waiters_of_.end()) return false;
    waiters = it->second;
  }
  for (uint64_t waiter : waiters) {
    bool waits = false;
    PartitionOfTask(waiter).table().Read(waiter, [&](const TaskEntry& e) {
      waits = e.state.status == PENDING && e.WaitsFor(task_id);
    });
    if (waits) return true;
  }
  return false;
}

void EngineImpl::IndexWaitingTasks() {
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> index;
  for (const auto& p : partitions_) {
    p->table().ForEach([&](const TaskEntry& e) {
      if (!e.waiting()) return;
      for (size_t i = 0; i < e.dependency_count(); ++i) {
        if (e.WaitsFor(e.dependency(i))) {
          index[e.dependency(i)].push_back(e.id());
        }
      }
    });
  }
  if (index.empty()) return;
  has_dependencies_.store(true, std::memory_order_release);
  absl::MutexLock l(&deps_mu_);
  waiters_of_ = std::move(index);
}

void EngineImpl::TakeReadied(Partition& p, Wake* wake) {
  p.state().scheduler().TakeReadied(
      [wake](absl::string_view type, size_t count) {
        wake->Ready(type, count);
      });
}

absl::StatusOr<SubmitResult> EngineImpl::Submit(const TaskSpec& spec) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckSpec(spec));
  if (!spec.depends_on.empty()) {
    // The partitions of its dependencies are locked too.
    TASKWAL_ASSIGN_OR_RETURN(
        std::vector<SubmitResult> results,
        SubmitMany(absl::MakeConstSpan(&spec, 1), /*single=*/true));
    return results.front();
  }
  SubmitPart part;
  part.p = &PartitionOfTaskKey(spec.idempotency_key);
  SubmitResult result;
  Wake wake;
  {
    absl::MutexLock l(&part.p->mu);
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    const int64_t now = NowMicros();
    part.record.set_time_micros(now);
    part.next_id = part.p->state().next_task_id();
    TASKWAL_RETURN_IF_ERROR(
        DecideLocked(spec, "", /*batch=*/false, now, &part, &result));
    if (!result.deduplicated) {
      TASKWAL_RETURN_IF_ERROR(ReserveTasks(1, ""));
      absl::StatusOr<uint64_t> lsn = CommitLocked(*part.p, part.record, &wake);
      if (!lsn.ok()) {
        ReleaseTasks(1);
        return lsn.status();
      }
      part.wait_lsn = *lsn;
    }
  }
  Notify(wake);
  if (result.deduplicated) {
    deduplicated_.fetch_add(1, std::memory_order_relaxed);
  }
  TASKWAL_RETURN_IF_ERROR(SyncTo(part.p->index, part.wait_lsn));
  return result;
}

absl::StatusOr<std::vector<SubmitResult>> EngineImpl::SubmitBatch(
    absl::Span<const TaskSpec> specs) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (specs.empty()) return absl::InvalidArgumentError("empty batch");
  if (specs.size() > options_.max_batch_size) {
    return absl::InvalidArgumentError(absl::StrCat("batch of ", specs.size(),
                                                   " exceeds max_batch_size ",
                                                   options_.max_batch_size));
  }
  if (specs.size() == 1) {
    TASKWAL_ASSIGN_OR_RETURN(SubmitResult result, Submit(specs.front()));
    return std::vector<SubmitResult>{result};
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::Status s = CheckSpec(specs[i]);
    if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat(s.message(), " (batch index ", i, ")"));
    }
  }
  return SubmitMany(specs, /*single=*/false);
}

absl::StatusOr<std::vector<SubmitResult>> EngineImpl::SubmitMany(
    absl::Span<const TaskSpec> specs, bool single) {
  auto where = [single](size_t i) {
    return single ? std::string() : absl::StrCat(" (batch index ", i, ")");
  };
  // Each spec goes to its key's partition; the batch locks every partition
  // it touches, in ascending order, and those of its dependencies' keys,
  // so that no dependency ends between the look at it and the commit.
  const uint32_t n = partitions();
  std::vector<uint32_t> of(specs.size());
  bool dependencies = false;
  for (size_t i = 0; i < specs.size(); ++i) {
    of[i] = PartitionOfKey(specs[i].idempotency_key, n);
    dependencies = dependencies || !specs[i].depends_on.empty();
  }
  std::vector<uint32_t> involved(of);
  for (const TaskSpec& spec : specs) {
    for (const std::string& key : spec.depends_on) {
      involved.push_back(PartitionOfKey(key, n));
    }
  }
  std::sort(involved.begin(), involved.end());
  involved.erase(std::unique(involved.begin(), involved.end()), involved.end());
  std::vector<SubmitPart> parts(involved.size());
  auto part_of = [&](uint32_t partition) -> SubmitPart& {
    return parts[std::lower_bound(involved.begin(), involved.end(), partition) -
                 involved.begin()];
  };
  for (size_t k = 0; k < involved.size(); ++k) {
    parts[k].p = partitions_[involved[k]].get();
    parts[k].p->mu.Lock();
  }
  absl::Cleanup unlock = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (size_t k = parts.size(); k-- > 0;) parts[k].p->mu.Unlock();
  };
  TASKWAL_RETURN_IF_ERROR(CheckWritable());
  const int64_t now = NowMicros();
  for (SubmitPart& part : parts) {
    part.record.set_time_micros(now);
    part.next_id = part.p->state().next_task_id();
  }

  std::vector<SubmitResult> results(specs.size());
  size_t created = 0;
  size_t first_created = specs.size();
  uint64_t deduplicated = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    TASKWAL_RETURN_IF_ERROR(DecideLocked(specs[i], where(i), /*batch=*/true,
                                         now, &part_of(of[i]), &results[i]));
    if (results[i].deduplicated) {
      ++deduplicated;
    } else {
      first_created = std::min(first_created, i);
      ++created;
    }
  }
  if (dependencies && created > 0) {
    TASKWAL_RETURN_IF_ERROR(
        DecideDependenciesLocked(specs, of, results, part_of, single));
  }

  Wake wake;
  if (created > 0) {
    TASKWAL_RETURN_IF_ERROR(ReserveTasks(created, where(first_created)));
    std::vector<SubmitPart*> with_tasks;
    for (SubmitPart& part : parts) {
      if (part.record.submit().tasks_size() > 0) with_tasks.push_back(&part);
    }
    absl::Status committed;
    size_t applied = 0;  // Tasks of pieces applied (the engine is stuck
                         // after a later piece fails, but counts stay true).
    if (with_tasks.size() == 1) {
      SubmitPart& part = *with_tasks.front();
      absl::StatusOr<uint64_t> lsn = CommitLocked(*part.p, part.record, &wake);
      committed = lsn.status();
      if (lsn.ok()) part.wait_lsn = std::max(part.wait_lsn, *lsn);
    } else {
      // Several partitions: one group, so that a crash keeps all of the
      // batch or none of it.
      std::vector<uint32_t> group_partitions;
      std::vector<const Transition*> group_records;
      for (const SubmitPart* part : with_tasks) {
        group_partitions.push_back(part->p->index);
        group_records.push_back(&part->record);
      }
      std::vector<uint64_t> lsns(with_tasks.size());
      committed =
          journal_->AppendGroup(group_partitions, group_records, lsns.data());
      if (!committed.ok() && !absl::IsInvalidArgument(committed)) {
        committed = SetSticky(committed);
      }
      for (size_t g = 0; committed.ok() && g < with_tasks.size(); ++g) {
        SubmitPart& part = *with_tasks[g];
        committed = ApplyLocked(*part.p, part.record, lsns[g], &wake);
        if (committed.ok()) applied += part.record.submit().tasks_size();
        part.wait_lsn = std::max(part.wait_lsn, lsns[g]);
      }
    }
    if (!committed.ok()) {
      ReleaseTasks(created - applied);
      return committed;
    }
    if (dependencies) {
      // Before the dependencies' partitions are unlocked: their ends from
      // now on find the new waiters.
      has_dependencies_.store(true, std::memory_order_release);
      absl::MutexLock l(&deps_mu_);
      for (const SubmitPart* part : with_tasks) {
        for (const Task& t : part->record.submit().tasks()) {
          for (uint64_t dependency : t.waiting_for()) {
            waiters_of_[dependency].push_back(t.id());
          }
        }
      }
    }
  }
  std::move(unlock).Invoke();
  Notify(wake);
  deduplicated_.fetch_add(deduplicated, std::memory_order_relaxed);
  std::vector<PartitionLsn> waits;
  for (const SubmitPart& part : parts) {
    if (part.wait_lsn != 0) waits.push_back({part.p->index, part.wait_lsn});
  }
  TASKWAL_RETURN_IF_ERROR(SyncTo(waits));
  return results;
}

absl::StatusOr<ClaimedTask> EngineImpl::Claim(uint64_t task_id,
                                              absl::string_view worker_id,
                                              absl::Duration lease) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_ASSIGN_OR_RETURN(int64_t lease_micros, LeaseMicros(lease));
  Partition& p = PartitionOfTask(task_id);
  uint64_t lsn = 0;
  Wake wake;
  ClaimedTask claimed;
  absl::Status s;
  {
    absl::MutexLock l(&p.mu);
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    const int64_t now = NowMicros();
    TASKWAL_RETURN_IF_ERROR(ExpireIfDueLocked(p, task_id, now, &lsn, &wake));
    absl::Status check = TaskNotFound(task_id);
    const Scheduler& scheduler = p.state().scheduler();
    p.table().Read(task_id, [&](const TaskEntry& e) {
      if (e.state.status != PENDING) {
        check = absl::FailedPreconditionError(
            absl::StrCat("task ", task_id, " is ",
                         TaskStatus_Name(e.state.status), ", not PENDING"));
      } else if (e.waiting()) {
        check = absl::FailedPreconditionError(absl::StrCat(
            "task ", task_id, " waits for dependencies (Task::waiting_for)"));
      } else if (scheduler.IsPaused(e.type())) {
        check = absl::FailedPreconditionError(
            absl::StrCat("task ", task_id, " is of type \"", e.type(),
                         "\", which is paused (Resume it first)"));
      } else if (e.state.not_before_micros > now) {
        check = absl::FailedPreconditionError(absl::StrCat(
            "task ", task_id, " is not claimable before ",
            absl::FormatTime(absl::FromUnixMicros(e.state.not_before_micros))));
      } else {
        check = absl::OkStatus();
      }
    });
    s = check.ok() ? ClaimLocked(p, task_id, worker_id, lease_micros, now, &lsn,
                                 &wake, &claimed)
                   : check;
  }
  Notify(wake);
  ResolveFinished(wake);
  TASKWAL_RETURN_IF_ERROR(s);
  TASKWAL_RETURN_IF_ERROR(SyncTo(p.index, lsn));
  return claimed;
}

absl::StatusOr<bool> EngineImpl::ClaimBestIn(
    Partition& p, absl::string_view worker_id, absl::string_view type,
    int64_t max_rank, int64_t lease_micros, bool wait_for_lock, bool* busy,
    uint64_t* lsn, int64_t* seen_rank, ClaimedTask* claimed) {
  if (wait_for_lock) {
    p.mu.Lock();
  } else if (!p.mu.TryLock()) {
    // Another call is in this partition: look elsewhere first.
    *busy = true;
    return false;
  }
  Wake wake;
  absl::StatusOr<bool> done =
      ClaimBestInLocked(p, worker_id, type, max_rank, lease_micros, lsn,
                        seen_rank, claimed, &wake);
  p.mu.Unlock();
  Notify(wake);
  return done;
}

absl::StatusOr<bool> EngineImpl::ClaimBestInLocked(
    Partition& p, absl::string_view worker_id, absl::string_view type,
    int64_t max_rank, int64_t lease_micros, uint64_t* lsn, int64_t* seen_rank,
    ClaimedTask* claimed, Wake* wake) {
  TASKWAL_RETURN_IF_ERROR(CheckWritable());
  Scheduler& scheduler = p.state().scheduler();
  const std::optional<int64_t> rank = scheduler.BestReadyRank(type);
  if (seen_rank != nullptr) *seen_rank = rank.value_or(Partition::kNever);
  if (!rank.has_value() || *rank > max_rank) return false;
  const uint64_t id = *scheduler.PeekReady(type);
  TASKWAL_RETURN_IF_ERROR(ClaimLocked(p, id, worker_id, lease_micros,
                                      NowMicros(), lsn, wake, claimed));
  return true;
}

absl::StatusOr<bool> EngineImpl::TryClaimNext(
    absl::string_view worker_id, absl::string_view type, int64_t lease_micros,
    uint32_t* partition, uint64_t* lsn, ClaimedTask* claimed) {
  const uint32_t n = partitions();
  const uint32_t start = NextClaimStart() % n;
  // Each pass either claims, finds nothing ready, or lost a race to another
  // claimer (so somebody made progress) and looks again.
  while (true) {
    // The best rank on offer anywhere, as published. Any-type ranks bound
    // every type's from below.
    int64_t best = Partition::kNever;
    for (const auto& p : partitions_) best = std::min(best, p->ready_rank());
    if (best == Partition::kNever) return false;
    Partition* candidate = nullptr;
    int64_t candidate_rank = Partition::kNever;
    // First the partitions whose lock is free (claimers that move in step
    // spread out instead of queueing on one lock), then, if nothing was
    // claimed, those that were busy, waiting for their lock.
    absl::InlinedVector<Partition*, 4> busy_partitions;
    auto look = [&](Partition& p, bool wait) -> absl::StatusOr<bool> {
      bool busy = false;
      int64_t seen = Partition::kNever;
      TASKWAL_ASSIGN_OR_RETURN(
          const bool done, ClaimBestIn(p, worker_id, type, best, lease_micros,
                                       wait, &busy, lsn, &seen, claimed));
      if (done) {
        *partition = p.index;
      } else if (busy) {
        busy_partitions.push_back(&p);
      } else if (seen < candidate_rank) {
        candidate = &p;
        candidate_rank = seen;
      }
      return done;
    };
    for (uint32_t j = 0; j < n; ++j) {
      Partition& p = *partitions_[(start + j) % n];
      const int64_t published = p.ready_rank();
      if (type.empty() ? published > best : published == Partition::kNever) {
        continue;
      }
      TASKWAL_ASSIGN_OR_RETURN(const bool done, look(p, /*wait=*/false));
      if (done) return true;
    }
    for (Partition* p :
         absl::InlinedVector<Partition*, 4>(std::move(busy_partitions))) {
      TASKWAL_ASSIGN_OR_RETURN(const bool done, look(*p, /*wait=*/true));
      if (done) return true;
    }
    if (type.empty()) continue;
    // A typed claim: no partition had the best rank overall in that type;
    // take the best the type has.
    if (candidate == nullptr) return false;
    bool busy = false;
    TASKWAL_ASSIGN_OR_RETURN(
        const bool done,
        ClaimBestIn(*candidate, worker_id, type, candidate_rank, lease_micros,
                    /*wait_for_lock=*/true, &busy, lsn, nullptr, claimed));
    if (done) {
      *partition = candidate->index;
      return true;
    }
  }
}

absl::StatusOr<int64_t> EngineImpl::CheckClaimNext(
    absl::string_view worker_id, const ClaimNextOptions& options) const {
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_ASSIGN_OR_RETURN(int64_t lease_micros, LeaseMicros(options.lease));
  if (options.wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("wait must not be negative");
  }
  TASKWAL_RETURN_IF_ERROR(
      CheckText("type", options.type, options_.max_type_bytes, false));
  return lease_micros;
}

absl::StatusOr<ClaimedTask> EngineImpl::ClaimNext(
    absl::string_view worker_id, const ClaimNextOptions& options) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_ASSIGN_OR_RETURN(const int64_t lease_micros,
                           CheckClaimNext(worker_id, options));
  uint32_t partition = 0;
  uint64_t lsn = 0;
  TASKWAL_ASSIGN_OR_RETURN(
      ClaimedTask claimed,
      ClaimNextUnsynced(worker_id, options, lease_micros, &partition, &lsn));
  TASKWAL_RETURN_IF_ERROR(SyncTo(partition, lsn));
  return claimed;
}

absl::StatusOr<std::vector<ClaimedTask>> EngineImpl::ClaimNextBatch(
    absl::string_view worker_id, const ClaimNextOptions& options,
    size_t max_tasks) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  const size_t most = std::min(kMaxClaimBatch, options_.max_batch_size);
  if (max_tasks == 0 || max_tasks > most) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tasks must be from 1 to ", most,
                     " (kMaxClaimBatch, max_batch_size), not ", max_tasks));
  }
  TASKWAL_ASSIGN_OR_RETURN(const int64_t lease_micros,
                           CheckClaimNext(worker_id, options));
  std::vector<ClaimedTask> claimed(1);
  absl::InlinedVector<PartitionLsn, 16> made(1);
  TASKWAL_ASSIGN_OR_RETURN(claimed[0],
                           ClaimNextUnsynced(worker_id, options, lease_micros,
                                             &made[0].partition, &made[0].lsn));
  // The rest: those ready now (due ones were promoted by the first look).
  while (claimed.size() < max_tasks) {
    ClaimedTask next;
    PartitionLsn at;
    absl::StatusOr<bool> done = TryClaimNext(
        worker_id, options.type, lease_micros, &at.partition, &at.lsn, &next);
    // None ready, or a failure: keep the claims made (a failure of the
    // journal shows in the SyncTo below).
    if (!done.ok() || !*done) break;
    claimed.push_back(std::move(next));
    made.push_back(at);
  }
  TASKWAL_RETURN_IF_ERROR(SyncTo(made));
  return claimed;
}

absl::StatusOr<ClaimedTask> EngineImpl::ClaimNextUnsynced(
    absl::string_view worker_id, const ClaimNextOptions& options,
    int64_t lease_micros, uint32_t* partition_out, uint64_t* lsn_out) {
  const absl::Time give_up = absl::Now() + options.wait;
  ClaimWaiters::Waiter waiter(options.type);
  bool waiting = false;
  absl::Cleanup leave = [&] {
    if (waiting) waiters_.Remove(&waiter);
  };
  while (true) {
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    const int64_t now = NowMicros();
    TASKWAL_RETURN_IF_ERROR(ServiceDuePartitions(now));
    uint32_t partition = 0;
    uint64_t lsn = 0;
    ClaimedTask claimed;
    TASKWAL_ASSIGN_OR_RETURN(const bool done,
                             TryClaimNext(worker_id, options.type, lease_micros,
                                          &partition, &lsn, &claimed));
    if (done) {
      std::move(leave).Invoke();
      *partition_out = partition;
      *lsn_out = lsn;
      return claimed;
    }
    const absl::Time real_now = absl::Now();
    if (real_now >= give_up) {
      std::string what =
          options.type.empty()
              ? std::string("no task")
              : absl::StrCat("no task of type \"", options.type, "\"");
      const int64_t due = NextDue(options.type, NowMicros());
      if (due == Partition::kNever) {
        return absl::NotFoundError(
            absl::StrCat(what, " is pending and claimable",
                         options.type.empty() ? " (paused types excluded)"
                                              : " (or the type is paused)"));
      }
      return absl::NotFoundError(absl::StrCat(
          what, " is ready; the next is due at ",
          absl::FormatTime(absl::FromUnixMicros(due)), " (NextDueTime)"));
    }
    if (!waiting) {
      // Look once more after joining the waiters: a task that became ready
      // since the look above has either been seen there or will wake us.
      waiters_.Add(&waiter);
      waiting = true;
      continue;
    }
    // Sleep until woken or the wait ends; the oldest waiter also wakes when
    // the next delayed task or lease comes due.
    absl::Time wake = give_up;
    if (waiters_.IsTimekeeper(&waiter)) {
      int64_t due = Partition::kNever;
      for (const auto& p : partitions_) due = std::min(due, p->next_due());
      if (due != Partition::kNever) {
        wake = std::min(wake, real_now + absl::Microseconds(due - now));
      }
    }
    waiters_.Wait(&waiter, wake);
  }
}

absl::StatusOr<std::optional<absl::Time>> EngineImpl::NextDueTime(
    absl::string_view type) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(
      CheckText("type", type, options_.max_type_bytes, false));
  const int64_t due = NextDue(type, NowMicros());
  if (due == Partition::kNever) return std::nullopt;
  return absl::FromUnixMicros(due);
}

absl::Status EngineImpl::Complete(const ClaimRef& claim,
                                  absl::string_view result) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  uint32_t partition = 0;
  uint64_t lsn = 0;
  TASKWAL_RETURN_IF_ERROR(CompleteUnsynced(claim, result, &partition, &lsn));
  return SyncTo(partition, lsn);
}

absl::StatusOr<std::vector<absl::Status>> EngineImpl::CompleteBatch(
    absl::Span<const Completion> completions) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckCompletionBatch(completions.size()));
  std::vector<absl::Status> done;
  done.reserve(completions.size());
  absl::InlinedVector<PartitionLsn, 16> made;
  for (const Completion& c : completions) {
    PartitionLsn at;
    absl::Status s =
        CompleteUnsynced(c.claim, c.result, &at.partition, &at.lsn);
    // A refusal of this completion alone; anything else (read-only,
    // closed, the sticky error) is the call's.
    if (!s.ok() && !absl::IsInvalidArgument(s) && !absl::IsAborted(s)) {
      return s;
    }
    if (s.ok()) made.push_back(at);
    done.push_back(std::move(s));
  }
  TASKWAL_RETURN_IF_ERROR(SyncTo(made));
  return done;
}

absl::Status EngineImpl::CompleteUnsynced(const ClaimRef& claim,
                                          absl::string_view result,
                                          uint32_t* partition,
                                          uint64_t* lsn_out) {
  TASKWAL_RETURN_IF_ERROR(CheckWorker(claim.worker_id));
  const uint64_t task_id = claim.task_id;
  TASKWAL_RETURN_IF_ERROR(
      CheckSize("result", result, options_.max_result_bytes, false));
  Partition& p = PartitionOfTask(task_id);
  uint64_t lsn = 0;
  Wake wake;
  absl::Status s;
  {
    absl::MutexLock l(&p.mu);
    const int64_t now = NowMicros();
    uint64_t last_lsn = 0;
    absl::StatusOr<ClaimState> state =
        ClaimOpLocked(p, claim, now, &lsn, &last_lsn, &wake);
    if (!state.ok()) {
      s = state.status();
    } else if (*state == ClaimState::kAlreadyCompleted) {
      lsn = last_lsn;  // Acknowledge only once the completion is durable.
    } else {
      Transition t;
      t.set_time_micros(now);
      t.mutable_complete()->set_task_id(task_id);
      if (!result.empty()) {
        t.mutable_complete()->set_result(result.data(), result.size());
      }
      absl::StatusOr<uint64_t> committed = CommitLocked(p, t, &wake);
      if (committed.ok()) lsn = *committed;
      s = committed.status();
    }
  }
  Notify(wake);
  ResolveFinished(wake);
  TASKWAL_RETURN_IF_ERROR(s);
  *partition = p.index;
  *lsn_out = lsn;
  return absl::OkStatus();
}

absl::Status EngineImpl::Fail(const ClaimRef& claim, absl::string_view error) {
  return Fail(claim, error, FailOptions());
}

absl::Status EngineImpl::Fail(const ClaimRef& claim, absl::string_view error,
                              const FailOptions& options) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(claim.worker_id));
  const uint64_t task_id = claim.task_id;
  TASKWAL_RETURN_IF_ERROR(
      CheckText("error", error, options_.max_error_bytes, false));
  std::optional<int64_t> retry_after_micros;
  if (options.retry_after.has_value()) {
    if (*options.retry_after < absl::ZeroDuration() ||
        *options.retry_after == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          "retry_after must be finite and not negative");
    }
    retry_after_micros = absl::ToInt64Microseconds(*options.retry_after);
  }
  Partition& p = PartitionOfTask(task_id);
  uint64_t lsn = 0;
  Wake wake;
  absl::Status s;
  {
    absl::MutexLock l(&p.mu);
    const int64_t now = NowMicros();
    uint64_t last_lsn = 0;
    absl::StatusOr<ClaimState> state =
        ClaimOpLocked(p, claim, now, &lsn, &last_lsn, &wake);
    if (!state.ok()) {
      s = state.status();
    } else if (*state != ClaimState::kCurrent) {
      s = absl::AbortedError(absl::StrCat(
          "task ", task_id, " is already COMPLETED: the claim has ended"));
    } else {
      s = FailAttemptLocked(p, task_id, now, error, /*lease_expired=*/false,
                            retry_after_micros, options.permanent, &lsn, &wake);
    }
  }
  Notify(wake);
  ResolveFinished(wake);
  TASKWAL_RETURN_IF_ERROR(s);
  return SyncTo(p.index, lsn);
}

absl::StatusOr<absl::Time> EngineImpl::Heartbeat(const ClaimRef& claim,
                                                 absl::Duration extension) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(claim.worker_id));
  const uint64_t task_id = claim.task_id;
  TASKWAL_ASSIGN_OR_RETURN(int64_t lease_micros, LeaseMicros(extension));
  Partition& p = PartitionOfTask(task_id);
  uint64_t lsn = 0;
  int64_t deadline = 0;
  Wake wake;
  absl::Status s;
  {
    absl::MutexLock l(&p.mu);
    const int64_t now = NowMicros();
    uint64_t last_lsn = 0;
    absl::StatusOr<ClaimState> state =
        ClaimOpLocked(p, claim, now, &lsn, &last_lsn, &wake);
    if (!state.ok()) {
      s = state.status();
    } else if (*state != ClaimState::kCurrent) {
      s = absl::AbortedError(absl::StrCat(
          "task ", task_id, " is already COMPLETED: the claim has ended"));
    } else {
      deadline = SaturatingAdd(now, lease_micros);
      Transition t;
      t.set_time_micros(now);
      t.mutable_heartbeat()->set_task_id(task_id);
      t.mutable_heartbeat()->set_lease_deadline_micros(deadline);
      absl::StatusOr<uint64_t> committed = CommitLocked(p, t, &wake);
      if (committed.ok()) lsn = *committed;
      s = committed.status();
    }
  }
  Notify(wake);
  ResolveFinished(wake);
  TASKWAL_RETURN_IF_ERROR(s);
  TASKWAL_RETURN_IF_ERROR(SyncTo(p.index, lsn));
  return absl::FromUnixMicros(deadline);
}

template <typename Refusal, typename Build>
absl::Status EngineImpl::OperatorTransition(uint64_t task_id, const char* what,
                                            Refusal refusal, Build build,
                                            bool refuse_if_waited_for) {
  Partition& p = PartitionOfTask(task_id);
  uint64_t lsn = 0;
  Wake wake;
  bool deleted = false;
  absl::Status s;
  {
    absl::MutexLock l(&p.mu);
    s = CheckWritable();
    const int64_t now = NowMicros();
    if (s.ok()) s = ExpireIfDueLocked(p, task_id, now, &lsn, &wake);
    if (s.ok()) {
      s = TaskNotFound(task_id);
      p.table().Read(task_id, [&](const TaskEntry& e) {
        const std::string why = refusal(e);
        s = why.empty() ? absl::OkStatus()
                        : absl::FailedPreconditionError(absl::StrCat(
                              "cannot ", what, " task ", task_id, ": ", why));
      });
    }
    // Under p's lock the task cannot change; a task that has ended gains
    // no new waiters.
    if (s.ok() && refuse_if_waited_for && HasWaiters(task_id)) {
      s = absl::FailedPreconditionError(
          absl::StrCat("cannot ", what, " task ", task_id,
                       ": another task still waits for it"));
    }
    if (s.ok()) {
      Transition t;
      t.set_time_micros(now);
      build(t);
      absl::StatusOr<uint64_t> committed = CommitLocked(p, t, &wake);
      s = committed.status();
      if (committed.ok()) {
        lsn = *committed;
        deleted = !p.table().Contains(task_id);
      }
    }
  }
  if (deleted) ReleaseTasks(1);
  Notify(wake);
  ResolveFinished(wake);
  TASKWAL_RETURN_IF_ERROR(s);
  return SyncTo(p.index, lsn);
}

namespace {

// Why an operator call refuses a task: its status (empty: allowed).
std::string StatusRefusal(const TaskEntry& e,
                          std::initializer_list<TaskStatus> allowed) {
  for (TaskStatus s : allowed) {
    if (e.state.status == s) return "";
  }
  return absl::StrCat("it is ", TaskStatus_Name(e.state.status));
}

}  // namespace

absl::Status EngineImpl::Retry(uint64_t task_id) {
  return OperatorTransition(
      task_id, "retry",
      [](const TaskEntry& e) {
        return e.waiting() ? std::string("it waits for dependencies")
                           : StatusRefusal(e, {PENDING, CLAIMED, FAILED});
      },
      [task_id](Transition& t) { t.mutable_retry()->set_task_id(task_id); });
}

absl::Status EngineImpl::Cancel(uint64_t task_id) {
  return OperatorTransition(
      task_id, "cancel",
      [](const TaskEntry& e) { return StatusRefusal(e, {PENDING}); },
      [task_id](Transition& t) { t.mutable_cancel()->set_task_id(task_id); });
}

absl::Status EngineImpl::Delete(uint64_t task_id) {
  return OperatorTransition(
      task_id, "delete",
      [](const TaskEntry& e) {
        return StatusRefusal(e, {COMPLETED, FAILED, CANCELLED});
      },
      [task_id](Transition& t) { t.mutable_delete_()->set_task_id(task_id); },
      /*refuse_if_waited_for=*/true);
}

absl::StatusOr<BulkResult> EngineImpl::Bulk(BulkOp op,
                                            const BulkFilter& filter) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  const char* const what = op == BulkOp::kRetry    ? "retry"
                           : op == BulkOp::kCancel ? "cancel"
                                                   : "delete";
  std::vector<TaskStatus> allowed;  // The statuses that may change.
  std::vector<TaskStatus> defaults;
  switch (op) {
    case BulkOp::kRetry:
      allowed = {FAILED, PENDING, CLAIMED};
      defaults = {FAILED};
      break;
    case BulkOp::kCancel:
      allowed = defaults = {PENDING};
      break;
    case BulkOp::kDelete:
      allowed = defaults = {COMPLETED, FAILED, CANCELLED};
      break;
  }
  std::vector<TaskStatus> statuses = defaults;
  if (filter.status.has_value()) {
    if (std::find(allowed.begin(), allowed.end(), *filter.status) ==
        allowed.end()) {
      std::vector<std::string> names;
      for (TaskStatus s : allowed) names.push_back(TaskStatus_Name(s));
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot ", what, " tasks by filter with status ",
          TaskStatus_IsValid(*filter.status) ? TaskStatus_Name(*filter.status)
                                             : "(unknown)",
          ": the status must be one of ", absl::StrJoin(names, ", ")));
    }
    statuses = {*filter.status};
  }
  TASKWAL_RETURN_IF_ERROR(
      CheckText("type", filter.type, options_.max_type_bytes, false));
  if (!filter.dry_run) TASKWAL_RETURN_IF_ERROR(CheckWritable());
  const int64_t created_before =
      filter.created_before == absl::InfiniteFuture()
          ? std::numeric_limits<int64_t>::max()
          : absl::ToUnixMicros(filter.created_before);
  const bool by_finish = filter.finished_before != absl::InfiniteFuture();
  const int64_t finished_before =
      by_finish ? absl::ToUnixMicros(filter.finished_before) : 0;
  auto matches = [&](const TaskEntry& e) {
    return std::find(statuses.begin(), statuses.end(), e.state.status) !=
               statuses.end() &&
           !(op == BulkOp::kRetry && e.waiting()) &&
           e.created_micros() < created_before &&
           (!by_finish || (e.state.finished_micros != 0 &&
                           e.state.finished_micros < finished_before));
  };

  // A batch: the next kBatch candidate ids in ascending order over every
  // partition, then each partition's share under its lock.
  constexpr size_t kBatch = 256;
  BulkResult result;
  uint64_t cursor = 0;
  // The tasks changed before a failure: every one journaled and applied
  // (the failing batch's sync may not have covered all of them).
  auto fail = [&](const absl::Status& s) {
    return absl::Status(
        s.code(), absl::StrCat(s.message(), " (", what, " by filter: ",
                               filter.dry_run ? 0 : result.task_ids.size(),
                               " tasks changed before)"));
  };
  while (true) {
    std::vector<uint64_t> ids;
    for (const auto& p : partitions_) {
      for (TaskStatus status : statuses) {
        std::vector<uint64_t> part =
            p->table().ListIds(status, filter.type, cursor, kBatch);
        ids.insert(ids.end(), part.begin(), part.end());
      }
    }
    if (ids.empty()) break;
    std::sort(ids.begin(), ids.end());
    if (ids.size() > kBatch) ids.resize(kBatch);
    cursor = ids.back();
    // Ascending ids, each under its partition's lock; one sync per batch.
    std::vector<PartitionLsn> synced;
    absl::Status s;
    size_t released = 0;
    for (uint64_t id : ids) {
      const bool full =
          filter.limit != 0 && result.task_ids.size() == filter.limit;
      Partition& p = PartitionOfTask(id);
      uint64_t lsn = 0;
      Wake wake;
      {
        absl::MutexLock l(&p.mu);
        const bool change = !filter.dry_run && !full;
        if (change) s = CheckWritable();
        const int64_t now = NowMicros();
        bool match = false;
        p.table().Read(id, [&](const TaskEntry& e) { match = matches(e); });
        // A matching task's due lease expires first, as the single-task
        // call does (the leases of tasks that do not match are not this
        // call's business). A CLAIMED task to retry is retried whatever
        // the expiry made of it (PENDING, or FAILED on its last attempt),
        // as Retry(id) would; cancel and delete take tasks without leases.
        if (s.ok() && change && match) {
          s = ExpireIfDueLocked(p, id, now, &lsn, &wake);
        }
        if (match && op == BulkOp::kDelete && HasWaiters(id)) match = false;
        if (s.ok() && match && full) {
          result.more = true;
        } else if (s.ok() && match) {
          if (change) {
            Transition t;
            t.set_time_micros(now);
            switch (op) {
              case BulkOp::kRetry:
                t.mutable_retry()->set_task_id(id);
                break;
              case BulkOp::kCancel:
                t.mutable_cancel()->set_task_id(id);
                break;
              case BulkOp::kDelete:
                t.mutable_delete_()->set_task_id(id);
                break;
            }
            absl::StatusOr<uint64_t> committed = CommitLocked(p, t, &wake);
            s = committed.status();
            if (s.ok()) {
              lsn = *committed;
              if (!p.table().Contains(id)) ++released;
            }
          }
          if (s.ok()) result.task_ids.push_back(id);
        }
      }
      Notify(wake);
      ResolveFinished(wake);
      if (lsn != 0) synced.push_back({p.index, lsn});
      if (!s.ok() || result.more) break;
    }
    ReleaseTasks(released);
    if (s.ok()) s = SyncTo(synced);
    if (!filter.dry_run && s.ok()) result.changed = result.task_ids.size();
    if (!s.ok()) {
      // What this batch changed is journaled; whether it is durable is
      // what the error says. Report the changes acknowledged before it.
      return fail(s);
    }
    if (result.more) break;
  }
  return result;
}

absl::StatusOr<BulkResult> EngineImpl::RetryMatching(const BulkFilter& filter) {
  return Bulk(BulkOp::kRetry, filter);
}

absl::StatusOr<BulkResult> EngineImpl::CancelMatching(
    const BulkFilter& filter) {
  return Bulk(BulkOp::kCancel, filter);
}

absl::StatusOr<BulkResult> EngineImpl::DeleteMatching(
    const BulkFilter& filter) {
  return Bulk(BulkOp::kDelete, filter);
}

absl::Status EngineImpl::CheckScheduleName(absl::string_view name) const {
  TASKWAL_RETURN_IF_ERROR(
      CheckText("schedule name", name, ScheduleTiming::kMaxNameBytes, true));
  if (name.size() + ScheduleTiming::kKeyOverheadBytes >
      options_.max_idempotency_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule name of ", name.size(),
        " bytes is too long for its task keys (max_idempotency_key_bytes ",
        options_.max_idempotency_key_bytes, " allows ",
        options_.max_idempotency_key_bytes -
            std::min(options_.max_idempotency_key_bytes,
                     ScheduleTiming::kKeyOverheadBytes),
        ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Schedule> EngineImpl::PutSchedule(const ScheduleSpec& spec) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckScheduleName(spec.name));
  if (!spec.task.idempotency_key.empty() ||
      spec.task.not_before != absl::InfinitePast()) {
    return absl::InvalidArgumentError(
        "a schedule's task spec must leave idempotency_key and not_before "
        "unset: the engine sets them for each due time");
  }
  if (!spec.task.depends_on.empty()) {
    return absl::InvalidArgumentError(
        "a schedule's task spec must leave depends_on empty");
  }
  if (spec.interval < absl::ZeroDuration() ||
      spec.interval == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("schedule interval must be finite");
  }
  if (spec.start == absl::InfiniteFuture() ||
      (spec.start != absl::InfinitePast() &&
       (spec.start < absl::UnixEpoch() ||
        spec.start > absl::FromUnixSeconds(253402300799)))) {
    return absl::InvalidArgumentError(
        "schedule start must lie between 1970 and 9999");
  }
  if (!spec.cron.empty() && spec.start != absl::InfinitePast()) {
    return absl::InvalidArgumentError(
        "a start time applies to interval schedules only");
  }
  if (spec.misfire_grace < absl::ZeroDuration() ||
      spec.misfire_grace == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "misfire_grace must be finite and not negative");
  }
  if (!Schedule::MissedPolicy_IsValid(spec.missed)) {
    return absl::InvalidArgumentError("unknown missed-times policy");
  }
  if (spec.task.payload.size() > kMaxSchedulePayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a schedule's task payload of ", spec.task.payload.size(),
        " bytes exceeds ", kMaxSchedulePayloadBytes,
        " (a scheduled task refers to large data rather than carrying it)"));
  }
  {
    TaskSpec check = spec.task;
    check.idempotency_key = ScheduleTaskKey(spec.name, 0);
    absl::Status s = CheckSpec(check);
    if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("schedule task: ", s.message()));
    }
  }
  Schedule schedule;
  schedule.set_name(spec.name);
  schedule.set_cron(spec.cron);
  schedule.set_time_zone(spec.time_zone);
  schedule.set_interval_micros(absl::ToInt64Microseconds(spec.interval));
  schedule.set_missed(spec.missed);
  schedule.set_misfire_grace_micros(
      absl::ToInt64Microseconds(spec.misfire_grace));
  {
    Task& t = *schedule.mutable_task_template();
    if (!spec.task.type.empty()) t.set_type(spec.task.type);
    if (!spec.task.payload.empty()) t.set_payload(spec.task.payload);
    t.set_priority(spec.task.priority);
    t.set_max_attempts(spec.task.max_attempts);
    if (spec.task.retry_policy.has_value()) {
      *t.mutable_retry_policy() = *spec.task.retry_policy;
    }
  }
  // Checks the timing (a start that does not matter for the check).
  TASKWAL_RETURN_IF_ERROR(ScheduleTiming::From(schedule).status());

  Partition& ps = PartitionOfTaskKey(spec.name);
  Wake wake;
  uint64_t lsn = 0;
  {
    LockAll();
    absl::Cleanup unlock = [this] { UnlockAll(); };
    ps.mu.AssertHeld();  // By LockAll, which the analysis cannot follow.
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    const int64_t now = NowMicros();
    const auto& existing = ps.state().schedules();
    auto it = existing.find(spec.name);
    const Schedule* old = it == existing.end() ? nullptr : &it->second;
    if (old == nullptr) {
      // Bounded, so that a snapshot's meta record (which holds them) stays
      // far below the record size limit.
      size_t count = 0;
      for (const auto& p : partitions_) {
        p->mu.AssertHeld();  // By LockAll.
        count += p->state().schedules().size();
      }
      if (count >= kMaxSchedules) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "there are ", count, " schedules, the most an engine keeps"));
      }
    }
    // Interval schedules count from their start: the one given, else the
    // replaced schedule's (same interval), else now.
    if (!spec.cron.empty()) {
      schedule.set_start_micros(0);
    } else if (spec.start != absl::InfinitePast()) {
      schedule.set_start_micros(absl::ToUnixMicros(spec.start));
    } else if (old != nullptr &&
               old->interval_micros() == schedule.interval_micros()) {
      schedule.set_start_micros(old->start_micros());
    } else {
      schedule.set_start_micros(now);
    }
    const bool same_timing =
        old != nullptr && old->cron() == schedule.cron() &&
        old->time_zone() == schedule.time_zone() &&
        old->interval_micros() == schedule.interval_micros() &&
        old->start_micros() == schedule.start_micros();
    schedule.set_created_micros(old != nullptr ? old->created_micros() : now);
    schedule.set_updated_micros(now);
    if (old != nullptr) {
      schedule.set_last_due_micros(old->last_due_micros());
      schedule.set_submitted(old->submitted());
      schedule.set_skipped(old->skipped());
    }
    if (same_timing) {
      schedule.set_next_due_micros(old->next_due_micros());
    } else {
      TASKWAL_ASSIGN_OR_RETURN(ScheduleTiming timing,
                               ScheduleTiming::From(schedule));
      // Never a time at or before one already handled.
      const std::optional<int64_t> next =
          timing.NextAfter(std::max(now, schedule.last_due_micros()));
      schedule.set_next_due_micros(next.value_or(Partition::kNever));
    }
    Transition record;
    record.set_time_micros(now);
    *record.mutable_schedule_put()->mutable_schedule() = schedule;
    TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(ps, record, &wake));
    {
      absl::MutexLock l(&unfireable_mu_);
      unfireable_.erase(spec.name);
    }
    UpdateNextScheduleDueLocked();
  }
  Notify(wake);
  TASKWAL_RETURN_IF_ERROR(SyncTo(ps.index, lsn));
  return schedule;
}

absl::Status EngineImpl::DeleteSchedule(absl::string_view name) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  // Not CheckScheduleName: a name that options changed since made too
  // long for its keys must still be deletable.
  TASKWAL_RETURN_IF_ERROR(
      CheckText("schedule name", name, ScheduleTiming::kMaxNameBytes, true));
  Partition& ps = PartitionOfTaskKey(name);
  Wake wake;
  uint64_t lsn = 0;
  {
    LockAll();
    absl::Cleanup unlock = [this] { UnlockAll(); };
    ps.mu.AssertHeld();  // By LockAll.
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    if (!ps.state().schedules().contains(name)) {
      return absl::NotFoundError(
          absl::StrCat("no schedule named \"", name, "\""));
    }
    Transition record;
    record.set_time_micros(NowMicros());
    record.mutable_schedule_delete()->set_name(std::string(name));
    TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(ps, record, &wake));
    {
      absl::MutexLock l(&unfireable_mu_);
      unfireable_.erase(name);
    }
    UpdateNextScheduleDueLocked();
  }
  Notify(wake);
  return SyncTo(ps.index, lsn);
}

absl::StatusOr<Schedule> EngineImpl::GetSchedule(absl::string_view name) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(
      CheckText("schedule name", name, ScheduleTiming::kMaxNameBytes, true));
  Partition& ps = PartitionOfTaskKey(name);
  absl::MutexLock l(&ps.mu);
  auto it = ps.state().schedules().find(name);
  if (it == ps.state().schedules().end()) {
    return absl::NotFoundError(
        absl::StrCat("no schedule named \"", name, "\""));
  }
  return it->second;
}

absl::StatusOr<std::vector<Schedule>> EngineImpl::ListSchedules() {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  std::vector<Schedule> all;
  for (const auto& p : partitions_) {
    absl::MutexLock l(&p->mu);
    for (const auto& [name, schedule] : p->state().schedules()) {
      all.push_back(schedule);
    }
  }
  std::sort(all.begin(), all.end(), [](const Schedule& a, const Schedule& b) {
    return a.name() < b.name();
  });
  return all;
}

void EngineImpl::UpdateNextScheduleDueLocked() {
  absl::MutexLock l(&unfireable_mu_);
  int64_t next = Partition::kNever;
  for (const auto& p : partitions_) {
    for (const auto& [name, schedule] : p->state().schedules()) {
      if (!unfireable_.contains(name)) {
        next = std::min(next, schedule.next_due_micros());
      }
    }
  }
  next_schedule_due_.store(next, std::memory_order_release);
}

absl::Status EngineImpl::FireDueSchedules(int64_t now) {
  if (next_schedule_due_.load(std::memory_order_acquire) > now) {
    return absl::OkStatus();
  }
  // The due schedules, each copied under its own partition's lock, and
  // their passes, computed with no lock held: skipping or catching up after
  // a long stop walks many due times, and writers must not wait for it.
  struct Plan {
    uint32_t partition;
    Schedule schedule;
    ScheduleTiming::Pass pass;
  };
  std::vector<Plan> plans;
  for (const auto& p : partitions_) {
    absl::MutexLock l(&p->mu);
    for (const auto& [name, schedule] : p->state().schedules()) {
      if (schedule.next_due_micros() <= now) {
        plans.push_back(Plan{p->index, schedule, {}});
      }
    }
  }
  std::vector<std::string> unfireable;
  for (Plan& plan : plans) {
    const Schedule& s = plan.schedule;
    absl::StatusOr<ScheduleTiming> timing = ScheduleTiming::From(s);
    if (!timing.ok()) {
      unfireable.push_back(s.name());
      continue;
    }
    plan.pass = timing->Due(s.next_due_micros(), now, s.missed(),
                            s.misfire_grace_micros(), kMaxSubmitPerPass);
  }
  if (!unfireable.empty()) {
    absl::MutexLock l(&unfireable_mu_);
    unfireable_.insert(unfireable.begin(), unfireable.end());
  }

  std::vector<PartitionLsn> synced;
  Wake wake;
  absl::Status status;
  {
    LockAll();
    absl::Cleanup unlock = [this] { UnlockAll(); };
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    for (const Plan& plan : plans) {
      Partition& ps = *partitions_[plan.partition];
      ps.mu.AssertHeld();  // By LockAll.
      auto it = ps.state().schedules().find(plan.schedule.name());
      // Changed since it was copied (another pass fired it, a Put replaced
      // it, a Delete removed it): the next pass looks again.
      if (it == ps.state().schedules().end() ||
          it->second.next_due_micros() != plan.schedule.next_due_micros() ||
          it->second.updated_micros() != plan.schedule.updated_micros()) {
        continue;
      }
      if (std::find(unfireable.begin(), unfireable.end(),
                    plan.schedule.name()) != unfireable.end()) {
        continue;
      }
      absl::Status s =
          FireLocked(ps, it->second, plan.pass, now, &synced, &wake);
      // max_tasks reached, or a record too large: this schedule waits for
      // the next pass; the others go on. Anything else is sticky.
      if (absl::IsResourceExhausted(s) || absl::IsInvalidArgument(s)) {
        continue;
      }
      if (!s.ok()) {
        status = s;
        break;
      }
    }
    UpdateNextScheduleDueLocked();
  }
  Notify(wake);
  TASKWAL_RETURN_IF_ERROR(status);
  return SyncTo(synced);
}

absl::Status EngineImpl::FireLocked(Partition& ps, const Schedule& schedule,
                                    const ScheduleTiming::Pass& pass,
                                    int64_t now,
                                    std::vector<PartitionLsn>* synced,
                                    Wake* wake) {
  // One record per partition: the schedule's own (its advance, and its
  // tasks that fall there), and a submit for every other partition.
  const uint32_t n = partitions();
  std::vector<Transition> records(n);
  std::vector<uint64_t> next_id(n, 0);
  for (uint32_t i = 0; i < n; ++i) {
    records[i].set_time_micros(now);
    next_id[i] = partitions_[i]->state().next_task_id();
  }
  TaskSpec spec;
  const Task& tmpl = schedule.task_template();
  spec.type = tmpl.type();
  spec.payload = tmpl.payload();
  spec.priority = tmpl.priority();
  spec.max_attempts = tmpl.max_attempts();
  if (tmpl.has_retry_policy()) spec.retry_policy = tmpl.retry_policy();
  // Room under max_tasks: the due times past it wait for the next pass.
  uint64_t room = std::numeric_limits<uint64_t>::max();
  if (options_.max_tasks != 0) {
    const uint64_t live = live_tasks_.load();
    room = live >= options_.max_tasks ? 0 : options_.max_tasks - live;
  }
  ScheduleFireRecord& fire = *records[ps.index].mutable_schedule_fire();
  int64_t last_due =
      pass.skipped > 0 ? pass.last_skipped : schedule.last_due_micros();
  uint64_t skipped = pass.skipped;
  std::optional<int64_t> next_due = pass.next_due;
  uint64_t created = 0;
  for (int64_t due : pass.submit) {
    spec.idempotency_key = ScheduleTaskKey(schedule.name(), due);
    spec.not_before = absl::FromUnixMicros(due);
    Partition& pt = PartitionOfTaskKey(spec.idempotency_key);
    // An existing task with the key (a schedule of the same name submitted
    // it before) is that due time's task.
    if (pt.table().LookupKey(spec.idempotency_key).has_value()) {
      last_due = due;
      continue;
    }
    // The engine's options changed since the Put and refuse the task:
    // the due time is skipped, and counted.
    if (!CheckSpec(spec).ok()) {
      ++skipped;
      last_due = due;
      continue;
    }
    if (created == room) {
      next_due = due;
      break;
    }
    SubmitRecord* submit = pt.index == ps.index
                               ? fire.mutable_submit()
                               : records[pt.index].mutable_submit();
    NewTask(spec, next_id[pt.index], now, submit->add_tasks());
    next_id[pt.index] += n;
    ++created;
    last_due = due;
  }
  if (next_due == schedule.next_due_micros()) {
    return absl::ResourceExhaustedError("max_tasks reached");
  }
  fire.set_name(schedule.name());
  fire.set_next_due_micros(next_due.value_or(Partition::kNever));
  fire.set_last_due_micros(last_due);
  fire.set_skipped(skipped);
  fire.set_submitted(created);
  TASKWAL_RETURN_IF_ERROR(ReserveTasks(created, ""));

  std::vector<uint32_t> group;
  std::vector<const Transition*> group_records;
  for (uint32_t i = 0; i < n; ++i) {
    if (i == ps.index || records[i].has_submit()) {
      group.push_back(i);
      group_records.push_back(&records[i]);
    }
  }
  // Journaling failed: nothing is staged or applied, so the reservation
  // goes back. (An apply failure is sticky; the engine stops writing.)
  const size_t before = synced->size();
  absl::Status s = CommitGroupLocked(group, group_records, synced, wake);
  if (!s.ok() && synced->size() == before) ReleaseTasks(created);
  return s;
}

void EngineImpl::LockAll() {
  for (const std::unique_ptr<Partition>& p : partitions_) p->mu.Lock();
}

void EngineImpl::UnlockAll() {
  for (size_t i = partitions_.size(); i-- > 0;) partitions_[i]->mu.Unlock();
}

absl::Status EngineImpl::CommitGroupLocked(
    absl::Span<const uint32_t> group,
    absl::Span<const Transition* const> records,
    std::vector<PartitionLsn>* synced, Wake* wake) {
  std::vector<uint64_t> lsns(group.size());
  absl::Status s;
  if (group.size() == 1) {
    absl::StatusOr<uint64_t> lsn = journal_->Append(group[0], *records[0]);
    s = lsn.status();
    if (lsn.ok()) lsns[0] = *lsn;
  } else {
    s = journal_->AppendGroup(group, records, lsns.data());
  }
  if (!s.ok()) return absl::IsInvalidArgument(s) ? s : SetSticky(s);
  for (size_t g = 0; g < group.size(); ++g) {
    TASKWAL_RETURN_IF_ERROR(
        ApplyLocked(*partitions_[group[g]], *records[g], lsns[g], wake));
    synced->push_back({group[g], lsns[g]});
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::SetPaused(absl::string_view type, bool paused) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (type.empty()) {
    return absl::InvalidArgumentError(
        "type is empty: name the type to pause or resume");
  }
  // A resume takes any type a pause may have taken (max_type_bytes may
  // have shrunk since).
  TASKWAL_RETURN_IF_ERROR(
      CheckText("type", type,
                paused ? options_.max_type_bytes
                       : std::max<size_t>(options_.max_type_bytes, 1 << 16),
                false));
  Wake wake;
  std::vector<PartitionLsn> synced;
  {
    LockAll();
    absl::Cleanup unlock = [this] { UnlockAll(); };
    partitions_[0]->mu.AssertHeld();  // By LockAll.
    TASKWAL_RETURN_IF_ERROR(CheckWritable());
    // Every partition holds the same paused set: partition 0 speaks for
    // all.
    const Scheduler& scheduler = partitions_[0]->state().scheduler();
    if (scheduler.IsPaused(type) == paused) return absl::OkStatus();
    if (paused && scheduler.paused_count() >= kMaxPausedTypes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          kMaxPausedTypes, " types are paused, the most an engine keeps"));
    }
    Transition record;
    record.set_time_micros(NowMicros());
    record.mutable_pause()->set_type(std::string(type));
    record.mutable_pause()->set_paused(paused);
    // One record per partition, as one group.
    std::vector<uint32_t> group(partitions());
    std::vector<const Transition*> records(partitions(), &record);
    for (uint32_t i = 0; i < partitions(); ++i) group[i] = i;
    TASKWAL_RETURN_IF_ERROR(CommitGroupLocked(group, records, &synced, &wake));
  }
  Notify(wake);
  return SyncTo(synced);
}

absl::Status EngineImpl::Pause(absl::string_view type) {
  return SetPaused(type, true);
}

absl::Status EngineImpl::Resume(absl::string_view type) {
  return SetPaused(type, false);
}

absl::StatusOr<std::vector<std::string>> EngineImpl::PausedTypes() {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  Partition& p = *partitions_[0];
  absl::MutexLock l(&p.mu);
  return p.state().scheduler().PausedTypes();
}

absl::StatusOr<Task> EngineImpl::Get(uint64_t task_id) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  std::optional<Task> task = PartitionOfTask(task_id).table().GetTask(task_id);
  if (!task.has_value()) return TaskNotFound(task_id);
  Resolve(&*task);
  return *std::move(task);
}

absl::StatusOr<Task> EngineImpl::GetByIdempotencyKey(absl::string_view key) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckText("idempotency key", key,
                                    options_.max_idempotency_key_bytes, true));
  const TaskTable& table = PartitionOfTaskKey(key).table();
  std::optional<uint64_t> id = table.LookupKey(key);
  std::optional<Task> task;
  if (id.has_value()) task = table.GetTask(*id);
  if (!task.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no task has idempotency key \"", key, "\""));
  }
  Resolve(&*task);
  return *std::move(task);
}

absl::StatusOr<ListPage> EngineImpl::List(const ListFilter& filter) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (filter.limit < 1 || filter.limit > kMaxListLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be in [1, ", kMaxListLimit, "]"));
  }
  if (filter.status.has_value() &&
      (!TaskStatus_IsValid(*filter.status) ||
       *filter.status == TASK_STATUS_UNSPECIFIED)) {
    return absl::InvalidArgumentError("unknown status in filter");
  }
  // The lowest ids of every partition, merged; one extra id tells whether
  // another page follows.
  std::vector<uint64_t> ids;
  for (const auto& p : partitions_) {
    std::vector<uint64_t> part = p->table().ListIds(
        filter.status, filter.type, filter.after_id, filter.limit + 1);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  std::sort(ids.begin(), ids.end());
  if (ids.size() > filter.limit + 1) ids.resize(filter.limit + 1);
  ListPage page;
  const bool more = ids.size() > filter.limit;
  if (more) ids.resize(filter.limit);
  for (uint64_t id : ids) {
    std::optional<Task> task =
        PartitionOfTask(id).table().GetTask(id, filter.payloads);
    // A task may change or vanish between the two reads; a page is not a
    // snapshot, but it never shows a task that fails the filter.
    if (!task.has_value()) continue;
    if (filter.status.has_value() && task->status() != *filter.status) {
      continue;
    }
    Resolve(&*task);
    page.tasks.push_back(*std::move(task));
  }
  if (more) page.next_cursor = ids.back();
  return page;
}

absl::StatusOr<std::vector<HistoryEntry>> EngineImpl::History(
    uint64_t task_id) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  std::optional<std::vector<HistoryEntry>> history =
      PartitionOfTask(task_id).table().GetHistory(task_id);
  if (!history.has_value()) return TaskNotFound(task_id);
  return *std::move(history);
}

absl::StatusOr<EngineStats> EngineImpl::Stats() {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  EngineStats s;
  const int64_t now = NowMicros();
  for (const auto& part : partitions_) {
    Partition& p = *part;
    absl::MutexLock l(&p.mu);
    const Counters& c = p.state().counters();
    // O(types) per partition: the scheduler answers each type's oldest
    // ready task from its index, without walking the tasks.
    for (const auto& [type, counts] : c.by_type) {
      TypeStats t;
      t.pending = counts.by_status[PENDING];
      t.claimed = counts.by_status[CLAIMED];
      t.completed = counts.by_status[COMPLETED];
      t.failed = counts.by_status[FAILED];
      t.cancelled = counts.by_status[CANCELLED];
      if (t.pending > 0) {
        const std::optional<int64_t> oldest =
            p.state().scheduler().OldestReady(type, now);
        if (oldest.has_value()) t.oldest_ready = absl::FromUnixMicros(*oldest);
      }
      s.by_type[type].Merge(t);
    }
    s.pending += c.by_status[PENDING];
    s.claimed += c.by_status[CLAIMED];
    s.completed += c.by_status[COMPLETED];
    s.failed += c.by_status[FAILED];
    s.cancelled += c.by_status[CANCELLED];
    s.submitted += c.submitted;
    s.claims += c.claims;
    s.completions += c.completions;
    s.failed_attempts += c.failed_attempts;
    s.lease_expiries += c.lease_expiries;
    s.retries += c.retries;
    s.cancellations += c.cancellations;
    s.deletions += c.deletions;
    s.retention_removals += c.retention_removals;
    s.transitions += c.transitions;
    s.last_lsn += p.state().last_applied_lsn();
    s.schedules += p.state().schedules().size();
    // Every partition holds the same paused set.
    if (p.index == 0) s.paused_types = p.state().scheduler().paused_count();
  }
  s.tasks = s.pending + s.claimed + s.completed + s.failed + s.cancelled;
  s.deduplicated = deduplicated_.load(std::memory_order_relaxed);
  s.partitions = partitions();
  const JournalStats j = journal_->stats();
  s.fsyncs = j.fsyncs;
  s.wal_bytes = j.bytes_written;
  s.wal_flushes = j.flushes;
  s.wal_records_flushed = j.records_flushed;
  s.snapshots = snapshots_.load();
  s.last_snapshot_lsn = last_snapshot_records_.load();
  if (s.snapshots > 0) {
    s.last_snapshot_time = absl::FromUnixMicros(last_snapshot_micros_.load());
  }
  return s;
}

absl::Status EngineImpl::Snapshot() {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (storage_ == nullptr) {
    return absl::FailedPreconditionError(
        "an in-memory engine has no data directory to snapshot");
  }
  if (options_.read_only) {
    return absl::FailedPreconditionError("the engine was opened read-only");
  }
  absl::MutexLock snap(&snapshot_mu_);
  TASKWAL_RETURN_IF_ERROR(CheckWritable());
  if (journal_->records() == last_snapshot_records_.load()) {
    // Nothing new since the last snapshot; rewriting it could only put
    // the existing one at risk.
    return absl::OkStatus();
  }
  // Every record appended from here on lies in `first_segment` or later:
  // the log the snapshot needs starts there.
  absl::StatusOr<uint64_t> first_segment = journal_->StartSegment();
  if (!first_segment.ok()) return SetSticky(first_segment.status());
  const uint32_t n = partitions();
  std::vector<SnapshotMeta> metas(n);
  std::vector<TaskTable*> tables(n);
  uint64_t records = 0;
  for (uint32_t i = 0; i < n; ++i) {
    Partition& p = *partitions_[i];
    absl::MutexLock l(&p.mu);
    // Under the commit lock, so the view holds exactly the records through
    // the meta's LSN; from here on writers save what they overwrite.
    metas[i] = p.state().MakeSnapshotMeta();
    metas[i].set_first_segment(*first_segment);
    tables[i] = &p.state().table();
    tables[i]->BeginSnapshot();
    records += metas[i].lsn();
  }
  auto end_views = [&] {
    for (TaskTable* table : tables) {
      for (size_t s = 0; s < table->num_shards(); ++s) table->EndSnapshot(s);
    }
  };
  // The log must hold every record the snapshot holds before the snapshot
  // exists: otherwise a damaged snapshot could leave a hole that no older
  // snapshot and no log covers.
  if (absl::Status s = journal_->SyncAll(); !s.ok()) {
    end_views();
    return SetSticky(s);
  }
  if (absl::Status s = storage_->snapshots->Write(metas, tables); !s.ok()) {
    return SnapshotFailed("snapshot not written", s);
  }
  snapshots_.fetch_add(1);
  last_snapshot_records_.store(records);
  last_snapshot_micros_.store(absl::ToUnixMicros(absl::Now()));

  if (absl::Status pruned = RemoveUnneededFiles(); !pruned.ok()) {
    return SnapshotFailed(
        "snapshot written, but removing older files failed (the next "
        "snapshot removes them)",
        pruned);
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::RemoveUnneededFiles() {
  TASKWAL_ASSIGN_OR_RETURN(const uint64_t keep_from,
                           storage_->snapshots->Prune());
  if (keep_from == 0) return absl::OkStatus();
  return journal_->DiscardBefore(keep_from);
}

RecoveryReport EngineImpl::Recovery() const {
  return storage_ != nullptr ? storage_->recovery : RecoveryReport();
}

absl::Status EngineImpl::ApplyRetention(Partition& p, int64_t now,
                                        std::vector<PartitionLsn>* synced) {
  const int64_t cutoff = now - absl::ToInt64Microseconds(options_.retention);
  bool more = true;
  while (more) {
    uint64_t lsn = 0;
    size_t removed = 0;
    {
      // The lock is released between chunks so a large backlog does not
      // stall writers.
      absl::MutexLock l(&p.mu);
      TASKWAL_RETURN_IF_ERROR(CheckWritable());
      std::vector<uint64_t> ids =
          p.state().scheduler().FinishedBefore(cutoff, kRetentionChunk);
      Wake unused;
      for (uint64_t id : ids) {
        // Kept until its waiters are resolved (moments, or Open's repair).
        if (HasWaiters(id)) continue;
        Transition t;
        t.set_time_micros(now);
        t.mutable_delete_()->set_task_id(id);
        t.mutable_delete_()->set_retention(true);
        absl::StatusOr<uint64_t> committed = CommitLocked(p, t, &unused);
        if (!committed.ok()) {
          ReleaseTasks(removed);
          return committed.status();
        }
        lsn = *committed;
        ++removed;
      }
      more = ids.size() == kRetentionChunk && removed > 0;
    }
    ReleaseTasks(removed);
    if (lsn != 0) synced->push_back({p.index, lsn});
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::RunMaintenance() {
  TASKWAL_RETURN_IF_ERROR(CheckWritable());
  TASKWAL_RETURN_IF_ERROR(FireDueSchedules(NowMicros()));
  std::vector<PartitionLsn> synced;
  for (const auto& part : partitions_) {
    Partition& p = *part;
    const int64_t now = NowMicros();
    uint64_t lsn = 0;
    Wake wake;
    {
      absl::MutexLock l(&p.mu);
      TASKWAL_RETURN_IF_ERROR(CheckWritable());
      TASKWAL_RETURN_IF_ERROR(ServiceLocked(p, now, &lsn, &wake));
    }
    Notify(wake);
    ResolveFinished(wake);
    if (lsn != 0) synced.push_back({p.index, lsn});
    if (options_.retention > absl::ZeroDuration()) {
      TASKWAL_RETURN_IF_ERROR(ApplyRetention(p, now, &synced));
    }
  }
  return SyncTo(synced);
}

}  // namespace engine

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(
    const EngineOptions& given) {
  TASKWAL_RETURN_IF_ERROR(engine::ValidateOptions(given));
  EngineOptions options = given;
  // use_stored_options: the directory's stored options replace the given
  // ones. A writer reads them once it holds the lock, so that it cannot
  // store back a copy another writer replaced meanwhile.
  auto apply_stored_options = [&options](Env* env) -> absl::Status {
    if (!options.use_stored_options) return absl::OkStatus();
    TASKWAL_RETURN_IF_ERROR(
        engine::ApplyStoredOptions(env, options.data_dir, &options));
    const absl::Status valid = engine::ValidateOptions(options);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(wal::JoinPath(options.data_dir, wal::kOptionsFileName),
                       ": a stored option is out of range: ", valid.message()));
    }
    return absl::OkStatus();
  };
  if (options.data_dir.empty()) {
    const uint32_t n =
        options.partitions != 0 ? options.partitions : kDefaultPartitions;
    std::vector<std::unique_ptr<engine::StateMachine>> states;
    for (uint32_t i = 0; i < n; ++i) {
      states.push_back(engine::NewPartitionState(options, i, n));
    }
    return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
        options, std::make_unique<engine::MemoryJournal>(n),
        std::move(states)));
  }
  Env* env = options.env != nullptr ? options.env : Env::Default();
  const std::string& dir = options.data_dir;
  auto make_storage = [&](engine::RecoveredState& recovered) {
    auto storage = std::make_unique<engine::Storage>();
    storage->env = env;
    storage->dir = dir;
    storage->snapshots = std::make_unique<engine::DirSnapshotStore>(
        env, dir, static_cast<uint32_t>(recovered.states.size()));
    storage->recovery = std::move(recovered.report);
    storage->snapshot_records = storage->recovery.snapshot_lsn;
    return storage;
  };
  if (options.read_only) {
    // The owner of the directory may discard snapshots and segments while
    // we read them: read the files of one moment (wal/pinned_dir.h). Only a
    // directory too large to pin whole can change under the read; it is
    // read again if a file vanished or a gap appeared and the directory
    // changed meanwhile. Damage stays damage.
    TASKWAL_RETURN_IF_ERROR(apply_stored_options(env));
    constexpr int kMaxAttempts = 5;
    absl::StatusOr<engine::RecoveredState> recovered;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<wal::PinnedDir> view,
                               wal::PinnedDir::Pin(env, dir));
      recovered = engine::RecoverDirectory(options, view.get(), dir);
      if (recovered.ok() || view->complete() ||
          (!absl::IsNotFound(recovered.status()) &&
           !absl::IsDataLoss(recovered.status()))) {
        break;
      }
      TASKWAL_ASSIGN_OR_RETURN(bool changed, view->Changed());
      if (!changed) break;
    }
    if (!recovered.ok()) return recovered.status();
    const uint32_t n = static_cast<uint32_t>(recovered->states.size());
    std::unique_ptr<engine::Storage> storage = make_storage(*recovered);
    return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
        options, std::make_unique<engine::MemoryJournal>(n),
        std::move(recovered->states), std::move(storage)));
  }
  TASKWAL_RETURN_IF_ERROR(env->CreateDir(dir));
  absl::StatusOr<std::unique_ptr<FileLock>> lock = env->LockFile(dir + "/LOCK");
  // An Env reports a held lock as kFailedPrecondition (api/env.h); to the
  // engine's callers it is kUnavailable, the code for "try again later",
  // apart from a directory that Open can never use as asked.
  if (absl::IsFailedPrecondition(lock.status())) {
    return absl::UnavailableError(absl::StrCat(
        lock.status().message(), "; retry once the engine holding it closes"));
  }
  if (!lock.ok()) return lock.status();
  TASKWAL_RETURN_IF_ERROR(apply_stored_options(env));
  TASKWAL_ASSIGN_OR_RETURN(engine::RecoveredState recovered,
                           engine::RecoverDirectory(options, env, dir));
  wal::WalOptions wal_options;
  wal_options.env = env;
  wal_options.dir = dir;
  wal_options.sync =
      options.sync_mode == SyncMode::kAlways     ? wal::WalSync::kAlways
      : options.sync_mode == SyncMode::kInterval ? wal::WalSync::kInterval
                                                 : wal::WalSync::kNone;
  wal_options.sync_interval = options.sync_interval;
  wal_options.segment_bytes = options.segment_bytes;
  wal_options.partitions = static_cast<uint32_t>(recovered.states.size());
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<wal::Wal> wal,
      wal::Wal::Open(wal_options, std::move(recovered.segments),
                     std::move(recovered.last_lsn), recovered.next_seq,
                     recovered.tail_bytes));
  // Only a directory that recovered is a data directory whose options are
  // worth keeping.
  TASKWAL_RETURN_IF_ERROR(engine::StoreOptions(env, dir, options));
  std::unique_ptr<engine::Storage> storage = make_storage(recovered);
  storage->lock = *std::move(lock);
  return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
      options, std::make_unique<engine::WalJournal>(std::move(wal)),
      std::move(recovered.states), std::move(storage)));
}

}  // namespace taskwal
