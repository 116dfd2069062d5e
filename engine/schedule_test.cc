#include "engine/schedule.h"

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kSecond = 1000000;
constexpr int64_t kMinute = 60 * kSecond;

int64_t At(const char* rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << err;
  return absl::ToUnixMicros(t);
}

Schedule Cron(const std::string& expr, const std::string& zone = "") {
  Schedule s;
  s.set_cron(expr);
  s.set_time_zone(zone);
  return s;
}

Schedule Every(int64_t interval, int64_t start) {
  Schedule s;
  s.set_interval_micros(interval);
  s.set_start_micros(start);
  return s;
}

TEST(ScheduleTimingTest, RefusesBadDefinitions) {
  EXPECT_EQ(ScheduleTiming::From(Schedule()).status().code(),
            absl::StatusCode::kInvalidArgument);
  Schedule both = Cron("* * * * *");
  both.set_interval_micros(kMinute);
  EXPECT_EQ(ScheduleTiming::From(both).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ScheduleTiming::From(Every(kSecond - 1, 0)).status().message(),
              HasSubstr("at least 1s"));
  EXPECT_EQ(ScheduleTiming::From(Cron("61 * * * *")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ScheduleTiming::From(Cron("* * * * *", "Nowhere/City")).status().code(),
      absl::StatusCode::kInvalidArgument);
  Schedule zoned = Every(kMinute, 0);
  zoned.set_time_zone("Europe/Berlin");
  EXPECT_EQ(ScheduleTiming::From(zoned).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ScheduleTimingTest, IntervalCountsFromStart) {
  const int64_t start = At("2026-12-05T00:00:00Z");
  absl::StatusOr<ScheduleTiming> t =
      ScheduleTiming::From(Every(10 * kMinute, start));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->NextAfter(start - 1), start);
  EXPECT_EQ(t->NextAfter(start), start + 10 * kMinute);
  EXPECT_EQ(t->NextAfter(start + 10 * kMinute - 1), start + 10 * kMinute);
  EXPECT_EQ(t->NextAfter(start + 25 * kMinute), start + 30 * kMinute);
  // Never past the year 9999.
  EXPECT_EQ(t->NextAfter(At("9999-12-31T23:55:00Z")), std::nullopt);
}

TEST(ScheduleTimingTest, CronInAZone) {
  absl::StatusOr<ScheduleTiming> t =
      ScheduleTiming::From(Cron("0 9 * * MON-FRI", "Europe/Berlin"));
  ASSERT_TRUE(t.ok()) << t.status();
  // Saturday 2026-12-05 -> Monday 2026-12-07 09:00 CET (08:00 UTC).
  EXPECT_EQ(t->NextAfter(At("2026-12-05T12:00:00Z")),
            At("2026-12-07T08:00:00Z"));
}

TEST(ScheduleTimingTest, DueSubmitsWhatIsDueAndSkipsWhatIsLate) {
  const int64_t start = At("2026-12-05T00:00:00Z");
  absl::StatusOr<ScheduleTiming> t =
      ScheduleTiming::From(Every(kMinute, start));
  ASSERT_TRUE(t.ok());
  // On time: the one due time.
  ScheduleTiming::Pass p =
      t->Due(start, start + kSecond, Schedule::MISSED_SKIP, kMinute, 1000);
  EXPECT_THAT(p.submit, ElementsAre(start));
  EXPECT_EQ(p.skipped, 0u);
  EXPECT_EQ(p.last_due, start);
  EXPECT_EQ(p.next_due, start + kMinute);
  // Ten minutes down, skip with a grace of 90 s: the times more than 90 s
  // late are skipped (start .. start+8m), the last two are submitted.
  const int64_t now = start + 10 * kMinute;
  p = t->Due(start, now, Schedule::MISSED_SKIP, 90 * kSecond, 1000);
  EXPECT_EQ(p.skipped, 9u);
  EXPECT_THAT(p.submit, ElementsAre(start + 9 * kMinute, start + 10 * kMinute));
  EXPECT_EQ(p.next_due, start + 11 * kMinute);
  // Catch up: every one, oldest first, at most max_submit a pass.
  p = t->Due(start, now, Schedule::MISSED_CATCH_UP, 0, 4);
  EXPECT_THAT(p.submit, ElementsAre(start, start + kMinute, start + 2 * kMinute,
                                    start + 3 * kMinute));
  EXPECT_EQ(p.skipped, 0u);
  EXPECT_EQ(p.next_due, start + 4 * kMinute);
  // Nothing due yet.
  p = t->Due(start, start - 1, Schedule::MISSED_CATCH_UP, 0, 1000);
  EXPECT_THAT(p.submit, IsEmpty());
  EXPECT_EQ(p.last_due, 0);
  EXPECT_EQ(p.next_due, start);
}

TEST(ScheduleTimingTest, CronSkipCountsEveryLateTime) {
  absl::StatusOr<ScheduleTiming> t = ScheduleTiming::From(Cron("*/15 * * * *"));
  ASSERT_TRUE(t.ok());
  const int64_t first = At("2026-12-05T00:00:00Z");
  const int64_t now = At("2026-12-05T02:05:00Z");
  ScheduleTiming::Pass p = t->Due(first, now, Schedule::MISSED_SKIP, 0, 1000);
  EXPECT_EQ(p.skipped, 9u);  // 00:00 .. 02:00
  EXPECT_THAT(p.submit, IsEmpty());
  EXPECT_EQ(p.last_due, At("2026-12-05T02:00:00Z"));
  EXPECT_EQ(p.next_due, At("2026-12-05T02:15:00Z"));
}

TEST(ScheduleTaskKeyTest, NamesTheScheduleAndTheDueTime) {
  EXPECT_EQ(ScheduleTaskKey("nightly", At("2026-12-05T03:00:00Z")),
            "schedule:nightly@2026-12-05T03:00:00Z");
  EXPECT_EQ(ScheduleTaskKey("n", At("2026-12-05T03:00:00.25Z")),
            "schedule:n@2026-12-05T03:00:00.25Z");
  EXPECT_LE(ScheduleTaskKey("", At("9999-12-31T23:59:59.999999Z")).size(),
            ScheduleTiming::kKeyOverheadBytes);
}

}  // namespace
}  // namespace taskwal::engine
