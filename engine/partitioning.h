#ifndef TASKWAL_ENGINE_PARTITIONING_H_
#define TASKWAL_ENGINE_PARTITIONING_H_

// Which partition a task belongs to. Part of the on-disk format: a data
// directory's records and snapshots depend on it, so neither function may
// ever change (wal/log_format.md, "Partitions").
//
// A task lives in the partition of its idempotency key, so deduplication
// never looks beyond one partition, and its id names that partition, so a
// call on a task id goes straight to it: partition p of P hands out ids
// P + p, 2P + p, 3P + p, ... (with one partition: 1, 2, 3, ...).

#include <cstdint>

#include "absl/strings/string_view.h"

namespace taskwal::engine {

inline uint32_t PartitionOfId(uint64_t id, uint32_t partitions) {
  return static_cast<uint32_t>(id % partitions);
}

// The first id partition `partition` of `partitions` hands out.
inline uint64_t FirstTaskId(uint32_t partition, uint32_t partitions) {
  return uint64_t{partitions} + partition;
}

// A stable hash of the key (CRC-32C, then MurmurHash3's 32-bit finalizer to
// spread similar keys), scaled to [0, partitions).
uint32_t PartitionOfKey(absl::string_view key, uint32_t partitions);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_PARTITIONING_H_
