// The seed's scenarios (shared/seed/idempotent-tasks.md), end to end through
// the public API only: submission and deduplication, workers claiming,
// completing and failing with retries, lookups, stale-claim recovery, cleanup.
//
// Time is a ManualClock and the maintenance thread is off, so every lease,
// backoff and retention deadline is reached by Advance() + RunMaintenance().

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/clock.h"
#include "taskwal/engine.h"
#include "taskwal/task.pb.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;

// Every counter, so that "nothing changed" compares all of them at once.
std::string StatsString(const EngineStats& s) {
  return absl::StrCat(
      "pending=", s.pending, " claimed=", s.claimed, " completed=", s.completed,
      " failed=", s.failed, " cancelled=", s.cancelled, " tasks=", s.tasks,
      " deduplicated=", s.deduplicated, " submitted=", s.submitted,
      " claims=", s.claims, " completions=", s.completions,
      " failed_attempts=", s.failed_attempts,
      " lease_expiries=", s.lease_expiries, " retries=", s.retries,
      " cancellations=", s.cancellations, " deletions=", s.deletions,
      " retention_removals=", s.retention_removals,
      " transitions=", s.transitions);
}

// No jitter, so the test knows each delay exactly.
RetryPolicy FixedBackoff(absl::Duration initial, double multiplier = 2.0,
                         absl::Duration max = absl::Hours(1)) {
  RetryPolicy p;
  p.set_initial_backoff_micros(absl::ToInt64Microseconds(initial));
  p.set_max_backoff_micros(absl::ToInt64Microseconds(max));
  p.set_multiplier(multiplier);
  p.set_jitter(0.0);
  return p;
}

TaskSpec Spec(std::string key, std::string payload = "payload",
              std::string type = "process_order") {
  TaskSpec spec;
  spec.idempotency_key = std::move(key);
  spec.payload = std::move(payload);
  spec.type = std::move(type);
  return spec;
}

std::vector<uint64_t> Ids(const std::vector<Task>& tasks) {
  std::vector<uint64_t> ids;
  for (const Task& t : tasks) ids.push_back(t.id());
  return ids;
}

// Sorted ascending: what List returns for a set of ids.
std::vector<uint64_t> Ascending(std::vector<uint64_t> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Every scenario runs with one partition (the seed's semantics exactly) and
// with sixteen, where ids are unique but not in submission order across
// partitions, and ties in priority are not ordered across partitions.
class SeedScenariosTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override { OpenEngine(BaseOptions()); }

  void TearDown() override {
    if (engine_ != nullptr) {
      EXPECT_THAT(engine_->Close(), IsOk());
    }
  }

  EngineOptions BaseOptions() {
    EngineOptions options;
    options.clock = &clock_;
    options.maintenance_interval = absl::ZeroDuration();
    options.random_seed = 1;
    options.partitions = GetParam();
    return options;
  }

  bool OnePartition() const { return GetParam() == 1; }

  void OpenEngine(const EngineOptions& options) {
    if (engine_ != nullptr) {
      ASSERT_THAT(engine_->Close(), IsOk());
    }
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    ASSERT_THAT(engine, IsOk());
    engine_ = *std::move(engine);
  }

  // Submits a spec that must create a new task; returns its id (0 on error,
  // after recording the failure).
  uint64_t SubmitNew(const TaskSpec& spec) {
    absl::StatusOr<SubmitResult> r = engine_->Submit(spec);
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return 0;
    EXPECT_FALSE(r->deduplicated) << spec.idempotency_key;
    return r->task_id;
  }

  Task GetTask(uint64_t id) {
    absl::StatusOr<Task> task = engine_->Get(id);
    EXPECT_THAT(task, IsOk());
    return task.ok() ? *task : Task();
  }

  EngineStats GetStats() {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    EXPECT_THAT(stats, IsOk());
    return stats.ok() ? *stats : EngineStats();
  }

  std::vector<HistoryEntry> GetHistory(uint64_t id) {
    absl::StatusOr<std::vector<HistoryEntry>> h = engine_->History(id);
    EXPECT_THAT(h, IsOk());
    return h.ok() ? *h : std::vector<HistoryEntry>();
  }

  absl::StatusOr<ClaimedTask> ClaimNext(absl::string_view worker,
                                        std::string type = "") {
    ClaimNextOptions options;
    options.type = std::move(type);
    return engine_->ClaimNext(worker, options);
  }

  // Every task, paging with a small limit.
  std::vector<Task> ListAll(ListFilter filter = ListFilter()) {
    std::vector<Task> all;
    filter.limit = 2;
    for (int page = 0; page < 1000; ++page) {
      absl::StatusOr<ListPage> p = engine_->List(filter);
      EXPECT_THAT(p, IsOk());
      if (!p.ok()) break;
      all.insert(all.end(), p->tasks.begin(), p->tasks.end());
      if (p->next_cursor == 0) break;
      filter.after_id = p->next_cursor;
    }
    return all;
  }

  int64_t NowMicros() const { return absl::ToUnixMicros(clock_.Now()); }

  ManualClock clock_;
  std::unique_ptr<Engine> engine_;
};

// Demo 1: basic task submission.
TEST_P(SeedScenariosTest, SubmitCreatesPendingTaskWithSpecFields) {
  TaskSpec spec = Spec("order-12345", R"({"order":12345,"amount":99.99})");
  spec.priority = 7;
  absl::StatusOr<SubmitResult> r = engine_->Submit(spec);
  ASSERT_THAT(r, IsOk());
  EXPECT_NE(r->task_id, 0u);
  EXPECT_FALSE(r->deduplicated);

  Task task = GetTask(r->task_id);
  EXPECT_EQ(task.id(), r->task_id);
  EXPECT_EQ(task.idempotency_key(), "order-12345");
  EXPECT_EQ(task.type(), "process_order");
  EXPECT_EQ(task.payload(), spec.payload);
  EXPECT_EQ(task.priority(), 7);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.attempts(), 0u);
  EXPECT_EQ(task.max_attempts(), 3u);  // EngineOptions::default_max_attempts.
  EXPECT_EQ(task.created_micros(), NowMicros());
  EXPECT_EQ(task.claimed_by(), "");
  EXPECT_EQ(task.claim_token(), 0u);
  EXPECT_EQ(task.finished_micros(), 0);
  EXPECT_EQ(task.result(), "");
  EXPECT_EQ(task.retry_policy().initial_backoff_micros(),
            EngineOptions::DefaultRetryPolicy().initial_backoff_micros());

  std::vector<HistoryEntry> history = GetHistory(r->task_id);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].event(), HistoryEntry::SUBMITTED);
  EXPECT_EQ(history[0].to(), PENDING);

  EngineStats stats = GetStats();
  EXPECT_EQ(stats.pending, 1u);
  EXPECT_EQ(stats.tasks, 1u);
  EXPECT_EQ(stats.submitted, 1u);
}

TEST_P(SeedScenariosTest, SubmitHonoursExplicitMaxAttempts) {
  TaskSpec spec = Spec("order-1");
  spec.max_attempts = 5;
  const uint64_t id = SubmitNew(spec);
  EXPECT_EQ(GetTask(id).max_attempts(), 5u);
}

// Demo 2: idempotent deduplication.
TEST_P(SeedScenariosTest, ResubmittingSameKeyAndPayloadReturnsSameTask) {
  const uint64_t id = SubmitNew(Spec("order-12345"));
  const Task before = GetTask(id);

  absl::StatusOr<SubmitResult> again = engine_->Submit(Spec("order-12345"));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->task_id, id);
  EXPECT_TRUE(again->deduplicated);

  EXPECT_EQ(GetTask(id).DebugString(), before.DebugString());
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.tasks, 1u);
  EXPECT_EQ(stats.submitted, 1u);
  EXPECT_EQ(stats.deduplicated, 1u);
}

TEST_P(SeedScenariosTest, DeduplicatesWhateverTheTaskStatus) {
  TaskSpec once = Spec("fails");
  once.max_attempts = 1;
  const uint64_t pending = SubmitNew(Spec("pending"));
  const uint64_t claimed = SubmitNew(Spec("claimed"));
  const uint64_t completed = SubmitNew(Spec("completed"));
  const uint64_t failed = SubmitNew(once);
  const uint64_t cancelled = SubmitNew(Spec("cancelled"));

  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(claimed, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  absl::StatusOr<ClaimedTask> done =
      engine_->Claim(completed, "w", absl::ZeroDuration());
  ASSERT_THAT(done, IsOk());
  ASSERT_THAT(engine_->Complete(done->claim, "ok"), IsOk());
  absl::StatusOr<ClaimedTask> f =
      engine_->Claim(failed, "w", absl::ZeroDuration());
  ASSERT_THAT(f, IsOk());
  ASSERT_THAT(engine_->Fail(f->claim, "boom"), IsOk());
  ASSERT_THAT(engine_->Cancel(cancelled), IsOk());

  const struct {
    TaskSpec spec;
    uint64_t id;
    TaskStatus status;
  } cases[] = {{Spec("pending"), pending, PENDING},
               {Spec("claimed"), claimed, CLAIMED},
               {Spec("completed"), completed, COMPLETED},
               {once, failed, FAILED},
               {Spec("cancelled"), cancelled, CANCELLED}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec.idempotency_key);
    const Task before = GetTask(c.id);
    ASSERT_EQ(before.status(), c.status);
    absl::StatusOr<SubmitResult> r = engine_->Submit(c.spec);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->task_id, c.id);
    EXPECT_TRUE(r->deduplicated);
    EXPECT_EQ(GetTask(c.id).DebugString(), before.DebugString());
  }
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.submitted, 5u);
  EXPECT_EQ(stats.tasks, 5u);
  EXPECT_EQ(stats.deduplicated, 5u);
}

TEST_P(SeedScenariosTest, SameKeyWithDifferentPayloadOrTypeIsAlreadyExists) {
  const uint64_t id = SubmitNew(Spec("order-12345", "amount=99.99"));
  const Task task_before = GetTask(id);
  const std::string stats_before = StatsString(GetStats());

  EXPECT_THAT(
      engine_->Submit(Spec("order-12345", "amount=1.00")),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(absl::StrCat(id))));
  EXPECT_THAT(
      engine_->Submit(Spec("order-12345", "amount=99.99", "refund_order")),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(absl::StrCat(id))));

  EXPECT_EQ(GetTask(id).DebugString(), task_before.DebugString());
  EXPECT_EQ(StatsString(GetStats()), stats_before);
}

// Demo 3: submitting multiple unique tasks.
TEST_P(SeedScenariosTest, UniqueKeysGetDistinctIds) {
  std::vector<uint64_t> ids;
  for (int order = 12346; order <= 12350; ++order) {
    ids.push_back(SubmitNew(Spec(absl::StrCat("order-", order))));
  }
  EXPECT_EQ(std::set<uint64_t>(ids.begin(), ids.end()).size(), ids.size());
  // Within a partition ids increase; with one, they follow submission.
  if (OnePartition()) {
    for (size_t i = 1; i < ids.size(); ++i) EXPECT_GT(ids[i], ids[i - 1]);
  }
  for (uint64_t id : ids) EXPECT_EQ(GetTask(id).status(), PENDING);
  EXPECT_EQ(GetStats().pending, ids.size());
}

// Worker: the success path.
TEST_P(SeedScenariosTest, CompletedTaskStoresResultAndHistory) {
  const uint64_t id = SubmitNew(Spec("order-12345"));

  absl::StatusOr<ClaimedTask> claim = ClaimNext("worker-1");
  ASSERT_THAT(claim, IsOk());
  EXPECT_EQ(claim->task.id(), id);
  EXPECT_EQ(claim->task.status(), CLAIMED);
  EXPECT_EQ(claim->task.claimed_by(), "worker-1");
  // The claim names the task, the worker and the token as one value.
  EXPECT_EQ(claim->claim.task_id, id);
  EXPECT_EQ(claim->claim.worker_id, "worker-1");
  EXPECT_EQ(claim->task.claim_token(), claim->claim.token);
  EXPECT_NE(claim->claim.token, 0u);
  EXPECT_EQ(claim->attempt, 1u);
  EXPECT_EQ(claim->lease_deadline, clock_.Now() + absl::Seconds(30));

  Task claimed = GetTask(id);
  EXPECT_EQ(claimed.status(), CLAIMED);
  EXPECT_EQ(claimed.attempts(), 1u);
  EXPECT_EQ(claimed.claimed_by(), "worker-1");
  EXPECT_EQ(claimed.claimed_micros(), NowMicros());
  EXPECT_EQ(claimed.lease_deadline_micros(),
            absl::ToUnixMicros(claim->lease_deadline));

  clock_.Advance(absl::Seconds(2));
  ASSERT_THAT(
      engine_->Complete(claim->claim, "Order 12345 processed, charged $99.99"),
      IsOk());
  Task done = GetTask(id);
  EXPECT_EQ(done.status(), COMPLETED);
  EXPECT_EQ(done.result(), "Order 12345 processed, charged $99.99");
  EXPECT_EQ(done.finished_micros(), NowMicros());
  EXPECT_EQ(done.attempts(), 1u);

  std::vector<HistoryEntry> history = GetHistory(id);
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0].event(), HistoryEntry::SUBMITTED);
  EXPECT_EQ(history[1].event(), HistoryEntry::CLAIMED);
  EXPECT_EQ(history[1].worker_id(), "worker-1");
  EXPECT_EQ(history[1].attempt(), 1u);
  EXPECT_EQ(history[2].event(), HistoryEntry::COMPLETED);
  EXPECT_EQ(history[2].from(), CLAIMED);
  EXPECT_EQ(history[2].to(), COMPLETED);
  EXPECT_EQ(history[2].worker_id(), "worker-1");

  // Nothing else to do.
  EXPECT_THAT(ClaimNext("worker-1"), StatusIs(absl::StatusCode::kNotFound));
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.completed, 1u);
  EXPECT_EQ(stats.claims, 1u);
  EXPECT_EQ(stats.completions, 1u);
}

// Worker: "Retry queued ... (attempt 1/3)" until the task fails for good.
TEST_P(SeedScenariosTest, FailedAttemptsRetryWithBackoffUntilMaxAttempts) {
  TaskSpec spec = Spec("order-12346");
  spec.max_attempts = 3;
  spec.retry_policy = FixedBackoff(absl::Seconds(10), /*multiplier=*/2.0);
  const uint64_t id = SubmitNew(spec);

  // Attempts 1 and 2 fail with attempts left; the delays are 10s, then 20s.
  const absl::Duration delays[] = {absl::Seconds(10), absl::Seconds(20)};
  for (uint32_t attempt = 1; attempt <= 2; ++attempt) {
    SCOPED_TRACE(absl::StrCat("attempt ", attempt));
    absl::StatusOr<ClaimedTask> claim = ClaimNext("worker-1");
    ASSERT_THAT(claim, IsOk());
    ASSERT_EQ(claim->task.id(), id);
    EXPECT_EQ(claim->attempt, attempt);
    const std::string error = absl::StrCat("temporary error ", attempt);
    ASSERT_THAT(engine_->Fail(claim->claim, error), IsOk());

    Task task = GetTask(id);
    EXPECT_EQ(task.status(), PENDING);
    EXPECT_EQ(task.attempts(), attempt);
    EXPECT_EQ(task.last_error(), error);
    EXPECT_EQ(task.claimed_by(), "");
    EXPECT_EQ(task.claim_token(), 0u);
    const absl::Duration delay = delays[attempt - 1];
    EXPECT_EQ(task.not_before_micros(),
              NowMicros() + absl::ToInt64Microseconds(delay));
    // A worker that finds nothing ready learns that the task waits, and
    // until when.
    const absl::Time due = clock_.Now() + delay;
    EXPECT_THAT(engine_->NextDueTime(spec.type),
                wal::IsOkAndHolds(::testing::Optional(due)));
    EXPECT_THAT(engine_->NextDueTime(""),
                wal::IsOkAndHolds(::testing::Optional(due)));

    // Not claimable during the backoff, by either claim call.
    clock_.Advance(delay - absl::Microseconds(1));
    ASSERT_THAT(engine_->RunMaintenance(), IsOk());
    EXPECT_THAT(ClaimNext("worker-2"),
                StatusIs(absl::StatusCode::kNotFound,
                         HasSubstr(absl::StrCat("is ready; the next is due at ",
                                                absl::FormatTime(due)))));
    EXPECT_THAT(engine_->Claim(id, "worker-2", absl::ZeroDuration()),
                StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_EQ(GetTask(id).status(), PENDING);
    clock_.Advance(absl::Microseconds(1));
  }

  // Attempt 3 is the last: FAILED.
  absl::StatusOr<ClaimedTask> last = ClaimNext("worker-1");
  ASSERT_THAT(last, IsOk());
  EXPECT_EQ(last->attempt, 3u);
  ASSERT_THAT(engine_->Fail(last->claim, "permanent"), IsOk());
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), FAILED);
  // Nothing is pending any more: a worker loop may stop.
  EXPECT_THAT(engine_->NextDueTime(spec.type), wal::IsOkAndHolds(std::nullopt));
  EXPECT_THAT(ClaimNext("worker-2", spec.type),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no task of type \"process_order\" is "
                                 "pending")));
  EXPECT_EQ(task.attempts(), 3u);
  EXPECT_EQ(task.last_error(), "permanent");
  EXPECT_EQ(task.finished_micros(), NowMicros());
  clock_.Advance(absl::Hours(1));
  EXPECT_THAT(ClaimNext("worker-1"), StatusIs(absl::StatusCode::kNotFound));

  std::vector<HistoryEntry> history = GetHistory(id);
  ASSERT_EQ(history.size(), 7u);
  const HistoryEntry::Event events[] = {
      HistoryEntry::SUBMITTED,      HistoryEntry::CLAIMED,
      HistoryEntry::ATTEMPT_FAILED, HistoryEntry::CLAIMED,
      HistoryEntry::ATTEMPT_FAILED, HistoryEntry::CLAIMED,
      HistoryEntry::FAILED};
  for (size_t i = 0; i < history.size(); ++i) {
    EXPECT_EQ(history[i].event(), events[i]) << "entry " << i;
  }
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    const HistoryEntry& claimed = history[2 * attempt - 1];
    const HistoryEntry& failed = history[2 * attempt];
    EXPECT_EQ(claimed.worker_id(), "worker-1");
    EXPECT_EQ(claimed.attempt(), attempt);
    EXPECT_EQ(failed.worker_id(), "worker-1");
    EXPECT_EQ(failed.attempt(), attempt);
    EXPECT_EQ(failed.from(), CLAIMED);
    EXPECT_EQ(failed.to(), attempt < 3 ? PENDING : FAILED);
  }
  EXPECT_EQ(history[2].error(), "temporary error 1");
  EXPECT_EQ(history[6].error(), "permanent");

  EngineStats stats = GetStats();
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.claims, 3u);
  EXPECT_EQ(stats.failed_attempts, 3u);
}

TEST_P(SeedScenariosTest, ZeroBackoffPolicyMakesFailedTaskClaimableAtOnce) {
  TaskSpec spec = Spec("order-1");
  spec.retry_policy = FixedBackoff(absl::ZeroDuration());
  const uint64_t id = SubmitNew(spec);

  absl::StatusOr<ClaimedTask> first = ClaimNext("worker-1");
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(engine_->Fail(first->claim, "oops"), IsOk());

  absl::StatusOr<ClaimedTask> second = ClaimNext("worker-2");
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->task.id(), id);
  EXPECT_EQ(second->attempt, 2u);
  EXPECT_NE(second->claim.token, first->claim.token);
}

TEST_P(SeedScenariosTest, DefaultPolicyBackoffStaysWithinJitterBounds) {
  // Default: 1s initial, jitter 0.2.
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> claim = ClaimNext("worker-1");
  ASSERT_THAT(claim, IsOk());
  const int64_t failed_at = NowMicros();
  ASSERT_THAT(engine_->Fail(claim->claim, "oops"), IsOk());

  const int64_t delay = GetTask(id).not_before_micros() - failed_at;
  EXPECT_GE(delay, 800000);
  EXPECT_LE(delay, 1200000);

  clock_.Advance(absl::Microseconds(delay - 1));
  EXPECT_THAT(ClaimNext("worker-1"), StatusIs(absl::StatusCode::kNotFound));
  clock_.Advance(absl::Microseconds(1));
  EXPECT_THAT(ClaimNext("worker-1"), IsOk());
}

// "Run Multiple Workers": workers compete; each claim is exclusive.
TEST_P(SeedScenariosTest, CompetingWorkersClaimDifferentTasks) {
  const uint64_t a = SubmitNew(Spec("order-1"));
  const uint64_t b = SubmitNew(Spec("order-2"));

  absl::StatusOr<ClaimedTask> w1 = ClaimNext("worker-1");
  absl::StatusOr<ClaimedTask> w2 = ClaimNext("worker-2");
  ASSERT_THAT(w1, IsOk());
  ASSERT_THAT(w2, IsOk());
  EXPECT_NE(w1->task.id(), w2->task.id());
  EXPECT_EQ(std::set<uint64_t>({w1->task.id(), w2->task.id()}),
            std::set<uint64_t>({a, b}));
  EXPECT_NE(w1->claim.token, w2->claim.token);
  EXPECT_EQ(GetTask(w1->task.id()).claimed_by(), "worker-1");
  EXPECT_EQ(GetTask(w2->task.id()).claimed_by(), "worker-2");

  EXPECT_THAT(ClaimNext("worker-3"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine_->Claim(a, "worker-3", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(SeedScenariosTest, OnlyTheClaimHolderCanCompleteFailOrHeartbeat) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  SubmitNew(Spec("order-2"));
  absl::StatusOr<ClaimedTask> holder =
      engine_->Claim(id, "worker-1", absl::ZeroDuration());
  ASSERT_THAT(holder, IsOk());
  absl::StatusOr<ClaimedTask> other = ClaimNext("worker-2");
  ASSERT_THAT(other, IsOk());
  ASSERT_NE(other->task.id(), id);

  const Task task_before = GetTask(id);
  const std::string stats_before = StatsString(GetStats());
  const uint64_t tokens[] = {holder->claim.token, other->claim.token};
  for (uint64_t token : tokens) {
    SCOPED_TRACE(absl::StrCat("token ", token));
    EXPECT_THAT(engine_->Complete({id, "worker-2", token}, "stolen"),
                StatusIs(absl::StatusCode::kAborted));
    EXPECT_THAT(engine_->Fail({id, "worker-2", token}, "sabotage"),
                StatusIs(absl::StatusCode::kAborted));
    EXPECT_THAT(engine_->Heartbeat({id, "worker-2", token}, absl::Hours(1)),
                StatusIs(absl::StatusCode::kAborted));
  }
  // The right worker with a wrong token is not the holder either.
  EXPECT_THAT(
      engine_->Complete({id, "worker-1", holder->claim.token + 1000}, "x"),
      StatusIs(absl::StatusCode::kAborted));

  EXPECT_EQ(GetTask(id).DebugString(), task_before.DebugString());
  EXPECT_EQ(StatsString(GetStats()), stats_before);
  EXPECT_THAT(engine_->Complete(holder->claim, "done"), IsOk());
  EXPECT_EQ(GetTask(id).result(), "done");
}

// "Looking Up Tasks": by id, by key, by status.
TEST_P(SeedScenariosTest, GetAndGetByIdempotencyKeyReturnTheSameTask) {
  const uint64_t id = SubmitNew(Spec("order-12345"));
  absl::StatusOr<Task> by_id = engine_->Get(id);
  absl::StatusOr<Task> by_key = engine_->GetByIdempotencyKey("order-12345");
  ASSERT_THAT(by_id, IsOk());
  ASSERT_THAT(by_key, IsOk());
  EXPECT_EQ(by_key->id(), id);
  EXPECT_EQ(by_key->DebugString(), by_id->DebugString());
  EXPECT_THAT(engine_->GetByIdempotencyKey("order-99999"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(SeedScenariosTest, ListPagesCoverEveryTaskOnceInAscendingIdOrder) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 7; ++i)
    ids.push_back(SubmitNew(Spec(absl::StrCat("k", i))));

  ids = Ascending(ids);
  ListFilter filter;
  filter.limit = 3;
  absl::StatusOr<ListPage> p1 = engine_->List(filter);
  ASSERT_THAT(p1, IsOk());
  EXPECT_THAT(Ids(p1->tasks), ElementsAre(ids[0], ids[1], ids[2]));
  ASSERT_NE(p1->next_cursor, 0u);

  filter.after_id = p1->next_cursor;
  absl::StatusOr<ListPage> p2 = engine_->List(filter);
  ASSERT_THAT(p2, IsOk());
  EXPECT_THAT(Ids(p2->tasks), ElementsAre(ids[3], ids[4], ids[5]));
  ASSERT_NE(p2->next_cursor, 0u);

  filter.after_id = p2->next_cursor;
  absl::StatusOr<ListPage> p3 = engine_->List(filter);
  ASSERT_THAT(p3, IsOk());
  EXPECT_THAT(Ids(p3->tasks), ElementsAre(ids[6]));
  EXPECT_EQ(p3->next_cursor, 0u);
}

TEST_P(SeedScenariosTest, ListEndsWithZeroCursorWhenTasksDivideIntoPages) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i)
    ids.push_back(SubmitNew(Spec(absl::StrCat("k", i))));
  ids = Ascending(ids);
  ListFilter filter;
  filter.limit = 2;
  absl::StatusOr<ListPage> p1 = engine_->List(filter);
  ASSERT_THAT(p1, IsOk());
  EXPECT_THAT(Ids(p1->tasks), ElementsAre(ids[0], ids[1]));
  filter.after_id = p1->next_cursor;
  absl::StatusOr<ListPage> p2 = engine_->List(filter);
  ASSERT_THAT(p2, IsOk());
  EXPECT_THAT(Ids(p2->tasks), ElementsAre(ids[2], ids[3]));
  // Either this page says there is no more, or the next one is empty.
  if (p2->next_cursor != 0) {
    filter.after_id = p2->next_cursor;
    absl::StatusOr<ListPage> p3 = engine_->List(filter);
    ASSERT_THAT(p3, IsOk());
    EXPECT_TRUE(p3->tasks.empty());
    EXPECT_EQ(p3->next_cursor, 0u);
  }
}

TEST_P(SeedScenariosTest, ListFiltersByStatusAndType) {
  std::vector<uint64_t> orders, emails;
  for (int i = 0; i < 5; ++i) {
    orders.push_back(SubmitNew(Spec(absl::StrCat("order-", i))));
    emails.push_back(
        SubmitNew(Spec(absl::StrCat("email-", i), "p", "send_email")));
  }
  // Complete orders 1 and 3; cancel email 2.
  for (uint64_t id : {orders[1], orders[3]}) {
    absl::StatusOr<ClaimedTask> c =
        engine_->Claim(id, "w", absl::ZeroDuration());
    ASSERT_THAT(c, IsOk());
    ASSERT_THAT(engine_->Complete(c->claim, "ok"), IsOk());
  }
  ASSERT_THAT(engine_->Cancel(emails[2]), IsOk());

  ListFilter completed;
  completed.status = COMPLETED;
  EXPECT_EQ(Ids(ListAll(completed)), Ascending({orders[1], orders[3]}));

  ListFilter pending;
  pending.status = PENDING;
  EXPECT_EQ(Ids(ListAll(pending)),
            Ascending({orders[0], emails[0], emails[1], orders[2], emails[3],
                       orders[4], emails[4]}));

  ListFilter email_type;
  email_type.type = "send_email";
  EXPECT_EQ(Ids(ListAll(email_type)), Ascending(emails));

  ListFilter pending_orders;
  pending_orders.status = PENDING;
  pending_orders.type = "process_order";
  EXPECT_EQ(Ids(ListAll(pending_orders)),
            Ascending({orders[0], orders[2], orders[4]}));

  ListFilter cancelled;
  cancelled.status = CANCELLED;
  std::vector<Task> c = ListAll(cancelled);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].id(), emails[2]);
  EXPECT_EQ(c[0].status(), CANCELLED);

  EXPECT_EQ(ListAll().size(), 10u);
}

TEST_P(SeedScenariosTest, ClaimNextPrefersHigherPriorityThenLowerId) {
  const int32_t priorities[] = {0, 5, 5, -1, 10, 0};
  std::vector<uint64_t> ids;
  for (int i = 0; i < 6; ++i) {
    TaskSpec spec = Spec(absl::StrCat("k", i));
    spec.priority = priorities[i];
    ids.push_back(SubmitNew(spec));
  }
  std::vector<uint64_t> order;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<ClaimedTask> c = ClaimNext("w");
    ASSERT_THAT(c, IsOk());
    order.push_back(c->task.id());
  }
  if (OnePartition()) {
    EXPECT_THAT(order,
                ElementsAre(ids[4], ids[1], ids[2], ids[0], ids[5], ids[3]));
  } else {
    // Priority first, always; equal priorities in any order.
    EXPECT_EQ(order[0], ids[4]);
    EXPECT_EQ(std::set<uint64_t>(order.begin() + 1, order.begin() + 3),
              std::set<uint64_t>({ids[1], ids[2]}));
    EXPECT_EQ(std::set<uint64_t>(order.begin() + 3, order.begin() + 5),
              std::set<uint64_t>({ids[0], ids[5]}));
    EXPECT_EQ(order[5], ids[3]);
  }
  EXPECT_THAT(ClaimNext("w"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(SeedScenariosTest, ClaimNextWithTypeClaimsOnlyThatType) {
  TaskSpec urgent_order = Spec("order-1");
  urgent_order.priority = 100;
  const uint64_t order = SubmitNew(urgent_order);
  const uint64_t email1 = SubmitNew(Spec("email-1", "p", "send_email"));
  const uint64_t email2 = SubmitNew(Spec("email-2", "p", "send_email"));

  absl::StatusOr<ClaimedTask> c1 = ClaimNext("mailer", "send_email");
  ASSERT_THAT(c1, IsOk());
  absl::StatusOr<ClaimedTask> c2 = ClaimNext("mailer", "send_email");
  ASSERT_THAT(c2, IsOk());
  if (OnePartition()) {
    EXPECT_EQ(c1->task.id(), email1);
    EXPECT_EQ(c2->task.id(), email2);
  } else {  // Equal priorities: in either order.
    EXPECT_EQ(std::set<uint64_t>({c1->task.id(), c2->task.id()}),
              std::set<uint64_t>({email1, email2}));
  }
  EXPECT_THAT(ClaimNext("mailer", "send_email"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ClaimNext("mailer", "no_such_type"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(GetTask(order).status(), PENDING);

  absl::StatusOr<ClaimedTask> any = ClaimNext("worker");
  ASSERT_THAT(any, IsOk());
  EXPECT_EQ(any->task.id(), order);
}

TEST_P(SeedScenariosTest, TaskIsNotClaimableBeforeNotBefore) {
  TaskSpec later = Spec("later");
  later.not_before = clock_.Now() + absl::Minutes(5);
  later.priority = 10;
  const uint64_t id = SubmitNew(later);
  const uint64_t now_id = SubmitNew(Spec("now"));
  EXPECT_EQ(GetTask(id).not_before_micros(),
            absl::ToUnixMicros(later.not_before));

  // A task is ready: due now.
  EXPECT_THAT(engine_->NextDueTime(later.type),
              wal::IsOkAndHolds(::testing::Optional(clock_.Now())));
  // The due task is claimed although the delayed one has higher priority.
  absl::StatusOr<ClaimedTask> c = ClaimNext("w");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->task.id(), now_id);
  EXPECT_THAT(ClaimNext("w"), StatusIs(absl::StatusCode::kNotFound));
  // Nothing ready, but the delayed task is due at its not_before; no task
  // of another type is pending.
  EXPECT_THAT(engine_->NextDueTime(later.type),
              wal::IsOkAndHolds(::testing::Optional(later.not_before)));
  EXPECT_THAT(engine_->NextDueTime("other"), wal::IsOkAndHolds(std::nullopt));
  EXPECT_THAT(engine_->Claim(id, "w", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  clock_.Advance(absl::Minutes(5) - absl::Microseconds(1));
  EXPECT_THAT(ClaimNext("w"), StatusIs(absl::StatusCode::kNotFound));
  clock_.Advance(absl::Microseconds(1));
  absl::StatusOr<ClaimedTask> due = ClaimNext("w");
  ASSERT_THAT(due, IsOk());
  EXPECT_EQ(due->task.id(), id);
}

// The loop of a worker with a short wait: on kNotFound it asks NextDueTime
// and stops only when nothing is pending. Every task fails its first
// attempt, so the tasks spend most of the run in backoff; a loop that
// stopped at the first kNotFound would leave them PENDING.
TEST_P(SeedScenariosTest, WorkerLoopWithNextDueTimeFinishesTasksInBackoff) {
  constexpr uint64_t kTasks = 30;
  for (uint64_t i = 0; i < kTasks; ++i) {
    TaskSpec spec = Spec(absl::StrCat("job-", i));
    spec.retry_policy = FixedBackoff(absl::Seconds(1 + i % 5));
    SubmitNew(spec);
  }
  int idle_turns = 0;
  while (true) {
    absl::StatusOr<ClaimedTask> c = ClaimNext("worker-1", "process_order");
    if (absl::IsNotFound(c.status())) {
      ++idle_turns;
      absl::StatusOr<std::optional<absl::Time>> due =
          engine_->NextDueTime("process_order");
      ASSERT_THAT(due, IsOk());
      if (!due->has_value()) break;
      // Not ready yet, else ClaimNext would have claimed it. A real worker
      // sleeps until then (or waits that long in ClaimNext).
      ASSERT_GT(**due, clock_.Now());
      clock_.Advance(**due - clock_.Now());
      continue;
    }
    ASSERT_THAT(c, IsOk());
    if (c->attempt == 1) {
      ASSERT_THAT(engine_->Fail(c->claim, "flaky"), IsOk());
    } else {
      ASSERT_THAT(engine_->Complete(c->claim, "ok"), IsOk());
    }
  }
  EXPECT_GT(idle_turns, 1);
  const EngineStats stats = GetStats();
  EXPECT_EQ(stats.completed, kTasks);
  EXPECT_EQ(stats.pending, 0u);
}

TEST_P(SeedScenariosTest, ClaimOfSpecificTaskHonoursNotBefore) {
  TaskSpec later = Spec("later");
  later.not_before = clock_.Now() + absl::Seconds(1);
  const uint64_t id = SubmitNew(later);
  EXPECT_THAT(engine_->Claim(id, "w", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  clock_.Advance(absl::Seconds(1));
  absl::StatusOr<ClaimedTask> c = engine_->Claim(id, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->task.id(), id);
}

// "Stale Claim Recovery": a crashed worker's lease runs out.
TEST_P(SeedScenariosTest, ExpiredLeaseReturnsTaskToPendingOnMaintenance) {
  TaskSpec spec = Spec("order-1");
  spec.retry_policy = FixedBackoff(absl::ZeroDuration());
  const uint64_t id = SubmitNew(spec);
  absl::StatusOr<ClaimedTask> claim =
      engine_->Claim(id, "worker-1", absl::Minutes(5));
  ASSERT_THAT(claim, IsOk());
  EXPECT_EQ(claim->lease_deadline, clock_.Now() + absl::Minutes(5));

  // Just before the deadline the lease holds.
  clock_.Advance(absl::Minutes(5) - absl::Microseconds(1));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  EXPECT_EQ(GetTask(id).status(), CLAIMED);

  clock_.Advance(absl::Microseconds(2));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.last_error(), "lease expired");
  EXPECT_EQ(task.attempts(), 1u);
  EXPECT_EQ(task.claimed_by(), "");
  EXPECT_EQ(task.claim_token(), 0u);

  std::vector<HistoryEntry> history = GetHistory(id);
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back().event(), HistoryEntry::LEASE_EXPIRED);
  EXPECT_EQ(history.back().worker_id(), "worker-1");
  EXPECT_EQ(history.back().attempt(), 1u);
  EXPECT_EQ(history.back().from(), CLAIMED);
  EXPECT_EQ(history.back().to(), PENDING);

  EngineStats stats = GetStats();
  EXPECT_EQ(stats.lease_expiries, 1u);
  EXPECT_EQ(stats.failed_attempts, 1u);
  EXPECT_EQ(stats.pending, 1u);
  EXPECT_EQ(stats.claimed, 0u);
}

TEST_P(SeedScenariosTest, CompleteFromStaleClaimIsRejected) {
  TaskSpec spec = Spec("order-1");
  spec.retry_policy = FixedBackoff(absl::ZeroDuration());
  const uint64_t id = SubmitNew(spec);
  absl::StatusOr<ClaimedTask> stale =
      engine_->Claim(id, "worker-1", absl::Seconds(30));
  ASSERT_THAT(stale, IsOk());
  clock_.Advance(absl::Seconds(31));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());

  absl::StatusOr<ClaimedTask> fresh = ClaimNext("worker-2");
  ASSERT_THAT(fresh, IsOk());
  ASSERT_EQ(fresh->task.id(), id);
  EXPECT_EQ(fresh->attempt, 2u);

  const Task before = GetTask(id);
  const std::string stats_before = StatsString(GetStats());
  EXPECT_THAT(engine_->Complete(stale->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(engine_->Fail(stale->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(engine_->Heartbeat(stale->claim, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(GetTask(id).DebugString(), before.DebugString());
  EXPECT_EQ(StatsString(GetStats()), stats_before);

  ASSERT_THAT(engine_->Complete(fresh->claim, "on time"), IsOk());
  EXPECT_EQ(GetTask(id).result(), "on time");
}

TEST_P(SeedScenariosTest, StaleClaimOfSameWorkerIsRejectedAfterReclaim) {
  TaskSpec spec = Spec("order-1");
  spec.retry_policy = FixedBackoff(absl::ZeroDuration());
  const uint64_t id = SubmitNew(spec);
  absl::StatusOr<ClaimedTask> stale =
      engine_->Claim(id, "worker-1", absl::Seconds(30));
  ASSERT_THAT(stale, IsOk());
  clock_.Advance(absl::Seconds(31));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  absl::StatusOr<ClaimedTask> fresh = ClaimNext("worker-1");
  ASSERT_THAT(fresh, IsOk());
  ASSERT_NE(fresh->claim.token, stale->claim.token);

  EXPECT_THAT(engine_->Complete(stale->claim, "old"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(GetTask(id).status(), CLAIMED);
  EXPECT_THAT(engine_->Complete(fresh->claim, "new"), IsOk());
  EXPECT_EQ(GetTask(id).result(), "new");
}

TEST_P(SeedScenariosTest, LeaseExpiryOnLastAttemptFailsTask) {
  TaskSpec spec = Spec("order-1");
  spec.max_attempts = 2;
  spec.retry_policy = FixedBackoff(absl::ZeroDuration());
  const uint64_t id = SubmitNew(spec);

  for (uint32_t attempt = 1; attempt <= 2; ++attempt) {
    SCOPED_TRACE(absl::StrCat("attempt ", attempt));
    absl::StatusOr<ClaimedTask> c = ClaimNext("crashy");
    ASSERT_THAT(c, IsOk());
    EXPECT_EQ(c->attempt, attempt);
    clock_.Advance(absl::Seconds(31));  // Past default_lease.
    ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  }
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), FAILED);
  EXPECT_EQ(task.attempts(), 2u);
  EXPECT_EQ(task.last_error(), "lease expired");
  EXPECT_EQ(task.finished_micros(), NowMicros());
  std::vector<HistoryEntry> history = GetHistory(id);
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back().to(), FAILED);
  EXPECT_EQ(history.back().attempt(), 2u);
  EXPECT_THAT(ClaimNext("crashy"), StatusIs(absl::StatusCode::kNotFound));
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.lease_expiries, 2u);
}

TEST_P(SeedScenariosTest,
       CompleteAfterLeaseDeadlineIsRejectedWithoutMaintenance) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(id, "worker-1", absl::Seconds(10));
  ASSERT_THAT(c, IsOk());
  clock_.Advance(absl::Seconds(11));

  EXPECT_THAT(engine_->Complete(c->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.result(), "");
  EXPECT_EQ(task.last_error(), "lease expired");
  EXPECT_EQ(GetStats().completions, 0u);
}

TEST_P(SeedScenariosTest, FailAndHeartbeatAfterLeaseDeadlineAreRejected) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(id, "worker-1", absl::Seconds(10));
  ASSERT_THAT(c, IsOk());
  clock_.Advance(absl::Seconds(11));
  EXPECT_THAT(engine_->Heartbeat(c->claim, absl::Seconds(10)),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(engine_->Fail(c->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.last_error(), "lease expired");
  // One expiry, not one per call.
  EXPECT_EQ(task.attempts(), 1u);
  EXPECT_EQ(GetStats().failed_attempts, 1u);
}

TEST_P(SeedScenariosTest, HeartbeatExtendsLease) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(id, "worker-1", absl::Seconds(30));
  ASSERT_THAT(c, IsOk());

  for (int beat = 0; beat < 3; ++beat) {
    clock_.Advance(absl::Seconds(20));
    absl::StatusOr<absl::Time> deadline =
        engine_->Heartbeat(c->claim, absl::Seconds(30));
    ASSERT_THAT(deadline, IsOk());
    EXPECT_EQ(*deadline, clock_.Now() + absl::Seconds(30));
    EXPECT_EQ(GetTask(id).lease_deadline_micros(),
              absl::ToUnixMicros(*deadline));
  }
  // 60s after the claim, well past the original 30s lease.
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  EXPECT_EQ(GetTask(id).status(), CLAIMED);
  EXPECT_EQ(GetStats().lease_expiries, 0u);
  EXPECT_THAT(engine_->Complete(c->claim, "done"), IsOk());
  EXPECT_EQ(GetTask(id).status(), COMPLETED);
}

TEST_P(SeedScenariosTest, HeartbeatWithZeroExtensionUsesDefaultLease) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> c = engine_->Claim(id, "w", absl::Seconds(5));
  ASSERT_THAT(c, IsOk());
  clock_.Advance(absl::Seconds(4));
  absl::StatusOr<absl::Time> deadline =
      engine_->Heartbeat(c->claim, absl::ZeroDuration());
  ASSERT_THAT(deadline, IsOk());
  EXPECT_EQ(*deadline, clock_.Now() + absl::Seconds(30));
}

TEST_P(SeedScenariosTest, RepeatedCompleteFromSameClaimKeepsFirstResult) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> c = ClaimNext("worker-1");
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "first"), IsOk());
  const Task before = GetTask(id);
  const std::string stats_before = StatsString(GetStats());

  clock_.Advance(absl::Minutes(1));
  EXPECT_THAT(engine_->Complete(c->claim, "second"), IsOk());
  EXPECT_EQ(GetTask(id).result(), "first");
  EXPECT_EQ(GetTask(id).DebugString(), before.DebugString());
  EXPECT_EQ(StatsString(GetStats()), stats_before);

  // The completed claim cannot turn into a failure either.
  EXPECT_THAT(engine_->Fail(c->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(GetTask(id).status(), COMPLETED);
}

TEST_P(SeedScenariosTest, RetryReleasesClaimedTaskOnItsLastAttempt) {
  TaskSpec spec = Spec("order-1");
  spec.max_attempts = 1;
  const uint64_t id = SubmitNew(spec);
  absl::StatusOr<ClaimedTask> c = ClaimNext("worker-1");
  ASSERT_THAT(c, IsOk());
  ASSERT_EQ(c->attempt, 1u);

  ASSERT_THAT(engine_->Retry(id), IsOk());
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.attempts(), 0u);  // The released attempt does not count.
  EXPECT_EQ(task.claimed_by(), "");
  EXPECT_EQ(GetHistory(id).back().event(), HistoryEntry::RETRIED);
  EXPECT_EQ(GetStats().retries, 1u);

  // The released claim is gone.
  EXPECT_THAT(engine_->Complete(c->claim, "x"),
              StatusIs(absl::StatusCode::kAborted));

  absl::StatusOr<ClaimedTask> again = ClaimNext("worker-2");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->task.id(), id);
  EXPECT_EQ(again->attempt, 1u);
  ASSERT_THAT(engine_->Complete(again->claim, "ok"), IsOk());
  EXPECT_EQ(GetTask(id).status(), COMPLETED);
}

TEST_P(SeedScenariosTest, RetryRedrivesFailedTaskWithFreshAttempts) {
  TaskSpec spec = Spec("order-1");
  spec.max_attempts = 1;
  const uint64_t id = SubmitNew(spec);
  absl::StatusOr<ClaimedTask> c = ClaimNext("worker-1");
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Fail(c->claim, "down"), IsOk());
  ASSERT_EQ(GetTask(id).status(), FAILED);

  ASSERT_THAT(engine_->Retry(id), IsOk());
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.attempts(), 0u);
  EXPECT_EQ(task.finished_micros(), 0);
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.pending, 1u);

  absl::StatusOr<ClaimedTask> again = ClaimNext("worker-1");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->task.id(), id);
  EXPECT_EQ(again->attempt, 1u);
}

TEST_P(SeedScenariosTest, RetryOfPendingTaskSkipsBackoff) {
  TaskSpec spec = Spec("order-1");
  spec.retry_policy = FixedBackoff(absl::Hours(1));
  const uint64_t id = SubmitNew(spec);
  absl::StatusOr<ClaimedTask> c = ClaimNext("w");
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Fail(c->claim, "e"), IsOk());
  ASSERT_THAT(ClaimNext("w"), StatusIs(absl::StatusCode::kNotFound));

  ASSERT_THAT(engine_->Retry(id), IsOk());
  absl::StatusOr<ClaimedTask> now = ClaimNext("w");
  ASSERT_THAT(now, IsOk());
  EXPECT_EQ(now->task.id(), id);
}

TEST_P(SeedScenariosTest, RetryOfCompletedOrCancelledTaskIsRejected) {
  const uint64_t done = SubmitNew(Spec("done"));
  const uint64_t cancelled = SubmitNew(Spec("cancelled"));
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(done, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "r"), IsOk());
  ASSERT_THAT(engine_->Cancel(cancelled), IsOk());
  const std::string stats_before = StatsString(GetStats());

  for (uint64_t id : {done, cancelled}) {
    const Task before = GetTask(id);
    EXPECT_THAT(engine_->Retry(id),
                StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_EQ(GetTask(id).DebugString(), before.DebugString());
  }
  EXPECT_EQ(StatsString(GetStats()), stats_before);
}

TEST_P(SeedScenariosTest, CancelOnlyAffectsPendingTasks) {
  const uint64_t pending = SubmitNew(Spec("pending"));
  const uint64_t claimed = SubmitNew(Spec("claimed"));
  const uint64_t completed = SubmitNew(Spec("completed"));
  ASSERT_THAT(engine_->Claim(claimed, "w", absl::ZeroDuration()), IsOk());
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(completed, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "r"), IsOk());

  ASSERT_THAT(engine_->Cancel(pending), IsOk());
  Task task = GetTask(pending);
  EXPECT_EQ(task.status(), CANCELLED);
  EXPECT_EQ(task.finished_micros(), NowMicros());
  EXPECT_EQ(GetHistory(pending).back().event(), HistoryEntry::CANCELLED);
  EXPECT_THAT(ClaimNext("w"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine_->Claim(pending, "w", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  const std::string stats_before = StatsString(GetStats());
  for (uint64_t id : {claimed, completed, pending}) {
    const Task before = GetTask(id);
    EXPECT_THAT(engine_->Cancel(id),
                StatusIs(absl::StatusCode::kFailedPrecondition))
        << "task " << id;
    EXPECT_EQ(GetTask(id).DebugString(), before.DebugString());
  }
  EXPECT_EQ(StatsString(GetStats()), stats_before);
  EXPECT_EQ(GetStats().cancellations, 1u);
}

// "Task Cleanup": deleting old finished tasks.
TEST_P(SeedScenariosTest, DeleteFreesKeyForANewTask) {
  const uint64_t old_id = SubmitNew(Spec("order-1", "v1"));
  absl::StatusOr<ClaimedTask> c = ClaimNext("w");
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "r"), IsOk());

  ASSERT_THAT(engine_->Delete(old_id), IsOk());
  EXPECT_THAT(engine_->Get(old_id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine_->History(old_id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine_->GetByIdempotencyKey("order-1"),
              StatusIs(absl::StatusCode::kNotFound));
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.tasks, 0u);
  EXPECT_EQ(stats.completed, 0u);
  EXPECT_EQ(stats.deletions, 1u);

  // Even with a different payload: the key is free.
  absl::StatusOr<SubmitResult> fresh = engine_->Submit(Spec("order-1", "v2"));
  ASSERT_THAT(fresh, IsOk());
  EXPECT_FALSE(fresh->deduplicated);
  EXPECT_GT(fresh->task_id, old_id);
  Task task = GetTask(fresh->task_id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.payload(), "v2");
  absl::StatusOr<Task> by_key = engine_->GetByIdempotencyKey("order-1");
  ASSERT_THAT(by_key, IsOk());
  EXPECT_EQ(by_key->id(), fresh->task_id);
}

TEST_P(SeedScenariosTest, DeleteOfActiveTaskIsRejected) {
  const uint64_t pending = SubmitNew(Spec("pending"));
  const uint64_t claimed = SubmitNew(Spec("claimed"));
  ASSERT_THAT(engine_->Claim(claimed, "w", absl::ZeroDuration()), IsOk());
  const std::string stats_before = StatsString(GetStats());
  for (uint64_t id : {pending, claimed}) {
    const Task before = GetTask(id);
    EXPECT_THAT(engine_->Delete(id),
                StatusIs(absl::StatusCode::kFailedPrecondition))
        << "task " << id;
    EXPECT_EQ(GetTask(id).DebugString(), before.DebugString());
  }
  EXPECT_EQ(StatsString(GetStats()), stats_before);
  // The keys still deduplicate.
  absl::StatusOr<SubmitResult> r = engine_->Submit(Spec("pending"));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->task_id, pending);
}

TEST_P(SeedScenariosTest, DeleteOfFailedAndCancelledTasksSucceeds) {
  TaskSpec once = Spec("failed");
  once.max_attempts = 1;
  const uint64_t failed = SubmitNew(once);
  const uint64_t cancelled = SubmitNew(Spec("cancelled"));
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(failed, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Fail(c->claim, "e"), IsOk());
  ASSERT_THAT(engine_->Cancel(cancelled), IsOk());
  EXPECT_THAT(engine_->Delete(failed), IsOk());
  EXPECT_THAT(engine_->Delete(cancelled), IsOk());
  EXPECT_THAT(engine_->Delete(failed), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(GetStats().tasks, 0u);
  EXPECT_EQ(GetStats().deletions, 2u);
}

TEST_P(SeedScenariosTest, RetentionRemovesTerminalTasksAndFreesKeys) {
  EngineOptions options = BaseOptions();
  options.retention = absl::Hours(1);
  OpenEngine(options);
  TaskSpec once = Spec("failed");
  once.max_attempts = 1;

  const uint64_t completed = SubmitNew(Spec("completed"));
  const uint64_t failed = SubmitNew(once);
  const uint64_t cancelled = SubmitNew(Spec("cancelled"));
  const uint64_t pending = SubmitNew(Spec("pending"));
  const uint64_t claimed = SubmitNew(Spec("claimed"));
  absl::StatusOr<ClaimedTask> c1 =
      engine_->Claim(completed, "w", absl::ZeroDuration());
  ASSERT_THAT(c1, IsOk());
  ASSERT_THAT(engine_->Complete(c1->claim, "r"), IsOk());
  absl::StatusOr<ClaimedTask> c2 =
      engine_->Claim(failed, "w", absl::ZeroDuration());
  ASSERT_THAT(c2, IsOk());
  ASSERT_THAT(engine_->Fail(c2->claim, "e"), IsOk());
  ASSERT_THAT(engine_->Cancel(cancelled), IsOk());

  // Keep the claim alive past the retention horizon.
  absl::StatusOr<ClaimedTask> c3 = engine_->Claim(claimed, "w", absl::Hours(3));
  ASSERT_THAT(c3, IsOk());

  clock_.Advance(absl::Hours(1) - absl::Microseconds(1));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  EXPECT_EQ(GetStats().tasks, 5u);
  EXPECT_EQ(GetStats().retention_removals, 0u);

  clock_.Advance(absl::Microseconds(2));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  for (uint64_t id : {completed, failed, cancelled}) {
    EXPECT_THAT(engine_->Get(id), StatusIs(absl::StatusCode::kNotFound))
        << "task " << id;
  }
  EXPECT_EQ(GetTask(pending).status(), PENDING);
  EXPECT_EQ(GetTask(claimed).status(), CLAIMED);
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.retention_removals, 3u);
  EXPECT_EQ(stats.deletions, 0u);
  EXPECT_EQ(stats.tasks, 2u);
  EXPECT_EQ(stats.completed + stats.failed + stats.cancelled, 0u);

  // The key is free: a new task, not the old one.
  absl::StatusOr<SubmitResult> again =
      engine_->Submit(Spec("completed", "new"));
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->deduplicated);
  EXPECT_GT(again->task_id, claimed);
}

TEST_P(SeedScenariosTest, ZeroRetentionKeepsTerminalTasksForever) {
  const uint64_t id = SubmitNew(Spec("order-1"));
  absl::StatusOr<ClaimedTask> c = ClaimNext("w");
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "r"), IsOk());
  clock_.Advance(absl::Hours(24 * 365));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  EXPECT_EQ(GetTask(id).status(), COMPLETED);
  EXPECT_EQ(GetStats().retention_removals, 0u);
}

TEST_P(SeedScenariosTest, SubmitBatchWithInvalidSpecChangesNothing) {
  SubmitNew(Spec("existing"));
  const std::string stats_before = StatsString(GetStats());
  std::vector<TaskSpec> batch = {Spec("a"), Spec("b"), Spec(""), Spec("c")};

  EXPECT_THAT(
      engine_->SubmitBatch(batch),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index 2")));
  EXPECT_EQ(StatsString(GetStats()), stats_before);
  for (const char* key : {"a", "b", "c"}) {
    EXPECT_THAT(engine_->GetByIdempotencyKey(key),
                StatusIs(absl::StatusCode::kNotFound))
        << key;
  }
}

TEST_P(SeedScenariosTest, SubmitBatchWithConflictingKeyChangesNothing) {
  const uint64_t existing = SubmitNew(Spec("existing", "v1"));
  const std::string stats_before = StatsString(GetStats());

  // Against a stored task.
  std::vector<TaskSpec> batch = {Spec("a"), Spec("existing", "v2"), Spec("b")};
  EXPECT_THAT(engine_->SubmitBatch(batch),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       ::testing::AllOf(HasSubstr("index 1"),
                                        HasSubstr(absl::StrCat(existing)))));
  // Against an earlier spec in the same batch.
  std::vector<TaskSpec> inner = {Spec("a"), Spec("b"), Spec("c"),
                                 Spec("a", "other")};
  EXPECT_THAT(engine_->SubmitBatch(inner),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("index 3")));

  EXPECT_EQ(StatsString(GetStats()), stats_before);
  for (const char* key : {"a", "b", "c"}) {
    EXPECT_THAT(engine_->GetByIdempotencyKey(key),
                StatusIs(absl::StatusCode::kNotFound))
        << key;
  }
  EXPECT_EQ(GetTask(existing).payload(), "v1");
}

TEST_P(SeedScenariosTest, SubmitBatchDeduplicatesWithinBatchAndAgainstStore) {
  const uint64_t existing = SubmitNew(Spec("existing"));
  std::vector<TaskSpec> batch = {Spec("a"), Spec("existing"), Spec("b"),
                                 Spec("a")};
  absl::StatusOr<std::vector<SubmitResult>> r = engine_->SubmitBatch(batch);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->size(), 4u);
  EXPECT_FALSE((*r)[0].deduplicated);
  EXPECT_NE((*r)[0].task_id, existing);
  EXPECT_TRUE((*r)[1].deduplicated);
  EXPECT_EQ((*r)[1].task_id, existing);
  EXPECT_FALSE((*r)[2].deduplicated);
  EXPECT_NE((*r)[2].task_id, (*r)[0].task_id);
  if (OnePartition()) {
    EXPECT_GT((*r)[0].task_id, existing);
    EXPECT_GT((*r)[2].task_id, (*r)[0].task_id);
  }
  EXPECT_TRUE((*r)[3].deduplicated);
  EXPECT_EQ((*r)[3].task_id, (*r)[0].task_id);

  EXPECT_EQ(GetTask((*r)[0].task_id).idempotency_key(), "a");
  EXPECT_EQ(GetTask((*r)[2].task_id).idempotency_key(), "b");
  EngineStats stats = GetStats();
  EXPECT_EQ(stats.submitted, 3u);
  EXPECT_EQ(stats.tasks, 3u);
  EXPECT_EQ(stats.deduplicated, 2u);
}

TEST_P(SeedScenariosTest, StatsCountTasksPerStatus) {
  TaskSpec once = Spec("failed");
  once.max_attempts = 1;
  SubmitNew(Spec("pending-1"));
  SubmitNew(Spec("pending-2"));
  const uint64_t claimed = SubmitNew(Spec("claimed"));
  const uint64_t completed = SubmitNew(Spec("completed"));
  const uint64_t failed = SubmitNew(once);
  const uint64_t cancelled = SubmitNew(Spec("cancelled"));
  ASSERT_THAT(engine_->Claim(claimed, "w", absl::ZeroDuration()), IsOk());
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(completed, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "r"), IsOk());
  absl::StatusOr<ClaimedTask> f =
      engine_->Claim(failed, "w", absl::ZeroDuration());
  ASSERT_THAT(f, IsOk());
  ASSERT_THAT(engine_->Fail(f->claim, "e"), IsOk());
  ASSERT_THAT(engine_->Cancel(cancelled), IsOk());
  ASSERT_THAT(engine_->Submit(Spec("pending-1")), IsOk());  // Deduplicated.

  EngineStats s = GetStats();
  EXPECT_EQ(s.pending, 2u);
  EXPECT_EQ(s.claimed, 1u);
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.cancelled, 1u);
  EXPECT_EQ(s.tasks, 6u);
  EXPECT_EQ(s.submitted, 6u);
  EXPECT_EQ(s.deduplicated, 1u);
  EXPECT_EQ(s.claims, 3u);
  EXPECT_EQ(s.completions, 1u);
  EXPECT_EQ(s.failed_attempts, 1u);
  EXPECT_EQ(s.lease_expiries, 0u);
  EXPECT_EQ(s.cancellations, 1u);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_EQ(s.deletions, 0u);
  // 6 submits (one record each), 3 claims, 1 complete, 1 fail, 1 cancel.
  EXPECT_EQ(s.transitions, 12u);

  // Each status count matches a List of that status.
  const std::pair<TaskStatus, uint64_t> by_status[] = {
      {PENDING, s.pending},
      {CLAIMED, s.claimed},
      {COMPLETED, s.completed},
      {FAILED, s.failed},
      {CANCELLED, s.cancelled}};
  for (const auto& [status, count] : by_status) {
    ListFilter filter;
    filter.status = status;
    EXPECT_EQ(ListAll(filter).size(), count) << TaskStatus_Name(status);
  }
}

TEST_P(SeedScenariosTest, BlockedClaimNextReceivesTaskSubmittedLater) {
  absl::StatusOr<ClaimedTask> claimed = absl::UnknownError("not run");
  std::thread worker([&] {
    ClaimNextOptions options;
    options.wait = absl::Seconds(10);
    claimed = engine_->ClaimNext("worker-1", options);
  });
  absl::SleepFor(absl::Milliseconds(50));
  const uint64_t id = SubmitNew(Spec("order-1"));
  worker.join();

  ASSERT_THAT(claimed, IsOk());
  EXPECT_EQ(claimed->task.id(), id);
  EXPECT_EQ(GetTask(id).status(), CLAIMED);
  EXPECT_EQ(GetTask(id).claimed_by(), "worker-1");
}

TEST_P(SeedScenariosTest, CloseWakesBlockedClaimNext) {
  absl::StatusOr<ClaimedTask> claimed = absl::UnknownError("not run");
  std::thread worker([&] {
    ClaimNextOptions options;
    options.wait = absl::Seconds(10);
    claimed = engine_->ClaimNext("worker-1", options);
  });
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_THAT(engine_->Close(), IsOk());
  worker.join();

  // kNotFound here would mean the wait ran out instead of being woken.
  EXPECT_THAT(claimed, StatusIs(absl::StatusCode::kCancelled));
}

INSTANTIATE_TEST_SUITE_P(Partitions, SeedScenariosTest,
                         ::testing::Values(1u, 16u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat(info.param, "Partitions");
                         });

}  // namespace
}  // namespace taskwal
