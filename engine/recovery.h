#ifndef TASKWAL_ENGINE_RECOVERY_H_
#define TASKWAL_ENGINE_RECOVERY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "api/engine.h"
#include "api/env.h"
#include "engine/state_machine.h"
#include "wal/wal.h"

namespace taskwal::engine {

// The state of a data directory as Open rebuilds it.
struct RecoveredState {
  std::unique_ptr<StateMachine> state;
  std::vector<wal::SegmentFile> segments;  // For Wal::Open.
  uint64_t last_lsn = 0;
  RecoveryReport report;
};

// Loads the newest valid snapshot of dir (setting aside, as *.corrupt, any
// newer one that fails its checks) and replays the log after it through
// StateMachine::Apply. In strict mode (options.salvage false) a kDataLoss
// leaves the directory untouched. REQUIRES: the caller holds the
// directory's lock.
absl::StatusOr<RecoveredState> RecoverDirectory(const EngineOptions& options,
                                                Env* env,
                                                const std::string& dir);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_RECOVERY_H_
