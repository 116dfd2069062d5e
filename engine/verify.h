#ifndef TASKWAL_ENGINE_VERIFY_H_
#define TASKWAL_ENGINE_VERIFY_H_

// An offline check of a data directory: the META file, every snapshot file
// of every partition and every log segment, record by record, reporting
// each problem with its file and byte offset. Where recovery
// (engine/recovery.h) stops at the first damage, VerifyDirectory goes on
// (to the next valid record, the next file) so one run shows everything
// that is wrong. It only reads: it takes no lock and writes, truncates,
// renames or removes nothing, so it may run on a directory another process
// holds. The directory rules it checks against (file names, which segment
// follows which, torn headers, META, snapshot loading, replay) are the
// ones Open uses, called, not copied: wal/data_dir.h, engine/snapshot.h,
// engine/recovery.h.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "taskwal/env.h"

namespace taskwal::engine {

struct Problem {
  enum class Kind {
    // The file could not be read (an I/O error other than a vanished file).
    kUnreadable,
    // A file header that is truncated, has the wrong magic or checksum.
    kBadHeader,
    // An intact header (or META) of a format version this build cannot
    // read. A directory of version 1 (taskwal before partitions: no META,
    // headers of version 1) is reported once, naming the version, and
    // nothing else is checked.
    kUnsupportedVersion,
    // The META file is missing beside log segments or snapshots, damaged,
    // or holds a partition count out of range. Open fails on it. The rest
    // is checked with the partition count the newest snapshot names (or,
    // without one, without replaying the log); the message says which.
    kBadMeta,
    // The newest segment's header is short or zeroed: the writer died while
    // creating it. Open removes the file.
    kTornHeader,
    // The file name disagrees with what the file says: a segment header's
    // sequence number, or a snapshot's partition or first segment.
    kHeaderNameMismatch,
    // Damage at the end of the newest segment with no valid record after it:
    // a torn final write, never acknowledged. Open cuts it off (from the
    // start of any group of records it breaks, see kIncompleteGroup).
    kTornTail,
    // Damaged bytes that Open will not repair: valid records follow them, or
    // they are in a segment that is not the newest.
    kCorruption,
    // Records or segments missing or repeated: a partition's record whose
    // LSN does not follow the partition's previous one (only below the
    // partition's snapshot may LSNs skip), or a segment number missing from
    // the sequence (or from where the snapshots say the log starts).
    kLsnGap,
    // The pieces of one multi-partition transition (kGroupTransition
    // records) are not all there. At the end of the newest segment that is
    // a flush cut short, which Open cuts off like a torn tail
    // (repaired_by_open); anywhere else, or a piece without its group's
    // first piece, Open fails.
    kIncompleteGroup,
    // A log record with a valid checksum that is not a transition: a wrong
    // record type, a partition out of the directory's range, an invalid
    // group header, a payload that does not parse, or no transition kind.
    kBadTransition,
    // A transition that parses but does not apply to the state it follows.
    kDoesNotReplay,
    // A snapshot file whose records are intact but that Open does not load:
    // missing or invalid meta or end record, an invalid or repeated task, a
    // task count that does not match, records after the end record, a
    // partition count other than the directory's, a partition outside the
    // directory's range, or a name that is not a snapshot file name.
    kSnapshotDamage,
    // The OPTIONS file (the last writer's data options) is damaged. It
    // holds no tasks: recovery never reads it, but an Open with
    // use_stored_options (the CLI) fails on it until the owner's next Open
    // rewrites it or it is removed.
    kBadOptions,
  };

  Kind kind;
  std::string file;     // Name within the directory.
  uint64_t offset = 0;  // Byte offset of the damage within the file.
  // Damage to record framing (kTornTail, kCorruption, framing damage in a
  // snapshot): whether a valid record follows the damaged bytes.
  bool valid_records_follow = false;
  // Open repairs it by itself without losing anything acknowledged
  // (kTornTail, kTornHeader, a kIncompleteGroup at the end of the newest
  // segment), as Open's own recovery, run read-only over the same files,
  // confirms: beside damage that makes Open fail, nothing is repaired.
  // Everything else makes Open fail with kDataLoss, or is a damaged snapshot
  // that Open sets aside (or ignores), or lies in a segment that the snapshots
  // cover whole, which Open does not read (it matters only if Open has to fall
  // back to an older snapshot).
  bool repaired_by_open = false;
  // What is wrong, for a person; does not repeat file and offset.
  std::string message;
};

// "torn tail", "corruption", ...
absl::string_view ProblemKindName(Problem::Kind kind);

// "<file> offset <offset>: <kind>: <message>".
std::string FormatProblem(const Problem& problem);

// What VerifyDirectory looked at. LSNs count records per partition; the
// LSN fields here are sums over the partitions, as EngineStats and
// RecoveryReport give them (records since the data began).
struct VerifySummary {
  // The directory's partition count (META); 0 when it has no usable META.
  uint32_t partitions = 0;
  uint64_t snapshots = 0;  // Snapshot files (one per partition per snapshot).
  uint64_t segments = 0;
  uint64_t bytes = 0;        // Sum of the sizes of those files.
  uint64_t log_records = 0;  // Valid log records read.
  // Sum over the partitions of the highest LSN the log holds, or of the
  // replay base if that is higher: what Open's RecoveryReport::last_lsn
  // says on a clean directory. 0: no records.
  uint64_t last_lsn = 0;
  // Sum over the partitions of the LSN of the snapshot replay started from
  // (each partition's newest valid one, as Open picks it); 0: none.
  uint64_t replay_base_lsn = 0;
  uint64_t replayed = 0;  // Records replayed after those snapshots.
};

// Called as files are read: bytes of snapshots and segments checked so far,
// and the total. Called from the calling thread only.
using ProgressFn =
    std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;

// Checks the META file, every snapshot file (snapshot-*.snap) and every log
// segment (wal-*.log) in dir, as recovery would read them and more
// strictly: each snapshot file whole (not only each partition's newest
// valid one) and consistent with its name and META; that segments are
// numbered without a gap from where the snapshots need the log; each
// record's framing and checksum, that its partition is in range, that each
// partition's LSNs follow on across the whole log, that each group of
// records is complete, that each log record parses as a transition; and
// that the log replays onto each partition's newest valid snapshot.
// Set-aside and temporary files (*.corrupt*, *.salvaged, *.tmp) are
// ignored.
//
// OK: the problems found, in the order the files were read (META,
// snapshots newest first, then segments in sequence order); empty means
// clean. The check reads the files of one moment, however busy their owner
// (wal/pinned_dir.h); in a directory too large to hold every file open, a
// file that vanishes while being read restarts the check, up to a few
// times.
// kNotFound: dir does not exist. kUnavailable: the owner changed the files
// every time the check tried to take hold of them. Other codes: I/O errors
// listing dir or sizing its files, or no thread to load a snapshot with
// (kResourceExhausted).
//
// The directory is never modified. Memory: one file's contents plus the
// state rebuilt from the snapshots and the log.
absl::StatusOr<std::vector<Problem>> VerifyDirectory(
    Env* env, const std::string& dir, ProgressFn progress = nullptr,
    VerifySummary* summary = nullptr);

// The header of a kGroupTransition record's payload (wal/format.h). It
// belongs in wal/ beside the writer's encoder (wal/wal.cc) and recovery's
// decoder (wal/log_recovery.cc), which have none to share yet; until then
// verify and the CLI's dump decode it here, once.
}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_VERIFY_H_
