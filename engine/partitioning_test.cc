#include "engine/partitioning.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

// The mapping is part of the on-disk format: these values must never
// change, or existing data directories would look up keys in the wrong
// partition.
TEST(PartitioningTest, KeyPartitionsAreStable) {
  EXPECT_EQ(PartitionOfKey("order-12345", 16), 2u);
  EXPECT_EQ(PartitionOfKey("", 16), 0u);
  EXPECT_EQ(PartitionOfKey("a", 256), 234u);
  EXPECT_EQ(PartitionOfKey("anything", 1), 0u);
}

TEST(PartitioningTest, KeysSpreadEvenly) {
  constexpr uint32_t kPartitions = 16;
  constexpr int kKeys = 160000;
  std::vector<int> counts(kPartitions);
  for (int i = 0; i < kKeys; ++i) {
    const uint32_t p = PartitionOfKey(absl::StrCat("key-", i), kPartitions);
    ASSERT_LT(p, kPartitions);
    ++counts[p];
  }
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_NEAR(counts[p], kKeys / kPartitions, kKeys / kPartitions / 10)
        << "partition " << p;
  }
}

TEST(PartitioningTest, IdsNameTheirPartition) {
  for (uint32_t partitions : {1u, 3u, 16u}) {
    for (uint32_t p = 0; p < partitions; ++p) {
      for (uint64_t k = 0; k < 5; ++k) {
        const uint64_t id = FirstTaskId(p, partitions) + k * partitions;
        EXPECT_EQ(PartitionOfId(id, partitions), p);
        EXPECT_GT(id, 0u);
      }
    }
  }
  EXPECT_EQ(FirstTaskId(0, 1), 1u);
}

}  // namespace
}  // namespace taskwal::engine
