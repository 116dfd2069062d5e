#include "taskwal/worker_pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "engine/token_bucket.h"

namespace taskwal {

CancelReason HandlerContext::reason() const {
  absl::MutexLock l(&mu_);
  return reason_;
}

absl::Time HandlerContext::stop_deadline() const {
  absl::MutexLock l(&mu_);
  return stop_deadline_;
}

void HandlerContext::Cancel(CancelReason reason) {
  {
    absl::MutexLock l(&mu_);
    if (reason_ != CancelReason::kNone) return;
    reason_ = reason;
  }
  cancelled_.Notify();
}

void HandlerContext::SetStopDeadline(absl::Time deadline) {
  absl::MutexLock l(&mu_);
  stop_deadline_ = deadline;
}

namespace worker_pool_internal {
namespace {

// A registered type as the workers see it: fixed at Start.
struct TypeState {
  std::string type;
  TaskHandler handler;
  // max_running or rate_per_second is set: claims go through Admit.
  bool limited = false;
  size_t flow_index = 0;  // Its entry in PoolCore::flows_ (if limited).
};

// The lease a claim was given, by the engine's clock (whatever it is).
absl::Duration LeaseOf(const ClaimedTask& claimed) {
  return claimed.lease_deadline -
         absl::FromUnixMicros(claimed.task.claimed_micros());
}

}  // namespace

// The pool's state and threads. One worker thread per shared thread and per
// dedicated thread, each with a Slot: the one claim it runs a handler for,
// and its counters. One supervisor thread that heartbeats running claims
// and, at Stop's deadline, releases them; it looks at the slots on a tick
// (a twelfth of the shortest lease seen), so that starting and finishing a
// handler takes only the worker's own slot lock, never a lock the other
// workers take.
//
// Lock order: start_stop_mu_, then mu_, then a Slot's mu, then a
// HandlerContext's mu_; flow_mu_ is a leaf (taken with start_stop_mu_ at
// most). No lock is held across an Engine call or a handler call.
class PoolCore {
 public:
  PoolCore(Engine* engine, WorkerPoolOptions options)
      : engine_(engine), options_(std::move(options)) {}

  absl::Status Register(std::string type, TaskHandler handler,
                        HandlerOptions options) ABSL_LOCKS_EXCLUDED(mu_) {
    if (!handler) return absl::InvalidArgumentError("empty handler");
    if (type.empty()) {
      // ClaimNext's empty filter means every type, handled or not.
      return absl::InvalidArgumentError("empty type");
    }
    if (options.threads < 0) {
      return absl::InvalidArgumentError("HandlerOptions::threads < 0");
    }
    if (options.max_running < 0) {
      return absl::InvalidArgumentError("HandlerOptions::max_running < 0");
    }
    const double rate = options.rate_per_second;
    if (!std::isfinite(rate) ||
        (rate != 0 && !(rate >= HandlerOptions::kMinRatePerSecond &&
                        rate <= HandlerOptions::kMaxRatePerSecond))) {
      return absl::InvalidArgumentError(
          absl::StrCat("HandlerOptions::rate_per_second is ", rate,
                       ": not 0 nor in [", HandlerOptions::kMinRatePerSecond,
                       ", ", HandlerOptions::kMaxRatePerSecond, "]"));
    }
    if (rate != 0 && options.rate_burst < 1) {
      return absl::InvalidArgumentError(
          "HandlerOptions::rate_burst < 1 with a rate_per_second");
    }
    absl::MutexLock l(&mu_);
    if (state_ != State::kNew) {
      return absl::FailedPreconditionError(
          "Register after Start: the pool's handlers are fixed");
    }
    if (registered_.count(type) != 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("type \"", type, "\" already has a handler"));
    }
    registered_.emplace(std::move(type),
                        Registration{std::move(handler), options});
    return absl::OkStatus();
  }

  absl::Status Start() ABSL_LOCKS_EXCLUDED(start_stop_mu_, mu_, flow_mu_) {
    absl::MutexLock ss(&start_stop_mu_);
    if (options_.threads < 0) {
      return absl::InvalidArgumentError("WorkerPoolOptions::threads < 0");
    }
    if (options_.worker_id_prefix.empty()) {
      return absl::InvalidArgumentError(
          "WorkerPoolOptions::worker_id_prefix is empty");
    }
    if (options_.lease < absl::ZeroDuration()) {
      return absl::InvalidArgumentError("WorkerPoolOptions::lease < 0");
    }
    if (options_.claim_wait <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          "WorkerPoolOptions::claim_wait is not positive");
    }
    auto types = std::make_shared<std::vector<TypeState>>();
    std::vector<Flow> flows;
    // Per worker thread: the types it serves and where it starts.
    std::vector<std::pair<std::vector<const TypeState*>, size_t>> threads;
    std::vector<Slot*> slots;
    {
      absl::MutexLock l(&mu_);
      if (state_ != State::kNew) {
        return absl::FailedPreconditionError("the pool was already started");
      }
      if (registered_.empty()) {
        return absl::FailedPreconditionError("no handler registered");
      }
      types->reserve(registered_.size());
      const absl::Time now = FlowNow();
      std::vector<const TypeState*> shared_types;
      for (const auto& [type, registration] : registered_) {
        const HandlerOptions& o = registration.options;
        TypeState& t = types->emplace_back();
        t.type = type;
        t.handler = registration.handler;
        t.limited = o.max_running > 0 || o.rate_per_second > 0;
        if (t.limited) {
          t.flow_index = flows.size();
          Flow& flow = flows.emplace_back();
          flow.max_running = o.max_running;
          if (o.rate_per_second > 0) {
            flow.bucket.emplace(o.rate_per_second, o.rate_burst, now);
          }
        }
        if (o.threads == 0) shared_types.push_back(&t);
      }
      if (!shared_types.empty() && options_.threads == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "WorkerPoolOptions::threads is 0 but type \"",
            shared_types[0]->type, "\" has no threads of its own"));
      }
      if (!shared_types.empty()) {
        for (int i = 0; i < options_.threads; ++i) {
          threads.emplace_back(shared_types, static_cast<size_t>(i));
        }
      }
      for (const TypeState& t : *types) {
        const int own = registered_.find(t.type)->second.options.threads;
        for (int i = 0; i < own; ++i) threads.push_back({{&t}, 0});
      }
      for (size_t i = 0; i < threads.size(); ++i) {
        slots_.push_back(std::make_unique<Slot>());
        slots.push_back(slots_.back().get());
      }
      if (options_.lease > absl::ZeroDuration()) {
        tick_ = SupervisorTick(options_.lease);
      }
      state_ = State::kRunning;
    }
    {
      absl::MutexLock l(&flow_mu_);
      flows_ = std::move(flows);
    }
    supervisor_ = std::thread([this] { Supervise(); });
    for (size_t n = 0; n < threads.size(); ++n) {
      workers_.emplace_back([this, types, served = std::move(threads[n].first),
                             next = threads[n].second, slot = slots[n], n] {
        WorkerLoop(served, next, slot, WorkerId(n));
      });
    }
    return absl::OkStatus();
  }

  absl::Status Stop(absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(start_stop_mu_, mu_, flow_mu_) {
    absl::MutexLock ss(&start_stop_mu_);
    {
      absl::MutexLock l(&mu_);
      if (state_ == State::kNew) {
        state_ = State::kStopped;  // Never started: nothing to stop.
        return absl::OkStatus();
      }
      if (state_ != State::kRunning) return absl::OkStatus();
      state_ = State::kStopping;
    }
    // Before the slots are looked at and the deadline is set: a worker that
    // takes its slot after this runs nothing (see Run); one that took it
    // before gets the deadline here, and only then can the supervisor
    // release its claim (so no slot frees up for a claim Run would not
    // see as taken after Stop began).
    stop_requested_.Notify();
    {
      absl::MutexLock l(&mu_);
      stop_deadline_ = deadline;
      for (const std::unique_ptr<Slot>& slot : slots_) {
        absl::MutexLock s(&slot->mu);
        if (slot->busy) slot->job.context->SetStopDeadline(deadline);
      }
      kick_ = true;
    }
    {
      // Wakes the threads waiting for a slot or a token.
      absl::MutexLock l(&flow_mu_);
      ++flow_generation_;
      flow_changed_.SignalAll();
    }
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    {
      absl::MutexLock l(&mu_);
      supervisor_exit_ = true;
      kick_ = true;
    }
    supervisor_.join();
    absl::MutexLock l(&mu_);
    state_ = State::kStopped;
    return release_error_;
  }

  WorkerPoolStats Stats() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    WorkerPoolStats sum = stats_;
    for (const std::unique_ptr<Slot>& slot : slots_) {
      absl::MutexLock s(&slot->mu);
      sum.handled += slot->stats.handled;
      sum.exceptions += slot->stats.exceptions;
      sum.succeeded += slot->succeeded.load(std::memory_order_relaxed);
      sum.failed += slot->failed.load(std::memory_order_relaxed);
      sum.lost_claims += slot->lost_claims.load(std::memory_order_relaxed);
      sum.engine_errors += slot->engine_errors.load(std::memory_order_relaxed);
    }
    return sum;
  }

 private:
  enum class State { kNew, kRunning, kStopping, kStopped };

  struct Registration {
    TaskHandler handler;
    HandlerOptions options;
  };

  // Flow control of one limited type: its claims held and its tokens.
  struct Flow {
    int max_running = 0;  // 0: no limit.
    int running = 0;      // Claims held (admitted and not yet finished).
    std::optional<engine::TokenBucket> bucket;  // Unset: no rate limit.
  };

  // Why Admit refused a type, and when to look again.
  struct Refusal {
    // When the refused type's next token comes (pool clock);
    // InfiniteFuture when it waits for a slot, which wakes the waiter.
    absl::Time token_at = absl::InfiniteFuture();
    // flow_generation_ at the first Admit of the round: a waiter sleeps
    // only if nothing was given back since (no wake-up is lost between a
    // refusal and the sleep).
    bool refused = false;
    uint64_t generation = 0;
  };

  // The claim a worker runs a handler for.
  struct Job {
    absl::Duration lease;
    // Owned by the worker, which clears its slot before destroying it; its
    // claim() is the job's claim.
    HandlerContext* context = nullptr;
    // InfinitePast until the supervisor has seen the job.
    absl::Time next_heartbeat;
    bool lost = false;      // Heartbeat found the claim lost or engine closed.
    bool released = false;  // Stop released the claim at its deadline.
  };

  // One worker thread's state, shared with the supervisor.
  struct Slot {
    absl::Mutex mu;
    bool busy ABSL_GUARDED_BY(mu) = false;     // job is a running handler's.
    uint64_t job_seq ABSL_GUARDED_BY(mu) = 0;  // Jobs started in the slot.
    Job job ABSL_GUARDED_BY(mu);
    WorkerPoolStats stats ABSL_GUARDED_BY(mu);  // handled and exceptions.
    // The worker's outcome counters: written by it alone, after its
    // Complete or Fail, without a lock; read by Stats.
    std::atomic<uint64_t> succeeded{0};
    std::atomic<uint64_t> failed{0};
    std::atomic<uint64_t> lost_claims{0};
    std::atomic<uint64_t> engine_errors{0};
  };

  static void Count(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1,
                  std::memory_order_relaxed);
  }

  std::string WorkerId(size_t n) const {
    return absl::StrCat(options_.worker_id_prefix, "-", n + 1);
  }

  absl::Time FlowNow() const {
    return options_.clock != nullptr ? options_.clock->Now() : absl::Now();
  }

  // Takes a running slot and a token of `type` for one claim. True: taken
  // (or the type has no limits); give them back with Unadmit. False: the
  // type is at a limit; *refusal says until when.
  bool Admit(const TypeState& type, Refusal* refusal)
      ABSL_LOCKS_EXCLUDED(flow_mu_) {
    if (!type.limited) return true;
    absl::MutexLock l(&flow_mu_);
    Flow& flow = flows_[type.flow_index];
    if (!refusal->refused) {
      refusal->refused = true;
      refusal->generation = flow_generation_;
    }
    if (flow.max_running > 0 && flow.running >= flow.max_running) {
      return false;
    }
    if (flow.bucket.has_value()) {
      // Read under the lock: every call sees the clock move forward.
      const absl::Time now = FlowNow();
      if (!flow.bucket->TryTake(now)) {
        refusal->token_at =
            std::min(refusal->token_at, flow.bucket->NextTokenTime(now));
        return false;
      }
    }
    ++flow.running;
    return true;
  }

  // Gives back what Admit took: the slot, once the claim is finished or
  // when nothing was claimed; the token only when nothing was claimed.
  void Unadmit(const TypeState& type, bool claimed)
      ABSL_LOCKS_EXCLUDED(flow_mu_) {
    if (!type.limited) return;
    absl::MutexLock l(&flow_mu_);
    Flow& flow = flows_[type.flow_index];
    --flow.running;
    if (!claimed && flow.bucket.has_value()) flow.bucket->GiveBack();
    ++flow_generation_;
    if (flow_waiters_ > 0) flow_changed_.SignalAll();
  }

  // Sleeps until a slot or token is given back, Stop, the refused type's
  // next token (at most claim_wait: a fake clock may not move by itself),
  // whichever comes first.
  void WaitForFlow(const Refusal& refusal) ABSL_LOCKS_EXCLUDED(flow_mu_) {
    absl::MutexLock l(&flow_mu_);
    if (flow_generation_ != refusal.generation) return;
    // The refusal's generation may postdate Stop's wake-up (the loop looked
    // at stop_requested_ before Stop, and Admit after it). Stop notifies
    // stop_requested_ before it takes flow_mu_ to wake waiters, so under
    // flow_mu_ either this sees the notification or the wake-up is still
    // to come.
    if (stop_requested_.HasBeenNotified()) return;
    absl::Duration wait = options_.claim_wait;
    if (refusal.token_at != absl::InfiniteFuture()) {
      wait = std::min(wait, refusal.token_at - FlowNow());
    }
    if (wait <= absl::ZeroDuration()) return;
    ++flow_waiters_;
    flow_changed_.WaitWithTimeout(&flow_mu_, wait);
    --flow_waiters_;
  }

  // Claims and runs tasks of `types` until Stop or the engine closes. With
  // several types, each round looks at every type at once, then waits on
  // one of them (a different one each round, starting at `next`). A type
  // at its limits is skipped; with every type at its limits the thread
  // waits for a slot or a token (WaitForFlow).
  void WorkerLoop(const std::vector<const TypeState*>& types, size_t next,
                  Slot* slot, const std::string& worker_id)
      ABSL_LOCKS_EXCLUDED(mu_) {
    ClaimNextOptions claim_options;
    claim_options.lease = options_.lease;
    const size_t n = types.size();
    while (!stop_requested_.HasBeenNotified()) {
      Refusal refusal;
      bool admitted_any = false;
      bool handled = false;
      if (n > 1) {
        claim_options.wait = absl::ZeroDuration();
        for (size_t k = 0; k < n && !handled; ++k) {
          const TypeState* t = types[(next + k) % n];
          if (!Admit(*t, &refusal)) continue;
          admitted_any = true;
          claim_options.type = t->type;
          // Initialized from the call (not assigned): no ClaimedTask move.
          absl::StatusOr<ClaimedTask> claimed =
              engine_->ClaimNext(worker_id, claim_options);
          if (absl::IsNotFound(claimed.status())) {
            Unadmit(*t, /*claimed=*/false);
            continue;
          }
          if (!Handle(claimed, *t, slot)) return;
          handled = true;
        }
      }
      if (handled) continue;
      // Wait on the next type in turn that is not at its limits, but no
      // longer than until a refused type's next token.
      const TypeState* type = nullptr;
      for (size_t k = 0; k < n && type == nullptr; ++k) {
        const TypeState* t = types[(next + k) % n];
        if (!Admit(*t, &refusal)) continue;
        admitted_any = true;
        next += k + 1;
        type = t;
      }
      if (type == nullptr) {
        if (!admitted_any) WaitForFlow(refusal);
        continue;
      }
      claim_options.type = type->type;
      claim_options.wait = options_.claim_wait;
      if (refusal.token_at != absl::InfiniteFuture()) {
        claim_options.wait =
            std::clamp(refusal.token_at - FlowNow(), absl::ZeroDuration(),
                       options_.claim_wait);
      }
      absl::StatusOr<ClaimedTask> claimed =
          engine_->ClaimNext(worker_id, claim_options);
      if (!Handle(claimed, *type, slot)) return;
    }
  }

  // Runs the task ClaimNext claimed for `type` (admitted), or deals with
  // its error, and gives back what Admit took. False: the engine is
  // closed, the worker ends.
  bool Handle(absl::StatusOr<ClaimedTask>& claimed, const TypeState& type,
              Slot* slot) ABSL_LOCKS_EXCLUDED(mu_) {
    if (claimed.ok()) {
      if (claimed->task.type() != type.type) {
        // Cannot happen: ClaimNext filters by type.
        Release(claimed->claim, LeaseOf(*claimed));
      } else {
        Run(*claimed, type.handler, slot);
      }
      Unadmit(type, /*claimed=*/true);
      return true;
    }
    Unadmit(type, /*claimed=*/false);
    if (absl::IsNotFound(claimed.status())) return true;
    if (absl::IsCancelled(claimed.status())) return false;  // Closed.
    // kInternal (sticky) or another engine error: nothing to run; look
    // again later rather than spin.
    Count(slot->engine_errors);
    stop_requested_.WaitForNotificationWithTimeout(options_.claim_wait);
    return true;
  }

  // Runs one claimed task's handler and records its outcome. Takes the
  // claim out of `claimed`.
  void Run(ClaimedTask& claimed, const TaskHandler& handler, Slot* slot)
      ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Duration lease = options_.lease > absl::ZeroDuration()
                                     ? options_.lease
                                     : LeaseOf(claimed);
    if (absl::ToInt64Nanoseconds(lease) <
        shortest_lease_ns_.load(std::memory_order_relaxed)) {
      LeaseSeen(lease);
    }
    HandlerContext context(std::move(claimed.claim), claimed.attempt);
    const ClaimRef& claim = context.claim();
    bool stopping = false;
    {
      absl::MutexLock l(&slot->mu);
      // Checked under the slot's lock: either Stop sees this job and gives
      // it the deadline, or this sees Stop (see Stop).
      stopping = stop_requested_.HasBeenNotified();
      if (!stopping) {
        slot->busy = true;
        ++slot->job_seq;
        slot->job.lease = lease;
        slot->job.context = &context;
        // The supervisor schedules the first heartbeat when it first sees
        // the job: no clock read here.
        slot->job.next_heartbeat = absl::InfinitePast();
        slot->job.lost = false;
        slot->job.released = false;
      }
    }
    if (stopping) {
      Release(claim, lease);  // Claimed as Stop began: hand it back unrun.
      return;
    }

    bool threw = false;
    absl::StatusOr<std::string> result =
        CallHandler(handler, claimed.task, context, &threw);

    bool drop = false;
    {
      absl::MutexLock l(&slot->mu);
      drop = slot->job.lost || slot->job.released;
      slot->busy = false;
      slot->job.context = nullptr;
      ++slot->stats.handled;
      if (threw) ++slot->stats.exceptions;
    }
    // A lost claim was counted by the supervisor; a released one belongs
    // to the task's next claim: either way the result is not ours to store.
    if (drop) return;

    if (result.ok()) {
      const absl::Status s = engine_->Complete(claim, *result);
      if (s.ok()) {
        Count(slot->succeeded);
        return;
      }
      if (!absl::IsInvalidArgument(s)) {
        CountOutcome(slot, s);
        return;
      }
      // The engine refuses the result (too large): the attempt fails.
      result =
          absl::Status(s.code(), absl::StrCat("result refused: ", s.message()));
    }
    FailOptions fail_options;
    fail_options.permanent = context.permanent_;
    if (context.retry_after_.has_value()) {
      fail_options.retry_after =
          std::max(absl::ZeroDuration(), *context.retry_after_);
    }
    const std::string error = threw ? std::string(result.status().message())
                                    : result.status().ToString();
    absl::Status s = engine_->Fail(claim, error, fail_options);
    if (absl::IsInvalidArgument(s)) {
      // The error text is refused (too long, not UTF-8): record its code.
      s = engine_->Fail(
          claim,
          absl::StrCat(absl::StatusCodeToString(result.status().code()),
                       ": (error text refused by the engine)"),
          fail_options);
    }
    if (s.ok()) {
      Count(slot->failed);
    } else {
      CountOutcome(slot, s);
    }
  }

  // The handler's outcome; an exception it throws becomes kUnknown with
  // its what() (and *threw is set).
  static absl::StatusOr<std::string> CallHandler(const TaskHandler& handler,
                                                 const Task& task,
                                                 HandlerContext& context,
                                                 bool* threw) {
    try {
      return handler(task, context);
    } catch (const std::exception& e) {
      *threw = true;
      return absl::UnknownError(e.what());
    } catch (...) {
      *threw = true;
      return absl::UnknownError("unknown exception");
    }
  }

  static absl::Duration HeartbeatInterval(absl::Duration lease) {
    return std::max(lease / 3, absl::Milliseconds(1));
  }

  // How often the supervisor looks at the slots, given the shortest lease:
  // a heartbeat is due lease / 3 after the last and sent at most a tick
  // later, well inside the lease.
  static absl::Duration SupervisorTick(absl::Duration lease) {
    return std::max(lease / 12, absl::Milliseconds(1));
  }

  // A claim with a lease shorter than any before: the supervisor's tick
  // shortens (the first claim of all sets it).
  void LeaseSeen(absl::Duration lease) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    const int64_t ns = absl::ToInt64Nanoseconds(lease);
    if (ns >= shortest_lease_ns_.load(std::memory_order_relaxed)) return;
    shortest_lease_ns_.store(ns, std::memory_order_relaxed);
    const absl::Duration tick = SupervisorTick(lease);
    if (tick < tick_) {
      tick_ = tick;
      kick_ = true;
    }
  }

  // Hands a held claim back to PENDING without counting the attempt, as the
  // example daemon does at shutdown. Engine::Retry is not fenced by the
  // claim, so a heartbeat first checks that the claim is still this one's
  // (it could have been lost to an expired lease and claimed again).
  void Release(const ClaimRef& claim, absl::Duration lease)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::Status s = engine_->Heartbeat(claim, lease).status();
    if (s.ok()) s = engine_->Retry(claim.task_id);
    absl::MutexLock l(&mu_);
    if (s.ok()) {
      ++stats_.released;
    } else if (absl::IsAborted(s)) {
      ++stats_.lost_claims;
    } else if (release_error_.ok()) {
      release_error_ = s;
    }
  }

  // A Complete or Fail that did not succeed.
  static void CountOutcome(Slot* slot, const absl::Status& s) {
    if (absl::IsAborted(s)) {
      Count(slot->lost_claims);
    } else if (!absl::IsCancelled(s)) {
      // kCancelled: the loop stops at its next claim.
      Count(slot->engine_errors);
    }
  }

  // The supervisor thread: each tick, heartbeats every running claim whose
  // heartbeat is due (lease / 3 after the claim or the last heartbeat, give
  // or take a tick), and at Stop's deadline
  // releases every claim still running and cancels its handler's context.
  // Exits when Stop has joined the workers.
  void Supervise() ABSL_LOCKS_EXCLUDED(mu_) {
    struct Beat {
      Slot* slot;
      uint64_t job_seq;
      ClaimRef claim;
      absl::Duration lease;
      bool release;  // Release at the deadline instead of a heartbeat.
    };
    mu_.Lock();
    while (!supervisor_exit_) {
      kick_ = false;
      const absl::Time now = absl::Now();
      std::vector<Beat> beats;
      const bool deadline_due = state_ == State::kStopping &&
                                !deadline_passed_ && now >= stop_deadline_;
      if (deadline_due) deadline_passed_ = true;
      for (const std::unique_ptr<Slot>& slot : slots_) {
        absl::MutexLock s(&slot->mu);
        Job& job = slot->job;
        if (!slot->busy || job.lost || job.released) continue;
        if (job.next_heartbeat == absl::InfinitePast()) {
          // New since the last tick: it started up to a tick ago.
          job.next_heartbeat =
              std::max(now, now + HeartbeatInterval(job.lease) - tick_);
        }
        if (deadline_passed_) {
          job.released = true;
          job.context->Cancel(CancelReason::kStopDeadline);
          beats.push_back({slot.get(), slot->job_seq, job.context->claim(),
                           job.lease, true});
        } else if (job.next_heartbeat <= now) {
          job.next_heartbeat = now + HeartbeatInterval(job.lease);
          beats.push_back({slot.get(), slot->job_seq, job.context->claim(),
                           job.lease, false});
        }
      }
      if (beats.empty()) {
        absl::Time wake = tick_ == absl::InfiniteDuration()
                              ? absl::InfiniteFuture()
                              : now + tick_;
        if (state_ == State::kStopping && !deadline_passed_) {
          wake = std::min(wake, stop_deadline_);
        }
        mu_.AwaitWithDeadline(absl::Condition(&kick_), wake);
        continue;
      }
      mu_.Unlock();
      std::vector<absl::Status> outcomes;
      for (const Beat& beat : beats) {
        if (beat.release) {
          Release(beat.claim, beat.lease);
          outcomes.push_back(absl::OkStatus());
        } else {
          outcomes.push_back(
              engine_->Heartbeat(beat.claim, beat.lease).status());
        }
      }
      mu_.Lock();
      for (size_t i = 0; i < beats.size(); ++i) {
        const absl::Status& s = outcomes[i];
        if (s.ok()) continue;
        Slot* slot = beats[i].slot;
        absl::MutexLock l(&slot->mu);
        // A job gone meanwhile finished: its Complete or Fail made this
        // heartbeat's outcome moot.
        if (!slot->busy || slot->job_seq != beats[i].job_seq ||
            slot->job.released) {
          continue;
        }
        Job& job = slot->job;
        if (absl::IsAborted(s)) {
          job.lost = true;
          ++stats_.lost_claims;
          job.context->Cancel(CancelReason::kClaimLost);
        } else if (absl::IsCancelled(s)) {
          job.lost = true;
          job.context->Cancel(CancelReason::kEngineClosed);
        } else {
          ++stats_.engine_errors;  // Tried again at the next interval.
        }
      }
    }
    mu_.Unlock();
  }

  Engine* const engine_;
  const WorkerPoolOptions options_;
  // Notified once by Stop: workers take no more work.
  absl::Notification stop_requested_;
  // The shortest lease of any claim so far, in nanoseconds (read without
  // mu_ as a hint; written under mu_).
  std::atomic<int64_t> shortest_lease_ns_{std::numeric_limits<int64_t>::max()};

  // Serializes Start and Stop; guards the threads.
  absl::Mutex start_stop_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(start_stop_mu_);
  std::thread supervisor_ ABSL_GUARDED_BY(start_stop_mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Registration, std::less<>> registered_
      ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_) = State::kNew;
  absl::Time stop_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool deadline_passed_ ABSL_GUARDED_BY(mu_) = false;
  // Set to wake the supervisor: Stop, its exit, or a shorter tick.
  bool kick_ ABSL_GUARDED_BY(mu_) = false;
  bool supervisor_exit_ ABSL_GUARDED_BY(mu_) = false;
  // How often the supervisor looks at the slots; infinite before the first
  // claim (no slot is busy yet) unless WorkerPoolOptions::lease is set.
  absl::Duration tick_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
  // One per worker thread, fixed at Start; each Slot has its own lock.
  std::vector<std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  // The supervisor's counters and Release's; the workers' are in slots_.
  WorkerPoolStats stats_ ABSL_GUARDED_BY(mu_);
  absl::Status release_error_ ABSL_GUARDED_BY(mu_);

  // Flow control. A leaf: nothing else is locked while it is held.
  absl::Mutex flow_mu_;
  // The limited types' state, indexed by TypeState::flow_index. Set by
  // Start before any worker runs.
  std::vector<Flow> flows_ ABSL_GUARDED_BY(flow_mu_);
  // Counts give-backs (and Stop): what a waiting thread waits for.
  uint64_t flow_generation_ ABSL_GUARDED_BY(flow_mu_) = 0;
  int flow_waiters_ ABSL_GUARDED_BY(flow_mu_) = 0;
  absl::CondVar flow_changed_;
};

}  // namespace worker_pool_internal

WorkerPool::WorkerPool(Engine* engine, WorkerPoolOptions options)
    : core_(std::make_unique<worker_pool_internal::PoolCore>(
          engine, std::move(options))) {}

WorkerPool::~WorkerPool() { core_->Stop(absl::Now()).IgnoreError(); }

absl::Status WorkerPool::Register(std::string type, TaskHandler handler,
                                  HandlerOptions options) {
  return core_->Register(std::move(type), std::move(handler), options);
}

absl::Status WorkerPool::Start() { return core_->Start(); }

absl::Status WorkerPool::Stop(absl::Time deadline) {
  return core_->Stop(deadline);
}

WorkerPoolStats WorkerPool::Stats() const { return core_->Stats(); }

}  // namespace taskwal
