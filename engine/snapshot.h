#ifndef TASKWAL_ENGINE_SNAPSHOT_H_
#define TASKWAL_ENGINE_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/snapshot.pb.h"
#include "engine/state_machine.h"
#include "engine/task_table.h"
#include "taskwal/env.h"

namespace taskwal::engine {

// Snapshot files: snapshot-<first segment, 20 digits>-<partition, 4
// digits>.snap in the data directory, one per partition per snapshot. The
// first segment names the snapshot (every partition's file of one snapshot
// has the same); the file's header holds the partition LSN it covers. The
// format is in wal/log_format.md ("Snapshots").
struct SnapshotFile {
  std::string name;
  uint64_t first_segment = 0;
  uint32_t partition = 0;
};

std::string SnapshotFileName(uint64_t first_segment, uint32_t partition);
bool ParseSnapshotFileName(absl::string_view name, uint64_t* first_segment,
                           uint32_t* partition);

// Valid-looking snapshot names in dir, newest (highest first segment)
// first, then by partition.
absl::StatusOr<std::vector<SnapshotFile>> ListSnapshots(Env* env,
                                                        const std::string& dir);

// Writes meta plus the snapshot view of `table` (see
// TaskTable::BeginSnapshot, which the caller called when it took meta) to
// dir/SnapshotFileName(meta.first_segment(), meta.partition()): a
// temporary file, fdatasync, rename. The caller syncs the directory (once
// for all the partitions of a snapshot). Ends the snapshot view of every
// shard, on error too. Readers and writers of the table keep going
// meanwhile: each shard is read a chunk at a time. On error the temporary
// file is removed if possible and no file exists under the final name.
absl::Status WriteSnapshot(Env* env, const std::string& dir,
                           const SnapshotMeta& meta, TaskTable* table);

// The in-memory entry of one snapshot task record; kDataLoss if one of its
// history entries is not a well-formed HistoryEntry.
absl::StatusOr<std::unique_ptr<TaskEntry>> TaskEntryFromSnapshot(
    const SnapshotTask& record);

// Loads a snapshot file into an empty state machine of the same partition
// and partition count, and returns its meta. kDataLoss names the file and
// offset for any damage: a bad header or checksum, a missing meta or end
// record, a meta of another partition, a task count that does not match, or
// bytes after the end record.
absl::StatusOr<SnapshotMeta> LoadSnapshot(Env* env, const std::string& path,
                                          StateMachine* state);

// Parses snapshot contents already in memory; LoadSnapshot and the fuzzer
// use it.
absl::StatusOr<SnapshotMeta> LoadSnapshotContents(absl::string_view contents,
                                                  const std::string& path,
                                                  StateMachine* state);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_SNAPSHOT_H_
