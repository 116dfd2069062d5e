#include "wal/wal.h"

#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wal/coding.h"
#include "wal/format.h"
#include "wal/futex.h"
#include "wal/log_writer.h"
#include "wal/status_macros.h"

namespace taskwal::wal {

namespace {

constexpr absl::string_view kTempSuffix = ".tmp";
// kNone: the least a lane stages before it asks for a write.
constexpr size_t kMinLaneBufferBytes = 64 << 10;

absl::Status Closed() { return absl::FailedPreconditionError("log is closed"); }

}  // namespace

Wal::Wal(const WalOptions& options)
    : options_(options),
      lane_buffer_bytes_(std::max<size_t>(
          kMinLaneBufferBytes,
          options.buffer_bytes / std::max<uint32_t>(1, options.partitions))),
      lanes_(new Lane[std::max<uint32_t>(1, options.partitions)]) {}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(
    const WalOptions& options, std::vector<SegmentFile> segments,
    std::vector<uint64_t> last_lsn, uint64_t next_seq, uint64_t tail_bytes) {
  if (options.env == nullptr || options.dir.empty()) {
    return absl::InvalidArgumentError("Wal needs an env and a directory");
  }
  if (options.partitions < 1 || options.partitions > kMaxPartitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("partitions must be in [1, ", kMaxPartitions, "]"));
  }
  if (last_lsn.size() != options.partitions) {
    return absl::InvalidArgumentError(
        "Wal::Open needs one last LSN per partition");
  }
  if (next_seq == 0 || (!segments.empty() && next_seq <= segments.back().seq)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Wal::Open: segment ", next_seq, " does not follow the existing ones"));
  }
  std::unique_ptr<Wal> wal(new Wal(options));
  for (uint32_t i = 0; i < options.partitions; ++i) {
    Lane& lane = wal->lanes_[i];
    absl::MutexLock l(&lane.mu);
    lane.last_lsn = last_lsn[i];
    lane.appended_lsn.store(last_lsn[i], std::memory_order_relaxed);
    lane.written_lsn.store(last_lsn[i], std::memory_order_relaxed);
    lane.synced_lsn.store(last_lsn[i], std::memory_order_relaxed);
    lane.cut_lsn = last_lsn[i];
  }
  std::unique_ptr<WritableFile> tail;
  if (!segments.empty()) {
    // Recovery may have replayed records that reached the OS but were never
    // fdatasynced (the process died before its sync). New records will be
    // acknowledged on top of them, so they must be durable first; earlier
    // segments were synced when they were rotated.
    const std::string last = JoinPath(options.dir, segments.back().name);
    TASKWAL_ASSIGN_OR_RETURN(tail, options.env->NewAppendableFile(last));
    TASKWAL_RETURN_IF_ERROR(tail->Sync());
    bool resume = tail_bytes >= kFileHeaderSize &&
                  tail_bytes < options.segment_bytes &&
                  segments.back().seq + 1 == next_seq;
    if (resume) {
      // Exactly what recovery validated, so new records follow whole ones.
      TASKWAL_ASSIGN_OR_RETURN(uint64_t size, options.env->GetFileSize(last));
      resume = size == tail_bytes;
    }
    if (!resume) {
      TASKWAL_RETURN_IF_ERROR(tail->Close());
      tail.reset();
    }
  }
  uint64_t active_seq = next_seq;
  {
    absl::MutexLock io(&wal->io_mu_);
    wal->cut_.resize(options.partitions);
    if (tail != nullptr) {
      active_seq = segments.back().seq;
      wal->segments_ = std::move(segments);
      wal->file_ = std::move(tail);
      wal->segment_size_ = tail_bytes;
      wal->segment_has_records_ = tail_bytes > kFileHeaderSize;
      wal->segment_synced_ = true;
    } else {
      const uint64_t first_new =
          segments.empty() ? next_seq : segments.back().seq + 1;
      wal->segments_ = std::move(segments);
      // Segments numbered between the last one and next_seq (a snapshot
      // named a segment that no longer exists, after a salvage set the log
      // after it aside) are started empty: the numbering recovery reads
      // stays without a gap.
      for (uint64_t seq = first_new; seq <= next_seq; ++seq) {
        TASKWAL_RETURN_IF_ERROR(wal->StartSegmentLocked(seq));
        if (seq < next_seq) TASKWAL_RETURN_IF_ERROR(wal->file_->Close());
      }
    }
  }
  {
    absl::MutexLock l(&wal->mu_);
    wal->active_seq_ = active_seq;
  }
  Wal* raw = wal.get();
  try {
    wal->flusher_thread_ = std::thread([raw] { raw->FlusherLoop(); });
    if (options.sync == WalSync::kInterval) {
      wal->interval_thread_ = std::thread([raw] { raw->IntervalLoop(); });
    }
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start the log's threads: ", e.what()));
  }
  return wal;
}

Wal::~Wal() { Close().IgnoreError(); }

absl::Status Wal::StartSegmentLocked(uint64_t seq) {
  const std::string name = SegmentFileName(seq);
  const std::string path = JoinPath(options_.dir, name);
  // A segment with this name can only be an earlier, empty one: replace it.
  segments_.erase(
      std::remove_if(segments_.begin(), segments_.end(),
                     [&](const SegmentFile& s) { return s.seq >= seq; }),
      segments_.end());
  // The header is made durable under a temporary name and then renamed, so
  // the segment's name never points at a partial header, even if another
  // directory sync (a snapshot's) makes the name durable early.
  const std::string tmp_path = absl::StrCat(path, kTempSuffix);
  {
    TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> tmp,
                             options_.env->NewWritableFile(tmp_path));
    TASKWAL_RETURN_IF_ERROR(tmp->Append(EncodeFileHeader(kSegmentMagic, seq)));
    TASKWAL_RETURN_IF_ERROR(tmp->Sync());
    TASKWAL_RETURN_IF_ERROR(tmp->Close());
  }
  TASKWAL_RETURN_IF_ERROR(options_.env->RenameFile(tmp_path, path));
  // The new name must survive a crash before any record in it is
  // acknowledged.
  TASKWAL_RETURN_IF_ERROR(options_.env->SyncDir(options_.dir));
  TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                           options_.env->NewAppendableFile(path));
  stats_.fsyncs.fetch_add(2, std::memory_order_relaxed);
  segments_.push_back(SegmentFile{name, seq});
  file_ = std::move(file);
  segment_size_ = kFileHeaderSize;
  segment_has_records_ = false;
  segment_synced_ = true;
  return absl::OkStatus();
}

absl::Status Wal::AppendAllowed() const {
  if (failed_.load(std::memory_order_acquire)) {
    // Set once, before failed_ was published; never changed after.
    return sticky_copy_;
  }
  if (closing_.load(std::memory_order_acquire)) return Closed();
  return absl::OkStatus();
}

uint64_t Wal::StageLocked(Lane& lane, uint32_t partition, uint8_t type,
                          absl::string_view group_header, size_t payload_size,
                          absl::FunctionRef<void(char*)> fill) {
  if (lane.staged.empty()) {
    // Before the record exists, under the lane's lock: whatever is staged
    // after this record, in any lane, happens after the bit is set.
    dirty_[partition / 64].fetch_or(uint64_t{1} << (partition % 64),
                                    std::memory_order_release);
  }
  const uint64_t lsn = lane.last_lsn + 1;
  const size_t offset = lane.staged.size();
  char* dst =
      AppendRecordHeader(static_cast<RecordType>(type), partition, lsn,
                         group_header.size() + payload_size, &lane.staged);
  if (!group_header.empty()) {
    std::memcpy(dst, group_header.data(), group_header.size());
  }
  fill(dst + group_header.size());
  SealRecord(&lane.staged, offset);
  lane.last_lsn = lsn;
  ++lane.staged_records;
  lane.appended_lsn.store(lsn, std::memory_order_release);
  lane.staged_bytes.store(lane.staged.size(), std::memory_order_relaxed);
  return lsn;
}

absl::StatusOr<uint64_t> Wal::Append(uint32_t partition, size_t payload_size,
                                     absl::FunctionRef<void(char*)> fill) {
  if (partition >= options_.partitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", partition, " is out of range (",
                     options_.partitions, " partitions)"));
  }
  if (payload_size > kMaxRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("record of ", payload_size, " bytes exceeds the limit of ",
                     kMaxRecordBytes));
  }
  Lane& lane = lanes_[partition];
  absl::MutexLock l(&lane.mu);
  TASKWAL_RETURN_IF_ERROR(AppendAllowed());
  return StageLocked(lane, partition,
                     static_cast<uint8_t>(RecordType::kTransition), {},
                     payload_size, fill);
}

absl::Status Wal::AppendGroup(absl::Span<const GroupPiece> pieces,
                              uint64_t* lsns) {
  if (pieces.size() < 2 || pieces.size() > options_.partitions) {
    return absl::InvalidArgumentError(
        "a group needs at least two pieces in distinct partitions");
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].partition >= options_.partitions ||
        (i > 0 && pieces[i].partition <= pieces[i - 1].partition)) {
      return absl::InvalidArgumentError(
          "group pieces must be in ascending, distinct partitions in range");
    }
    if (pieces[i].payload_size > kMaxRecordBytes - kGroupHeaderSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("record of ", pieces[i].payload_size + kGroupHeaderSize,
                       " bytes exceeds the limit of ", kMaxRecordBytes));
    }
  }
  // Every lane of the group is locked at once, in ascending order (as a cut
  // locks them), so no cut falls between two pieces.
  for (const GroupPiece& piece : pieces) lanes_[piece.partition].mu.Lock();
  absl::Status allowed = AppendAllowed();
  if (allowed.ok()) {
    char header[kGroupHeaderSize];
    const uint32_t leader = pieces.front().partition;
    EncodeGroupHeader(static_cast<uint32_t>(pieces.size()), leader,
                      lanes_[leader].last_lsn + 1, header);
    for (size_t i = 0; i < pieces.size(); ++i) {
      lsns[i] = StageLocked(lanes_[pieces[i].partition], pieces[i].partition,
                            static_cast<uint8_t>(RecordType::kGroupTransition),
                            absl::string_view(header, sizeof(header)),
                            pieces[i].payload_size, pieces[i].fill);
    }
  }
  for (size_t i = pieces.size(); i-- > 0;) {
    lanes_[pieces[i].partition].mu.Unlock();
  }
  return allowed;
}

void Wal::LockStagedLanes(std::vector<uint32_t>* locked) {
  const size_t words = (options_.partitions + 63) / 64;
  uint64_t want[kDirtyWords] = {};
  for (size_t w = 0; w < words; ++w) {
    want[w] = dirty_[w].load(std::memory_order_acquire);
  }
  while (true) {
    locked->clear();
    for (size_t w = 0; w < words; ++w) {
      for (uint64_t bits = want[w]; bits != 0; bits &= bits - 1) {
        locked->push_back(
            static_cast<uint32_t>(64 * w + __builtin_ctzll(bits)));
      }
    }
    for (uint32_t i : *locked) lanes_[i].mu.Lock();
    // A lane that became non-empty before any of these locks was taken has
    // its bit set by now (it is set under the lane's lock, before the
    // record can be seen by anyone): with no new bit, every lane outside
    // the set is empty at this instant, and the set is a consistent cut.
    bool grew = false;
    for (size_t w = 0; w < words; ++w) {
      const uint64_t now = dirty_[w].load(std::memory_order_acquire);
      grew = grew || (now & ~want[w]) != 0;
      want[w] |= now;
    }
    if (!grew) return;
    for (size_t k = locked->size(); k-- > 0;) {
      lanes_[(*locked)[k]].mu.Unlock();
    }
  }
}

uint64_t Wal::CutStagedLanesLocked() {
  // Every lane with staged records, at one instant (see the class
  // comment). The other lanes' cut_lsn already equals their last_lsn.
  uint64_t records = 0;
  LockStagedLanes(&taken_);
  for (uint32_t i : taken_) {
    Lane& lane = lanes_[i];
    cut_[i].swap(lane.staged);
    lane.cut_lsn = lane.last_lsn;
    records += lane.staged_records;
    lane.staged_records = 0;
    lane.staged_bytes.store(0, std::memory_order_relaxed);
    dirty_[i / 64].fetch_and(~(uint64_t{1} << (i % 64)),
                             std::memory_order_relaxed);
  }
  for (size_t k = taken_.size(); k-- > 0;) lanes_[taken_[k]].mu.Unlock();
  return records;
}

absl::Status Wal::FlushOnceLocked(bool sync) {
  ++flush_gen_;
  flushing_ = true;
  inflight_sync_ = sync || next_sync_;
  next_waiters_ = 0;
  next_sync_ = false;
  sync = inflight_sync_;
  const bool rotate_first = rotation_requested_;
  rotation_requested_ = false;
  if (rotate_first) ++active_seq_;
  const uint64_t seq = active_seq_;

  io_mu_.Lock();
  const uint64_t records = CutStagedLanesLocked();
  mu_.Unlock();

  absl::Status s;
  if (rotate_first) {
    // Everything in the segment is synced before it is closed; the batch
    // goes into the next one.
    if (!segment_synced_) {
      s = file_->Sync();
      if (s.ok()) {
        segment_synced_ = true;
        stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (s.ok()) s = file_->Close();
    if (s.ok()) s = StartSegmentLocked(seq);
  }
  // The lanes' records, one lane after the other, in one write.
  pieces_.clear();
  size_t bytes = 0;
  for (uint32_t i : taken_) {
    pieces_.push_back(cut_[i]);
    bytes += cut_[i].size();
  }
  if (s.ok() && bytes > 0) {
    s = file_->AppendAll(pieces_);
    if (s.ok()) {
      segment_size_ += bytes;
      segment_has_records_ = true;
      segment_synced_ = false;
      stats_.bytes_written.fetch_add(bytes, std::memory_order_relaxed);
      stats_.flushes.fetch_add(1, std::memory_order_relaxed);
      stats_.records_flushed.fetch_add(records, std::memory_order_relaxed);
    }
  }
  for (uint32_t i : taken_) cut_[i].clear();
  // A full segment is synced now and rotated by the next flush.
  const bool full = segment_size_ >= options_.segment_bytes;
  if (s.ok() && (sync || full) && !segment_synced_) {
    s = file_->Sync();
    if (s.ok()) {
      segment_synced_ = true;
      stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
    }
  }
  io_mu_.Unlock();

  mu_.Lock();
  flushing_ = false;
  if (full) rotation_requested_ = true;
  if (s.ok()) {
    for (uint32_t i : taken_) {
      Lane& lane = lanes_[i];
      if (lane.written_lsn.load(std::memory_order_relaxed) < lane.cut_lsn) {
        lane.written_lsn.store(lane.cut_lsn, std::memory_order_release);
      }
    }
    if (sync) {
      // The fdatasync covers earlier flushes' records too (every lane).
      for (uint32_t i = 0; i < options_.partitions; ++i) {
        Lane& lane = lanes_[i];
        if (lane.synced_lsn.load(std::memory_order_relaxed) < lane.cut_lsn) {
          lane.synced_lsn.store(lane.cut_lsn, std::memory_order_release);
        }
      }
    }
  } else if (sticky_.ok()) {
    sticky_ = s;
    sticky_copy_ = s;
    failed_.store(true, std::memory_order_release);
  }
  // Release this flush's waiters (the wake-up itself comes after mu_ is
  // released); after an error, the next flush's too: there will be none.
  gen_words_[flush_gen_ & 1].fetch_add(1, std::memory_order_release);
  if (!sticky_.ok()) {
    gen_words_[(flush_gen_ + 1) & 1].fetch_add(1, std::memory_order_release);
  }
  return s;
}

void Wal::WakeAfterFlush(uint64_t gen, bool failed) {
  FutexWakeAll(&gen_words_[gen & 1]);
  if (failed) FutexWakeAll(&gen_words_[(gen + 1) & 1]);
}

absl::Status Wal::LeadLocked(bool sync) {
  const absl::Status s = FlushOnceLocked(sync);
  const uint64_t gen = flush_gen_;
  const bool failed = !sticky_.ok();
  if (!failed && next_waiters_ > 0) {
    // Callers wait for the next flush: the flusher thread runs it, and
    // leader_active_ stays set on its behalf.
    flusher_assigned_ = true;
    flusher_cv_.Signal();
  } else {
    leader_active_ = false;
  }
  mu_.Unlock();
  WakeAfterFlush(gen, failed);
  return s;
}

void Wal::FlusherLoop() {
  absl::MutexLock l(&mu_);
  while (true) {
    while (!FlusherHasWork()) flusher_cv_.Wait(&mu_);
    if (!flusher_assigned_) return;  // Stopped.
    flusher_assigned_ = false;
    // Back to back while callers wait for a later flush: this thread is
    // already awake, where a hand-off to a waiting caller would first have
    // to wake it.
    bool more = true;
    while (more) {
      FlushOnceLocked(/*sync=*/false).IgnoreError();  // Sticky.
      const uint64_t gen = flush_gen_;
      const bool failed = !sticky_.ok();
      more = !failed && next_waiters_ > 0;
      if (!more) leader_active_ = false;
      mu_.Unlock();
      WakeAfterFlush(gen, failed);
      mu_.Lock();
    }
  }
}

bool Wal::Covered(absl::Span<const PartitionLsn> records, bool sync) const {
  for (const PartitionLsn& r : records) {
    const Lane& lane = lanes_[r.partition];
    if ((sync ? lane.synced_lsn : lane.written_lsn)
            .load(std::memory_order_acquire) < r.lsn) {
      return false;
    }
  }
  return true;
}

bool Wal::TakenByRunningFlushLocked(
    absl::Span<const PartitionLsn> records) const {
  for (const PartitionLsn& r : records) {
    if (lanes_[r.partition].cut_lsn < r.lsn) return false;
  }
  return true;
}

absl::Status Wal::WaitFor(absl::Span<const PartitionLsn> records, bool sync) {
  while (true) {
    // A record made durable before a later failure is still durable.
    if (Covered(records, sync)) {
      mu_.Unlock();
      return absl::OkStatus();
    }
    if (!sticky_.ok()) {
      absl::Status s = sticky_;
      mu_.Unlock();
      return s;
    }
    if (closed_) {
      mu_.Unlock();
      return Closed();
    }
    if (!leader_active_) {
      // The records were appended before this call, so the cut takes them.
      leader_active_ = true;
      return LeadLocked(sync);
    }
    // The running flush covers the records if its cut took them (and it
    // syncs, if that is needed); otherwise the next one will, started by
    // whoever leads now when this flush ends (it sees next_waiters_).
    uint64_t gen = flush_gen_;
    if (!flushing_ || !TakenByRunningFlushLocked(records) ||
        (sync && !inflight_sync_)) {
      gen = flush_gen_ + 1;
      ++next_waiters_;
      next_sync_ = next_sync_ || sync;
    }
    std::atomic<uint32_t>* word = &gen_words_[gen & 1];
    // Advanced only under mu_, so this is the value before flush gen ends.
    const uint32_t seen = word->load(std::memory_order_relaxed);
    mu_.Unlock();
    while (word->load(std::memory_order_acquire) == seen) {
      FutexWait(word, seen);
    }
    if (Covered(records, sync)) return absl::OkStatus();
    // The flush failed (or, defensively, did not cover the records): look
    // again under the lock.
    mu_.Lock();
  }
}

absl::Status Wal::Sync(absl::Span<const PartitionLsn> records) {
  for (const PartitionLsn& r : records) {
    if (r.partition >= options_.partitions ||
        r.lsn >
            lanes_[r.partition].appended_lsn.load(std::memory_order_acquire)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sync to LSN ", r.lsn, " of partition ", r.partition,
                       ", which has not been appended"));
    }
  }
  switch (options_.sync) {
    case WalSync::kAlways:
      if (Covered(records, /*sync=*/true)) return absl::OkStatus();
      mu_.Lock();
      return WaitFor(records, /*sync=*/true);
    case WalSync::kInterval:
      if (Covered(records, /*sync=*/false)) return absl::OkStatus();
      mu_.Lock();
      return WaitFor(records, /*sync=*/false);
    case WalSync::kNone:
      break;
  }
  bool full = false;
  for (const PartitionLsn& r : records) {
    full = full || lanes_[r.partition].staged_bytes.load(
                       std::memory_order_relaxed) >= lane_buffer_bytes_;
  }
  if (full) {
    mu_.Lock();
    if (!leader_active_ && sticky_.ok() && !closed_) {
      leader_active_ = true;
      return LeadLocked(/*sync=*/false);
    }
    mu_.Unlock();
  }
  if (failed_.load(std::memory_order_acquire)) return sticky_copy_;
  return absl::OkStatus();
}

std::vector<PartitionLsn> Wal::AllAppended() const {
  std::vector<PartitionLsn> all(options_.partitions);
  for (uint32_t i = 0; i < options_.partitions; ++i) {
    all[i] =
        PartitionLsn{i, lanes_[i].appended_lsn.load(std::memory_order_acquire)};
  }
  return all;
}

absl::Status Wal::SyncAll() {
  const std::vector<PartitionLsn> all = AllAppended();
  mu_.Lock();
  return WaitFor(all, /*sync=*/true);
}

void Wal::IntervalLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.sync_interval)) {
    const std::vector<PartitionLsn> all = AllAppended();
    mu_.Lock();
    if (closed_ || !sticky_.ok() || Covered(all, /*sync=*/true)) {
      mu_.Unlock();
      continue;
    }
    if (leader_active_) {
      // Under load a flush is nearly always running: have the next one
      // fdatasync (and run), or the interval bound would not hold.
      if (!flushing_ || !inflight_sync_ || !TakenByRunningFlushLocked(all)) {
        next_sync_ = true;
        ++next_waiters_;
      }
      mu_.Unlock();
      continue;
    }
    leader_active_ = true;
    LeadLocked(/*sync=*/true).IgnoreError();  // Sticky; callers see it.
  }
}

uint64_t Wal::RequestRotation() {
  absl::MutexLock l(&mu_);
  rotation_requested_ = true;
  return active_seq_ + 1;
}

absl::StatusOr<uint64_t> Wal::Rotate() {
  mu_.Lock();
  rotation_requested_ = true;
  const uint64_t seq = active_seq_ + 1;
  // The first flush to start from here on runs the rotation.
  const uint64_t gen = flush_gen_ + 1;
  while (true) {
    if (!sticky_.ok()) {
      absl::Status s = sticky_;
      mu_.Unlock();
      return s;
    }
    if (flush_gen_ > gen || (flush_gen_ == gen && !flushing_)) break;
    if (closed_) {
      mu_.Unlock();
      return Closed();
    }
    if (!leader_active_) {
      leader_active_ = true;
      LeadLocked(/*sync=*/false).IgnoreError();  // Sticky: seen above.
      mu_.Lock();
      continue;
    }
    if (!(flushing_ && flush_gen_ == gen)) ++next_waiters_;
    std::atomic<uint32_t>* word = &gen_words_[gen & 1];
    const uint32_t seen = word->load(std::memory_order_relaxed);
    mu_.Unlock();
    while (word->load(std::memory_order_acquire) == seen) {
      FutexWait(word, seen);
    }
    mu_.Lock();
  }
  mu_.Unlock();
  return seq;
}

absl::Status Wal::DiscardBefore(uint64_t seq) {
  // Decide under io_mu_, unlink outside it: the leader of the next group
  // commit must not wait behind file removals and a directory fsync. Only
  // the active segment is ever written, and it is never discarded.
  std::vector<SegmentFile> discarded;
  {
    absl::MutexLock io(&io_mu_);
    size_t n = 0;
    while (n + 1 < segments_.size() && segments_[n].seq < seq) ++n;
    discarded.assign(segments_.begin(), segments_.begin() + n);
    segments_.erase(segments_.begin(), segments_.begin() + n);
  }
  for (size_t i = 0; i < discarded.size(); ++i) {
    absl::Status s =
        options_.env->RemoveFile(JoinPath(options_.dir, discarded[i].name));
    if (!s.ok() && !absl::IsNotFound(s)) {
      // Keep what is left on the list, so a later call tries again.
      absl::MutexLock io(&io_mu_);
      segments_.insert(segments_.begin(), discarded.begin() + i,
                       discarded.end());
      return s;
    }
  }
  if (!discarded.empty()) return options_.env->SyncDir(options_.dir);
  return absl::OkStatus();
}

absl::Status Wal::Close() {
  absl::call_once(stop_once_, [this] {
    stop_.Notify();
    if (interval_thread_.joinable()) interval_thread_.join();
  });
  // Another Close got to close first: its result, once it is done.
  auto closed_by_other = [this]() ABSL_UNLOCK_FUNCTION(mu_) {
    mu_.Unlock();
    close_done_.WaitForNotification();
    absl::MutexLock l(&mu_);
    return close_status_;
  };
  mu_.Lock();
  if (closed_) return closed_by_other();
  mu_.Unlock();
  // Append fails from here on; an Append that got past the check before
  // finishes staging before this barrier, so the sync below covers it.
  closing_.store(true, std::memory_order_release);
  for (uint32_t i = 0; i < options_.partitions; ++i) {
    absl::MutexLock l(&lanes_[i].mu);
  }
  const std::vector<PartitionLsn> all = AllAppended();
  mu_.Lock();
  if (closed_) return closed_by_other();
  absl::Status s = WaitFor(all, /*sync=*/true);
  mu_.Lock();
  if (closed_) return closed_by_other();
  closed_ = true;
  // Everything is synced and nothing can be appended, so no new leader can
  // start; wait out one that is still settling (the flusher thread after an
  // error, or after covering this Close).
  mu_.Await(absl::Condition(this, &Wal::NoLeader));
  flusher_stop_ = true;
  flusher_cv_.Signal();
  {
    absl::MutexLock io(&io_mu_);
    if (file_ != nullptr) {
      absl::Status c = file_->Close();
      if (s.ok()) s = c;
      if (s.ok() && !segment_has_records_) {
        // Leave no empty segment behind for the next open to step over.
        s = options_.env->RemoveFile(
            JoinPath(options_.dir, segments_.back().name));
        if (s.ok()) s = options_.env->SyncDir(options_.dir);
        if (s.ok()) segments_.pop_back();
      }
      file_.reset();
    }
  }
  mu_.Unlock();
  // Only the Close that set closed_ gets here.
  if (flusher_thread_.joinable()) flusher_thread_.join();
  {
    absl::MutexLock l(&mu_);
    close_status_ = s;
  }
  close_done_.Notify();
  return s;
}

uint64_t Wal::last_lsn(uint32_t partition) const {
  if (partition >= options_.partitions) return 0;
  return lanes_[partition].appended_lsn.load(std::memory_order_acquire);
}

uint64_t Wal::records() const {
  uint64_t total = 0;
  for (uint32_t i = 0; i < options_.partitions; ++i) {
    total += lanes_[i].appended_lsn.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace taskwal::wal
