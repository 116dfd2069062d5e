#include "engine/engine_impl.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/recovery.h"
#include "engine/snapshot.h"
#include "engine/utf8.h"
#include "wal/status_macros.h"

namespace taskwal {

namespace engine {

namespace {

constexpr size_t kMaxListLimit = 10000;
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
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is ", value.size(), " bytes; the limit is ", max));
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

int64_t SaturatingAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a + b;
}

}  // namespace

absl::Status ValidateOptions(const EngineOptions& o) {
  if (o.num_shards < 1 || o.num_shards > 4096) {
    return absl::InvalidArgumentError("num_shards must be in [1, 4096]");
  }
  if (o.max_max_attempts < 1 || o.default_max_attempts < 1 ||
      o.default_max_attempts > o.max_max_attempts) {
    return absl::InvalidArgumentError(
        "default_max_attempts must be in [1, max_max_attempts]");
  }
  if (o.default_lease <= absl::ZeroDuration() ||
      o.max_lease < o.default_lease) {
    return absl::InvalidArgumentError(
        "default_lease must be positive and at most max_lease");
  }
  if (o.retention < absl::ZeroDuration() ||
      o.maintenance_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "retention and maintenance_interval must not be negative");
  }
  if (o.max_batch_size < 1) {
    return absl::InvalidArgumentError("max_batch_size must be at least 1");
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

EngineImpl::EngineImpl(const EngineOptions& options,
                       std::unique_ptr<Journal> journal,
                       std::unique_ptr<StateMachine> state,
                       std::unique_ptr<Storage> storage)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      journal_(std::move(journal)),
      storage_(std::move(storage)),
      table_(&state->table()),
      state_(std::move(state)),
      rng_(options.random_seed != 0 ? options.random_seed
                                    : std::random_device{}()) {
  if (storage_ != nullptr) {
    last_snapshot_lsn_.store(storage_->recovery.snapshot_lsn);
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
  {
    absl::MutexLock l(&commit_mu_);
    closed_.store(true);
    ready_cv_.SignalAll();
  }
  stop_maintenance_.Notify();
  if (maintenance_thread_.joinable()) maintenance_thread_.join();
  // A snapshot in flight finishes before the journal closes.
  absl::MutexLock snap(&snapshot_mu_);
  absl::Status s = journal_->Close();
  if (storage_ != nullptr) storage_->lock.reset();
  {
    absl::MutexLock l(&commit_mu_);
    if (!sticky_error_.ok()) {
      s = sticky_error_;
    } else if (!s.ok()) {
      sticky_error_ = s;
    }
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
    if (storage_ != nullptr && storage_->journal != nullptr &&
        options_.snapshot_every_records > 0) {
      const uint64_t lsn = storage_->journal->wal().last_lsn();
      if (lsn - last_snapshot_lsn_.load() >= options_.snapshot_every_records &&
          lsn - last_snapshot_attempt_lsn_.load() >=
              options_.snapshot_every_records) {
        last_snapshot_attempt_lsn_.store(lsn);
        Snapshot().IgnoreError();
      }
    }
  }
}

int64_t EngineImpl::NowMicros() const {
  return absl::ToUnixMicros(clock_->Now());
}

absl::Status EngineImpl::CheckOpen() const {
  if (closed_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError("engine is closed");
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::CheckWritableLocked() const {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (options_.read_only) {
    return absl::FailedPreconditionError("the engine was opened read-only");
  }
  return sticky_error_;
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
    return absl::InvalidArgumentError(
        absl::StrCat("lease ", absl::FormatDuration(lease),
                     " exceeds max_lease ",
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
  return absl::OkStatus();
}

RetryPolicy EngineImpl::PolicyOf(const TaskEntry& e) const {
  std::optional<RetryPolicy> own = e.retry_policy();
  return own.has_value() ? *std::move(own) : options_.default_retry_policy;
}

Task EngineImpl::Resolved(Task task) const {
  if (!task.has_retry_policy()) {
    *task.mutable_retry_policy() = options_.default_retry_policy;
  }
  return task;
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
  // fixed size otherwise); PolicyOf and Resolved fill in the default.
  if (spec.retry_policy.has_value()) {
    *t->mutable_retry_policy() = *spec.retry_policy;
  }
}

absl::StatusOr<uint64_t> EngineImpl::CommitLocked(const Transition& record) {
  absl::StatusOr<uint64_t> lsn = journal_->Append(record);
  if (!lsn.ok()) {
    // kInvalidArgument: the record is too large and nothing was staged.
    if (!absl::IsInvalidArgument(lsn.status())) sticky_error_ = lsn.status();
    return lsn.status();
  }
  absl::Status s = state_->Apply(record, *lsn);
  if (!s.ok()) {
    // The record is journaled but does not fit the state: a bug. Stop
    // writing rather than let memory and journal disagree further.
    sticky_error_ = s;
    return s;
  }
  return *lsn;
}

absl::Status EngineImpl::SyncTo(uint64_t lsn) {
  if (lsn == 0) return absl::OkStatus();
  absl::Status s = journal_->Sync(lsn);
  if (!s.ok()) {
    absl::MutexLock l(&commit_mu_);
    if (sticky_error_.ok()) sticky_error_ = s;
  }
  return s;
}

int64_t EngineImpl::BackoffMicros(const RetryPolicy& policy,
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
    base *= factor(rng_);
  }
  return static_cast<int64_t>(std::llround(std::max(0.0, base)));
}

absl::Status EngineImpl::ExpireLocked(uint64_t task_id, int64_t now,
                                      uint64_t* lsn) {
  RetryPolicy policy;
  uint32_t attempts = 0;
  table_->Read(task_id, [&](const TaskEntry& e) {
    policy = PolicyOf(e);
    attempts = e.state.attempts;
  });
  Transition t;
  t.set_time_micros(now);
  FailRecord* f = t.mutable_fail();
  f->set_task_id(task_id);
  f->set_error("lease expired");
  f->set_lease_expired(true);
  f->set_retry_at_micros(SaturatingAdd(now, BackoffMicros(policy, attempts)));
  TASKWAL_ASSIGN_OR_RETURN(*lsn, CommitLocked(t));
  ready_cv_.SignalAll();
  return absl::OkStatus();
}

void EngineImpl::WakeIfEarliestLeaseLocked(int64_t deadline) {
  // Waiting ClaimNext calls sleep until the earliest lease deadline they
  // saw; a new, earlier one must shorten that sleep.
  if (state_->scheduler().NextLeaseDeadline() == deadline) {
    ready_cv_.SignalAll();
  }
}

absl::Status EngineImpl::ExpireIfDueLocked(uint64_t task_id, int64_t now,
                                           uint64_t* lsn) {
  bool due = false;
  table_->Read(task_id, [&](const TaskEntry& e) {
    due = e.state.status == CLAIMED && e.state.lease_deadline_micros <= now;
  });
  if (!due) return absl::OkStatus();
  return ExpireLocked(task_id, now, lsn);
}

absl::Status EngineImpl::ExpireDueLeasesLocked(int64_t now, uint64_t* lsn) {
  for (uint64_t id : state_->scheduler().DueLeases(now)) {
    TASKWAL_RETURN_IF_ERROR(ExpireLocked(id, now, lsn));
  }
  return absl::OkStatus();
}

absl::StatusOr<EngineImpl::ClaimState> EngineImpl::CheckClaimLocked(
    uint64_t task_id, absl::string_view worker_id, uint64_t claim_token,
    uint64_t* last_lsn) const {
  // Messages are built only on the error paths: this runs on every
  // Complete, Fail and Heartbeat.
  absl::StatusOr<ClaimState> result = ClaimState::kCurrent;
  const bool found = table_->Read(task_id, [&](const TaskEntry& e) {
    const TaskState& t = e.state;
    *last_lsn = t.last_lsn;
    const bool same_claim =
        e.claimed_by() == worker_id && t.claim_token == claim_token;
    if (t.status == CLAIMED && same_claim) {
      result = ClaimState::kCurrent;
    } else if (t.status == COMPLETED && same_claim) {
      result = ClaimState::kAlreadyCompleted;
    } else if (t.status == CLAIMED && e.claimed_by() != worker_id) {
      result = absl::FailedPreconditionError(
          absl::StrCat("task ", task_id, " is claimed by worker \"",
                       e.claimed_by(), "\", not \"", worker_id, "\""));
    } else if (t.status == CLAIMED) {
      result = absl::FailedPreconditionError(absl::StrCat(
          "claim token ", claim_token, " for task ", task_id,
          " is stale: the current claim is token ", t.claim_token));
    } else {
      result = absl::FailedPreconditionError(absl::StrCat(
          "task ", task_id, " is ", TaskStatus_Name(t.status),
          ": the claim by \"", worker_id, "\" with token ", claim_token,
          " is no longer current (lease expired, released or finished)"));
    }
  });
  if (!found) return TaskNotFound(task_id);
  return result;
}

absl::StatusOr<EngineImpl::ClaimState> EngineImpl::ClaimOpLocked(
    uint64_t task_id, absl::string_view worker_id, uint64_t claim_token,
    int64_t now, uint64_t* lsn, uint64_t* last_lsn) {
  TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
  TASKWAL_RETURN_IF_ERROR(ExpireIfDueLocked(task_id, now, lsn));
  return CheckClaimLocked(task_id, worker_id, claim_token, last_lsn);
}

absl::StatusOr<ClaimedTask> EngineImpl::ClaimLocked(
    uint64_t task_id, absl::string_view worker_id, int64_t lease_micros,
    int64_t now, uint64_t* lsn) {
  Transition t;
  t.set_time_micros(now);
  ClaimRecord* c = t.mutable_claim();
  c->set_task_id(task_id);
  c->set_worker_id(worker_id.data(), worker_id.size());
  c->set_claim_token(state_->next_claim_token());
  c->set_lease_deadline_micros(SaturatingAdd(now, lease_micros));
  TASKWAL_ASSIGN_OR_RETURN(*lsn, CommitLocked(t));
  WakeIfEarliestLeaseLocked(c->lease_deadline_micros());
  ClaimedTask claimed;
  table_->Read(task_id, [&](const TaskEntry& e) { e.ToTask(&claimed.task); });
  claimed.task = Resolved(std::move(claimed.task));
  claimed.claim_token = c->claim_token();
  claimed.attempt = claimed.task.attempts();
  claimed.lease_deadline = absl::FromUnixMicros(c->lease_deadline_micros());
  return claimed;
}

absl::StatusOr<SubmitResult> EngineImpl::Submit(const TaskSpec& spec) {
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SubmitResult> results,
                           SubmitBatch(absl::MakeConstSpan(&spec, 1)));
  return results.front();
}

absl::StatusOr<std::vector<SubmitResult>> EngineImpl::SubmitBatch(
    absl::Span<const TaskSpec> specs) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  if (specs.empty()) return absl::InvalidArgumentError("empty batch");
  if (specs.size() > options_.max_batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", specs.size(), " exceeds max_batch_size ",
                     options_.max_batch_size));
  }
  const bool batch = specs.size() > 1;
  auto where = [batch](size_t i) {
    return batch ? absl::StrCat(" (batch index ", i, ")") : std::string();
  };
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::Status s = CheckSpec(specs[i]);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(), where(i)));
    }
  }

  std::vector<SubmitResult> results(specs.size());
  uint64_t wait_lsn = 0;
  uint64_t deduplicated = 0;
  {
    absl::MutexLock l(&commit_mu_);
    TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
    const int64_t now = NowMicros();
    Transition record;
    record.set_time_micros(now);
    SubmitRecord* submit = record.mutable_submit();
    // Keys new in this batch -> index into submit->tasks() (a batch of one
    // needs none).
    absl::flat_hash_map<absl::string_view, int> batch_keys;
    uint64_t next_id = state_->next_task_id();
    for (size_t i = 0; i < specs.size(); ++i) {
      const TaskSpec& spec = specs[i];
      bool same = false;
      uint64_t existing_id = 0;
      if (std::optional<uint64_t> id = table_->LookupKey(spec.idempotency_key);
          id.has_value()) {
        existing_id = *id;
        table_->Read(*id, [&](const TaskEntry& e) {
          same = e.type() == spec.type && e.payload() == spec.payload;
          wait_lsn = std::max(wait_lsn, e.state.last_lsn);
        });
      } else if (auto it = batch ? batch_keys.find(spec.idempotency_key)
                                 : batch_keys.end();
                 it != batch_keys.end()) {
        const Task& t = submit->tasks(it->second);
        existing_id = t.id();
        same = t.type() == spec.type && t.payload() == spec.payload;
      } else {
        Task* t = submit->add_tasks();
        NewTask(spec, next_id++, now, t);
        if (batch) {
          batch_keys.emplace(t->idempotency_key(), submit->tasks_size() - 1);
        }
        results[i] = SubmitResult{t->id(), false};
        continue;
      }
      if (!same) {
        return absl::AlreadyExistsError(absl::StrCat(
            "idempotency key \"", spec.idempotency_key, "\" already names task ",
            existing_id, " with a different type or payload", where(i)));
      }
      results[i] = SubmitResult{existing_id, true};
      ++deduplicated;
    }
    if (submit->tasks_size() > 0) {
      if (options_.max_tasks != 0 &&
          table_->size() + submit->tasks_size() > options_.max_tasks) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "max_tasks ", options_.max_tasks, " reached",
            where(static_cast<size_t>(
                std::find_if(results.begin(), results.end(),
                             [](const SubmitResult& r) {
                               return !r.deduplicated;
                             }) -
                results.begin()))));
      }
      TASKWAL_ASSIGN_OR_RETURN(uint64_t lsn, CommitLocked(record));
      wait_lsn = std::max(wait_lsn, lsn);
      ready_cv_.SignalAll();
    }
  }
  deduplicated_.fetch_add(deduplicated, std::memory_order_relaxed);
  TASKWAL_RETURN_IF_ERROR(SyncTo(wait_lsn));
  return results;
}

absl::StatusOr<ClaimedTask> EngineImpl::Claim(uint64_t task_id,
                                              absl::string_view worker_id,
                                              absl::Duration lease) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_ASSIGN_OR_RETURN(int64_t lease_micros, LeaseMicros(lease));
  uint64_t lsn = 0;
  absl::StatusOr<ClaimedTask> claimed;
  {
    absl::MutexLock l(&commit_mu_);
    TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
    const int64_t now = NowMicros();
    TASKWAL_RETURN_IF_ERROR(ExpireIfDueLocked(task_id, now, &lsn));
    absl::Status check = TaskNotFound(task_id);
    table_->Read(task_id, [&](const TaskEntry& e) {
      if (e.state.status != PENDING) {
        check = absl::FailedPreconditionError(
            absl::StrCat("task ", task_id, " is ",
                         TaskStatus_Name(e.state.status), ", not PENDING"));
      } else if (e.state.not_before_micros > now) {
        check = absl::FailedPreconditionError(absl::StrCat(
            "task ", task_id, " is not claimable before ",
            absl::FormatTime(absl::FromUnixMicros(e.state.not_before_micros))));
      } else {
        check = absl::OkStatus();
      }
    });
    TASKWAL_RETURN_IF_ERROR(check);
    claimed = ClaimLocked(task_id, worker_id, lease_micros, now, &lsn);
  }
  if (!claimed.ok()) return claimed.status();
  TASKWAL_RETURN_IF_ERROR(SyncTo(lsn));
  return claimed;
}

absl::StatusOr<ClaimedTask> EngineImpl::ClaimNext(
    absl::string_view worker_id, const ClaimNextOptions& options) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_ASSIGN_OR_RETURN(int64_t lease_micros, LeaseMicros(options.lease));
  if (options.wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("wait must not be negative");
  }
  TASKWAL_RETURN_IF_ERROR(CheckText("type", options.type,
                                    options_.max_type_bytes, false));
  const absl::Time give_up = absl::Now() + options.wait;
  uint64_t lsn = 0;
  absl::StatusOr<ClaimedTask> claimed;
  {
    absl::MutexLock l(&commit_mu_);
    while (true) {
      TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
      const int64_t now = NowMicros();
      TASKWAL_RETURN_IF_ERROR(ExpireDueLeasesLocked(now, &lsn));
      Scheduler& scheduler = state_->scheduler();
      scheduler.PromoteDue(now);
      if (std::optional<uint64_t> id = scheduler.PeekReady(options.type)) {
        claimed = ClaimLocked(*id, worker_id, lease_micros, now, &lsn);
        break;
      }
      const absl::Time real_now = absl::Now();
      if (real_now >= give_up) {
        return absl::NotFoundError(
            options.type.empty()
                ? std::string("no task is ready")
                : absl::StrCat("no task of type \"", options.type,
                               "\" is ready"));
      }
      // Sleep until signalled, the wait ends, or the next delayed task or
      // lease comes due, whichever is first.
      absl::Time wake = give_up;
      for (std::optional<int64_t> due :
           {scheduler.NextDelayed(), scheduler.NextLeaseDeadline()}) {
        if (due.has_value()) {
          wake = std::min(wake, real_now + absl::Microseconds(*due - now));
        }
      }
      ready_cv_.WaitWithDeadline(&commit_mu_, wake);
    }
  }
  if (!claimed.ok()) return claimed.status();
  TASKWAL_RETURN_IF_ERROR(SyncTo(lsn));
  return claimed;
}

absl::Status EngineImpl::Complete(uint64_t task_id,
                                  absl::string_view worker_id,
                                  uint64_t claim_token,
                                  absl::string_view result) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_RETURN_IF_ERROR(
      CheckSize("result", result, options_.max_result_bytes, false));
  uint64_t lsn = 0;
  {
    absl::MutexLock l(&commit_mu_);
    const int64_t now = NowMicros();
    uint64_t last_lsn = 0;
    TASKWAL_ASSIGN_OR_RETURN(ClaimState state,
                             ClaimOpLocked(task_id, worker_id, claim_token,
                                           now, &lsn, &last_lsn));
    if (state == ClaimState::kAlreadyCompleted) {
      lsn = last_lsn;  // Acknowledge only once the completion is durable.
    } else {
      Transition t;
      t.set_time_micros(now);
      t.mutable_complete()->set_task_id(task_id);
      if (!result.empty()) {
        t.mutable_complete()->set_result(result.data(), result.size());
      }
      TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(t));
    }
  }
  return SyncTo(lsn);
}

absl::Status EngineImpl::Fail(uint64_t task_id, absl::string_view worker_id,
                              uint64_t claim_token, absl::string_view error) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_RETURN_IF_ERROR(
      CheckText("error", error, options_.max_error_bytes, false));
  uint64_t lsn = 0;
  {
    absl::MutexLock l(&commit_mu_);
    const int64_t now = NowMicros();
    uint64_t last_lsn = 0;
    TASKWAL_ASSIGN_OR_RETURN(ClaimState state,
                             ClaimOpLocked(task_id, worker_id, claim_token,
                                           now, &lsn, &last_lsn));
    if (state != ClaimState::kCurrent) {
      return absl::FailedPreconditionError(
          absl::StrCat("task ", task_id, " is already COMPLETED"));
    }
    RetryPolicy policy;
    uint32_t attempts = 0;
    table_->Read(task_id, [&](const TaskEntry& e) {
      policy = PolicyOf(e);
      attempts = e.state.attempts;
    });
    Transition t;
    t.set_time_micros(now);
    FailRecord* f = t.mutable_fail();
    f->set_task_id(task_id);
    if (!error.empty()) f->set_error(error.data(), error.size());
    f->set_retry_at_micros(SaturatingAdd(now, BackoffMicros(policy, attempts)));
    TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(t));
    ready_cv_.SignalAll();
  }
  return SyncTo(lsn);
}

absl::StatusOr<absl::Time> EngineImpl::Heartbeat(uint64_t task_id,
                                                 absl::string_view worker_id,
                                                 uint64_t claim_token,
                                                 absl::Duration extension) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckWorker(worker_id));
  TASKWAL_ASSIGN_OR_RETURN(int64_t lease_micros, LeaseMicros(extension));
  uint64_t lsn = 0;
  int64_t deadline = 0;
  {
    absl::MutexLock l(&commit_mu_);
    const int64_t now = NowMicros();
    uint64_t last_lsn = 0;
    TASKWAL_ASSIGN_OR_RETURN(ClaimState state,
                             ClaimOpLocked(task_id, worker_id, claim_token,
                                           now, &lsn, &last_lsn));
    if (state != ClaimState::kCurrent) {
      return absl::FailedPreconditionError(
          absl::StrCat("task ", task_id, " is already COMPLETED"));
    }
    deadline = SaturatingAdd(now, lease_micros);
    Transition t;
    t.set_time_micros(now);
    t.mutable_heartbeat()->set_task_id(task_id);
    t.mutable_heartbeat()->set_lease_deadline_micros(deadline);
    TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(t));
    WakeIfEarliestLeaseLocked(deadline);
  }
  TASKWAL_RETURN_IF_ERROR(SyncTo(lsn));
  return absl::FromUnixMicros(deadline);
}

template <typename Allowed, typename Build>
absl::Status EngineImpl::OperatorTransition(uint64_t task_id, const char* what,
                                            Allowed allowed, Build build) {
  uint64_t lsn = 0;
  {
    absl::MutexLock l(&commit_mu_);
    TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
    const int64_t now = NowMicros();
    TASKWAL_RETURN_IF_ERROR(ExpireIfDueLocked(task_id, now, &lsn));
    absl::Status check = TaskNotFound(task_id);
    table_->Read(task_id, [&](const TaskEntry& e) {
      check = allowed(e.state.status)
                  ? absl::OkStatus()
                  : absl::FailedPreconditionError(absl::StrCat(
                        "cannot ", what, " task ", task_id, ": it is ",
                        TaskStatus_Name(e.state.status)));
    });
    TASKWAL_RETURN_IF_ERROR(check);
    Transition t;
    t.set_time_micros(now);
    build(t);
    TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(t));
    ready_cv_.SignalAll();
  }
  return SyncTo(lsn);
}

absl::Status EngineImpl::Retry(uint64_t task_id) {
  return OperatorTransition(
      task_id, "retry",
      [](TaskStatus s) { return s == PENDING || s == CLAIMED || s == FAILED; },
      [task_id](Transition& t) { t.mutable_retry()->set_task_id(task_id); });
}

absl::Status EngineImpl::Cancel(uint64_t task_id) {
  return OperatorTransition(
      task_id, "cancel", [](TaskStatus s) { return s == PENDING; },
      [task_id](Transition& t) { t.mutable_cancel()->set_task_id(task_id); });
}

absl::Status EngineImpl::Delete(uint64_t task_id) {
  return OperatorTransition(
      task_id, "delete",
      [](TaskStatus s) {
        return s == COMPLETED || s == FAILED || s == CANCELLED;
      },
      [task_id](Transition& t) { t.mutable_delete_()->set_task_id(task_id); });
}

absl::StatusOr<Task> EngineImpl::Get(uint64_t task_id) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  std::optional<Task> task = table_->GetTask(task_id);
  if (!task.has_value()) return TaskNotFound(task_id);
  return Resolved(*std::move(task));
}

absl::StatusOr<Task> EngineImpl::GetByIdempotencyKey(absl::string_view key) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  TASKWAL_RETURN_IF_ERROR(CheckText("idempotency key", key,
                                    options_.max_idempotency_key_bytes, true));
  std::optional<uint64_t> id = table_->LookupKey(key);
  std::optional<Task> task;
  if (id.has_value()) task = table_->GetTask(*id);
  if (!task.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no task has idempotency key \"", key, "\""));
  }
  return Resolved(*std::move(task));
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
  // One extra id tells whether another page follows.
  std::vector<uint64_t> ids = table_->ListIds(filter.status, filter.type,
                                              filter.after_id, filter.limit + 1);
  ListPage page;
  const bool more = ids.size() > filter.limit;
  if (more) ids.resize(filter.limit);
  for (uint64_t id : ids) {
    std::optional<Task> task = table_->GetTask(id);
    // A task may change or vanish between the two reads; a page is not a
    // snapshot, but it never shows a task that fails the filter.
    if (!task.has_value()) continue;
    if (filter.status.has_value() && task->status() != *filter.status) {
      continue;
    }
    page.tasks.push_back(Resolved(*std::move(task)));
  }
  if (more) page.next_cursor = ids.back();
  return page;
}

absl::StatusOr<std::vector<HistoryEntry>> EngineImpl::History(
    uint64_t task_id) {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  std::optional<std::vector<HistoryEntry>> history =
      table_->GetHistory(task_id);
  if (!history.has_value()) return TaskNotFound(task_id);
  return *std::move(history);
}

absl::StatusOr<EngineStats> EngineImpl::Stats() {
  TASKWAL_RETURN_IF_ERROR(CheckOpen());
  EngineStats s;
  absl::MutexLock l(&commit_mu_);
  const Counters& c = state_->counters();
  s.pending = c.by_status[PENDING];
  s.claimed = c.by_status[CLAIMED];
  s.completed = c.by_status[COMPLETED];
  s.failed = c.by_status[FAILED];
  s.cancelled = c.by_status[CANCELLED];
  s.tasks = s.pending + s.claimed + s.completed + s.failed + s.cancelled;
  s.deduplicated = deduplicated_.load(std::memory_order_relaxed);
  s.submitted = c.submitted;
  s.claims = c.claims;
  s.completions = c.completions;
  s.failed_attempts = c.failed_attempts;
  s.lease_expiries = c.lease_expiries;
  s.retries = c.retries;
  s.cancellations = c.cancellations;
  s.deletions = c.deletions;
  s.retention_removals = c.retention_removals;
  s.transitions = c.transitions;
  s.last_lsn = state_->last_applied_lsn();
  if (storage_ != nullptr && storage_->journal != nullptr) {
    const wal::WalStats& w = storage_->journal->wal().stats();
    s.fsyncs = w.fsyncs.load(std::memory_order_relaxed);
    s.wal_bytes = w.bytes_written.load(std::memory_order_relaxed);
    s.wal_flushes = w.flushes.load(std::memory_order_relaxed);
    s.wal_records_flushed = w.records_flushed.load(std::memory_order_relaxed);
  }
  s.snapshots = snapshots_.load();
  s.last_snapshot_lsn = last_snapshot_lsn_.load();
  if (s.snapshots > 0) {
    s.last_snapshot_time = absl::FromUnixMicros(last_snapshot_micros_.load());
  }
  return s;
}

absl::Status EngineImpl::Snapshot() {
  if (storage_ == nullptr) {
    return absl::FailedPreconditionError(
        "an in-memory engine has no data directory to snapshot");
  }
  if (options_.read_only) {
    return absl::FailedPreconditionError("the engine was opened read-only");
  }
  absl::MutexLock snap(&snapshot_mu_);
  SnapshotMeta meta;
  {
    absl::MutexLock l(&commit_mu_);
    TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
    meta = state_->MakeSnapshotMeta();
    // Under the commit lock, so the view holds exactly the records through
    // meta.lsn(); from here on writers save what they overwrite.
    table_->BeginSnapshot();
    if (meta.lsn() != last_snapshot_lsn_.load()) {
      // Nothing more goes into the active segment, so the records this
      // snapshot holds that are already written sit in segments it covers
      // whole, which the next Open skips.
      storage_->journal->wal().RequestRotation();
    }
  }
  if (meta.lsn() == last_snapshot_lsn_.load()) {
    // Nothing new since the last snapshot; rewriting it under the same name
    // could only put the existing one at risk.
    for (size_t i = 0; i < table_->num_shards(); ++i) table_->EndSnapshot(i);
    return absl::OkStatus();
  }
  // The log must hold every record the snapshot holds before the snapshot
  // exists: otherwise a damaged snapshot could leave a hole that no older
  // snapshot and no log covers.
  if (absl::Status s = journal_->SyncAll(); !s.ok()) {
    for (size_t i = 0; i < table_->num_shards(); ++i) table_->EndSnapshot(i);
    absl::MutexLock l(&commit_mu_);
    if (sticky_error_.ok()) sticky_error_ = s;
    return s;
  }
  TASKWAL_RETURN_IF_ERROR(
      WriteSnapshot(storage_->env, storage_->dir, meta, table_));
  snapshots_.fetch_add(1);
  last_snapshot_lsn_.store(meta.lsn());
  last_snapshot_micros_.store(absl::ToUnixMicros(absl::Now()));

  // Keep the two newest snapshots, and the log after the older one, so a
  // damaged newest snapshot still leaves a way back.
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SnapshotFile> snapshots,
                           ListSnapshots(storage_->env, storage_->dir));
  if (snapshots.size() < 2) return absl::OkStatus();
  for (size_t i = 2; i < snapshots.size(); ++i) {
    TASKWAL_RETURN_IF_ERROR(storage_->env->RemoveFile(
        absl::StrCat(storage_->dir, "/", snapshots[i].name)));
  }
  if (snapshots.size() > 2) {
    TASKWAL_RETURN_IF_ERROR(storage_->env->SyncDir(storage_->dir));
  }
  return storage_->journal->wal().DiscardThrough(snapshots[1].lsn);
}

RecoveryReport EngineImpl::Recovery() const {
  return storage_ != nullptr ? storage_->recovery : RecoveryReport();
}

absl::Status EngineImpl::RunMaintenance() {
  uint64_t lsn = 0;
  bool more = true;
  while (more) {
    absl::MutexLock l(&commit_mu_);
    TASKWAL_RETURN_IF_ERROR(CheckWritableLocked());
    const int64_t now = NowMicros();
    TASKWAL_RETURN_IF_ERROR(ExpireDueLeasesLocked(now, &lsn));
    more = false;
    if (options_.retention > absl::ZeroDuration()) {
      const int64_t cutoff =
          now - absl::ToInt64Microseconds(options_.retention);
      std::vector<uint64_t> ids =
          state_->scheduler().FinishedBefore(cutoff, kRetentionChunk);
      for (uint64_t id : ids) {
        Transition t;
        t.set_time_micros(now);
        t.mutable_delete_()->set_task_id(id);
        t.mutable_delete_()->set_retention(true);
        TASKWAL_ASSIGN_OR_RETURN(lsn, CommitLocked(t));
      }
      // Release the lock between chunks so a large backlog does not stall
      // writers.
      more = ids.size() == kRetentionChunk;
    }
    // Delayed tasks that came due: wake waiters so they re-check.
    std::optional<int64_t> next = state_->scheduler().NextDelayed();
    if (next.has_value() && *next <= now) ready_cv_.SignalAll();
  }
  return SyncTo(lsn);
}

}  // namespace engine

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(
    const EngineOptions& options) {
  TASKWAL_RETURN_IF_ERROR(engine::ValidateOptions(options));
  if (options.data_dir.empty()) {
    auto state = std::make_unique<engine::StateMachine>(
        options.num_shards, options.max_history_per_task,
        /*track_finished=*/options.retention > absl::ZeroDuration());
    return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
        options, std::make_unique<engine::MemoryJournal>(), std::move(state)));
  }
  Env* env = options.env != nullptr ? options.env : Env::Default();
  const std::string& dir = options.data_dir;
  if (options.read_only) {
    // The owner of the directory may discard a segment while we read it;
    // reading again from the top sees the snapshot that replaced it.
    absl::StatusOr<engine::RecoveredState> recovered;
    for (int attempt = 0; attempt < 5; ++attempt) {
      recovered = engine::RecoverDirectory(options, env, dir);
      // A file that vanished, or a gap that a snapshot written meanwhile
      // explains, is worth another look; real damage stays.
      if (!absl::IsNotFound(recovered.status()) &&
          !absl::IsDataLoss(recovered.status())) {
        break;
      }
      if (!env->FileExists(dir)) break;
    }
    if (!recovered.ok()) return recovered.status();
    auto storage = std::make_unique<engine::Storage>();
    storage->env = env;
    storage->dir = dir;
    storage->recovery = std::move(recovered->report);
    return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
        options, std::make_unique<engine::MemoryJournal>(),
        std::move(recovered->state), std::move(storage)));
  }
  TASKWAL_RETURN_IF_ERROR(env->CreateDir(dir));
  TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock,
                           env->LockFile(dir + "/LOCK"));
  TASKWAL_ASSIGN_OR_RETURN(engine::RecoveredState recovered,
                           engine::RecoverDirectory(options, env, dir));
  wal::WalOptions wal_options;
  wal_options.env = env;
  wal_options.dir = dir;
  wal_options.sync = options.sync_mode == SyncMode::kAlways ? wal::WalSync::kAlways
                     : options.sync_mode == SyncMode::kInterval
                         ? wal::WalSync::kInterval
                         : wal::WalSync::kNone;
  wal_options.sync_interval = options.sync_interval;
  wal_options.segment_bytes = options.segment_bytes;
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<wal::Wal> wal,
      wal::Wal::Open(wal_options, std::move(recovered.segments),
                     recovered.last_lsn));
  auto journal = std::make_unique<engine::WalJournal>(std::move(wal));
  auto storage = std::make_unique<engine::Storage>();
  storage->env = env;
  storage->dir = dir;
  storage->lock = std::move(lock);
  storage->journal = journal.get();
  storage->recovery = std::move(recovered.report);
  return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
      options, std::move(journal), std::move(recovered.state),
      std::move(storage)));
}

}  // namespace taskwal
