#ifndef TASKWAL_WAL_DATA_DIR_H_
#define TASKWAL_WAL_DATA_DIR_H_

// The files of a data directory and their rules, in one place: how log
// segments are named and listed, what a torn segment header is, and the
// META file that records the directory's format and partition count. The
// writer (wal/wal.h), recovery (wal/log_recovery.h), `taskwal verify` and
// the CLI all call these instead of repeating them. wal/log_format.md
// describes the files.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "taskwal/env.h"

namespace taskwal::wal {

// A log segment: wal-<sequence number, 20 digits>.log. Segments are
// numbered 1, 2, ... in the order they were started.
struct SegmentFile {
  std::string name;
  uint64_t seq = 0;
};

std::string SegmentFileName(uint64_t seq);
bool ParseSegmentFileName(absl::string_view name, uint64_t* seq);

// "<dir>/<name>".
std::string JoinPath(const std::string& dir, absl::string_view name);

// What a directory listing holds, by kind.
struct DirectoryListing {
  std::vector<SegmentFile> segments;  // Ascending sequence number.
  // wal-*.log.tmp: a segment being created when its writer died (or now).
  std::vector<std::string> temp_segments;
  // snapshot-*: parsed by engine/snapshot.h.
  std::vector<std::string> snapshots;
  bool has_meta = false;
  // Any other name.
  std::vector<std::string> other;
};

// Lists dir. Names are classified, not opened.
absl::StatusOr<DirectoryListing> ListDirectory(Env* env,
                                               const std::string& dir);

// The lock file Engine::Open holds while a process writes to the directory.
inline constexpr absl::string_view kLockFileName = "LOCK";

// What a directory is, judged from its listing alone (nothing is opened),
// for callers that must not mistake another directory for a data
// directory. Which kinds to refuse is the caller's policy.
enum class DirectoryKind {
  // META is there (whether it is readable is for Open or verify to judge).
  kDataDirectory,
  // No META, but log segments (or their temporary files) or snapshots: a
  // directory of format version 1 (taskwal before partitions, which wrote
  // no META) or one that lost its META. Open and verify judge it (Open
  // refuses segments or snapshots without META and says which kind they
  // are: engine/recovery.h).
  kDataWithoutMeta,
  // Empty, or holding only what creating a data directory leaves before
  // META is in place (the lock file, META's temporary file): a writer's
  // Open makes it a data directory.
  kEmpty,
  // Anything else: other files and no META. Not a data directory.
  kOther,
};

DirectoryKind ClassifyDirectory(const DirectoryListing& listing);

// A segment whose header never fully reached the disk: shorter than a file
// header, or all zero bytes. Only the newest segment may be torn so (the
// process died creating it), and recovery removes it.
bool IsTornHeader(absl::string_view contents);

// The META file: the directory's format version and partition count,
// written once when the directory is created, before any other file.
struct DirectoryMeta {
  uint32_t partitions = 1;
};

// Reads dir/META. nullopt: there is none.
//   kDataLoss: META is damaged, or its partition count is out of range
//     (names the file).
//   kFailedPrecondition: META is of another format version.
absl::StatusOr<std::optional<DirectoryMeta>> ReadDirectoryMeta(
    Env* env, const std::string& dir);

// Writes dir/META durably (temporary file, fdatasync, rename, directory
// fsync). REQUIRES: meta.partitions in [1, kMaxPartitions].
absl::Status WriteDirectoryMeta(Env* env, const std::string& dir,
                                const DirectoryMeta& meta);

// Replaces dir/name by `contents` durably: writes name.tmp, fdatasyncs it,
// renames it over name and fsyncs dir. A crash leaves the old file or the
// new one whole (and maybe name.tmp, which the next call overwrites).
absl::Status WriteFileDurably(Env* env, const std::string& dir,
                              absl::string_view name,
                              absl::string_view contents);

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_DATA_DIR_H_
