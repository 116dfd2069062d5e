#include "taskwal/worker_pool.h"

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
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
