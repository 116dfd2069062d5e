#ifndef TASKWAL_ENGINE_TASK_TABLE_H_
#define TASKWAL_ENGINE_TASK_TABLE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "engine/history_log.h"
#include "engine/task_entry.h"
#include "taskwal/task.pb.h"

namespace taskwal::engine {

// Tasks in lock-sharded hash sets, with the idempotency index sharded the
// same way (a task lives in the shard of its id, a key in the shard of its
// hash), plus per-shard ordered id sets for List. The index holds no copy
// of a key: it points at the key inside the task's entry, which may live in
// another shard (a key never changes, so reading it needs no lock there).
//
// Thread safety: every method is safe for concurrent use; each locks exactly
// one shard at a time, so there is no lock order among shards. Consistency
// across calls (a key and its task, a read followed by a write) is the
// caller's business: the engine serializes all writers under its commit lock
// and readers accept that a task may change between two calls.
class TaskTable {
 public:
  // REQUIRES: num_shards >= 1.
  explicit TaskTable(int num_shards);
  TaskTable(const TaskTable&) = delete;
  TaskTable& operator=(const TaskTable&) = delete;

  // Readers.
  // !payloads: without payload and result (ListFilter::payloads).
  std::optional<Task> GetTask(uint64_t id, bool payloads = true) const;
  std::optional<uint64_t> LastLsn(uint64_t id) const;
  std::optional<std::vector<HistoryEntry>> GetHistory(uint64_t id) const;
  std::optional<uint64_t> LookupKey(absl::string_view key) const;
  bool Contains(uint64_t id) const;

  // Ids greater than after_id whose task matches (status unset = any; type
  // empty = any), ascending, at most `limit` of them.
  std::vector<uint64_t> ListIds(std::optional<TaskStatus> status,
                                absl::string_view type, uint64_t after_id,
                                size_t limit) const;

  // Calls fn(const TaskEntry&) under the task's shard lock; false if absent.
  // Lets a caller look at a few fields without copying the payload.
  template <typename Fn>
  bool Read(uint64_t id, Fn fn) const {
    Shard& shard = ShardFor(id);
    absl::MutexLock l(&shard.mu);
    auto it = shard.tasks.find(id);
    if (it == shard.tasks.end()) return false;
    fn(static_cast<const TaskEntry&>(**it));
    return true;
  }

  // Calls fn on every entry, shard by shard, under that shard's lock.
  template <typename Fn>
  void ForEach(Fn fn) const {
    for (const auto& shard : shards_) {
      absl::MutexLock l(&shard->mu);
      for (const auto& entry : shard->tasks) fn(*entry);
    }
  }

  // Writers. Return false when the precondition (absent/present) fails.
  bool Insert(std::unique_ptr<TaskEntry> entry);
  bool Erase(uint64_t id);
  // Indexes entry's idempotency key. REQUIRES: the entry stays alive (in
  // this table, or saved by a snapshot) until EraseKey of its key.
  bool InsertKey(const TaskEntry* entry);
  bool EraseKey(absl::string_view key);

  // Calls fn(TaskEntry&) under the task's shard lock; false if absent. fn
  // must not change the task's id, and must report a status change by
  // returning normally: the shard's status index is updated afterwards.
  template <typename Fn>
  bool Mutate(uint64_t id, Fn fn) {
    Shard& shard = ShardFor(id);
    absl::MutexLock l(&shard.mu);
    auto it = shard.tasks.find(id);
    if (it == shard.tasks.end()) return false;
    TaskEntry& entry = **it;
    if (shard.snapshot_active && !shard.before_snapshot.contains(id)) {
      shard.before_snapshot[id] = entry.Clone();
    }
    const TaskStatus before = entry.state.status;
    fn(entry);
    const TaskStatus after = entry.state.status;
    if (before != after) {
      shard.by_status[before].erase(id);
      shard.by_status[after].insert(id);
    }
    return true;
  }

  size_t size() const;
  size_t num_shards() const { return shards_.size(); }

  // Copy-on-write snapshots, so that writers keep going while a snapshot is
  // written. BeginSnapshot fixes a logical view of every shard; until
  // EndSnapshot(shard), the first change to a task of that shard (mutate,
  // insert, erase) saves what the task was at BeginSnapshot.
  // REQUIRES: the caller holds the engine's writer lock during
  // BeginSnapshot, so that no write is half done, and runs one snapshot at
  // a time.
  void BeginSnapshot();
  // Candidate ids of shard `shard` for the snapshot: every id that existed
  // at BeginSnapshot, plus some inserted since (ReadSnapshot skips those).
  std::vector<uint64_t> SnapshotIds(size_t shard) const;
  // Calls fn(const TaskEntry&) for each id of `ids` (all of shard `shard`)
  // that existed at BeginSnapshot, with the entry as it was then. Holds the
  // shard lock for this call only, so callers pass modest chunks.
  template <typename Fn>
  void ReadSnapshot(size_t shard_index, const std::vector<uint64_t>& ids,
                    size_t begin, size_t end, Fn fn) const {
    Shard& shard = *shards_[shard_index];
    absl::MutexLock l(&shard.mu);
    for (size_t i = begin; i < end; ++i) {
      const uint64_t id = ids[i];
      auto saved = shard.before_snapshot.find(id);
      if (saved != shard.before_snapshot.end()) {
        if (saved->second != nullptr) fn(*saved->second);
        continue;
      }
      auto it = shard.tasks.find(id);
      if (it != shard.tasks.end()) fn(**it);
    }
  }
  // Stops copy-on-write for one shard and drops its saved entries.
  void EndSnapshot(size_t shard);

 private:
  static constexpr int kStatusSlots = 6;  // TaskStatus values 0..5.

  // Hash and equality for sets of entries looked up by id.
  struct ById {
    using is_transparent = void;
    static uint64_t Id(uint64_t id) { return id; }
    static uint64_t Id(const std::unique_ptr<TaskEntry>& e) { return e->id(); }
    template <typename T>
    size_t operator()(const T& t) const {
      return absl::Hash<uint64_t>()(Id(t));
    }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Id(a) == Id(b);
    }
  };
  // The same for sets of entries looked up by idempotency key.
  struct ByKey {
    using is_transparent = void;
    static absl::string_view Key(absl::string_view key) { return key; }
    static absl::string_view Key(const TaskEntry* e) {
      return e->idempotency_key();
    }
    template <typename T>
    size_t operator()(const T& t) const {
      return absl::Hash<absl::string_view>()(Key(t));
    }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Key(a) == Key(b);
    }
  };

  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_set<std::unique_ptr<TaskEntry>, ById, ById> tasks
        ABSL_GUARDED_BY(mu);
    // Entries of other shards, found by their keys.
    absl::flat_hash_set<const TaskEntry*, ByKey, ByKey> keys
        ABSL_GUARDED_BY(mu);
    // Ids by status, ordered, for List.
    absl::btree_set<uint64_t> by_status[kStatusSlots] ABSL_GUARDED_BY(mu);
    // Copy-on-write state while a snapshot reads this shard: id -> the
    // entry at BeginSnapshot, or nullptr if the task did not exist then.
    bool snapshot_active ABSL_GUARDED_BY(mu) = false;
    absl::flat_hash_map<uint64_t, std::unique_ptr<TaskEntry>> before_snapshot
        ABSL_GUARDED_BY(mu);
  };

  Shard& ShardFor(uint64_t id) const;
  Shard& ShardForKey(absl::string_view key) const;

  const std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_TASK_TABLE_H_
