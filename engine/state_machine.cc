#include "engine/state_machine.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/partitioning.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

namespace {

bool IsTerminal(TaskStatus s) {
  return s == COMPLETED || s == FAILED || s == CANCELLED;
}

absl::Status Mismatch(const char* what, uint64_t id, absl::string_view why) {
  return absl::InternalError(
      absl::StrCat(what, " record for task ", id, " does not apply: ", why));
}

HistoryEvent MakeHistory(int64_t now, HistoryEntry::Event event,
                         TaskStatus from, TaskStatus to, uint32_t attempt) {
  HistoryEvent h;
  h.time_micros = now;
  h.event = event;
  h.from = from;
  h.to = to;
  h.attempt = attempt;
  return h;
}

}  // namespace

bool ValidDependencies(const Task& t) {
  if (t.depends_on_size() > static_cast<int>(TaskEntry::kMaxDependencies)) {
    return false;
  }
  if (!DependencyFailurePolicy_IsValid(t.on_dependency_failure())) return false;
  absl::flat_hash_set<uint64_t> deps;
  for (uint64_t id : t.depends_on()) {
    if (id == 0 || id == t.id() || !deps.insert(id).second) return false;
  }
  absl::flat_hash_set<uint64_t> waiting;
  for (uint64_t id : t.waiting_for()) {
    if (!deps.contains(id) || !waiting.insert(id).second) return false;
  }
  return true;
}

StateMachine::StateMachine(int num_shards, size_t max_history_per_task,
                           bool track_finished, uint32_t partition,
                           uint32_t partitions)
    : max_history_per_task_(max_history_per_task),
      partition_(partition),
      partitions_(partitions),
      table_(num_shards),
      scheduler_(track_finished),
      next_task_id_(FirstTaskId(partition, partitions)),
      next_claim_token_(FirstTaskId(partition, partitions)) {}

void StateMachine::AppendHistory(TaskEntry& entry,
                                 const HistoryEvent& h) const {
  entry.AppendHistory(h, max_history_per_task_);
}

void StateMachine::CountStatusChange(absl::string_view type, TaskStatus from,
                                     TaskStatus to) {
  --counters_.by_status[from];
  ++counters_.by_status[to];
  // Every task of `type` is counted there: the entry exists.
  TypeCounts& counts = counters_.by_type.find(type)->second;
  --counts.by_status[from];
  ++counts.by_status[to];
}

void StateMachine::CountAdded(absl::string_view type, TaskStatus status) {
  ++counters_.by_status[status];
  auto it = counters_.by_type.find(type);
  if (it == counters_.by_type.end()) {
    it = counters_.by_type.try_emplace(std::string(type)).first;
  }
  ++it->second.by_status[status];
  ++it->second.tasks;
}

void StateMachine::CountRemoved(absl::string_view type, TaskStatus status) {
  --counters_.by_status[status];
  auto it = counters_.by_type.find(type);
  if (--it->second.tasks == 0) {
    counters_.by_type.erase(it);
  } else {
    --it->second.by_status[status];
  }
}

absl::Status StateMachine::Apply(const Transition& record, uint64_t lsn) {
  const int64_t now = record.time_micros();
  absl::Status s;
  switch (record.kind_case()) {
    case Transition::kSubmit:
      s = ApplySubmit(record.submit(), now, lsn);
      break;
    case Transition::kClaim:
      s = ApplyClaim(record.claim(), now, lsn);
      break;
    case Transition::kComplete:
      s = ApplyComplete(record.complete(), now, lsn);
      break;
    case Transition::kFail:
      s = ApplyFail(record.fail(), now, lsn);
      break;
    case Transition::kHeartbeat:
      s = ApplyHeartbeat(record.heartbeat(), lsn);
      break;
    case Transition::kRetry:
      s = ApplyRetry(record.retry(), now, lsn);
      break;
    case Transition::kCancel:
      s = ApplyCancel(record.cancel(), now, lsn);
      break;
    case Transition::kDelete:
      s = ApplyDelete(record.delete_());
      break;
    case Transition::kPause:
      s = ApplyPause(record.pause());
      break;
    case Transition::kSchedulePut:
      s = ApplySchedulePut(record.schedule_put());
      break;
    case Transition::kScheduleDelete:
      s = ApplyScheduleDelete(record.schedule_delete());
      break;
    case Transition::kScheduleFire:
      s = ApplyScheduleFire(record.schedule_fire(), now, lsn);
      break;
    case Transition::kDependency:
      s = ApplyDependency(record.dependency(), now, lsn);
      break;
    case Transition::KIND_NOT_SET:
      s = absl::InternalError("transition record has no kind");
      break;
  }
  if (!s.ok()) return s;
  ++counters_.transitions;
  if (lsn > last_applied_lsn_) last_applied_lsn_ = lsn;
  return absl::OkStatus();
}

absl::Status StateMachine::ApplySubmit(const SubmitRecord& r, int64_t now,
                                       uint64_t lsn) {
  // Check the whole batch before changing anything. Ids must ascend, which
  // also makes them unique within the batch; keys need a set only when
  // there is more than one.
  absl::flat_hash_set<absl::string_view> keys;
  uint64_t min_id = next_task_id_;
  for (const Task& t : r.tasks()) {
    if (t.id() < min_id) return Mismatch("submit", t.id(), "id reused");
    if (PartitionOfId(t.id(), partitions_) != partition_) {
      return Mismatch("submit", t.id(), "id of another partition");
    }
    min_id = t.id() + 1;
    if (t.status() != PENDING) return Mismatch("submit", t.id(), "not PENDING");
    if (t.idempotency_key().empty() ||
        (r.tasks_size() > 1 && !keys.insert(t.idempotency_key()).second) ||
        table_.LookupKey(t.idempotency_key()).has_value()) {
      return Mismatch("submit", t.id(), "idempotency key taken");
    }
    if (t.max_attempts() == 0) {
      return Mismatch("submit", t.id(), "max_attempts is 0");
    }
    if (t.history_dropped() != 0) {
      return Mismatch("submit", t.id(), "history_dropped is set");
    }
    if (!ValidDependencies(t)) {
      return Mismatch("submit", t.id(), "bad dependencies");
    }
  }
  for (const Task& t : r.tasks()) {
    std::unique_ptr<TaskEntry> entry = TaskEntry::Create(t, lsn);
    AppendHistory(*entry, MakeHistory(now, HistoryEntry::SUBMITTED,
                                      TASK_STATUS_UNSPECIFIED, PENDING, 0));
    table_.InsertKey(entry.get());
    // A task that waits for dependencies is not claimable until the last
    // of them completes (ApplyDependency).
    if (!entry->waiting()) {
      scheduler_.AddPending(t.id(), t.type(), t.priority(),
                            t.not_before_micros(), now);
    }
    next_task_id_ = t.id() + partitions_;
    table_.Insert(std::move(entry));
    CountAdded(t.type(), PENDING);
    ++counters_.submitted;
  }
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyClaim(const ClaimRecord& r, int64_t now,
                                      uint64_t lsn) {
  if (r.claim_token() < next_claim_token_) {
    return Mismatch("claim", r.task_id(), "claim token reused");
  }
  absl::Status s;
  // The type's bytes live in the entry, which only this writer can free, so
  // a view of them stays valid past the shard lock (as in ApplyDelete).
  absl::string_view type;
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    type = e.type();
    if (t.status != PENDING || e.waiting()) {
      s = Mismatch("claim", e.id(),
                   e.waiting() ? "waits for dependencies" : "not PENDING");
      return;
    }
    scheduler_.RemovePending(e.id(), e.type(), e.priority(),
                             t.not_before_micros);
    scheduler_.AddLease(e.id(), r.lease_deadline_micros());
    t.status = CLAIMED;
    ++t.attempts;
    t.claim_token = r.claim_token();
    t.lease_deadline_micros = r.lease_deadline_micros();
    t.claimed_micros = now;
    t.not_before_micros = 0;
    t.last_lsn = lsn;
    const TaskEntry::Strings strs = e.strings();
    e.SetStrings(r.worker_id(), strs.result, strs.last_error);
    HistoryEvent h =
        MakeHistory(now, HistoryEntry::CLAIMED, PENDING, CLAIMED, t.attempts);
    h.worker_id = r.worker_id();
    AppendHistory(e, h);
  });
  if (!found) return Mismatch("claim", r.task_id(), "no such task");
  if (!s.ok()) return s;
  CountStatusChange(type, PENDING, CLAIMED);
  ++counters_.claims;
  next_claim_token_ = r.claim_token() + partitions_;
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyComplete(const CompleteRecord& r, int64_t now,
                                         uint64_t lsn) {
  absl::Status s;
  absl::string_view type;  // Into the entry, as in ApplyClaim.
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    type = e.type();
    if (t.status != CLAIMED) {
      s = Mismatch("complete", e.id(), "not CLAIMED");
      return;
    }
    scheduler_.RemoveLease(e.id(), t.lease_deadline_micros);
    scheduler_.AddFinished(e.id(), now);
    t.status = COMPLETED;
    t.finished_micros = now;
    t.lease_deadline_micros = 0;
    t.last_lsn = lsn;
    const TaskEntry::Strings strs = e.strings();
    e.SetStrings(strs.claimed_by, r.result(), strs.last_error);
    HistoryEvent h = MakeHistory(now, HistoryEntry::COMPLETED, CLAIMED,
                                 COMPLETED, t.attempts);
    h.worker_id = e.claimed_by();
    AppendHistory(e, h);
  });
  if (!found) return Mismatch("complete", r.task_id(), "no such task");
  if (!s.ok()) return s;
  CountStatusChange(type, CLAIMED, COMPLETED);
  ++counters_.completions;
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyFail(const FailRecord& r, int64_t now,
                                     uint64_t lsn) {
  absl::Status s;
  TaskStatus to = TASK_STATUS_UNSPECIFIED;
  absl::string_view type;  // Into the entry, as in ApplyClaim.
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    type = e.type();
    if (t.status != CLAIMED) {
      s = Mismatch("fail", e.id(), "not CLAIMED");
      return;
    }
    scheduler_.RemoveLease(e.id(), t.lease_deadline_micros);
    to = r.permanent() || t.attempts >= e.max_attempts() ? FAILED : PENDING;
    HistoryEvent h = MakeHistory(now,
                                 r.lease_expired() ? HistoryEntry::LEASE_EXPIRED
                                 : to == FAILED    ? HistoryEntry::FAILED
                                                : HistoryEntry::ATTEMPT_FAILED,
                                 CLAIMED, to, t.attempts);
    h.worker_id = e.claimed_by();
    h.error = r.error();
    AppendHistory(e, h);  // Before claimed_by, which h points into, is cleared.
    t.status = to;
    e.SetStrings("", e.result(), r.error());
    t.claim_token = 0;
    t.lease_deadline_micros = 0;
    if (to == FAILED) {
      t.finished_micros = now;
      scheduler_.AddFinished(e.id(), now);
    } else {
      t.not_before_micros = r.retry_at_micros();
      scheduler_.AddPending(e.id(), e.type(), e.priority(), r.retry_at_micros(),
                            now);
    }
    t.last_lsn = lsn;
  });
  if (!found) return Mismatch("fail", r.task_id(), "no such task");
  if (!s.ok()) return s;
  CountStatusChange(type, CLAIMED, to);
  ++counters_.failed_attempts;
  if (r.lease_expired()) ++counters_.lease_expiries;
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyHeartbeat(const HeartbeatRecord& r,
                                          uint64_t lsn) {
  absl::Status s;
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    if (t.status != CLAIMED) {
      s = Mismatch("heartbeat", e.id(), "not CLAIMED");
      return;
    }
    scheduler_.RemoveLease(e.id(), t.lease_deadline_micros);
    scheduler_.AddLease(e.id(), r.lease_deadline_micros());
    t.lease_deadline_micros = r.lease_deadline_micros();
    t.last_lsn = lsn;
  });
  if (!found) return Mismatch("heartbeat", r.task_id(), "no such task");
  return s;
}

absl::Status StateMachine::ApplyRetry(const RetryRecord& r, int64_t now,
                                      uint64_t lsn) {
  absl::Status s;
  TaskStatus from = TASK_STATUS_UNSPECIFIED;
  absl::string_view type;  // Into the entry, as in ApplyClaim.
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    type = e.type();
    from = t.status;
    switch (from) {
      case CLAIMED:
        scheduler_.RemoveLease(e.id(), t.lease_deadline_micros);
        // A released attempt is not the task's failure: give it back.
        if (t.attempts > 0) --t.attempts;
        e.SetStrings("", e.result(), e.last_error());
        t.claim_token = 0;
        t.lease_deadline_micros = 0;
        break;
      case FAILED:
        scheduler_.RemoveFinished(e.id(), t.finished_micros);
        t.attempts = 0;
        t.finished_micros = 0;
        break;
      case PENDING:
        if (e.waiting()) {
          s = Mismatch("retry", e.id(), "task waits for dependencies");
          return;
        }
        scheduler_.RemovePending(e.id(), e.type(), e.priority(),
                                 t.not_before_micros);
        break;
      default:
        s = Mismatch("retry", e.id(), "task is not active or FAILED");
        return;
    }
    t.status = PENDING;
    t.not_before_micros = 0;
    scheduler_.AddPending(e.id(), e.type(), e.priority(), 0, now);
    t.last_lsn = lsn;
    AppendHistory(
        e, MakeHistory(now, HistoryEntry::RETRIED, from, PENDING, t.attempts));
  });
  if (!found) return Mismatch("retry", r.task_id(), "no such task");
  if (!s.ok()) return s;
  CountStatusChange(type, from, PENDING);
  ++counters_.retries;
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyCancel(const CancelRecord& r, int64_t now,
                                       uint64_t lsn) {
  absl::Status s;
  absl::string_view type;  // Into the entry, as in ApplyClaim.
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    type = e.type();
    if (t.status != PENDING) {
      s = Mismatch("cancel", e.id(), "not PENDING");
      return;
    }
    // A waiting task was never in the ready or delayed sets.
    if (e.waiting()) {
      e.StopWaiting();
    } else {
      scheduler_.RemovePending(e.id(), e.type(), e.priority(),
                               t.not_before_micros);
    }
    scheduler_.AddFinished(e.id(), now);
    t.status = CANCELLED;
    t.finished_micros = now;
    t.not_before_micros = 0;
    t.last_lsn = lsn;
    AppendHistory(e, MakeHistory(now, HistoryEntry::CANCELLED, PENDING,
                                 CANCELLED, t.attempts));
  });
  if (!found) return Mismatch("cancel", r.task_id(), "no such task");
  if (!s.ok()) return s;
  CountStatusChange(type, PENDING, CANCELLED);
  ++counters_.cancellations;
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyDependency(const DependencyRecord& r,
                                           int64_t now, uint64_t lsn) {
  const bool met = r.dependency_status() == COMPLETED;
  absl::Status s;
  TaskStatus to = PENDING;
  absl::string_view type;  // Into the entry, as in ApplyClaim.
  bool found = table_.Mutate(r.task_id(), [&](TaskEntry& e) {
    TaskState& t = e.state;
    type = e.type();
    if (t.status != PENDING || !e.WaitsFor(r.dependency_id())) {
      s = Mismatch("dependency", e.id(),
                   absl::StrCat("does not wait for task ", r.dependency_id()));
      return;
    }
    if (met) {
      if (!e.StopWaitingFor(r.dependency_id())) {
        scheduler_.AddPending(e.id(), e.type(), e.priority(),
                              t.not_before_micros, now);
      }
      t.last_lsn = lsn;
      return;
    }
    e.StopWaiting();
    to = e.cancel_on_dependency_failure() ? CANCELLED : FAILED;
    const std::string error =
        r.dependency_status() == TASK_STATUS_UNSPECIFIED
            ? absl::StrCat("dependency ", r.dependency_id(),
                           " no longer exists")
            : absl::StrCat("dependency ", r.dependency_id(), " is ",
                           TaskStatus_Name(r.dependency_status()));
    HistoryEvent h = MakeHistory(
        now, to == FAILED ? HistoryEntry::FAILED : HistoryEntry::CANCELLED,
        PENDING, to, t.attempts);
    h.error = error;
    AppendHistory(e, h);
    e.SetStrings(e.claimed_by(), e.result(), error);
    scheduler_.AddFinished(e.id(), now);
    t.status = to;
    t.finished_micros = now;
    t.not_before_micros = 0;
    t.last_lsn = lsn;
  });
  if (!found) return Mismatch("dependency", r.task_id(), "no such task");
  if (!s.ok()) return s;
  if (to != PENDING) {
    CountStatusChange(type, PENDING, to);
    if (to == CANCELLED) ++counters_.cancellations;
  }
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyDelete(const DeleteRecord& r) {
  TaskStatus status = TASK_STATUS_UNSPECIFIED;
  int64_t finished = 0;
  // The key's bytes live in the entry, which only this writer can free (in
  // Erase below), so a view of them stays valid past the shard lock.
  absl::string_view key;
  absl::string_view type;
  if (!table_.Read(r.task_id(), [&](const TaskEntry& e) {
        status = e.state.status;
        finished = e.state.finished_micros;
        key = e.idempotency_key();
        type = e.type();
      })) {
    return Mismatch("delete", r.task_id(), "no such task");
  }
  if (!IsTerminal(status)) {
    return Mismatch("delete", r.task_id(), "task is not terminal");
  }
  scheduler_.RemoveFinished(r.task_id(), finished);
  CountRemoved(type, status);  // Before Erase frees the type's bytes.
  // The key first: the index points into the entry.
  table_.EraseKey(key);
  table_.Erase(r.task_id());
  ++(r.retention() ? counters_.retention_removals : counters_.deletions);
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyPause(const PauseRecord& r) {
  // Pausing a paused type (or resuming a running one) is a no-op the live
  // path never writes; replay accepts it all the same.
  scheduler_.SetPaused(r.type(), r.paused());
  return absl::OkStatus();
}

absl::Status StateMachine::ApplySchedulePut(const SchedulePutRecord& r) {
  const std::string& name = r.schedule().name();
  if (name.empty() || PartitionOfKey(name, partitions_) != partition_) {
    return absl::InternalError(
        absl::StrCat("schedule record for \"", name, "\" does not apply: ",
                     name.empty() ? "no name" : "name of another partition"));
  }
  schedules_[name] = r.schedule();
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyScheduleDelete(const ScheduleDeleteRecord& r) {
  if (schedules_.erase(r.name()) == 0) {
    return absl::InternalError(
        absl::StrCat("schedule delete record for \"", r.name(),
                     "\" does not apply: no such schedule"));
  }
  return absl::OkStatus();
}

absl::Status StateMachine::ApplyScheduleFire(const ScheduleFireRecord& r,
                                             int64_t now, uint64_t lsn) {
  auto it = schedules_.find(r.name());
  if (it == schedules_.end()) {
    return absl::InternalError(
        absl::StrCat("schedule fire record for \"", r.name(),
                     "\" does not apply: no such schedule"));
  }
  // The tasks first: ApplySubmit checks all of them before changing
  // anything, so a record that does not fit changes nothing.
  if (r.submit().tasks_size() > 0) {
    TASKWAL_RETURN_IF_ERROR(ApplySubmit(r.submit(), now, lsn));
  }
  Schedule& s = it->second;
  s.set_next_due_micros(r.next_due_micros());
  s.set_last_due_micros(r.last_due_micros());
  s.set_submitted(s.submitted() + r.submitted());
  s.set_skipped(s.skipped() + r.skipped());
  return absl::OkStatus();
}

SnapshotMeta StateMachine::MakeSnapshotMeta() const {
  SnapshotMeta m;
  m.set_lsn(last_applied_lsn_);
  m.set_partition(partition_);
  m.set_partitions(partitions_);
  m.set_next_task_id(next_task_id_);
  m.set_next_claim_token(next_claim_token_);
  m.set_submitted(counters_.submitted);
  m.set_claims(counters_.claims);
  m.set_completions(counters_.completions);
  m.set_failed_attempts(counters_.failed_attempts);
  m.set_lease_expiries(counters_.lease_expiries);
  m.set_retries(counters_.retries);
  m.set_cancellations(counters_.cancellations);
  m.set_deletions(counters_.deletions);
  m.set_retention_removals(counters_.retention_removals);
  m.set_transitions(counters_.transitions);
  for (std::string& type : scheduler_.PausedTypes()) {
    m.add_paused_types(std::move(type));
  }
  for (const auto& [name, schedule] : schedules_) {
    *m.add_schedules() = schedule;
  }
  return m;
}

absl::Status StateMachine::RestoreTask(std::unique_ptr<TaskEntry> entry) {
  const TaskEntry& e = *entry;
  const TaskStatus status = e.state.status;
  if (!TaskStatus_IsValid(status) || status == TASK_STATUS_UNSPECIFIED ||
      e.id() < FirstTaskId(partition_, partitions_) ||
      PartitionOfId(e.id(), partitions_) != partition_ ||
      e.idempotency_key().empty() || e.max_attempts() == 0) {
    return absl::DataLossError(
        absl::StrCat("snapshot task ", e.id(), " is not a valid task"));
  }
  if (e.waiting() && status != PENDING) {
    return absl::DataLossError(
        absl::StrCat("snapshot task ", e.id(),
                     " waits for dependencies but is not PENDING"));
  }
  if (table_.Contains(e.id()) || !table_.InsertKey(&e)) {
    return absl::DataLossError(absl::StrCat(
        "snapshot task ", e.id(), " repeats an id or idempotency key"));
  }
  switch (status) {
    case PENDING:
      // A snapshot does not say when the task last became PENDING; its
      // newest history entry does (SUBMITTED, RETRIED, ATTEMPT_FAILED or
      // LEASE_EXPIRED), unless a dependency released it since.
      if (!e.waiting()) {
        scheduler_.AddPending(e.id(), e.type(), e.priority(),
                              e.state.not_before_micros,
                              e.last_history_micros());
      }
      break;
    case CLAIMED:
      scheduler_.AddLease(e.id(), e.state.lease_deadline_micros);
      break;
    default:
      scheduler_.AddFinished(e.id(), e.state.finished_micros);
  }
  CountAdded(e.type(), status);
  next_task_id_ = std::max(next_task_id_, e.id() + partitions_);
  if (e.state.claim_token != 0) {
    next_claim_token_ =
        std::max(next_claim_token_, e.state.claim_token + partitions_);
  }
  last_applied_lsn_ = std::max(last_applied_lsn_, e.state.last_lsn);
  table_.Insert(std::move(entry));
  return absl::OkStatus();
}

void StateMachine::RestoreMeta(const SnapshotMeta& m) {
  last_applied_lsn_ = std::max(last_applied_lsn_, m.lsn());
  next_task_id_ = std::max(next_task_id_, m.next_task_id());
  next_claim_token_ = std::max(next_claim_token_, m.next_claim_token());
  counters_.submitted = m.submitted();
  counters_.claims = m.claims();
  counters_.completions = m.completions();
  counters_.failed_attempts = m.failed_attempts();
  counters_.lease_expiries = m.lease_expiries();
  counters_.retries = m.retries();
  counters_.cancellations = m.cancellations();
  counters_.deletions = m.deletions();
  counters_.retention_removals = m.retention_removals();
  counters_.transitions = m.transitions();
  for (const std::string& type : m.paused_types()) {
    scheduler_.SetPaused(type, true);
  }
  for (const Schedule& schedule : m.schedules()) {
    schedules_[schedule.name()] = schedule;
  }
}

}  // namespace taskwal::engine
