#ifndef TASKWAL_API_CLOCK_H_
#define TASKWAL_API_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace taskwal {

// The engine's source of time: lease deadlines, backoff, not-before times and
// retention are all measured against it. Implementations must be safe for
// concurrent use.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The wall clock. The returned object lives for the whole process.
  static Clock* Real();
};

// A clock that moves only when told to, for tests that drive leases, backoff
// and retention by hand. Safe for concurrent use. Microsecond resolution, the
// same resolution the engine stores.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : micros_(absl::ToUnixMicros(start)) {}

  absl::Time Now() const override {
    return absl::FromUnixMicros(micros_.load(std::memory_order_acquire));
  }
  void Advance(absl::Duration d) {
    micros_.fetch_add(absl::ToInt64Microseconds(d), std::memory_order_acq_rel);
  }
  void Set(absl::Time t) {
    micros_.store(absl::ToUnixMicros(t), std::memory_order_release);
  }

 private:
  std::atomic<int64_t> micros_;
};

}  // namespace taskwal

#endif  // TASKWAL_API_CLOCK_H_
