#include "daemon/series.h"

#include <algorithm>
#include <utility>

namespace taskwal::daemon {

namespace {

// Samples that cover `window` at `step`, in [2, kMaxSamples].
size_t Capacity(absl::Duration step, absl::Duration window) {
  constexpr double kMaxSamples = 100000;
  const double steps = absl::FDivDuration(window, step);
  if (!(steps >= 1)) return 2;  // Also NaN.
  return static_cast<size_t>(std::min(steps, kMaxSamples - 1)) + 1;
}

}  // namespace

SeriesRecorder::SeriesRecorder(absl::Duration step, absl::Duration window)
    : step_(std::max(step, absl::Milliseconds(1))),
      capacity_(Capacity(step_, window)) {}

SeriesRecorder::~SeriesRecorder() { Stop(); }

void SeriesRecorder::Start(SampleFn sample) {
  absl::MutexLock thread_lock(&thread_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  thread_ = std::thread([this, sample = std::move(sample)] { Run(sample); });
}

void SeriesRecorder::Stop() {
  absl::MutexLock thread_lock(&thread_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void SeriesRecorder::Run(const SampleFn& sample) {
  absl::Time next = absl::Now();
  for (;;) {
    if (std::optional<SeriesSample> s = sample()) Add(*std::move(s));
    next += step_;
    // A step that overran (a slow Stats) is not made up for.
    next = std::max(next, absl::Now());
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_;
    };
    if (mu_.AwaitWithDeadline(absl::Condition(&stopping), next)) return;
  }
}

void SeriesRecorder::Add(SeriesSample sample) {
  absl::MutexLock lock(&mu_);
  samples_.push_back(std::move(sample));
  while (samples_.size() > capacity_) samples_.pop_front();
}

std::vector<SeriesSample> SeriesRecorder::Samples() const {
  absl::MutexLock lock(&mu_);
  return std::vector<SeriesSample>(samples_.begin(), samples_.end());
}

}  // namespace taskwal::daemon
