#ifndef TASKWAL_API_WORKER_POOL_H_
#define TASKWAL_API_WORKER_POOL_H_

// WorkerPool: threads that claim tasks from an Engine, run a handler per task
// type, heartbeat while it runs, and complete or fail the task with what the
// handler returns. What every embedder otherwise writes around ClaimNext.
//
//   taskwal::WorkerPool pool(&engine, taskwal::WorkerPoolOptions());
//   pool.Register("email", [](const taskwal::Task& task,
//                             taskwal::HandlerContext& ctx)
//                              -> absl::StatusOr<std::string> {
//     return Send(task.payload());  // The result, or an error status.
//   }).IgnoreError();
//   if (absl::Status s = pool.Start(); !s.ok()) return s;
//   ...
//   pool.Stop(absl::Now() + absl::Seconds(30)).IgnoreError();
//
// Delivery is at least once: a handler may run again for a task whose
// earlier attempt crashed, lost its claim or was released by Stop, so a
// handler's side effects must be idempotent (the task id and the
// idempotency key are stable across attempts). Completion is exactly once:
// the engine fences claims, so only one attempt's result is stored.
//
// Flow control per task type (HandlerOptions): at most max_running tasks
// of a type held at once, and at most rate_per_second claims of it per
// second with bursts of rate_burst. Both are limits of this pool, acting
// before the claim; see HandlerOptions.
//
// The pool's timing (heartbeats, Stop's deadline, claim waits) is real time
// (absl::Now), whatever Clock the engine uses; rate limits use
// WorkerPoolOptions::clock.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "taskwal/clock.h"
#include "taskwal/engine.h"

namespace taskwal {

namespace worker_pool_internal {
class PoolCore;
}  // namespace worker_pool_internal

// Why a handler's context is cancelled.
enum class CancelReason {
  kNone,
  kStopDeadline,  // Stop's deadline passed; the claim has been released.
  kClaimLost,     // A heartbeat got kAborted: someone else runs the task.
  kEngineClosed,  // A heartbeat got kCancelled: the engine is closed.
};

// What a running handler sees of its attempt, and how it asks for a retry
// delay or a permanent failure. Created by the pool for one attempt and
// valid until the handler returns.
// Thread safety: Cancelled, WaitForCancellation and reason may be called
// from any thread; RetryAfter and FailPermanently from the handler's thread
// (or with the handler's own synchronization) before it returns.
class HandlerContext {
 public:
  HandlerContext(const HandlerContext&) = delete;
  HandlerContext& operator=(const HandlerContext&) = delete;

  // The claim the handler runs under, and its attempt (1 for the first).
  const ClaimRef& claim() const { return claim_; }
  uint32_t attempt() const { return attempt_; }

  // True once the handler should stop: its result will not be stored
  // (reason() says why). A handler doing long work checks it, or waits on
  // WaitForCancellation, and returns early.
  bool Cancelled() const { return cancelled_.HasBeenNotified(); }
  // Sleeps until the context is cancelled or `timeout` passes; returns
  // Cancelled(). A handler's interruptible sleep.
  bool WaitForCancellation(absl::Duration timeout) const {
    return cancelled_.WaitForNotificationWithTimeout(timeout);
  }
  CancelReason reason() const ABSL_LOCKS_EXCLUDED(mu_);
  // The deadline of Stop once it was called, else absl::InfiniteFuture():
  // when the pool releases the claim and cancels this context.
  absl::Time stop_deadline() const ABSL_LOCKS_EXCLUDED(mu_);

  // Requests that apply when the handler returns an error status (or
  // throws): the attempt fails with that error and
  //   RetryAfter: the task becomes claimable `delay` after the failure
  //     instead of after its retry policy's backoff (if attempts are left);
  //   FailPermanently: the task becomes FAILED, whatever attempts are left.
  // A result (OK) completes the task and ignores them. FailPermanently wins
  // over RetryAfter; a later RetryAfter replaces an earlier one. A negative
  // delay counts as zero.
  void RetryAfter(absl::Duration delay) { retry_after_ = delay; }
  void FailPermanently() { permanent_ = true; }

 private:
  friend class worker_pool_internal::PoolCore;
  HandlerContext(ClaimRef claim, uint32_t attempt)
      : claim_(std::move(claim)), attempt_(attempt) {}
  // Sets reason (the first one sticks) and wakes waiters. Idempotent.
  void Cancel(CancelReason reason) ABSL_LOCKS_EXCLUDED(mu_);
  void SetStopDeadline(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  const ClaimRef claim_;
  const uint32_t attempt_;
  absl::Notification cancelled_;

  mutable absl::Mutex mu_;
  CancelReason reason_ ABSL_GUARDED_BY(mu_) = CancelReason::kNone;
  absl::Time stop_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();

  // Written by the handler, read by its worker thread after it returns.
  std::optional<absl::Duration> retry_after_;
  bool permanent_ = false;
};

// A task type's handler. Gets the task as claimed and its context; returns
// the result to store (Complete) or an error whose ToString() becomes the
// attempt's error (Fail). A C++ exception it throws is caught and its
// what() becomes the attempt's error. Called on a pool thread, possibly on
// several threads at once for different tasks.
using TaskHandler =
    std::function<absl::StatusOr<std::string>(const Task&, HandlerContext&)>;

// Flow control (max_running, rate_per_second) is per pool: the engine
// knows nothing of it, so two pools on one engine (two processes, say)
// each allow the whole limit. A limit acts before the claim: a thread
// claims a task of a type only with a running slot and a token of that
// type in hand, so a task the pool cannot run yet stays PENDING (claimable
// by anyone else, no attempt counted) instead of CLAIMED and waiting. A
// thread that finds its types at their limits serves its other types or
// sleeps until a slot frees or a token comes; Stop wakes it at once.
struct HandlerOptions {
  // 0: the type is served by the pool's shared threads. More: this many
  // threads of its own, which claim only this type (a type that must not
  // wait behind others). Not negative.
  int threads = 0;
  // The most tasks of this type the pool holds claimed at once, across all
  // of its threads: the handlers running plus those whose Complete or Fail
  // is on its way. 0: no limit (at most the threads serving the type). Not
  // negative.
  int max_running = 0;
  // The most claims of this type per second (a token bucket: tokens accrue
  // at this rate up to rate_burst, and the bucket starts full), so over any
  // span d the pool starts at most rate_burst + rate_per_second * d tasks
  // of the type. A claim spends a token even if Stop then releases it
  // unrun; a ClaimNext that finds nothing gives its token back. Timed by
  // WorkerPoolOptions::clock. 0: no limit. Otherwise in
  // [kMinRatePerSecond, kMaxRatePerSecond].
  double rate_per_second = 0;
  // Tokens the bucket holds at most: how many tasks may start at once after
  // a quiet spell. At least 1 when rate_per_second is set; ignored
  // otherwise.
  int rate_burst = 1;

  // One task per 11.6 days to one per nanosecond.
  static constexpr double kMinRatePerSecond = 1e-6;
  static constexpr double kMaxRatePerSecond = 1e9;
};

struct WorkerPoolOptions {
  // Threads shared by every type registered without threads of its own.
  // At least 1 if such a type exists.
  int threads = 4;
  // Worker ids are "<worker_id_prefix>-<n>"; non-empty. Give each process
  // its own prefix (say, host and pid) so that History tells them apart.
  std::string worker_id_prefix = "worker";
  // Lease of each claim; zero means the engine's default_lease. The pool
  // heartbeats a running handler's claim every lease / 3, give or take a
  // twelfth of the lease (one thread looks at all claims each
  // lease / 12 of the shortest lease seen, at least 1 ms apart).
  absl::Duration lease = absl::ZeroDuration();
  // How long one ClaimNext waits for work. Bounds how long a shared thread
  // serving several types takes to notice work of the others (it waits on
  // one type at a time, in turn), and how long Stop waits for idle threads
  // to notice it. Positive.
  absl::Duration claim_wait = absl::Milliseconds(100);
  // Source of time for the rate limits (HandlerOptions::rate_per_second)
  // and nothing else. Not owned; must outlive the pool. nullptr: the real
  // clock (absl::Now). A test passes a ManualClock to move the token
  // buckets by hand; a thread waiting for a token then looks again at
  // least every claim_wait.
  Clock* clock = nullptr;
};

// Counters since Start.
struct WorkerPoolStats {
  uint64_t handled = 0;      // Handler calls that returned or threw.
  uint64_t succeeded = 0;    // Tasks completed with a handler's result.
  uint64_t failed = 0;       // Attempts failed with a handler's error.
  uint64_t exceptions = 0;   // Handler calls that threw (counted in failed).
  uint64_t lost_claims = 0;  // Claims lost (kAborted) while held.
  uint64_t released = 0;     // Claims handed back by Stop (Engine::Retry).
  // Engine calls that failed otherwise (kInternal, ...): ClaimNext,
  // Complete, Fail or Heartbeat. The pool goes on; Engine::Health tells why.
  uint64_t engine_errors = 0;
};

// Thread safety: every method may be called from any thread. Register is
// allowed only before Start; Stop and the destructor must not be called
// from a handler.
class WorkerPool {
 public:
  // `engine` is borrowed and must outlive the pool.
  WorkerPool(Engine* engine, WorkerPoolOptions options);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  // Stop(absl::Now()) if the pool was started and not stopped.
  ~WorkerPool();

  // Runs `handler` for tasks of `type`, within options' limits.
  // OK: registered.
  // kInvalidArgument: an empty type (the pool cannot serve tasks without
  //   a type), an empty handler, or an option out of its range (the
  //   message names it): threads < 0, max_running < 0, rate_per_second
  //   neither 0 nor in [kMinRatePerSecond, kMaxRatePerSecond] (NaN and
  //   infinities included), rate_burst < 1 with a rate set.
  // kAlreadyExists: `type` already has a handler.
  // kFailedPrecondition: the pool was started.
  absl::Status Register(std::string type, TaskHandler handler,
                        HandlerOptions options = HandlerOptions());

  // Starts the threads.
  // OK: running.
  // kInvalidArgument: an option out of range (the message names it).
  // kFailedPrecondition: no handler registered, or already started.
  absl::Status Start();

  // Stops taking work and lets running handlers finish until `deadline`.
  // Threads that wait for a running slot or a rate token stop waiting at
  // once (no claim is made for them); a thread inside a ClaimNext notices
  // within claim_wait.
  // Then each claim still held is released (Engine::Retry: the task is
  // PENDING and claimable, the attempt not counted) and its handler's
  // context is cancelled (kStopDeadline; the handler's result is dropped).
  // Returns once every thread is joined, so a handler that ignores its
  // context holds it up. A claim taken after Stop began is released
  // without running its handler.
  // OK: stopped, every claim finished or released.
  // Otherwise the first error releasing a claim (that task then goes back
  // to PENDING when its lease runs out); the pool is stopped all the same.
  // A second call, or a call on a pool never started, returns OK.
  absl::Status Stop(absl::Time deadline);

  WorkerPoolStats Stats() const;

 private:
  const std::unique_ptr<worker_pool_internal::PoolCore> core_;
};

}  // namespace taskwal

#endif  // TASKWAL_API_WORKER_POOL_H_
