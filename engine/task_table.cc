#include "engine/task_table.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"

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
  return *shards_[absl::HashOf(key) % shards_.size()];
}

std::optional<Task> TaskTable::GetTask(uint64_t id) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return std::nullopt;
  return it->second->task;
}

std::optional<uint64_t> TaskTable::LastLsn(uint64_t id) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return std::nullopt;
  return it->second->last_lsn;
}

std::optional<std::vector<HistoryEntry>> TaskTable::GetHistory(
    uint64_t id) const {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return std::nullopt;
  return it->second->history.Entries();
}

std::optional<uint64_t> TaskTable::LookupKey(absl::string_view key) const {
  Shard& shard = ShardForKey(key);
  absl::MutexLock l(&shard.mu);
  auto it = shard.keys.find(key);
  if (it == shard.keys.end()) return std::nullopt;
  return it->second;
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
      for (auto it = set.upper_bound(after_id); it != set.end() && taken < limit;
           ++it) {
        if (!type.empty() && shard->tasks.at(*it)->task.type() != type) {
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
  const uint64_t id = entry->task.id();
  const int status = entry->task.status();
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  if (shard.tasks.contains(id)) return false;
  if (shard.snapshot_active) shard.before_snapshot.try_emplace(id, nullptr);
  shard.tasks.emplace(id, std::move(entry));
  shard.by_status[status].insert(id);
  return true;
}

bool TaskTable::Erase(uint64_t id) {
  Shard& shard = ShardFor(id);
  absl::MutexLock l(&shard.mu);
  auto it = shard.tasks.find(id);
  if (it == shard.tasks.end()) return false;
  shard.by_status[it->second->task.status()].erase(id);
  if (shard.snapshot_active && !shard.before_snapshot.contains(id)) {
    shard.before_snapshot[id] = std::move(it->second);
  }
  shard.tasks.erase(it);
  return true;
}

bool TaskTable::InsertKey(absl::string_view key, uint64_t id) {
  Shard& shard = ShardForKey(key);
  absl::MutexLock l(&shard.mu);
  return shard.keys.try_emplace(key, id).second;
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
  for (const auto& [id, entry] : shard.tasks) ids.push_back(id);
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
