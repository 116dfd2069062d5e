#ifndef TASKWAL_ENGINE_JETSTREAM_SNAPSHOTS_H_
#define TASKWAL_ENGINE_JETSTREAM_SNAPSHOTS_H_

// Snapshots of an engine on JetStream. A snapshot is each partition's
// snapshot file (engine/snapshot.h, the same bytes as in a data directory)
// cut into chunks of TASKWAL_<cluster>_SNAP, then committed by a manifest
// (jetstream.proto) that the journal appends to its own stream, fenced: a
// deposed writer's snapshot never counts. Recovery loads the newest
// manifest's snapshot (or, should it not load, the one before) and reads
// the journal from the manifest's first_segment on. After each snapshot
// the journal and the chunk stream are purged up to the snapshot before
// it, which stays as a way back.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/jetstream_journal.h"
#include "engine/snapshot_store.h"
#include "engine/state_machine.h"

namespace taskwal::engine::jetstream {

struct LoadedSnapshot {
  bool found = false;
  uint64_t manifest_seq = 0;       // 0 without a snapshot.
  uint64_t first_segment = 1;      // Where the journal is read from.
  std::vector<uint64_t> lsn;       // Per partition; zeros without a snapshot.
  std::vector<std::string> notes;  // Snapshots passed over, and why.
};

// Loads the newest committed snapshot that loads whole and whose log is
// still there (the journal stream begins at log_first_seq) into *states,
// which fresh_states() refills with empty state machines before each try.
// Without one: found is false and *states is fresh, if the journal was
// never purged (log_first_seq <= 1); else kDataLoss.
absl::StatusOr<LoadedSnapshot> LoadNewestSnapshot(
    Connection& conn, const Config& config, uint64_t log_first_seq,
    absl::FunctionRef<std::vector<std::unique_ptr<StateMachine>>()>
        fresh_states,
    std::vector<std::unique_ptr<StateMachine>>* states);

// The journal-stream sequence of the newest snapshot manifest, 0 if none.
absl::StatusOr<uint64_t> NewestManifestSeq(Connection& conn,
                                           const Config& config);

class JetStreamSnapshotStore final : public SnapshotStore {
 public:
  // `journal` commits the manifests; it outlives the store. manifest_seq:
  // the newest committed manifest (0 if none).
  JetStreamSnapshotStore(const Config& config, std::unique_ptr<Connection> conn,
                         JetStreamJournal* journal, uint64_t manifest_seq)
      : config_(config),
        conn_(std::move(conn)),
        journal_(journal),
        manifest_seq_(manifest_seq) {}

  absl::Status Write(absl::Span<const SnapshotMeta> metas,
                     absl::Span<TaskTable* const> tables) override;
  absl::StatusOr<uint64_t> Prune() override;

 private:
  const Config config_;
  const std::unique_ptr<Connection> conn_;
  JetStreamJournal* const journal_;
  // The engine's snapshot lock serializes Write and Prune.
  uint64_t manifest_seq_;
  uint64_t previous_manifest_seq_ = 0;
};

}  // namespace taskwal::engine::jetstream

#endif  // TASKWAL_ENGINE_JETSTREAM_SNAPSHOTS_H_
