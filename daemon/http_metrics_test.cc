#include "daemon/http_metrics.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskwal::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(HttpMetricsTest, EmptyFamiliesPrintOnlyTheirHeaders) {
  HttpMetrics metrics;
  EXPECT_EQ(metrics.Render(),
            "# HELP taskwal_queue_wait_seconds Time from ready to claimed, "
            "for claims served by this process.\n"
            "# TYPE taskwal_queue_wait_seconds histogram\n"
            "# HELP taskwal_run_time_seconds Time from claimed to completed "
            "or failed, for calls served by this process.\n"
            "# TYPE taskwal_run_time_seconds histogram\n"
            "# HELP taskwal_http_requests_total HTTP responses by method "
            "and status code.\n"
            "# TYPE taskwal_http_requests_total counter\n");
}

TEST(HttpMetricsTest, RequestsAreCountedByMethodAndCode) {
  HttpMetrics metrics;
  metrics.ObserveRequest("GET", 200);
  metrics.ObserveRequest("GET", 200);
  metrics.ObserveRequest("POST", 401);
  metrics.ObserveRequest("BREW", 404);  // Not a method label of its own.
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("taskwal_http_requests_total{method=\"GET\","
                              "code=\"200\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_http_requests_total{method=\"POST\","
                              "code=\"401\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_http_requests_total{method=\"other\","
                              "code=\"404\"} 1\n"));
}

TEST(HttpMetricsTest, BucketsAreCumulativeWithSumAndCount) {
  HttpMetrics metrics;
  metrics.ObserveQueueWait("email", absl::Milliseconds(3));
  metrics.ObserveQueueWait("email", absl::Seconds(2));
  metrics.ObserveQueueWait("email", absl::Hours(2));
  metrics.ObserveQueueWait("email", absl::Seconds(-1));  // Counts as 0.
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_bucket{type=\"email"
                              "\",le=\"0.001\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_bucket{type=\"email"
                              "\",le=\"0.005\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_bucket{type=\"email"
                              "\",le=\"1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_bucket{type=\"email"
                              "\",le=\"5\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_bucket{type=\"email"
                              "\",le=\"3600\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_bucket{type=\"email"
                              "\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_sum{type=\"email\"}"
                              " 7202.003000\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_count{type=\"email"
                              "\"} 4\n"));
}

TEST(HttpMetricsTest, RunTimeIsLabelledByOutcome) {
  HttpMetrics metrics;
  metrics.ObserveRunTime("t", true, absl::Milliseconds(20));
  metrics.ObserveRunTime("t", false, absl::Milliseconds(20));
  metrics.ObserveRunTime("t", false, absl::Milliseconds(20));
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("taskwal_run_time_seconds_count{type=\"t\","
                              "outcome=\"completed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_run_time_seconds_count{type=\"t\","
                              "outcome=\"failed\"} 2\n"));
}

TEST(HttpMetricsTest, TypesBeyondTheCapShareOneLabel) {
  HttpMetrics metrics;
  for (size_t i = 0; i < HttpMetrics::kMaxTypes + 5; ++i) {
    metrics.ObserveQueueWait(absl::StrCat("type-", i), absl::Seconds(1));
  }
  metrics.ObserveRunTime("type-0", true, absl::Seconds(1));  // Known.
  metrics.ObserveRunTime("new", true, absl::Seconds(1));     // Over the cap.
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_count{type=\"type-"
                              "99\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("type=\"type-100\"")));
  EXPECT_THAT(text, HasSubstr("taskwal_queue_wait_seconds_count{type=\"_other"
                              "\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_run_time_seconds_count{type=\"type-0\""
                              ",outcome=\"completed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_run_time_seconds_count{type=\"_other\""
                              ",outcome=\"completed\"} 1\n"));
}

TEST(HttpMetricsTest, LabelValuesAreEscaped) {
  EXPECT_EQ(HttpMetrics::EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(HttpMetrics::EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(HttpMetrics::EscapeLabelValue("\x1b[31m<b>"), "\\\\x1b[31m<b>");
  HttpMetrics metrics;
  metrics.ObserveQueueWait("\x1b]0;x\x07\"}", absl::Seconds(1));
  const std::string text = metrics.Render();
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find('\x07'), std::string::npos);
  EXPECT_THAT(text, HasSubstr("{type=\"\\\\x1b]0;x\\\\x07\\\"}\"}"));
}

TEST(HttpMetricsTest, TotalsAddEveryTypeAndOutcome) {
  HttpMetrics metrics;
  EXPECT_EQ(metrics.totals().queue_wait,
            (decltype(HttpMetrics::Totals::queue_wait){}));
  metrics.ObserveQueueWait("a", absl::Microseconds(500));  // <= 0.001
  metrics.ObserveQueueWait("b", absl::Milliseconds(2));    // <= 0.005
  metrics.ObserveQueueWait("b", absl::Hours(2));           // +Inf
  metrics.ObserveRunTime("a", /*completed=*/true, absl::Seconds(2));   // <= 5
  metrics.ObserveRunTime("a", /*completed=*/false, absl::Seconds(3));  // <= 5
  const HttpMetrics::Totals totals = metrics.totals();
  ASSERT_EQ(totals.queue_wait.size(), HttpMetrics::kBuckets.size() + 1);
  EXPECT_EQ(totals.queue_wait[0], 1u);
  EXPECT_EQ(totals.queue_wait[1], 1u);
  EXPECT_EQ(totals.queue_wait.back(), 1u);
  uint64_t queue_waits = 0;
  for (uint64_t n : totals.queue_wait) queue_waits += n;
  EXPECT_EQ(queue_waits, 3u);
  EXPECT_EQ(totals.run_time[7], 2u);  // kBuckets[7] == 5
  uint64_t runs = 0;
  for (uint64_t n : totals.run_time) runs += n;
  EXPECT_EQ(runs, 2u);
}

}  // namespace
}  // namespace taskwal::daemon
