#ifndef TASKWAL_ENGINE_TASK_ENTRY_H_
#define TASKWAL_ENGINE_TASK_ENTRY_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/string_view.h"
#include "engine/history_log.h"
#include "taskwal/task.pb.h"

namespace taskwal::engine {

// The fields of a task that its transitions change, other than its strings.
// Times are microseconds since the Unix epoch; 0 when unset.
struct TaskState {
  TaskStatus status = TASK_STATUS_UNSPECIFIED;
  uint32_t attempts = 0;
  uint64_t claim_token = 0;
  int64_t lease_deadline_micros = 0;
  int64_t not_before_micros = 0;
  int64_t claimed_micros = 0;
  int64_t finished_micros = 0;
  uint64_t last_lsn = 0;  // LSN of the record that last changed the task.
};

// One task as the engine holds it: every field of the Task message, in
// about a third of the memory (every live task carries one).
//
// One heap block holds the fixed fields and, after them, the strings a task
// never changes (idempotency key, type, payload), its retry policy if it
// has one of its own and its dependencies if it has any (their ids, and
// which of them it still waits for as a bit mask: at most
// kMaxDependencies). The strings transitions set (claimed_by, result,
// last_error) live in the history's block, as its extra bytes (three
// varint lengths, then the bytes), so a task has at most two blocks. Task
// messages are built only for callers (ToTask).
//
// The idempotency key's bytes never move while the entry lives, so an index
// may point at them. Not thread-safe; guarded by its TaskTable shard.
class TaskEntry {
 public:
  // The most dependencies a task may have (one bit each in a mask).
  static constexpr size_t kMaxDependencies = 64;

  // Copies every field of `task` (its retry policy only if it has one).
  static std::unique_ptr<TaskEntry> Create(const Task& task, uint64_t last_lsn);
  // A deep copy.
  std::unique_ptr<TaskEntry> Clone() const;

  TaskEntry(const TaskEntry&) = delete;
  TaskEntry& operator=(const TaskEntry&) = delete;
  ~TaskEntry() = default;

  // Frees the block that Create allocated.
  static void operator delete(void* p) { ::operator delete(p); }

  // The task as a message, every field overwritten; the retry policy is
  // set only if the task has one of its own. !payloads: payload and result
  // are left empty (ListFilter::payloads).
  void ToTask(Task* out, bool payloads = true) const;
  Task ToTask() const;

  // Fixed at submission.
  uint64_t id() const { return id_; }
  int64_t created_micros() const { return created_micros_; }
  int32_t priority() const { return priority_; }
  uint32_t max_attempts() const { return max_attempts_; }
  absl::string_view idempotency_key() const {
    return absl::string_view(fixed_strings(), key_size_);
  }
  absl::string_view type() const {
    return absl::string_view(fixed_strings() + key_size_, type_size_);
  }
  absl::string_view payload() const {
    return absl::string_view(fixed_strings() + key_size_ + type_size_,
                             payload_size_);
  }
  // The task's own policy; nullopt when it follows the engine's default.
  std::optional<RetryPolicy> retry_policy() const;

  // Dependencies (Task::depends_on), fixed at submission.
  size_t dependency_count() const {
    return has_deps_ ? stored_deps().count : 0;
  }
  uint64_t dependency(size_t i) const;
  bool cancel_on_dependency_failure() const {
    return has_deps_ && stored_deps().cancel != 0;
  }
  // Whether the task still waits for some dependency (Task::waiting_for).
  bool waiting() const { return has_deps_ && stored_deps().waiting != 0; }
  // Whether it still waits for `id`.
  bool WaitsFor(uint64_t id) const;
  // Stops waiting for `id` (no-op if it did not). Returns whether the task
  // still waits for another.
  bool StopWaitingFor(uint64_t id);
  // Stops waiting for every dependency.
  void StopWaiting();

  // Set by transitions. The views point into the history's block: they are
  // valid until the next SetStrings or AppendHistory.
  struct Strings {
    absl::string_view claimed_by;
    absl::string_view result;
    absl::string_view last_error;
  };
  Strings strings() const;  // All three, read at once.
  absl::string_view claimed_by() const { return strings().claimed_by; }
  absl::string_view result() const { return strings().result; }
  absl::string_view last_error() const { return strings().last_error; }
  // Replaces all three at once (one allocation). The arguments may point
  // into this entry's current strings.
  void SetStrings(absl::string_view claimed_by, absl::string_view result,
                  absl::string_view last_error);

  TaskState state;

  // The history, bounded by the caller (times are kept relative to the
  // creation time). See HistoryLog. Entries it drops are counted in
  // history_dropped().
  void AppendHistory(const HistoryEvent& e, size_t max_entries) {
    CountDropped(history_.Append(e, max_entries, created_micros_));
  }
  // Replaces the history by entries in HistoryEntry's wire format (from a
  // snapshot), which follow history_dropped() older ones. False, with the
  // history unchanged and the index of the culprit in *bad_index, if one is
  // not a well-formed HistoryEntry.
  template <typename Range>  // Of std::string or absl::string_view.
  bool AssignSerializedHistory(const Range& entries, size_t* bad_index) {
    if (!history_.AssignSerialized(entries, created_micros_, bad_index)) {
      return false;
    }
    // Only past 4 GiB of entries does the log drop some of them.
    CountDropped(static_cast<size_t>(entries.size()) - history_.size());
    return true;
  }
  // Entries the history no longer holds: with the ones it holds, every
  // entry the task ever had. Saturates at 2^32 - 1.
  uint32_t history_dropped() const { return history_dropped_; }
  std::vector<HistoryEntry> History() const {
    return history_.Entries(created_micros_);
  }
  size_t history_size() const { return history_.size(); }
  // The time of the newest history entry; created_micros() when it has
  // none.
  int64_t last_history_micros() const {
    int64_t last = created_micros_;
    history_.ForEach(created_micros_,
                     [&](const HistoryEvent& e) { last = e.time_micros; });
    return last;
  }
  // Calls fn(absl::string_view) with each entry in HistoryEntry's wire
  // format, oldest first; the bytes are valid during the call only.
  template <typename Fn>
  void ForEachSerializedHistory(Fn fn) const {
    history_.ForEachSerialized(created_micros_, fn);
  }

 private:
  // The policy as stored after the fixed fields.
  struct StoredPolicy {
    int64_t initial_backoff_micros;
    int64_t max_backoff_micros;
    double multiplier;
    double jitter;
  };

  // The dependencies as stored after the policy: this, then `count` ids.
  struct StoredDeps {
    uint64_t waiting;  // Bit i: still waits for dependency i.
    uint32_t count;
    uint32_t cancel;  // DEPENDENCY_FAILURE_CANCEL.
  };

  // Bytes allocated after the object, for `new (ExtraBytes{n}) TaskEntry`.
  struct ExtraBytes {
    size_t n;
  };

  TaskEntry() = default;
  static void* operator new(size_t size, ExtraBytes extra) {
    return ::operator new(size + extra.n);
  }
  static void operator delete(void* p, ExtraBytes /*extra*/) {
    ::operator delete(p);
  }
  // Allocates an entry with room for the given fixed strings, policy and
  // dependencies (deps_count ids after *deps, copied from dep_ids).
  static std::unique_ptr<TaskEntry> Allocate(
      absl::string_view key, absl::string_view type, absl::string_view payload,
      const StoredPolicy* policy, const StoredDeps* deps, const char* dep_ids);

  const char* trailing() const {
    return reinterpret_cast<const char*>(this + 1);
  }
  const char* deps_block() const {
    return trailing() + (has_policy_ ? sizeof(StoredPolicy) : 0);
  }
  size_t deps_bytes() const {
    return has_deps_ ? sizeof(StoredDeps) + stored_deps().count * 8 : 0;
  }
  StoredDeps stored_deps() const {
    StoredDeps d;
    std::memcpy(&d, deps_block(), sizeof(d));
    return d;
  }
  void SetWaitingMask(uint64_t waiting) {
    std::memcpy(const_cast<char*>(deps_block()), &waiting, sizeof(waiting));
  }
  const char* fixed_strings() const { return deps_block() + deps_bytes(); }
  void CountDropped(size_t n) {
    history_dropped_ = static_cast<uint32_t>(std::min<uint64_t>(
        uint64_t{history_dropped_} + n, std::numeric_limits<uint32_t>::max()));
  }

  uint64_t id_ = 0;
  int64_t created_micros_ = 0;
  int32_t priority_ = 0;
  uint32_t max_attempts_ = 0;
  uint32_t key_size_ = 0;
  uint32_t type_size_ = 0;
  // Payloads come from records (at most 64 MiB): 30 bits hold their size,
  // and the flags take the last two, so that history_dropped_ fits in what
  // was padding (see TaskEntryTest.FixedPartStaysCompact).
  uint32_t payload_size_ : 30;
  uint32_t has_policy_ : 1;
  uint32_t has_deps_ : 1;
  uint32_t history_dropped_ = 0;
  // Its extra bytes are the transition strings: three varint sizes, then
  // the bytes (SetStrings).
  HistoryLog history_;
  // Followed in the same block by the StoredPolicy (if has_policy_), the
  // StoredDeps and their ids (if has_deps_), then key, type and payload.
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_TASK_ENTRY_H_
