#ifndef TASKWAL_WAL_WAL_H_
#define TASKWAL_WAL_WAL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "taskwal/env.h"
#include "wal/data_dir.h"
#include "wal/format.h"

namespace taskwal::wal {

// When Sync returns, relative to the records it waits for (see
// wal/log_format.md for what each mode survives).
enum class WalSync {
  kAlways,    // fdatasync'ed; concurrent callers share one fdatasync.
  kInterval,  // written to the OS; a background fdatasync every interval.
  kNone,      // buffered in memory; written when the buffer fills.
};

struct WalOptions {
  Env* env = nullptr;  // Not owned; outlives the Wal.
  std::string dir;
  WalSync sync = WalSync::kAlways;
  absl::Duration sync_interval = absl::Milliseconds(10);
  uint64_t segment_bytes = 64 << 20;  // Rotate after a segment reaches this.
  // kNone: write once this much is staged (in all partitions together,
  // approximately: a partition's share is buffer_bytes / partitions, at
  // least 64 KiB).
  size_t buffer_bytes = 1 << 20;
  // Independent record sequences (lanes), each with its own LSNs from 1.
  // In [1, kMaxPartitions].
  uint32_t partitions = 1;
};

// A record of one partition: the unit Sync waits for.
struct PartitionLsn {
  uint32_t partition = 0;
  uint64_t lsn = 0;
};

// Counters for metrics; read with relaxed loads.
struct WalStats {
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> flushes{0};          // Writes of staged batches.
  std::atomic<uint64_t> records_flushed{0};  // Sum of batch sizes.
};

// The append side of the write-ahead log, shared by every partition.
//
// Each partition stages its records in a lane of its own, under a lock of
// its own, so partitions never wait for one another to append. One flush
// takes what every lane has staged, all lanes at one instant (a consistent
// cut: a record staged before another, in any lanes, is never written in a
// later flush than it), writes it in one write, and (per the sync mode)
// covers it with one fdatasync: group commit across partitions. The cut
// holds the locks of the lanes with staged records at once, found from a
// bitmap that an append sets when it stages into an empty lane; it re-reads
// the bitmap under those locks and starts over with a larger set if a lane
// became non-empty meanwhile, so every other lane is empty at that instant.
// When no flush is running, the caller of Sync runs one itself (the leader), so
// a lone caller pays no thread hand-off. When a flush ends with callers still
// waiting for a later one, the log's flusher thread takes over and flushes
// back to back until no one waits. Callers covered by the same flush sleep
// on one futex word and are released by one wake-up.
//
// A transition that spans partitions is staged with AppendGroup: one piece
// per partition, staged with all their lanes locked, so every flush holds
// all of a group's pieces or none of them (recovery relies on it, see
// wal/log_recovery.h).
//
// Thread safety: Append for one partition needs external serialization (the
// partition's commit lock: it defines the partition's LSN order), as does
// AppendGroup against Appends to any of its partitions. Everything else is
// safe for concurrent use. An I/O error is sticky: every later call returns
// it.
//
// Lock order: mu_, then io_mu_, then lane locks in ascending partition
// order. Append takes only its lane's lock.
class Wal {
 public:
  // Opens the log after what recovery found: `segments` (oldest first) and,
  // per partition, the last LSN (last_lsn.size() must be
  // options.partitions).
  //
  // It goes on appending to the last segment when the caller says it may:
  // `tail_bytes` is that segment's length as recovery validated it (whole
  // records and nothing after them), and the segment is continued if it
  // directly precedes next_seq, is still exactly that long, and is shorter
  // than options.segment_bytes. So a process that opens the log, writes a
  // little and closes it (the CLI) does not leave a segment behind each
  // time. The caller passes 0 when the segment must not be continued: it
  // was not read, or a snapshot names a later segment as where its log
  // starts (records there would be skipped).
  //
  // Otherwise it starts segment next_seq, and segments numbered between the
  // last of `segments` and next_seq are created empty, so the numbering has
  // no gap. Either way the segments, their directory entries and the
  // records recovery found in them are durable before Open returns.
  // REQUIRES: next_seq is above every segment in `segments`.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(
      const WalOptions& options, std::vector<SegmentFile> segments,
      std::vector<uint64_t> last_lsn, uint64_t next_seq,
      uint64_t tail_bytes = 0);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Stages a record of payload_size bytes in `partition`, filled by
  // fill(dst), and returns its LSN there.
  //   kInvalidArgument: payload_size exceeds kMaxRecordBytes or partition
  //     is out of range (nothing is staged and the error is not sticky).
  //   kFailedPrecondition: the log is closing or closed.
  //   other codes: the sticky I/O error.
  absl::StatusOr<uint64_t> Append(uint32_t partition, size_t payload_size,
                                  absl::FunctionRef<void(char*)> fill);

  // One piece of a group: a transition's part in one partition.
  struct GroupPiece {
    uint32_t partition;
    size_t payload_size;
    absl::FunctionRef<void(char*)> fill;
  };
  // Stages a group of at least two pieces in distinct partitions, given in
  // ascending partition order, as kGroupTransition records; lsns[i]
  // receives pieces[i]'s LSN. Errors as Append; on error nothing is staged.
  // (Its lanes' locks are a set chosen at run time, which the analysis
  // cannot follow.)
  absl::Status AppendGroup(absl::Span<const GroupPiece> pieces,
                           uint64_t* lsns) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // Returns once every record named is as durable as the sync mode
  // promises. kInvalidArgument: an LSN not yet appended.
  absl::Status Sync(absl::Span<const PartitionLsn> records)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Sync(uint32_t partition, uint64_t lsn) ABSL_LOCKS_EXCLUDED(mu_) {
    const PartitionLsn record{partition, lsn};
    return Sync(absl::MakeConstSpan(&record, 1));
  }

  // Writes and fdatasyncs everything staged, whatever the mode.
  absl::Status SyncAll() ABSL_LOCKS_EXCLUDED(mu_);

  // Ends the active segment before anything more is written to it, and
  // returns the sequence number of the segment the next flush starts (it
  // syncs and closes the active one first). Every record appended after
  // this call lies in that segment or a later one; records staged at the
  // call go there too.
  uint64_t RequestRotation() ABSL_LOCKS_EXCLUDED(mu_);
  // RequestRotation, then waits until a flush has run it (leading one if
  // none is running), so the returned segment exists and a later call
  // returns a higher number. Errors are sticky.
  absl::StatusOr<uint64_t> Rotate() ABSL_LOCKS_EXCLUDED(mu_);

  // Removes segments numbered below seq (never the one being written),
  // then syncs the directory.
  absl::Status DiscardBefore(uint64_t seq) ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  // Flushes and syncs, stops the background threads, closes the segment.
  // Removes the active segment if no record went into it. Idempotent: a
  // later or concurrent call waits for the first to finish and returns its
  // result.
  absl::Status Close() ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  // The last LSN staged in partition (0: none).
  uint64_t last_lsn(uint32_t partition) const;
  // Records staged since the data began (the sum of every partition's last
  // LSN).
  uint64_t records() const;
  // The sticky error once a write or fdatasync failed (also one that no
  // caller waited for, in the interval thread); OK before. Lock-free.
  absl::Status Failure() const {
    return failed_.load(std::memory_order_acquire) ? sticky_copy_
                                                   : absl::OkStatus();
  }
  uint32_t partitions() const { return options_.partitions; }
  const WalStats& stats() const { return stats_; }

 private:
  // A partition's staging area. Aligned so lanes share no cache line.
  struct alignas(64) Lane {
    absl::Mutex mu;
    std::string staged ABSL_GUARDED_BY(mu);
    uint64_t last_lsn ABSL_GUARDED_BY(mu) = 0;
    uint64_t staged_records ABSL_GUARDED_BY(mu) = 0;
    // Mirrors for readers that do not take mu.
    std::atomic<uint64_t> appended_lsn{0};
    std::atomic<size_t> staged_bytes{0};
    // The last LSN taken by the running (or last) flush; set at its cut.
    uint64_t cut_lsn = 0;  // Guarded by Wal::mu_.
    // Watermarks: written to the OS / fdatasynced through this LSN. Stored
    // under Wal::mu_; readers load them without it.
    std::atomic<uint64_t> written_lsn{0};
    std::atomic<uint64_t> synced_lsn{0};
  };

  explicit Wal(const WalOptions& options);

  // Checks an Append is possible; the error, if not.
  absl::Status AppendAllowed() const;
  // Locks (ascending) every lane with staged records, as of one instant:
  // when it returns, no other lane has any (see the class comment). The
  // lanes locked are in *locked.
  void LockStagedLanes(std::vector<uint32_t>* locked)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Writes one record into lane `partition`'s buffer.
  uint64_t StageLocked(Lane& lane, uint32_t partition, uint8_t type,
                       absl::string_view group_header, size_t payload_size,
                       absl::FunctionRef<void(char*)> fill)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lane.mu);
  // The cut (see the class comment): takes every staged lane's buffer into
  // cut_ and notes the lanes in taken_; returns the records taken. The
  // analysis cannot follow the set of lane locks chosen at run time.
  uint64_t CutStagedLanesLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, io_mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // Runs flush number flush_gen_ + 1: a cut of every lane, one write (and,
  // if sync or a waiter of it needs one, one fdatasync) of what it took,
  // with mu_ released during the I/O and held again on return. Updates the
  // watermarks (or sticky_) and advances the flush's futex word, whose
  // waiters the caller then wakes with WakeAfterFlush. REQUIRES:
  // leader_active_, held by the caller.
  absl::Status FlushOnceLocked(bool sync) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs one flush as the leader, then either hands leadership to the
  // flusher thread (callers wait for a later flush) or gives it up, and
  // wakes the flush's waiters after releasing mu_. Returns the flush's own
  // I/O status. REQUIRES: the caller set leader_active_.
  absl::Status LeadLocked(bool sync) ABSL_UNLOCK_FUNCTION(mu_);
  // Wakes every caller sleeping on flush `gen`'s word (and, after an error,
  // on the next one's too).
  void WakeAfterFlush(uint64_t gen, bool failed);
  bool NoLeader() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !leader_active_;
  }
  bool FlusherHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return flusher_assigned_ || flusher_stop_;
  }
  // Whether every record is written (and if sync, fdatasynced).
  bool Covered(absl::Span<const PartitionLsn> records, bool sync) const;
  // Whether the running flush took every record.
  bool TakenByRunningFlushLocked(absl::Span<const PartitionLsn> records) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns once the records are written (and if sync, fdatasynced): leads
  // a flush if none is running, else sleeps on the futex word of the flush
  // that will cover them. Releases mu_.
  absl::Status WaitFor(absl::Span<const PartitionLsn> records, bool sync)
      ABSL_UNLOCK_FUNCTION(mu_);
  // Every partition's last appended LSN.
  std::vector<PartitionLsn> AllAppended() const;
  void FlusherLoop();
  absl::Status StartSegmentLocked(uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void IntervalLoop();

  const WalOptions options_;
  // kNone: a lane past this many staged bytes triggers a flush.
  const size_t lane_buffer_bytes_;
  WalStats stats_;
  const std::unique_ptr<Lane[]> lanes_;

  // Bit p is set while lane p has staged records: set (release) by the
  // append that stages into an empty lane, cleared by the cut that takes
  // its records, both under the lane's lock. A cut locks only these lanes.
  static constexpr size_t kDirtyWords = (kMaxPartitions + 63) / 64;
  std::atomic<uint64_t> dirty_[kDirtyWords] = {};

  // Append fails from here on (closing or closed), without taking mu_.
  std::atomic<bool> closing_{false};
  // sticky_ is set; appenders read this instead of taking mu_.
  std::atomic<bool> failed_{false};
  // A copy of sticky_, written once (under mu_) before failed_ is set and
  // never after, so whoever sees failed_ may read it without a lock.
  absl::Status sticky_copy_;

  mutable absl::Mutex mu_;
  // The segment the running (or last) flush writes to; the next flush
  // starts segment active_seq_ + 1 first if rotation_requested_.
  uint64_t active_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool rotation_requested_ ABSL_GUARDED_BY(mu_) = false;
  // A leader (a caller, the interval thread or the flusher thread) is
  // running a flush or about to.
  bool leader_active_ ABSL_GUARDED_BY(mu_) = false;
  // Flushes started; the running one, if flushing_, is number flush_gen_.
  uint64_t flush_gen_ ABSL_GUARDED_BY(mu_) = 0;
  bool flushing_ ABSL_GUARDED_BY(mu_) = false;
  bool inflight_sync_ ABSL_GUARDED_BY(mu_) = false;  // It fdatasyncs.
  // Callers waiting for flush flush_gen_ + 1, and whether one needs it to
  // fdatasync.
  uint64_t next_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  bool next_sync_ ABSL_GUARDED_BY(mu_) = false;
  // Callers of flush g sleep on gen_words_[g & 1] until it changes; it is
  // advanced under mu_ when flush g ends. Two words suffice: a caller only
  // ever waits for the running flush or the next one.
  std::atomic<uint32_t> gen_words_[2] = {0, 0};
  // The flusher thread: leadership handed to it, and the stop signal.
  bool flusher_assigned_ ABSL_GUARDED_BY(mu_) = false;
  bool flusher_stop_ ABSL_GUARDED_BY(mu_) = false;
  // Signalled when FlusherHasWork() becomes true. A CondVar, not
  // mu_.Await: a thread blocked in Await makes every mu_.Unlock take the
  // slow path to re-evaluate its condition.
  absl::CondVar flusher_cv_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The result of the Close that closed, for any other caller of Close,
  // which waits for close_done_.
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  absl::Notification close_done_;
  absl::Status sticky_ ABSL_GUARDED_BY(mu_);

  // The file being written and the leader's buffers; touched only by the
  // leader (and DiscardBefore, for the segment list).
  absl::Mutex io_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::vector<SegmentFile> segments_ ABSL_GUARDED_BY(io_mu_);
  std::unique_ptr<WritableFile> file_ ABSL_GUARDED_BY(io_mu_);
  uint64_t segment_size_ ABSL_GUARDED_BY(io_mu_) = 0;
  bool segment_has_records_ ABSL_GUARDED_BY(io_mu_) = false;
  bool segment_synced_ ABSL_GUARDED_BY(io_mu_) = true;
  // What a cut took from each lane (swapped with the lane's buffer, so the
  // two alternate and keep their capacity), and the pieces written.
  std::vector<std::string> cut_ ABSL_GUARDED_BY(io_mu_);
  std::vector<absl::string_view> pieces_ ABSL_GUARDED_BY(io_mu_);
  // The lanes the running (or last) flush cut. Only the leader touches it,
  // from its cut to its watermark update (under mu_, after io_mu_).
  std::vector<uint32_t> taken_;

  absl::once_flag stop_once_;
  absl::Notification stop_;
  std::thread interval_thread_;
  std::thread flusher_thread_;  // Joined by the Close that closes.
};

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_WAL_H_
