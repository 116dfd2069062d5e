#ifndef TASKWAL_ENGINE_VERIFY_H_
#define TASKWAL_ENGINE_VERIFY_H_

// An offline check of a data directory: every snapshot and every log
// segment, record by record, reporting each problem with its file and byte
// offset. Where recovery (engine/recovery.h) stops at the first damage,
// VerifyDirectory goes on (to the next valid record, the next file) so one
// run shows everything that is wrong. It only reads: it takes no lock and
// writes, truncates, renames or removes nothing, so it may run on a
// directory another process holds.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "api/env.h"

namespace taskwal::engine {

struct Problem {
  enum class Kind {
    // The file could not be read (an I/O error other than a vanished file).
    kUnreadable,
    // A file header that is truncated, has the wrong magic or checksum.
    kBadHeader,
    // An intact header of a format version this build cannot read.
    kUnsupportedVersion,
    // The newest segment's header is short or zeroed: the writer died while
    // creating it. Open removes the file.
    kTornHeader,
    // The header's LSN disagrees with the LSN in the file name.
    kHeaderNameMismatch,
    // Damage at the end of the newest segment with no valid record after it:
    // a torn final write, never acknowledged. Open cuts it off.
    kTornTail,
    // Damaged bytes that Open will not repair: valid records follow them, or
    // they are in a segment that is not the newest.
    kCorruption,
    // A record or segment whose LSN is not the one expected: records are
    // missing (a gap) or repeated (an overlap).
    kLsnGap,
    // A log record with a valid checksum that is not a transition (wrong
    // record type, payload that does not parse, or no transition kind).
    kBadTransition,
    // A transition that parses but does not apply to the state it follows.
    kDoesNotReplay,
    // A snapshot's records are intact but do not form a snapshot: missing or
    // invalid meta or end record, an invalid or repeated task, a task count
    // that does not match, records after the end record.
    kSnapshotDamage,
  };

  Kind kind;
  std::string file;     // Name within the directory.
  uint64_t offset = 0;  // Byte offset of the damage within the file.
  // Damage to record framing (kTornTail, kCorruption, framing damage in a
  // snapshot): whether a valid record follows the damaged bytes.
  bool valid_records_follow = false;
  // Open repairs it by itself without losing anything acknowledged
  // (kTornTail, kTornHeader). Everything else makes Open fail with
  // kDataLoss, or is a damaged snapshot that Open sets aside, or lies in a
  // segment the newest snapshot covers whole, which Open does not read
  // (it matters only if Open has to fall back to an older snapshot).
  bool repaired_by_open = false;
  // What is wrong, for a person; does not repeat file and offset.
  std::string message;
};

// "torn tail", "corruption", ...
absl::string_view ProblemKindName(Problem::Kind kind);

// "<file> offset <offset>: <kind>: <message>".
std::string FormatProblem(const Problem& problem);

// What VerifyDirectory looked at.
struct VerifySummary {
  uint64_t snapshots = 0;
  uint64_t segments = 0;
  uint64_t bytes = 0;            // Sum of the sizes of those files.
  uint64_t log_records = 0;      // Valid log records read.
  uint64_t first_lsn = 0;        // Of the first valid log record; 0: none.
  uint64_t last_lsn = 0;         // Of the last valid log record; 0: none.
  uint64_t replay_base_lsn = 0;  // LSN of the snapshot replay started from.
  uint64_t replayed = 0;         // Records replayed after it.
};

// Called as files are read: bytes of snapshots and segments checked so far,
// and the total. Called from the calling thread only.
using ProgressFn =
    std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;

// Checks every snapshot (snapshot-*.snap) and every log segment (wal-*.log)
// in dir, as recovery would read them and more strictly: each snapshot
// whole (not only the newest valid one), each record's framing, checksum,
// LSN continuity within and between segments, that each log record parses
// as a transition, and that the log after the newest valid snapshot replays
// onto it. Set-aside files (*.corrupt, *.salvaged, *.snap.tmp) are ignored.
//
// OK: the problems found, in the order the files were read (snapshots
// newest first, then segments in LSN order); empty means clean. A file
// that vanishes while being read (its owner discarded it) restarts the
// check, up to a few times.
// kNotFound: dir does not exist. Other codes: I/O errors listing dir.
//
// The directory is never modified. Memory: one file's contents plus the
// state rebuilt from the newest valid snapshot and the log.
absl::StatusOr<std::vector<Problem>> VerifyDirectory(
    Env* env, const std::string& dir, ProgressFn progress = nullptr,
    VerifySummary* summary = nullptr);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_VERIFY_H_
