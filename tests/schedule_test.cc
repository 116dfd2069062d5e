// Durable periodic tasks (Engine::PutSchedule), end to end through the
// public API with a fake clock: due times across restarts (from the log and
// from snapshots), power loss, clock jumps both ways, both missed-time
// policies, concurrent maintenance passes, replacing and deleting, and bad
// specs. The invariant everywhere: each due time is submitted at most once,
// and under MISSED_CATCH_UP every due time is submitted.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
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
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kDir[] = "/db";

absl::Time At(const char* rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << err;
  return t;
}

class ScheduleTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  ScheduleTest() : clock_(At("2026-12-05T00:00:30Z")) {}

  EngineOptions Options() {
    EngineOptions o;
    o.partitions = GetParam();
    o.data_dir = kDir;
    o.env = &env_;
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    return o;
  }

  void SetUp() override { Reopen(); }

  void Reopen() {
    if (e_ != nullptr) {
      ASSERT_THAT(e_->Close(), IsOk());
    }
    e_.reset();
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(Options());
    ASSERT_THAT(e.status(), IsOk());
    e_ = *std::move(e);
  }

  static ScheduleSpec Every(const std::string& name, absl::Duration interval) {
    ScheduleSpec spec;
    spec.name = name;
    spec.interval = interval;
    spec.task.type = "report";
    spec.task.payload = "p";
    return spec;
  }

  // The due times of the tasks schedule `name` submitted, ascending (from
  // their keys), checking that each task's not_before is its due time.
  std::vector<std::string> Submitted(const std::string& name) {
    std::vector<std::string> times;
    const std::string prefix = absl::StrCat("schedule:", name, "@");
    ListFilter f;
    f.limit = 10000;
    do {
      absl::StatusOr<ListPage> page = e_->List(f);
      EXPECT_THAT(page.status(), IsOk());
      if (!page.ok()) break;
      for (const Task& t : page->tasks) {
        if (!absl::StartsWith(t.idempotency_key(), prefix)) continue;
        const std::string when = t.idempotency_key().substr(prefix.size());
        absl::Time due;
        std::string err;
        EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, when, &due, &err));
        EXPECT_EQ(absl::FromUnixMicros(t.not_before_micros()), due) << when;
        EXPECT_EQ(t.type(), "report");
        times.push_back(when);
      }
      f.after_id = page->next_cursor;
    } while (f.after_id != 0);
    std::sort(times.begin(), times.end());
    // No due time twice (keys are unique, so this holds by construction;
    // checked all the same).
    EXPECT_EQ(std::set<std::string>(times.begin(), times.end()).size(),
              times.size());
    return times;
  }

  void Maintain() { ASSERT_THAT(e_->RunMaintenance(), IsOk()); }

  ManualClock clock_;
  FaultInjectionEnv env_{5};
  std::unique_ptr<Engine> e_;
};

TEST_P(ScheduleTest, IntervalScheduleSubmitsOneTaskPerDueTime) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.start = At("2026-12-05T00:01:00Z");
  absl::StatusOr<Schedule> s = e_->PutSchedule(spec);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(absl::FromUnixMicros(s->next_due_micros()),
            At("2026-12-05T00:01:00Z"));
  Maintain();
  EXPECT_THAT(Submitted("tick"), IsEmpty());
  clock_.Advance(absl::Seconds(30));  // 00:01:00
  Maintain();
  Maintain();  // A second pass at the same time submits nothing more.
  EXPECT_THAT(Submitted("tick"), ElementsAre("2026-12-05T00:01:00Z"));
  clock_.Advance(absl::Seconds(90));  // 00:02:30
  Maintain();
  EXPECT_THAT(Submitted("tick"),
              ElementsAre("2026-12-05T00:01:00Z", "2026-12-05T00:02:00Z"));
  absl::StatusOr<Schedule> now = e_->GetSchedule("tick");
  ASSERT_THAT(now.status(), IsOk());
  EXPECT_EQ(now->submitted(), 2u);
  EXPECT_EQ(absl::FromUnixMicros(now->last_due_micros()),
            At("2026-12-05T00:02:00Z"));
  EXPECT_EQ(absl::FromUnixMicros(now->next_due_micros()),
            At("2026-12-05T00:03:00Z"));
  // The tasks are ordinary tasks.
  absl::StatusOr<ClaimedTask> c = e_->ClaimNext("w", ClaimNextOptions());
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->task.payload(), "p");
}

TEST_P(ScheduleTest, DefaultStartIsThePutAndFirstDueIsAfterIt) {
  absl::StatusOr<Schedule> s = e_->PutSchedule(Every("tick", absl::Hours(1)));
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(absl::FromUnixMicros(s->next_due_micros()),
            At("2026-12-05T01:00:30Z"));
  EXPECT_EQ(absl::FromUnixMicros(s->created_micros()), clock_.Now());
}

TEST_P(ScheduleTest, RestartsNeverSubmitATimeTwiceAndCatchUpLosesNone) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  std::vector<std::string> want;
  for (int round = 0; round < 6; ++round) {
    // A few due times while running, then a restart (from the log, or
    // from a snapshot every other round) with time passing while down.
    for (int i = 0; i < 3; ++i) {
      clock_.Advance(absl::Minutes(1));
      Maintain();
    }
    if (round % 2 == 1) {
      ASSERT_THAT(e_->Snapshot(), IsOk());
    }
    ASSERT_NO_FATAL_FAILURE(Reopen());
    Maintain();  // The same time again after the restart: nothing new.
    clock_.Advance(absl::Minutes(5));  // Down for five due times.
    ASSERT_NO_FATAL_FAILURE(Reopen());
    Maintain();
  }
  // Every minute from 00:01 to the clock, once each.
  for (absl::Time t = At("2026-12-05T00:01:00Z"); t <= clock_.Now();
       t += absl::Minutes(1)) {
    want.push_back(
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()));
  }
  EXPECT_EQ(Submitted("tick"), want);
  EXPECT_EQ(e_->GetSchedule("tick")->submitted(), want.size());
}

TEST_P(ScheduleTest, SkipPolicySkipsTimesMissedWhileDown) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.start = At("2026-12-05T00:01:00Z");
  spec.misfire_grace = absl::Seconds(90);
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Seconds(30));
  Maintain();
  ASSERT_NO_FATAL_FAILURE(Reopen());
  clock_.Advance(absl::Minutes(10));  // 00:11:00 after a restart.
  Maintain();
  // 00:02 .. 00:09 are more than 90 s late; 00:10 and 00:11 are not.
  EXPECT_THAT(Submitted("tick"),
              ElementsAre("2026-12-05T00:01:00Z", "2026-12-05T00:10:00Z",
                          "2026-12-05T00:11:00Z"));
  absl::StatusOr<Schedule> s = e_->GetSchedule("tick");
  EXPECT_EQ(s->skipped(), 8u);
  EXPECT_EQ(s->submitted(), 3u);
}

TEST_P(ScheduleTest, ClockJumpsBackwardAndForward) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Minutes(2));  // 00:02:30
  Maintain();
  ASSERT_EQ(Submitted("tick").size(), 2u);
  // Back an hour, with a restart: nothing is due again.
  clock_.Advance(-absl::Hours(1));
  Maintain();
  ASSERT_NO_FATAL_FAILURE(Reopen());
  Maintain();
  EXPECT_EQ(Submitted("tick").size(), 2u);
  // Forward again to just past the last due time: still nothing new.
  clock_.Advance(absl::Hours(1));
  Maintain();
  EXPECT_EQ(Submitted("tick").size(), 2u);
  // Forward 3,000 minutes: caught up over three passes (1,000 a pass).
  clock_.Advance(absl::Minutes(3000));
  Maintain();
  EXPECT_EQ(Submitted("tick").size(), 1002u);
  Maintain();
  Maintain();
  Maintain();
  EXPECT_EQ(Submitted("tick").size(), 3002u);
  EXPECT_EQ(e_->GetSchedule("tick")->submitted(), 3002u);
}

TEST_P(ScheduleTest, CronScheduleInATimeZoneAcrossDaylightSaving) {
  ScheduleSpec spec;
  spec.name = "nightly";
  spec.cron = "30 2 * * *";  // 02:30 Berlin: skipped on 2027-03-28.
  spec.time_zone = "Europe/Berlin";
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.task.type = "report";
  clock_.Set(At("2027-03-26T12:00:00Z"));
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Set(At("2027-03-30T12:00:00Z"));
  Maintain();
  EXPECT_THAT(Submitted("nightly"),
              ElementsAre("2027-03-27T01:30:00Z",  // 02:30 CET
                          "2027-03-28T01:00:00Z",  // End of the gap.
                          "2027-03-29T00:30:00Z",  // 02:30 CEST
                          "2027-03-30T00:30:00Z"));
}

TEST_P(ScheduleTest, ConcurrentMaintenancePassesSubmitEachTimeOnce) {
  ScheduleSpec spec = Every("tick", absl::Seconds(1));
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  ASSERT_THAT(e_->PutSchedule(Every("other", absl::Seconds(7))).status(),
              IsOk());
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 50; ++j) {
        if (i == 0) clock_.Advance(absl::Seconds(3));
        ASSERT_THAT(e_->RunMaintenance(), IsOk());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Maintain();
  const std::vector<std::string> tick = Submitted("tick");
  // Every second from 00:01:00 to the clock (00:00:30 + 150 s = 00:03:00).
  ASSERT_EQ(tick.size(), 121u);
  EXPECT_EQ(tick.front(), "2026-12-05T00:01:00Z");
  EXPECT_EQ(tick.back(), "2026-12-05T00:03:00Z");
}

TEST_P(ScheduleTest, ReplacingKeepsOrResetsThePositionButNeverRefires) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Seconds(30));
  Maintain();
  // Same timing, another payload: position kept, the next task changes.
  spec.task.payload = "new";
  absl::StatusOr<Schedule> s = e_->PutSchedule(spec);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(absl::FromUnixMicros(s->next_due_micros()),
            At("2026-12-05T00:02:00Z"));
  EXPECT_EQ(s->submitted(), 1u);
  // Another timing whose due times include the handled one: it starts
  // after now and the last handled time.
  spec.interval = absl::Seconds(30);
  s = e_->PutSchedule(spec);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(absl::FromUnixMicros(s->next_due_micros()),
            At("2026-12-05T00:01:30Z"));
  clock_.Advance(absl::Seconds(30));
  Maintain();
  EXPECT_THAT(Submitted("tick"),
              ElementsAre("2026-12-05T00:01:00Z", "2026-12-05T00:01:30Z"));
  EXPECT_EQ(
      e_->GetByIdempotencyKey("schedule:tick@2026-12-05T00:01:30Z")->payload(),
      "new");
}

TEST_P(ScheduleTest, DeleteStopsTheScheduleAndKeepsItsTasks) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Seconds(30));
  Maintain();
  ASSERT_THAT(e_->DeleteSchedule("tick"), IsOk());
  EXPECT_EQ(e_->DeleteSchedule("tick").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e_->GetSchedule("tick").status().code(),
            absl::StatusCode::kNotFound);
  clock_.Advance(absl::Minutes(5));
  Maintain();
  ASSERT_NO_FATAL_FAILURE(Reopen());
  Maintain();
  EXPECT_THAT(Submitted("tick"), ElementsAre("2026-12-05T00:01:00Z"));
  EXPECT_THAT(*e_->ListSchedules(), IsEmpty());
}

TEST_P(ScheduleTest, AnExistingTaskWithTheKeyIsThatTimesTask) {
  TaskSpec mine;
  mine.idempotency_key = "schedule:tick@2026-12-05T00:01:00Z";
  mine.type = "report";
  ASSERT_THAT(e_->Submit(mine).status(), IsOk());
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Seconds(30));
  Maintain();
  EXPECT_EQ(e_->Stats()->tasks, 1u);
  EXPECT_EQ(e_->GetSchedule("tick")->submitted(), 0u);
  EXPECT_EQ(absl::FromUnixMicros(e_->GetSchedule("tick")->next_due_micros()),
            At("2026-12-05T00:02:00Z"));
}

TEST_P(ScheduleTest, AcknowledgedFiresSurvivePowerLoss) {
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Minutes(20));
  Maintain();  // kAlways: acknowledged means on disk.
  env_.SimulatePowerLoss(PowerLossMode::kTornTail);
  e_->Close().IgnoreError();
  e_.reset();
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(Submitted("tick").size(), 20u);
  Maintain();
  EXPECT_EQ(Submitted("tick").size(), 20u);
  EXPECT_EQ(e_->GetSchedule("tick")->submitted(), 20u);
}

TEST_P(ScheduleTest, AtMaxTasksDueTimesWaitForRoom) {
  EngineOptions o = Options();
  o.max_tasks = 5;
  ASSERT_THAT(e_->Close(), IsOk());
  e_.reset();
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_THAT(e.status(), IsOk());
  e_ = *std::move(e);
  ScheduleSpec spec = Every("tick", absl::Minutes(1));
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.start = At("2026-12-05T00:01:00Z");
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  clock_.Advance(absl::Minutes(10));  // Ten due times, room for five.
  Maintain();
  Maintain();
  EXPECT_EQ(Submitted("tick").size(), 5u);
  EXPECT_EQ(absl::FromUnixMicros(e_->GetSchedule("tick")->next_due_micros()),
            At("2026-12-05T00:06:00Z"));
  // Room again: the rest come, none lost.
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ClaimedTask> c = e_->ClaimNext("w", ClaimNextOptions());
    ASSERT_THAT(c.status(), IsOk());
    ASSERT_THAT(e_->Complete(c->claim, ""), IsOk());
    ASSERT_THAT(e_->Delete(c->claim.task_id), IsOk());
  }
  Maintain();
  EXPECT_EQ(e_->Stats()->tasks, 5u);
  EXPECT_EQ(e_->GetSchedule("tick")->submitted(), 10u);
}

TEST_P(ScheduleTest, TimesTheCurrentOptionsRefuseAreSkippedAndCounted) {
  ScheduleSpec spec = Every(std::string(100, 'n'), absl::Minutes(1));
  spec.start = At("2026-12-05T00:01:00Z");
  spec.missed = Schedule::MISSED_CATCH_UP;
  spec.task.max_attempts = 50;
  ASSERT_THAT(e_->PutSchedule(spec).status(), IsOk());
  ASSERT_THAT(e_->Close(), IsOk());
  e_.reset();
  EngineOptions o = Options();
  o.max_max_attempts = 10;  // The schedule's tasks are refused now.
  o.default_max_attempts = 3;
  o.max_idempotency_key_bytes = 100;  // And its name is too long for keys.
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_THAT(e.status(), IsOk());
  e_ = *std::move(e);
  clock_.Advance(absl::Minutes(3));
  Maintain();
  absl::StatusOr<Schedule> s = e_->GetSchedule(spec.name);
  ASSERT_THAT(s.status(), IsOk());
  EXPECT_EQ(s->submitted(), 0u);
  EXPECT_EQ(s->skipped(), 3u);
  EXPECT_EQ(e_->Stats()->tasks, 0u);
  // It can still be deleted.
  EXPECT_THAT(e_->DeleteSchedule(spec.name), IsOk());
}

TEST_P(ScheduleTest, LimitsOnCountAndPayload) {
  ScheduleSpec big = Every("big", absl::Minutes(1));
  big.task.payload = std::string(16 << 10, 'x');
  ASSERT_THAT(e_->PutSchedule(big).status(), IsOk());
  big.task.payload += "x";
  EXPECT_THAT(e_->PutSchedule(big).status().message(), HasSubstr("16384"));
  for (int i = 1; i < 1000; ++i) {
    ASSERT_THAT(
        e_->PutSchedule(Every(absl::StrCat("s", i), absl::Hours(1))).status(),
        IsOk());
  }
  EXPECT_EQ(e_->PutSchedule(Every("one-more", absl::Hours(1))).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Replacing one is not a new one.
  EXPECT_THAT(e_->PutSchedule(Every("s1", absl::Hours(2))).status(), IsOk());
  ASSERT_THAT(e_->Snapshot(), IsOk());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(e_->ListSchedules()->size(), 1000u);
}

TEST_P(ScheduleTest, ListAndReadOnlyEngine) {
  ASSERT_THAT(e_->PutSchedule(Every("b", absl::Minutes(1))).status(), IsOk());
  ASSERT_THAT(e_->PutSchedule(Every("a", absl::Minutes(1))).status(), IsOk());
  absl::StatusOr<std::vector<Schedule>> all = e_->ListSchedules();
  ASSERT_THAT(all.status(), IsOk());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(e_->Stats()->schedules, 2u);
  EXPECT_EQ((*all)[0].name(), "a");
  EXPECT_EQ((*all)[1].name(), "b");
  ASSERT_THAT(e_->Close(), IsOk());
  e_.reset();
  EngineOptions o = Options();
  o.read_only = true;
  absl::StatusOr<std::unique_ptr<Engine>> ro = Engine::Open(o);
  ASSERT_THAT(ro.status(), IsOk());
  EXPECT_EQ((*ro)->ListSchedules()->size(), 2u);
  EXPECT_THAT((*ro)->GetSchedule("a").status(), IsOk());
  EXPECT_EQ((*ro)->PutSchedule(Every("c", absl::Minutes(1))).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*ro)->DeleteSchedule("a").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(ScheduleTest, BadSpecsAreRefusedAndChangeNothing) {
  auto code = [&](const ScheduleSpec& spec) {
    return e_->PutSchedule(spec).status().code();
  };
  const auto kBad = absl::StatusCode::kInvalidArgument;
  ScheduleSpec s = Every("tick", absl::Minutes(1));
  s.name = "";
  EXPECT_EQ(code(s), kBad);
  s.name = std::string(129, 'n');
  EXPECT_EQ(code(s), kBad);
  s.name = "\xff";
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::ZeroDuration());
  EXPECT_EQ(code(s), kBad);  // Neither cron nor interval.
  s.cron = "* * * * *";
  s.interval = absl::Minutes(1);
  EXPECT_EQ(code(s), kBad);  // Both.
  s = Every("tick", absl::Milliseconds(500));
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::InfiniteDuration());
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", -absl::Minutes(1));
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::Minutes(1));
  s.start = absl::InfiniteFuture();
  EXPECT_EQ(code(s), kBad);
  s.start = At("1969-12-31T00:00:00Z");
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::Minutes(1));
  s.misfire_grace = -absl::Seconds(1);
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::Minutes(1));
  s.missed = static_cast<Schedule::MissedPolicy>(9);
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::Minutes(1));
  s.task.idempotency_key = "mine";
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::Minutes(1));
  s.task.not_before = clock_.Now();
  EXPECT_EQ(code(s), kBad);
  s = Every("tick", absl::Minutes(1));
  s.task.max_attempts = 1000000;
  EXPECT_THAT(e_->PutSchedule(s).status().message(),
              HasSubstr("schedule task"));
  s = Every("tick", absl::Minutes(1));
  s.time_zone = "Europe/Berlin";  // With an interval.
  EXPECT_EQ(code(s), kBad);
  ScheduleSpec c;
  c.name = "cron";
  c.cron = "0 0 30 2 *";  // Never.
  EXPECT_EQ(code(c), kBad);
  c.cron = "0 0 * * *";
  c.time_zone = "Mars/Olympus_Mons";
  EXPECT_THAT(e_->PutSchedule(c).status().message(), HasSubstr("tzdata"));
  c.time_zone = "";
  c.start = clock_.Now();  // A start applies to intervals only.
  EXPECT_EQ(code(c), kBad);
  EXPECT_THAT(*e_->ListSchedules(), IsEmpty());
  EXPECT_EQ(e_->GetSchedule("").status().code(), kBad);
  EXPECT_EQ(e_->DeleteSchedule("\xc3").code(), kBad);
  ASSERT_THAT(e_->Close(), IsOk());
  EXPECT_EQ(e_->PutSchedule(Every("t", absl::Minutes(1))).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(e_->ListSchedules().status().code(), absl::StatusCode::kCancelled);
}

INSTANTIATE_TEST_SUITE_P(Partitions, ScheduleTest, ::testing::Values(1u, 16u));

}  // namespace
}  // namespace taskwal
