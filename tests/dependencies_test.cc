// Task dependencies (TaskSpec::depends_on), end to end through the public
// API: a task waits, unclaimable, until every task it names has completed;
// fails or is cancelled when one of them fails for good; cycles and unknown
// keys are refused; and the waiting survives restarts, snapshots and a power
// loss between a dependency's end and its waiters' records.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/env.h"
#include "taskwal/fault_injection_env.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::taskwal::wal::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kDir[] = "/db";

// Once armed, lets one more write reach the log files and fails every
// fdatasync after a second one: what a power loss right after the first
// write was synced leaves.
class SyncGateEnv final : public EnvWrapper {
 public:
  explicit SyncGateEnv(Env* target) : EnvWrapper(target) {}

  void Arm() { writes_after_arm_.store(0); }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override {
    return Wrap(target()->NewWritableFile(path));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return Wrap(target()->NewAppendableFile(path));
  }

 private:
  class File final : public WritableFile {
   public:
    File(std::unique_ptr<WritableFile> file, SyncGateEnv* env)
        : file_(std::move(file)), env_(env) {}
    absl::Status Append(absl::string_view data) override {
      env_->NoteWrite();
      return file_->Append(data);
    }
    absl::Status AppendAll(
        absl::Span<const absl::string_view> pieces) override {
      env_->NoteWrite();
      return file_->AppendAll(pieces);
    }
    absl::Status Sync() override {
      if (env_->writes_after_arm_.load() > 1) {
        return absl::InternalError("sync gate closed");
      }
      return file_->Sync();
    }
    absl::Status Close() override { return file_->Close(); }

   private:
    const std::unique_ptr<WritableFile> file_;
    SyncGateEnv* const env_;
  };

  void NoteWrite() {
    if (writes_after_arm_.load() >= 0) writes_after_arm_.fetch_add(1);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> Wrap(
      absl::StatusOr<std::unique_ptr<WritableFile>> file) {
    if (!file.ok()) return file.status();
    return std::unique_ptr<WritableFile>(
        std::make_unique<File>(*std::move(file), this));
  }

  std::atomic<int> writes_after_arm_{-1};  // -1: not armed.
};

// Every test runs with one partition and with sixteen (dependencies then
// mostly cross partitions).
class DependenciesTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  EngineOptions Options(bool durable) {
    EngineOptions o;
    o.partitions = GetParam();
    if (durable) {
      o.data_dir = kDir;
      o.env = &env_;
    }
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    o.default_retry_policy.set_initial_backoff_micros(0);
    return o;
  }

  std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  static TaskSpec Spec(
      const std::string& key, std::vector<std::string> depends_on = {},
      DependencyFailurePolicy policy = DEPENDENCY_FAILURE_FAIL) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = "t";
    spec.depends_on = std::move(depends_on);
    spec.on_dependency_failure = policy;
    return spec;
  }

  static uint64_t SubmitOrDie(Engine* e, const TaskSpec& spec) {
    absl::StatusOr<SubmitResult> r = e->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->task_id : 0;
  }

  // Claims the next task and returns its key ("" if none is ready).
  static std::string ClaimKey(Engine* e, ClaimRef* claim = nullptr) {
    absl::StatusOr<ClaimedTask> c = e->ClaimNext("w", ClaimNextOptions());
    if (!c.ok()) return "";
    if (claim != nullptr) *claim = c->claim;
    return c->task.idempotency_key();
  }

  // Claims (by id) and completes the task with key `key`.
  static void RunOrDie(Engine* e, const std::string& key) {
    absl::StatusOr<Task> t = e->GetByIdempotencyKey(key);
    ASSERT_THAT(t.status(), IsOk());
    absl::StatusOr<ClaimedTask> c = e->Claim(t->id(), "w", absl::Seconds(60));
    ASSERT_THAT(c.status(), IsOk()) << key;
    ASSERT_THAT(e->Complete(c->claim, ""), IsOk());
  }

  static std::vector<uint64_t> WaitingFor(Engine* e, uint64_t id) {
    absl::StatusOr<Task> t = e->Get(id);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return {};
    return std::vector<uint64_t>(t->waiting_for().begin(),
                                 t->waiting_for().end());
  }

  ManualClock clock_;
  FaultInjectionEnv env_{5};
};

TEST_P(DependenciesTest, ChainCompletesInOrder) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  const uint64_t a = SubmitOrDie(e.get(), Spec("a"));
  const uint64_t b = SubmitOrDie(e.get(), Spec("b", {"a"}));
  const uint64_t c = SubmitOrDie(e.get(), Spec("c", {"b"}));
  absl::StatusOr<Task> tb = e->Get(b);
  ASSERT_THAT(tb.status(), IsOk());
  EXPECT_EQ(tb->status(), PENDING);
  EXPECT_THAT(tb->depends_on(), ElementsAre(a));
  EXPECT_THAT(tb->waiting_for(), ElementsAre(a));
  EXPECT_EQ(e->Claim(b, "w", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(e->Retry(b).code(), absl::StatusCode::kFailedPrecondition);

  ClaimRef claim;
  ASSERT_EQ(ClaimKey(e.get(), &claim), "a");
  EXPECT_EQ(ClaimKey(e.get()), "");  // b and c wait.
  EXPECT_EQ(*e->NextDueTime(""), std::nullopt);
  EXPECT_EQ(e->Stats()->pending, 2u);
  ASSERT_THAT(e->Complete(claim, ""), IsOk());
  EXPECT_THAT(WaitingFor(e.get(), b), IsEmpty());
  EXPECT_THAT(WaitingFor(e.get(), c), ElementsAre(b));
  EXPECT_NE(*e->NextDueTime(""), std::nullopt);
  RunOrDie(e.get(), "b");
  RunOrDie(e.get(), "c");
  EXPECT_EQ(e->Stats()->completed, 3u);
}

TEST_P(DependenciesTest, FanInWaitsForTheLast) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  std::vector<std::string> keys;
  for (int i = 0; i < 8; ++i) {
    keys.push_back(absl::StrCat("in", i));
    SubmitOrDie(e.get(), Spec(keys.back()));
  }
  const uint64_t join = SubmitOrDie(e.get(), Spec("join", keys));
  EXPECT_EQ(WaitingFor(e.get(), join).size(), 8u);
  for (int i = 0; i < 8; ++i) {
    ClaimRef claim;
    const std::string key = ClaimKey(e.get(), &claim);
    ASSERT_NE(key, "join") << "after " << i << " of 8";
    ASSERT_THAT(e->Complete(claim, ""), IsOk());
    EXPECT_EQ(WaitingFor(e.get(), join).size(), 7u - i);
  }
  RunOrDie(e.get(), "join");
}

TEST_P(DependenciesTest, FailurePropagatesByEachTasksPolicy) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  const uint64_t a = SubmitOrDie(e.get(), Spec("a"));
  const uint64_t b = SubmitOrDie(e.get(), Spec("b", {"a"}));
  const uint64_t c =
      SubmitOrDie(e.get(), Spec("c", {"b"}, DEPENDENCY_FAILURE_CANCEL));
  const uint64_t d = SubmitOrDie(e.get(), Spec("d", {"c"}));
  ClaimRef claim;
  ASSERT_EQ(ClaimKey(e.get(), &claim), "a");
  FailOptions permanent;
  permanent.permanent = true;
  ASSERT_THAT(e->Fail(claim, "boom", permanent), IsOk());

  absl::StatusOr<Task> tb = e->Get(b);
  EXPECT_EQ(tb->status(), FAILED);
  EXPECT_EQ(tb->last_error(), absl::StrCat("dependency ", a, " is FAILED"));
  EXPECT_THAT(tb->waiting_for(), IsEmpty());
  absl::StatusOr<Task> tc = e->Get(c);
  EXPECT_EQ(tc->status(), CANCELLED);
  EXPECT_EQ(tc->last_error(), absl::StrCat("dependency ", b, " is FAILED"));
  absl::StatusOr<Task> td = e->Get(d);
  EXPECT_EQ(td->status(), FAILED);
  EXPECT_EQ(td->last_error(), absl::StrCat("dependency ", c, " is CANCELLED"));
  EXPECT_EQ(e->Stats()->failed, 3u);
  EXPECT_EQ(e->Stats()->cancelled, 1u);

  // Retry of a failed dependent runs it without waiting again.
  ASSERT_THAT(e->Retry(b), IsOk());
  RunOrDie(e.get(), "b");
}

TEST_P(DependenciesTest, CancelAndLeaseExpiryEndDependencies) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  SubmitOrDie(e.get(), Spec("a"));
  const uint64_t b = SubmitOrDie(e.get(), Spec("b", {"a"}));
  const uint64_t c = SubmitOrDie(e.get(), Spec("c", {"b"}));
  // Cancelling a waiting task ends its own waiters.
  ASSERT_THAT(e->Cancel(b), IsOk());
  EXPECT_EQ(e->Get(c)->status(), FAILED);
  EXPECT_THAT(WaitingFor(e.get(), b), IsEmpty());

  TaskSpec once = Spec("x");
  once.max_attempts = 1;
  SubmitOrDie(e.get(), once);
  const uint64_t y =
      SubmitOrDie(e.get(), Spec("y", {"x"}, DEPENDENCY_FAILURE_CANCEL));
  absl::StatusOr<ClaimedTask> claimed =
      e->Claim(e->GetByIdempotencyKey("x")->id(), "w", absl::Seconds(1));
  ASSERT_THAT(claimed.status(), IsOk());
  clock_.Advance(absl::Seconds(2));
  ASSERT_THAT(e->RunMaintenance(), IsOk());
  EXPECT_EQ(e->Get(claimed->claim.task_id)->status(), FAILED);
  EXPECT_EQ(e->Get(y)->status(), CANCELLED);
}

TEST_P(DependenciesTest, BatchMayDependOnLaterSpecs) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  SubmitOrDie(e.get(), Spec("old"));
  std::vector<TaskSpec> batch = {Spec("c", {"b", "old"}), Spec("b", {"a"}),
                                 Spec("a"), Spec("a")};
  absl::StatusOr<std::vector<SubmitResult>> r = e->SubmitBatch(batch);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_TRUE((*r)[3].deduplicated);
  EXPECT_THAT(WaitingFor(e.get(), (*r)[0].task_id).size(), 2u);
  RunOrDie(e.get(), "old");
  RunOrDie(e.get(), "a");
  RunOrDie(e.get(), "b");
  RunOrDie(e.get(), "c");
}

TEST_P(DependenciesTest, CyclesAreRefusedNamingTheKeys) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  absl::StatusOr<SubmitResult> self = e->Submit(Spec("s", {"s"}));
  EXPECT_EQ(self.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(self.status().message(), HasSubstr("\"s\""));

  std::vector<TaskSpec> two = {Spec("a", {"b"}), Spec("b", {"a"})};
  absl::StatusOr<std::vector<SubmitResult>> r = e->SubmitBatch(two);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("\"a\" -> \"b\" -> \"a\""));

  std::vector<TaskSpec> three = {Spec("x"), Spec("p", {"q", "x"}),
                                 Spec("q", {"r"}), Spec("r", {"p"})};
  r = e->SubmitBatch(three);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("\"p\" -> \"q\" -> \"r\" -> \"p\""));
  EXPECT_EQ(e->Stats()->tasks, 0u);
}

TEST_P(DependenciesTest, BadDependenciesAreRefused) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  EXPECT_EQ(e->Submit(Spec("b", {"nothing"})).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(e->Submit(Spec("b", {"a", "a"})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Submit(Spec("b", {""})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Submit(Spec("b", {}, static_cast<DependencyFailurePolicy>(7)))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<std::string> many;
  for (int i = 0; i < 65; ++i) many.push_back(absl::StrCat("k", i));
  EXPECT_EQ(e->Submit(Spec("b", many)).status().code(),
            absl::StatusCode::kInvalidArgument);
  ScheduleSpec schedule;
  schedule.name = "s";
  schedule.interval = absl::Hours(1);
  schedule.task = Spec("", {"a"});
  EXPECT_EQ(e->PutSchedule(schedule).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A failed dependency is refused; a completed one is met already.
  TaskSpec once = Spec("failed");
  once.max_attempts = 1;
  SubmitOrDie(e.get(), once);
  SubmitOrDie(e.get(), Spec("done"));
  absl::StatusOr<ClaimedTask> claimed = e->Claim(
      e->GetByIdempotencyKey("failed")->id(), "w", absl::ZeroDuration());
  ASSERT_THAT(claimed.status(), IsOk());
  ASSERT_THAT(e->Fail(claimed->claim, "no"), IsOk());
  RunOrDie(e.get(), "done");
  EXPECT_EQ(e->Submit(Spec("b", {"done", "failed"})).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const uint64_t b = SubmitOrDie(e.get(), Spec("b", {"done"}));
  EXPECT_THAT(e->Get(b)->depends_on().size(), 1);
  EXPECT_THAT(WaitingFor(e.get(), b), IsEmpty());
  // The key names a task: returned whatever depends_on says.
  absl::StatusOr<SubmitResult> again = e->Submit(Spec("b", {"failed"}));
  ASSERT_THAT(again.status(), IsOk());
  EXPECT_TRUE(again->deduplicated);
  RunOrDie(e.get(), "b");
  EXPECT_EQ(e->Stats()->tasks, 3u);
}

TEST_P(DependenciesTest, OperatorCallsOnWaitingTasks) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  const uint64_t a = SubmitOrDie(e.get(), Spec("a"));
  const uint64_t b = SubmitOrDie(e.get(), Spec("b", {"a"}));
  BulkFilter pending;
  pending.status = PENDING;
  absl::StatusOr<BulkResult> retried = e->RetryMatching(pending);
  ASSERT_THAT(retried.status(), IsOk());
  EXPECT_THAT(retried->task_ids, ElementsAre(a));
  EXPECT_THAT(WaitingFor(e.get(), b), ElementsAre(a));
  RunOrDie(e.get(), "a");
  RunOrDie(e.get(), "b");
  // Nobody waits for a any more.
  ASSERT_THAT(e->Delete(a), IsOk());
}

TEST_P(DependenciesTest, WaitingSurvivesRestartFromLogAndSnapshot) {
  uint64_t a = 0, b = 0, c = 0;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));
    a = SubmitOrDie(e.get(), Spec("a"));
    b = SubmitOrDie(e.get(), Spec("b", {"a"}, DEPENDENCY_FAILURE_CANCEL));
    c = SubmitOrDie(e.get(), Spec("c", {"a", "b"}));
    ASSERT_THAT(e->Close(), IsOk());
  }
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));  // From the log.
    EXPECT_THAT(WaitingFor(e.get(), c), ElementsAre(a, b));
    EXPECT_EQ(e->Get(b)->on_dependency_failure(), DEPENDENCY_FAILURE_CANCEL);
    RunOrDie(e.get(), "a");
    EXPECT_EQ(ClaimKey(e.get()), "b");  // Leaves b CLAIMED.
    ASSERT_THAT(e->Snapshot(), IsOk());
    ASSERT_THAT(e->Close(), IsOk());
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options(true));  // From a snapshot.
  EXPECT_GT(e->Recovery().snapshot_lsn, 0u);
  EXPECT_THAT(WaitingFor(e.get(), c), ElementsAre(b));
  EXPECT_THAT(e->Get(c)->depends_on(), ElementsAre(a, b));
  EXPECT_EQ(e->Get(b)->on_dependency_failure(), DEPENDENCY_FAILURE_CANCEL);
  EXPECT_EQ(ClaimKey(e.get()), "");
  ASSERT_THAT(e->Retry(b), IsOk());  // Releases the claim.
  RunOrDie(e.get(), "b");
  RunOrDie(e.get(), "c");
}

TEST_P(DependenciesTest, PowerLossBeforeTheWaitersRecordIsRepairedAtOpen) {
  SyncGateEnv gate(&env_);
  EngineOptions o = Options(true);  // kAlways.
  o.env = &gate;
  uint64_t b = 0;
  {
    std::unique_ptr<Engine> e = OpenOrDie(o);
    SubmitOrDie(e.get(), Spec("a"));
    b = SubmitOrDie(e.get(), Spec("b", {"a"}));
    ClaimRef claim;
    ASSERT_EQ(ClaimKey(e.get(), &claim), "a");
    // The completion is synced; the record that releases b is not.
    gate.Arm();
    e->Complete(claim, "").IgnoreError();
    env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    e->Close().IgnoreError();
  }
  {
    EngineOptions read_only = Options(true);
    read_only.read_only = true;
    std::unique_ptr<Engine> e = OpenOrDie(read_only);
    EXPECT_EQ(e->GetByIdempotencyKey("a")->status(), COMPLETED);
    EXPECT_EQ(WaitingFor(e.get(), b).size(), 1u);  // Lost: repair needed.
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options(true));
  EXPECT_THAT(WaitingFor(e.get(), b), IsEmpty());
  RunOrDie(e.get(), "b");
}

// Workers complete dependencies in every partition while dependents of
// them are submitted: each dependent is claimed only once all it waits for
// completed, and every one is claimed in the end.
TEST_P(DependenciesTest, ConcurrentCompletionsAndSubmits) {
  EngineOptions o = Options(false);
  o.clock = nullptr;
  std::unique_ptr<Engine> e = OpenOrDie(o);
  constexpr int kRoots = 64;
  constexpr int kDependents = 96;
  for (int i = 0; i < kRoots; ++i) {
    SubmitOrDie(e.get(), Spec(absl::StrCat("root", i)));
  }
  std::atomic<bool> submitted{false};
  std::atomic<int> early{0};
  std::atomic<int> completed{0};
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  auto worker = [&](int w) {
    const std::string id = absl::StrCat("w", w);
    while (absl::Now() < give_up) {
      ClaimNextOptions wait;
      wait.wait = absl::Milliseconds(5);
      absl::StatusOr<ClaimedTask> c = e->ClaimNext(id, wait);
      if (!c.ok()) {
        if (submitted.load() && completed.load() == kRoots + 2 * kDependents) {
          return;
        }
        continue;
      }
      for (uint64_t dependency : c->task.depends_on()) {
        absl::StatusOr<Task> t = e->Get(dependency);
        if (!t.ok() || t->status() != COMPLETED) early.fetch_add(1);
      }
      if (e->Complete(c->claim, "").ok()) completed.fetch_add(1);
    }
  };
  auto submitter = [&](int s) {
    for (int i = s; i < kDependents; i += 2) {
      std::vector<TaskSpec> batch = {
          Spec(absl::StrCat("dep", i),
               {absl::StrCat("root", i % kRoots),
                absl::StrCat("root", (i * 7 + 3) % kRoots)}),
          Spec(absl::StrCat("next", i),
               {absl::StrCat("dep", i),
                absl::StrCat("root", (i + 1) % kRoots)})};
      absl::StatusOr<std::vector<SubmitResult>> r = e->SubmitBatch(batch);
      EXPECT_TRUE(r.ok()) << r.status();
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) threads.emplace_back(worker, w);
  std::thread s0(submitter, 0), s1(submitter, 1);
  s0.join();
  s1.join();
  submitted.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(e->Stats()->completed, uint64_t{kRoots + 2 * kDependents});
  EXPECT_EQ(e->Stats()->pending, 0u);
}

INSTANTIATE_TEST_SUITE_P(Partitions, DependenciesTest,
                         ::testing::Values(1u, 16u));

}  // namespace
}  // namespace taskwal
