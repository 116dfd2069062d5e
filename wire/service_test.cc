#include "wire/service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "wire/engine.pb.h"

namespace taskwal::wire {
namespace {

Reply Serve(Engine& engine, absl::string_view method,
            const google::protobuf::Message& request,
            const ServeOptions& options) {
  Reply reply;
  EXPECT_TRUE(reply.ParseFromString(
      ServeCall(engine, method, request.SerializeAsString(), options)));
  return reply;
}

// The time a ClaimNext spent queued in a server counts against its wait: a
// caller who asked to wait 10 s waits no longer than that in all.
TEST(ServeCallTest, AClaimNextWaitsLessByTheTimeItWasQueued) {
  EngineOptions options;
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  taskwal::TaskSpec spec;
  spec.idempotency_key = "k";
  spec.type = "t";
  spec.not_before = absl::Now() + absl::Seconds(5);  // Due within a wait.
  ASSERT_TRUE((*engine)->Submit(spec).ok());

  ClaimNextRequest request;
  request.set_worker_id("w");
  request.set_wait_micros(absl::ToInt64Microseconds(absl::Seconds(10)));
  ServeOptions queued;
  queued.max_claim_wait = absl::Seconds(10);
  queued.queued_for = absl::Seconds(10);
  // Its whole wait went by in the queue: it looks once, finds nothing due.
  EXPECT_EQ(Serve(**engine, "ClaimNext", request, queued).code(),
            absl::StatusCodeToString(absl::StatusCode::kNotFound));
  // Queued longer than the wait, the same.
  queued.queued_for = absl::Seconds(60);
  EXPECT_EQ(Serve(**engine, "ClaimNext", request, queued).code(),
            absl::StatusCodeToString(absl::StatusCode::kNotFound));
  // Not queued, it waits for the task to come due and claims it.
  queued.queued_for = absl::ZeroDuration();
  EXPECT_EQ(Serve(**engine, "ClaimNext", request, queued).code(), "OK");
}

// A claim's answer stays within the bound (NATS's max_payload): a last
// error too long for it (an engine with a raised max_error_bytes) is cut in
// the answer; a worker id too long is refused before anything is claimed;
// a task that cannot fit whatever is cut (stored before the bound was
// lowered) is not claimed again and again by workers who never get it: it
// is failed for good, saying why, and Retry revives it.
TEST(ServeCallTest, AClaimsAnswerStaysWithinTheBound) {
  EngineOptions engine_options;
  engine_options.maintenance_interval = absl::ZeroDuration();
  engine_options.max_error_bytes = 64 << 10;
  engine_options.max_worker_id_bytes = 16 << 10;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(engine_options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ServeOptions bounded;
  bounded.max_answer_bytes = kAnswerRoom + (24 << 10);  // 40 KiB.
  taskwal::TaskSpec spec;
  spec.idempotency_key = "k";
  spec.type = "t";
  spec.max_attempts = 5;
  absl::StatusOr<SubmitResult> submitted = (*engine)->Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const uint64_t id = submitted->task_id;
  absl::StatusOr<ClaimedTask> first = (*engine)->Claim(id, "w", {});
  ASSERT_TRUE(first.ok()) << first.status();
  FailOptions at_once;
  at_once.retry_after = absl::ZeroDuration();
  // Multi-byte characters: the cut must not split one.
  std::string long_error;
  while (long_error.size() < (40 << 10)) long_error += "\xc3\xa9rror ";
  ASSERT_TRUE((*engine)->Fail(first->claim, long_error, at_once).ok());

  ClaimNextRequest next;
  next.set_worker_id(std::string(8 << 10, 'w'));
  Reply reply = Serve(**engine, "ClaimNext", next, bounded);
  EXPECT_EQ(reply.code(),
            absl::StatusCodeToString(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(reply.message().find("worker id"), std::string::npos)
      << reply.message();
  next.set_worker_id("w");
  reply = Serve(**engine, "ClaimNext", next, bounded);
  ASSERT_EQ(reply.code(), "OK") << reply.message();
  EXPECT_LE(static_cast<int64_t>(reply.ByteSizeLong()),
            bounded.max_answer_bytes);
  ClaimResponse claimed;
  ASSERT_TRUE(claimed.ParseFromString(reply.body()));
  EXPECT_EQ(claimed.task().id(), id);
  const std::string& cut = claimed.task().last_error();
  EXPECT_LT(cut.size(), long_error.size());
  EXPECT_EQ(long_error.substr(0, 100), cut.substr(0, 100));
  EXPECT_NE(cut.find("[cut: too long for a claim's answer]"),
            std::string::npos);
  const std::string kept = cut.substr(0, cut.find(" [cut"));
  EXPECT_EQ(long_error.substr(0, kept.size()), kept);
  // "\xc3\xa9" is one character: a prefix never ends between its bytes.
  EXPECT_TRUE(kept.empty() || static_cast<unsigned char>(kept.back()) != 0xc3)
      << "split a character";

  // A task too large for any answer (stored unchecked, straight to the
  // engine): failed for good rather than handed out to nobody.
  spec.idempotency_key = "huge";
  spec.payload = std::string(48 << 10, 'x');
  submitted = (*engine)->Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const uint64_t huge = submitted->task_id;
  reply = Serve(**engine, "ClaimNext", next, bounded);
  EXPECT_EQ(reply.code(),
            absl::StatusCodeToString(absl::StatusCode::kResourceExhausted));
  EXPECT_NE(reply.message().find("could not be handed out"), std::string::npos)
      << reply.message();
  absl::StatusOr<Task> task = (*engine)->Get(huge);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->status(), FAILED);
  EXPECT_NE(task->last_error().find("max_payload"), std::string::npos)
      << task->last_error();
  // It is not claimable any more; unbounded, Retry hands it out.
  EXPECT_EQ(Serve(**engine, "ClaimNext", next, bounded).code(),
            absl::StatusCodeToString(absl::StatusCode::kNotFound));
  ASSERT_TRUE((*engine)->Retry(huge).ok());
  EXPECT_EQ(Serve(**engine, "ClaimNext", next, ServeOptions()).code(), "OK");

  // The same by id.
  spec.idempotency_key = "huge2";
  submitted = (*engine)->Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ClaimByIdRequest by_id;
  by_id.set_task_id(submitted->task_id);
  by_id.set_worker_id("w");
  EXPECT_EQ(Serve(**engine, "Claim", by_id, bounded).code(),
            absl::StatusCodeToString(absl::StatusCode::kResourceExhausted));
  task = (*engine)->Get(submitted->task_id);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->status(), FAILED);
}

// With answers bounded (NATS's max_payload): a task that no ClaimNext
// answer could carry is refused at submit, and a bulk call changes only as
// many tasks as its answer can list, saying there are more.
TEST(ServeCallTest, AnswersStayWithinMaxAnswerBytes) {
  EngineOptions engine_options;
  engine_options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(engine_options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ServeOptions bounded;
  bounded.max_answer_bytes = kAnswerRoom + (24 << 10);
  TaskSpec big;
  big.set_idempotency_key("big");
  big.set_type("t");
  big.set_payload(std::string(30 << 10, 'x'));
  Reply reply = Serve(**engine, "Submit", big, bounded);
  EXPECT_EQ(reply.code(),
            absl::StatusCodeToString(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(reply.message().find("never handed out"), std::string::npos)
      << reply.message();
  SubmitBatchRequest batch;
  TaskSpec* small = batch.add_tasks();
  small->set_idempotency_key("small");
  small->set_type("t");
  *batch.add_tasks() = big;
  reply = Serve(**engine, "SubmitBatch", batch, bounded);
  EXPECT_EQ(reply.code(),
            absl::StatusCodeToString(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(reply.message().find("task 1 of the batch"), std::string::npos)
      << reply.message();
  EXPECT_FALSE((*engine)->GetByIdempotencyKey("small").ok());
  EXPECT_FALSE((*engine)->GetByIdempotencyKey("big").ok());
  PutScheduleRequest schedule;
  schedule.set_name("nightly");
  schedule.mutable_spec()->set_cron("0 2 * * *");
  schedule.mutable_spec()->mutable_task()->set_type("t");
  schedule.mutable_spec()->mutable_task()->set_payload(
      std::string(30 << 10, 'x'));
  reply = Serve(**engine, "PutSchedule", schedule, bounded);
  EXPECT_EQ(reply.code(),
            absl::StatusCodeToString(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE((*engine)->GetSchedule("nightly").ok());
  big.set_payload(std::string(20 << 10, 'x'));
  EXPECT_EQ(Serve(**engine, "Submit", big, bounded).code(), "OK");
  // A bound under twice kAnswerRoom leaves half of it to the spec.
  ServeOptions tiny;
  tiny.max_answer_bytes = 8 << 10;
  TaskSpec small_one;
  small_one.set_idempotency_key("tiny");
  small_one.set_type("t");
  small_one.set_payload(std::string(2 << 10, 'x'));
  EXPECT_EQ(Serve(**engine, "Submit", small_one, tiny).code(), "OK");
  small_one.set_idempotency_key("tiny2");
  small_one.set_payload(std::string(5 << 10, 'x'));
  EXPECT_EQ(Serve(**engine, "Submit", small_one, tiny).code(),
            absl::StatusCodeToString(absl::StatusCode::kInvalidArgument));

  // 24 KiB of answer lists 2234 ids at 11 bytes each, at most.
  constexpr int kTasks = 2500;
  for (int i = 0; i < kTasks; ++i) {
    taskwal::TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    spec.type = "t";
    ASSERT_TRUE((*engine)->Submit(spec).ok());
  }
  BulkRequest every;
  every.set_dry_run(true);
  BulkResponse listed;
  reply = Serve(**engine, "CancelMatching", every, bounded);
  ASSERT_EQ(reply.code(), "OK") << reply.message();
  ASSERT_TRUE(listed.ParseFromString(reply.body()));
  EXPECT_EQ(listed.task_ids_size(), (24 << 10) / 11);
  EXPECT_TRUE(listed.more());
  EXPECT_LE(static_cast<int64_t>(reply.ByteSizeLong()),
            bounded.max_answer_bytes);
  // A smaller limit stays; unbounded, every task is listed.
  every.set_limit(100);
  reply = Serve(**engine, "CancelMatching", every, bounded);
  ASSERT_TRUE(listed.ParseFromString(reply.body()));
  EXPECT_EQ(listed.task_ids_size(), 100);
  every.set_limit(0);
  reply = Serve(**engine, "CancelMatching", every, ServeOptions());
  ASSERT_TRUE(listed.ParseFromString(reply.body()));
  EXPECT_EQ(listed.task_ids_size(), kTasks + 2);
  EXPECT_FALSE(listed.more());
}

// A List page that would not fit ends earlier, its cursor after the last
// task it holds: paging on reads every task once.
TEST(ServeCallTest, AListPageFitsMaxAnswerBytes) {
  EngineOptions engine_options;
  engine_options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(engine_options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  constexpr int kTasks = 10;
  for (int i = 0; i < kTasks; ++i) {
    taskwal::TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    spec.type = "t";
    spec.payload = std::string(10 << 10, 'x');
    ASSERT_TRUE((*engine)->Submit(spec).ok());
  }
  ServeOptions bounded;
  bounded.max_answer_bytes = 40 << 10;
  ListRequest request;
  request.set_limit(100);
  int seen = 0;
  int pages = 0;
  uint64_t last = 0;
  do {
    const Reply reply = Serve(**engine, "List", request, bounded);
    ASSERT_EQ(reply.code(), "OK") << reply.message();
    EXPECT_LE(static_cast<int64_t>(reply.ByteSizeLong()),
              bounded.max_answer_bytes);
    ListTasksResponse page;
    ASSERT_TRUE(page.ParseFromString(reply.body()));
    ASSERT_GT(page.tasks_size(), 0);
    for (const Task& task : page.tasks()) {
      EXPECT_GT(task.id(), last);
      last = task.id();
      ++seen;
    }
    request.set_after_id(page.next_cursor());
    ++pages;
  } while (request.after_id() != 0 && pages < 2 * kTasks);
  EXPECT_EQ(seen, kTasks);
  EXPECT_GT(pages, 2);
  // Unbounded, one page holds them all.
  request.set_after_id(0);
  ListTasksResponse all;
  ASSERT_TRUE(all.ParseFromString(
      Serve(**engine, "List", request, ServeOptions()).body()));
  EXPECT_EQ(all.tasks_size(), kTasks);
  EXPECT_EQ(all.next_cursor(), 0u);
}

// A batch answer holds the claims that fit; the rest are released at once:
// PENDING and claimable again, their attempt not counted.
TEST(ServeCallTest, ABatchAnswerHoldsWhatFitsAndReleasesTheRest) {
  EngineOptions engine_options;
  engine_options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(engine_options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  constexpr int kTasks = 10;
  for (int i = 0; i < kTasks; ++i) {
    taskwal::TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    spec.payload = std::string(10 << 10, 'x');
    ASSERT_TRUE((*engine)->Submit(spec).ok());
  }
  ServeOptions bounded;
  bounded.max_answer_bytes = 40 << 10;
  ClaimNextBatchRequest request;
  request.mutable_claim()->set_worker_id("w");
  request.set_max_tasks(kTasks);
  Reply reply = Serve(**engine, "ClaimNextBatch", request, bounded);
  ASSERT_EQ(reply.code(), "OK") << reply.message();
  EXPECT_LE(static_cast<int64_t>(reply.ByteSizeLong()),
            bounded.max_answer_bytes);
  ClaimBatchResponse batch;
  ASSERT_TRUE(batch.ParseFromString(reply.body()));
  ASSERT_GE(batch.claims_size(), 2);
  ASSERT_LT(batch.claims_size(), kTasks);
  absl::StatusOr<EngineStats> stats = (*engine)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->claimed, static_cast<uint64_t>(batch.claims_size()));
  EXPECT_EQ(stats->pending,
            static_cast<uint64_t>(kTasks - batch.claims_size()));
  // The released ones: claimable at once, their first attempt still ahead.
  absl::StatusOr<ClaimedTask> next = (*engine)->ClaimNext("w2", {});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->attempt, 1u);

  // Unbounded, every claim asked for is answered, and the completions go
  // back as one call, one status each.
  request.set_max_tasks(100);
  reply = Serve(**engine, "ClaimNextBatch", request, ServeOptions());
  ASSERT_EQ(reply.code(), "OK") << reply.message();
  ClaimBatchResponse rest;
  ASSERT_TRUE(rest.ParseFromString(reply.body()));
  EXPECT_EQ(rest.claims_size(), kTasks - batch.claims_size() - 1);
  CompleteBatchRequest completions;
  for (const ClaimResponse& c : rest.claims()) {
    CompleteRequest* one = completions.add_completions();
    *one->mutable_claim() = c.claim();
    one->set_result("ok");
  }
  completions.mutable_completions(0)->mutable_claim()->set_token(0);
  reply = Serve(**engine, "CompleteBatch", completions, ServeOptions());
  ASSERT_EQ(reply.code(), "OK") << reply.message();
  CompleteBatchResponse done;
  ASSERT_TRUE(done.ParseFromString(reply.body()));
  ASSERT_EQ(done.results_size(), rest.claims_size());
  EXPECT_EQ(done.results(0).code(), "ABORTED");
  for (int i = 1; i < done.results_size(); ++i) {
    EXPECT_EQ(done.results(i).code(), "OK") << i;
  }
  EXPECT_EQ((*engine)->Stats()->completed,
            static_cast<uint64_t>(rest.claims_size() - 1));
}

// A transport that serves calls in this process and counts them.
class CountingTransport final : public Transport {
 public:
  explicit CountingTransport(Engine* engine) : engine_(engine) {}
  absl::StatusOr<std::string> Call(absl::string_view method,
                                   const std::string& request,
                                   const CallOptions&) override {
    calls.push_back(std::string(method));
    return ServeCall(*engine_, method, request, ServeOptions());
  }
  std::vector<std::string> calls;

 private:
  Engine* const engine_;
};

TEST(RemoteEngineTest, ABatchIsOneCall) {
  EngineOptions engine_options;
  engine_options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(engine_options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (int i = 0; i < 5; ++i) {
    taskwal::TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    ASSERT_TRUE((*engine)->Submit(spec).ok());
  }
  auto transport = std::make_unique<CountingTransport>(engine->get());
  CountingTransport* counting = transport.get();
  std::unique_ptr<Engine> remote =
      NewRemoteEngine(std::move(transport), RemoteOptions());
  absl::StatusOr<std::vector<ClaimedTask>> claimed =
      remote->ClaimNextBatch("w", {}, 10);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(claimed->size(), 5u);
  std::vector<Completion> completions;
  for (const ClaimedTask& c : *claimed) completions.push_back({c.claim, "r"});
  absl::StatusOr<std::vector<absl::Status>> done =
      remote->CompleteBatch(completions);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->size(), 5u);
  EXPECT_EQ(counting->calls,
            (std::vector<std::string>{"ClaimNextBatch", "CompleteBatch"}));
  EXPECT_EQ((*engine)->Stats()->completed, 5u);
}

}  // namespace
}  // namespace taskwal::wire
