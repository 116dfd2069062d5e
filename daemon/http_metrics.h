#ifndef TASKWAL_DAEMON_HTTP_METRICS_H_
#define TASKWAL_DAEMON_HTTP_METRICS_H_

// Latency histograms per task type and HTTP response counts for
// taskwald's /metrics, in the Prometheus text format (appended after
// taskwal::RenderPrometheus):
//
//   taskwal_queue_wait_seconds{type="T"}  histogram: from when a task was
//       ready (created, or its not_before / retry backoff ended) to its
//       claim, for claims served by this process. A task that waited for
//       dependencies counts from its creation or last not_before.
//   taskwal_run_time_seconds{type="T",outcome="completed|failed"}
//       histogram: from a claim to its Complete or Fail, for those served
//       by this process. Lease expiries are not counted.
//   taskwal_http_requests_total{method="GET",code="200"}  counter: HTTP
//       responses by method (GET, HEAD, POST, PUT, DELETE, other) and
//       status, refusals (401, 413, 429, ...) included.
//
// Both restart empty with the process (Prometheus' rate() handles that as
// a counter reset). At most kMaxTypes distinct types get their own label;
// later ones are counted under type="_other" so that task text cannot grow
// the output without bound. Label values are escaped as the format says
// (\\, \", \n), and other control characters are written as the text
// "\x1b", so no terminal escape reaches a reader of /metrics.
//
// Thread safety: safe for concurrent use.

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace taskwal::daemon {

class HttpMetrics {
 public:
  static constexpr size_t kMaxTypes = 100;
  // Upper bounds of the buckets, in seconds (+Inf follows).
  static constexpr std::array<double, 14> kBuckets = {
      0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600};

  HttpMetrics() = default;
  HttpMetrics(const HttpMetrics&) = delete;
  HttpMetrics& operator=(const HttpMetrics&) = delete;

  // A claim of a task of `type` after it waited `wait` (negative counts
  // as 0).
  void ObserveQueueWait(absl::string_view type, absl::Duration wait)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A claim that ended in Complete (completed) or Fail after `run`.
  void ObserveRunTime(absl::string_view type, bool completed,
                      absl::Duration run) ABSL_LOCKS_EXCLUDED(mu_);

  // An HTTP response with `status` to a request with `method`.
  void ObserveRequest(absl::string_view method, int status)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Bucket counts (not cumulative; kBuckets, then +Inf) of every queue wait
  // and of every run time (both outcomes) observed so far, over all types:
  // what the dashboard's latency chart differences between two samples.
  struct Totals {
    std::array<uint64_t, kBuckets.size() + 1> queue_wait{};
    std::array<uint64_t, kBuckets.size() + 1> run_time{};
  };
  Totals totals() const ABSL_LOCKS_EXCLUDED(mu_);

  // The families above, each with its # HELP and # TYPE lines; empty
  // families print only those. Ends with a newline.
  std::string Render() const ABSL_LOCKS_EXCLUDED(mu_);

  // A Prometheus label value, escaped as described above: the same as
  // taskwal::EscapePrometheusLabelValue (api/metrics.h), which it calls.
  static std::string EscapeLabelValue(absl::string_view value);

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> buckets{};  // Not cumulative.
    uint64_t count = 0;
    double sum_seconds = 0;
    void Observe(absl::Duration d);
  };
  // `type`, or "_other" once kMaxTypes types are known.
  std::string TypeLabel(absl::string_view type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void RenderHistogram(const std::string& name,
                              const std::string& labels, const Histogram& h,
                              std::string* out);

  // Adds `h`'s bucket counts (with +Inf) to `out`.
  static void AddBuckets(const Histogram& h,
                         std::array<uint64_t, kBuckets.size() + 1>* out);

  mutable absl::Mutex mu_;
  std::set<std::string> types_ ABSL_GUARDED_BY(mu_);  // With a label.
  std::map<std::string, Histogram> queue_wait_ ABSL_GUARDED_BY(mu_);
  // Keyed by (type label, "completed" or "failed").
  std::map<std::pair<std::string, std::string>, Histogram> run_time_
      ABSL_GUARDED_BY(mu_);
  // Keyed by (method, status).
  std::map<std::pair<std::string, int>, uint64_t> requests_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace taskwal::daemon

#endif  // TASKWAL_DAEMON_HTTP_METRICS_H_
