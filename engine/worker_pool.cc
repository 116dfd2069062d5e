#include "taskwal/worker_pool.h"

#include <algorithm>
#include <exception>
#include <functional>
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

using Handlers = std::map<std::string, TaskHandler, std::less<>>;

// The lease a claim was given, by the engine's clock (whatever it is).
absl::Duration LeaseOf(const ClaimedTask& claimed) {
  return claimed.lease_deadline -
         absl::FromUnixMicros(claimed.task.claimed_micros());
}

}  // namespace

// The pool's state and threads. One worker thread per shared thread and per
// dedicated thread; one supervisor thread that heartbeats running claims
// and, at Stop's deadline, releases them.
//
// Lock order: start_stop_mu_, then mu_, then a HandlerContext's mu_.
// No lock is held across an Engine call or a handler call.
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
                        Registration{std::move(handler), options.threads});
    return absl::OkStatus();
  }

  absl::Status Start() ABSL_LOCKS_EXCLUDED(start_stop_mu_, mu_) {
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
    auto handlers = std::make_shared<Handlers>();
    std::vector<std::string> shared_types;
    std::vector<std::pair<std::string, int>> dedicated;
    {
      absl::MutexLock l(&mu_);
      if (state_ != State::kNew) {
        return absl::FailedPreconditionError("the pool was already started");
      }
      if (registered_.empty()) {
        return absl::FailedPreconditionError("no handler registered");
      }
      for (const auto& [type, registration] : registered_) {
        (*handlers)[type] = registration.handler;
        if (registration.threads == 0) {
          shared_types.push_back(type);
        } else {
          dedicated.emplace_back(type, registration.threads);
        }
      }
      if (!shared_types.empty() && options_.threads == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("WorkerPoolOptions::threads is 0 but type \"",
                         shared_types[0], "\" has no threads of its own"));
      }
      state_ = State::kRunning;
    }
    supervisor_ = std::thread([this] { Supervise(); });
    int n = 0;
    if (!shared_types.empty()) {
      for (int i = 0; i < options_.threads; ++i) {
        workers_.emplace_back([this, handlers, shared_types, i, n] {
          WorkerLoop(*handlers, shared_types, static_cast<size_t>(i),
                     WorkerId(n));
        });
        ++n;
      }
    }
    for (const auto& [type, threads] : dedicated) {
      for (int i = 0; i < threads; ++i) {
        std::vector<std::string> types = {type};
        workers_.emplace_back([this, handlers, types, n] {
          WorkerLoop(*handlers, types, 0, WorkerId(n));
        });
        ++n;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Stop(absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(start_stop_mu_, mu_) {
    absl::MutexLock ss(&start_stop_mu_);
    {
      absl::MutexLock l(&mu_);
      if (state_ == State::kNew) {
        state_ = State::kStopped;  // Never started: nothing to stop.
        return absl::OkStatus();
      }
      if (state_ != State::kRunning) return absl::OkStatus();
      state_ = State::kStopping;
      stop_deadline_ = deadline;
      for (const auto& [seq, job] : jobs_) {
        job.context->SetStopDeadline(deadline);
      }
      kick_ = true;
    }
    stop_requested_.Notify();
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
    return stats_;
  }

 private:
  enum class State { kNew, kRunning, kStopping, kStopped };

  struct Registration {
    TaskHandler handler;
    int threads = 0;
  };

  // One claim a worker holds while its handler runs, as the supervisor
  // sees it: an entry of jobs_, so guarded by mu_ with it.
  struct Job {
    ClaimRef claim;
    absl::Duration lease;
    // Owned by the worker, which erases the entry before destroying it.
    HandlerContext* context = nullptr;
    absl::Time next_heartbeat;
    bool lost = false;      // Heartbeat found the claim lost or engine closed.
    bool released = false;  // Stop released the claim at its deadline.
  };

  std::string WorkerId(int n) const {
    return absl::StrCat(options_.worker_id_prefix, "-", n + 1);
  }

  // Claims and runs tasks of `types` until Stop or the engine closes. With
  // several types, each round looks at every type at once, then waits on
  // one of them (a different one each round, starting at `next`).
  void WorkerLoop(const Handlers& handlers,
                  const std::vector<std::string>& types, size_t next,
                  const std::string& worker_id) ABSL_LOCKS_EXCLUDED(mu_) {
    ClaimNextOptions claim_options;
    claim_options.lease = options_.lease;
    while (!stop_requested_.HasBeenNotified()) {
      absl::StatusOr<ClaimedTask> claimed = absl::NotFoundError("none");
      if (types.size() > 1) {
        claim_options.wait = absl::ZeroDuration();
        for (size_t k = 0;
             k < types.size() && absl::IsNotFound(claimed.status()); ++k) {
          claim_options.type = types[(next + k) % types.size()];
          claimed = engine_->ClaimNext(worker_id, claim_options);
        }
      }
      if (absl::IsNotFound(claimed.status())) {
        claim_options.type = types[next % types.size()];
        claim_options.wait = options_.claim_wait;
        ++next;
        claimed = engine_->ClaimNext(worker_id, claim_options);
      }
      if (absl::IsNotFound(claimed.status())) continue;
      if (absl::IsCancelled(claimed.status())) return;  // Engine closed.
      if (!claimed.ok()) {
        // kInternal (sticky) or another engine error: nothing to run; look
        // again later rather than spin.
        CountEngineError();
        stop_requested_.WaitForNotificationWithTimeout(options_.claim_wait);
        continue;
      }
      auto handler = handlers.find(claimed->task.type());
      if (handler == handlers.end()) {
        // Cannot happen: ClaimNext filters by a registered, non-empty type.
        Release(claimed->claim, LeaseOf(*claimed));
        continue;
      }
      Run(*std::move(claimed), handler->second);
    }
  }

  // Runs one claimed task's handler and records its outcome.
  void Run(ClaimedTask claimed, const TaskHandler& handler)
      ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Duration lease = options_.lease > absl::ZeroDuration()
                                     ? options_.lease
                                     : LeaseOf(claimed);
    const std::unique_ptr<HandlerContext> context(
        new HandlerContext(claimed.claim, claimed.attempt));
    Job job;
    job.claim = claimed.claim;
    job.lease = lease;
    job.context = context.get();
    job.next_heartbeat = absl::Now() + HeartbeatInterval(lease);
    uint64_t seq = 0;
    {
      absl::MutexLock l(&mu_);
      if (state_ != State::kRunning) {
        seq = 0;  // Claimed while Stop began: hand it back unrun.
      } else {
        seq = ++last_seq_;
        jobs_.emplace(seq, std::move(job));
        kick_ = true;  // Its heartbeat may be the supervisor's next duty.
      }
    }
    if (seq == 0) {
      Release(claimed.claim, lease);
      return;
    }

    absl::StatusOr<std::string> result = absl::UnknownError("unset");
    bool threw = false;
    try {
      result = handler(claimed.task, *context);
    } catch (const std::exception& e) {
      threw = true;
      result = absl::UnknownError(e.what());
    } catch (...) {
      threw = true;
      result = absl::UnknownError("unknown exception");
    }

    bool drop = false;
    {
      absl::MutexLock l(&mu_);
      auto it = jobs_.find(seq);
      drop = it->second.lost || it->second.released;
      jobs_.erase(it);
      ++stats_.handled;
      if (threw) ++stats_.exceptions;
    }
    // A lost claim was counted by the supervisor; a released one belongs
    // to the task's next claim: either way the result is not ours to store.
    if (drop) return;

    const ClaimRef& claim = claimed.claim;
    if (result.ok()) {
      const absl::Status s = engine_->Complete(claim, *result);
      if (s.ok()) {
        Count(&WorkerPoolStats::succeeded);
        return;
      }
      if (!absl::IsInvalidArgument(s)) {
        CountOutcome(s);
        return;
      }
      // The engine refuses the result (too large): the attempt fails.
      result =
          absl::Status(s.code(), absl::StrCat("result refused: ", s.message()));
    }
    FailOptions fail_options;
    fail_options.permanent = context->permanent_;
    if (context->retry_after_.has_value()) {
      fail_options.retry_after =
          std::max(absl::ZeroDuration(), *context->retry_after_);
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
      Count(&WorkerPoolStats::failed);
    } else {
      CountOutcome(s);
    }
  }

  static absl::Duration HeartbeatInterval(absl::Duration lease) {
    return std::max(lease / 3, absl::Milliseconds(1));
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

  void Count(uint64_t WorkerPoolStats::*counter) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    ++(stats_.*counter);
  }

  // A Complete or Fail that did not succeed.
  void CountOutcome(const absl::Status& s) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (absl::IsAborted(s)) {
      ++stats_.lost_claims;
    } else if (!absl::IsCancelled(s)) {
      ++stats_.engine_errors;  // kCancelled: the loop stops at its next claim.
    }
  }

  void CountEngineError() ABSL_LOCKS_EXCLUDED(mu_) {
    Count(&WorkerPoolStats::engine_errors);
  }

  // The supervisor thread: heartbeats every running claim each lease / 3,
  // and at Stop's deadline releases every claim still running and cancels
  // its handler's context. Exits when Stop has joined the workers.
  void Supervise() ABSL_LOCKS_EXCLUDED(mu_) {
    struct Beat {
      uint64_t seq;
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
      absl::Time wake = absl::InfiniteFuture();
      for (auto& [seq, job] : jobs_) {
        if (job.lost || job.released) continue;
        if (deadline_passed_) {
          job.released = true;
          job.context->Cancel(CancelReason::kStopDeadline);
          beats.push_back({seq, job.claim, job.lease, true});
        } else if (job.next_heartbeat <= now) {
          job.next_heartbeat = now + HeartbeatInterval(job.lease);
          beats.push_back({seq, job.claim, job.lease, false});
        }
        wake = std::min(wake, job.next_heartbeat);
      }
      if (state_ == State::kStopping && !deadline_passed_) {
        wake = std::min(wake, stop_deadline_);
      }
      if (beats.empty()) {
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
        auto it = jobs_.find(beats[i].seq);
        // A job gone meanwhile finished: its Complete or Fail made this
        // heartbeat's outcome moot.
        if (s.ok() || it == jobs_.end() || it->second.released) continue;
        Job& job = it->second;
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
  // Set to wake the supervisor: a new job, Stop, or its exit.
  bool kick_ ABSL_GUARDED_BY(mu_) = false;
  bool supervisor_exit_ ABSL_GUARDED_BY(mu_) = false;
  // Running handlers by sequence number.
  std::map<uint64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  WorkerPoolStats stats_ ABSL_GUARDED_BY(mu_);
  absl::Status release_error_ ABSL_GUARDED_BY(mu_);
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
