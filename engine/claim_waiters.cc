#include "engine/claim_waiters.h"

#include <string>

namespace taskwal::engine {

bool ClaimWaiters::Empty() const {
  // Pairs with the fence in Add: the producer's publication of the task
  // comes before this load, the waiter's registration before its look.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return count_.load(std::memory_order_relaxed) == 0;
}

void ClaimWaiters::Add(Waiter* waiter) {
  {
    absl::MutexLock l(&mu_);
    waiter->notified_ = false;
    waiter->replan_ = false;
    waiter->position_ = waiters_.insert(waiters_.end(), waiter);
    count_.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void ClaimWaiters::Remove(Waiter* waiter) {
  absl::MutexLock l(&mu_);
  const bool was_timekeeper = waiters_.front() == waiter;
  waiters_.erase(waiter->position_);
  count_.fetch_sub(1, std::memory_order_relaxed);
  if (waiter->notified_) {
    // Woken for a task it did not look for: the next waiter that wants
    // that task looks instead.
    WakeLocked(waiter->notified_type_, 1);
  }
  if (was_timekeeper && !waiters_.empty()) ReplanLocked(waiters_.front());
}

void ClaimWaiters::Wait(Waiter* waiter, absl::Time deadline) {
  absl::MutexLock l(&mu_);
  if (!waiter->notified_ && !waiter->replan_ && !closed_) {
    waiter->sleeping_ = true;
    waiter->cv_.WaitWithDeadline(&mu_, deadline);
    waiter->sleeping_ = false;
  }
  waiter->notified_ = false;
  waiter->replan_ = false;
}

bool ClaimWaiters::IsTimekeeper(const Waiter* waiter) const {
  absl::MutexLock l(&mu_);
  return !waiters_.empty() && waiters_.front() == waiter;
}

void ClaimWaiters::WakeLocked(absl::string_view type, size_t count) {
  // Sleepers first: a waiter that is looking may already have passed the
  // partition the task is in, but a woken sleeper looks everywhere.
  for (const bool sleeping : {true, false}) {
    for (Waiter* w : waiters_) {
      if (count == 0) return;
      if (w->notified_ || w->sleeping_ != sleeping) continue;
      if (!w->type_.empty() && w->type_ != type) continue;
      w->notified_ = true;
      w->notified_type_.assign(type.data(), type.size());
      w->cv_.Signal();
      --count;
    }
  }
}

void ClaimWaiters::ReplanLocked(Waiter* waiter) {
  waiter->replan_ = true;
  waiter->cv_.Signal();
}

void ClaimWaiters::NotifyReady(absl::string_view type, size_t count) {
  if (count == 0 || Empty()) return;
  absl::MutexLock l(&mu_);
  WakeLocked(type, count);
}

void ClaimWaiters::NotifyTimekeeper() {
  if (Empty()) return;
  absl::MutexLock l(&mu_);
  if (!waiters_.empty()) ReplanLocked(waiters_.front());
}

void ClaimWaiters::Close() {
  absl::MutexLock l(&mu_);
  closed_ = true;
  for (Waiter* w : waiters_) w->cv_.Signal();
}

}  // namespace taskwal::engine
