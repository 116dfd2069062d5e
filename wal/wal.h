#ifndef TASKWAL_WAL_WAL_H_
#define TASKWAL_WAL_WAL_H_

#include <atomic>
#include <cstdint>
#include <functional>
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
#include "api/env.h"

namespace taskwal::wal {

// When Sync(lsn) returns, relative to the record at lsn (see
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
  size_t buffer_bytes = 1 << 20;      // kNone: write when this much is staged.
};

// A segment found by recovery.
struct SegmentFile {
  std::string name;  // wal-<first lsn, 20 digits>.log
  uint64_t first_lsn = 0;
};

// What recovery found and did.
struct RecoveryResult {
  std::vector<SegmentFile> segments;  // Valid segments, oldest first.
  uint64_t last_lsn = 0;              // Last valid record (or after_lsn).
  uint64_t records_replayed = 0;      // Records passed to the callback.
  uint64_t truncated_bytes = 0;       // Torn tail (or salvage) cut off.
  std::vector<std::string> notes;     // What was repaired, for the report.
};

// Segment file name for a first LSN, and the inverse (false if not one).
std::string SegmentFileName(uint64_t first_lsn);
bool ParseSegmentFileName(absl::string_view name, uint64_t* first_lsn);

// Reads every segment in dir in LSN order and calls apply(lsn, payload) for
// each record with lsn > after_lsn. LSNs must be contiguous from the first
// segment on; the first record after after_lsn must be after_lsn + 1.
//
// A torn final record (damage in the last segment with no valid record after
// it) is cut off and reported in notes. Any other damage, a gap in LSNs, or a
// missing segment is kDataLoss naming the file and offset, unless `salvage`
// is set: then the valid prefix is kept, the damaged segment is truncated
// there, later segments are renamed to <name>.salvaged, and notes say so.
// An error from apply is returned as is.
//
// With read_only, nothing is changed: a torn tail or torn header is skipped
// (and noted) instead of being cut or removed, and salvage must be false.
//
// before_change runs before recovery changes a file (cuts a torn tail,
// removes a torn header, salvages) once records have gone to apply; an
// error from it is returned as is and nothing is changed. It lets a caller
// that applies records asynchronously finish them first, so that a record
// that fails to apply stops recovery before any file is touched.
absl::StatusOr<RecoveryResult> RecoverLog(
    Env* env, const std::string& dir, uint64_t after_lsn, bool salvage,
    bool read_only,
    absl::FunctionRef<absl::Status(uint64_t lsn, absl::string_view payload)>
        apply,
    absl::FunctionRef<absl::Status()> before_change);
// As above, for an apply that is done when it returns.
absl::StatusOr<RecoveryResult> RecoverLog(
    Env* env, const std::string& dir, uint64_t after_lsn, bool salvage,
    bool read_only,
    absl::FunctionRef<absl::Status(uint64_t lsn, absl::string_view payload)>
        apply);

// Counters for metrics; read with relaxed loads.
struct WalStats {
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> flushes{0};          // Writes of staged batches.
  std::atomic<uint64_t> records_flushed{0};  // Sum of batch sizes.
};

// The append side of the write-ahead log: records staged by Append are
// written (and synced) in batches for everyone waiting at that moment (group
// commit). When no flush is running, the caller of Sync runs one itself (the
// leader), so a lone caller pays no thread hand-off. When a flush ends with
// callers still waiting for a later one, the log's flusher thread takes over
// and flushes back to back until no one waits. Callers covered by the same
// flush sleep on one futex word and are released by one wake-up.
//
// Thread safety: Append needs external serialization (the engine's commit
// lock: it defines LSN order). Sync, Close, DiscardThrough and the accessors
// are safe for concurrent use. An I/O error is sticky: every later call
// returns it.
//
// Lock order: mu_ before io_mu_; never the other way.
class Wal {
 public:
  // Starts a new segment after `last_lsn` (what recovery found). The
  // segment and its directory entry are durable before Open returns.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(
      const WalOptions& options, std::vector<SegmentFile> segments,
      uint64_t last_lsn);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Stages a record of payload_size bytes, filled by fill(dst), and returns
  // its LSN. kInvalidArgument if payload_size exceeds kMaxRecordBytes
  // (nothing is staged and the error is not sticky).
  absl::StatusOr<uint64_t> Append(size_t payload_size,
                                  absl::FunctionRef<void(char*)> fill)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Returns once the record at lsn is as durable as the sync mode promises.
  absl::Status Sync(uint64_t lsn) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes and fdatasyncs everything staged, whatever the mode.
  absl::Status SyncAll() ABSL_LOCKS_EXCLUDED(mu_);

  // Ends the active segment before anything more is written to it: the
  // next flush syncs and closes it, then starts a new segment and writes
  // its whole batch there. So every record written before this call lies
  // in segments that a snapshot taken at this point covers whole (and that
  // recovery from it does not read); records still staged at the call go
  // to the new segment with later ones. No-op for an active segment with
  // no record.
  void RequestRotation() ABSL_LOCKS_EXCLUDED(mu_);

  // Removes segments whose records all have LSN <= lsn (never the segment
  // being written), then syncs the directory.
  absl::Status DiscardThrough(uint64_t lsn) ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  // Flushes and syncs, stops the background threads, closes the segment.
  // Removes the active segment if no record went into it. Idempotent: a
  // later or concurrent call waits for the first to finish and returns its
  // result.
  absl::Status Close() ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  uint64_t last_lsn() const ABSL_LOCKS_EXCLUDED(mu_);
  const WalStats& stats() const { return stats_; }

 private:
  explicit Wal(const WalOptions& options);

  // Runs flush number flush_gen_ + 1: one write (and, if sync or a waiter
  // of it needs one, one fdatasync) of everything staged, with mu_ released
  // during the I/O and held again on return. Updates the watermarks (or
  // sticky_) and advances the flush's futex word, whose waiters the caller
  // then wakes with WakeAfterFlush. REQUIRES: leader_active_, held by the
  // caller.
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
  bool CoveredLocked(uint64_t lsn, bool sync) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (sync ? synced_lsn_ : written_lsn_).load(
               std::memory_order_relaxed) >= lsn;
  }
  // Returns once the record at lsn is written (and if sync, fdatasynced):
  // leads a flush if none is running, else sleeps on the futex word of the
  // flush that will cover the record. Releases mu_.
  absl::Status WaitFor(uint64_t lsn, bool sync) ABSL_UNLOCK_FUNCTION(mu_);
  void FlusherLoop();
  absl::Status StartSegmentLocked(uint64_t first_lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  void IntervalLoop();

  const WalOptions options_;
  WalStats stats_;

  mutable absl::Mutex mu_;
  std::string staged_ ABSL_GUARDED_BY(mu_);
  std::string spare_ ABSL_GUARDED_BY(mu_);  // Recycled buffer capacity.
  uint64_t last_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t staged_records_ ABSL_GUARDED_BY(mu_) = 0;
  // Watermarks: written to the OS / fdatasynced through this LSN. Stored
  // under mu_; a woken waiter reads them without it.
  std::atomic<uint64_t> written_lsn_{0};
  std::atomic<uint64_t> synced_lsn_{0};
  // A leader (a caller, the interval thread or the flusher thread) is
  // running a flush or about to.
  bool leader_active_ ABSL_GUARDED_BY(mu_) = false;
  // Flushes started; the running one, if flushing_, is number flush_gen_.
  uint64_t flush_gen_ ABSL_GUARDED_BY(mu_) = 0;
  bool flushing_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t inflight_target_ ABSL_GUARDED_BY(mu_) = 0;  // Its last LSN.
  bool inflight_sync_ ABSL_GUARDED_BY(mu_) = false;     // It fdatasyncs.
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
  bool rotation_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool flusher_stop_ ABSL_GUARDED_BY(mu_) = false;
  // Signalled when FlusherHasWork() becomes true. A CondVar, not
  // mu_.Await: a thread blocked in Await makes every mu_.Unlock take the
  // slow path to re-evaluate its condition (about 5% of kNone's CPU).
  absl::CondVar flusher_cv_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // No more Append.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The result of the Close that closed, for any other caller of Close,
  // which waits for close_done_.
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  absl::Notification close_done_;
  absl::Status sticky_ ABSL_GUARDED_BY(mu_);

  // The file being written; touched only by the leader.
  absl::Mutex io_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::vector<SegmentFile> segments_ ABSL_GUARDED_BY(io_mu_);
  std::unique_ptr<WritableFile> file_ ABSL_GUARDED_BY(io_mu_);
  uint64_t segment_size_ ABSL_GUARDED_BY(io_mu_) = 0;
  bool segment_has_records_ ABSL_GUARDED_BY(io_mu_) = false;
  bool segment_synced_ ABSL_GUARDED_BY(io_mu_) = true;

  absl::once_flag stop_once_;
  absl::Notification stop_;
  std::thread interval_thread_;
  std::thread flusher_thread_;  // Joined by the Close that closes.
};

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_WAL_H_
