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

// The field number of a serialized Transition's kind, read from the wire
// format (protobuf writes fields in number order: time_micros, then the
// kind); 0 if the bytes do not start that way, and the parse decides.
int PeekKind(absl::string_view payload) {
  size_t pos = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && pos < payload.size(); shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(payload[pos++]);
      *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  };
  uint64_t tag = 0;
  uint64_t value = 0;
  if (!varint(&tag)) return 0;
  if (tag == (1 << 3 | 0)) {  // time_micros, a varint.
    if (!varint(&value) || !varint(&tag)) return 0;
  }
  return (tag & 7) == 2 ? static_cast<int>(tag >> 3) : 0;
}

// Records replayed between resets of the arena that holds the records
// Apply only reads.
constexpr int kArenaRecords = 4096;

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
  // A submit's tasks are moved into the table, so it is parsed on the heap
  // (a move out of an arena would copy). Every other kind is only read by
  // Apply: it is parsed into an arena, where re-parsing does not free and
  // reallocate the kind's submessage per record.
  Transition submit_record;
  google::protobuf::Arena arena;
  Transition* arena_record = nullptr;
  int arena_uses = 0;
  TASKWAL_ASSIGN_OR_RETURN(
      wal::RecoveryResult log,
      wal::RecoverLog(
          env, dir, state->last_applied_lsn(), options.salvage,
          options.read_only,
          [&](uint64_t lsn, absl::string_view payload) -> absl::Status {
            Transition* record = &submit_record;
            if (PeekKind(payload) != Transition::kSubmit) {
              if (arena_record == nullptr || ++arena_uses == kArenaRecords) {
                arena_record = nullptr;
                arena.Reset();
                arena_record =
                    google::protobuf::Arena::CreateMessage<Transition>(&arena);
                arena_uses = 0;
              }
              record = arena_record;
            }
            if (!record->ParseFromArray(payload.data(),
                                        static_cast<int>(payload.size()))) {
              return absl::DataLossError(absl::StrCat(
                  "log record at LSN ", lsn,
                  " has a valid checksum but is not a transition"));
            }
            absl::Status s = state->ApplyConsuming(record, lsn);
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
