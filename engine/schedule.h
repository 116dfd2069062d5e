#ifndef TASKWAL_ENGINE_SCHEDULE_H_
#define TASKWAL_ENGINE_SCHEDULE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/cron.h"
#include "taskwal/task.pb.h"

namespace taskwal::engine {

// When a schedule (api/task.proto, Schedule) is due: the due times of its
// cron expression, or of its interval from its start. Pure computation on
// the schedule's definition; the engine keeps the position.
//
// Thread safety: immutable after From.
class ScheduleTiming {
 public:
  // Longest schedule name, in bytes.
  static constexpr size_t kMaxNameBytes = 128;
  // The longest suffix ScheduleTaskKey adds to a name ("schedule:" and
  // "@" and an RFC 3339 time with microseconds, years up to 9999).
  static constexpr size_t kKeyOverheadBytes = 9 + 1 + 27;

  // kInvalidArgument: a cron expression or time zone that does not parse
  // (CronExpression::Parse's message), both or neither of cron and
  // interval, or an interval under one second.
  static absl::StatusOr<ScheduleTiming> From(const Schedule& schedule);

  // The earliest due time strictly after t (Unix micros), or nullopt if
  // there is none (a cron expression without a match within its horizon,
  // or past the year 9999).
  std::optional<int64_t> NextAfter(int64_t t) const;

  // What a maintenance pass at `now` does with the due times from
  // `next_due` (the schedule's position) on: the times to submit (oldest
  // first, at most max_submit), how many are skipped (MISSED_SKIP, more
  // than misfire_grace late), the latest time handled (0: none) and the
  // new position (nullopt: never due again).
  struct Pass {
    std::vector<int64_t> submit;
    uint64_t skipped = 0;
    int64_t last_skipped = 0;  // The latest skipped time (0: none).
    int64_t last_due = 0;
    std::optional<int64_t> next_due;
  };
  Pass Due(int64_t next_due, int64_t now, Schedule::MissedPolicy missed,
           int64_t misfire_grace, size_t max_submit) const;

 private:
  ScheduleTiming() = default;
  std::optional<CronExpression> cron_;
  int64_t interval_ = 0;
  int64_t start_ = 0;
};

// The idempotency key of the task a schedule submits for a due time:
// "schedule:<name>@<RFC 3339 UTC, fractional seconds only when nonzero>".
std::string ScheduleTaskKey(absl::string_view name, int64_t due_micros);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_SCHEDULE_H_
