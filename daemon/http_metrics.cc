#include "daemon/http_metrics.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "taskwal/metrics.h"

namespace taskwal::daemon {

void HttpMetrics::Histogram::Observe(absl::Duration d) {
  const double seconds = std::max(0.0, absl::ToDoubleSeconds(d));
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      ++buckets[i];
      break;
    }
  }
  ++count;
  sum_seconds += seconds;
}

std::string HttpMetrics::TypeLabel(absl::string_view type) {
  std::string label(type);
  if (types_.count(label) > 0) return label;
  if (types_.size() >= kMaxTypes) return "_other";
  types_.insert(label);
  return label;
}

void HttpMetrics::ObserveQueueWait(absl::string_view type,
                                   absl::Duration wait) {
  absl::MutexLock lock(&mu_);
  queue_wait_[TypeLabel(type)].Observe(wait);
}

void HttpMetrics::ObserveRunTime(absl::string_view type, bool completed,
                                 absl::Duration run) {
  absl::MutexLock lock(&mu_);
  run_time_[{TypeLabel(type), completed ? "completed" : "failed"}].Observe(run);
}

void HttpMetrics::ObserveRequest(absl::string_view method, int status) {
  std::string label = "other";
  for (const char* known : {"GET", "HEAD", "POST", "PUT", "DELETE"}) {
    if (method == known) label = known;
  }
  absl::MutexLock lock(&mu_);
  ++requests_[{label, status}];
}

void HttpMetrics::AddBuckets(const Histogram& h,
                             std::array<uint64_t, kBuckets.size() + 1>* out) {
  uint64_t finite = 0;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    (*out)[i] += h.buckets[i];
    finite += h.buckets[i];
  }
  (*out)[kBuckets.size()] += h.count - finite;
}

HttpMetrics::Totals HttpMetrics::totals() const {
  absl::MutexLock lock(&mu_);
  Totals totals;
  for (const auto& [type, histogram] : queue_wait_) {
    AddBuckets(histogram, &totals.queue_wait);
  }
  for (const auto& [key, histogram] : run_time_) {
    AddBuckets(histogram, &totals.run_time);
  }
  return totals;
}

std::string HttpMetrics::EscapeLabelValue(absl::string_view value) {
  // One escaping for every taskwal_ family: RenderPrometheus's.
  return EscapePrometheusLabelValue(value);
}

void HttpMetrics::RenderHistogram(const std::string& name,
                                  const std::string& labels, const Histogram& h,
                                  std::string* out) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    cumulative += h.buckets[i];
    absl::StrAppend(out, name, "_bucket{", labels, ",le=\"",
                    absl::StrFormat("%g", kBuckets[i]), "\"} ", cumulative,
                    "\n");
  }
  absl::StrAppend(out, name, "_bucket{", labels, ",le=\"+Inf\"} ", h.count,
                  "\n");
  absl::StrAppend(out, name, "_sum{", labels, "} ",
                  absl::StrFormat("%.6f", h.sum_seconds), "\n");
  absl::StrAppend(out, name, "_count{", labels, "} ", h.count, "\n");
}

std::string HttpMetrics::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out =
      "# HELP taskwal_queue_wait_seconds Time from ready to claimed, for "
      "claims served by this process.\n"
      "# TYPE taskwal_queue_wait_seconds histogram\n";
  for (const auto& [type, histogram] : queue_wait_) {
    RenderHistogram("taskwal_queue_wait_seconds",
                    absl::StrCat("type=\"", EscapeLabelValue(type), "\""),
                    histogram, &out);
  }
  absl::StrAppend(
      &out,
      "# HELP taskwal_run_time_seconds Time from claimed to completed or "
      "failed, for calls served by this process.\n"
      "# TYPE taskwal_run_time_seconds histogram\n");
  for (const auto& [key, histogram] : run_time_) {
    RenderHistogram("taskwal_run_time_seconds",
                    absl::StrCat("type=\"", EscapeLabelValue(key.first),
                                 "\",outcome=\"", key.second, "\""),
                    histogram, &out);
  }
  absl::StrAppend(&out,
                  "# HELP taskwal_http_requests_total HTTP responses by "
                  "method and status code.\n"
                  "# TYPE taskwal_http_requests_total counter\n");
  for (const auto& [key, count] : requests_) {
    absl::StrAppend(&out, "taskwal_http_requests_total{method=\"", key.first,
                    "\",code=\"", key.second, "\"} ", count, "\n");
  }
  return out;
}

}  // namespace taskwal::daemon
