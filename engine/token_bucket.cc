#include "engine/token_bucket.h"

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"

namespace taskwal::engine {

TokenBucket::TokenBucket(double rate_per_second, int burst, absl::Time now)
    : interval_(absl::Seconds(1) / rate_per_second),
      tolerance_(interval_ * (burst - 1)),
      burst_(burst),
      empty_at_(now),  // Full: `burst` tokens are there at `now`.
      last_now_(now) {}

void TokenBucket::Observe(absl::Time now) {
  if (now < last_now_) empty_at_ -= last_now_ - now;
  last_now_ = now;
}

bool TokenBucket::TryTake(absl::Time now) {
  Observe(now);
  const absl::Time empty_at = std::max(empty_at_, now);
  if (empty_at - tolerance_ > now) return false;
  empty_at_ = empty_at + interval_;
  return true;
}

void TokenBucket::GiveBack() {
  empty_at_ = std::max(empty_at_ - interval_, last_now_);
}

absl::Time TokenBucket::NextTokenTime(absl::Time now) {
  Observe(now);
  return std::max(now, std::max(empty_at_, now) - tolerance_);
}

int TokenBucket::Available(absl::Time now) {
  Observe(now);
  const absl::Time first_token = std::max(empty_at_, now) - tolerance_;
  if (first_token > now) return 0;
  if (interval_ == absl::ZeroDuration()) return burst_;
  const int64_t more = (now - first_token) / interval_;
  return static_cast<int>(std::min<int64_t>(burst_, more + 1));
}

}  // namespace taskwal::engine
