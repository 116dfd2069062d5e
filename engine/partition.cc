#include "engine/partition.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace taskwal::engine {

Partition::Partition(uint32_t index, std::unique_ptr<StateMachine> state,
                     uint64_t seed)
    : index(index),
      state_(std::move(state)),
      table_(&state_->table()),
      rng_(seed) {
  absl::MutexLock l(&mu);
  // What replay made ready is nobody's to wake: no one waits yet.
  state_->scheduler().TakeReadied([](absl::string_view, size_t) {});
  PublishLocked(/*exact_due=*/true);
}

bool Partition::PublishLocked(bool exact_due) {
  Scheduler& scheduler = state_->scheduler();
  const std::optional<int64_t> rank = scheduler.BestReadyRank("");
  const int64_t ready = rank.has_value() ? *rank : kNever;
  if (ready_rank_.load(std::memory_order_relaxed) != ready) {
    ready_rank_.store(ready, std::memory_order_release);
  }
  int64_t due = kNever;
  for (std::optional<int64_t> t :
       {scheduler.NextDelayed(), scheduler.NextLeaseDeadline()}) {
    if (t.has_value()) due = std::min(due, *t);
  }
  const int64_t published = next_due_.load(std::memory_order_relaxed);
  // Only a move earlier matters to readers; a later time is published when
  // someone looks and finds nothing due (exact_due), saving a write of a
  // shared line per completed lease.
  if (due < published || (exact_due && due != published)) {
    next_due_.store(due, std::memory_order_release);
  }
  return due < published;
}

}  // namespace taskwal::engine
