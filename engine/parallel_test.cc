#include "engine/parallel.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

TEST(ParallelTest, WorkerCountIsBounded) {
  EXPECT_EQ(WorkerCount(0), 1u);
  EXPECT_EQ(WorkerCount(1), 1u);
  const uint32_t hw = std::thread::hardware_concurrency();
  EXPECT_LE(WorkerCount(1000), std::max<uint32_t>(1, hw));
  EXPECT_GE(WorkerCount(1000), 1u);
}

TEST(ParallelTest, CallsEachIndexExactlyOnce) {
  for (uint32_t n : {0u, 1u, 2u, 3u, 16u, 257u}) {
    std::vector<std::atomic<int>> calls(n);
    ParallelFor(n, [&](uint32_t i) {
      ASSERT_LT(i, n);
      calls[i].fetch_add(1);
    });
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT_EQ(calls[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ParallelTest, ResultsAreVisibleAfterReturn) {
  constexpr uint32_t kN = 64;
  std::vector<uint64_t> out(kN, 0);  // Plain writes, one slot per index.
  ParallelFor(kN, [&](uint32_t i) { out[i] = uint64_t{i} * i + 1; });
  for (uint32_t i = 0; i < kN; ++i) EXPECT_EQ(out[i], uint64_t{i} * i + 1);
}

}  // namespace
}  // namespace taskwal::engine
