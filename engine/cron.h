#ifndef TASKWAL_ENGINE_CRON_H_
#define TASKWAL_ENGINE_CRON_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace taskwal::engine {

// A cron schedule: a five-field expression evaluated in one time zone, for
// durable periodic tasks. Hand-written because Debian ships no C or C++ cron
// library; the grammar is Vixie cron's (crontab(5)) without its extensions
// beyond the macros listed below.
//
// Grammar. Five fields separated by one or more spaces or tabs (leading and
// trailing ones are ignored):
//
//   minute 0-59  hour 0-23  day-of-month 1-31  month 1-12  day-of-week 0-7
//
// Month also takes JAN..DEC, day-of-week SUN..SAT (0 and 7 are Sunday);
// names are case-insensitive. Each field is a comma list of items: `*`, `N`,
// `A-B` (A <= B), and steps `*/S`, `A-B/S` and `A/S` (A through the field's
// maximum), 1 <= S <= the field's maximum. Instead of five fields, one macro
// (case-insensitive): @yearly = @annually = "0 0 1 1 *", @monthly =
// "0 0 1 * *", @weekly = "0 0 * * 0", @daily = @midnight = "0 0 * * *",
// @hourly = "0 * * * *".
//
// Day rule (Vixie cron): when both day-of-month and day-of-week are
// restricted (neither field starts with `*`), a day matches if EITHER
// matches ("0 0 13 * FRI" is every 13th and every Friday); when either
// starts with `*` (including `*/S`), both must match.
//
// Time zones and daylight saving. Fields match the zone's civil time, at
// second 0 of a civil minute. A matching civil time that does not exist
// (skipped by a spring-forward change, e.g. 02:30 on the day New York goes
// from 02:00 EST to 03:00 EDT) fires once, at the instant the gap ends
// (03:00 EDT). A civil time that occurs twice (fall back: 01:30 EDT, then
// 01:30 EST) fires once, at its first occurrence. So "30 2 * * *" fires
// every day, once, even on change days, and several matches inside one gap
// collapse into the single instant at its end.
//
// Thread safety: immutable after Parse; const methods are safe to call
// concurrently. Copyable.
class CronExpression {
 public:
  // Longest accepted expression, and time-zone name, in bytes.
  static constexpr size_t kMaxExpressionBytes = 256;
  static constexpr size_t kMaxTimeZoneBytes = 64;

  // Next() looks this many years past `after` (in the zone's civil years).
  // Every expression that can match at all matches at least once in any
  // 41 years: the rarest, Feb 29 on one weekday ("0 0 29 2 */7"), can wait
  // 40 (Sunday Feb 29 2088, then 2128, as 2100 is no leap year).
  static constexpr int kSearchHorizonYears = 50;

  // Parses `expression` (grammar above) for evaluation in `time_zone`: an
  // IANA name such as "Europe/Berlin" (letters, digits, '_', '-', '+'
  // components separated by '/'), or "" or "UTC" for UTC. Other zones are
  // loaded from /usr/share/zoneinfo (or $TZDIR) with absl::LoadTimeZone;
  // "localtime" is refused, as it names whatever the machine is set to.
  //
  // Returns the expression, or kInvalidArgument, with a message naming the
  // field and the offending text (non-printable bytes hex-escaped), for: an
  // expression longer than kMaxExpressionBytes; a field count other than
  // five; an empty item; a value out of the field's range (including
  // numbers too large for any integer); a range A-B with A > B; a step of
  // 0 or above the field's maximum; an unknown name or macro; unexpected
  // characters; an expression that can never match ("0 0 30 2 *",
  // "0 0 31 4 *"); a malformed, overlong or unknown time-zone name (the
  // message says the zone must be in /usr/share/zoneinfo, package tzdata).
  static absl::StatusOr<CronExpression> Parse(absl::string_view expression,
                                              absl::string_view time_zone);

  // The earliest instant strictly after `after` at which the expression
  // fires (daylight-saving rules above), or absl::InfiniteFuture() if there
  // is none within kSearchHorizonYears, or when `after` is infinite.
  // Repeatedly calling t = Next(t) yields strictly increasing instants, also
  // across daylight-saving changes. Costs microseconds: it skips whole
  // months, days and hours that cannot match rather than scanning minutes.
  absl::Time Next(absl::Time after) const;

  // The arguments Parse was given; Parse(expression(), time_zone()) yields
  // an equal schedule, so these two strings are what to persist.
  const std::string& expression() const { return expression_; }
  const std::string& time_zone() const { return time_zone_; }

 private:
  // Bit v of a mask is set when value v matches (day-of-week: 0..6, with 7
  // folded into 0).
  struct Fields {
    uint64_t minutes = 0;
    uint64_t hours = 0;
    uint64_t days_of_month = 0;
    uint64_t months = 0;
    uint64_t days_of_week = 0;
    // Whether the field's text starts with '*' (the Vixie day rule).
    bool day_of_month_star = false;
    bool day_of_week_star = false;
  };

  CronExpression(std::string expression, std::string time_zone,
                 absl::TimeZone zone, const Fields& fields)
      : expression_(std::move(expression)),
        time_zone_(std::move(time_zone)),
        zone_(zone),
        fields_(fields) {}

  static absl::StatusOr<Fields> ParseFields(absl::string_view expression);

  // The first matching civil minute at or after `from` whose year is at
  // most `last_year`.
  std::optional<absl::CivilMinute> NextCivilMatch(
      absl::CivilMinute from, absl::civil_year_t last_year) const;
  // The first day in [day, days in month] of year/month that matches, or 0.
  int NextDayInMonth(absl::civil_year_t year, int month, int day) const;

  std::string expression_;
  std::string time_zone_;
  absl::TimeZone zone_;
  Fields fields_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_CRON_H_
