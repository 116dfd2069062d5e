#include "taskwal/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace taskwal {
namespace {

// Go-parsable float text: integral values without a fraction ("3"), others
// with up to 9 significant digits ("0.0123", "3.5"). Callers pass finite
// values only.
std::string FormatDouble(double value) {
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  return absl::StrFormat("%.9g", value);
}

class Writer {
 public:
  // "# HELP" and "# TYPE" lines of a family.
  void Family(absl::string_view name, absl::string_view type,
              absl::string_view help) {
    absl::StrAppend(&out_, "# HELP taskwal_", name, " ", help, "\n",
                    "# TYPE taskwal_", name, " ", type, "\n");
  }
  void Sample(absl::string_view name, absl::string_view labels,
              absl::string_view value) {
    absl::StrAppend(&out_, "taskwal_", name, labels, " ", value, "\n");
  }
  void Counter(absl::string_view name, absl::string_view help, uint64_t value) {
    Family(name, "counter", help);
    Sample(name, "", absl::StrCat(value));
  }
  void Gauge(absl::string_view name, absl::string_view help, uint64_t value) {
    Family(name, "gauge", help);
    Sample(name, "", absl::StrCat(value));
  }
  void Gauge(absl::string_view name, absl::string_view help, double value) {
    Family(name, "gauge", help);
    Sample(name, "", FormatDouble(std::isfinite(value) ? value : 0.0));
  }

  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// stats.by_type with at most kMaxTypeLabels entries of their own: those
// with the most tasks (ties by name), the others summed under "_other".
std::map<std::string, TypeStats> LabelledTypes(const EngineStats& stats) {
  if (stats.by_type.size() <= kMaxTypeLabels) return stats.by_type;
  std::vector<const std::pair<const std::string, TypeStats>*> ranked;
  ranked.reserve(stats.by_type.size());
  for (const auto& entry : stats.by_type) ranked.push_back(&entry);
  // Stable: ties keep the map's order, by name.
  std::stable_sort(ranked.begin(), ranked.end(), [](auto* a, auto* b) {
    return a->second.tasks() > b->second.tasks();
  });
  std::map<std::string, TypeStats> labelled;
  for (size_t i = 0; i < ranked.size(); ++i) {
    labelled[i < kMaxTypeLabels ? ranked[i]->first : "_other"].Merge(
        ranked[i]->second);
  }
  return labelled;
}

}  // namespace

std::string EscapePrometheusLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      // The text \x1b (its backslash escaped), not the byte.
      out += absl::StrFormat("\\\\x%02x", u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string RenderPrometheus(const EngineStats& stats,
                             const RecoveryReport& recovery, absl::Time now) {
  Writer w;
  w.Family("tasks", "gauge", "Tasks held by the engine, by status.");
  const struct {
    absl::string_view status;
    uint64_t count;
  } by_status[] = {
      {"pending", stats.pending},     {"claimed", stats.claimed},
      {"completed", stats.completed}, {"failed", stats.failed},
      {"cancelled", stats.cancelled},
  };
  for (const auto& s : by_status) {
    w.Sample("tasks", absl::StrCat("{status=\"", s.status, "\"}"),
             absl::StrCat(s.count));
  }
  const std::map<std::string, TypeStats> types = LabelledTypes(stats);
  w.Family("type_tasks", "gauge",
           absl::StrCat("Tasks held by the engine, by type and status (at "
                        "most ",
                        kMaxTypeLabels, " types, the rest as _other)."));
  for (const auto& [type, t] : types) {
    const std::string label = EscapePrometheusLabelValue(type);
    const struct {
      absl::string_view status;
      uint64_t count;
    } type_by_status[] = {
        {"pending", t.pending},     {"claimed", t.claimed},
        {"completed", t.completed}, {"failed", t.failed},
        {"cancelled", t.cancelled},
    };
    for (const auto& s : type_by_status) {
      w.Sample("type_tasks",
               absl::StrCat("{type=\"", label, "\",status=\"", s.status, "\"}"),
               absl::StrCat(s.count));
    }
  }
  w.Family("oldest_pending_age_seconds", "gauge",
           "Seconds the longest-waiting ready task of the type has waited "
           "since it became ready (0: none ready).");
  for (const auto& [type, t] : types) {
    double age = 0;
    if (t.oldest_ready != absl::InfiniteFuture() &&
        t.oldest_ready != absl::InfinitePast()) {
      age = absl::ToDoubleSeconds(
          std::max(absl::ZeroDuration(), now - t.oldest_ready));
    }
    w.Sample("oldest_pending_age_seconds",
             absl::StrCat("{type=\"", EscapePrometheusLabelValue(type), "\"}"),
             FormatDouble(age));
  }
  w.Gauge("partitions",
          "Partitions of the engine (each with its own commit lock and "
          "record sequence).",
          uint64_t{stats.partitions});
  w.Gauge("paused_types", "Task types whose claims are paused (Pause).",
          stats.paused_types);
  w.Gauge("schedules", "Periodic schedules (PutSchedule).", stats.schedules);

  w.Counter("submitted_total", "Tasks created since the data directory began.",
            stats.submitted);
  w.Counter("claims_total", "Claims since the data directory began.",
            stats.claims);
  w.Counter("completions_total",
            "Completed tasks since the data directory began.",
            stats.completions);
  w.Counter("failed_attempts_total",
            "Failed attempts (Fail calls and lease expiries) since the data "
            "directory began.",
            stats.failed_attempts);
  w.Counter("lease_expiries_total",
            "Claims whose lease ran out since the data directory began.",
            stats.lease_expiries);
  w.Counter("retries_total", "Operator retries since the data directory began.",
            stats.retries);
  w.Counter("cancellations_total",
            "Cancelled tasks since the data directory began.",
            stats.cancellations);
  w.Counter("deletions_total",
            "Tasks deleted by Delete calls since the data directory began.",
            stats.deletions);
  w.Counter("retention_removals_total",
            "Finished tasks removed by the retention policy since the data "
            "directory began.",
            stats.retention_removals);
  w.Counter("transitions_total",
            "Transition records applied since the data directory began.",
            stats.transitions);

  w.Counter("deduplicated_total",
            "Submits answered with an existing task since this Open.",
            stats.deduplicated);
  w.Counter("fsyncs_total",
            "fdatasync and directory fsync calls since this Open.",
            stats.fsyncs);
  w.Counter("wal_bytes_total", "Log bytes written since this Open.",
            stats.wal_bytes);
  w.Counter("wal_flushes_total",
            "Group-commit batches written to the log since this Open.",
            stats.wal_flushes);
  w.Counter("wal_records_flushed_total",
            "Records in those batches since this Open.",
            stats.wal_records_flushed);
  w.Gauge("wal_batch_size_average",
          "Average records per group-commit batch since this Open (0 before "
          "the first batch).",
          stats.wal_flushes == 0
              ? 0.0
              : static_cast<double>(stats.wal_records_flushed) /
                    static_cast<double>(stats.wal_flushes));
  w.Counter("snapshots_total", "Snapshots taken since this Open.",
            stats.snapshots);

  // LSNs count records per partition; these are sums over the partitions
  // (api/engine.h), so they still grow by one per record.
  w.Gauge("last_lsn",
          "Records applied in all partitions: the sum of each partition's "
          "last LSN.",
          stats.last_lsn);
  w.Gauge("last_snapshot_lsn",
          "Records covered by the newest snapshot: the sum of its "
          "partitions' LSNs.",
          stats.last_snapshot_lsn);
  if (stats.last_snapshot_time != absl::InfinitePast() &&
      stats.last_snapshot_time != absl::InfiniteFuture()) {
    w.Gauge("last_snapshot_age_seconds",
            "Seconds since this engine last took a snapshot.",
            absl::ToDoubleSeconds(std::max(absl::ZeroDuration(),
                                           now - stats.last_snapshot_time)));
  }

  w.Gauge("recovery_duration_seconds", "Wall time of the recovery run by Open.",
          absl::ToDoubleSeconds(recovery.duration));
  w.Gauge("recovery_records_replayed",
          "Log records replayed by Open after the snapshot.",
          recovery.records_replayed);
  w.Gauge("recovery_truncated_bytes",
          "Bytes of torn tail (or salvaged damage) cut off by Open.",
          recovery.truncated_bytes);
  w.Gauge("recovery_snapshot_lsn",
          "Records covered by the snapshot Open started from, summed over "
          "the partitions (0: none).",
          recovery.snapshot_lsn);
  return w.Take();
}

}  // namespace taskwal
