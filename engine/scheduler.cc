#include "engine/scheduler.h"

#include <algorithm>
#include <limits>

namespace taskwal::engine {

namespace {

int64_t ReadyRank(int32_t priority) { return Scheduler::RankOf(priority); }

}  // namespace

int Scheduler::TypeIndex(absl::string_view type) {
  auto [it, inserted] =
      type_index_.try_emplace(type, static_cast<int>(ready_.size()));
  if (inserted) {
    ready_.emplace_back();
    ready_ages_.emplace_back();
    paused_.push_back(false);
    delayed_by_type_.emplace_back();
    type_names_.emplace_back(type);
    readied_.push_back(0);
  }
  return it->second;
}

const Scheduler::ReadySet* Scheduler::FindReady(absl::string_view type) const {
  auto it = type_index_.find(type);
  return it == type_index_.end() ? nullptr : &ready_[it->second];
}

void Scheduler::InsertReady(int type_index, int32_t priority, uint64_t id,
                            int64_t ready_since) {
  const int64_t rank = ReadyRank(priority);
  ready_[type_index].insert({{rank, id}, ready_since});
  std::vector<ReadyAge>& ages = ready_ages_[type_index];
  ages.push_back({ready_since, id, rank});
  std::push_heap(ages.begin(), ages.end(), AgeAfter);
  NoteReadied(type_index);
}

bool Scheduler::IsLive(int type_index, const ReadyAge& age) const {
  const ReadySet& set = ready_[type_index];
  auto it = set.find({age.rank, age.id});
  return it != set.end() && it->second == age.since;
}

void Scheduler::CompactAges(int type_index) {
  std::vector<ReadyAge>& ages = ready_ages_[type_index];
  const ReadySet& set = ready_[type_index];
  if (ages.size() <= 2 * set.size() + 64) return;
  ages.clear();
  for (const auto& [key, since] : set) {
    ages.push_back({since, key.second, key.first});
  }
  std::make_heap(ages.begin(), ages.end(), AgeAfter);
  if (ages.capacity() > 4 * ages.size() + 256) ages.shrink_to_fit();
}

void Scheduler::AddPending(uint64_t id, absl::string_view type,
                           int32_t priority, int64_t not_before,
                           int64_t pending_since) {
  const int index = TypeIndex(type);
  const int64_t ready_since = std::max(not_before, pending_since);
  // No not-before time (0) is ready whatever the clock says; parking such
  // tasks as delayed would make the first ClaimNext after a bulk submit or
  // a restart move all of them.
  if (not_before <= 0 || not_before <= promoted_through_) {
    InsertReady(index, priority, id, ready_since);
  } else {
    delayed_.insert(
        {{not_before, id}, DelayedValue{index, priority, ready_since}});
    delayed_by_type_[index].insert({not_before, id});
  }
}

void Scheduler::RemovePending(uint64_t id, absl::string_view type,
                              int32_t priority, int64_t not_before) {
  if (auto delayed = delayed_.find({not_before, id});
      delayed != delayed_.end()) {
    delayed_by_type_[delayed->second.type_index].erase(delayed->first);
    delayed_.erase(delayed);
    return;
  }
  auto it = type_index_.find(type);
  if (it == type_index_.end()) return;
  ReadySet& set = ready_[it->second];
  auto ready = set.find({ReadyRank(priority), id});
  if (ready == set.end()) return;
  set.erase(ready);
  CompactAges(it->second);
}

void Scheduler::NoteReadied(int type_index) {
  if (paused_[type_index]) return;  // Counted when resumed.
  if (readied_[type_index]++ == 0) readied_types_.push_back(type_index);
}

void Scheduler::TakeReadied(
    absl::FunctionRef<void(absl::string_view type, size_t count)> fn) {
  for (int index : readied_types_) {
    fn(type_names_[index], readied_[index]);
    readied_[index] = 0;
  }
  readied_types_.clear();
}

size_t Scheduler::PromoteDue(int64_t now) {
  // The clock may be moved backwards by tests; never un-promote.
  if (now <= promoted_through_) return 0;
  promoted_through_ = now;
  size_t promoted = 0;
  auto it = delayed_.begin();
  while (it != delayed_.end() && it->first.first <= now) {
    InsertReady(it->second.type_index, it->second.priority, it->first.second,
                it->second.ready_since);
    delayed_by_type_[it->second.type_index].erase(it->first);
    it = delayed_.erase(it);
    ++promoted;
  }
  return promoted;
}

const Scheduler::ReadyKey* Scheduler::BestReady(absl::string_view type) const {
  if (!type.empty()) {
    auto it = type_index_.find(type);
    if (it == type_index_.end() || paused_[it->second]) return nullptr;
    const ReadySet& set = ready_[it->second];
    return set.empty() ? nullptr : &set.begin()->first;
  }
  const ReadyKey* best = nullptr;
  for (size_t i = 0; i < ready_.size(); ++i) {
    const ReadySet& set = ready_[i];
    if (!set.empty() && !paused_[i] &&
        (best == nullptr || set.begin()->first < *best)) {
      best = &set.begin()->first;
    }
  }
  return best;
}

std::optional<uint64_t> Scheduler::PeekReady(absl::string_view type) const {
  const ReadyKey* best = BestReady(type);
  if (best == nullptr) return std::nullopt;
  return best->second;
}

std::optional<int64_t> Scheduler::BestReadyRank(absl::string_view type) const {
  const ReadyKey* best = BestReady(type);
  if (best == nullptr) return std::nullopt;
  return best->first;
}

std::optional<int64_t> Scheduler::OldestReady(absl::string_view type,
                                              int64_t now) const {
  auto it = type_index_.find(type);
  if (it == type_index_.end()) return std::nullopt;
  std::optional<int64_t> oldest;
  std::vector<ReadyAge>& ages = ready_ages_[it->second];
  while (!ages.empty() && !IsLive(it->second, ages.front())) {
    std::pop_heap(ages.begin(), ages.end(), AgeAfter);
    ages.pop_back();
  }
  if (!ages.empty()) oldest = ages.front().since;
  const auto& delayed = delayed_by_type_[it->second];
  if (!delayed.empty() && delayed.begin()->first <= now) {
    const int64_t since = delayed_.find(*delayed.begin())->second.ready_since;
    if (!oldest.has_value() || since < *oldest) oldest = since;
  }
  return oldest;
}

std::optional<int64_t> Scheduler::NextDelayed(absl::string_view type) const {
  if (type.empty()) {
    if (delayed_.empty()) return std::nullopt;
    if (paused_count_ == 0) return delayed_.begin()->first.first;
    std::optional<int64_t> next;
    for (size_t i = 0; i < delayed_by_type_.size(); ++i) {
      if (paused_[i] || delayed_by_type_[i].empty()) continue;
      const int64_t t = delayed_by_type_[i].begin()->first;
      if (!next.has_value() || t < *next) next = t;
    }
    return next;
  }
  auto it = type_index_.find(type);
  if (it == type_index_.end() || paused_[it->second] ||
      delayed_by_type_[it->second].empty()) {
    return std::nullopt;
  }
  return delayed_by_type_[it->second].begin()->first;
}

void Scheduler::AddLease(uint64_t id, int64_t deadline) {
  leases_.insert({deadline, id});
}

void Scheduler::RemoveLease(uint64_t id, int64_t deadline) {
  leases_.erase({deadline, id});
}

std::vector<uint64_t> Scheduler::DueLeases(int64_t now) const {
  std::vector<uint64_t> due;
  for (auto it = leases_.begin(); it != leases_.end() && it->first <= now;
       ++it) {
    due.push_back(it->second);
  }
  return due;
}

std::optional<int64_t> Scheduler::NextLeaseDeadline() const {
  if (leases_.empty()) return std::nullopt;
  return leases_.begin()->first;
}

void Scheduler::AddFinished(uint64_t id, int64_t finished) {
  if (track_finished_) finished_.insert({finished, id});
}

void Scheduler::RemoveFinished(uint64_t id, int64_t finished) {
  if (track_finished_) finished_.erase({finished, id});
}

std::vector<uint64_t> Scheduler::FinishedBefore(int64_t cutoff,
                                                size_t limit) const {
  std::vector<uint64_t> ids;
  for (auto it = finished_.begin();
       it != finished_.end() && it->first <= cutoff && ids.size() < limit;
       ++it) {
    ids.push_back(it->second);
  }
  return ids;
}

bool Scheduler::SetPaused(absl::string_view type, bool paused) {
  const int index = TypeIndex(type);
  if (paused_[index] == paused) return false;
  paused_[index] = paused;
  if (paused) {
    ++paused_count_;
    // Readied while running and not yet taken: no waiter should wake for
    // them now.
    if (readied_[index] != 0) {
      readied_[index] = 0;
      readied_types_.erase(
          std::find(readied_types_.begin(), readied_types_.end(), index));
    }
  } else {
    --paused_count_;
    const size_t ready = ready_[index].size();
    if (ready != 0) {
      if (readied_[index] == 0) readied_types_.push_back(index);
      readied_[index] += ready;
    }
  }
  return true;
}

bool Scheduler::IsPaused(absl::string_view type) const {
  auto it = type_index_.find(type);
  return it != type_index_.end() && paused_[it->second];
}

std::vector<std::string> Scheduler::PausedTypes() const {
  std::vector<std::string> types;
  for (size_t i = 0; i < paused_.size(); ++i) {
    if (paused_[i]) types.push_back(type_names_[i]);
  }
  std::sort(types.begin(), types.end());
  return types;
}

size_t Scheduler::ready_count() const {
  size_t n = 0;
  for (const ReadySet& set : ready_) n += set.size();
  return n;
}

}  // namespace taskwal::engine
