#ifndef TASKWAL_API_METRICS_H_
#define TASKWAL_API_METRICS_H_

// Engine metrics in the Prometheus text exposition format (version 0.0.4),
// for a daemon to serve on its /metrics endpoint:
//
//   absl::StatusOr<taskwal::EngineStats> stats = engine->Stats();
//   if (stats.ok()) {
//     body = taskwal::RenderPrometheus(*stats, engine->Recovery(),
//                                      absl::Now());
//   }
//   // Content-Type: text/plain; version=0.0.4; charset=utf-8
//
// Every metric name starts with "taskwal_". Families, in output order:
//   taskwal_tasks{status="pending|claimed|completed|failed|cancelled"} gauge
//   taskwal_type_tasks{type="T",status="pending|...|cancelled"}  gauge: the
//       same by task type (EngineStats::by_type), every status of every
//       labelled type
//   taskwal_oldest_pending_age_seconds{type="T"}  gauge: now minus
//       TypeStats::oldest_ready, how long the longest-waiting ready task
//       of the type has waited; 0 when none of its tasks is ready (so the
//       series stays, for every labelled type). Paused types included.
//       Both type families label at most kMaxTypeLabels types, those with
//       the most tasks (ties by name); the rest are summed under
//       type="_other" (a real type named "_other" is summed with them).
//       Types are sorted by label value.
//   taskwal_partitions  gauge: the engine's partition count
//   taskwal_paused_types, taskwal_schedules  gauges: paused task types and
//       periodic schedules
//   taskwal_<event>_total  counters since the data directory began: submitted,
//       claims, completions, failed_attempts, lease_expiries, retries,
//       cancellations, deletions, retention_removals, transitions
//   taskwal_deduplicated_total, taskwal_fsyncs_total, taskwal_wal_bytes_total,
//   taskwal_wal_flushes_total (group-commit batches),
//   taskwal_wal_records_flushed_total, taskwal_snapshots_total
//       counters since this Open (they restart at 0 with the process, which
//       Prometheus' rate() handles as a counter reset)
//   taskwal_wal_batch_size_average  gauge: records per group-commit batch
//       (0 before the first batch)
//   taskwal_last_lsn, taskwal_last_snapshot_lsn  gauges: sums of the
//       partitions' LSNs (records since the data began), as in EngineStats
//   taskwal_last_snapshot_age_seconds  gauge, present only once this engine
//       has taken a snapshot (a snapshot found at Open has no known time)
//   taskwal_recovery_duration_seconds, taskwal_recovery_records_replayed,
//   taskwal_recovery_truncated_bytes, taskwal_recovery_snapshot_lsn
//       gauges describing the recovery that Open ran (the snapshot LSN is a
//       sum over the partitions, as in RecoveryReport)
//
// No value is ever NaN or infinite. Label values are escaped by
// EscapePrometheusLabelValue.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"

namespace taskwal {

// The most task types RenderPrometheus gives a label of their own, so that
// hostile task types cannot grow the output without bound.
inline constexpr size_t kMaxTypeLabels = 100;

// A Prometheus label value (the text between the quotes): \\, \" and \n
// escaped as the format says, and other control characters written as
// the text "\x1b" (backslash escaped), so no terminal escape reaches a
// reader of the output. Pure; safe for concurrent use.
std::string EscapePrometheusLabelValue(absl::string_view value);

// Renders stats and recovery (as returned by Engine::Stats and
// Engine::Recovery) at time `now`. Pure: no I/O, safe for concurrent use.
// Ends with a newline.
std::string RenderPrometheus(const EngineStats& stats,
                             const RecoveryReport& recovery, absl::Time now);

}  // namespace taskwal

#endif  // TASKWAL_API_METRICS_H_
