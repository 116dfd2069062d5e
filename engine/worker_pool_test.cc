#include "taskwal/worker_pool.h"

#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "taskwal/clock.h"
#include "taskwal/engine.h"

namespace taskwal {
namespace {

using Result = absl::StatusOr<std::string>;

// Waits (polling) until cond holds; false if it did not within the timeout.
// Generous: the timeout only stops a broken test, it measures nothing.
bool WaitFor(const std::function<bool()>& cond,
             absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

class WorkerPoolTest : public ::testing::Test {
 protected:
  // An in-memory engine without backoff, unless a test sets options first.
  void OpenEngine(Clock* clock = nullptr,
                  absl::Duration maintenance = absl::Milliseconds(10)) {
    EngineOptions options;
    options.clock = clock;
    options.maintenance_interval = maintenance;
    RetryPolicy policy;  // No backoff: a failed attempt is claimable at once.
    policy.set_multiplier(1.0);
    options.default_retry_policy = policy;
    absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    engine_ = *std::move(opened);
  }

  void SetUp() override { OpenEngine(); }

  uint64_t Submit(const std::string& key, const std::string& type,
                  uint32_t max_attempts = 3) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = type;
    spec.payload = absl::StrCat("payload of ", key);
    spec.max_attempts = max_attempts;
    absl::StatusOr<SubmitResult> submitted = engine_->Submit(spec);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    return submitted.ok() ? submitted->task_id : 0;
  }

  Task Get(uint64_t id) {
    absl::StatusOr<Task> task = engine_->Get(id);
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *task : Task();
  }

  bool WaitForStatus(uint64_t id, TaskStatus status) {
    return WaitFor([&] { return Get(id).status() == status; });
  }

  static WorkerPoolOptions PoolOptions(int threads = 2) {
    WorkerPoolOptions options;
    options.threads = threads;
    options.worker_id_prefix = "test";
    options.claim_wait = absl::Milliseconds(20);
    return options;
  }

  std::unique_ptr<Engine> engine_;
};

TEST_F(WorkerPoolTest, HandlersRunAndCompleteWithTheirResults) {
  WorkerPool pool(engine_.get(), PoolOptions());
  ASSERT_TRUE(pool.Register("upper",
                            [](const Task& task, HandlerContext&) {
                              return Result(
                                  absl::StrCat("upper:", task.payload()));
                            })
                  .ok());
  ASSERT_TRUE(pool.Register("lower",
                            [](const Task& task, HandlerContext&) {
                              return Result(
                                  absl::StrCat("lower:", task.payload()));
                            })
                  .ok());
  const uint64_t a = Submit("a", "upper");
  const uint64_t b = Submit("b", "lower");
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitForStatus(a, COMPLETED));
  ASSERT_TRUE(WaitForStatus(b, COMPLETED));
  EXPECT_EQ(Get(a).result(), "upper:payload of a");
  EXPECT_EQ(Get(b).result(), "lower:payload of b");
  EXPECT_TRUE(pool.Stop(absl::Now() + absl::Seconds(10)).ok());
  const WorkerPoolStats stats = pool.Stats();
  EXPECT_EQ(stats.handled, 2u);
  EXPECT_EQ(stats.succeeded, 2u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.lost_claims, 0u);
}

TEST_F(WorkerPoolTest, UnregisteredTypesAreNotClaimed) {
  WorkerPool pool(engine_.get(), PoolOptions());
  ASSERT_TRUE(
      pool.Register("known",
                    [](const Task&, HandlerContext&) { return Result("ok"); })
          .ok());
  const uint64_t other = Submit("other", "unknown");
  const uint64_t known = Submit("known", "known");
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitForStatus(known, COMPLETED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_EQ(Get(other).status(), PENDING);
  EXPECT_EQ(Get(other).attempts(), 0u);
}

TEST_F(WorkerPoolTest, ErrorIsRetriedThenFailedAfterMaxAttempts) {
  WorkerPool pool(engine_.get(), PoolOptions());
  ASSERT_TRUE(pool.Register("flaky",
                            [](const Task&, HandlerContext&) {
                              return Result(
                                  absl::UnavailableError("backend down"));
                            })
                  .ok());
  const uint64_t id = Submit("job", "flaky", /*max_attempts=*/3);
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitForStatus(id, FAILED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  const Task task = Get(id);
  EXPECT_EQ(task.attempts(), 3u);
  EXPECT_EQ(task.last_error(), "UNAVAILABLE: backend down");
  EXPECT_EQ(pool.Stats().failed, 3u);
  EXPECT_EQ(pool.Stats().handled, 3u);
}

TEST_F(WorkerPoolTest, ExceptionBecomesTheAttemptsError) {
  WorkerPool pool(engine_.get(), PoolOptions());
  ASSERT_TRUE(pool.Register("throws",
                            [](const Task&, HandlerContext&) -> Result {
                              throw std::runtime_error("handler blew up");
                            })
                  .ok());
  const uint64_t id = Submit("job", "throws", /*max_attempts=*/1);
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitForStatus(id, FAILED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_EQ(Get(id).last_error(), "handler blew up");
  EXPECT_EQ(pool.Stats().exceptions, 1u);
  EXPECT_EQ(pool.Stats().failed, 1u);
}

TEST_F(WorkerPoolTest, RetryAfterDelaysTheNextAttempt) {
  ManualClock clock;
  OpenEngine(&clock);
  std::atomic<int> calls{0};
  WorkerPool pool(engine_.get(), PoolOptions());
  ASSERT_TRUE(pool.Register("later",
                            [&](const Task&, HandlerContext& ctx) {
                              if (++calls == 1) {
                                ctx.RetryAfter(absl::Hours(1));
                                return Result(
                                    absl::UnavailableError("rate limited"));
                              }
                              return Result("done");
                            })
                  .ok());
  const uint64_t id = Submit("job", "later", /*max_attempts=*/3);
  const absl::Time failed_at = clock.Now();  // The clock stands still.
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] { return Get(id).last_error() == "UNAVAILABLE: rate limited"; }));
  Task task = Get(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.attempts(), 1u);
  EXPECT_EQ(absl::FromUnixMicros(task.not_before_micros()),
            failed_at + absl::Hours(1));
  absl::StatusOr<std::optional<absl::Time>> due = engine_->NextDueTime("later");
  ASSERT_TRUE(due.ok());
  EXPECT_EQ(*due, failed_at + absl::Hours(1));

  clock.Advance(absl::Hours(1));
  ASSERT_TRUE(WaitForStatus(id, COMPLETED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(Get(id).attempts(), 2u);
}

TEST_F(WorkerPoolTest, FailPermanentlyEndsTheTaskWithAttemptsLeft) {
  std::atomic<int> calls{0};
  WorkerPool pool(engine_.get(), PoolOptions());
  ASSERT_TRUE(pool.Register("bad",
                            [&](const Task&, HandlerContext& ctx) {
                              ++calls;
                              ctx.FailPermanently();
                              return Result(
                                  absl::InvalidArgumentError("bad payload"));
                            })
                  .ok());
  const uint64_t id = Submit("job", "bad", /*max_attempts=*/5);
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitForStatus(id, FAILED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_EQ(Get(id).attempts(), 1u);
  EXPECT_EQ(Get(id).last_error(), "INVALID_ARGUMENT: bad payload");
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(WorkerPoolTest, HeartbeatsKeepTheClaimOfAHandlerLongerThanTheLease) {
  WorkerPoolOptions options = PoolOptions(1);
  options.lease = absl::Milliseconds(300);
  WorkerPool pool(engine_.get(), options);
  std::atomic<bool> cancelled{false};
  ASSERT_TRUE(pool.Register("slow",
                            [&](const Task&, HandlerContext& ctx) {
                              // Four leases long; the maintenance thread
                              // expires a lease within 10 ms of its end.
                              cancelled = ctx.WaitForCancellation(
                                  absl::Milliseconds(1200));
                              return Result("finished");
                            })
                  .ok());
  const uint64_t id = Submit("job", "slow");
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitForStatus(id, COMPLETED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_FALSE(cancelled.load());
  const Task task = Get(id);
  EXPECT_EQ(task.attempts(), 1u);
  EXPECT_EQ(task.result(), "finished");
  EXPECT_EQ(pool.Stats().lost_claims, 0u);
  absl::StatusOr<EngineStats> stats = engine_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->lease_expiries, 0u);
}

TEST_F(WorkerPoolTest, StopLetsARunningHandlerFinishBeforeTheDeadline) {
  absl::Notification started;
  WorkerPool pool(engine_.get(), PoolOptions(1));
  ASSERT_TRUE(pool.Register("short",
                            [&](const Task&, HandlerContext&) {
                              started.Notify();
                              absl::SleepFor(absl::Milliseconds(100));
                              return Result("done");
                            })
                  .ok());
  const uint64_t id = Submit("job", "short");
  ASSERT_TRUE(pool.Start().ok());
  started.WaitForNotification();
  ASSERT_TRUE(pool.Stop(absl::Now() + absl::Seconds(60)).ok());
  EXPECT_EQ(Get(id).status(), COMPLETED);
  EXPECT_EQ(pool.Stats().released, 0u);
}

TEST_F(WorkerPoolTest, StopAtTheDeadlineReleasesAStuckHandlersClaim) {
  absl::Notification started;
  std::atomic<CancelReason> reason{CancelReason::kNone};
  std::atomic<bool> saw_deadline{false};
  WorkerPool pool(engine_.get(), PoolOptions(1));
  ASSERT_TRUE(pool.Register("stuck",
                            [&](const Task&, HandlerContext& ctx) {
                              started.Notify();
                              // Stuck until the pool gives up on it.
                              while (
                                  !ctx.WaitForCancellation(absl::Seconds(1))) {
                              }
                              reason = ctx.reason();
                              saw_deadline =
                                  ctx.stop_deadline() != absl::InfiniteFuture();
                              return Result("too late");
                            })
                  .ok());
  const uint64_t id = Submit("job", "stuck", /*max_attempts=*/1);
  ASSERT_TRUE(pool.Start().ok());
  started.WaitForNotification();
  ASSERT_TRUE(pool.Stop(absl::Now() + absl::Milliseconds(50)).ok());
  EXPECT_EQ(reason.load(), CancelReason::kStopDeadline);
  EXPECT_TRUE(saw_deadline.load());
  // Back to PENDING, and the released attempt is not counted: the task's
  // only attempt is still there for the next run.
  const Task task = Get(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.attempts(), 0u);
  EXPECT_EQ(task.result(), "");
  EXPECT_EQ(pool.Stats().released, 1u);
  EXPECT_EQ(pool.Stats().succeeded, 0u);
}

TEST_F(WorkerPoolTest, LostClaimCancelsTheHandlerAndIsCounted) {
  WorkerPoolOptions options = PoolOptions(1);
  options.lease = absl::Milliseconds(150);
  absl::Notification started;
  std::atomic<int> calls{0};
  std::atomic<CancelReason> first_reason{CancelReason::kNone};
  WorkerPool pool(engine_.get(), options);
  ASSERT_TRUE(pool.Register("job",
                            [&](const Task&, HandlerContext& ctx) {
                              if (++calls > 1) return Result("second");
                              started.Notify();
                              while (
                                  !ctx.WaitForCancellation(absl::Seconds(1))) {
                              }
                              first_reason = ctx.reason();
                              return Result("first");
                            })
                  .ok());
  const uint64_t id = Submit("job", "job");
  ASSERT_TRUE(pool.Start().ok());
  started.WaitForNotification();
  // An operator releases the claim; the next heartbeat finds it lost.
  ASSERT_TRUE(engine_->Retry(id).ok());
  ASSERT_TRUE(WaitForStatus(id, COMPLETED));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_EQ(first_reason.load(), CancelReason::kClaimLost);
  EXPECT_EQ(Get(id).result(), "second");
  EXPECT_EQ(pool.Stats().lost_claims, 1u);
  EXPECT_EQ(pool.Stats().succeeded, 1u);
}

TEST_F(WorkerPoolTest, ManyTasksAcrossTypesCompleteExactlyOnce) {
  constexpr int kTasksPerType = 100;
  const std::vector<std::string> types = {"a", "b", "c", "own"};
  absl::Mutex mu;
  absl::flat_hash_map<uint64_t, int> runs;  // Guarded by mu.
  WorkerPool pool(engine_.get(), PoolOptions(4));
  for (const std::string& type : types) {
    HandlerOptions handler_options;
    if (type == "own") handler_options.threads = 2;
    ASSERT_TRUE(pool.Register(
                        type,
                        [&](const Task& task, HandlerContext&) {
                          absl::MutexLock l(&mu);
                          ++runs[task.id()];
                          return Result(task.payload());
                        },
                        handler_options)
                    .ok());
  }
  ASSERT_TRUE(pool.Start().ok());
  std::vector<uint64_t> ids;
  for (int i = 0; i < kTasksPerType; ++i) {
    for (const std::string& type : types) {
      ids.push_back(Submit(absl::StrCat(type, "-", i), type));
    }
  }
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    return stats.ok() && stats->completed == ids.size();
  }));
  ASSERT_TRUE(pool.Stop(absl::Now() + absl::Seconds(10)).ok());
  absl::MutexLock l(&mu);
  EXPECT_EQ(runs.size(), ids.size());
  for (uint64_t id : ids) {
    EXPECT_EQ(runs[id], 1) << "task " << id;
    const Task task = Get(id);
    EXPECT_EQ(task.status(), COMPLETED);
    EXPECT_EQ(task.result(), task.payload());
  }
  EXPECT_EQ(pool.Stats().succeeded, ids.size());
  EXPECT_EQ(pool.Stats().lost_claims, 0u);
}

TEST_F(WorkerPoolTest, EngineCloseStopsTheWorkers) {
  WorkerPool pool(engine_.get(), PoolOptions(3));
  ASSERT_TRUE(pool.Register("t", [](const Task&,
                                    HandlerContext&) { return Result("ok"); })
                  .ok());
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(engine_->Close().ok());
  EXPECT_TRUE(pool.Stop(absl::Now()).ok());
}

TEST_F(WorkerPoolTest, RegistrationAndStartAreChecked) {
  auto ok = [](const Task&, HandlerContext&) { return Result("ok"); };
  WorkerPool empty(engine_.get(), PoolOptions());
  EXPECT_TRUE(absl::IsFailedPrecondition(empty.Start()));

  WorkerPool pool(engine_.get(), PoolOptions());
  EXPECT_TRUE(absl::IsInvalidArgument(pool.Register("t", nullptr)));
  EXPECT_TRUE(absl::IsInvalidArgument(pool.Register("", ok)));
  HandlerOptions negative;
  negative.threads = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(pool.Register("t", ok, negative)));
  ASSERT_TRUE(pool.Register("t", ok).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(pool.Register("t", ok)));
  ASSERT_TRUE(pool.Start().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(pool.Register("u", ok)));
  EXPECT_TRUE(absl::IsFailedPrecondition(pool.Start()));
  EXPECT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_TRUE(pool.Stop(absl::Now()).ok());  // A second Stop is OK.

  WorkerPoolOptions no_threads = PoolOptions(0);
  WorkerPool shared(engine_.get(), no_threads);
  ASSERT_TRUE(shared.Register("t", ok).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(shared.Start()));
}

TEST_F(WorkerPoolTest, FlowOptionsOutOfRangeAreRefusedByName) {
  auto ok = [](const Task&, HandlerContext&) { return Result("ok"); };
  WorkerPool pool(engine_.get(), PoolOptions());
  auto refused_naming = [&](const HandlerOptions& options,
                            absl::string_view option) {
    const absl::Status s = pool.Register("t", ok, options);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), option)) << s;
  };
  HandlerOptions o;
  o.max_running = -1;
  refused_naming(o, "max_running");
  for (double rate : {-1.0, 1e-7, 2e9, std::numeric_limits<double>::infinity(),
                      std::numeric_limits<double>::quiet_NaN()}) {
    o = HandlerOptions();
    o.rate_per_second = rate;
    refused_naming(o, "rate_per_second");
  }
  o = HandlerOptions();
  o.rate_per_second = 10;
  o.rate_burst = 0;
  refused_naming(o, "rate_burst");
  o.rate_per_second = 0;  // Without a rate the burst is ignored.
  EXPECT_TRUE(pool.Register("no-rate", ok, o).ok());
  o = HandlerOptions();
  o.max_running = 1;
  o.rate_per_second = HandlerOptions::kMinRatePerSecond;
  EXPECT_TRUE(pool.Register("slowest", ok, o).ok());
  o.rate_per_second = HandlerOptions::kMaxRatePerSecond;
  EXPECT_TRUE(pool.Register("fastest", ok, o).ok());
}

// Records how many handlers run at once, per type.
class ConcurrencyProbe {
 public:
  void Enter() {
    const int now = ++running_;
    int seen = max_.load();
    while (now > seen && !max_.compare_exchange_weak(seen, now)) {
    }
  }
  void Leave() { --running_; }
  int max() const { return max_.load(); }

 private:
  std::atomic<int> running_{0};
  std::atomic<int> max_{0};
};

TEST_F(WorkerPoolTest, MaxRunningIsNeverExceeded) {
  constexpr int kTasksPerType = 60;
  WorkerPool pool(engine_.get(), PoolOptions(8));
  ConcurrencyProbe shared_probe;
  ConcurrencyProbe own_probe;
  auto slow = [](ConcurrencyProbe* probe) {
    return [probe](const Task& task, HandlerContext&) {
      probe->Enter();
      absl::SleepFor(absl::Milliseconds(2));
      probe->Leave();
      return Result(task.payload());
    };
  };
  HandlerOptions shared;  // Eight shared threads, three at a time.
  shared.max_running = 3;
  ASSERT_TRUE(pool.Register("shared", slow(&shared_probe), shared).ok());
  HandlerOptions own;  // Six threads of its own, two at a time.
  own.threads = 6;
  own.max_running = 2;
  ASSERT_TRUE(pool.Register("own", slow(&own_probe), own).ok());
  // A type without limits keeps the shared threads busy meanwhile.
  ASSERT_TRUE(
      pool.Register("free",
                    [](const Task&, HandlerContext&) { return Result("ok"); })
          .ok());
  std::vector<uint64_t> ids;
  for (int i = 0; i < kTasksPerType; ++i) {
    for (const char* type : {"shared", "own", "free"}) {
      ids.push_back(Submit(absl::StrCat(type, i), type));
    }
  }
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    return stats.ok() && stats->completed == ids.size();
  }));
  ASSERT_TRUE(pool.Stop(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_LE(shared_probe.max(), 3);
  EXPECT_LE(own_probe.max(), 2);
  EXPECT_GE(shared_probe.max(), 1);
  EXPECT_GE(own_probe.max(), 1);
  for (uint64_t id : ids) {
    EXPECT_EQ(Get(id).attempts(), 1u) << id;
  }
  EXPECT_EQ(pool.Stats().succeeded, ids.size());
}

TEST_F(WorkerPoolTest, ATypeAtItsLimitIsNotClaimedAndDoesNotBlockOthers) {
  absl::Notification release;
  std::atomic<int> started{0};
  WorkerPool pool(engine_.get(), PoolOptions(2));
  HandlerOptions one_at_a_time;
  one_at_a_time.max_running = 1;
  ASSERT_TRUE(pool.Register(
                      "limited",
                      [&](const Task&, HandlerContext&) {
                        ++started;
                        release.WaitForNotification();
                        return Result("done");
                      },
                      one_at_a_time)
                  .ok());
  ASSERT_TRUE(
      pool.Register("other",
                    [](const Task&, HandlerContext&) { return Result("ok"); })
          .ok());
  const uint64_t first = Submit("first", "limited");
  const uint64_t second = Submit("second", "limited");
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return started.load() == 1; }));
  // The other thread serves the other type while "limited" is full...
  const uint64_t other = Submit("other", "other");
  ASSERT_TRUE(WaitForStatus(other, COMPLETED));
  // ...and has not claimed the second "limited" task to sit on it.
  absl::StatusOr<EngineStats> stats = engine_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->claimed, 1u);
  EXPECT_EQ(started.load(), 1);
  const uint64_t running = Get(first).status() == CLAIMED ? first : second;
  const uint64_t waiting = running == first ? second : first;
  EXPECT_EQ(Get(waiting).status(), PENDING);
  EXPECT_EQ(Get(waiting).attempts(), 0u);
  release.Notify();
  ASSERT_TRUE(WaitForStatus(waiting, COMPLETED));
  ASSERT_TRUE(WaitForStatus(running, COMPLETED));
  ASSERT_TRUE(pool.Stop(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(started.load(), 2);
}

// An upper bound only: however fast or slow the machine, no more than
// burst + rate * elapsed tasks start (plus one for the rounding of
// elapsed). No lower bound: a slow machine may start fewer.
TEST_F(WorkerPoolTest, RateLimitStartsAtMostBurstPlusRateTimesElapsed) {
  constexpr double kRate = 100;
  constexpr int kBurst = 5;
  std::atomic<int> started{0};
  WorkerPool pool(engine_.get(), PoolOptions(4));
  HandlerOptions limited;
  limited.rate_per_second = kRate;
  limited.rate_burst = kBurst;
  ASSERT_TRUE(pool.Register(
                      "limited",
                      [&](const Task&, HandlerContext&) {
                        ++started;
                        return Result("ok");
                      },
                      limited)
                  .ok());
  for (int i = 0; i < 500; ++i) Submit(absl::StrCat("k", i), "limited");
  const absl::Time begin = absl::Now();
  ASSERT_TRUE(pool.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return started.load() > 0; }));
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(pool.Stop(absl::Now() + absl::Seconds(10)).ok());
  const absl::Duration elapsed = absl::Now() - begin;
  const double bound = kBurst + kRate * absl::ToDoubleSeconds(elapsed) + 1;
  EXPECT_LE(started.load(), bound) << "in " << elapsed;
  absl::StatusOr<EngineStats> stats = engine_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_LE(stats->claims, bound) << "in " << elapsed;
  EXPECT_EQ(pool.Stats().lost_claims, 0u);
}

// With the pool's clock standing still, exactly `burst` tasks run; each
// step of the clock lets exactly the tokens it accrues through.
TEST_F(WorkerPoolTest, RateLimitFollowsThePoolsClock) {
  ManualClock pool_clock;
  WorkerPoolOptions options = PoolOptions(3);
  options.clock = &pool_clock;
  WorkerPool pool(engine_.get(), options);
  HandlerOptions limited;
  limited.rate_per_second = 1;
  limited.rate_burst = 2;
  ASSERT_TRUE(pool.Register(
                      "limited",
                      [](const Task&, HandlerContext&) { return Result("ok"); },
                      limited)
                  .ok());
  std::vector<uint64_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(Submit(absl::StrCat(i), "limited"));
  auto completed = [&] {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    return stats.ok() ? stats->completed : 0;
  };
  auto settles_at = [&](uint64_t n) {
    if (!WaitFor([&] { return completed() >= n; })) return false;
    // Give the threads many claim_waits to overshoot, if they would.
    absl::SleepFor(absl::Milliseconds(150));
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    return stats.ok() && stats->completed == n && stats->claims == n;
  };
  ASSERT_TRUE(pool.Start().ok());
  EXPECT_TRUE(settles_at(2));  // The full bucket.
  pool_clock.Advance(absl::Milliseconds(999));
  EXPECT_TRUE(settles_at(2));  // Not quite a token yet.
  pool_clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(settles_at(3));
  pool_clock.Advance(absl::Hours(1));  // The bucket holds at most two.
  EXPECT_TRUE(settles_at(5));
  pool_clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(settles_at(6));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  EXPECT_EQ(pool.Stats().succeeded, 6u);
}

// Threads that wait for a token or a slot stop waiting at Stop. The waits
// here would last claim_wait (ten minutes) or a token's 11.6 days: if Stop
// waited on them, the test would time out.
TEST_F(WorkerPoolTest, StopDoesNotWaitForATokenOrASlot) {
  WorkerPoolOptions options = PoolOptions(3);
  options.claim_wait = absl::Minutes(10);
  WorkerPool pool(engine_.get(), options);
  HandlerOptions rare;
  rare.threads = 3;
  rare.rate_per_second = HandlerOptions::kMinRatePerSecond;
  ASSERT_TRUE(pool.Register(
                      "rare",
                      [](const Task&, HandlerContext&) { return Result("ok"); },
                      rare)
                  .ok());
  absl::Notification stuck_started;
  std::atomic<int> stuck_calls{0};
  HandlerOptions one;
  one.max_running = 1;
  ASSERT_TRUE(pool.Register(
                      "stuck",
                      [&](const Task&, HandlerContext& ctx) {
                        if (++stuck_calls == 1) stuck_started.Notify();
                        while (!ctx.WaitForCancellation(absl::Seconds(1))) {
                        }
                        return Result("cancelled");
                      },
                      one)
                  .ok());
  const uint64_t rare_first = Submit("rare1", "rare");
  const uint64_t rare_second = Submit("rare2", "rare");
  const uint64_t stuck_first = Submit("stuck1", "stuck");
  const uint64_t stuck_second = Submit("stuck2", "stuck");
  ASSERT_TRUE(pool.Start().ok());
  stuck_started.WaitForNotification();
  ASSERT_TRUE(WaitFor([&] {
    return Get(rare_first).status() == COMPLETED ||
           Get(rare_second).status() == COMPLETED;
  }));
  ASSERT_TRUE(pool.Stop(absl::Now()).ok());
  // One "rare" task ran on the bucket's only token; the other waits.
  EXPECT_EQ(Get(rare_first).attempts() + Get(rare_second).attempts(), 1u);
  // The stuck claim was released (and a thread that got the freed slot
  // as Stop ended may have claimed and released one more, unrun).
  EXPECT_EQ(stuck_calls.load(), 1);
  EXPECT_EQ(Get(stuck_first).status(), PENDING);
  EXPECT_EQ(Get(stuck_second).status(), PENDING);
  EXPECT_EQ(Get(stuck_first).attempts() + Get(stuck_second).attempts(), 0u);
  EXPECT_GE(pool.Stats().released, 1u);
}

TEST_F(WorkerPoolTest, DestructorStopsARunningPool) {
  const uint64_t id = Submit("job", "t");
  {
    WorkerPool pool(engine_.get(), PoolOptions());
    ASSERT_TRUE(pool.Register("t", [](const Task&,
                                      HandlerContext&) { return Result("ok"); })
                    .ok());
    ASSERT_TRUE(pool.Start().ok());
    ASSERT_TRUE(WaitForStatus(id, COMPLETED));
  }
  EXPECT_EQ(Get(id).status(), COMPLETED);
}

}  // namespace
}  // namespace taskwal
