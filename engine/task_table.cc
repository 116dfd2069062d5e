#include "engine/task_table.h"

#include <algorithm>
#include <utility>

namespace taskwal::engine {

TaskTable::TaskTable(int num_shards)
    : shards_([num_shards] {
        std::vector<std::unique_ptr<Shard>> shards;
        shards.reserve(num_shards);
        for (int i = 0; i < num_shards; ++i) {
          shards.push_back(std::make_unique<Shard>());
        }
        return shards;
      }()) {}

TaskTable::Shard& TaskTable::ShardFor(uint64_t id) const {
  // Ids are sequential, so a plain modulus spreads them evenly.
  return *shards_[id % shards_.size()];
}

TaskTable::Shard& TaskTable::ShardForKey(absl::string_view key) const {
  // The high bits pick the shard: the shard's own set takes its control
  // bytes from the low 7, which should not be the same across its keys
  // (a false match there costs a read of another task's entry).
  return *shards_[(absl::Hash<absl::string_view>()(key) >> 32) %
                  shards_.size()];
}

std::optional<Task> TaskTable::GetTask(uint64_t id, bool payloads) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return std::nullopt;
  std::optional<Task> task(std::in_place);
  (*it)->ToTask(&*task, payloads);
  return task;
}

std::optional<uint64_t> TaskTable::LastLsn(uint64_t id) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return std::nullopt;
  return (*it)->state.last_lsn;
}

std::optional<std::vector<HistoryEntry>> TaskTable::GetHistory(
    uint64_t id) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return std::nullopt;
  return (*it)->History();
}

std::optional<uint64_t> TaskTable::LookupKey(absl::string_view key) const {
  Shard& shard = ShardForKey(key);
  absl::MutexLock l(&shard.mu);
  auto it = shard.keys.find(key);
  if (it == shard.keys.end()) return std::nullopt;
  return (*it)->id();
}

bool TaskTable::Contains(uint64_t id) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  return shard.tasks.contains(id);
}

std::vector<uint64_t> TaskTable::ListIds(std::optional<TaskStatus> status,
                                         absl::string_view type,
                                         uint64_t after_id,
                                         size_t limit) const {
  std::vector<uint64_t> ids;
  for (const auto& shard : shards_) {
    absl::MutexLock l(&shard->mu);
    for (int s = 0; s < kStatusSlots; ++s) {
      if (status.has_value() && *status != s) continue;
      size_t taken = 0;
      const auto& set = shard->by_status[s];
      for (auto it = set.upper_bound(after_id);
           it != set.end() && taken < limit; ++it) {
        if (!type.empty() && (*shard->tasks.find(*it))->type() != type) {
          continue;
        }
        ids.push_back(*it);
        ++taken;
      }
    }
  }
  std::sort(ids.begin(), ids.end());
  if (ids.size() > limit) ids.resize(limit);
  return ids;
}

bool TaskTable::Insert(std::unique_ptr<TaskEntry> entry) {
  const uint64_t id = entry->id();
  const int status = entry->state.status;
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  if (shard.tasks.contains(id)) return false;
  if (shard.snapshot_active) shard.before_snapshot.try_emplace(id, nullptr);
  shard.tasks.insert(std::move(entry));
  shard.by_status[status].insert(id);
  return true;
}

bool TaskTable::Erase(uint64_t id) {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return false;
  shard.by_status[(*it)->state.status].erase(id);
  auto node = shard.tasks.extract(it);
  if (shard.snapshot_active && !shard.before_snapshot.contains(id)) {
    shard.before_snapshot[id] = std::move(node.value());
  }
  return true;
}

bool TaskTable::InsertKey(const TaskEntry* entry) {
  Shard& shard = ShardForKey(entry->idempotency_key());
  absl::MutexLock l(&shard.mu);
  return shard.keys.insert(entry).second;
}

bool TaskTable::EraseKey(absl::string_view key) {
  Shard& shard = ShardForKey(key);
  absl::MutexLock l(&shard.mu);
  auto it = shard.keys.find(key);
  if (it == shard.keys.end()) return false;
  shard.keys.erase(it);
  return true;
}

void TaskTable::BeginSnapshot() {
  for (const auto& shard : shards_) {
    absl::MutexLock l(&shard->mu);
    shard->snapshot_active = true;
    shard->before_snapshot.clear();
  }
}

std::vector<uint64_t> TaskTable::SnapshotIds(size_t shard_index) const {
  Shard& shard = *shards_[shard_index];
  absl::MutexLock l(&shard.mu);
  std::vector<uint64_t> ids;
  ids.reserve(shard.tasks.size() + shard.before_snapshot.size());
  for (const auto& entry : shard.tasks) ids.push_back(entry->id());
  for (const auto& [id, saved] : shard.before_snapshot) {
    if (saved != nullptr && !shard.tasks.contains(id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

void TaskTable::EndSnapshot(size_t shard_index) {
  Shard& shard = *shards_[shard_index];
  absl::MutexLock l(&shard.mu);
  shard.snapshot_active = false;
  shard.before_snapshot.clear();
}

size_t TaskTable::size() const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    absl::MutexLock l(&shard->mu);
    n += shard->tasks.size();
  }
  return n;
}

}  // namespace taskwal::engine
