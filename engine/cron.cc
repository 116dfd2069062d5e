#include "engine/cron.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/numeric/bits.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace taskwal::engine {
namespace {

// Quotes text for an error message; bytes that are not printable ASCII
// (NUL, UTF-8, control characters) come out hex-escaped.
std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

struct FieldSpec {
  const char* name;
  int min;
  int max;
  // Three-letter names of min, min + 1, ... (nullptr: numbers only).
  const char* const* names;
  int name_count;
};

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR",
                                       "MAY", "JUN", "JUL", "AUG",
                                       "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kWeekdayNames[] = {"SUN", "MON", "TUE", "WED",
                                         "THU", "FRI", "SAT"};

constexpr FieldSpec kFieldSpecs[5] = {
    {"minute", 0, 59, nullptr, 0},           {"hour", 0, 23, nullptr, 0},
    {"day-of-month", 1, 31, nullptr, 0},     {"month", 1, 12, kMonthNames, 12},
    {"day-of-week", 0, 7, kWeekdayNames, 7},
};

struct Macro {
  const char* name;
  const char* fields;
};

constexpr Macro kMacros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

absl::Status FieldError(const FieldSpec& spec, absl::string_view field,
                        absl::string_view detail) {
  return absl::InvalidArgumentError(
      absl::StrCat("cron ", spec.name, " field ", Quote(field), ": ", detail));
}

// A non-empty run of decimal digits, or nullopt. Values above `cap` come
// back as something above `cap` but never overflow, however long the run.
std::optional<int> ParseDigits(absl::string_view text, int cap) {
  if (text.empty()) return std::nullopt;
  int value = 0;
  for (const char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
    if (value <= cap) value = value * 10 + (c - '0');
  }
  return value;
}

// One value of a field: a number, or a name where the field has names.
absl::StatusOr<int> ParseValue(const FieldSpec& spec, absl::string_view field,
                               absl::string_view text) {
  if (text.empty()) return FieldError(spec, field, "missing value");
  const std::string range = absl::StrCat(spec.min, "-", spec.max);
  if (absl::ascii_isdigit(static_cast<unsigned char>(text[0]))) {
    const std::optional<int> value = ParseDigits(text, spec.max);
    if (!value.has_value()) {
      return FieldError(spec, field,
                        absl::StrCat(Quote(text), " is not a number"));
    }
    if (*value < spec.min || *value > spec.max) {
      return FieldError(
          spec, field,
          absl::StrCat("value ", Quote(text), " is out of range ", range));
    }
    return *value;
  }
  for (int i = 0; i < spec.name_count; ++i) {
    if (absl::EqualsIgnoreCase(text, spec.names[i])) return spec.min + i;
  }
  if (spec.names == nullptr ||
      !absl::ascii_isalpha(static_cast<unsigned char>(text[0]))) {
    return FieldError(spec, field,
                      absl::StrCat(Quote(text), " is not a number in ", range,
                                   spec.names == nullptr ? "" : " or a name"));
  }
  return FieldError(
      spec, field,
      absl::StrCat("unknown name ", Quote(text), " (want ", spec.names[0], "..",
                   spec.names[spec.name_count - 1], " or ", range, ")"));
}

// A field's comma list of items as a mask (bit v set when v matches).
absl::StatusOr<uint64_t> ParseField(const FieldSpec& spec,
                                    absl::string_view field) {
  uint64_t mask = 0;
  for (absl::string_view item : absl::StrSplit(field, ',')) {
    if (item.empty()) return FieldError(spec, field, "empty item");
    absl::string_view base = item;
    int step = 1;
    const size_t slash = item.find('/');
    if (slash != absl::string_view::npos) {
      base = item.substr(0, slash);
      const absl::string_view step_text = item.substr(slash + 1);
      if (step_text.empty()) {
        return FieldError(spec, field,
                          absl::StrCat("missing step in ", Quote(item)));
      }
      const std::optional<int> parsed = ParseDigits(step_text, spec.max);
      if (!parsed.has_value()) {
        return FieldError(
            spec, field,
            absl::StrCat("step ", Quote(step_text), " is not a number"));
      }
      if (*parsed < 1 || *parsed > spec.max) {
        return FieldError(spec, field,
                          absl::StrCat("step ", Quote(step_text),
                                       " is out of range 1-", spec.max));
      }
      step = *parsed;
    }
    int low = spec.min;
    int high = spec.max;
    if (base != "*") {
      const size_t dash = base.find('-');
      absl::StatusOr<int> first = ParseValue(spec, field, base.substr(0, dash));
      if (!first.ok()) return first.status();
      low = *first;
      if (dash != absl::string_view::npos) {
        absl::StatusOr<int> last =
            ParseValue(spec, field, base.substr(dash + 1));
        if (!last.ok()) return last.status();
        high = *last;
        if (low > high) {
          return FieldError(
              spec, field,
              absl::StrCat("range ", Quote(base), " ends before it starts"));
        }
      } else if (slash == absl::string_view::npos) {
        high = low;  // A single value; "A/S" runs through the maximum.
      }
    }
    for (int v = low; v <= high; v += step) mask |= uint64_t{1} << v;
  }
  return mask;
}

// The lowest set bit of `mask` at or above `from`, or -1.
int NextBit(uint64_t mask, int from) {
  if (from > 63) return -1;
  const uint64_t rest = mask & (~uint64_t{0} << from);
  return rest == 0 ? -1 : absl::countr_zero(rest);
}

bool IsLeapYear(absl::civil_year_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

int DaysInMonth(absl::civil_year_t year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
}

// Sunday = 0, as in cron.
int CronWeekday(absl::CivilDay day) {
  switch (absl::GetWeekday(day)) {
    case absl::Weekday::sunday:
      return 0;
    case absl::Weekday::monday:
      return 1;
    case absl::Weekday::tuesday:
      return 2;
    case absl::Weekday::wednesday:
      return 3;
    case absl::Weekday::thursday:
      return 4;
    case absl::Weekday::friday:
      return 5;
    case absl::Weekday::saturday:
      return 6;
  }
  return 0;
}

// Accepts IANA-shaped names only, so that a persisted schedule cannot name a
// file path ("/etc/x", "../x", "file:x", which absl would open) or a zone
// that differs between machines ("localtime").
absl::Status CheckTimeZoneName(absl::string_view name) {
  if (name.size() > CronExpression::kMaxTimeZoneBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("time zone name is ", name.size(), " bytes; the limit is ",
                     CronExpression::kMaxTimeZoneBytes));
  }
  for (absl::string_view component : absl::StrSplit(name, '/')) {
    bool ok = !component.empty() && component[0] != '-';
    for (const char c : component) {
      ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                  c == '_' || c == '-' || c == '+');
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("time zone ", Quote(name),
                       " is not an IANA zone name such as \"Europe/Berlin\""));
    }
  }
  if (name == "localtime") {
    return absl::InvalidArgumentError(
        "time zone \"localtime\" depends on the machine; name an IANA zone "
        "such as \"Europe/Berlin\"");
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::TimeZone> LoadZone(absl::string_view name) {
  if (name.empty() || name == "UTC") return absl::UTCTimeZone();
  absl::Status valid = CheckTimeZoneName(name);
  if (!valid.ok()) return valid;
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(std::string(name), &zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown time zone ", Quote(name),
                     ": /usr/share/zoneinfo (package tzdata) must hold it"));
  }
  return zone;
}

}  // namespace

absl::StatusOr<CronExpression::Fields> CronExpression::ParseFields(
    absl::string_view expression) {
  absl::string_view text = expression;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  if (!text.empty() && text.front() == '@') {
    for (const Macro& macro : kMacros) {
      if (absl::EqualsIgnoreCase(text, macro.name)) {
        return ParseFields(macro.fields);
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown cron macro ", Quote(text),
        " (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or "
        "@hourly)"));
  }
  const std::vector<absl::string_view> fields =
      absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cron expression ", Quote(expression), " has ", fields.size(),
        " fields; want 5 (minute hour day-of-month month day-of-week) or a "
        "macro such as @daily"));
  }
  uint64_t masks[5];
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<uint64_t> mask = ParseField(kFieldSpecs[i], fields[i]);
    if (!mask.ok()) return mask.status();
    masks[i] = *mask;
  }
  Fields parsed;
  parsed.minutes = masks[0];
  parsed.hours = masks[1];
  parsed.days_of_month = masks[2];
  parsed.months = masks[3];
  // Sunday is 0 and 7; keep it as bit 0 only.
  parsed.days_of_week = (masks[4] | (masks[4] >> 7)) & 0x7f;
  parsed.day_of_month_star = fields[2][0] == '*';
  parsed.day_of_week_star = fields[4][0] == '*';
  return parsed;
}

absl::StatusOr<CronExpression> CronExpression::Parse(
    absl::string_view expression, absl::string_view time_zone) {
  if (expression.size() > kMaxExpressionBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron expression is ", expression.size(),
                     " bytes; the limit is ", kMaxExpressionBytes));
  }
  absl::StatusOr<Fields> fields = ParseFields(expression);
  if (!fields.ok()) return fields.status();
  absl::StatusOr<absl::TimeZone> zone = LoadZone(time_zone);
  if (!zone.ok()) return zone.status();
  CronExpression cron(std::string(expression), std::string(time_zone), *zone,
                      *fields);
  // Whether it can ever match depends on the calendar only (30 Feb, 31 Apr),
  // not on the zone: any window of kSearchHorizonYears holds a match if one
  // exists at all.
  if (!cron.NextCivilMatch(absl::CivilMinute(2000, 1, 1, 0, 0),
                           2000 + kSearchHorizonYears)
           .has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron expression ", Quote(expression),
                     " can never match: no such day in any month it names"));
  }
  return cron;
}

int CronExpression::NextDayInMonth(absl::civil_year_t year, int month,
                                   int day) const {
  const int last = DaysInMonth(year, month);
  if (day > last) return 0;
  const bool both = fields_.day_of_month_star || fields_.day_of_week_star;
  int weekday = CronWeekday(absl::CivilDay(year, month, day));
  for (; day <= last; ++day, weekday = (weekday + 1) % 7) {
    const bool dom = (fields_.days_of_month >> day) & 1;
    const bool dow = (fields_.days_of_week >> weekday) & 1;
    if (both ? (dom && dow) : (dom || dow)) return day;
  }
  return 0;
}

std::optional<absl::CivilMinute> CronExpression::NextCivilMatch(
    absl::CivilMinute from, absl::civil_year_t last_year) const {
  absl::civil_year_t year = from.year();
  int month = from.month();
  int day = from.day();
  int hour = from.hour();
  int minute = from.minute();
  // Each step either returns or moves to the start of a later minute, hour,
  // day, month or year; a field that does not match skips its whole unit.
  while (year <= last_year) {
    const int next_month = NextBit(fields_.months, month);
    if (next_month < 0) {
      ++year;
      month = 1, day = 1, hour = 0, minute = 0;
      continue;
    }
    if (next_month != month) {
      month = next_month, day = 1, hour = 0, minute = 0;
    }
    const int next_day = NextDayInMonth(year, month, day);
    if (next_day == 0) {
      ++month, day = 1, hour = 0, minute = 0;  // Month 13: NextBit says -1.
      continue;
    }
    if (next_day != day) {
      day = next_day, hour = 0, minute = 0;
    }
    const int next_hour = NextBit(fields_.hours, hour);
    if (next_hour < 0) {
      ++day, hour = 0, minute = 0;  // Past the month's end: NextDayInMonth 0.
      continue;
    }
    if (next_hour != hour) {
      hour = next_hour, minute = 0;
    }
    const int next_minute = NextBit(fields_.minutes, minute);
    if (next_minute < 0) {
      ++hour, minute = 0;  // Hour 24: NextBit says -1.
      continue;
    }
    return absl::CivilMinute(year, month, day, hour, next_minute);
  }
  return std::nullopt;
}

absl::Time CronExpression::Next(absl::Time after) const {
  if (after == absl::InfiniteFuture() || after == absl::InfinitePast()) {
    return absl::InfiniteFuture();
  }
  absl::CivilMinute from = absl::CivilMinute(zone_.At(after).cs) + 1;
  const absl::civil_year_t last_year = from.year() + kSearchHorizonYears;
  // Civil minutes map to instants in non-decreasing order (a skipped one to
  // the end of its gap, a repeated one to its first occurrence), so the
  // first match whose instant is after `after` is the earliest. Matches
  // before it are ones inside a gap that ends at `after`, or in a repeated
  // stretch whose first pass `after` is already beyond.
  for (;;) {
    const std::optional<absl::CivilMinute> match =
        NextCivilMatch(from, last_year);
    if (!match.has_value()) return absl::InfiniteFuture();
    const absl::TimeZone::TimeInfo info = zone_.At(absl::CivilSecond(*match));
    const absl::Time at =
        info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre;
    if (at > after) return at;
    from = *match + 1;
  }
}

}  // namespace taskwal::engine
