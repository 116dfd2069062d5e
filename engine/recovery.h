#ifndef TASKWAL_ENGINE_RECOVERY_H_
#define TASKWAL_ENGINE_RECOVERY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/state_machine.h"
#include "taskwal/engine.h"
#include "taskwal/env.h"
#include "wal/data_dir.h"

namespace taskwal::engine {

// The state of a data directory as Open rebuilds it.
struct RecoveredState {
  // One per partition, in order; their count is the directory's.
  std::vector<std::unique_ptr<StateMachine>> states;
  // For Wal::Open.
  std::vector<wal::SegmentFile> segments;
  std::vector<uint64_t> last_lsn;  // Per partition.
  uint64_t next_seq = 1;
  // The last segment's length, when the log may go on in it (see
  // Wal::Open); 0 when it must not.
  uint64_t tail_bytes = 0;
  RecoveryReport report;
};

// An empty state machine for partition `partition` of `partitions`, sized
// by options (shards, history, retention).
std::unique_ptr<StateMachine> NewPartitionState(const EngineOptions& options,
                                                uint32_t partition,
                                                uint32_t partitions);

// The directory's partition count: what its META file says, or for a new
// (empty) directory options.partitions (kDefaultPartitions if 0), in which
// case META is written unless options.read_only.
//   kFailedPrecondition: options.partitions is nonzero and differs from the
//     directory's; or the directory is of format version 1 (it has log
//     segments or snapshots but no META, and their headers say version 1).
//   kDataLoss: META is damaged, or missing beside segments or snapshots of
//     the current version.
absl::StatusOr<uint32_t> DirectoryPartitions(const EngineOptions& options,
                                             Env* env, const std::string& dir);

// Loads each partition's newest valid snapshot (setting aside, as
// *.corrupt, any newer one that fails its checks), in parallel, and replays
// the log after them through StateMachine::Apply, partitions in parallel,
// each in its own order. In strict mode (options.salvage false) a kDataLoss
// leaves the directory untouched. REQUIRES: the caller holds the
// directory's lock (unless options.read_only).
absl::StatusOr<RecoveredState> RecoverDirectory(const EngineOptions& options,
                                                Env* env,
                                                const std::string& dir);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_RECOVERY_H_
