// RetryMatching, CancelMatching and DeleteMatching, end to end through the
// public API: which tasks match, limits and dry runs, batches across
// partitions, durability, and bad filters.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/fault_injection_env.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::taskwal::wal::IsOk;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kDir[] = "/db";

class BulkTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  EngineOptions Options() {
    EngineOptions o;
    o.partitions = GetParam();
    o.data_dir = kDir;
    o.env = &env_;
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    o.default_max_attempts = 1;
    return o;
  }

  void SetUp() override { Open(Options()); }

  void Open(const EngineOptions& o) {
    if (e_ != nullptr) {
      ASSERT_THAT(e_->Close(), IsOk());
    }
    e_.reset();
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    ASSERT_THAT(e.status(), IsOk());
    e_ = *std::move(e);
  }

  uint64_t Submit(const std::string& key, const std::string& type = "t") {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = type;
    absl::StatusOr<SubmitResult> r = e_->Submit(spec);
    EXPECT_THAT(r.status(), IsOk());
    return r.ok() ? r->task_id : 0;
  }

  // Claims task `id` and ends it: "complete", "fail", or "hold".
  ClaimRef Finish(uint64_t id, const std::string& how) {
    absl::StatusOr<ClaimedTask> c = e_->Claim(id, "w", absl::Minutes(5));
    EXPECT_THAT(c.status(), IsOk());
    if (!c.ok()) return ClaimRef();
    if (how == "complete") {
      EXPECT_THAT(e_->Complete(c->claim, "r"), IsOk());
    }
    if (how == "fail") {
      EXPECT_THAT(e_->Fail(c->claim, "boom"), IsOk());
    }
    return c->claim;
  }

  TaskStatus StatusOf(uint64_t id) {
    absl::StatusOr<Task> t = e_->Get(id);
    return t.ok() ? t->status() : TASK_STATUS_UNSPECIFIED;
  }

  ManualClock clock_;
  FaultInjectionEnv env_{11};
  std::unique_ptr<Engine> e_;
};

TEST_P(BulkTest, DeleteMatchingTakesEveryTerminalStatusByDefault) {
  const uint64_t done = Submit("a");
  const uint64_t failed = Submit("b");
  const uint64_t cancelled = Submit("c");
  const uint64_t pending = Submit("d");
  const uint64_t claimed = Submit("e");
  Finish(done, "complete");
  Finish(failed, "fail");
  ASSERT_THAT(e_->Cancel(cancelled), IsOk());
  Finish(claimed, "hold");

  absl::StatusOr<BulkResult> r = e_->DeleteMatching(BulkFilter());
  ASSERT_THAT(r.status(), IsOk());
  std::vector<uint64_t> want = {done, failed, cancelled};
  std::sort(want.begin(), want.end());
  EXPECT_THAT(r->task_ids, ElementsAreArray(want));
  EXPECT_EQ(r->changed, 3u);
  EXPECT_FALSE(r->more);
  EXPECT_EQ(e_->Get(done).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(StatusOf(pending), PENDING);
  EXPECT_EQ(StatusOf(claimed), CLAIMED);
  EXPECT_EQ(e_->Stats()->deletions, 3u);
}

TEST_P(BulkTest, RetryMatchingRetriesFailedByDefaultAndReleasesClaimsOnAsk) {
  const uint64_t failed = Submit("a");
  const uint64_t claimed = Submit("b");
  Finish(failed, "fail");
  const ClaimRef claim = Finish(claimed, "hold");
  absl::StatusOr<BulkResult> r = e_->RetryMatching(BulkFilter());
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(failed));
  EXPECT_EQ(StatusOf(failed), PENDING);
  EXPECT_EQ(StatusOf(claimed), CLAIMED);

  BulkFilter claims;
  claims.status = CLAIMED;
  r = e_->RetryMatching(claims);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(claimed));
  EXPECT_EQ(StatusOf(claimed), PENDING);
  EXPECT_EQ(e_->Complete(claim, "late").code(), absl::StatusCode::kAborted);
}

TEST_P(BulkTest, RetryingClaimsWhoseLeaseRanOutOnTheLastAttempt) {
  const uint64_t id = Submit("a");  // max_attempts 1 (Options).
  ASSERT_THAT(e_->Claim(id, "w", absl::Seconds(10)).status(), IsOk());
  clock_.Advance(absl::Minutes(1));  // The lease ran out; not yet expired.
  BulkFilter claimed;
  claimed.status = CLAIMED;
  absl::StatusOr<BulkResult> r = e_->RetryMatching(claimed);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(id));
  // As Retry(id): the expiry failed the last attempt, the retry revived it.
  EXPECT_EQ(StatusOf(id), PENDING);
  EXPECT_EQ(e_->Stats()->lease_expiries, 1u);
}

TEST_P(BulkTest, CancelMatchingByTypeAndAge) {
  const uint64_t old_email = Submit("a", "email");
  clock_.Advance(absl::Hours(1));
  const uint64_t new_email = Submit("b", "email");
  const uint64_t order = Submit("c", "order");
  BulkFilter f;
  f.type = "email";
  f.created_before = clock_.Now() - absl::Minutes(30);
  absl::StatusOr<BulkResult> r = e_->CancelMatching(f);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(old_email));
  EXPECT_EQ(StatusOf(old_email), CANCELLED);
  EXPECT_EQ(StatusOf(new_email), PENDING);
  EXPECT_EQ(StatusOf(order), PENDING);
}

TEST_P(BulkTest, FinishedBeforeMatchesOnlyTasksThatFinishedThen) {
  const uint64_t early = Submit("a");
  Finish(early, "complete");
  clock_.Advance(absl::Hours(2));
  const uint64_t late = Submit("b");
  Finish(late, "complete");
  BulkFilter f;
  f.finished_before = clock_.Now() - absl::Hours(1);
  absl::StatusOr<BulkResult> r = e_->DeleteMatching(f);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(early));
  EXPECT_EQ(StatusOf(late), COMPLETED);
}

TEST_P(BulkTest, LimitTakesLowestIdsFirstAndSaysMore) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(Submit(absl::StrCat("k", i)));
  std::sort(ids.begin(), ids.end());
  BulkFilter f;
  f.limit = 4;
  absl::StatusOr<BulkResult> r = e_->CancelMatching(f);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(ids[0], ids[1], ids[2], ids[3]));
  EXPECT_TRUE(r->more);
  EXPECT_EQ(e_->Stats()->cancelled, 4u);
  f.limit = 6;
  r = e_->CancelMatching(f);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_EQ(r->changed, 6u);
  EXPECT_FALSE(r->more);  // Exactly the rest: nothing more matches.
  EXPECT_EQ(e_->Stats()->cancelled, 10u);
}

TEST_P(BulkTest, DryRunListsAndChangesNothing) {
  const uint64_t a = Submit("a");
  const uint64_t before = e_->Stats()->transitions;
  BulkFilter f;
  f.dry_run = true;
  absl::StatusOr<BulkResult> r = e_->CancelMatching(f);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAre(a));
  EXPECT_EQ(r->changed, 0u);
  EXPECT_EQ(StatusOf(a), PENDING);
  EXPECT_EQ(e_->Stats()->transitions, before);
}

TEST_P(BulkTest, ManyBatchesAcrossPartitionsAreDurable) {
  // More than one batch (256) of tasks, every other one failed.
  std::vector<uint64_t> failed;
  for (int i = 0; i < 700; ++i) {
    const uint64_t id = Submit(absl::StrCat("k", i));
    if (i % 2 == 0) {
      Finish(id, "fail");
      failed.push_back(id);
    }
  }
  std::sort(failed.begin(), failed.end());
  absl::StatusOr<BulkResult> r = e_->DeleteMatching(BulkFilter());
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, ElementsAreArray(failed));
  env_.SimulatePowerLoss(PowerLossMode::kTornTail);  // kAlways: all synced.
  e_->Close().IgnoreError();
  e_.reset();
  Open(Options());
  absl::StatusOr<EngineStats> s = e_->Stats();
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(s->failed, 0u);
  EXPECT_EQ(s->pending, 350u);
  EXPECT_EQ(s->deletions, 350u);
}

TEST_P(BulkTest, DeletesFreeRoomUnderMaxTasks) {
  EngineOptions o = Options();
  o.max_tasks = 3;
  Open(o);
  for (int i = 0; i < 3; ++i) Finish(Submit(absl::StrCat("k", i)), "complete");
  TaskSpec spec;
  spec.idempotency_key = "more";
  EXPECT_EQ(e_->Submit(spec).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_THAT(e_->DeleteMatching(BulkFilter()).status(), IsOk());
  EXPECT_THAT(e_->Submit(spec).status(), IsOk());
}

TEST_P(BulkTest, BadFiltersAndStatesAreRefused) {
  Submit("a");
  BulkFilter f;
  f.status = FAILED;
  EXPECT_THAT(e_->CancelMatching(f).status().message(),
              HasSubstr("must be one of PENDING"));
  f.status = PENDING;
  EXPECT_EQ(e_->DeleteMatching(f).status().code(),
            absl::StatusCode::kInvalidArgument);
  f.status = TASK_STATUS_UNSPECIFIED;
  EXPECT_EQ(e_->RetryMatching(f).status().code(),
            absl::StatusCode::kInvalidArgument);
  f.status = static_cast<TaskStatus>(77);
  EXPECT_EQ(e_->RetryMatching(f).status().code(),
            absl::StatusCode::kInvalidArgument);
  BulkFilter bad_type;
  bad_type.type = "\xc3";
  EXPECT_EQ(e_->CancelMatching(bad_type).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e_->Stats()->cancelled, 0u);

  ASSERT_THAT(e_->Close(), IsOk());
  EXPECT_EQ(e_->CancelMatching(BulkFilter()).status().code(),
            absl::StatusCode::kCancelled);
  e_.reset();
  EngineOptions ro = Options();
  ro.read_only = true;
  Open(ro);
  EXPECT_EQ(e_->CancelMatching(BulkFilter()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  BulkFilter dry;
  dry.dry_run = true;
  absl::StatusOr<BulkResult> r = e_->CancelMatching(dry);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_EQ(r->task_ids.size(), 1u);
}

TEST_P(BulkTest, NothingMatchingIsAnEmptyResult) {
  absl::StatusOr<BulkResult> r = e_->RetryMatching(BulkFilter());
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_THAT(r->task_ids, IsEmpty());
  EXPECT_FALSE(r->more);
}

// Bulk operations beside workers and a submitter (run under TSan too):
// every call succeeds, and what the operations report adds up with the
// engine's totals.
TEST_P(BulkTest, BulkOperationsBesideWorkersAddUp) {
  EngineOptions o = Options();
  o.sync_mode = SyncMode::kNone;
  o.clock = nullptr;
  Open(o);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<uint64_t> submitted{0};
  auto submit = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      TaskSpec spec;
      spec.idempotency_key = absl::StrCat("k", i);
      spec.type = "t";
      spec.max_attempts = 1;
      if (e_->Submit(spec).ok()) {
        ++submitted;
      } else {
        ++errors;
      }
    }
  };
  submit(0, 500);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { submit(500, 1500); });
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      while (!stop.load()) {
        absl::StatusOr<ClaimedTask> c =
            e_->ClaimNext(absl::StrCat("w", w), ClaimNextOptions());
        if (absl::IsNotFound(c.status())) continue;
        if (!c.ok()) {
          ++errors;
          continue;
        }
        // A bulk retry of CLAIMED tasks may take the claim away: kAborted.
        const absl::Status done = c->claim.task_id % 3 == 0
                                      ? e_->Fail(c->claim, "no")
                                      : e_->Complete(c->claim, "ok");
        if (!done.ok() && !absl::IsAborted(done)) ++errors;
      }
    });
  }
  uint64_t deleted = 0;
  uint64_t retried = 0;
  for (int round = 0; round < 60; ++round) {
    BulkFilter completed;
    completed.status = COMPLETED;
    completed.limit = 100;
    absl::StatusOr<BulkResult> r = e_->DeleteMatching(completed);
    ASSERT_THAT(r.status(), IsOk());
    deleted += r->changed;
    r = e_->RetryMatching(BulkFilter());  // FAILED ones.
    ASSERT_THAT(r.status(), IsOk());
    retried += r->changed;
    if (round % 10 == 0) {
      BulkFilter claimed;
      claimed.status = CLAIMED;
      r = e_->RetryMatching(claimed);
      ASSERT_THAT(r.status(), IsOk());
      retried += r->changed;
    }
    BulkFilter dry;
    dry.dry_run = true;
    ASSERT_THAT(e_->CancelMatching(dry).status(), IsOk());
  }
  stop.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  // Everything that ended, by filter, once the workers are gone.
  absl::StatusOr<BulkResult> r = e_->DeleteMatching(BulkFilter());
  ASSERT_THAT(r.status(), IsOk());
  deleted += r->changed;
  absl::StatusOr<EngineStats> stats = e_->Stats();
  ASSERT_THAT(stats.status(), IsOk());
  EXPECT_EQ(stats->deletions, deleted);
  EXPECT_EQ(stats->retries, retried);
  EXPECT_EQ(stats->submitted, submitted.load());
  EXPECT_EQ(stats->tasks + deleted, submitted.load());
  EXPECT_EQ(stats->completed + stats->failed + stats->cancelled, 0u);
  EXPECT_EQ(stats->claimed, 0u);
}

INSTANTIATE_TEST_SUITE_P(Partitions, BulkTest, ::testing::Values(1u, 16u));

}  // namespace
}  // namespace taskwal
