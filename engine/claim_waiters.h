#ifndef TASKWAL_ENGINE_CLAIM_WAITERS_H_
#define TASKWAL_ENGINE_CLAIM_WAITERS_H_

#include <atomic>
#include <cstddef>
#include <list>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace taskwal::engine {

// ClaimNext callers that found nothing ready and wait for a task, oldest
// first. A task that becomes ready wakes one waiter that wants its type,
// not all of them (no thundering herd): a sleeping one if there is one (it
// will look), else one that is looking right now (its next Wait returns at
// once, so it looks again). Only the oldest waiter, the timekeeper, also
// sleeps until the next delayed task or lease comes due; it promotes what
// is due, and each task that becomes ready wakes one more.
//
// Protocol for a waiter: Add, look for a task once more (what became ready
// between the caller's last look and Add is seen then), then in a loop:
// IsTimekeeper (and, if so, when things come due), Wait, look. Remove when
// done. For a producer: make the task ready (and publish it), then
// NotifyReady; make something come due earlier (and publish it), then
// NotifyTimekeeper. The fences in Add and the notifications guarantee that
// either the waiter's look sees the change or the producer sees the
// waiter; a wake-up or re-plan that reaches a waiter before it sleeps makes
// its next Wait return at once, so none is lost.
//
// Thread safety: safe for concurrent use. Lock order: a leaf (no other lock
// is taken under it).
class ClaimWaiters {
 public:
  class Waiter {
   public:
    // Wants tasks of `type`; empty means any type. The view must outlive
    // the Waiter.
    explicit Waiter(absl::string_view type) : type_(type) {}

   private:
    friend class ClaimWaiters;
    const absl::string_view type_;
    absl::CondVar cv_;
    // Guarded by ClaimWaiters::mu_.
    bool notified_ = false;  // Woken for a task of notified_type_.
    std::string notified_type_;
    bool replan_ = false;    // Its wake-up time may be wrong now.
    bool sleeping_ = false;  // In Wait (else looking for a task).
    std::list<Waiter*>::iterator position_;
  };

  ClaimWaiters() = default;
  ClaimWaiters(const ClaimWaiters&) = delete;
  ClaimWaiters& operator=(const ClaimWaiters&) = delete;

  void Add(Waiter* waiter) ABSL_LOCKS_EXCLUDED(mu_);
  // Passes on a wake-up the waiter got but did not use (to a waiter that
  // wants that task's type), and makes the next timekeeper re-plan if the
  // waiter was it.
  void Remove(Waiter* waiter) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns when notified, told to re-plan, at `deadline`, or once closed
  // (spurious returns are possible: the caller looks and waits again).
  void Wait(Waiter* waiter, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the waiter is the oldest, which sleeps until things come due.
  bool IsTimekeeper(const Waiter* waiter) const ABSL_LOCKS_EXCLUDED(mu_);

  // `count` tasks of `type` became ready: wakes up to `count` waiters that
  // want that type (or any type), oldest first.
  void NotifyReady(absl::string_view type, size_t count)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Something comes due earlier than before: the timekeeper re-plans.
  void NotifyTimekeeper() ABSL_LOCKS_EXCLUDED(mu_);
  // The engine is closing: every Wait returns, now and later.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Whether anyone waits; checked without mu_ on every notification.
  bool Empty() const;
  // Wakes up to count waiters that want `type`.
  void WakeLocked(absl::string_view type, size_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReplanLocked(Waiter* waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::list<Waiter*> waiters_ ABSL_GUARDED_BY(mu_);
  std::atomic<size_t> count_{0};
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_CLAIM_WAITERS_H_
