#ifndef TASKWAL_DAEMON_SERIES_H_
#define TASKWAL_DAEMON_SERIES_H_

// The recent past for taskwald's dashboard: a sample of cumulative figures
// (tasks submitted, completions, failed attempts, latency histograms) every
// `step`, the last `window` of them kept in memory. The dashboard draws
// throughput and latency from the differences between neighbours, so a
// chart has data as soon as the page opens, and a sample costs one
// Engine::Stats call whoever watches.
//
// Thread safety: safe for concurrent use. Start and Stop may be called from
// any thread but not from `sample` itself.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace taskwal::daemon {

struct SeriesSample {
  absl::Time time;
  uint64_t submitted = 0;
  uint64_t completions = 0;
  uint64_t failed_attempts = 0;
  // Bucket counts, not cumulative (HttpMetrics::Totals).
  std::vector<uint64_t> queue_wait;
  std::vector<uint64_t> run_time;
};

class SeriesRecorder {
 public:
  // Returns the figures now, or nullopt to skip this step (e.g. the engine
  // is closed).
  using SampleFn = std::function<std::optional<SeriesSample>()>;

  // Samples every `step` (below 1 ms: 1 ms) and keeps those of the last
  // `window`: at least two, at most 100000, whatever the arguments.
  SeriesRecorder(absl::Duration step, absl::Duration window);
  SeriesRecorder(const SeriesRecorder&) = delete;
  SeriesRecorder& operator=(const SeriesRecorder&) = delete;
  ~SeriesRecorder();  // Stop.

  // Takes a sample now, then one every step on a thread of its own, until
  // Stop. At most once; later calls do nothing.
  void Start(SampleFn sample) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the thread (waits for a sample being taken). Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Adds a sample (what the thread does each step; tests call it).
  void Add(SeriesSample sample) ABSL_LOCKS_EXCLUDED(mu_);
  // The samples kept, oldest first.
  std::vector<SeriesSample> Samples() const ABSL_LOCKS_EXCLUDED(mu_);

  absl::Duration step() const { return step_; }

 private:
  void Run(const SampleFn& sample) ABSL_LOCKS_EXCLUDED(mu_);

  const absl::Duration step_;
  const size_t capacity_;

  mutable absl::Mutex mu_;
  std::deque<SeriesSample> samples_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex thread_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace taskwal::daemon

#endif  // TASKWAL_DAEMON_SERIES_H_
