// One suite for the Engine contract (api/engine.h), run against every way
// to reach an engine:
//   memory            Engine::Open without a data directory
//   sharded           three in-memory engines as one (wire/sharded_engine.h)
//   loopback          the wire service (wire/service.h) in this process:
//                     every call and answer through wire/engine.proto
//   jetstream         OpenJetStreamEngine on a real NATS server
//   jetstream-remote  ConnectJetStreamEngine's client, through NATS, to a
//                     JetStreamServer serving a JetStream engine
//   http              ConnectHttpEngine's client, over HTTP/JSON on
//                     127.0.0.1, to taskwald's HttpApi serving an in-memory
//                     engine
// Every backend must give the same answers, codes included.

#include <nats/nats.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/http_api.h"
#include "daemon/http_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/clock.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"
#include "tests/nats_cluster.h"
#include "wal/status_matchers.h"
#include "wire/service.h"
#include "wire/sharded_engine.h"

namespace taskwal {
namespace {

using ::taskwal::testing::NatsCluster;
using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Calls ServeCall in this process, as a server would.
class LoopbackTransport final : public wire::Transport {
 public:
  explicit LoopbackTransport(Engine* engine) : engine_(engine) {}
  absl::StatusOr<std::string> Call(absl::string_view method,
                                   const std::string& request,
                                   const wire::CallOptions&) override {
    return wire::ServeCall(*engine_, method, request, wire::ServeOptions());
  }

 private:
  Engine* const engine_;
};

// The NATS server, one for the whole suite.
NatsCluster* nats = nullptr;
int cluster_counter = 0;

class EngineConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<NatsCluster>> cluster = NatsCluster::Start(
        1, absl::StrCat(::testing::TempDir(), "/conformance-nats"));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    nats = cluster->release();
  }
  static void TearDownTestSuite() {
    delete nats;
    nats = nullptr;
    nats_CloseAndWait(5000);
  }

  void SetUp() override {
    EngineOptions options;
    options.partitions = 4;
    options.maintenance_interval = absl::ZeroDuration();
    options.clock = &clock_;
    options.default_lease = absl::Seconds(30);
    const std::string& backend = GetParam();
    if (backend == "sharded") {
      // Three engines, one per shard, as one.
      std::vector<std::unique_ptr<Engine>> shards;
      for (int i = 0; i < 3; ++i) {
        absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
        ASSERT_TRUE(engine.ok()) << engine.status();
        shards.push_back(*std::move(engine));
      }
      partitions_ = 12;
      remote_ = wire::NewShardedEngine(std::move(shards));
      engine_ = remote_.get();
      return;
    }
    if (backend == "http") {
      absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
      ASSERT_TRUE(engine.ok()) << engine.status();
      server_engine_ = *std::move(engine);
      daemon::HttpApiOptions api_options;
      api_options.threads = 8;
      http_ =
          std::make_unique<daemon::HttpApi>(server_engine_.get(), api_options);
      absl::StatusOr<int> port = http_->Start("127.0.0.1", 0);
      ASSERT_TRUE(port.ok()) << port.status();
      absl::StatusOr<std::unique_ptr<Engine>> client =
          daemon::ConnectHttpEngine(absl::StrCat("http://127.0.0.1:", *port),
                                    daemon::HttpEngineOptions());
      ASSERT_TRUE(client.ok()) << client.status();
      remote_ = *std::move(client);
      engine_ = remote_.get();
      return;
    }
    if (backend == "memory" || backend == "loopback") {
      absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
      ASSERT_TRUE(engine.ok()) << engine.status();
      server_engine_ = *std::move(engine);
      if (backend == "memory") {
        engine_ = server_engine_.get();
      } else {
        remote_ = wire::NewRemoteEngine(
            std::make_unique<LoopbackTransport>(server_engine_.get()),
            wire::RemoteOptions());
        engine_ = remote_.get();
      }
      return;
    }
    JetStreamOptions js;
    js.servers = nats->urls();
    js.cluster = absl::StrCat("conf", ++cluster_counter);
    js.replicas = 1;
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        OpenJetStreamEngine(options, js);
    ASSERT_TRUE(engine.ok()) << engine.status();
    server_engine_ = *std::move(engine);
    if (backend == "jetstream") {
      engine_ = server_engine_.get();
      return;
    }
    absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
        JetStreamServer::Start(server_engine_.get(), js,
                               JetStreamServer::Options());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::StatusOr<std::unique_ptr<Engine>> client = ConnectJetStreamEngine(js);
    ASSERT_TRUE(client.ok()) << client.status();
    remote_ = *std::move(client);
    engine_ = remote_.get();
  }

  void TearDown() override {
    if (remote_ != nullptr) {
      EXPECT_THAT(remote_->Close(), IsOk());
    }
    if (server_engine_ != nullptr) server_engine_->Close().IgnoreError();
    if (server_ != nullptr) server_->Stop();
    // The client before the HTTP server, which waits for open connections.
    remote_.reset();
    http_.reset();
    server_.reset();
    server_engine_.reset();
  }

  static TaskSpec Spec(absl::string_view key, absl::string_view type = "t",
                       absl::string_view payload = "p") {
    TaskSpec spec;
    spec.idempotency_key = std::string(key);
    spec.type = std::string(type);
    spec.payload = std::string(payload);
    return spec;
  }

  uint64_t MustSubmit(const TaskSpec& spec) {
    absl::StatusOr<SubmitResult> r = engine_->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->task_id : 0;
  }

  ManualClock clock_;
  uint32_t partitions_ = 4;  // What Stats() says.
  std::unique_ptr<Engine> server_engine_;
  std::unique_ptr<JetStreamServer> server_;
  std::unique_ptr<daemon::HttpApi> http_;
  std::unique_ptr<Engine> remote_;
  Engine* engine_ = nullptr;
};

TEST_P(EngineConformanceTest, SubmitIsIdempotentByKey) {
  absl::StatusOr<SubmitResult> first = engine_->Submit(Spec("k"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->deduplicated);
  absl::StatusOr<SubmitResult> again = engine_->Submit(Spec("k"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->task_id, first->task_id);
  EXPECT_TRUE(again->deduplicated);
  EXPECT_THAT(engine_->Submit(Spec("k", "t", "other")).status(),
              StatusIs(absl::StatusCode::kAlreadyExists));
  absl::StatusOr<std::vector<SubmitResult>> batch = engine_->SubmitBatch(
      {Spec("k"), Spec("b1"), Spec("b2", "u"), Spec("b1")});
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->size(), 4u);
  EXPECT_EQ((*batch)[0].task_id, first->task_id);
  EXPECT_TRUE((*batch)[0].deduplicated);
  EXPECT_EQ((*batch)[1].task_id, (*batch)[3].task_id);
  EXPECT_THAT(engine_->SubmitBatch({}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  absl::StatusOr<Task> task = engine_->GetByIdempotencyKey("b2");
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->type(), "u");
  EXPECT_EQ(task->status(), PENDING);
}

TEST_P(EngineConformanceTest, ALifecycleEndsCompletedWithItsHistory) {
  TaskSpec spec = Spec("life", "mail", std::string("\0binary\xff", 8));
  spec.priority = 3;
  const uint64_t id = MustSubmit(spec);
  absl::StatusOr<ClaimedTask> claim = engine_->ClaimNext("w1", {});
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_EQ(claim->task.id(), id);
  EXPECT_EQ(claim->task.payload(), spec.payload);
  EXPECT_EQ(claim->attempt, 1u);
  EXPECT_EQ(claim->claim.worker_id, "w1");
  EXPECT_EQ(claim->lease_deadline, clock_.Now() + absl::Seconds(30));
  clock_.Advance(absl::Seconds(5));
  absl::StatusOr<absl::Time> extended =
      engine_->Heartbeat(claim->claim, absl::Seconds(60));
  ASSERT_TRUE(extended.ok()) << extended.status();
  EXPECT_EQ(*extended, clock_.Now() + absl::Seconds(60));
  ASSERT_THAT(engine_->Complete(claim->claim, "done"), IsOk());
  // Repeating the completion is harmless; failing it now is not allowed.
  EXPECT_THAT(engine_->Complete(claim->claim, "done"), IsOk());
  EXPECT_THAT(engine_->Fail(claim->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  absl::StatusOr<Task> task = engine_->Get(id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->status(), COMPLETED);
  EXPECT_EQ(task->result(), "done");
  EXPECT_EQ(task->priority(), 3);
  absl::StatusOr<std::vector<HistoryEntry>> history = engine_->History(id);
  ASSERT_TRUE(history.ok());
  EXPECT_GE(history->size(), 3u);
  EXPECT_THAT(engine_->ClaimNext("w1", {}).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(EngineConformanceTest, AStaleClaimIsFencedOff) {
  const uint64_t id = MustSubmit(Spec("fence"));
  absl::StatusOr<ClaimedTask> first =
      engine_->Claim(id, "w1", absl::ZeroDuration());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(engine_->Claim(id, "w2", absl::ZeroDuration()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(engine_->Retry(id), IsOk());  // Releases the claim.
  absl::StatusOr<ClaimedTask> second =
      engine_->Claim(id, "w2", absl::Seconds(10));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->claim.token, first->claim.token);
  EXPECT_THAT(engine_->Complete(first->claim, "x"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(engine_->Heartbeat(first->claim, absl::Seconds(1)).status(),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(engine_->Complete(second->claim, "y"), IsOk());
}

TEST_P(EngineConformanceTest, ClaimsAndCompletionsGoInBatches) {
  ClaimNextOptions any;
  EXPECT_THAT(engine_->ClaimNextBatch("w", any, 4).status(),
              StatusIs(absl::StatusCode::kNotFound));
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(
        MustSubmit(Spec(absl::StrCat("b", i), "t", absl::StrCat("p", i))));
  }
  EXPECT_THAT(engine_->ClaimNextBatch("w", any, 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(engine_->ClaimNextBatch("w", any, kMaxClaimBatch + 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(engine_->ClaimNextBatch("", any, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));

  absl::StatusOr<std::vector<ClaimedTask>> first =
      engine_->ClaimNextBatch("w", any, 3);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  std::set<uint64_t> seen;
  for (const ClaimedTask& c : *first) {
    EXPECT_EQ(c.task.status(), CLAIMED);
    EXPECT_EQ(c.attempt, 1u);
    EXPECT_EQ(c.claim.worker_id, "w");
    const size_t i =
        std::find(ids.begin(), ids.end(), c.task.id()) - ids.begin();
    EXPECT_EQ(c.task.payload(), absl::StrCat("p", i));
    seen.insert(c.task.id());
  }
  EXPECT_EQ(seen.size(), 3u);
  // Asked for more than are left: the two that are.
  absl::StatusOr<std::vector<ClaimedTask>> rest =
      engine_->ClaimNextBatch("w2", any, 10);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->size(), 2u);
  for (const ClaimedTask& c : *rest) seen.insert(c.task.id());
  EXPECT_EQ(seen, std::set<uint64_t>(ids.begin(), ids.end()));

  // Each completion on its own: a forged token and a bad result are
  // refused, the others done.
  std::vector<Completion> completions;
  for (const ClaimedTask& c : *first) {
    completions.push_back({c.claim, absl::StrCat("r", c.task.id())});
  }
  completions[1].claim.token += 1000;
  completions.push_back({(*rest)[0].claim, std::string(2 << 20, 'x')});
  completions.push_back({(*rest)[1].claim, "last"});
  EXPECT_THAT(engine_->CompleteBatch({}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  absl::StatusOr<std::vector<absl::Status>> done =
      engine_->CompleteBatch(completions);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->size(), 5u);
  EXPECT_THAT((*done)[0], IsOk());
  EXPECT_THAT((*done)[1], StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT((*done)[2], IsOk());
  EXPECT_THAT((*done)[3], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*done)[4], IsOk());
  for (size_t i : {size_t{0}, size_t{2}, size_t{4}}) {
    const uint64_t id = completions[i].claim.task_id;
    EXPECT_EQ(engine_->Get(id)->status(), COMPLETED);
    EXPECT_EQ(engine_->Get(id)->result(), completions[i].result);
  }
  EXPECT_EQ(engine_->Get(completions[1].claim.task_id)->status(), CLAIMED);
  EXPECT_EQ(engine_->Get(completions[3].claim.task_id)->status(), CLAIMED);
  // Repeating a batch is safe: done ones stay done with their results.
  completions[1].claim.token -= 1000;
  completions[3].result = "fits";
  done = engine_->CompleteBatch(completions);
  ASSERT_TRUE(done.ok()) << done.status();
  for (const absl::Status& s : *done) EXPECT_THAT(s, IsOk());
  EXPECT_EQ(engine_->Get(completions[0].claim.task_id)->result(),
            completions[0].result);
  EXPECT_EQ(engine_->Stats()->completed, 5u);
}

TEST_P(EngineConformanceTest, FailedAttemptsRetryThenFail) {
  TaskSpec spec = Spec("flaky");
  spec.max_attempts = 2;
  const uint64_t id = MustSubmit(spec);
  absl::StatusOr<ClaimedTask> claim = engine_->ClaimNext("w", {});
  ASSERT_TRUE(claim.ok());
  FailOptions at_once;
  at_once.retry_after = absl::ZeroDuration();
  ASSERT_THAT(engine_->Fail(claim->claim, "boom", at_once), IsOk());
  absl::StatusOr<Task> task = engine_->Get(id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->status(), PENDING);
  EXPECT_EQ(task->last_error(), "boom");
  absl::StatusOr<std::optional<absl::Time>> due = engine_->NextDueTime("t");
  ASSERT_TRUE(due.ok());
  ASSERT_TRUE(due->has_value());
  EXPECT_LE(**due, clock_.Now());
  claim = engine_->ClaimNext("w", {});
  ASSERT_TRUE(claim.ok());
  EXPECT_EQ(claim->attempt, 2u);
  ASSERT_THAT(engine_->Fail(claim->claim, "boom again"), IsOk());
  task = engine_->Get(id);
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->status(), FAILED);
  due = engine_->NextDueTime("t");
  ASSERT_TRUE(due.ok());
  EXPECT_FALSE(due->has_value());
  ASSERT_THAT(engine_->Retry(id), IsOk());
  EXPECT_EQ(engine_->Get(id)->status(), PENDING);
  // A permanent failure ends it at once.
  claim = engine_->ClaimNext("w", {});
  ASSERT_TRUE(claim.ok());
  FailOptions permanent;
  permanent.permanent = true;
  ASSERT_THAT(engine_->Fail(claim->claim, "bad input", permanent), IsOk());
  EXPECT_EQ(engine_->Get(id)->status(), FAILED);
}

TEST_P(EngineConformanceTest, ALeaseThatRunsOutGivesTheTaskBack) {
  const uint64_t id = MustSubmit(Spec("lease"));
  ClaimNextOptions options;
  options.lease = absl::Seconds(5);
  absl::StatusOr<ClaimedTask> claim = engine_->ClaimNext("w1", options);
  ASSERT_TRUE(claim.ok());
  clock_.Advance(absl::Seconds(6));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  EXPECT_EQ(engine_->Get(id)->status(), PENDING);
  clock_.Advance(absl::Hours(1));  // Past the retry backoff.
  absl::StatusOr<ClaimedTask> again = engine_->ClaimNext("w2", {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->task.id(), id);
  EXPECT_EQ(again->attempt, 2u);
  EXPECT_THAT(engine_->Complete(claim->claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_P(EngineConformanceTest, CancelDeleteListAndBulk) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 25; ++i) {
    ids.push_back(MustSubmit(Spec(absl::StrCat("l", i), i < 10 ? "a" : "b")));
  }
  ASSERT_THAT(engine_->Cancel(ids[0]), IsOk());
  EXPECT_EQ(engine_->Get(ids[0])->status(), CANCELLED);
  EXPECT_THAT(engine_->Cancel(ids[0]),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(engine_->Delete(ids[0]), IsOk());
  EXPECT_THAT(engine_->Get(ids[0]).status(),
              StatusIs(absl::StatusCode::kNotFound));
  // Pages of 10, ascending ids.
  std::vector<uint64_t> seen;
  ListFilter filter;
  filter.limit = 10;
  do {
    absl::StatusOr<ListPage> page = engine_->List(filter);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const Task& t : page->tasks) seen.push_back(t.id());
    filter.after_id = page->next_cursor;
  } while (filter.after_id != 0);
  std::vector<uint64_t> want(ids.begin() + 1, ids.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(seen, want);
  ListFilter by_type;
  by_type.type = "a";
  by_type.status = PENDING;
  EXPECT_EQ(engine_->List(by_type)->tasks.size(), 9u);
  // Bulk: a dry run changes nothing, then the real one.
  BulkFilter bulk;
  bulk.type = "b";
  bulk.status = PENDING;
  bulk.dry_run = true;
  absl::StatusOr<BulkResult> dry = engine_->CancelMatching(bulk);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(dry->changed, 0u);
  EXPECT_EQ(dry->task_ids.size(), 15u);
  bulk.dry_run = false;
  bulk.limit = 10;
  absl::StatusOr<BulkResult> done = engine_->CancelMatching(bulk);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->changed, 10u);
  EXPECT_TRUE(done->more);
  absl::StatusOr<EngineStats> stats = engine_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->cancelled, 10u);
  EXPECT_EQ(stats->pending, 14u);
  EXPECT_EQ(stats->deletions, 1u);
  EXPECT_EQ(stats->partitions, partitions_);
}

// A listing without payloads: every other field as with them, payload and
// result empty; Get still returns them.
TEST_P(EngineConformanceTest, AListingWithoutPayloadsLeavesOnlyThemOut) {
  const uint64_t done = MustSubmit(Spec("done", "t", std::string(5000, 'p')));
  const uint64_t waiting = MustSubmit(Spec("waiting", "t", "small"));
  absl::StatusOr<ClaimedTask> claim = engine_->Claim(done, "w", {});
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_THAT(engine_->Complete(claim->claim, std::string(3000, 'r')), IsOk());
  ListFilter whole;
  absl::StatusOr<ListPage> with = engine_->List(whole);
  ASSERT_TRUE(with.ok()) << with.status();
  ListFilter brief;
  brief.payloads = false;
  absl::StatusOr<ListPage> without = engine_->List(brief);
  ASSERT_TRUE(without.ok()) << without.status();
  ASSERT_EQ(with->tasks.size(), 2u);
  ASSERT_EQ(without->tasks.size(), 2u);
  EXPECT_EQ(with->tasks[0].id(), done);
  EXPECT_EQ(with->tasks[0].payload(), std::string(5000, 'p'));
  EXPECT_EQ(with->tasks[0].result(), std::string(3000, 'r'));
  EXPECT_EQ(with->tasks[1].payload(), "small");
  for (size_t i = 0; i < 2; ++i) {
    Task expected = with->tasks[i];
    expected.clear_payload();
    expected.clear_result();
    EXPECT_EQ(without->tasks[i].SerializeAsString(),
              expected.SerializeAsString())
        << without->tasks[i].DebugString();
  }
  EXPECT_EQ(engine_->Get(done)->payload(), std::string(5000, 'p'));
  EXPECT_EQ(engine_->Get(waiting)->payload(), "small");
}

TEST_P(EngineConformanceTest, PausedTypesAreNotClaimed) {
  MustSubmit(Spec("p1", "slow"));
  ASSERT_THAT(engine_->Pause("slow"), IsOk());
  EXPECT_THAT(*engine_->PausedTypes(), ElementsAre("slow"));
  ClaimNextOptions slow;
  slow.type = "slow";
  EXPECT_THAT(engine_->ClaimNext("w", slow).status(),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(engine_->Resume("slow"), IsOk());
  EXPECT_TRUE(engine_->PausedTypes()->empty());
  EXPECT_TRUE(engine_->ClaimNext("w", slow).ok());
}

TEST_P(EngineConformanceTest, SchedulesArePutListedAndDeleted) {
  ScheduleSpec spec;
  spec.name = "hourly";
  spec.interval = absl::Hours(1);
  spec.task.type = "report";
  spec.task.payload = "r";
  absl::StatusOr<Schedule> put = engine_->PutSchedule(spec);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->name(), "hourly");
  absl::StatusOr<Schedule> got = engine_->GetSchedule("hourly");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->SerializeAsString(), put->SerializeAsString());
  ASSERT_EQ(engine_->ListSchedules()->size(), 1u);
  clock_.Advance(absl::Hours(1));
  ASSERT_THAT(engine_->RunMaintenance(), IsOk());
  EXPECT_TRUE(engine_->ClaimNext("w", {}).ok());  // Fired once.
  ASSERT_THAT(engine_->DeleteSchedule("hourly"), IsOk());
  EXPECT_THAT(engine_->GetSchedule("hourly").status(),
              StatusIs(absl::StatusCode::kNotFound));
  spec.cron = "* * * * *";  // Both cron and interval.
  EXPECT_THAT(engine_->PutSchedule(spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(EngineConformanceTest, BadInputIsRefusedWithTheSameCodes) {
  EXPECT_THAT(engine_->Submit(Spec("")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      engine_->Submit(Spec("k", "t", std::string(2 << 20, 'x'))).status(),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(engine_->Submit(Spec(std::string("\xff\xfe", 2))).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(engine_->Get(987654321).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine_->GetByIdempotencyKey("none").status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine_->ClaimNext("", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const uint64_t id = MustSubmit(Spec("ok"));
  EXPECT_THAT(engine_->Claim(id, "w", absl::Seconds(-1)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ClaimRef forged{id, "w", 12345};
  EXPECT_THAT(engine_->Complete(forged, "x"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(engine_->Retry(id + 4096), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(engine_->Health().ok());
  // Nothing of the above changed anything.
  absl::StatusOr<EngineStats> stats = engine_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tasks, 1u);
  EXPECT_EQ(stats->pending, 1u);
}

TEST_P(EngineConformanceTest, StatsByTypeCountWhatWasSubmitted) {
  const absl::Time submitted = clock_.Now();
  MustSubmit(Spec("m1", "mail"));
  MustSubmit(Spec("m2", "mail"));
  const uint64_t sms = MustSubmit(Spec("s1", "sms"));
  TaskSpec later = Spec("r1", "report");
  later.not_before = submitted + absl::Hours(1);
  MustSubmit(later);
  clock_.Advance(absl::Seconds(3));
  ClaimNextOptions mail;
  mail.type = "mail";
  absl::StatusOr<ClaimedTask> claim = engine_->ClaimNext("w", mail);
  ASSERT_TRUE(claim.ok()) << claim.status();
  ASSERT_THAT(engine_->Cancel(sms), IsOk());

  absl::StatusOr<EngineStats> stats = engine_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ(stats->by_type.size(), 3u);
  const TypeStats& m = stats->by_type["mail"];
  EXPECT_EQ(m.pending, 1u);
  EXPECT_EQ(m.claimed, 1u);
  EXPECT_EQ(m.tasks(), 2u);
  EXPECT_EQ(m.oldest_ready, submitted);
  const TypeStats& s = stats->by_type["sms"];
  EXPECT_EQ(s.cancelled, 1u);
  EXPECT_EQ(s.tasks(), 1u);
  EXPECT_EQ(s.oldest_ready, absl::InfiniteFuture());
  const TypeStats& r = stats->by_type["report"];
  EXPECT_EQ(r.pending, 1u);
  EXPECT_EQ(r.oldest_ready, absl::InfiniteFuture());  // Not due yet.

  // The last task of a type gone, the type is gone.
  ASSERT_THAT(engine_->Delete(sms), IsOk());
  stats = engine_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->by_type.count("sms"), 0u);
  EXPECT_EQ(stats->by_type.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineConformanceTest,
                         ::testing::Values("memory", "loopback", "sharded",
                                           "jetstream", "jetstream_remote",
                                           "http"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param;
                         });

}  // namespace
}  // namespace taskwal
