#ifndef TASKWAL_ENGINE_JOURNAL_H_
#define TASKWAL_ENGINE_JOURNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "engine/transition.pb.h"
#include "wal/wal.h"

namespace taskwal::engine {

using wal::PartitionLsn;

// The payload (absl::Status::SetPayload) of a journal error meaning another
// process now writes the journal: this one no longer leads its cluster
// (engine/jetstream_journal.h). The engine's sticky error keeps it, so a
// server can tell its callers to go elsewhere.
inline constexpr char kNotLeaderPayload[] = "taskwal.engine/not-leader";

// Log counters for Stats(); zero for a journal that writes nothing.
struct JournalStats {
  uint64_t fsyncs = 0;
  uint64_t bytes_written = 0;
  uint64_t flushes = 0;
  uint64_t records_flushed = 0;
};

// Where the engine records transitions before acknowledging them. Each
// partition has its own record sequence (LSNs 1, 2, ...): the engine calls
// Append under the partition's commit lock, in the order it applies records,
// so a partition's LSN order is its apply order; it calls Sync after
// releasing that lock, so concurrent callers, of any partitions, can share
// one sync (group commit).
//
// Everything the engine needs from its journal is here; the engine never
// looks behind it.
class Journal {
 public:
  virtual ~Journal() = default;

  // The number of partitions (record sequences).
  virtual uint32_t partitions() const = 0;

  // Assigns the partition's next LSN and stages the record. Not yet
  // durable. REQUIRES: calls for one partition are serialized by the
  // caller. kInvalidArgument (not sticky, nothing staged): the record is
  // too large.
  virtual absl::StatusOr<uint64_t> Append(uint32_t partition,
                                          const Transition& record) = 0;

  // Stages one record in each of `partitions` (ascending, distinct, at
  // least two) as one group: after a crash, recovery finds all of them or
  // none. lsns[i] receives records[i]'s LSN. REQUIRES: the caller
  // serializes this against Append on each of the partitions. Errors as
  // Append; on error nothing is staged.
  virtual absl::Status AppendGroup(absl::Span<const uint32_t> partitions,
                                   absl::Span<const Transition* const> records,
                                   uint64_t* lsns) = 0;

  // Returns once every record named is as durable as the journal promises.
  // Safe for concurrent use. An error is sticky: every later Append and
  // Sync fails with it.
  virtual absl::Status Sync(absl::Span<const PartitionLsn> records) = 0;
  absl::Status Sync(uint32_t partition, uint64_t lsn) {
    const PartitionLsn record{partition, lsn};
    return Sync(absl::MakeConstSpan(&record, 1));
  }

  // Makes every staged record durable (written and fdatasynced), whatever
  // the journal's sync mode. Errors are sticky as for Sync.
  virtual absl::Status SyncAll() = 0;

  // For a snapshot: ends the log segment being written and returns the
  // number of the segment every record appended after this call will lie
  // in (or a later one); a journal without segments returns 0. Errors are
  // sticky.
  virtual absl::StatusOr<uint64_t> StartSegment() = 0;

  // Drops the log segments numbered below first_segment: snapshots hold
  // everything they had. No-op without segments.
  virtual absl::Status DiscardBefore(uint64_t first_segment) = 0;

  // Records appended since the data began, all partitions together.
  virtual uint64_t records() const = 0;

  virtual JournalStats stats() const = 0;

  // A failure the journal met on its own, with no caller waiting (a
  // background fdatasync in kInterval mode): every later Sync returns it.
  // OK if there is none. Never blocks.
  virtual absl::Status Failure() const { return absl::OkStatus(); }

  // Flushes what was staged. Later calls fail with kFailedPrecondition.
  virtual absl::Status Close() = 0;
};

// A journal that keeps serialized records in memory: the engine's journal
// when it has no data directory, and a recorder that tests replay from.
// Safe for concurrent use.
class MemoryJournal final : public Journal {
 public:
  // REQUIRES: partitions >= 1.
  explicit MemoryJournal(uint32_t partitions = 1)
      : partitions_(partitions), records_(partitions) {}

  uint32_t partitions() const override { return partitions_; }
  absl::StatusOr<uint64_t> Append(uint32_t partition,
                                  const Transition& record) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status AppendGroup(absl::Span<const uint32_t> partitions,
                           absl::Span<const Transition* const> records,
                           uint64_t* lsns) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Sync(absl::Span<const PartitionLsn> records) override
      ABSL_LOCKS_EXCLUDED(mu_);
  using Journal::Sync;
  absl::Status SyncAll() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<uint64_t> StartSegment() override { return 0; }
  absl::Status DiscardBefore(uint64_t) override { return absl::OkStatus(); }
  uint64_t records() const override ABSL_LOCKS_EXCLUDED(mu_);
  JournalStats stats() const override { return JournalStats(); }
  absl::Status Close() override ABSL_LOCKS_EXCLUDED(mu_);

  // Serialized records of a partition, LSN i at index i - 1.
  std::vector<std::string> Records(uint32_t partition = 0) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const uint32_t partitions_;
  mutable absl::Mutex mu_;
  // One vector per partition; their number never changes.
  std::vector<std::vector<std::string>> records_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_JOURNAL_H_
