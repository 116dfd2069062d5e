// Pause and Resume of a task type, end to end through the public API: what
// a paused type stops (and what it does not), waking waiters on Resume, and
// durability across restarts, snapshots and power loss.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/fault_injection_env.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::taskwal::wal::IsOk;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kDir[] = "/db";

// Every test runs with one partition and with sixteen (a pause is then one
// group of sixteen records).
class PauseTest : public ::testing::TestWithParam<uint32_t> {
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
    return o;
  }

  std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  uint64_t SubmitOrDie(Engine* e, const std::string& key,
                       const std::string& type, int32_t priority = 0) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = type;
    spec.priority = priority;
    absl::StatusOr<SubmitResult> r = e->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->task_id : 0;
  }

  ManualClock clock_;
  FaultInjectionEnv env_{3};
};

TEST_P(PauseTest, PausedTypeIsNotClaimedOthersAre) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  const uint64_t email = SubmitOrDie(e.get(), "e1", "email", /*priority=*/9);
  const uint64_t order = SubmitOrDie(e.get(), "o1", "order");
  ASSERT_THAT(e->Pause("email"), IsOk());
  EXPECT_THAT(*e->PausedTypes(), ElementsAre("email"));
  EXPECT_EQ(e->Stats()->paused_types, 1u);

  ClaimNextOptions email_only;
  email_only.type = "email";
  EXPECT_EQ(e->ClaimNext("w", email_only).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*e->NextDueTime("email"), std::nullopt);
  EXPECT_EQ(e->Claim(email, "w", absl::ZeroDuration()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // "Any type" skips the paused type, although its task ranks first.
  absl::StatusOr<ClaimedTask> any = e->ClaimNext("w", ClaimNextOptions());
  ASSERT_THAT(any.status(), IsOk());
  EXPECT_EQ(any->task.id(), order);
  EXPECT_EQ(e->ClaimNext("w", ClaimNextOptions()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*e->NextDueTime(""), std::nullopt);

  // Submits and the rest go on.
  SubmitOrDie(e.get(), "e2", "email");
  EXPECT_EQ(e->Stats()->pending, 2u);

  ASSERT_THAT(e->Resume("email"), IsOk());
  EXPECT_THAT(*e->PausedTypes(), IsEmpty());
  absl::StatusOr<ClaimedTask> c = e->ClaimNext("w", email_only);
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->task.id(), email);
}

TEST_P(PauseTest, RunningClaimsOfAPausedTypeFinish) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  SubmitOrDie(e.get(), "e1", "email");
  absl::StatusOr<ClaimedTask> c = e->ClaimNext("w", ClaimNextOptions());
  ASSERT_THAT(c.status(), IsOk());
  ASSERT_THAT(e->Pause("email"), IsOk());
  ASSERT_THAT(e->Heartbeat(c->claim, absl::Seconds(5)).status(), IsOk());
  ASSERT_THAT(e->Fail(c->claim, "try again", FailOptions{absl::ZeroDuration()}),
              IsOk());
  // Back to PENDING, but not claimable while paused.
  EXPECT_EQ(e->Get(c->claim.task_id)->status(), PENDING);
  EXPECT_EQ(e->ClaimNext("w", ClaimNextOptions()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(PauseTest, PauseAndResumeAreIdempotentAndWriteOnlyChanges) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  const uint64_t before = e->Stats()->transitions;
  ASSERT_THAT(e->Pause("email"), IsOk());  // A type without tasks yet.
  const uint64_t one = e->Stats()->transitions;
  EXPECT_EQ(one - before, GetParam());  // One record per partition.
  ASSERT_THAT(e->Pause("email"), IsOk());
  EXPECT_EQ(e->Stats()->transitions, one);
  ASSERT_THAT(e->Resume("email"), IsOk());
  ASSERT_THAT(e->Resume("email"), IsOk());
  ASSERT_THAT(e->Resume("never-paused"), IsOk());
  EXPECT_EQ(e->Stats()->transitions, one + GetParam());
}

TEST_P(PauseTest, BadArgumentsAndStates) {
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  EXPECT_EQ(e->Pause("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Pause(std::string(300, 't')).code(),
            absl::StatusCode::kInvalidArgument);
  // Resume takes longer types (max_type_bytes may have shrunk since the
  // pause), up to 64 KiB.
  EXPECT_THAT(e->Resume(std::string(300, 't')), IsOk());
  EXPECT_EQ(e->Resume(std::string(70000, 't')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Pause("\xff").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(*e->PausedTypes(), IsEmpty());
  ASSERT_THAT(e->Close(), IsOk());
  EXPECT_EQ(e->Pause("email").code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(e->PausedTypes().status().code(), absl::StatusCode::kCancelled);
}

TEST_P(PauseTest, AtMostTenThousandPausedTypes) {
  if (GetParam() != 1) GTEST_SKIP() << "one partition is enough";
  std::unique_ptr<Engine> e = OpenOrDie(Options(false));
  for (int i = 0; i < 10000; ++i) {
    ASSERT_THAT(e->Pause(absl::StrCat("t", i)), IsOk());
  }
  EXPECT_EQ(e->Pause("one-more").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(e->Pause("t7"), IsOk());  // Already paused: no new one.
  ASSERT_THAT(e->Resume("t7"), IsOk());
  EXPECT_THAT(e->Pause("one-more"), IsOk());
}

TEST_P(PauseTest, ResumeWakesAWaitingClaimNext) {
  EngineOptions o = Options(false);
  o.clock = nullptr;  // Real waits.
  std::unique_ptr<Engine> e = OpenOrDie(o);
  ASSERT_THAT(e->Pause("email"), IsOk());
  SubmitOrDie(e.get(), "e1", "email");
  absl::Notification claimed;
  absl::StatusOr<ClaimedTask> c;
  std::thread waiter([&] {
    ClaimNextOptions wait;
    wait.type = "email";
    wait.wait = absl::Seconds(60);
    c = e->ClaimNext("w", wait);
    claimed.Notify();
  });
  // Not claimed while paused (a bounded look; the waiter's own wait is
  // long).
  EXPECT_FALSE(claimed.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  ASSERT_THAT(e->Resume("email"), IsOk());
  waiter.join();
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->task.idempotency_key(), "e1");
}

TEST_P(PauseTest, PauseSurvivesRestartFromLogAndFromSnapshot) {
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));
    SubmitOrDie(e.get(), "e1", "email");
    SubmitOrDie(e.get(), "o1", "order");
    ASSERT_THAT(e->Pause("email"), IsOk());
    ASSERT_THAT(e->Pause("report"), IsOk());
    ASSERT_THAT(e->Resume("report"), IsOk());
    ASSERT_THAT(e->Pause("order"), IsOk());
    ASSERT_THAT(e->Close(), IsOk());
  }
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));  // From the log.
    EXPECT_THAT(*e->PausedTypes(), ElementsAre("email", "order"));
    EXPECT_EQ(e->ClaimNext("w", ClaimNextOptions()).status().code(),
              absl::StatusCode::kNotFound);
    ASSERT_THAT(e->Resume("order"), IsOk());
    ASSERT_THAT(e->Snapshot(), IsOk());
    ASSERT_THAT(e->Close(), IsOk());
  }
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));  // From a snapshot.
    EXPECT_GT(e->Recovery().snapshot_lsn, 0u);
    EXPECT_THAT(*e->PausedTypes(), ElementsAre("email"));
    absl::StatusOr<ClaimedTask> c = e->ClaimNext("w", ClaimNextOptions());
    ASSERT_THAT(c.status(), IsOk());
    EXPECT_EQ(c->task.type(), "order");
    EXPECT_EQ(e->ClaimNext("w", ClaimNextOptions()).status().code(),
              absl::StatusCode::kNotFound);
    ASSERT_THAT(e->Close(), IsOk());
  }
}

TEST_P(PauseTest, AcknowledgedPauseSurvivesPowerLoss) {
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));  // kAlways.
    SubmitOrDie(e.get(), "e1", "email");
    ASSERT_THAT(e->Pause("email"), IsOk());
    env_.SimulatePowerLoss(PowerLossMode::kTornTail);
    e->Close().IgnoreError();
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options(true));
  EXPECT_THAT(*e->PausedTypes(), ElementsAre("email"));
  EXPECT_EQ(e->ClaimNext("w", ClaimNextOptions()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(PauseTest, ReadOnlyEngineReadsPausesAndRefusesChanges) {
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options(true));
    ASSERT_THAT(e->Pause("email"), IsOk());
    ASSERT_THAT(e->Close(), IsOk());
  }
  EngineOptions o = Options(true);
  o.read_only = true;
  std::unique_ptr<Engine> e = OpenOrDie(o);
  EXPECT_THAT(*e->PausedTypes(), ElementsAre("email"));
  EXPECT_EQ(e->Resume("email").code(), absl::StatusCode::kFailedPrecondition);
}

INSTANTIATE_TEST_SUITE_P(Partitions, PauseTest, ::testing::Values(1u, 16u));

}  // namespace
}  // namespace taskwal
