#include "taskwal/metrics.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"

namespace taskwal {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class RenderPrometheusTest : public ::testing::Test {
 protected:
  RenderPrometheusTest() {
    stats_.pending = 3;
    stats_.claimed = 1;
    stats_.completed = 7;
    stats_.failed = 2;
    stats_.cancelled = 4;
    stats_.tasks = 17;
    stats_.deduplicated = 5;
    stats_.submitted = 20;
    stats_.claims = 12;
    stats_.completions = 7;
    stats_.failed_attempts = 6;
    stats_.lease_expiries = 1;
    stats_.retries = 2;
    stats_.cancellations = 4;
    stats_.deletions = 2;
    stats_.retention_removals = 1;
    stats_.transitions = 50;
    stats_.partitions = 16;
    stats_.paused_types = 2;
    stats_.schedules = 3;
    stats_.last_lsn = 50;
    stats_.fsyncs = 30;
    stats_.wal_bytes = 12345;
    stats_.wal_flushes = 4;
    stats_.wal_records_flushed = 14;
    stats_.snapshots = 1;
    stats_.last_snapshot_lsn = 40;
    stats_.last_snapshot_time = absl::FromUnixSeconds(1000);
    TypeStats& email = stats_.by_type["email"];
    email.pending = 2;
    email.claimed = 1;
    email.completed = 7;
    email.oldest_ready = absl::FromUnixSeconds(1060);
    TypeStats& sms = stats_.by_type["sms"];
    sms.pending = 1;  // Delayed: none ready.
    sms.failed = 2;
    sms.cancelled = 4;
    recovery_.snapshot_lsn = 30;
    recovery_.records_replayed = 9;
    recovery_.last_lsn = 39;
    recovery_.truncated_bytes = 17;
    recovery_.duration = absl::Milliseconds(12.5);
  }

  std::vector<std::string> Lines(absl::Time now) {
    const std::string text = RenderPrometheus(stats_, recovery_, now);
    EXPECT_TRUE(absl::EndsWith(text, "\n"));
    return absl::StrSplit(text, '\n', absl::SkipEmpty());
  }

  EngineStats stats_;
  RecoveryReport recovery_;
};

TEST_F(RenderPrometheusTest, KnownStatsRenderExactly) {
  const std::string text =
      RenderPrometheus(stats_, recovery_, absl::FromUnixSeconds(1090));
  EXPECT_EQ(text,
            "# HELP taskwal_tasks Tasks held by the engine, by status.\n"
            "# TYPE taskwal_tasks gauge\n"
            "taskwal_tasks{status=\"pending\"} 3\n"
            "taskwal_tasks{status=\"claimed\"} 1\n"
            "taskwal_tasks{status=\"completed\"} 7\n"
            "taskwal_tasks{status=\"failed\"} 2\n"
            "taskwal_tasks{status=\"cancelled\"} 4\n"
            "# HELP taskwal_type_tasks Tasks held by the engine, by type and "
            "status (at most 100 types, the rest as _other).\n"
            "# TYPE taskwal_type_tasks gauge\n"
            "taskwal_type_tasks{type=\"email\",status=\"pending\"} 2\n"
            "taskwal_type_tasks{type=\"email\",status=\"claimed\"} 1\n"
            "taskwal_type_tasks{type=\"email\",status=\"completed\"} 7\n"
            "taskwal_type_tasks{type=\"email\",status=\"failed\"} 0\n"
            "taskwal_type_tasks{type=\"email\",status=\"cancelled\"} 0\n"
            "taskwal_type_tasks{type=\"sms\",status=\"pending\"} 1\n"
            "taskwal_type_tasks{type=\"sms\",status=\"claimed\"} 0\n"
            "taskwal_type_tasks{type=\"sms\",status=\"completed\"} 0\n"
            "taskwal_type_tasks{type=\"sms\",status=\"failed\"} 2\n"
            "taskwal_type_tasks{type=\"sms\",status=\"cancelled\"} 4\n"
            "# HELP taskwal_oldest_pending_age_seconds Seconds the "
            "longest-waiting ready task of the type has waited since it "
            "became ready (0: none ready).\n"
            "# TYPE taskwal_oldest_pending_age_seconds gauge\n"
            "taskwal_oldest_pending_age_seconds{type=\"email\"} 30\n"
            "taskwal_oldest_pending_age_seconds{type=\"sms\"} 0\n"
            "# HELP taskwal_partitions Partitions of the engine (each with "
            "its own commit lock and record sequence).\n"
            "# TYPE taskwal_partitions gauge\n"
            "taskwal_partitions 16\n"
            "# HELP taskwal_paused_types Task types whose claims are paused "
            "(Pause).\n"
            "# TYPE taskwal_paused_types gauge\n"
            "taskwal_paused_types 2\n"
            "# HELP taskwal_schedules Periodic schedules (PutSchedule).\n"
            "# TYPE taskwal_schedules gauge\n"
            "taskwal_schedules 3\n"
            "# HELP taskwal_submitted_total Tasks created since the data "
            "directory began.\n"
            "# TYPE taskwal_submitted_total counter\n"
            "taskwal_submitted_total 20\n"
            "# HELP taskwal_claims_total Claims since the data directory "
            "began.\n"
            "# TYPE taskwal_claims_total counter\n"
            "taskwal_claims_total 12\n"
            "# HELP taskwal_completions_total Completed tasks since the data "
            "directory began.\n"
            "# TYPE taskwal_completions_total counter\n"
            "taskwal_completions_total 7\n"
            "# HELP taskwal_failed_attempts_total Failed attempts (Fail calls "
            "and lease expiries) since the data directory began.\n"
            "# TYPE taskwal_failed_attempts_total counter\n"
            "taskwal_failed_attempts_total 6\n"
            "# HELP taskwal_lease_expiries_total Claims whose lease ran out "
            "since the data directory began.\n"
            "# TYPE taskwal_lease_expiries_total counter\n"
            "taskwal_lease_expiries_total 1\n"
            "# HELP taskwal_retries_total Operator retries since the data "
            "directory began.\n"
            "# TYPE taskwal_retries_total counter\n"
            "taskwal_retries_total 2\n"
            "# HELP taskwal_cancellations_total Cancelled tasks since the "
            "data directory began.\n"
            "# TYPE taskwal_cancellations_total counter\n"
            "taskwal_cancellations_total 4\n"
            "# HELP taskwal_deletions_total Tasks deleted by Delete calls "
            "since the data directory began.\n"
            "# TYPE taskwal_deletions_total counter\n"
            "taskwal_deletions_total 2\n"
            "# HELP taskwal_retention_removals_total Finished tasks removed "
            "by the retention policy since the data directory began.\n"
            "# TYPE taskwal_retention_removals_total counter\n"
            "taskwal_retention_removals_total 1\n"
            "# HELP taskwal_transitions_total Transition records applied "
            "since the data directory began.\n"
            "# TYPE taskwal_transitions_total counter\n"
            "taskwal_transitions_total 50\n"
            "# HELP taskwal_deduplicated_total Submits answered with an "
            "existing task since this Open.\n"
            "# TYPE taskwal_deduplicated_total counter\n"
            "taskwal_deduplicated_total 5\n"
            "# HELP taskwal_fsyncs_total fdatasync and directory fsync calls "
            "since this Open.\n"
            "# TYPE taskwal_fsyncs_total counter\n"
            "taskwal_fsyncs_total 30\n"
            "# HELP taskwal_wal_bytes_total Log bytes written since this "
            "Open.\n"
            "# TYPE taskwal_wal_bytes_total counter\n"
            "taskwal_wal_bytes_total 12345\n"
            "# HELP taskwal_wal_flushes_total Group-commit batches written "
            "to the log since this Open.\n"
            "# TYPE taskwal_wal_flushes_total counter\n"
            "taskwal_wal_flushes_total 4\n"
            "# HELP taskwal_wal_records_flushed_total Records in those "
            "batches since this Open.\n"
            "# TYPE taskwal_wal_records_flushed_total counter\n"
            "taskwal_wal_records_flushed_total 14\n"
            "# HELP taskwal_wal_batch_size_average Average records per "
            "group-commit batch since this Open (0 before the first batch).\n"
            "# TYPE taskwal_wal_batch_size_average gauge\n"
            "taskwal_wal_batch_size_average 3.5\n"
            "# HELP taskwal_snapshots_total Snapshots taken since this Open.\n"
            "# TYPE taskwal_snapshots_total counter\n"
            "taskwal_snapshots_total 1\n"
            "# HELP taskwal_last_lsn Records applied in all partitions: the "
            "sum of each partition's last LSN.\n"
            "# TYPE taskwal_last_lsn gauge\n"
            "taskwal_last_lsn 50\n"
            "# HELP taskwal_last_snapshot_lsn Records covered by the newest "
            "snapshot: the sum of its partitions' LSNs.\n"
            "# TYPE taskwal_last_snapshot_lsn gauge\n"
            "taskwal_last_snapshot_lsn 40\n"
            "# HELP taskwal_last_snapshot_age_seconds Seconds since this "
            "engine last took a snapshot.\n"
            "# TYPE taskwal_last_snapshot_age_seconds gauge\n"
            "taskwal_last_snapshot_age_seconds 90\n"
            "# HELP taskwal_recovery_duration_seconds Wall time of the "
            "recovery run by Open.\n"
            "# TYPE taskwal_recovery_duration_seconds gauge\n"
            "taskwal_recovery_duration_seconds 0.0125\n"
            "# HELP taskwal_recovery_records_replayed Log records replayed "
            "by Open after the snapshot.\n"
            "# TYPE taskwal_recovery_records_replayed gauge\n"
            "taskwal_recovery_records_replayed 9\n"
            "# HELP taskwal_recovery_truncated_bytes Bytes of torn tail (or "
            "salvaged damage) cut off by Open.\n"
            "# TYPE taskwal_recovery_truncated_bytes gauge\n"
            "taskwal_recovery_truncated_bytes 17\n"
            "# HELP taskwal_recovery_snapshot_lsn Records covered by the "
            "snapshot Open started from, summed over the partitions (0: "
            "none).\n"
            "# TYPE taskwal_recovery_snapshot_lsn gauge\n"
            "taskwal_recovery_snapshot_lsn 30\n");
}

TEST_F(RenderPrometheusTest, SnapshotAgeIsAbsentWithoutASnapshot) {
  stats_.snapshots = 0;
  stats_.last_snapshot_time = absl::InfinitePast();
  const std::vector<std::string> lines = Lines(absl::FromUnixSeconds(1090));
  for (const std::string& line : lines) {
    EXPECT_THAT(line, Not(HasSubstr("snapshot_age")));
  }
  EXPECT_THAT(lines, Contains("taskwal_last_snapshot_lsn 40"));
}

TEST_F(RenderPrometheusTest, NoBatchesGiveZeroAverageNotNaN) {
  stats_.wal_flushes = 0;
  stats_.wal_records_flushed = 0;
  const std::string text =
      RenderPrometheus(stats_, recovery_, absl::FromUnixSeconds(1090));
  EXPECT_THAT(text, HasSubstr("\ntaskwal_wal_batch_size_average 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("NaN")));
  EXPECT_THAT(text, Not(HasSubstr("nan")));
  EXPECT_THAT(text, Not(HasSubstr("inf")));
}

TEST_F(RenderPrometheusTest, PartitionCountIsAGauge) {
  for (uint32_t partitions : {1u, 256u}) {
    stats_.partitions = partitions;
    const std::vector<std::string> lines = Lines(absl::FromUnixSeconds(1090));
    EXPECT_THAT(lines, Contains("# TYPE taskwal_partitions gauge"));
    EXPECT_THAT(lines,
                Contains(absl::StrCat("taskwal_partitions ", partitions)));
  }
}

TEST_F(RenderPrometheusTest, ClockBehindSnapshotGivesZeroAge) {
  const std::vector<std::string> lines = Lines(absl::FromUnixSeconds(900));
  EXPECT_THAT(lines, Contains("taskwal_last_snapshot_age_seconds 0"));
}

TEST_F(RenderPrometheusTest, FractionalValuesKeepTheirFraction) {
  stats_.wal_flushes = 3;
  stats_.wal_records_flushed = 10;
  const std::vector<std::string> lines =
      Lines(absl::FromUnixSeconds(1000) + absl::Milliseconds(1500));
  EXPECT_THAT(lines, Contains("taskwal_wal_batch_size_average 3.33333333"));
  EXPECT_THAT(lines, Contains("taskwal_last_snapshot_age_seconds 1.5"));
}

TEST_F(RenderPrometheusTest, NoTypesLeaveTheTypeFamiliesEmpty) {
  stats_.by_type.clear();
  const std::string text =
      RenderPrometheus(stats_, recovery_, absl::FromUnixSeconds(1090));
  EXPECT_THAT(text, HasSubstr("# TYPE taskwal_type_tasks gauge\n# HELP "
                              "taskwal_oldest_pending_age_seconds"));
  EXPECT_THAT(text, HasSubstr("# TYPE taskwal_oldest_pending_age_seconds "
                              "gauge\n# HELP taskwal_partitions"));
}

TEST_F(RenderPrometheusTest, OldestReadyInTheFutureGivesZeroAge) {
  stats_.by_type["email"].oldest_ready = absl::FromUnixSeconds(2000);
  EXPECT_THAT(Lines(absl::FromUnixSeconds(1090)),
              Contains("taskwal_oldest_pending_age_seconds{type=\"email\"} 0"));
}

TEST(EscapePrometheusLabelValueTest, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(EscapePrometheusLabelValue("plain"), "plain");
  EXPECT_EQ(EscapePrometheusLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(EscapePrometheusLabelValue("\x1b[31m<b>\x7f"),
            "\\\\x1b[31m<b>\\\\x7f");
  EXPECT_EQ(EscapePrometheusLabelValue("caf\xc3\xa9"), "caf\xc3\xa9");
}

TEST_F(RenderPrometheusTest, TypeLabelsAreEscaped) {
  stats_.by_type.clear();
  stats_.by_type["a\"b\\c\nd"].pending = 1;
  stats_.by_type["\x1b[31m"].claimed = 2;
  const std::string text =
      RenderPrometheus(stats_, recovery_, absl::FromUnixSeconds(1090));
  EXPECT_THAT(text, HasSubstr("taskwal_type_tasks{type=\"a\\\"b\\\\c\\nd\","
                              "status=\"pending\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_type_tasks{type=\"\\\\x1b[31m\","
                              "status=\"claimed\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_oldest_pending_age_seconds{type=\"a\\\"b"
                              "\\\\c\\nd\"} 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("\x1b")));
}

// Beyond kMaxTypeLabels types, those with the most tasks keep their label
// and the others are summed under _other, their oldest ready task the
// oldest of all.
TEST_F(RenderPrometheusTest, TypeLabelsAreCapped) {
  stats_.by_type.clear();
  const size_t kTypes = kMaxTypeLabels + 50;
  for (size_t i = 0; i < kTypes; ++i) {
    TypeStats& t = stats_.by_type[absl::StrCat("t", 1000 + i)];
    // t1000..t1099 have 1000 + i tasks; the 50 after them 1 each.
    t.pending = i < kMaxTypeLabels ? 1000 + i : 1;
    t.oldest_ready = absl::FromUnixSeconds(1090 - static_cast<int64_t>(i));
  }
  const std::string text =
      RenderPrometheus(stats_, recovery_, absl::FromUnixSeconds(1090));
  size_t pending_samples = 0;
  size_t age_samples = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StrContains(line, "status=\"pending\"") &&
        absl::StartsWith(line, "taskwal_type_tasks")) {
      ++pending_samples;
    }
    if (absl::StartsWith(line, "taskwal_oldest_pending_age_seconds{")) {
      ++age_samples;
    }
  }
  EXPECT_EQ(pending_samples, kMaxTypeLabels + 1);
  EXPECT_EQ(age_samples, kMaxTypeLabels + 1);
  EXPECT_THAT(text, HasSubstr("taskwal_type_tasks{type=\"t1000\",status=\""
                              "pending\"} 1000\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_type_tasks{type=\"t1099\",status=\""
                              "pending\"} 1099\n"));
  EXPECT_THAT(text, Not(HasSubstr("type=\"t1100\"")));
  EXPECT_THAT(text, HasSubstr("taskwal_type_tasks{type=\"_other\",status=\""
                              "pending\"} 50\n"));
  EXPECT_THAT(text, HasSubstr("taskwal_oldest_pending_age_seconds{type=\""
                              "_other\"} 149\n"));
}

// A real type named _other shares its label with the types beyond the cap
// rather than repeat it.
TEST_F(RenderPrometheusTest, RealOtherTypeMergesWithTheRest) {
  stats_.by_type.clear();
  stats_.by_type["_other"].pending = 1000;
  for (size_t i = 0; i < kMaxTypeLabels; ++i) {
    stats_.by_type[absl::StrCat("t", 1000 + i)].pending = 1;
  }
  const std::string text =
      RenderPrometheus(stats_, recovery_, absl::FromUnixSeconds(1090));
  EXPECT_THAT(text, HasSubstr("taskwal_type_tasks{type=\"_other\",status=\""
                              "pending\"} 1001\n"));
  const std::string once =
      "taskwal_oldest_pending_age_seconds{type=\"_other\"}";
  EXPECT_EQ(text.find(once), text.rfind(once));
}

// Every line is a comment or "name{labels} value", every family is declared
// once before its samples, and every sample name starts with taskwal_.
TEST_F(RenderPrometheusTest, OutputFollowsTheTextFormat) {
  std::vector<std::string> declared;
  for (const std::string& line : Lines(absl::FromUnixSeconds(1090))) {
    if (absl::StartsWith(line, "# ")) {
      const std::vector<std::string> words =
          absl::StrSplit(line, absl::MaxSplits(' ', 3));
      ASSERT_GE(words.size(), 4u) << line;
      EXPECT_TRUE(words[1] == "HELP" || words[1] == "TYPE") << line;
      EXPECT_THAT(words[2], StartsWith("taskwal_"));
      if (words[1] == "TYPE") {
        EXPECT_TRUE(words[3] == "gauge" || words[3] == "counter") << line;
        EXPECT_THAT(declared, Not(Contains(words[2])));
        declared.push_back(words[2]);
      }
      continue;
    }
    ASSERT_FALSE(declared.empty()) << line;
    EXPECT_THAT(line, StartsWith(declared.back())) << line;
    const std::vector<std::string> parts = absl::StrSplit(line, ' ');
    ASSERT_EQ(parts.size(), 2u) << line;
    double value;
    EXPECT_TRUE(absl::SimpleAtod(parts[1], &value)) << line;
  }
}

}  // namespace
}  // namespace taskwal
