#include "engine/cron.h"

#include <bitset>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/status_matchers.h"

namespace taskwal::engine {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::testing::AllOf;
using ::testing::AllOfArray;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class CronExpressionTest : public ::testing::Test {
 protected:
  static absl::TimeZone Zone(const std::string& name) {
    absl::TimeZone zone;
    EXPECT_TRUE(absl::LoadTimeZone(name, &zone)) << name;
    return zone;
  }

  static CronExpression MustParse(absl::string_view expression,
                                  absl::string_view time_zone = "") {
    absl::StatusOr<CronExpression> cron =
        CronExpression::Parse(expression, time_zone);
    EXPECT_THAT(cron, IsOk()) << expression;
    if (!cron.ok()) return *CronExpression::Parse("* * * * *", "");
    return *std::move(cron);
  }

  static absl::Time Utc(int year, int month, int day, int hour, int minute,
                        int second = 0) {
    return absl::FromCivil(
        absl::CivilSecond(year, month, day, hour, minute, second),
        absl::UTCTimeZone());
  }

  // The first `count` firings after `after`, as civil minutes in the zone.
  static std::vector<std::string> Firings(const CronExpression& cron,
                                          absl::Time after, int count) {
    absl::TimeZone zone =
        Zone(cron.time_zone().empty() ? std::string("UTC") : cron.time_zone());
    std::vector<std::string> out;
    for (int i = 0; i < count; ++i) {
      after = cron.Next(after);
      if (after == absl::InfiniteFuture()) break;
      out.push_back(absl::FormatTime("%Y-%m-%d %H:%M %a", after, zone));
    }
    return out;
  }

  // The values one field takes, with the other fields wildcards: the
  // firings over one period of the next-larger unit, in UTC.
  enum Field { kMinute, kHour, kDayOfMonth, kMonth, kDayOfWeek };
  static std::set<int> Values(Field field, absl::string_view text) {
    std::string expression;
    absl::Time start = Utc(2024, 1, 1, 0, 0);  // A Monday.
    absl::Time end;
    switch (field) {
      case kMinute:
        expression = absl::StrCat(text, " * * * *");
        end = start + absl::Hours(1);
        break;
      case kHour:
        expression = absl::StrCat("0 ", text, " * * *");
        end = start + absl::Hours(24);
        break;
      case kDayOfMonth:
        expression = absl::StrCat("0 0 ", text, " * *");
        end = Utc(2024, 2, 1, 0, 0);
        break;
      case kMonth:
        expression = absl::StrCat("0 0 1 ", text, " *");
        end = Utc(2025, 1, 1, 0, 0);
        break;
      case kDayOfWeek:
        expression = absl::StrCat("0 0 * * ", text);
        start = Utc(2024, 1, 7, 0, 0);  // A Sunday.
        end = start + absl::Hours(24 * 7);
        break;
    }
    const CronExpression cron = MustParse(expression);
    std::set<int> values;
    for (absl::Time t = cron.Next(start - absl::Seconds(1)); t < end;
         t = cron.Next(t)) {
      const absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
      switch (field) {
        case kMinute:
          values.insert(cs.minute());
          break;
        case kHour:
          values.insert(cs.hour());
          break;
        case kDayOfMonth:
          values.insert(cs.day());
          break;
        case kMonth:
          values.insert(cs.month());
          break;
        case kDayOfWeek:
          values.insert((static_cast<int>(absl::GetWeekday(cs)) + 1) % 7);
          break;
      }
    }
    return values;
  }
};

std::set<int> Span(int first, int last, int step = 1) {
  std::set<int> out;
  for (int v = first; v <= last; v += step) out.insert(v);
  return out;
}

TEST_F(CronExpressionTest, EveryItemForm) {
  EXPECT_EQ(Values(kMinute, "*"), Span(0, 59));
  EXPECT_EQ(Values(kMinute, "7"), std::set<int>({7}));
  EXPECT_EQ(Values(kMinute, "10-12"), Span(10, 12));
  EXPECT_EQ(Values(kMinute, "*/20"), std::set<int>({0, 20, 40}));
  EXPECT_EQ(Values(kMinute, "50-59/4"), std::set<int>({50, 54, 58}));
  EXPECT_EQ(Values(kMinute, "45/7"), std::set<int>({45, 52, 59}));
  EXPECT_EQ(Values(kMinute, "5,10-11,*/30,57/2"),
            std::set<int>({0, 5, 10, 11, 30, 57, 59}));
  EXPECT_EQ(Values(kMinute, "59"), std::set<int>({59}));
  EXPECT_EQ(Values(kMinute, "*/59"), std::set<int>({0, 59}));
  EXPECT_EQ(Values(kMinute, "3-3"), std::set<int>({3}));
  EXPECT_EQ(Values(kHour, "*/6"), std::set<int>({0, 6, 12, 18}));
  EXPECT_EQ(Values(kHour, "9-17/4,23"), std::set<int>({9, 13, 17, 23}));
  EXPECT_EQ(Values(kDayOfMonth, "1,15,31"), std::set<int>({1, 15, 31}));
  EXPECT_EQ(Values(kDayOfMonth, "*/10"), std::set<int>({1, 11, 21, 31}));
  EXPECT_EQ(Values(kDayOfMonth, "28/2"), std::set<int>({28, 30}));
  EXPECT_EQ(Values(kMonth, "*/3"), std::set<int>({1, 4, 7, 10}));
  EXPECT_EQ(Values(kMonth, "2-4,12"), std::set<int>({2, 3, 4, 12}));
  EXPECT_EQ(Values(kDayOfWeek, "*"), Span(0, 6));
  EXPECT_EQ(Values(kDayOfWeek, "1-5"), Span(1, 5));
  EXPECT_EQ(Values(kDayOfWeek, "*/2"), std::set<int>({0, 2, 4, 6}));
  EXPECT_EQ(Values(kDayOfWeek, "0-7/3"), std::set<int>({0, 3, 6}));
}

TEST_F(CronExpressionTest, SevenAndZeroAreSunday) {
  EXPECT_EQ(Values(kDayOfWeek, "0"), std::set<int>({0}));
  EXPECT_EQ(Values(kDayOfWeek, "7"), std::set<int>({0}));
  EXPECT_EQ(Values(kDayOfWeek, "5-7"), std::set<int>({0, 5, 6}));
  EXPECT_EQ(Values(kDayOfWeek, "6/1"), std::set<int>({0, 6}));
}

TEST_F(CronExpressionTest, NamesAreCaseInsensitive) {
  EXPECT_EQ(Values(kMonth, "jan-Mar"), Span(1, 3));
  EXPECT_EQ(Values(kMonth, "DEC,feb"), std::set<int>({2, 12}));
  EXPECT_EQ(Values(kMonth, "Jan/5"), std::set<int>({1, 6, 11}));
  EXPECT_EQ(Values(kDayOfWeek, "mon-FRI"), Span(1, 5));
  EXPECT_EQ(Values(kDayOfWeek, "Sun,sat"), std::set<int>({0, 6}));
  EXPECT_EQ(Values(kDayOfWeek, "TUE-7"), std::set<int>({0, 2, 3, 4, 5, 6}));
}

TEST_F(CronExpressionTest, FieldsSplitOnSpacesAndTabs) {
  const absl::Time after = Utc(2024, 3, 1, 10, 0);
  const CronExpression plain = MustParse("0 9 * * 1-5");
  const CronExpression spaced = MustParse(" \t0\t9   *  * \t1-5 \t ");
  EXPECT_EQ(spaced.Next(after), plain.Next(after));
  EXPECT_EQ(spaced.expression(), " \t0\t9   *  * \t1-5 \t ");
}

TEST_F(CronExpressionTest, AccessorsRoundTrip) {
  const CronExpression cron = MustParse("*/7 1-5 * * MON", "Europe/Berlin");
  EXPECT_EQ(cron.expression(), "*/7 1-5 * * MON");
  EXPECT_EQ(cron.time_zone(), "Europe/Berlin");
  const CronExpression again = MustParse(cron.expression(), cron.time_zone());
  absl::Time a = Utc(2024, 1, 1, 0, 0);
  absl::Time b = a;
  for (int i = 0; i < 100; ++i) {
    a = cron.Next(a);
    b = again.Next(b);
    ASSERT_EQ(a, b);
  }
  EXPECT_EQ(MustParse("@daily", "").time_zone(), "");
  EXPECT_EQ(MustParse("@daily", "UTC").time_zone(), "UTC");
}

TEST_F(CronExpressionTest, EveryFifteenMinutes) {
  EXPECT_THAT(Firings(MustParse("*/15 * * * *"), Utc(2024, 5, 6, 10, 7), 5),
              ElementsAre("2024-05-06 10:15 Mon", "2024-05-06 10:30 Mon",
                          "2024-05-06 10:45 Mon", "2024-05-06 11:00 Mon",
                          "2024-05-06 11:15 Mon"));
}

TEST_F(CronExpressionTest, NextIsStrictlyAfter) {
  const CronExpression cron = MustParse("*/15 * * * *");
  EXPECT_EQ(cron.Next(Utc(2024, 5, 6, 10, 15)), Utc(2024, 5, 6, 10, 30));
  EXPECT_EQ(cron.Next(Utc(2024, 5, 6, 10, 14, 59)), Utc(2024, 5, 6, 10, 15));
  EXPECT_EQ(cron.Next(Utc(2024, 5, 6, 10, 15) - absl::Nanoseconds(1)),
            Utc(2024, 5, 6, 10, 15));
  EXPECT_EQ(cron.Next(Utc(2024, 5, 6, 10, 15) + absl::Nanoseconds(1)),
            Utc(2024, 5, 6, 10, 30));
}

TEST_F(CronExpressionTest, WeekdaysAtNine) {
  // 2024-03-01 is a Friday.
  EXPECT_THAT(Firings(MustParse("0 9 * * 1-5"), Utc(2024, 3, 1, 10, 0), 6),
              ElementsAre("2024-03-04 09:00 Mon", "2024-03-05 09:00 Tue",
                          "2024-03-06 09:00 Wed", "2024-03-07 09:00 Thu",
                          "2024-03-08 09:00 Fri", "2024-03-11 09:00 Mon"));
}

TEST_F(CronExpressionTest, FirstOfTheMonth) {
  EXPECT_THAT(Firings(MustParse("0 0 1 * *"), Utc(2024, 11, 15, 0, 0), 3),
              ElementsAre("2024-12-01 00:00 Sun", "2025-01-01 00:00 Wed",
                          "2025-02-01 00:00 Sat"));
}

TEST_F(CronExpressionTest, FebruaryTwentyNinthOnlyInLeapYears) {
  const CronExpression cron = MustParse("0 0 29 2 *");
  EXPECT_THAT(Firings(cron, Utc(2024, 3, 1, 0, 0), 2),
              ElementsAre("2028-02-29 00:00 Tue", "2032-02-29 00:00 Sun"));
  // 2100 is not a leap year.
  EXPECT_THAT(Firings(cron, Utc(2096, 3, 1, 0, 0), 1),
              ElementsAre("2104-02-29 00:00 Fri"));
}

// The rarest expression that can match: forty years between matches, inside
// the search horizon.
TEST_F(CronExpressionTest, SundayFebruaryTwentyNinthIsFoundDecadesAhead) {
  const CronExpression cron = MustParse("0 0 29 2 */7");
  EXPECT_THAT(Firings(cron, Utc(2088, 3, 1, 0, 0), 1),
              ElementsAre("2128-02-29 00:00 Sun"));
}

TEST_F(CronExpressionTest, DayOfMonthOrDayOfWeekWhenBothRestricted) {
  // 2024-01-01 is a Monday: Fridays are the 5th, 12th, 19th, 26th; the 13th
  // is a Saturday.
  EXPECT_THAT(Firings(MustParse("0 0 13 * 5"), Utc(2024, 1, 1, 0, 0), 6),
              ElementsAre("2024-01-05 00:00 Fri", "2024-01-12 00:00 Fri",
                          "2024-01-13 00:00 Sat", "2024-01-19 00:00 Fri",
                          "2024-01-26 00:00 Fri", "2024-02-02 00:00 Fri"));
}

TEST_F(CronExpressionTest, DayOfMonthAndDayOfWeekWhenOneStartsWithStar) {
  // Day-of-week "*/5" is Sunday and Friday, but starts with '*': the 13th
  // must also be one of them.
  EXPECT_THAT(Firings(MustParse("0 0 13 * */5"), Utc(2024, 1, 1, 0, 0), 3),
              ElementsAre("2024-09-13 00:00 Fri", "2024-10-13 00:00 Sun",
                          "2024-12-13 00:00 Fri"));
  // Day-of-month "*/10" (1, 11, 21, 31) and Monday.
  EXPECT_THAT(Firings(MustParse("0 0 */10 * 1"), Utc(2023, 12, 31, 0, 0), 3),
              ElementsAre("2024-01-01 00:00 Mon", "2024-03-11 00:00 Mon",
                          "2024-04-01 00:00 Mon"));
  // A plain '*' in either keeps the other one's meaning.
  EXPECT_THAT(Firings(MustParse("0 0 * * 5"), Utc(2024, 1, 1, 0, 0), 2),
              ElementsAre("2024-01-05 00:00 Fri", "2024-01-12 00:00 Fri"));
  EXPECT_THAT(Firings(MustParse("0 0 13 * *"), Utc(2024, 1, 1, 0, 0), 2),
              ElementsAre("2024-01-13 00:00 Sat", "2024-02-13 00:00 Tue"));
}

TEST_F(CronExpressionTest, Macros) {
  const absl::Time after = Utc(2024, 5, 15, 10, 30);
  const struct {
    const char* macro;
    const char* fields;
  } kCases[] = {
      {"@yearly", "0 0 1 1 *"},    {"@annually", "0 0 1 1 *"},
      {"@monthly", "0 0 1 * *"},   {"@weekly", "0 0 * * 0"},
      {"@daily", "0 0 * * *"},     {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"},    {"@DAILY", "0 0 * * *"},
      {" @Hourly\t", "0 * * * *"},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(Firings(MustParse(c.macro), after, 3),
              Firings(MustParse(c.fields), after, 3))
        << c.macro;
  }
  EXPECT_THAT(Firings(MustParse("@weekly"), after, 1),
              ElementsAre("2024-05-19 00:00 Sun"));
  EXPECT_THAT(Firings(MustParse("@yearly"), after, 1),
              ElementsAre("2025-01-01 00:00 Wed"));
}

TEST_F(CronExpressionTest, RejectsMalformedExpressions) {
  const struct {
    std::string expression;
    std::vector<std::string> message_parts;
  } kCases[] = {
      {"", {"has 0 fields; want 5"}},
      {"* * * *", {"has 4 fields"}},
      {"* * * * * *", {"has 6 fields"}},
      {"0 0 * * * extra", {"has 6 fields"}},
      {"60 * * * *", {"minute field \"60\"", "out of range 0-59"}},
      {"* 24 * * *", {"hour field \"24\"", "out of range 0-23"}},
      {"* * 0 * *", {"day-of-month field \"0\"", "out of range 1-31"}},
      {"* * 32 * *", {"day-of-month field \"32\""}},
      {"* * * 0 *", {"month field \"0\"", "out of range 1-12"}},
      {"* * * 13 *", {"month field \"13\""}},
      {"* * * * 8", {"day-of-week field \"8\"", "out of range 0-7"}},
      {"5-3 * * * *", {"minute field \"5-3\"", "ends before it starts"}},
      {"* * * * SAT-SUN", {"day-of-week field", "\"SAT-SUN\" ends before"}},
      {"* * * DEC-JAN *", {"month field", "ends before"}},
      {"*/0 * * * *", {"minute field \"*/0\"", "step \"0\" is out of range"}},
      {"*/60 * * * *", {"step \"60\" is out of range 1-59"}},
      {"* */24 * * *", {"hour field", "out of range 1-23"}},
      {"* * */32 * *", {"day-of-month field", "step"}},
      {"* * * */13 *", {"month field", "step"}},
      {"* * * * */8", {"day-of-week field", "step \"8\""}},
      {"* * * FOO *", {"month field \"FOO\"", "unknown name \"FOO\""}},
      {"* * * JANUARY *", {"unknown name \"JANUARY\""}},
      {"* * * JAN-FOO *", {"unknown name \"FOO\""}},
      {"* * * * MONDAY", {"day-of-week field", "unknown name \"MONDAY\""}},
      {"JAN * * * *", {"minute field", "\"JAN\" is not a number in 0-59"}},
      {"* * MON * *", {"day-of-month field", "not a number"}},
      {"5x * * * *", {"minute field \"5x\"", "\"5x\" is not a number"}},
      {"5-6x * * * *", {"\"6x\" is not a number"}},
      {"1,,2 * * * *", {"minute field \"1,,2\"", "empty item"}},
      {",1 * * * *", {"empty item"}},
      {"1, * * * *", {"empty item"}},
      {"1- * * * *", {"minute field \"1-\"", "missing value"}},
      {"-1 * * * *", {"missing value"}},
      {"/5 * * * *", {"missing value"}},
      {"*/ * * * *", {"missing step"}},
      {"*/x * * * *", {"step \"x\" is not a number"}},
      {"1/2/3 * * * *", {"step \"2/3\" is not a number"}},
      {"*-5 * * * *", {"\"*\" is not a number"}},
      {"** * * * *", {"\"**\" is not a number"}},
      {"1-2-3 * * * *", {"\"2-3\" is not a number"}},
      {"+5 * * * *", {"\"+5\" is not a number"}},
      {"99999999999999999999 * * * *", {"out of range 0-59"}},
      {"1-99999999999999999999 * * * *", {"out of range 0-59"}},
      {"*/99999999999999999999 * * * *", {"out of range 1-59"}},
      {"99999999999999999999", {"has 1 fields"}},
      {"* * * * 1\n", {"day-of-week field \"1\\n\"", "not a number"}},
      {"@reboot", {"unknown cron macro \"@reboot\"", "@yearly"}},
      {"@daily 5", {"unknown cron macro"}},
      {"@", {"unknown cron macro"}},
      {"0 0 30 2 *", {"can never match"}},
      {"0 0 31 4 *", {"\"0 0 31 4 *\" can never match"}},
      {"0 0 31 2,4,6,9,11 *", {"can never match"}},
      {"0 0 30,31 FEB */2", {"can never match"}},
  };
  for (const auto& c : kCases) {
    std::vector<::testing::Matcher<std::string>> parts;
    for (const std::string& part : c.message_parts) {
      parts.push_back(HasSubstr(part));
    }
    EXPECT_THAT(CronExpression::Parse(c.expression, "UTC"),
                StatusIs(absl::StatusCode::kInvalidArgument, AllOfArray(parts)))
        << c.expression;
  }
}

TEST_F(CronExpressionTest, DatesThatExistSomeYearsAreAccepted) {
  for (const char* expression :
       {"0 0 29 2 *", "0 0 29 2 1", "0 0 31 * *", "0 0 30,31 2,3 *",
        "0 0 29 2 */7", "0 0 31 2 1"}) {
    EXPECT_THAT(CronExpression::Parse(expression, "UTC"), IsOk()) << expression;
  }
}

TEST_F(CronExpressionTest, TimeZones) {
  for (const char* zone :
       {"", "UTC", "Europe/Berlin", "America/New_York", "Etc/GMT+5",
        "America/Port-au-Prince", "America/Argentina/Buenos_Aires"}) {
    EXPECT_THAT(CronExpression::Parse("@daily", zone), IsOk()) << zone;
  }
  EXPECT_THAT(CronExpression::Parse("@daily", "Mars/Olympus_Mons"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown time zone "
                                       "\"Mars/Olympus_Mons\""),
                             HasSubstr("/usr/share/zoneinfo (package tzdata) "
                                       "must hold it"))));
  for (const std::string& zone :
       {std::string("/etc/passwd"), std::string("../etc/passwd"),
        std::string("file:/usr/share/zoneinfo/UTC"),
        std::string("Europe//Berlin"), std::string("Europe/Berlin/"),
        std::string("Europe/./Berlin"), std::string("localtime"),
        std::string("Europe/Berlin\0", 14), std::string("Europe/Z\xc3\xbcrich"),
        std::string("Europe/Berlin "), std::string("-x"), std::string("Europe"),
        std::string(65, 'A')}) {
    absl::StatusOr<CronExpression> cron = CronExpression::Parse("@daily", zone);
    EXPECT_THAT(cron, StatusIs(absl::StatusCode::kInvalidArgument))
        << absl::CHexEscape(zone);
    EXPECT_THAT(cron.status().message(), Not(HasSubstr(std::string(1, '\0'))));
  }
}

TEST_F(CronExpressionTest, EvaluatesInTheZonesCivilTime) {
  const CronExpression cron = MustParse("0 9 * * *", "Europe/Berlin");
  // 09:00 CET is 08:00 UTC in winter; 09:00 CEST is 07:00 UTC in summer.
  EXPECT_EQ(cron.Next(Utc(2024, 1, 10, 0, 0)), Utc(2024, 1, 10, 8, 0));
  EXPECT_EQ(cron.Next(Utc(2024, 7, 10, 0, 0)), Utc(2024, 7, 10, 7, 0));
  const CronExpression new_york = MustParse("0 0 1 1 *", "America/New_York");
  EXPECT_EQ(new_york.Next(Utc(2025, 1, 1, 0, 0)), Utc(2025, 1, 1, 5, 0));
}

// New York 2024: 02:00 EST became 03:00 EDT on Mar 10 (07:00 UTC); 02:00 EDT
// became 01:00 EST on Nov 3 (06:00 UTC).
TEST_F(CronExpressionTest, NewYorkSpringForwardGapFiresOnceAtItsEnd) {
  const CronExpression cron = MustParse("30 2 * * *", "America/New_York");
  EXPECT_EQ(cron.Next(Utc(2024, 3, 9, 12, 0)), Utc(2024, 3, 10, 7, 0));
  EXPECT_EQ(cron.Next(Utc(2024, 3, 10, 7, 0)), Utc(2024, 3, 11, 6, 30));
  EXPECT_THAT(Firings(MustParse("*/30 * * * *", "America/New_York"),
                      Utc(2024, 3, 10, 5, 45), 5),
              ElementsAre("2024-03-10 01:00 Sun", "2024-03-10 01:30 Sun",
                          "2024-03-10 03:00 Sun", "2024-03-10 03:30 Sun",
                          "2024-03-10 04:00 Sun"));
  // A match inside the gap at or after which we ask is not repeated.
  const CronExpression every_minute =
      MustParse("* * * * *", "America/New_York");
  EXPECT_EQ(every_minute.Next(Utc(2024, 3, 10, 6, 59)), Utc(2024, 3, 10, 7, 0));
  EXPECT_EQ(every_minute.Next(Utc(2024, 3, 10, 7, 0)), Utc(2024, 3, 10, 7, 1));
}

TEST_F(CronExpressionTest, NewYorkFallBackRepeatedHourFiresOnce) {
  const CronExpression cron = MustParse("30 1 * * *", "America/New_York");
  // 01:30 EDT (05:30 UTC), not 01:30 EST (06:30 UTC).
  EXPECT_EQ(cron.Next(Utc(2024, 11, 2, 12, 0)), Utc(2024, 11, 3, 5, 30));
  EXPECT_EQ(cron.Next(Utc(2024, 11, 3, 5, 30)), Utc(2024, 11, 4, 6, 30));
  // Asked during the second pass (01:10 EST), it waits for the next day.
  EXPECT_EQ(cron.Next(Utc(2024, 11, 3, 6, 10)), Utc(2024, 11, 4, 6, 30));
  const CronExpression half_hours =
      MustParse("*/30 * * * *", "America/New_York");
  std::vector<absl::Time> got;
  for (absl::Time t = half_hours.Next(Utc(2024, 11, 3, 4, 45));
       t < Utc(2024, 11, 3, 8, 0); t = half_hours.Next(t)) {
    got.push_back(t);
  }
  EXPECT_THAT(got,
              ElementsAre(Utc(2024, 11, 3, 5, 0), Utc(2024, 11, 3, 5, 30),
                          Utc(2024, 11, 3, 7, 0), Utc(2024, 11, 3, 7, 30)));
}

// Berlin 2024: 02:00 CET became 03:00 CEST on Mar 31 (01:00 UTC); 03:00 CEST
// became 02:00 CET on Oct 27 (01:00 UTC).
TEST_F(CronExpressionTest, BerlinSpringForwardAndFallBack) {
  const CronExpression cron = MustParse("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(cron.Next(Utc(2024, 3, 30, 12, 0)), Utc(2024, 3, 31, 1, 0));
  EXPECT_EQ(cron.Next(Utc(2024, 3, 31, 1, 0)), Utc(2024, 4, 1, 0, 30));
  EXPECT_EQ(cron.Next(Utc(2024, 10, 26, 12, 0)), Utc(2024, 10, 27, 0, 30));
  EXPECT_EQ(cron.Next(Utc(2024, 10, 27, 0, 30)), Utc(2024, 10, 28, 1, 30));
  const CronExpression every_ten = MustParse("*/10 2 * * *", "Europe/Berlin");
  std::vector<absl::Time> got;
  for (absl::Time t = every_ten.Next(Utc(2024, 10, 26, 23, 0));
       t < Utc(2024, 10, 27, 3, 0); t = every_ten.Next(t)) {
    got.push_back(t);
  }
  EXPECT_THAT(got,
              ElementsAre(Utc(2024, 10, 27, 0, 0), Utc(2024, 10, 27, 0, 10),
                          Utc(2024, 10, 27, 0, 20), Utc(2024, 10, 27, 0, 30),
                          Utc(2024, 10, 27, 0, 40), Utc(2024, 10, 27, 0, 50)));
}

// "*/30 * * * *" over each change day: strictly increasing, no duplicates,
// 46 firings on a 23-hour day (02:00, 02:30 and 03:00 are one), 48 on a
// 25-hour day (the repeated hour fires once).
TEST_F(CronExpressionTest, HalfHourlyAcrossDaylightSavingChanges) {
  const struct {
    const char* zone;
    absl::CivilDay day;
    int firings;
  } kCases[] = {
      {"America/New_York", absl::CivilDay(2024, 3, 10), 46},
      {"America/New_York", absl::CivilDay(2024, 11, 3), 48},
      {"Europe/Berlin", absl::CivilDay(2024, 3, 31), 46},
      {"Europe/Berlin", absl::CivilDay(2024, 10, 27), 48},
  };
  for (const auto& c : kCases) {
    const absl::TimeZone zone = Zone(c.zone);
    const CronExpression cron = MustParse("*/30 * * * *", c.zone);
    const absl::Time start = absl::FromCivil(c.day, zone);
    const absl::Time end = absl::FromCivil(c.day + 1, zone);
    std::set<absl::Time> seen;
    int count = 0;
    absl::Time previous = start - absl::Seconds(1);
    for (absl::Time t = cron.Next(previous); t < end; t = cron.Next(t)) {
      EXPECT_GT(t, previous) << c.zone;
      EXPECT_LE(t - previous, absl::Minutes(90)) << c.zone;
      EXPECT_TRUE(seen.insert(t).second) << c.zone;
      previous = t;
      ++count;
    }
    EXPECT_EQ(count, c.firings) << c.zone << " " << c.day;
  }
}

TEST_F(CronExpressionTest, InfiniteAndExtremeTimes) {
  const CronExpression cron = MustParse("*/5 * * * *", "Europe/Berlin");
  EXPECT_EQ(cron.Next(absl::InfiniteFuture()), absl::InfiniteFuture());
  EXPECT_EQ(cron.Next(absl::InfinitePast()), absl::InfiniteFuture());
  for (const absl::Time after :
       {absl::UnixEpoch() - absl::Hours(24 * 366 * 3000),
        absl::UnixEpoch() + absl::Hours(int64_t{24} * 366 * 100000),
        absl::FromUnixSeconds(int64_t{1} << 40)}) {
    const absl::Time next = cron.Next(after);
    EXPECT_GT(next, after);
    EXPECT_LE(next, after + absl::Minutes(5));
  }
}

TEST_F(CronExpressionTest, HostileInput) {
  EXPECT_THAT(
      CronExpression::Parse(std::string("0 0 * * *\0", 10), "UTC"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"*\\x00\" is not a number in 0-7 or a name")));
  EXPECT_THAT(
      CronExpression::Parse(std::string("0\0 0 * * *", 10), "UTC"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("minute field")));
  EXPECT_THAT(CronExpression::Parse(std::string(10000, '*'), "UTC"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("10000 bytes; the limit is 256")));
  EXPECT_THAT(CronExpression::Parse(std::string(10000, ' '), "UTC"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the limit is 256")));
  // Exactly at the limit is fine.
  EXPECT_THAT(
      CronExpression::Parse("0 0 * * *" + std::string(256 - 9, ' '), "UTC"),
      IsOk());
  // Long runs of digits: leading zeros are harmless, anything else is out of
  // range however many digits it has.
  EXPECT_THAT(CronExpression::Parse(std::string(240, '0') + "5 * * * *", "UTC"),
              IsOk());
  EXPECT_THAT(
      CronExpression::Parse("1" + std::string(200, '0') + " * * * *", "UTC"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("out of range 0-59")));
  EXPECT_THAT(
      CronExpression::Parse("*/1" + std::string(200, '9') + " * * * *", "UTC"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("out of range 1-59")));
  // Full-width digit zero, a non-breaking space, and a Latin-1 day name.
  for (const char* expression :
       {"\xef\xbc\x90 * * * *", "0\xc2\xa0* * * *", "* * * * M\xc3\xb6n",
        "\xff\xfe * * * *", "* * * * \x80"}) {
    absl::StatusOr<CronExpression> cron =
        CronExpression::Parse(expression, "UTC");
    EXPECT_THAT(cron, StatusIs(absl::StatusCode::kInvalidArgument))
        << absl::CHexEscape(expression);
    EXPECT_THAT(cron.status().message(), Not(HasSubstr("\xc3")));
  }
}

// --- Property test against a brute-force reference --------------------------

struct FieldRange {
  int min;
  int max;
  const char* const* names;  // Of min, min + 1, ...; may be null.
  int name_count;
};

const char* const kMonths[] = {"jan", "FEB", "Mar", "apr", "MAY", "jun",
                               "Jul", "AUG", "sep", "Oct", "nov", "DEC"};
const char* const kWeekdays[] = {"SUN", "mon", "Tue", "WED",
                                 "thu", "Fri", "sat"};
const FieldRange kRanges[5] = {{0, 59, nullptr, 0},
                               {0, 23, nullptr, 0},
                               {1, 31, nullptr, 0},
                               {1, 12, kMonths, 12},
                               {0, 7, kWeekdays, 7}};

// A random valid expression and, built independently of the parser, the
// values each field matches.
struct Generated {
  std::string text;
  std::bitset<64> values[5];  // Bit v: value v matches (7 is Sunday too).
  bool day_of_month_star = false;
  bool day_of_week_star = false;
};

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  // Uniform enough in [low, high]; std:: distributions differ between
  // standard libraries, the engine's output does not.
  int Uniform(int low, int high) {
    return low +
           static_cast<int>(rng_() % static_cast<uint32_t>(high - low + 1));
  }

  Generated Expression() {
    Generated g;
    std::vector<std::string> fields;
    for (int f = 0; f < 5; ++f) {
      // Day and month fields are often '*', so that matches fall within the
      // few days the reference walks.
      const bool wildcard =
          (f >= 2 && Uniform(0, 1) == 0) || (f < 2 && Uniform(0, 5) == 0);
      std::string text;
      if (wildcard) {
        text = "*";
        for (int v = kRanges[f].min; v <= kRanges[f].max; ++v) {
          g.values[f].set(v);
        }
      } else {
        const int items = Uniform(1, 3);
        for (int i = 0; i < items; ++i) {
          if (i > 0) text += ",";
          text += Item(f, &g.values[f]);
        }
      }
      if (f == 2) g.day_of_month_star = text[0] == '*';
      if (f == 4) g.day_of_week_star = text[0] == '*';
      fields.push_back(text);
    }
    // Separators of one or more spaces or tabs.
    for (int f = 0; f < 5; ++f) {
      if (f > 0) g.text += Uniform(0, 3) == 0 ? " \t " : " ";
      g.text += fields[f];
    }
    return g;
  }

 private:
  std::string Value(int f, int v) {
    const FieldRange& r = kRanges[f];
    if (r.names != nullptr && v - r.min < r.name_count && Uniform(0, 2) == 0) {
      return r.names[v - r.min];
    }
    return absl::StrCat(v);
  }

  std::string Item(int f, std::bitset<64>* values) {
    const FieldRange& r = kRanges[f];
    int low = r.min;
    int high = r.max;
    int step = 1;
    std::string text;
    switch (Uniform(0, 5)) {
      case 0:  // N
        low = high = Uniform(r.min, r.max);
        text = Value(f, low);
        break;
      case 1:  // A-B
        low = Uniform(r.min, r.max);
        high = Uniform(low, r.max);
        text = absl::StrCat(Value(f, low), "-", Value(f, high));
        break;
      case 2:  // */S
        step = Uniform(1, r.max);
        text = absl::StrCat("*/", step);
        break;
      case 3:  // A-B/S
        low = Uniform(r.min, r.max);
        high = Uniform(low, r.max);
        step = Uniform(1, r.max);
        text = absl::StrCat(Value(f, low), "-", Value(f, high), "/", step);
        break;
      case 4:  // A/S
        low = Uniform(r.min, r.max);
        step = Uniform(1, r.max);
        text = absl::StrCat(Value(f, low), "/", step);
        break;
      default:  // N again: single values are the most common item.
        low = high = Uniform(r.min, r.max);
        text = Value(f, low);
        break;
    }
    for (int v = low; v <= high; v += step) values->set(v);
    return text;
  }

  std::mt19937 rng_;
};

bool ReferenceDayMatches(const Generated& g, absl::CivilDay day) {
  if (!g.values[3].test(day.month())) return false;
  const int weekday = (static_cast<int>(absl::GetWeekday(day)) + 1) % 7;
  const bool dom = g.values[2].test(day.day());
  const bool dow =
      g.values[4].test(weekday) || (weekday == 0 && g.values[4].test(7));
  return g.day_of_month_star || g.day_of_week_star ? dom && dow : dom || dow;
}

// The earliest instant after `after` of any matching civil minute in
// [civil(after) - 3 hours, civil(after) + days), by the header's rule for
// skipped and repeated civil times; InfiniteFuture if none. Walks every
// minute and takes the minimum, assuming nothing about order except that
// offsets change by less than 3 hours (no civil minute earlier than that
// can map after `after`).
absl::Time ReferenceNext(const Generated& g, absl::TimeZone zone,
                         absl::Time after, int days) {
  const absl::CivilMinute now = absl::CivilMinute(zone.At(after).cs);
  const absl::CivilMinute first = now - 3 * 60;
  const absl::CivilMinute end = now + days * 24 * 60;
  absl::Time best = absl::InfiniteFuture();
  for (absl::CivilDay day(first); day <= absl::CivilDay(end); ++day) {
    const bool day_matches = ReferenceDayMatches(g, day);
    for (int minute_of_day = 0; minute_of_day < 24 * 60; ++minute_of_day) {
      const int hour = minute_of_day / 60;
      const int minute = minute_of_day % 60;
      if (!day_matches || !g.values[1].test(hour) ||
          !g.values[0].test(minute)) {
        continue;
      }
      const absl::CivilMinute c(day.year(), day.month(), day.day(), hour,
                                minute);
      if (c < first || c >= end) continue;
      const absl::TimeZone::TimeInfo info = zone.At(absl::CivilSecond(c));
      const absl::Time t = info.kind == absl::TimeZone::TimeInfo::SKIPPED
                               ? info.trans
                               : info.pre;
      if (t > after && t < best) best = t;
    }
  }
  return best;
}

TEST_F(CronExpressionTest, MatchesBruteForceReference) {
  constexpr int kDays = 3;
  // Offsets change by a few hours at most, so a reference answer within
  // kDays - 1 days of `after` cannot be beaten by a civil minute it skipped.
  const absl::Duration trusted = absl::Hours(24 * (kDays - 1));
  Generator gen(20240310);
  int compared = 0;
  int across_change = 0;
  for (const char* zone_name :
       {"UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"}) {
    const absl::TimeZone zone = Zone(zone_name);
    // Around each offset change of 2024 and 2025 (leap days and year ends
    // for UTC, which has none).
    std::vector<absl::Time> bases;
    absl::TimeZone::CivilTransition transition;
    for (absl::Time t = Utc(2024, 1, 1, 0, 0);
         zone.NextTransition(t, &transition) && t < Utc(2026, 1, 1, 0, 0);) {
      t = zone.At(transition.to).trans;
      bases.push_back(t);
    }
    if (bases.empty()) {
      bases = {Utc(2024, 2, 29, 0, 0), Utc(2024, 12, 31, 23, 0),
               Utc(2100, 2, 28, 12, 0), Utc(2000, 2, 29, 0, 0)};
    }
    for (int i = 0; i < 200; ++i) {
      const Generated g = gen.Expression();
      const absl::StatusOr<CronExpression> cron =
          CronExpression::Parse(g.text, zone_name);
      ASSERT_THAT(cron, IsOk()) << g.text;
      const absl::Time base =
          bases[gen.Uniform(0, static_cast<int>(bases.size()) - 1)];
      // Half of the cases start within a few hours of the change.
      const int spread = gen.Uniform(0, 1) == 0 ? 3 * 60 : 48 * 60;
      absl::Time after = base + absl::Minutes(gen.Uniform(-spread, spread));
      if (gen.Uniform(0, 1) == 0) after += absl::Seconds(gen.Uniform(1, 59));
      // Several steps, so that `after` is often a firing itself (such as
      // the end of a gap).
      for (int step = 0; step < 6; ++step) {
        const absl::Time want = ReferenceNext(g, zone, after, kDays);
        const absl::Time got = cron->Next(after);
        if (want <= after + trusted) {
          ASSERT_EQ(got, want) << g.text << " in " << zone_name << " after "
                               << absl::FormatTime(after, zone);
          ++compared;
          if (after < base && base <= got) ++across_change;
        } else {
          ASSERT_GT(got, after + trusted)
              << g.text << " in " << zone_name << " after "
              << absl::FormatTime(after, zone);
          break;
        }
        after = got;
      }
    }
  }
  // The generator is meant to produce mostly comparable cases, a good share
  // of them spanning an offset change.
  EXPECT_GT(compared, 1500);
  EXPECT_GT(across_change, 80);
}

TEST_F(CronExpressionTest, RepeatedNextIsStrictlyIncreasing) {
  Generator gen(7);
  for (const char* zone_name :
       {"America/New_York", "Europe/Berlin", "Australia/Lord_Howe"}) {
    for (int i = 0; i < 40; ++i) {
      const Generated g = gen.Expression();
      const CronExpression cron = MustParse(g.text, zone_name);
      absl::Time t = Utc(2024, 1, 1, 0, 0);
      for (int step = 0; step < 300 && t != absl::InfiniteFuture(); ++step) {
        const absl::Time next = cron.Next(t);
        ASSERT_GT(next, t) << g.text << " in " << zone_name;
        t = next;
      }
    }
  }
}

}  // namespace
}  // namespace taskwal::engine
