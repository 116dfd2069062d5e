#include "daemon/series.h"

#include <atomic>
#include <optional>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace taskwal::daemon {
namespace {

SeriesSample At(int64_t seconds, uint64_t completions) {
  SeriesSample s;
  s.time = absl::FromUnixSeconds(seconds);
  s.completions = completions;
  return s;
}

TEST(SeriesRecorderTest, KeepsTheLastWindowOldestFirst) {
  // A 10 s step over 30 s keeps four samples: now and three steps back.
  SeriesRecorder series(absl::Seconds(10), absl::Seconds(30));
  for (int i = 0; i < 10; ++i) series.Add(At(i * 10, i));
  const std::vector<SeriesSample> samples = series.Samples();
  ASSERT_EQ(samples.size(), 4u);
  EXPECT_EQ(samples.front().completions, 6u);
  EXPECT_EQ(samples.back().completions, 9u);
}

TEST(SeriesRecorderTest, KeepsAtLeastTwoSamples) {
  SeriesRecorder series(absl::Seconds(10), absl::ZeroDuration());
  for (int i = 0; i < 5; ++i) series.Add(At(i, i));
  EXPECT_EQ(series.Samples().size(), 2u);
}

TEST(SeriesRecorderTest, AnyWindowKeepsABoundedNumber) {
  for (absl::Duration window :
       {-absl::Seconds(5), absl::InfiniteDuration(), -absl::InfiniteDuration(),
        absl::Hours(1000000)}) {
    SeriesRecorder series(absl::Milliseconds(1), window);
    for (int i = 0; i < 100010; ++i) series.Add(At(i, i));
    const size_t kept = series.Samples().size();
    EXPECT_GE(kept, 2u);
    EXPECT_LE(kept, 100000u);
  }
}

TEST(SeriesRecorderTest, SamplesAtOnceThenEveryStepUntilStopped) {
  SeriesRecorder series(absl::Milliseconds(5), absl::Minutes(1));
  std::atomic<int> calls{0};
  series.Start([&calls]() -> std::optional<SeriesSample> {
    const int n = ++calls;
    if (n == 2) return std::nullopt;  // Skipped, as when Stats fails.
    return At(n, static_cast<uint64_t>(n));
  });
  // No timing is asserted: it only has to get there.
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (series.Samples().size() < 3 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  series.Stop();
  const std::vector<SeriesSample> samples = series.Samples();
  ASSERT_GE(samples.size(), 3u);
  EXPECT_EQ(samples[0].completions, 1u);
  EXPECT_EQ(samples[1].completions, 3u);  // The second call was skipped.
  const int after_stop = calls.load();
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(calls.load(), after_stop);
  EXPECT_EQ(series.Samples().size(), samples.size());
}

TEST(SeriesRecorderTest, StopBeforeStartAndTwiceIsFine) {
  SeriesRecorder series(absl::Milliseconds(5), absl::Minutes(1));
  series.Stop();
  bool called = false;
  series.Start([&called]() -> std::optional<SeriesSample> {
    called = true;
    return std::nullopt;
  });
  series.Stop();
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace taskwal::daemon
