#ifndef TASKWAL_ENGINE_TOKEN_BUCKET_H_
#define TASKWAL_ENGINE_TOKEN_BUCKET_H_

#include "absl/time/time.h"

namespace taskwal::engine {

// A token bucket: tokens accrue at `rate_per_second` up to `burst`, and the
// bucket starts full. Over any interval of length d, at most
// burst + rate_per_second * d tokens are taken.
//
// Kept as the time the bucket would next be empty (the generic cell rate
// algorithm: one theoretical arrival time instead of a fractional token
// count), so that the arithmetic is exact in absl::Duration and a test with
// a fake clock sees exact token times.
//
// Time is passed in by the caller (the WorkerPool reads its Clock), so the
// bucket can be driven by any clock. A clock that goes back is treated as
// standing still: the bucket shifts its schedule back by the same amount,
// so no token is lost or gained by the jump. A jump forward fills the
// bucket, up to `burst`.
//
// Thread safety: none; callers synchronize (the pool holds its flow mutex).
class TokenBucket {
 public:
  // The rates the bucket keeps exact: one token per 11.6 days to one per
  // nanosecond.
  static constexpr double kMinRate = 1e-6;
  static constexpr double kMaxRate = 1e9;

  // REQUIRES: rate_per_second in [kMinRate, kMaxRate]; burst >= 1.
  TokenBucket(double rate_per_second, int burst, absl::Time now);

  // Takes a token if one is there at `now`. True: taken.
  bool TryTake(absl::Time now);

  // Returns a token taken by TryTake but not used. The bucket never holds
  // more than `burst`.
  void GiveBack();

  // When TryTake will find a token: `now` if one is there now.
  absl::Time NextTokenTime(absl::Time now);

  // Tokens there at `now`, rounded down (for tests and stats).
  int Available(absl::Time now);

 private:
  // Shifts the schedule if the clock went back since the last call.
  void Observe(absl::Time now);

  const absl::Duration interval_;   // Between tokens: 1 s / rate.
  const absl::Duration tolerance_;  // (burst - 1) * interval_.
  const int burst_;
  // The bucket is empty from this time on if nothing accrues meanwhile: a
  // token is there at `now` iff empty_at_ - tolerance_ <= now. Never below
  // the last observed time.
  absl::Time empty_at_;
  absl::Time last_now_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_TOKEN_BUCKET_H_
