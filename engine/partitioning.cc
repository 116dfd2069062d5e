#include "engine/partitioning.h"

#include "wal/crc32c.h"

namespace taskwal::engine {

uint32_t PartitionOfKey(absl::string_view key, uint32_t partitions) {
  uint32_t h = wal::crc32c::Value(key.data(), key.size());
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return static_cast<uint32_t>((uint64_t{h} * partitions) >> 32);
}

}  // namespace taskwal::engine
