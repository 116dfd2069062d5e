#include "engine/schedule.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace taskwal::engine {

namespace {

// 9999-12-31T23:59:59Z: keys keep four-digit years.
constexpr int64_t kLastDueMicros = 253402300799LL * 1000000;

}  // namespace

absl::StatusOr<ScheduleTiming> ScheduleTiming::From(const Schedule& schedule) {
  const bool has_cron = !schedule.cron().empty();
  const bool has_interval = schedule.interval_micros() != 0;
  if (has_cron == has_interval) {
    return absl::InvalidArgumentError(
        "a schedule needs exactly one of a cron expression and an interval");
  }
  ScheduleTiming timing;
  if (has_cron) {
    absl::StatusOr<CronExpression> cron =
        CronExpression::Parse(schedule.cron(), schedule.time_zone());
    if (!cron.ok()) return cron.status();
    timing.cron_ = *std::move(cron);
    return timing;
  }
  if (schedule.interval_micros() < 1000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule interval must be at least 1s, not ",
        absl::FormatDuration(absl::Microseconds(schedule.interval_micros()))));
  }
  if (!schedule.time_zone().empty()) {
    return absl::InvalidArgumentError(
        "a time zone applies to cron schedules only");
  }
  timing.interval_ = schedule.interval_micros();
  timing.start_ = schedule.start_micros();
  return timing;
}

std::optional<int64_t> ScheduleTiming::NextAfter(int64_t t) const {
  int64_t next;
  if (cron_.has_value()) {
    const absl::Time n = cron_->Next(absl::FromUnixMicros(t));
    if (n == absl::InfiniteFuture()) return std::nullopt;
    next = absl::ToUnixMicros(n);
  } else if (t < start_) {
    next = start_;
  } else {
    // The first start + k * interval above t, without overflow.
    const uint64_t k =
        (static_cast<uint64_t>(t) - static_cast<uint64_t>(start_)) /
            static_cast<uint64_t>(interval_) +
        1;
    const uint64_t offset = k * static_cast<uint64_t>(interval_);
    if (offset / static_cast<uint64_t>(interval_) != k ||
        offset > static_cast<uint64_t>(kLastDueMicros - start_)) {
      return std::nullopt;
    }
    next = start_ + static_cast<int64_t>(offset);
  }
  if (next > kLastDueMicros) return std::nullopt;
  return next;
}

ScheduleTiming::Pass ScheduleTiming::Due(int64_t next_due, int64_t now,
                                         Schedule::MissedPolicy missed,
                                         int64_t misfire_grace,
                                         size_t max_submit) const {
  Pass pass;
  std::optional<int64_t> due = next_due;
  // Due times before `late` are more than misfire_grace late.
  const int64_t late = now - std::min(misfire_grace, now);
  if (missed == Schedule::MISSED_SKIP && *due < late) {
    if (cron_.has_value()) {
      while (due.has_value() && *due < late) {
        ++pass.skipped;
        pass.last_due = *due;
        due = NextAfter(*due);
      }
    } else {
      // Every late time at once: start + k * interval below `late`.
      const uint64_t skipped =
          (static_cast<uint64_t>(late - *due) - 1) / interval_ + 1;
      pass.skipped = skipped;
      pass.last_due = *due + static_cast<int64_t>((skipped - 1) * interval_);
      due = NextAfter(pass.last_due);
    }
    pass.last_skipped = pass.last_due;
  }
  while (due.has_value() && *due <= now && pass.submit.size() < max_submit) {
    pass.submit.push_back(*due);
    pass.last_due = *due;
    due = NextAfter(*due);
  }
  pass.next_due = due;
  return pass;
}

std::string ScheduleTaskKey(absl::string_view name, int64_t due_micros) {
  return absl::StrCat(
      "schedule:", name, "@",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", absl::FromUnixMicros(due_micros),
                       absl::UTCTimeZone()));
}

}  // namespace taskwal::engine
