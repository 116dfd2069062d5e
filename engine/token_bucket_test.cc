#include "engine/token_bucket.h"

#include <cstdint>
#include <random>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

// Every test drives the bucket with explicit times: a fake clock, so every
// token time is exact and nothing depends on how fast the test runs.
class TokenBucketTest : public ::testing::Test {
 protected:
  const absl::Time t0_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(TokenBucketTest, StartsFullWithBurstTokens) {
  TokenBucket bucket(/*rate_per_second=*/2, /*burst=*/3, t0_);
  EXPECT_EQ(bucket.Available(t0_), 3);
  EXPECT_TRUE(bucket.TryTake(t0_));
  EXPECT_TRUE(bucket.TryTake(t0_));
  EXPECT_TRUE(bucket.TryTake(t0_));
  EXPECT_FALSE(bucket.TryTake(t0_));
  EXPECT_EQ(bucket.Available(t0_), 0);
}

TEST_F(TokenBucketTest, TokensAccrueAtTheRate) {
  TokenBucket bucket(/*rate_per_second=*/4, /*burst=*/1, t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  EXPECT_EQ(bucket.NextTokenTime(t0_), t0_ + absl::Milliseconds(250));
  EXPECT_FALSE(bucket.TryTake(t0_ + absl::Milliseconds(249)));
  EXPECT_TRUE(bucket.TryTake(t0_ + absl::Milliseconds(250)));
  EXPECT_FALSE(bucket.TryTake(t0_ + absl::Milliseconds(250)));
  EXPECT_EQ(bucket.NextTokenTime(t0_ + absl::Milliseconds(300)),
            t0_ + absl::Milliseconds(500));
}

TEST_F(TokenBucketTest, NextTokenTimeIsNowWhileTokensAreThere) {
  TokenBucket bucket(/*rate_per_second=*/1, /*burst=*/2, t0_);
  EXPECT_EQ(bucket.NextTokenTime(t0_), t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  EXPECT_EQ(bucket.NextTokenTime(t0_), t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  EXPECT_EQ(bucket.NextTokenTime(t0_), t0_ + absl::Seconds(1));
}

TEST_F(TokenBucketTest, AnIdleBucketHoldsAtMostBurst) {
  TokenBucket bucket(/*rate_per_second=*/10, /*burst=*/5, t0_);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(bucket.TryTake(t0_));
  const absl::Time later = t0_ + absl::Hours(1);
  EXPECT_EQ(bucket.Available(later), 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.TryTake(later)) << i;
  EXPECT_FALSE(bucket.TryTake(later));
}

TEST_F(TokenBucketTest, GiveBackReturnsAnUnusedToken) {
  TokenBucket bucket(/*rate_per_second=*/1, /*burst=*/2, t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  ASSERT_TRUE(bucket.TryTake(t0_));
  ASSERT_FALSE(bucket.TryTake(t0_));
  bucket.GiveBack();
  EXPECT_EQ(bucket.Available(t0_), 1);
  EXPECT_TRUE(bucket.TryTake(t0_));
  EXPECT_FALSE(bucket.TryTake(t0_));
}

TEST_F(TokenBucketTest, GiveBackNeverOverfillsTheBucket) {
  TokenBucket bucket(/*rate_per_second=*/1, /*burst=*/2, t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  const absl::Time later = t0_ + absl::Seconds(10);  // Full again.
  bucket.GiveBack();
  EXPECT_EQ(bucket.Available(later), 2);
  EXPECT_TRUE(bucket.TryTake(later));
  EXPECT_TRUE(bucket.TryTake(later));
  EXPECT_FALSE(bucket.TryTake(later));
}

TEST_F(TokenBucketTest, ClockGoingBackNeitherLosesNorGainsTokens) {
  TokenBucket bucket(/*rate_per_second=*/1, /*burst=*/1, t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  const absl::Time back = t0_ - absl::Hours(1);
  EXPECT_FALSE(bucket.TryTake(back));  // Not a free token...
  // ...and no hour-long wait either: one interval from the jump.
  EXPECT_EQ(bucket.NextTokenTime(back), back + absl::Seconds(1));
  EXPECT_TRUE(bucket.TryTake(back + absl::Seconds(1)));
}

TEST_F(TokenBucketTest, FractionalRates) {
  TokenBucket bucket(/*rate_per_second=*/0.5, /*burst=*/1, t0_);
  ASSERT_TRUE(bucket.TryTake(t0_));
  EXPECT_EQ(bucket.NextTokenTime(t0_), t0_ + absl::Seconds(2));
  TokenBucket fast(/*rate_per_second=*/2000, /*burst=*/1, t0_);
  ASSERT_TRUE(fast.TryTake(t0_));
  EXPECT_EQ(fast.NextTokenTime(t0_), t0_ + absl::Microseconds(500));
}

// The property the pool's rate limit rests on: whatever the schedule of
// attempts (and give-backs), tokens kept over [t0, t] are at most
// burst + rate * (t - t0).
TEST_F(TokenBucketTest, NeverMoreThanBurstPlusRateTimesElapsed) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 20; ++round) {
    const double rate = 1 + static_cast<double>(rng() % 1000);
    const int burst = 1 + static_cast<int>(rng() % 20);
    TokenBucket bucket(rate, burst, t0_);
    absl::Time now = t0_;
    int64_t kept = 0;
    for (int i = 0; i < 5000; ++i) {
      now += absl::Microseconds(rng() % 3000);
      if (!bucket.TryTake(now)) continue;
      if (rng() % 4 == 0) {
        bucket.GiveBack();
      } else {
        ++kept;
      }
      const double limit = burst + rate * absl::ToDoubleSeconds(now - t0_);
      ASSERT_LE(static_cast<double>(kept), limit + 1e-9)
          << "rate " << rate << " burst " << burst << " at attempt " << i;
    }
  }
}

// And the bucket does not starve a caller that keeps asking: taking at
// every NextTokenTime yields exactly burst + rate * elapsed tokens.
TEST_F(TokenBucketTest, TakingAtEveryNextTokenTimeGetsTheFullRate) {
  TokenBucket bucket(/*rate_per_second=*/100, /*burst=*/4, t0_);
  absl::Time now = t0_;
  int taken = 0;
  while (now <= t0_ + absl::Seconds(10)) {
    if (bucket.TryTake(now)) {
      ++taken;
    } else {
      now = bucket.NextTokenTime(now);
    }
  }
  EXPECT_EQ(taken, 4 + 100 * 10);
}

}  // namespace
}  // namespace taskwal::engine
