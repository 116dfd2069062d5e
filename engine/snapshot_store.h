#ifndef TASKWAL_ENGINE_SNAPSHOT_STORE_H_
#define TASKWAL_ENGINE_SNAPSHOT_STORE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/snapshot.pb.h"
#include "engine/task_table.h"
#include "taskwal/env.h"

namespace taskwal::engine {

// Where an engine keeps its snapshots: a data directory's files
// (DirSnapshotStore) or a JetStream stream (engine/jetstream_journal.h).
// EngineImpl::Snapshot calls it under its snapshot lock, one call at a time.
class SnapshotStore {
 public:
  virtual ~SnapshotStore() = default;

  // Writes one snapshot of every partition: metas[i] and the snapshot view
  // of tables[i] (TaskTable::BeginSnapshot, which the caller called when it
  // took metas[i]). Ends the view of every shard of every table, on error
  // too. Once it returns OK the snapshot is whole and recovery may use it;
  // on error recovery never sees a part of it.
  virtual absl::Status Write(absl::Span<const SnapshotMeta> metas,
                             absl::Span<TaskTable* const> tables) = 0;

  // Drops all but the two newest snapshots and returns the first segment
  // the log must keep (that of the older of the two), or 0 to keep all.
  virtual absl::StatusOr<uint64_t> Prune() = 0;
};

// Snapshot files in a data directory (engine/snapshot.h), the partitions
// written in parallel.
class DirSnapshotStore final : public SnapshotStore {
 public:
  DirSnapshotStore(Env* env, std::string dir, uint32_t partitions)
      : env_(env), dir_(std::move(dir)), partitions_(partitions) {}

  absl::Status Write(absl::Span<const SnapshotMeta> metas,
                     absl::Span<TaskTable* const> tables) override;
  absl::StatusOr<uint64_t> Prune() override;

 private:
  Env* const env_;
  const std::string dir_;
  const uint32_t partitions_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_SNAPSHOT_STORE_H_
