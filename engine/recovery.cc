#include "engine/recovery.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/snapshot.h"
#include "engine/transition.pb.h"
#include "google/protobuf/arena.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

namespace {

// Replay parses records into an arena, reset after this many records or
// bytes of records: re-parsing into a fresh message in an arena does not
// free and reallocate each kind's submessage per record.
constexpr int kArenaRecords = 4096;
constexpr size_t kArenaBytes = size_t{8} << 20;

}  // namespace

absl::StatusOr<RecoveredState> RecoverDirectory(const EngineOptions& options,
                                                Env* env,
                                                const std::string& dir) {
  const absl::Time start = absl::Now();
  RecoveredState out;
  auto path = [&dir](absl::string_view name) {
    return absl::StrCat(dir, "/", name);
  };

  // Newest valid snapshot. Damaged ones are set aside only once recovery
  // has succeeded, so a failed Open changes nothing.
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SnapshotFile> snapshots,
                           ListSnapshots(env, dir));
  std::vector<std::string> damaged;
  for (const SnapshotFile& snapshot : snapshots) {
    auto candidate = std::make_unique<StateMachine>(
        options.num_shards, options.max_history_per_task);
    absl::Status s = LoadSnapshot(env, path(snapshot.name), candidate.get());
    if (s.ok() && candidate->last_applied_lsn() != snapshot.lsn) {
      s = absl::DataLossError(absl::StrCat(
          path(snapshot.name), ": holds records through LSN ",
          candidate->last_applied_lsn(), " but its name says ", snapshot.lsn));
    }
    if (s.ok()) {
      out.state = std::move(candidate);
      out.report.snapshot_lsn = snapshot.lsn;
      break;
    }
    if (!absl::IsDataLoss(s)) return s;
    damaged.push_back(snapshot.name);
    out.report.notes.push_back(absl::StrCat(
        "snapshot ", snapshot.name, " is damaged (", s.message(), "); ",
        options.read_only ? "skipped"
                          : absl::StrCat("set aside as ", snapshot.name,
                                         ".corrupt")));
  }
  if (out.state == nullptr) {
    out.state = std::make_unique<StateMachine>(options.num_shards,
                                               options.max_history_per_task);
  }

  StateMachine* state = out.state.get();
  google::protobuf::Arena arena;
  Transition* record = nullptr;
  int arena_records = 0;
  size_t arena_bytes = 0;
  TASKWAL_ASSIGN_OR_RETURN(
      wal::RecoveryResult log,
      wal::RecoverLog(
          env, dir, state->last_applied_lsn(), options.salvage,
          options.read_only,
          [&](uint64_t lsn, absl::string_view payload) -> absl::Status {
            if (record == nullptr || ++arena_records == kArenaRecords ||
                (arena_bytes += payload.size()) > kArenaBytes) {
              record = nullptr;
              arena.Reset();
              record =
                  google::protobuf::Arena::CreateMessage<Transition>(&arena);
              arena_records = 0;
              arena_bytes = payload.size();
            }
            if (!record->ParseFromArray(payload.data(),
                                        static_cast<int>(payload.size()))) {
              return absl::DataLossError(absl::StrCat(
                  "log record at LSN ", lsn,
                  " has a valid checksum but is not a transition"));
            }
            absl::Status s = state->Apply(*record, lsn);
            if (!s.ok()) {
              return absl::DataLossError(absl::StrCat(
                  "log record at LSN ", lsn, " does not replay: ",
                  s.message()));
            }
            return absl::OkStatus();
          }));

  // A read-only open changes nothing: damaged snapshots stay where they are.
  if (!options.read_only) {
    for (const std::string& name : damaged) {
      // Never overwrite an earlier set-aside file.
      std::string target = path(name) + ".corrupt";
      for (int n = 1; env->FileExists(target); ++n) {
        target = absl::StrCat(path(name), ".corrupt.", n);
      }
      TASKWAL_RETURN_IF_ERROR(env->RenameFile(path(name), target));
    }
    // Leftovers of a snapshot that was being written when the process died.
    TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                             env->GetChildren(dir));
    bool removed = !damaged.empty();
    for (const std::string& name : children) {
      if (absl::EndsWith(name, ".snap.tmp")) {
        TASKWAL_RETURN_IF_ERROR(env->RemoveFile(path(name)));
        removed = true;
      }
    }
    if (removed) TASKWAL_RETURN_IF_ERROR(env->SyncDir(dir));
  }

  out.segments = std::move(log.segments);
  out.last_lsn = log.last_lsn;
  out.report.records_replayed = log.records_replayed;
  out.report.last_lsn = log.last_lsn;
  out.report.truncated_bytes = log.truncated_bytes;
  for (std::string& note : log.notes) out.report.notes.push_back(std::move(note));
  out.report.duration = absl::Now() - start;
  return out;
}

}  // namespace taskwal::engine
