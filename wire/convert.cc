#include "wire/convert.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace taskwal::wire {

int64_t ToMicros(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return 0;
  return absl::ToUnixMicros(t);
}

absl::Time FromMicros(int64_t micros, absl::Time unset) {
  return micros == 0 ? unset : absl::FromUnixMicros(micros);
}

taskwal::TaskSpec FromWire(const TaskSpec& m) {
  taskwal::TaskSpec spec;
  spec.idempotency_key = m.idempotency_key();
  spec.type = m.type();
  spec.payload = m.payload();
  spec.priority = m.priority();
  spec.max_attempts = m.max_attempts();
  spec.not_before = FromMicros(m.not_before_micros(), absl::InfinitePast());
  if (m.has_retry_policy()) spec.retry_policy = m.retry_policy();
  spec.depends_on.assign(m.depends_on().begin(), m.depends_on().end());
  spec.on_dependency_failure = m.on_dependency_failure();
  return spec;
}

TaskSpec ToWire(const taskwal::TaskSpec& spec) {
  TaskSpec m;
  m.set_idempotency_key(spec.idempotency_key);
  m.set_type(spec.type);
  m.set_payload(spec.payload);
  m.set_priority(spec.priority);
  m.set_max_attempts(spec.max_attempts);
  m.set_not_before_micros(ToMicros(spec.not_before));
  if (spec.retry_policy.has_value()) {
    *m.mutable_retry_policy() = *spec.retry_policy;
  }
  for (const std::string& key : spec.depends_on) m.add_depends_on(key);
  m.set_on_dependency_failure(spec.on_dependency_failure);
  return m;
}

taskwal::ClaimRef FromWire(const Claim& m) {
  taskwal::ClaimRef ref;
  ref.task_id = m.task_id();
  ref.worker_id = m.worker_id();
  ref.token = m.token();
  return ref;
}

Claim ToWire(const taskwal::ClaimRef& ref) {
  Claim m;
  m.set_task_id(ref.task_id);
  m.set_worker_id(ref.worker_id);
  m.set_token(ref.token);
  return m;
}

taskwal::ClaimedTask FromWire(const ClaimResponse& m) {
  taskwal::ClaimedTask claimed;
  claimed.task = m.task();
  claimed.claim = FromWire(m.claim());
  claimed.attempt = m.attempt();
  claimed.lease_deadline = absl::FromUnixMicros(m.lease_deadline_micros());
  return claimed;
}

ClaimResponse ToWire(const taskwal::ClaimedTask& claimed) {
  ClaimResponse m;
  *m.mutable_task() = claimed.task;
  *m.mutable_claim() = ToWire(claimed.claim);
  m.set_attempt(claimed.attempt);
  m.set_lease_deadline_micros(ToMicros(claimed.lease_deadline));
  return m;
}

taskwal::BulkFilter FromWire(const BulkRequest& m) {
  taskwal::BulkFilter filter;
  if (m.status() != TASK_STATUS_UNSPECIFIED) filter.status = m.status();
  filter.type = m.type();
  filter.created_before =
      FromMicros(m.created_before_micros(), absl::InfiniteFuture());
  filter.finished_before =
      FromMicros(m.finished_before_micros(), absl::InfiniteFuture());
  filter.limit = m.limit();
  filter.dry_run = m.dry_run();
  return filter;
}

BulkRequest ToWire(const taskwal::BulkFilter& filter) {
  BulkRequest m;
  if (filter.status.has_value()) m.set_status(*filter.status);
  m.set_type(filter.type);
  m.set_created_before_micros(ToMicros(filter.created_before));
  m.set_finished_before_micros(ToMicros(filter.finished_before));
  m.set_limit(filter.limit);
  m.set_dry_run(filter.dry_run);
  return m;
}

taskwal::BulkResult FromWire(const BulkResponse& m) {
  taskwal::BulkResult result;
  result.changed = m.changed();
  result.task_ids.assign(m.task_ids().begin(), m.task_ids().end());
  result.more = m.more();
  return result;
}

BulkResponse ToWire(const taskwal::BulkResult& result) {
  BulkResponse m;
  m.set_changed(result.changed);
  for (uint64_t id : result.task_ids) m.add_task_ids(id);
  m.set_more(result.more);
  return m;
}

taskwal::ScheduleSpec FromWire(const ScheduleSpec& m) {
  taskwal::ScheduleSpec spec;
  spec.cron = m.cron();
  spec.time_zone = m.time_zone();
  spec.interval = absl::Microseconds(m.interval_micros());
  spec.start = FromMicros(m.start_micros(), absl::InfinitePast());
  spec.missed = m.missed();
  if (m.has_misfire_grace_micros()) {
    spec.misfire_grace = absl::Microseconds(m.misfire_grace_micros());
  }
  spec.task = FromWire(m.task());
  return spec;
}

ScheduleSpec ToWire(const taskwal::ScheduleSpec& spec) {
  ScheduleSpec m;
  m.set_cron(spec.cron);
  m.set_time_zone(spec.time_zone);
  m.set_interval_micros(absl::ToInt64Microseconds(spec.interval));
  m.set_start_micros(ToMicros(spec.start));
  m.set_missed(spec.missed);
  m.set_misfire_grace_micros(absl::ToInt64Microseconds(spec.misfire_grace));
  *m.mutable_task() = ToWire(spec.task);
  return m;
}

taskwal::ListFilter FromWire(const ListRequest& m) {
  taskwal::ListFilter filter;
  if (m.status() != TASK_STATUS_UNSPECIFIED) filter.status = m.status();
  filter.type = m.type();
  if (m.limit() != 0) filter.limit = m.limit();
  filter.after_id = m.after_id();
  filter.payloads = !m.omit_payloads();
  return filter;
}

ListRequest ToWire(const taskwal::ListFilter& filter) {
  ListRequest m;
  if (filter.status.has_value()) m.set_status(*filter.status);
  m.set_type(filter.type);
  m.set_limit(filter.limit);
  m.set_after_id(filter.after_id);
  m.set_omit_payloads(!filter.payloads);
  return m;
}

taskwal::ListPage FromWire(const ListTasksResponse& m) {
  taskwal::ListPage page;
  page.tasks.assign(m.tasks().begin(), m.tasks().end());
  page.next_cursor = m.next_cursor();
  return page;
}

ListTasksResponse ToWire(const taskwal::ListPage& page) {
  ListTasksResponse m;
  for (const Task& task : page.tasks) *m.add_tasks() = task;
  m.set_next_cursor(page.next_cursor);
  return m;
}

taskwal::EngineStats FromWire(const StatsResponse& m) {
  taskwal::EngineStats s;
  s.tasks = m.tasks();
  s.pending = m.pending();
  s.claimed = m.claimed();
  s.completed = m.completed();
  s.failed = m.failed();
  s.cancelled = m.cancelled();
  s.deduplicated = m.deduplicated();
  s.submitted = m.submitted();
  s.claims = m.claims();
  s.completions = m.completions();
  s.failed_attempts = m.failed_attempts();
  s.lease_expiries = m.lease_expiries();
  s.retries = m.retries();
  s.cancellations = m.cancellations();
  s.deletions = m.deletions();
  s.retention_removals = m.retention_removals();
  s.transitions = m.transitions();
  s.partitions = m.partitions();
  s.paused_types = m.paused_types();
  s.schedules = m.schedules();
  s.last_lsn = m.last_lsn();
  s.fsyncs = m.fsyncs();
  s.wal_bytes = m.wal_bytes();
  s.wal_flushes = m.wal_flushes();
  s.wal_records_flushed = m.wal_records_flushed();
  s.snapshots = m.snapshots();
  s.last_snapshot_lsn = m.last_snapshot_lsn();
  s.last_snapshot_time =
      FromMicros(m.last_snapshot_micros(), absl::InfinitePast());
  for (const TypeStats& t : m.types()) {
    taskwal::TypeStats& out = s.by_type[t.type()];
    out.pending = t.pending();
    out.claimed = t.claimed();
    out.completed = t.completed();
    out.failed = t.failed();
    out.cancelled = t.cancelled();
    out.oldest_ready =
        FromMicros(t.oldest_ready_micros(), absl::InfiniteFuture());
  }
  return s;
}

StatsResponse ToWire(const taskwal::EngineStats& s) {
  StatsResponse r;
  r.set_tasks(s.tasks);
  r.set_pending(s.pending);
  r.set_claimed(s.claimed);
  r.set_completed(s.completed);
  r.set_failed(s.failed);
  r.set_cancelled(s.cancelled);
  r.set_deduplicated(s.deduplicated);
  r.set_submitted(s.submitted);
  r.set_claims(s.claims);
  r.set_completions(s.completions);
  r.set_failed_attempts(s.failed_attempts);
  r.set_lease_expiries(s.lease_expiries);
  r.set_retries(s.retries);
  r.set_cancellations(s.cancellations);
  r.set_deletions(s.deletions);
  r.set_retention_removals(s.retention_removals);
  r.set_transitions(s.transitions);
  r.set_partitions(s.partitions);
  r.set_paused_types(s.paused_types);
  r.set_schedules(s.schedules);
  r.set_last_lsn(s.last_lsn);
  r.set_fsyncs(s.fsyncs);
  r.set_wal_bytes(s.wal_bytes);
  r.set_wal_flushes(s.wal_flushes);
  r.set_wal_records_flushed(s.wal_records_flushed);
  r.set_snapshots(s.snapshots);
  r.set_last_snapshot_lsn(s.last_snapshot_lsn);
  r.set_last_snapshot_micros(ToMicros(s.last_snapshot_time));
  for (const auto& [type, t] : s.by_type) {
    TypeStats* out = r.add_types();
    out->set_type(type);
    out->set_pending(t.pending);
    out->set_claimed(t.claimed);
    out->set_completed(t.completed);
    out->set_failed(t.failed);
    out->set_cancelled(t.cancelled);
    out->set_oldest_ready_micros(ToMicros(t.oldest_ready));
  }
  return r;
}

taskwal::RecoveryReport FromWire(const RecoveryResponse& m) {
  taskwal::RecoveryReport report;
  report.snapshot_lsn = m.snapshot_lsn();
  report.records_replayed = m.records_replayed();
  report.last_lsn = m.last_lsn();
  report.truncated_bytes = m.truncated_bytes();
  report.duration = absl::Microseconds(m.duration_micros());
  report.notes.assign(m.notes().begin(), m.notes().end());
  return report;
}

RecoveryResponse ToWire(const taskwal::RecoveryReport& report) {
  RecoveryResponse m;
  m.set_snapshot_lsn(report.snapshot_lsn);
  m.set_records_replayed(report.records_replayed);
  m.set_last_lsn(report.last_lsn);
  m.set_truncated_bytes(report.truncated_bytes);
  m.set_duration_micros(absl::ToInt64Microseconds(report.duration));
  for (const std::string& note : report.notes) m.add_notes(note);
  return m;
}

void ToWire(const absl::Status& status, Reply* reply) {
  reply->set_code(absl::StatusCodeToString(status.code()));
  reply->set_message(std::string(status.message()));
}

bool ParseStatusCode(absl::string_view name, absl::StatusCode* code) {
  for (int c = 0; c <= 16; ++c) {
    if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) == name) {
      *code = static_cast<absl::StatusCode>(c);
      return true;
    }
  }
  return false;
}

namespace {

// A code's name and a message as a status; an unknown name is kUnknown.
absl::Status StatusOf(const std::string& name, const std::string& message) {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (!ParseStatusCode(name, &code)) code = absl::StatusCode::kUnknown;
  if (code == absl::StatusCode::kOk) return absl::OkStatus();
  return absl::Status(code, message);
}

}  // namespace

absl::Status StatusFromWire(const Reply& reply) {
  return StatusOf(reply.code(), reply.message());
}

absl::StatusOr<std::vector<taskwal::ClaimedTask>> FromWire(
    const ClaimBatchResponse& m, size_t max_tasks) {
  if (m.claims().empty() || static_cast<size_t>(m.claims_size()) > max_tasks) {
    return absl::InternalError(absl::StrCat("the server answered a batch of ",
                                            m.claims_size(), " claims"));
  }
  std::vector<taskwal::ClaimedTask> claimed;
  claimed.reserve(m.claims_size());
  for (const ClaimResponse& c : m.claims()) claimed.push_back(FromWire(c));
  return claimed;
}

CompleteBatchRequest ToWire(absl::Span<const taskwal::Completion> completions) {
  CompleteBatchRequest request;
  for (const taskwal::Completion& c : completions) {
    CompleteRequest* one = request.add_completions();
    *one->mutable_claim() = ToWire(c.claim);
    one->set_result(c.result);
  }
  return request;
}

absl::StatusOr<std::vector<absl::Status>> FromWire(
    const CompleteBatchResponse& m, size_t completions) {
  if (static_cast<size_t>(m.results_size()) != completions) {
    return absl::InternalError(absl::StrCat("the server answered ",
                                            m.results_size(), " of ",
                                            completions, " completions"));
  }
  std::vector<absl::Status> done;
  done.reserve(completions);
  for (const Error& e : m.results()) done.push_back(StatusFromWire(e));
  return done;
}

Error ErrorToWire(const absl::Status& status) {
  Error e;
  e.set_code(absl::StatusCodeToString(status.code()));
  e.set_message(std::string(status.message()));
  return e;
}

absl::Status StatusFromWire(const Error& error) {
  return StatusOf(error.code(), error.message());
}

}  // namespace taskwal::wire
