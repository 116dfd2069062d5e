// EngineImpl behaviour that needs its internals: a journal that fails.
#include "engine/engine_impl.h"

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/journal.h"
#include "engine/partitioning.h"
#include "engine/state_machine.h"
#include "gtest/gtest.h"
#include "taskwal/clock.h"
#include "taskwal/engine.h"
#include "taskwal/fault_injection_env.h"

namespace taskwal::engine {
namespace {

// Fails Sync (or Append) on demand, as a disk returning EIO would.
class FlakyJournal final : public Journal {
 public:
  uint32_t partitions() const override { return inner_.partitions(); }
  absl::StatusOr<uint64_t> Append(uint32_t partition,
                                  const Transition& record) override {
    if (fail_append) return absl::InternalError("append: EIO");
    return inner_.Append(partition, record);
  }
  absl::Status AppendGroup(absl::Span<const uint32_t> partitions,
                           absl::Span<const Transition* const> records,
                           uint64_t* lsns) override {
    if (fail_append) return absl::InternalError("append: EIO");
    return inner_.AppendGroup(partitions, records, lsns);
  }
  absl::Status Sync(absl::Span<const PartitionLsn> records) override {
    ++syncs;
    if (fail_sync) return absl::ResourceExhaustedError("fdatasync: ENOSPC");
    return inner_.Sync(records);
  }
  absl::Status SyncAll() override {
    if (fail_sync) return absl::ResourceExhaustedError("fdatasync: ENOSPC");
    return inner_.SyncAll();
  }
  absl::StatusOr<uint64_t> StartSegment() override { return 0; }
  absl::Status DiscardBefore(uint64_t) override { return absl::OkStatus(); }
  uint64_t records() const override { return inner_.records(); }
  JournalStats stats() const override { return JournalStats(); }
  absl::Status Close() override { return inner_.Close(); }

  bool fail_append = false;
  bool fail_sync = false;
  int syncs = 0;  // Sync calls.

 private:
  MemoryJournal inner_;
};

class EngineImplTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(/*storage=*/nullptr); }

  // Replaces the engine with one on a fresh FlakyJournal and `storage`.
  void Start(std::unique_ptr<Storage> storage) {
    EngineOptions options;
    options.maintenance_interval = absl::ZeroDuration();
    auto journal = std::make_unique<FlakyJournal>();
    journal_ = journal.get();
    std::vector<std::unique_ptr<StateMachine>> states;
    states.push_back(std::make_unique<StateMachine>(
        options.num_shards, options.max_history_per_task));
    engine_ = std::make_unique<EngineImpl>(
        options, std::move(journal), std::move(states), std::move(storage));
  }

  absl::StatusOr<SubmitResult> SubmitKey(const std::string& key) {
    TaskSpec spec;
    spec.idempotency_key = key;
    return engine_->Submit(spec);
  }

  FlakyJournal* journal_ = nullptr;
  std::unique_ptr<EngineImpl> engine_;
};

// A full disk's kResourceExhausted would read as "max_tasks reached, retry
// later": the sticky error is kInternal, one status for every call.
TEST_F(EngineImplTest, SyncFailureIsStickyAndReadsStillWork) {
  ASSERT_TRUE(SubmitKey("a").ok());
  EXPECT_TRUE(engine_->Health().ok());
  journal_->fail_sync = true;
  const absl::Status sticky = SubmitKey("b").status();
  EXPECT_EQ(sticky.code(), absl::StatusCode::kInternal);
  EXPECT_NE(sticky.message().find("fdatasync: ENOSPC"), absl::string_view::npos)
      << sticky;
  EXPECT_EQ(engine_->Health(), sticky);
  // The disk recovers, but the engine does not trust it again.
  journal_->fail_sync = false;
  EXPECT_EQ(SubmitKey("c").status(), sticky);
  ClaimNextOptions o;
  EXPECT_EQ(engine_->ClaimNext("w", o).status(), sticky);
  EXPECT_EQ(engine_->RunMaintenance(), sticky);
  EXPECT_TRUE(engine_->GetByIdempotencyKey("a").ok());
  EXPECT_TRUE(engine_->Stats().ok());
  EXPECT_EQ(engine_->Health(), sticky);
  EXPECT_EQ(engine_->Close(), sticky);
  EXPECT_EQ(engine_->Health(), sticky);
}

TEST_F(EngineImplTest, HealthIsOkUntilClosed) {
  EXPECT_TRUE(engine_->Health().ok());
  ASSERT_TRUE(SubmitKey("a").ok());
  EXPECT_TRUE(engine_->Health().ok());
  ASSERT_TRUE(engine_->Close().ok());
  EXPECT_EQ(engine_->Health().code(), absl::StatusCode::kCancelled);
}

// A snapshot the disk has no room for leaves the engine writing on its
// log: kUnavailable (try later), never kResourceExhausted, and not sticky.
TEST_F(EngineImplTest, SnapshotOnAFullDiskIsUnavailableAndNotSticky) {
  FaultInjectionEnv env(/*seed=*/1);
  ASSERT_TRUE(env.CreateDir("/db").ok());
  auto storage = std::make_unique<Storage>();
  storage->env = &env;
  storage->dir = "/db";
  storage->snapshots =
      std::make_unique<DirSnapshotStore>(&env, "/db", /*partitions=*/1);
  Start(std::move(storage));
  ASSERT_TRUE(SubmitKey("a").ok());
  env.SetInjectedError(FaultInjectionEnv::InjectedError::kNoSpace);
  env.FailNextAppends(1000);
  const absl::Status failed = engine_->Snapshot();
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_NE(failed.message().find("injected ENOSPC"), absl::string_view::npos)
      << failed;
  EXPECT_TRUE(engine_->Health().ok());
  EXPECT_TRUE(SubmitKey("b").ok());
  env.FailNextAppends(0);
  EXPECT_TRUE(engine_->Snapshot().ok());
  EXPECT_EQ(engine_->Stats()->snapshots, 1u);
  EXPECT_TRUE(engine_->Close().ok());
}

TEST_F(EngineImplTest, AppendFailureChangesNothingAndIsSticky) {
  ASSERT_TRUE(SubmitKey("a").ok());
  journal_->fail_append = true;
  EXPECT_EQ(SubmitKey("b").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(engine_->GetByIdempotencyKey("b").status().code(),
            absl::StatusCode::kNotFound);
  journal_->fail_append = false;
  EXPECT_EQ(SubmitKey("b").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(engine_->Stats()->tasks, 1u);
}

TEST_F(EngineImplTest, DeduplicatedSubmitWaitsForTheOriginalRecord) {
  ASSERT_TRUE(SubmitKey("a").ok());
  journal_->fail_sync = true;
  // The dedup answer is only as good as the record that created the task,
  // so it must sync that record too, and here that fails.
  EXPECT_FALSE(SubmitKey("a").ok());
}

// A batch takes the tasks ClaimNext would, in its order, and waits for
// the journal once for all of them; so does a batch of completions.
TEST_F(EngineImplTest, BatchesWaitForTheJournalOnce) {
  std::vector<int32_t> expected;
  for (int i = 0; i < 8; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    spec.priority = (i * 5) % 8;
    ASSERT_TRUE(engine_->Submit(spec).ok());
    expected.push_back(spec.priority);
  }
  std::sort(expected.rbegin(), expected.rend());
  expected.resize(6);
  journal_->syncs = 0;
  absl::StatusOr<std::vector<ClaimedTask>> claimed =
      engine_->ClaimNextBatch("w", {}, 6);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(journal_->syncs, 1);
  std::vector<int32_t> priorities;
  std::vector<Completion> completions;
  for (const ClaimedTask& c : *claimed) {
    priorities.push_back(c.task.priority());
    completions.push_back({c.claim, "done"});
  }
  EXPECT_EQ(priorities, expected);
  journal_->syncs = 0;
  absl::StatusOr<std::vector<absl::Status>> done =
      engine_->CompleteBatch(completions);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(journal_->syncs, 1);
  EXPECT_EQ(engine_->Stats()->completed, 6u);
  // A failed sync fails the batch (and sticks).
  journal_->fail_sync = true;
  EXPECT_EQ(engine_->ClaimNextBatch("w", {}, 6).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(engine_->CompleteBatch(completions).status().code(),
            absl::StatusCode::kInternal);
}

TEST(ClaimNextBatchTest, AtMostMaxBatchSize) {
  EngineOptions options;
  options.max_batch_size = 3;
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Engine& engine = **opened;
  for (int i = 0; i < 5; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    ASSERT_TRUE(engine.Submit(spec).ok());
  }
  EXPECT_EQ(engine.ClaimNextBatch("w", {}, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<ClaimedTask>> claimed =
      engine.ClaimNextBatch("w", {}, 3);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(claimed->size(), 3u);
  ASSERT_TRUE(engine.Close().ok());
  EXPECT_EQ(engine.ClaimNextBatch("w", {}, 1).status().code(),
            absl::StatusCode::kCancelled);
}

// Among partitions with tasks of equal priority, ClaimNext goes round
// robin: a task alone in its partition is claimed within one round of the
// partitions, however large another partition's backlog.
TEST(ClaimNextAcrossPartitionsTest, NoPartitionWaitsBehindAnothersBacklog) {
  constexpr uint32_t kPartitions = 16;
  EngineOptions options;
  options.partitions = kPartitions;
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Engine& engine = **opened;
  const uint32_t busy = PartitionOfKey("busy-0", kPartitions);
  int backlog = 0;
  for (int i = 0; backlog < 500; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("busy-", i);
    if (PartitionOfKey(spec.idempotency_key, kPartitions) != busy) continue;
    ASSERT_TRUE(engine.Submit(spec).ok());
    ++backlog;
  }
  for (int round = 0; round < 3; ++round) {
    TaskSpec lone;
    for (int i = 0; lone.idempotency_key.empty(); ++i) {
      const std::string key = absl::StrCat("lone-", round, "-", i);
      if (PartitionOfKey(key, kPartitions) != busy) lone.idempotency_key = key;
    }
    ASSERT_TRUE(engine.Submit(lone).ok());
    int claims = 0;
    bool found = false;
    while (!found && claims < static_cast<int>(kPartitions)) {
      absl::StatusOr<ClaimedTask> c = engine.ClaimNext("w", {});
      ASSERT_TRUE(c.ok()) << c.status();
      ++claims;
      found = c->task.idempotency_key() == lone.idempotency_key;
    }
    EXPECT_TRUE(found) << "round " << round << ": the lone task waited "
                       << claims << " claims behind the backlog";
  }
  ASSERT_TRUE(engine.Close().ok());
}

// A higher priority wins across partitions, whatever the backlog of lower
// priority in the others.
TEST(ClaimNextAcrossPartitionsTest, HigherPriorityWinsAcrossPartitions) {
  EngineOptions options;
  options.partitions = 16;
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Engine& engine = **opened;
  for (int i = 0; i < 200; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("low-", i);
    ASSERT_TRUE(engine.Submit(spec).ok());
  }
  std::vector<std::string> urgent;
  for (int i = 0; i < 5; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("urgent-", i);
    spec.priority = 1 + i % 2;
    ASSERT_TRUE(engine.Submit(spec).ok());
  }
  std::vector<int32_t> priorities;
  for (int i = 0; i < 7; ++i) {
    absl::StatusOr<ClaimedTask> c = engine.ClaimNext("w", {});
    ASSERT_TRUE(c.ok()) << c.status();
    priorities.push_back(c->task.priority());
  }
  EXPECT_EQ(priorities, (std::vector<int32_t>{2, 2, 1, 1, 1, 0, 0}));
  ASSERT_TRUE(engine.Close().ok());
}

// A ClaimNext blocked waiting is woken by a task that becomes ready at
// once, however it does: a submit whose not-before time has passed, or a
// failed attempt retried without backoff, as well as a plain submit. (Each
// waiter waits 20 s; it must be woken well before.)
class BlockedClaimNextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.partitions = 4;
    options.clock = &clock_;
    options.maintenance_interval = absl::ZeroDuration();
    options.default_retry_policy.set_initial_backoff_micros(0);
    absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    engine_ = *std::move(opened);
  }

  // Starts a ClaimNext of `type` that waits up to 20 s.
  std::thread StartWaiter(std::string type, absl::Notification* claimed,
                          std::string* key) {
    return std::thread([this, type, claimed, key] {
      ClaimNextOptions o;
      o.type = type;
      o.wait = absl::Seconds(20);
      absl::StatusOr<ClaimedTask> c = engine_->ClaimNext("waiter", o);
      if (c.ok()) {
        *key = c->task.idempotency_key();
        claimed->Notify();
      }
    });
  }

  absl::Status Submit(std::string key, std::string type = "",
                      absl::Time not_before = absl::InfinitePast()) {
    TaskSpec spec;
    spec.idempotency_key = std::move(key);
    spec.type = std::move(type);
    spec.not_before = not_before;
    return engine_->Submit(spec).status();
  }

  ManualClock clock_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(BlockedClaimNextTest, WokenBySubmitWhoseNotBeforeHasPassed) {
  // Activity in every partition moves the schedulers' clocks past now.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(Submit(absl::StrCat("warm-", i), "other").ok());
  }
  clock_.Advance(absl::Seconds(5));
  for (int i = 40; i < 80; ++i) {
    ASSERT_TRUE(Submit(absl::StrCat("warm-", i), "other").ok());
  }
  absl::Notification claimed;
  std::string key;
  std::thread waiter = StartWaiter("late", &claimed, &key);
  absl::SleepFor(absl::Milliseconds(50));  // Let it block.
  ASSERT_TRUE(Submit("past", "late", clock_.Now() - absl::Seconds(1)).ok());
  EXPECT_TRUE(claimed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
  EXPECT_EQ(key, "past");
}

// A batch waits only for its first task; the rest are those ready then.
TEST_F(BlockedClaimNextTest, ABatchWaitsForItsFirstTask) {
  absl::Notification claimed;
  size_t got = 0;
  std::thread waiter([&] {
    ClaimNextOptions o;
    o.type = "batch";
    o.wait = absl::Seconds(20);
    absl::StatusOr<std::vector<ClaimedTask>> c =
        engine_->ClaimNextBatch("waiter", o, 10);
    if (c.ok()) {
      got = c->size();
      claimed.Notify();
    }
  });
  absl::SleepFor(absl::Milliseconds(50));  // Let it block.
  ASSERT_TRUE(Submit("first", "batch").ok());
  EXPECT_TRUE(claimed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
  EXPECT_GE(got, 1u);
  EXPECT_EQ(engine_->Stats()->claimed, got);
}

TEST_F(BlockedClaimNextTest, WokenByARetryWithoutBackoff) {
  ASSERT_TRUE(Submit("job", "retry").ok());
  absl::StatusOr<ClaimedTask> c = engine_->ClaimNext("first", {});
  ASSERT_TRUE(c.ok()) << c.status();
  absl::Notification claimed;
  std::string key;
  std::thread waiter = StartWaiter("retry", &claimed, &key);
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(engine_->Fail(c->claim, "e").ok());
  EXPECT_TRUE(claimed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
  EXPECT_EQ(key, "job");
}

// A batch of several types wakes a waiter of each type, not the oldest
// waiters whatever they want.
TEST_F(BlockedClaimNextTest, BatchOfSeveralTypesWakesAWaiterOfEach) {
  absl::Notification c1_claimed, c2_claimed, a_claimed;
  std::string c1_key, c2_key, a_key;
  std::thread c1 = StartWaiter("c", &c1_claimed, &c1_key);
  std::thread c2 = StartWaiter("c", &c2_claimed, &c2_key);
  absl::SleepFor(absl::Milliseconds(50));
  std::thread a = StartWaiter("a", &a_claimed, &a_key);
  absl::SleepFor(absl::Milliseconds(50));
  std::vector<TaskSpec> batch(2);
  batch[0].idempotency_key = "for-a";
  batch[0].type = "a";
  batch[1].idempotency_key = "for-b";
  batch[1].type = "b";
  ASSERT_TRUE(engine_->SubmitBatch(batch).ok());
  EXPECT_TRUE(a_claimed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(a_key, "for-a");
  // The "c" waiters get their own tasks.
  ASSERT_TRUE(Submit("for-c1", "c").ok());
  ASSERT_TRUE(Submit("for-c2", "c").ok());
  EXPECT_TRUE(c1_claimed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(c2_claimed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  a.join();
  c1.join();
  c2.join();
}

// FailOptions: a caller's retry delay and a permanent failure, both
// journaled, so a reopened engine has them.
class FailOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir =
        ::testing::TempDir() + "/fail_options_" +
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    options_.clock = &clock_;
    options_.sync_mode = SyncMode::kNone;
    options_.maintenance_interval = absl::ZeroDuration();
    Reopen();
  }

  void Reopen() {
    if (engine_ != nullptr) {
      ASSERT_TRUE(engine_->Close().ok());
    }
    engine_.reset();
    absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    engine_ = *std::move(opened);
  }

  ClaimedTask SubmitAndClaim(const std::string& key) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.max_attempts = 3;
    EXPECT_TRUE(engine_->Submit(spec).ok());
    absl::StatusOr<ClaimedTask> c = engine_->ClaimNext("w", {});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : ClaimedTask();
  }

  ManualClock clock_;
  EngineOptions options_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(FailOptionsTest, RetryAfterSetsTheClaimableTime) {
  const ClaimedTask c = SubmitAndClaim("k");
  FailOptions options;
  options.retry_after = absl::Minutes(7);
  ASSERT_TRUE(engine_->Fail(c.claim, "later", options).ok());
  const absl::Time due = clock_.Now() + absl::Minutes(7);
  Reopen();
  absl::StatusOr<Task> task = engine_->Get(c.claim.task_id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->status(), PENDING);
  EXPECT_EQ(task->attempts(), 1u);
  EXPECT_EQ(absl::FromUnixMicros(task->not_before_micros()), due);
  EXPECT_TRUE(absl::IsNotFound(engine_->ClaimNext("w", {}).status()));
  clock_.Advance(absl::Minutes(7));
  EXPECT_TRUE(engine_->ClaimNext("w", {}).ok());
}

TEST_F(FailOptionsTest, PermanentFailsTheTaskWithAttemptsLeft) {
  const ClaimedTask c = SubmitAndClaim("k");
  FailOptions options;
  options.permanent = true;
  options.retry_after = absl::ZeroDuration();  // Ignored: no more attempts.
  ASSERT_TRUE(engine_->Fail(c.claim, "bad input", options).ok());
  Reopen();
  absl::StatusOr<Task> task = engine_->Get(c.claim.task_id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->status(), FAILED);
  EXPECT_EQ(task->attempts(), 1u);
  EXPECT_EQ(task->last_error(), "bad input");
  // Retry still revives it, with a fresh budget.
  ASSERT_TRUE(engine_->Retry(c.claim.task_id).ok());
  EXPECT_TRUE(engine_->ClaimNext("w", {}).ok());
}

TEST_F(FailOptionsTest, NegativeOrInfiniteRetryAfterIsRefused) {
  const ClaimedTask c = SubmitAndClaim("k");
  FailOptions options;
  options.retry_after = -absl::Seconds(1);
  EXPECT_TRUE(absl::IsInvalidArgument(engine_->Fail(c.claim, "e", options)));
  options.retry_after = absl::InfiniteDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(engine_->Fail(c.claim, "e", options)));
  absl::StatusOr<Task> task = engine_->Get(c.claim.task_id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->status(), CLAIMED);
}

// EngineStats::by_type: per-type counts through every transition, the
// oldest ready task of each type, and both again after a reopen (replay)
// and after a snapshot.
class TypeStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir =
        ::testing::TempDir() + "/type_stats_" +
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    options_.clock = &clock_;
    options_.partitions = 4;
    options_.sync_mode = SyncMode::kNone;
    options_.maintenance_interval = absl::ZeroDuration();
    options_.retention = absl::Hours(1);
    Reopen();
  }

  void Reopen() {
    if (engine_ != nullptr) {
      ASSERT_TRUE(engine_->Close().ok());
    }
    engine_.reset();
    absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    engine_ = *std::move(opened);
  }

  uint64_t Submit(const std::string& key, const std::string& type,
                  int32_t priority = 0) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = type;
    spec.priority = priority;
    spec.max_attempts = 2;
    RetryPolicy no_backoff;
    no_backoff.set_multiplier(1.0);
    spec.retry_policy = no_backoff;
    absl::StatusOr<SubmitResult> r = engine_->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->task_id : 0;
  }

  ClaimRef Claim(uint64_t id, absl::Duration lease = absl::Seconds(30)) {
    absl::StatusOr<ClaimedTask> c = engine_->Claim(id, "w", lease);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->claim : ClaimRef();
  }

  // "type:pending,claimed,completed,failed,cancelled@oldest" per type,
  // oldest in milliseconds since the test began ("none": none ready);
  // checks that the types sum to the engine's counts.
  std::string ByType() {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    if (!stats.ok()) return "";
    TypeStats sum;
    std::string out;
    for (const auto& [type, t] : stats->by_type) {
      EXPECT_GT(t.tasks(), 0u) << type;
      sum.Merge(t);
      absl::StrAppend(
          &out, out.empty() ? "" : " ", type, ":", t.pending, ",", t.claimed,
          ",", t.completed, ",", t.failed, ",", t.cancelled, "@",
          t.oldest_ready == absl::InfiniteFuture()
              ? std::string("none")
              : absl::StrCat(
                    absl::ToInt64Milliseconds(t.oldest_ready - start_)));
    }
    EXPECT_EQ(sum.pending, stats->pending);
    EXPECT_EQ(sum.claimed, stats->claimed);
    EXPECT_EQ(sum.completed, stats->completed);
    EXPECT_EQ(sum.failed, stats->failed);
    EXPECT_EQ(sum.cancelled, stats->cancelled);
    return out;
  }

  ManualClock clock_;
  const absl::Time start_ = clock_.Now();
  EngineOptions options_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(TypeStatsTest, CountsFollowEveryTransitionAndSurviveReopen) {
  const uint64_t a = Submit("a", "mail");
  const uint64_t b = Submit("b", "mail");
  const uint64_t c = Submit("c", "sms");
  TaskSpec later;
  later.idempotency_key = "d";
  later.type = "report";
  later.not_before = start_ + absl::Minutes(10);
  ASSERT_TRUE(engine_->Submit(later).ok());
  const uint64_t e = Submit("e", "once");
  EXPECT_EQ(ByType(),
            "mail:2,0,0,0,0@0 once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:1,0,0,0,0@0");

  clock_.Advance(absl::Seconds(1));
  ClaimRef claim = Claim(a);
  EXPECT_EQ(ByType(),
            "mail:1,1,0,0,0@0 once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:1,0,0,0,0@0");
  ASSERT_TRUE(engine_->Complete(claim, "ok").ok());

  // Fail with an attempt left, then on the last one.
  clock_.Advance(absl::Seconds(1));
  FailOptions at_once;
  at_once.retry_after = absl::ZeroDuration();
  ASSERT_TRUE(engine_->Fail(Claim(b), "e", at_once).ok());
  EXPECT_EQ(ByType(),
            "mail:1,0,1,0,0@2000 once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:1,0,0,0,0@0");
  ASSERT_TRUE(engine_->Fail(Claim(b), "e").ok());
  EXPECT_EQ(ByType(),
            "mail:0,0,1,1,0@none once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:1,0,0,0,0@0");

  // Retry, then a lease that runs out.
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(engine_->Retry(b).ok());
  EXPECT_EQ(ByType(),
            "mail:1,0,1,0,0@3000 once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:1,0,0,0,0@0");
  Claim(b, absl::Seconds(5));
  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(engine_->RunMaintenance().ok());
  EXPECT_EQ(ByType(),
            "mail:1,0,1,0,0@9000 once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:1,0,0,0,0@0");

  // Cancel, then Delete the type's last task: the type is gone.
  ASSERT_TRUE(engine_->Cancel(c).ok());
  EXPECT_EQ(ByType(),
            "mail:1,0,1,0,0@9000 once:1,0,0,0,0@0 report:1,0,0,0,0@none "
            "sms:0,0,0,0,1@none");
  ASSERT_TRUE(engine_->Delete(c).ok());
  ASSERT_TRUE(engine_->Complete(Claim(e), "ok").ok());
  EXPECT_EQ(ByType(),
            "mail:1,0,1,0,0@9000 once:0,0,1,0,0@none report:1,0,0,0,0@none");

  // Retention removes both finished tasks: "once" is gone too. The delayed
  // task is ready since its not_before, claimed or not; a paused type
  // still counts.
  clock_.Advance(absl::Hours(2));
  ASSERT_TRUE(engine_->RunMaintenance().ok());
  ASSERT_TRUE(engine_->Pause("mail").ok());
  const std::string live = ByType();
  EXPECT_EQ(live, "mail:1,0,0,0,0@9000 report:1,0,0,0,0@600000");

  Reopen();  // Replay of the log.
  EXPECT_EQ(ByType(), live);
  ASSERT_TRUE(engine_->Snapshot().ok());
  Reopen();  // The snapshot, with nothing to replay after it.
  EXPECT_GT(engine_->Recovery().snapshot_lsn, 0u);
  EXPECT_EQ(engine_->Recovery().records_replayed, 0u);
  EXPECT_EQ(ByType(), live);
}

TEST_F(TypeStatsTest, OldestReadyIsTheLongestWaitingNotTheBest) {
  Submit("low", "mail", /*priority=*/0);
  clock_.Advance(absl::Seconds(1));
  Submit("high", "mail", /*priority=*/9);
  ClaimNextOptions mail;
  mail.type = "mail";
  absl::StatusOr<ClaimedTask> first = engine_->ClaimNext("w", mail);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->task.idempotency_key(), "high");
  EXPECT_EQ(ByType(), "mail:1,1,0,0,0@0");
  ASSERT_TRUE(engine_->ClaimNext("w", mail).ok());
  EXPECT_EQ(ByType(), "mail:0,2,0,0,0@none");
}

}  // namespace
}  // namespace taskwal::engine
