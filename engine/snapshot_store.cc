#include "engine/snapshot_store.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/parallel.h"
#include "engine/snapshot.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

absl::Status DirSnapshotStore::Write(absl::Span<const SnapshotMeta> metas,
                                     absl::Span<TaskTable* const> tables) {
  const uint32_t n = static_cast<uint32_t>(metas.size());
  // The partitions' files are written in parallel.
  std::vector<absl::Status> written(n);
  ParallelFor(n, [&](uint32_t i) {
    written[i] = WriteSnapshot(env_, dir_, metas[i], tables[i]);
  });
  absl::Status s;
  for (const absl::Status& w : written) {
    if (s.ok()) s = w;
  }
  if (s.ok()) s = env_->SyncDir(dir_);
  if (!s.ok()) {
    // No partial snapshot stays behind: recovery takes each partition's
    // newest file, and a snapshot is only whole with all of them.
    for (const SnapshotMeta& meta : metas) {
      env_->RemoveFile(absl::StrCat(dir_, "/",
                                    SnapshotFileName(meta.first_segment(),
                                                     meta.partition())))
          .IgnoreError();
    }
  }
  return s;
}

absl::StatusOr<uint64_t> DirSnapshotStore::Prune() {
  // Keep each partition's two newest snapshots, and the log after the
  // older ones, so a damaged newest snapshot still leaves a way back.
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SnapshotFile> files,
                           ListSnapshots(env_, dir_));
  std::vector<int> kept(partitions_, 0);
  // First segment of the second newest.
  std::vector<uint64_t> older(partitions_, 0);
  bool removed = false;
  for (const SnapshotFile& f : files) {  // Newest first.
    if (f.partition >= partitions_) continue;
    if (++kept[f.partition] == 2) older[f.partition] = f.first_segment;
    if (kept[f.partition] > 2) {
      TASKWAL_RETURN_IF_ERROR(
          env_->RemoveFile(absl::StrCat(dir_, "/", f.name)));
      removed = true;
    }
  }
  if (removed) TASKWAL_RETURN_IF_ERROR(env_->SyncDir(dir_));
  return *std::min_element(older.begin(), older.end());
}

}  // namespace taskwal::engine
