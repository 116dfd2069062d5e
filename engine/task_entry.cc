#include "engine/task_entry.h"

#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace taskwal::engine {

namespace {

// The transition-set strings, kept as the history's extra bytes: three
// varint sizes, then the bytes.
char* PutVarint32(uint32_t v, char* dst) {
  while (v >= 0x80) {
    *dst++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *dst++ = static_cast<char>(v);
  return dst;
}

uint32_t GetVarint32(const char** p) {
  uint32_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(*(*p)++);
    v |= static_cast<uint32_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) break;
  }
  return v;
}

}  // namespace

std::unique_ptr<TaskEntry> TaskEntry::Allocate(
    absl::string_view key, absl::string_view type, absl::string_view payload,
    const StoredPolicy* policy, const StoredDeps* deps, const char* dep_ids) {
  const size_t policy_bytes = policy != nullptr ? sizeof(StoredPolicy) : 0;
  const size_t deps_bytes =
      deps != nullptr ? sizeof(StoredDeps) + size_t{deps->count} * 8 : 0;
  std::unique_ptr<TaskEntry> e(new (ExtraBytes{
      policy_bytes + deps_bytes + key.size() + type.size() + payload.size()})
                                   TaskEntry());
  // Strings come from protobuf messages, which are under 2 GiB.
  e->key_size_ = static_cast<uint32_t>(key.size());
  e->type_size_ = static_cast<uint32_t>(type.size());
  e->payload_size_ = static_cast<uint32_t>(payload.size());
  e->has_policy_ = policy != nullptr;
  e->has_deps_ = deps != nullptr;
  char* dst = reinterpret_cast<char*>(e.get() + 1);
  if (policy != nullptr) {
    std::memcpy(dst, policy, sizeof(StoredPolicy));
    dst += sizeof(StoredPolicy);
  }
  if (deps != nullptr) {
    std::memcpy(dst, deps, sizeof(StoredDeps));
    dst += sizeof(StoredDeps);
    if (deps->count > 0) std::memcpy(dst, dep_ids, size_t{deps->count} * 8);
    dst += size_t{deps->count} * 8;
  }
  for (absl::string_view s : {key, type, payload}) {
    if (!s.empty()) std::memcpy(dst, s.data(), s.size());
    dst += s.size();
  }
  return e;
}

std::unique_ptr<TaskEntry> TaskEntry::Create(const Task& task,
                                             uint64_t last_lsn) {
  StoredPolicy policy;
  if (task.has_retry_policy()) {
    const RetryPolicy& p = task.retry_policy();
    policy = {p.initial_backoff_micros(), p.max_backoff_micros(),
              p.multiplier(), p.jitter()};
  }
  // Dependencies: at most kMaxDependencies (the state machine checks
  // records and snapshots first); waiting_for becomes a mask over them.
  StoredDeps deps{0, 0, 0};
  std::vector<uint64_t> dep_ids(task.depends_on().begin(),
                                task.depends_on().end());
  if (dep_ids.size() > kMaxDependencies) dep_ids.resize(kMaxDependencies);
  deps.count = static_cast<uint32_t>(dep_ids.size());
  deps.cancel = task.on_dependency_failure() == DEPENDENCY_FAILURE_CANCEL;
  for (uint64_t waiting : task.waiting_for()) {
    for (size_t i = 0; i < dep_ids.size(); ++i) {
      if (dep_ids[i] == waiting) deps.waiting |= uint64_t{1} << i;
    }
  }
  std::unique_ptr<TaskEntry> e =
      Allocate(task.idempotency_key(), task.type(), task.payload(),
               task.has_retry_policy() ? &policy : nullptr,
               dep_ids.empty() ? nullptr : &deps,
               reinterpret_cast<const char*>(dep_ids.data()));
  e->id_ = task.id();
  e->created_micros_ = task.created_micros();
  e->priority_ = task.priority();
  e->max_attempts_ = task.max_attempts();
  e->state.status = task.status();
  e->state.attempts = task.attempts();
  e->state.claim_token = task.claim_token();
  e->state.lease_deadline_micros = task.lease_deadline_micros();
  e->state.not_before_micros = task.not_before_micros();
  e->state.claimed_micros = task.claimed_micros();
  e->state.finished_micros = task.finished_micros();
  e->state.last_lsn = last_lsn;
  e->CountDropped(task.history_dropped());
  e->SetStrings(task.claimed_by(), task.result(), task.last_error());
  return e;
}

std::unique_ptr<TaskEntry> TaskEntry::Clone() const {
  StoredPolicy policy;
  if (has_policy_) std::memcpy(&policy, trailing(), sizeof(policy));
  StoredDeps deps{0, 0, 0};
  if (has_deps_) deps = stored_deps();
  std::unique_ptr<TaskEntry> e = Allocate(
      idempotency_key(), type(), payload(), has_policy_ ? &policy : nullptr,
      has_deps_ ? &deps : nullptr, deps_block() + sizeof(StoredDeps));
  e->id_ = id_;
  e->created_micros_ = created_micros_;
  e->priority_ = priority_;
  e->max_attempts_ = max_attempts_;
  e->state = state;
  e->history_ = HistoryLog(history_);  // With the strings, its extra bytes.
  e->history_dropped_ = history_dropped_;
  return e;
}

std::optional<RetryPolicy> TaskEntry::retry_policy() const {
  if (!has_policy_) return std::nullopt;
  StoredPolicy stored;
  std::memcpy(&stored, trailing(), sizeof(stored));
  RetryPolicy p;
  p.set_initial_backoff_micros(stored.initial_backoff_micros);
  p.set_max_backoff_micros(stored.max_backoff_micros);
  p.set_multiplier(stored.multiplier);
  p.set_jitter(stored.jitter);
  return p;
}

uint64_t TaskEntry::dependency(size_t i) const {
  uint64_t id;
  std::memcpy(&id, deps_block() + sizeof(StoredDeps) + i * 8, sizeof(id));
  return id;
}

bool TaskEntry::WaitsFor(uint64_t id) const {
  if (!has_deps_) return false;
  const StoredDeps d = stored_deps();
  for (size_t i = 0; i < d.count; ++i) {
    if ((d.waiting >> i & 1) != 0 && dependency(i) == id) return true;
  }
  return false;
}

bool TaskEntry::StopWaitingFor(uint64_t id) {
  if (!has_deps_) return false;
  const StoredDeps d = stored_deps();
  uint64_t waiting = d.waiting;
  for (size_t i = 0; i < d.count; ++i) {
    if (dependency(i) == id) waiting &= ~(uint64_t{1} << i);
  }
  SetWaitingMask(waiting);
  return waiting != 0;
}

void TaskEntry::StopWaiting() {
  if (has_deps_) SetWaitingMask(0);
}

TaskEntry::Strings TaskEntry::strings() const {
  const absl::string_view extra = history_.extra();
  if (extra.empty()) return Strings();
  // Written only by SetStrings: three complete varints come first.
  const char* p = extra.data();
  uint32_t sizes[3];
  for (uint32_t& size : sizes) size = GetVarint32(&p);
  Strings s;
  s.claimed_by = absl::string_view(p, sizes[0]);
  s.result = absl::string_view(p + sizes[0], sizes[1]);
  s.last_error = absl::string_view(p + sizes[0] + sizes[1], sizes[2]);
  return s;
}

void TaskEntry::SetStrings(absl::string_view claimed_by,
                           absl::string_view result,
                           absl::string_view last_error) {
  if (claimed_by.empty() && result.empty() && last_error.empty()) {
    history_.SetExtra({}, created_micros_);
    return;
  }
  // Each string comes from a record of at most 64 MiB.
  char sizes[15];
  char* end = sizes;
  for (absl::string_view s : {claimed_by, result, last_error}) {
    end = PutVarint32(static_cast<uint32_t>(s.size()), end);
  }
  // The arguments may point into the current extra: SetExtra copies them
  // before it lets go of it.
  history_.SetExtra(
      {absl::string_view(sizes, end - sizes), claimed_by, result, last_error},
      created_micros_);
}

namespace {

// Sets a string field, or clears it when empty: a proto3 string at its
// default needs no allocation.
template <typename Set, typename Clear>
void SetOrClear(absl::string_view value, Set set, Clear clear) {
  if (value.empty()) {
    clear();
  } else {
    set(value.data(), value.size());
  }
}

}  // namespace

void TaskEntry::ToTask(Task* out, bool payloads) const {
  const Strings strs = strings();
  out->set_id(id_);
  SetOrClear(
      idempotency_key(),
      [&](const char* p, size_t n) { out->set_idempotency_key(p, n); },
      [&] { out->clear_idempotency_key(); });
  SetOrClear(
      type(), [&](const char* p, size_t n) { out->set_type(p, n); },
      [&] { out->clear_type(); });
  SetOrClear(
      payloads ? payload() : absl::string_view(),
      [&](const char* p, size_t n) { out->set_payload(p, n); },
      [&] { out->clear_payload(); });
  out->set_priority(priority_);
  out->set_status(state.status);
  out->set_attempts(state.attempts);
  out->set_max_attempts(max_attempts_);
  SetOrClear(
      strs.claimed_by,
      [&](const char* p, size_t n) { out->set_claimed_by(p, n); },
      [&] { out->clear_claimed_by(); });
  out->set_claim_token(state.claim_token);
  out->set_lease_deadline_micros(state.lease_deadline_micros);
  out->set_not_before_micros(state.not_before_micros);
  out->set_created_micros(created_micros_);
  out->set_claimed_micros(state.claimed_micros);
  out->set_finished_micros(state.finished_micros);
  SetOrClear(
      payloads ? strs.result : absl::string_view(),
      [&](const char* p, size_t n) { out->set_result(p, n); },
      [&] { out->clear_result(); });
  SetOrClear(
      strs.last_error,
      [&](const char* p, size_t n) { out->set_last_error(p, n); },
      [&] { out->clear_last_error(); });
  if (std::optional<RetryPolicy> policy = retry_policy()) {
    *out->mutable_retry_policy() = *std::move(policy);
  } else {
    out->clear_retry_policy();
  }
  out->set_history_dropped(history_dropped_);
  out->clear_depends_on();
  out->clear_waiting_for();
  out->clear_on_dependency_failure();
  if (has_deps_) {
    const StoredDeps d = stored_deps();
    for (size_t i = 0; i < d.count; ++i) {
      out->add_depends_on(dependency(i));
      if ((d.waiting >> i & 1) != 0) out->add_waiting_for(dependency(i));
    }
    if (d.cancel != 0)
      out->set_on_dependency_failure(DEPENDENCY_FAILURE_CANCEL);
  }
}

Task TaskEntry::ToTask() const {
  Task t;
  ToTask(&t);
  return t;
}

}  // namespace taskwal::engine
