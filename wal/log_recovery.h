#ifndef TASKWAL_WAL_LOG_RECOVERY_H_
#define TASKWAL_WAL_LOG_RECOVERY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "taskwal/env.h"
#include "wal/data_dir.h"

namespace taskwal::wal {

struct LogRecoveryOptions {
  uint32_t partitions = 1;
  // Per partition (empty: all 0): the LSN a snapshot holds the partition
  // through. Records at or below it are checked but not applied.
  std::vector<uint64_t> after_lsn;
  // The first segment that may hold a record above after_lsn: the lowest
  // first segment of the snapshots used, 1 without snapshots. Earlier
  // segments are not read (damage in them costs nothing).
  uint64_t first_seq = 1;
  // Damage beyond a torn final write: false, kDataLoss naming the file and
  // offset, and nothing is changed; true, keep the valid prefix, truncate
  // the damaged segment there, rename later segments <name>.salvaged, and
  // say so in notes.
  bool salvage = false;
  // Change nothing: a torn tail or torn header is skipped (and noted)
  // instead of cut or removed. Not combinable with salvage.
  bool read_only = false;
};

// What recovery found and did.
struct RecoveryResult {
  // Valid segments, oldest first, the unread ones before first_seq too.
  std::vector<SegmentFile> segments;
  // Per partition: the last valid record, or after_lsn if it is higher.
  std::vector<uint64_t> last_lsn;
  // The number for the next segment: one past the last segment kept, and
  // at least first_seq.
  uint64_t next_seq = 1;
  // The length of segments.back() as recovery left it (whole records; a
  // torn tail cut off), when recovery read that segment; 0 when it did not
  // (it lies before first_seq). Read only: the torn tail stays in the
  // file, which is then longer than this.
  uint64_t tail_bytes = 0;
  uint64_t records_replayed = 0;   // Records passed to apply.
  uint64_t truncated_bytes = 0;    // Torn tail (or salvage) cut off.
  std::vector<std::string> notes;  // What was repaired, for the report.
};

// Receives each recovered record above its partition's after_lsn:
// partition, LSN, the transition's bytes, and the buffer they point into
// (a caller that keeps the view past the call keeps a reference to it).
// Records of one partition arrive in LSN order; a group's pieces arrive
// only once every piece of the group has been read.
using RecoveredRecordFn = absl::FunctionRef<absl::Status(
    uint32_t partition, uint64_t lsn, absl::string_view transition,
    const std::shared_ptr<const std::string>& buffer)>;

// Reads the log segments of dir from options.first_seq on, in order, and
// passes every record above its partition's after_lsn to apply.
//
// Segments must be numbered consecutively from first_seq; within each
// partition, LSNs above after_lsn must follow on from after_lsn (or the
// partition's previous record) without a gap. A group's pieces lie in one
// flush, so in one segment: a group that is incomplete where the log ends
// was being written when the writer died, and recovery ends the log just
// before its first piece (or before the first piece of an earlier group of
// the same flush whose pieces interleave with it, so that no complete
// group is cut in two), as it does for a torn final record (damage in
// the last segment with nothing valid after it). Either is cut off (read
// only: skipped) and reported in notes; a torn header on the last segment
// removes the segment. Any other damage, gap or incomplete group is
// kDataLoss naming the file and offset, unless salvaging (see
// LogRecoveryOptions). An error from apply is returned as is.
//
// before_change runs before recovery changes a file (cuts a torn tail,
// removes a torn header, salvages) once records have gone to apply; an
// error from it is returned as is and nothing is changed. It lets a caller
// that applies records asynchronously finish them first, so that a record
// that fails to apply stops recovery before any file is touched.
absl::StatusOr<RecoveryResult> RecoverLog(
    Env* env, const std::string& dir, const LogRecoveryOptions& options,
    RecoveredRecordFn apply, absl::FunctionRef<absl::Status()> before_change);

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_LOG_RECOVERY_H_
