// Every bad-input path of the public API: each gets the documented status
// code, and none changes anything (the whole engine state, read back through
// the API, is identical before and after).

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/clock.h"
#include "taskwal/engine.h"
#include "taskwal/fault_injection_env.h"
#include "taskwal/task.pb.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::testing::HasSubstr;

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::taskwal::wal::StatusOf;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
constexpr absl::StatusCode kAborted = absl::StatusCode::kAborted;
constexpr absl::StatusCode kCancelled = absl::StatusCode::kCancelled;

// Small limits so that "oversized" is cheap to build.
constexpr size_t kMaxKey = 8;
constexpr size_t kMaxType = 8;
constexpr size_t kMaxPayload = 16;
constexpr size_t kMaxResult = 16;
constexpr size_t kMaxError = 16;
constexpr size_t kMaxWorker = 8;
constexpr size_t kMaxBatch = 4;
constexpr uint32_t kMaxMaxAttempts = 10;
constexpr absl::Duration kMaxLease = absl::Hours(1);

TaskSpec Spec(std::string key, std::string payload = "p") {
  TaskSpec spec;
  spec.idempotency_key = std::move(key);
  spec.type = "t";
  spec.payload = std::move(payload);
  return spec;
}

// One call that must be rejected: what it is and the code it must get.
struct BadCall {
  std::string what;
  std::function<absl::Status()> call;
  absl::StatusCode code;
};

class ErrorPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options());
    ASSERT_THAT(engine, IsOk());
    engine_ = *std::move(engine);

    absl::StatusOr<SubmitResult> pending = engine_->Submit(Spec("pending"));
    ASSERT_THAT(pending, IsOk());
    pending_id_ = pending->task_id;
    absl::StatusOr<SubmitResult> claimed = engine_->Submit(Spec("claimed"));
    ASSERT_THAT(claimed, IsOk());
    absl::StatusOr<ClaimedTask> claim =
        engine_->Claim(claimed->task_id, "worker", absl::ZeroDuration());
    ASSERT_THAT(claim, IsOk());
    claim_ = *claim;
  }

  void TearDown() override { EXPECT_THAT(engine_->Close(), IsOk()); }

  EngineOptions Options() {
    EngineOptions o;
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.random_seed = 1;
    o.max_idempotency_key_bytes = kMaxKey;
    o.max_type_bytes = kMaxType;
    o.max_payload_bytes = kMaxPayload;
    o.max_result_bytes = kMaxResult;
    o.max_error_bytes = kMaxError;
    o.max_worker_id_bytes = kMaxWorker;
    o.max_batch_size = kMaxBatch;
    o.max_max_attempts = kMaxMaxAttempts;
    o.max_lease = kMaxLease;
    return o;
  }

  // Everything observable: every counter, every task and its history.
  std::string State() {
    std::string out;
    absl::StatusOr<EngineStats> s = engine_->Stats();
    EXPECT_THAT(s, IsOk());
    if (s.ok()) {
      absl::StrAppend(
          &out, "pending=", s->pending, " claimed=", s->claimed,
          " completed=", s->completed, " failed=", s->failed,
          " cancelled=", s->cancelled, " tasks=", s->tasks,
          " deduplicated=", s->deduplicated, " submitted=", s->submitted,
          " claims=", s->claims, " completions=", s->completions,
          " failed_attempts=", s->failed_attempts,
          " lease_expiries=", s->lease_expiries, " retries=", s->retries,
          " cancellations=", s->cancellations, " deletions=", s->deletions,
          " retention_removals=", s->retention_removals,
          " transitions=", s->transitions, "\n");
    }
    ListFilter filter;
    filter.limit = 10000;
    absl::StatusOr<ListPage> page = engine_->List(filter);
    EXPECT_THAT(page, IsOk());
    if (!page.ok()) return out;
    for (const Task& t : page->tasks) {
      absl::StrAppend(&out, t.DebugString());
      absl::StatusOr<std::vector<HistoryEntry>> h = engine_->History(t.id());
      EXPECT_THAT(h, IsOk());
      if (h.ok()) {
        for (const HistoryEntry& e : *h) {
          absl::StrAppend(&out, "  ", e.ShortDebugString(), "\n");
        }
      }
    }
    return out;
  }

  absl::StatusOr<ClaimedTask> ClaimNext(absl::string_view worker,
                                        absl::Duration lease,
                                        absl::Duration wait) {
    ClaimNextOptions options;
    options.lease = lease;
    options.wait = wait;
    return engine_->ClaimNext(worker, options);
  }

  // Runs each call; checks its code and that the state did not move.
  void ExpectRejectedWithoutChange(const std::vector<BadCall>& calls) {
    for (const BadCall& bad : calls) {
      SCOPED_TRACE(bad.what);
      const std::string before = State();
      EXPECT_THAT(bad.call(), StatusIs(bad.code));
      EXPECT_EQ(State(), before);
    }
  }

  uint64_t claimed_id() const { return claim_.task.id(); }

  ManualClock clock_;
  std::unique_ptr<Engine> engine_;
  uint64_t pending_id_ = 0;
  ClaimedTask claim_;
};

TEST_F(ErrorPathsTest, SubmitRejectsInvalidSpecs) {
  auto with = [](std::function<void(TaskSpec&)> change) {
    TaskSpec spec = Spec("fresh");
    change(spec);
    return spec;
  };
  auto policy = [](int64_t initial, int64_t max, double multiplier,
                   double jitter) {
    RetryPolicy p;
    p.set_initial_backoff_micros(initial);
    p.set_max_backoff_micros(max);
    p.set_multiplier(multiplier);
    p.set_jitter(jitter);
    return p;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::pair<std::string, TaskSpec> specs[] = {
      {"empty key", Spec("")},
      {"oversized key", Spec(std::string(kMaxKey + 1, 'k'))},
      {"oversized type",
       with([](TaskSpec& s) { s.type = std::string(kMaxType + 1, 't'); })},
      {"oversized payload", Spec("fresh", std::string(kMaxPayload + 1, 'p'))},
      {"key not UTF-8", Spec("fresh\xff")},
      {"type not UTF-8", with([](TaskSpec& s) { s.type = "t\xc0\x80"; })},
      {"max_attempts above max",
       with([](TaskSpec& s) { s.max_attempts = kMaxMaxAttempts + 1; })},
      {"negative initial backoff",
       with([&](TaskSpec& s) { s.retry_policy = policy(-1, 10, 2, 0); })},
      {"negative max backoff",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, -1, 2, 0); })},
      {"negative multiplier",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, 10, -2, 0); })},
      {"NaN multiplier",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, 10, nan, 0); })},
      {"infinite multiplier",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, 10, inf, 0); })},
      {"negative jitter",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, 10, 2, -0.1); })},
      {"jitter above 1",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, 10, 2, 2); })},
      {"NaN jitter",
       with([&](TaskSpec& s) { s.retry_policy = policy(1, 10, 2, nan); })},
  };
  std::vector<BadCall> calls;
  for (const auto& [what, spec] : specs) {
    calls.push_back(
        {absl::StrCat("Submit: ", what),
         [this, spec = spec] { return StatusOf(engine_->Submit(spec)); },
         kInvalid});
    // The same spec inside a batch rejects the whole batch.
    calls.push_back(
        {absl::StrCat("SubmitBatch: ", what),
         [this, spec = spec] {
           std::vector<TaskSpec> batch = {Spec("ok-1"), spec, Spec("ok-2")};
           return StatusOf(engine_->SubmitBatch(batch));
         },
         kInvalid});
  }
  ExpectRejectedWithoutChange(calls);
  EXPECT_THAT(engine_->GetByIdempotencyKey("fresh"), StatusIs(kNotFound));
  EXPECT_THAT(engine_->GetByIdempotencyKey("ok-1"), StatusIs(kNotFound));
}

TEST_F(ErrorPathsTest, ClaimRejectsInvalidWorkerIdOrLease) {
  const std::string long_worker(kMaxWorker + 1, 'w');
  const std::vector<BadCall> calls = {
      {"empty worker id",
       [&] {
         return StatusOf(engine_->Claim(pending_id_, "", absl::ZeroDuration()));
       },
       kInvalid},
      {"oversized worker id",
       [&] {
         return StatusOf(
             engine_->Claim(pending_id_, long_worker, absl::ZeroDuration()));
       },
       kInvalid},
      {"negative lease",
       [&] {
         return StatusOf(engine_->Claim(pending_id_, "w", -absl::Seconds(1)));
       },
       kInvalid},
      {"lease above max_lease",
       [&] {
         return StatusOf(engine_->Claim(pending_id_, "w",
                                        kMaxLease + absl::Microseconds(1)));
       },
       kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
}

TEST_F(ErrorPathsTest, ClaimNextRejectsInvalidArguments) {
  const std::string long_worker(kMaxWorker + 1, 'w');
  const absl::Duration zero = absl::ZeroDuration();
  const std::vector<BadCall> calls = {
      {"empty worker id", [&] { return StatusOf(ClaimNext("", zero, zero)); },
       kInvalid},
      {"oversized worker id",
       [&] { return StatusOf(ClaimNext(long_worker, zero, zero)); }, kInvalid},
      {"negative lease",
       [&] { return StatusOf(ClaimNext("w", -absl::Seconds(1), zero)); },
       kInvalid},
      {"lease above max_lease",
       [&] {
         return StatusOf(ClaimNext("w", kMaxLease + absl::Seconds(1), zero));
       },
       kInvalid},
      {"negative wait",
       [&] { return StatusOf(ClaimNext("w", zero, -absl::Milliseconds(1))); },
       kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
}

TEST_F(ErrorPathsTest, CompleteRejectsInvalidWorkerIdOrOversizedResult) {
  const std::string long_worker(kMaxWorker + 1, 'w');
  const std::vector<BadCall> calls = {
      {"empty worker id",
       [&] {
         return engine_->Complete({claimed_id(), "", claim_.claim.token}, "r");
       },
       kInvalid},
      {"oversized worker id",
       [&] {
         return engine_->Complete(
             {claimed_id(), long_worker, claim_.claim.token}, "r");
       },
       kInvalid},
      {"oversized result",
       [&] {
         return engine_->Complete(claim_.claim,
                                  std::string(kMaxResult + 1, 'r'));
       },
       kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
  // The claim is still usable.
  EXPECT_THAT(engine_->Complete(claim_.claim, std::string(kMaxResult, 'r')),
              IsOk());
}

TEST_F(ErrorPathsTest, FailRejectsInvalidWorkerIdOrOversizedError) {
  const std::string long_worker(kMaxWorker + 1, 'w');
  const std::vector<BadCall> calls = {
      {"empty worker id",
       [&] {
         return engine_->Fail({claimed_id(), "", claim_.claim.token}, "e");
       },
       kInvalid},
      {"oversized worker id",
       [&] {
         return engine_->Fail({claimed_id(), long_worker, claim_.claim.token},
                              "e");
       },
       kInvalid},
      {"oversized error",
       [&] {
         return engine_->Fail(claim_.claim, std::string(kMaxError + 1, 'e'));
       },
       kInvalid},
      {"worker id not UTF-8",
       [&] {
         return engine_->Fail(
             {claimed_id(), "worker\xed\xa0\x80", claim_.claim.token}, "e");
       },
       kInvalid},
      {"error not UTF-8",
       [&] { return engine_->Fail(claim_.claim, "boom\xfe"); }, kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
  EXPECT_THAT(engine_->Fail(claim_.claim, std::string(kMaxError, 'e')), IsOk());
}

TEST_F(ErrorPathsTest, HeartbeatRejectsInvalidWorkerIdOrExtension) {
  const std::string long_worker(kMaxWorker + 1, 'w');
  const std::vector<BadCall> calls = {
      {"empty worker id",
       [&] {
         return StatusOf(engine_->Heartbeat(
             {claimed_id(), "", claim_.claim.token}, absl::ZeroDuration()));
       },
       kInvalid},
      {"oversized worker id",
       [&] {
         return StatusOf(
             engine_->Heartbeat({claimed_id(), long_worker, claim_.claim.token},
                                absl::ZeroDuration()));
       },
       kInvalid},
      {"negative extension",
       [&] {
         return StatusOf(engine_->Heartbeat(claim_.claim, -absl::Seconds(1)));
       },
       kInvalid},
      {"extension above max_lease",
       [&] {
         return StatusOf(
             engine_->Heartbeat(claim_.claim, kMaxLease + absl::Seconds(1)));
       },
       kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
}

TEST_F(ErrorPathsTest, InputsAtTheLimitsAreAccepted) {
  TaskSpec spec =
      Spec(std::string(kMaxKey, 'k'), std::string(kMaxPayload, 'p'));
  spec.type = std::string(kMaxType, 't');
  spec.max_attempts = kMaxMaxAttempts;
  absl::StatusOr<SubmitResult> r = engine_->Submit(spec);
  ASSERT_THAT(r, IsOk());
  const std::string worker(kMaxWorker, 'w');
  absl::StatusOr<ClaimedTask> c = engine_->Claim(r->task_id, worker, kMaxLease);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->lease_deadline, clock_.Now() + kMaxLease);
  EXPECT_THAT(engine_->Heartbeat(c->claim, kMaxLease), IsOk());
  std::vector<TaskSpec> batch;
  for (size_t i = 0; i < kMaxBatch; ++i)
    batch.push_back(Spec(absl::StrCat("b", i)));
  EXPECT_THAT(engine_->SubmitBatch(batch), IsOk());
}

TEST_F(ErrorPathsTest, UnknownTaskIdIsNotFoundOrALostClaim) {
  const uint64_t unknown = claimed_id() + 1000;
  const std::vector<BadCall> calls = {
      {"Claim",
       [&] {
         return StatusOf(engine_->Claim(unknown, "w", absl::ZeroDuration()));
       },
       kNotFound},
      // A claim on a task that is gone is lost (it was deleted since).
      {"Complete",
       [&] {
         return engine_->Complete({unknown, "w", 1}, "r");
       },
       kAborted},
      {"Fail",
       [&] {
         return engine_->Fail({unknown, "w", 1}, "e");
       },
       kAborted},
      {"Heartbeat",
       [&] {
         return StatusOf(
             engine_->Heartbeat({unknown, "w", 1}, absl::ZeroDuration()));
       },
       kAborted},
      {"Retry", [&] { return engine_->Retry(unknown); }, kNotFound},
      {"Cancel", [&] { return engine_->Cancel(unknown); }, kNotFound},
      {"Delete", [&] { return engine_->Delete(unknown); }, kNotFound},
      {"Get", [&] { return StatusOf(engine_->Get(unknown)); }, kNotFound},
      {"History", [&] { return StatusOf(engine_->History(unknown)); },
       kNotFound},
      {"Get id 0", [&] { return StatusOf(engine_->Get(0)); }, kNotFound},
  };
  ExpectRejectedWithoutChange(calls);
}

TEST_F(ErrorPathsTest, UnknownIdempotencyKeyIsNotFound) {
  const std::vector<BadCall> calls = {
      {"unknown key",
       [&] { return StatusOf(engine_->GetByIdempotencyKey("nope")); },
       kNotFound},
      {"empty key", [&] { return StatusOf(engine_->GetByIdempotencyKey("")); },
       kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
}

TEST_F(ErrorPathsTest, ListRejectsLimitOutOfRange) {
  const std::vector<BadCall> calls = {
      {"limit 0",
       [&] {
         ListFilter f;
         f.limit = 0;
         return StatusOf(engine_->List(f));
       },
       kInvalid},
      {"limit 10001",
       [&] {
         ListFilter f;
         f.limit = 10001;
         return StatusOf(engine_->List(f));
       },
       kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
  for (size_t limit : {size_t{1}, size_t{10000}}) {
    ListFilter f;
    f.limit = limit;
    EXPECT_THAT(engine_->List(f), IsOk()) << "limit " << limit;
  }
}

TEST_F(ErrorPathsTest, EmptyOrOversizedBatchIsInvalid) {
  std::vector<TaskSpec> oversized;
  for (size_t i = 0; i <= kMaxBatch; ++i) {
    oversized.push_back(Spec(absl::StrCat("b", i)));
  }
  const std::vector<BadCall> calls = {
      {"empty batch",
       [&] {
         return StatusOf(engine_->SubmitBatch(absl::Span<const TaskSpec>()));
       },
       kInvalid},
      {"oversized batch",
       [&] { return StatusOf(engine_->SubmitBatch(oversized)); }, kInvalid},
  };
  ExpectRejectedWithoutChange(calls);
}

// Every option with a range: a value just outside it is refused, and the
// message names the option (a caller may be reading it from a config file).
TEST_F(ErrorPathsTest, OpenRejectsOptionsOutOfRange) {
  auto with = [this](std::function<void(EngineOptions&)> change) {
    EngineOptions o = Options();
    change(o);
    return o;
  };
  // What the message must name, what is wrong, the options.
  const std::tuple<std::string, std::string, EngineOptions> cases[] = {
      {"num_shards", "0", with([](EngineOptions& o) { o.num_shards = 0; })},
      {"num_shards", "4097",
       with([](EngineOptions& o) { o.num_shards = 4097; })},
      {"num_shards", "negative",
       with([](EngineOptions& o) { o.num_shards = -1; })},
      {"partitions", "257", with([](EngineOptions& o) { o.partitions = 257; })},
      {"max_max_attempts", "0", with([](EngineOptions& o) {
         o.max_max_attempts = 0;
         o.default_max_attempts = 0;
       })},
      {"default_max_attempts", "0",
       with([](EngineOptions& o) { o.default_max_attempts = 0; })},
      {"default_max_attempts", "above max_max_attempts",
       with([](EngineOptions& o) {
         o.default_max_attempts = kMaxMaxAttempts + 1;
       })},
      {"default_lease", "0",
       with([](EngineOptions& o) { o.default_lease = absl::ZeroDuration(); })},
      {"default_lease", "negative",
       with([](EngineOptions& o) { o.default_lease = -absl::Seconds(1); })},
      {"max_lease", "below default_lease", with([](EngineOptions& o) {
         o.max_lease = o.default_lease - absl::Microseconds(1);
       })},
      {"retention", "negative",
       with([](EngineOptions& o) { o.retention = -absl::Seconds(1); })},
      {"maintenance_interval", "negative", with([](EngineOptions& o) {
         o.maintenance_interval = -absl::Milliseconds(1);
       })},
      {"max_batch_size", "0",
       with([](EngineOptions& o) { o.max_batch_size = 0; })},
      {"max_idempotency_key_bytes", "0",
       with([](EngineOptions& o) { o.max_idempotency_key_bytes = 0; })},
      {"max_worker_id_bytes", "0",
       with([](EngineOptions& o) { o.max_worker_id_bytes = 0; })},
      {"segment_bytes", "4095",
       with([](EngineOptions& o) { o.segment_bytes = 4095; })},
      {"sync_interval", "0 in kInterval mode", with([](EngineOptions& o) {
         o.sync_mode = SyncMode::kInterval;
         o.sync_interval = absl::ZeroDuration();
       })},
      {"default_retry_policy", "multiplier 0.5", with([](EngineOptions& o) {
         o.default_retry_policy.set_multiplier(0.5);
       })},
      {"default_retry_policy", "jitter 2",
       with([](EngineOptions& o) { o.default_retry_policy.set_jitter(2); })},
      {"default_retry_policy", "negative initial backoff",
       with([](EngineOptions& o) {
         o.default_retry_policy.set_initial_backoff_micros(-1);
       })},
      {"default_retry_policy", "negative max backoff",
       with([](EngineOptions& o) {
         o.default_retry_policy.set_max_backoff_micros(-1);
       })},
      {"salvage", "with read_only", with([](EngineOptions& o) {
         o.data_dir = "/never-created";
         o.read_only = true;
         o.salvage = true;
       })},
      {"read_only", "without a data_dir",
       with([](EngineOptions& o) { o.read_only = true; })},
  };
  for (const auto& [option, what, options] : cases) {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    EXPECT_THAT(engine, StatusIs(kInvalid, HasSubstr(option)))
        << option << " " << what;
  }
  // The valid baseline opens.
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options());
  ASSERT_THAT(engine, IsOk());
  EXPECT_THAT((*engine)->Close(), IsOk());
}

// The edges of every range open, and the engine they give does its work:
// the smallest limits still let a task go through its whole lifecycle.
TEST_F(ErrorPathsTest, OpenAcceptsOptionsAtTheEdgesOfTheirRanges) {
  EngineOptions o;
  o.clock = &clock_;
  o.random_seed = 1;
  o.num_shards = 1;
  o.partitions = 1;
  o.max_idempotency_key_bytes = 1;
  o.max_worker_id_bytes = 1;
  o.max_type_bytes = 0;
  o.max_payload_bytes = 0;
  o.max_result_bytes = 0;
  o.max_error_bytes = 0;
  o.max_batch_size = 1;
  o.max_max_attempts = 1;
  o.default_max_attempts = 1;
  o.default_lease = absl::Microseconds(1);
  o.max_lease = absl::Microseconds(1);
  o.max_history_per_task = 0;
  o.retention = absl::ZeroDuration();
  o.maintenance_interval = absl::ZeroDuration();
  o.sync_mode = SyncMode::kInterval;
  o.sync_interval = absl::Nanoseconds(1);
  o.segment_bytes = 4096;
  o.default_retry_policy.set_initial_backoff_micros(0);
  o.default_retry_policy.set_max_backoff_micros(0);
  o.default_retry_policy.set_multiplier(1);
  o.default_retry_policy.set_jitter(1);
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(o);
  ASSERT_THAT(opened, IsOk());
  Engine& engine = **opened;
  TaskSpec spec;
  spec.idempotency_key = "k";
  absl::StatusOr<SubmitResult> submitted = engine.Submit(spec);
  ASSERT_THAT(submitted, IsOk());
  absl::StatusOr<ClaimedTask> claim =
      engine.Claim(submitted->task_id, "w", absl::ZeroDuration());
  ASSERT_THAT(claim, IsOk());
  EXPECT_THAT(engine.Complete(claim->claim, ""), IsOk());
  // No history is kept, and every entry is counted as dropped.
  EXPECT_THAT(engine.History(submitted->task_id),
              wal::IsOkAndHolds(::testing::IsEmpty()));
  absl::StatusOr<Task> task = engine.Get(submitted->task_id);
  ASSERT_THAT(task, IsOk());
  EXPECT_EQ(task->status(), COMPLETED);
  EXPECT_EQ(task->history_dropped(), 3u);  // Submitted, claimed, completed.
  EXPECT_THAT(engine.Close(), IsOk());

  // The other edges of num_shards and partitions.
  o.num_shards = 4096;
  o.partitions = 256;
  opened = Engine::Open(o);
  ASSERT_THAT(opened, IsOk());
  EXPECT_THAT((*opened)->Submit(spec), IsOk());
  EXPECT_THAT((*opened)->Close(), IsOk());
}

// kCancelled, whatever the arguments: a worker tells "the engine is
// closing" from "my claim is lost" (kAborted) by the code alone.
TEST_F(ErrorPathsTest, EveryMethodIsCancelledAfterClose) {
  ASSERT_THAT(engine_->Close(), IsOk());
  const std::vector<std::pair<std::string, std::function<absl::Status()>>>
      calls = {
          {"Submit", [&] { return StatusOf(engine_->Submit(Spec("new"))); }},
          {"Submit duplicate",
           [&] { return StatusOf(engine_->Submit(Spec("pending"))); }},
          {"SubmitBatch",
           [&] {
             std::vector<TaskSpec> batch = {Spec("x"), Spec("y")};
             return StatusOf(engine_->SubmitBatch(batch));
           }},
          {"Claim",
           [&] {
             return StatusOf(
                 engine_->Claim(pending_id_, "w", absl::ZeroDuration()));
           }},
          {"ClaimNext",
           [&] {
             return StatusOf(
                 ClaimNext("w", absl::ZeroDuration(), absl::ZeroDuration()));
           }},
          {"ClaimNext waiting",
           [&] {
             return StatusOf(
                 ClaimNext("w", absl::ZeroDuration(), absl::Seconds(5)));
           }},
          {"NextDueTime", [&] { return StatusOf(engine_->NextDueTime("")); }},
          {"Complete", [&] { return engine_->Complete(claim_.claim, "r"); }},
          {"Complete with a lost claim",
           [&] {
             return engine_->Complete({claimed_id(), "other", 1}, "r");
           }},
          {"Fail", [&] { return engine_->Fail(claim_.claim, "e"); }},
          {"Heartbeat",
           [&] {
             return StatusOf(
                 engine_->Heartbeat(claim_.claim, absl::ZeroDuration()));
           }},
          {"Retry", [&] { return engine_->Retry(claimed_id()); }},
          {"Cancel", [&] { return engine_->Cancel(pending_id_); }},
          {"Delete", [&] { return engine_->Delete(pending_id_); }},
          {"Get", [&] { return StatusOf(engine_->Get(pending_id_)); }},
          {"GetByIdempotencyKey",
           [&] { return StatusOf(engine_->GetByIdempotencyKey("pending")); }},
          {"List", [&] { return StatusOf(engine_->List(ListFilter())); }},
          {"History", [&] { return StatusOf(engine_->History(pending_id_)); }},
          {"Stats", [&] { return StatusOf(engine_->Stats()); }},
          {"RunMaintenance", [&] { return engine_->RunMaintenance(); }},
          {"Snapshot", [&] { return engine_->Snapshot(); }},
          {"Health", [&] { return engine_->Health(); }},
      };
  for (const auto& [what, call] : calls) {
    EXPECT_THAT(call(), StatusIs(kCancelled)) << what;
  }
}

// Every way a claim can be lost gets kAborted from Complete, Fail and
// Heartbeat, and changes nothing: the worker drops the task.
TEST_F(ErrorPathsTest, LostClaimIsAbortedWhateverTheCause) {
  auto lost = [&](const std::string& why, const ClaimRef& claim) {
    return std::vector<BadCall>{
        {why + ": Complete",
         [&, claim] { return engine_->Complete(claim, "r"); }, kAborted},
        {why + ": Fail", [&, claim] { return engine_->Fail(claim, "e"); },
         kAborted},
        {why + ": Heartbeat",
         [&, claim] {
           return StatusOf(engine_->Heartbeat(claim, absl::ZeroDuration()));
         },
         kAborted},
    };
  };
  // The claim from the ClaimedTask is the current one.
  EXPECT_EQ(claim_.claim.task_id, claimed_id());
  EXPECT_EQ(claim_.claim.worker_id, "worker");
  EXPECT_THAT(engine_->Heartbeat(claim_.claim, absl::ZeroDuration()), IsOk());

  ClaimRef other_worker = claim_.claim;
  other_worker.worker_id = "other";
  ExpectRejectedWithoutChange(lost("another worker", other_worker));
  ClaimRef stale_token = claim_.claim;
  stale_token.token += 1000;
  ExpectRejectedWithoutChange(lost("stale token", stale_token));

  // Released by an operator, then claimed again by the same worker: the
  // old claim stays lost.
  ASSERT_THAT(engine_->Retry(claimed_id()), IsOk());
  ExpectRejectedWithoutChange(lost("released", claim_.claim));
  absl::StatusOr<ClaimedTask> again =
      engine_->Claim(claimed_id(), "worker", absl::Seconds(10));
  ASSERT_THAT(again, IsOk());
  ExpectRejectedWithoutChange(lost("re-claimed", claim_.claim));

  // The lease ran out (the maintenance pass returned the task to PENDING).
  clock_.Advance(absl::Seconds(11));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  ExpectRejectedWithoutChange(lost("lease expired", again->claim));

  // Completed by this very claim: Complete repeats OK, the rest is lost.
  ASSERT_THAT(engine_->Retry(claimed_id()), IsOk());  // Skips the backoff.
  absl::StatusOr<ClaimedTask> last =
      engine_->Claim(claimed_id(), "worker", absl::ZeroDuration());
  ASSERT_THAT(last, IsOk());
  ASSERT_THAT(engine_->Complete(last->claim, "r"), IsOk());
  EXPECT_THAT(engine_->Complete(last->claim, "r"), IsOk());
  std::vector<BadCall> ended = lost("completed", last->claim);
  ended.erase(ended.begin());
  ExpectRejectedWithoutChange(ended);

  // Deleted since (retention, or Delete once it finished): lost too.
  ASSERT_THAT(engine_->Delete(claimed_id()), IsOk());
  ExpectRejectedWithoutChange(lost("deleted", last->claim));
}

TEST_F(ErrorPathsTest, CloseTwiceIsOk) {
  EXPECT_THAT(engine_->Close(), IsOk());
  EXPECT_THAT(engine_->Close(), IsOk());
  // TearDown closes a third time.
}

TEST_F(ErrorPathsTest, SubmitPastMaxTasksIsResourceExhausted) {
  // Re-open with room for three tasks; fill it.
  ASSERT_THAT(engine_->Close(), IsOk());
  EngineOptions options = Options();
  options.max_tasks = 3;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  ASSERT_THAT(engine, IsOk());
  engine_ = *std::move(engine);
  uint64_t first = 0;
  for (const char* key : {"a", "b", "c"}) {
    absl::StatusOr<SubmitResult> r = engine_->Submit(Spec(key));
    ASSERT_THAT(r, IsOk()) << key;
    if (first == 0) first = r->task_id;
  }

  const std::vector<BadCall> calls = {
      {"Submit", [&] { return StatusOf(engine_->Submit(Spec("d"))); },
       absl::StatusCode::kResourceExhausted},
      {"SubmitBatch with one new task",
       [&] {
         std::vector<TaskSpec> batch = {Spec("a"), Spec("d")};
         return StatusOf(engine_->SubmitBatch(batch));
       },
       absl::StatusCode::kResourceExhausted},
  };
  ExpectRejectedWithoutChange(calls);
  EXPECT_THAT(engine_->GetByIdempotencyKey("d"), StatusIs(kNotFound));
  // A limit is not a storage failure: the engine is healthy.
  EXPECT_THAT(engine_->Health(), IsOk());

  // Deduplication creates nothing, so it is still answered.
  absl::StatusOr<SubmitResult> dup = engine_->Submit(Spec("a"));
  ASSERT_THAT(dup, IsOk());
  EXPECT_TRUE(dup->deduplicated);

  // Deleting a task makes room again.
  absl::StatusOr<ClaimedTask> c =
      engine_->Claim(first, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine_->Complete(c->claim, "r"), IsOk());
  ASSERT_THAT(engine_->Delete(first), IsOk());
  EXPECT_THAT(engine_->Submit(Spec("d")), IsOk());
}

// SubmitBatch: "Any error rejects the whole batch ... and the message names
// the index of the offending spec"; max_tasks is one such error.
TEST_F(ErrorPathsTest, BatchPastMaxTasksNamesOffendingIndex) {
  ASSERT_THAT(engine_->Close(), IsOk());
  EngineOptions options = Options();
  options.max_tasks = 3;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  ASSERT_THAT(engine, IsOk());
  engine_ = *std::move(engine);
  for (const char* key : {"a", "b", "c"}) {
    ASSERT_THAT(engine_->Submit(Spec(key)), IsOk()) << key;
  }
  // Index 0 deduplicates; index 1 would create the fourth task.
  std::vector<TaskSpec> batch = {Spec("a"), Spec("d")};
  absl::StatusOr<std::vector<SubmitResult>> full = engine_->SubmitBatch(batch);
  EXPECT_THAT(full, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("index 1"));
}

// A full disk (ENOSPC, which the POSIX Env reports as kResourceExhausted)
// must not read as "max_tasks reached, retry later": the engine's sticky
// error is kInternal, the same status for every later write and for Health(),
// and Close and reopen recovers every acknowledged task.
class FullDiskTest : public ::testing::Test {
 protected:
  EngineOptions Options() {
    EngineOptions o;
    o.data_dir = "/db";
    o.env = &env_;
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.random_seed = 1;
    return o;
  }

  std::unique_ptr<Engine> Open() {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options());
    EXPECT_THAT(engine, IsOk());
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  FaultInjectionEnv env_{/*seed=*/3};
  ManualClock clock_;
};

// In kInterval mode a write is acknowledged before its fdatasync; when the
// background fdatasync fails, no caller is waiting. Health() must still
// report it (the acknowledged records are not durable), without a write.
TEST_F(FullDiskTest, BackgroundSyncFailureShowsInHealthWithoutAWrite) {
  EngineOptions o = Options();
  o.sync_mode = SyncMode::kInterval;
  o.sync_interval = absl::Milliseconds(1);
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(o);
  ASSERT_THAT(opened, IsOk());
  Engine& engine = **opened;
  env_.SetInjectedError(FaultInjectionEnv::InjectedError::kNoSpace);
  env_.FailNextSyncs(1);
  ASSERT_THAT(engine.Submit(Spec("unsynced")), IsOk());
  absl::Status health = engine.Health();
  for (int i = 0; i < 5000 && health.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(1));
    health = engine.Health();
  }
  EXPECT_THAT(health, StatusIs(absl::StatusCode::kInternal,
                               HasSubstr("injected ENOSPC")));
  // The next write gets the same status, and reads work.
  EXPECT_EQ(engine.Submit(Spec("later")).status(), health);
  EXPECT_THAT(engine.GetByIdempotencyKey("unsynced"), IsOk());
  EXPECT_EQ(engine.Close(), health);
}

TEST_F(FullDiskTest, FailedWriteIsStickyInternalNeverResourceExhausted) {
  std::unique_ptr<Engine> engine = Open();
  ASSERT_NE(engine, nullptr);
  // Acknowledged before the disk fills: a completed, a claimed and a
  // pending task.
  absl::StatusOr<SubmitResult> done = engine->Submit(Spec("done"));
  absl::StatusOr<SubmitResult> claimed = engine->Submit(Spec("claimed"));
  absl::StatusOr<SubmitResult> pending = engine->Submit(Spec("pending"));
  ASSERT_THAT(done, IsOk());
  ASSERT_THAT(claimed, IsOk());
  ASSERT_THAT(pending, IsOk());
  absl::StatusOr<ClaimedTask> c =
      engine->Claim(done->task_id, "w", absl::ZeroDuration());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(engine->Complete(c->claim, "r"), IsOk());
  absl::StatusOr<ClaimedTask> claim =
      engine->Claim(claimed->task_id, "w", absl::ZeroDuration());
  ASSERT_THAT(claim, IsOk());
  EXPECT_THAT(engine->Health(), IsOk());

  env_.SetInjectedError(FaultInjectionEnv::InjectedError::kNoSpace);
  env_.FailNextAppends(std::numeric_limits<int>::max());
  const absl::Status sticky = StatusOf(engine->Submit(Spec("full")));
  EXPECT_THAT(sticky, StatusIs(absl::StatusCode::kInternal,
                               HasSubstr("injected ENOSPC")));
  EXPECT_THAT(std::string(sticky.message()), HasSubstr("Close and reopen"));
  // Without attempting a write.
  EXPECT_EQ(engine->Health(), sticky);

  // The disk has room again, but the engine does not trust it: every write
  // gets the very same status.
  env_.FailNextAppends(0);
  const std::vector<std::pair<std::string, std::function<absl::Status()>>>
      writes = {
          {"Submit", [&] { return StatusOf(engine->Submit(Spec("new"))); }},
          {"SubmitBatch",
           [&] {
             std::vector<TaskSpec> batch = {Spec("x"), Spec("y"), Spec("z")};
             return StatusOf(engine->SubmitBatch(batch));
           }},
          {"Claim",
           [&] {
             return StatusOf(
                 engine->Claim(pending->task_id, "w", absl::ZeroDuration()));
           }},
          {"ClaimNext", [&] { return StatusOf(engine->ClaimNext("w", {})); }},
          {"Complete", [&] { return engine->Complete(claim->claim, "r"); }},
          {"Fail", [&] { return engine->Fail(claim->claim, "e"); }},
          {"Heartbeat",
           [&] {
             return StatusOf(
                 engine->Heartbeat(claim->claim, absl::ZeroDuration()));
           }},
          {"Cancel", [&] { return engine->Cancel(pending->task_id); }},
          {"Delete", [&] { return engine->Delete(done->task_id); }},
          {"RunMaintenance", [&] { return engine->RunMaintenance(); }},
          {"Snapshot", [&] { return engine->Snapshot(); }},
      };
  for (const auto& [what, call] : writes) {
    EXPECT_EQ(call(), sticky) << what;
  }
  EXPECT_EQ(engine->Health(), sticky);

  // Reads keep working.
  EXPECT_THAT(engine->Get(pending->task_id), IsOk());
  absl::StatusOr<Task> completed = engine->GetByIdempotencyKey("done");
  ASSERT_THAT(completed, IsOk());
  EXPECT_EQ(completed->status(), COMPLETED);
  EXPECT_THAT(engine->List(ListFilter()), IsOk());
  EXPECT_THAT(engine->History(claimed->task_id), IsOk());
  EXPECT_THAT(engine->Stats(), IsOk());
  EXPECT_THAT(engine->NextDueTime(""), IsOk());

  EXPECT_EQ(engine->Close(), sticky);
  EXPECT_EQ(engine->Health(), sticky);
  engine.reset();

  // Close and reopen: every acknowledged task is there, and writes work.
  engine = Open();
  ASSERT_NE(engine, nullptr);
  EXPECT_THAT(engine->Health(), IsOk());
  for (const auto& [key, status] :
       std::vector<std::pair<std::string, TaskStatus>>{
           {"done", COMPLETED}, {"claimed", CLAIMED}, {"pending", PENDING}}) {
    absl::StatusOr<Task> task = engine->GetByIdempotencyKey(key);
    ASSERT_THAT(task, IsOk()) << key;
    EXPECT_EQ(task->status(), status) << key;
  }
  // The claim survived the restart.
  EXPECT_THAT(engine->Complete(claim->claim, "r"), IsOk());
  EXPECT_THAT(engine->Submit(Spec("after")), IsOk());
  EXPECT_THAT(engine->Close(), IsOk());
}

}  // namespace
}  // namespace taskwal
