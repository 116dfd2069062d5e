#include "wal/wal.h"

#include <algorithm>
#include <cstdio>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "wal/format.h"
#include "wal/futex.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_macros.h"

namespace taskwal::wal {

namespace {

constexpr absl::string_view kSegmentPrefix = "wal-";
constexpr absl::string_view kSegmentSuffix = ".log";
constexpr absl::string_view kTempSuffix = ".tmp";

std::string JoinPath(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

// A segment whose header never fully reached the disk: the process died
// while creating it, before any record could be written to it.
bool IsTornHeader(absl::string_view contents) {
  if (contents.size() < kFileHeaderSize) return true;
  return std::all_of(contents.begin(), contents.end(),
                     [](char c) { return c == 0; });
}

}  // namespace

std::string SegmentFileName(uint64_t first_lsn) {
  return absl::StrFormat("%s%020u%s", kSegmentPrefix, first_lsn,
                         kSegmentSuffix);
}

bool ParseSegmentFileName(absl::string_view name, uint64_t* first_lsn) {
  if (!absl::ConsumePrefix(&name, kSegmentPrefix) ||
      !absl::ConsumeSuffix(&name, kSegmentSuffix) || name.size() != 20 ||
      !std::all_of(name.begin(), name.end(), absl::ascii_isdigit)) {
    return false;
  }
  return absl::SimpleAtoi(name, first_lsn);
}

absl::StatusOr<RecoveryResult> RecoverLog(
    Env* env, const std::string& dir, uint64_t after_lsn, bool salvage,
    bool read_only,
    absl::FunctionRef<absl::Status(uint64_t, absl::string_view)> apply) {
  return RecoverLog(env, dir, after_lsn, salvage, read_only, apply,
                    [] { return absl::OkStatus(); });
}

absl::StatusOr<RecoveryResult> RecoverLog(
    Env* env, const std::string& dir, uint64_t after_lsn, bool salvage,
    bool read_only,
    absl::FunctionRef<absl::Status(uint64_t, absl::string_view)> apply,
    absl::FunctionRef<absl::Status()> before_change) {
  if (salvage && read_only) {
    return absl::InvalidArgumentError("salvage needs a writable directory");
  }
  TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                           env->GetChildren(dir));
  std::vector<SegmentFile> segments;
  bool removed_temp = false;
  for (const std::string& name : children) {
    SegmentFile seg;
    if (ParseSegmentFileName(name, &seg.first_lsn)) {
      seg.name = name;
      segments.push_back(std::move(seg));
    } else if (!read_only && absl::StartsWith(name, kSegmentPrefix) &&
               absl::EndsWith(name, absl::StrCat(kSegmentSuffix, kTempSuffix))) {
      // A segment that was being created when the process died; its name
      // was never made durable, so no record was ever written to it.
      TASKWAL_RETURN_IF_ERROR(env->RemoveFile(JoinPath(dir, name)));
      removed_temp = true;
    }
  }
  if (removed_temp) TASKWAL_RETURN_IF_ERROR(env->SyncDir(dir));
  std::sort(segments.begin(), segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) {
              return a.first_lsn < b.first_lsn;
            });

  RecoveryResult result;
  bool have_prev = false;
  uint64_t prev_last = 0;  // Last LSN of the previous segment.
  // Set when salvage stops early: segments from this index on are set aside.
  size_t set_aside_from = segments.size();

  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentFile& seg = segments[i];
    const bool last = i + 1 == segments.size();
    if (!last && segments[i + 1].first_lsn <= after_lsn + 1) {
      // The next segment starts within the snapshot, so every record of
      // this one is at or below after_lsn: the snapshot holds them all, and
      // the segment is not even read (damage in it costs nothing). It stays
      // in the list until a later snapshot's DiscardThrough removes it.
      result.segments.push_back(seg);
      prev_last = segments[i + 1].first_lsn - 1;
      have_prev = true;
      continue;
    }
    const std::string path = JoinPath(dir, seg.name);
    TASKWAL_ASSIGN_OR_RETURN(std::string contents, env->ReadFileToString(path));

    // Damage that stops recovery: fatal, or the end of the kept prefix when
    // salvaging. `keep` is how many bytes of this segment to keep (0 means
    // set the whole segment aside).
    auto stop = [&](absl::Status damage,
                    uint64_t keep) -> absl::StatusOr<bool> {
      if (!salvage) return damage;
      TASKWAL_RETURN_IF_ERROR(before_change());
      if (keep >= kFileHeaderSize) {
        TASKWAL_RETURN_IF_ERROR(env->TruncateFile(path, keep));
        result.truncated_bytes += contents.size() - keep;
        result.notes.push_back(absl::StrCat("salvage: ", damage.message(),
                                            "; kept ", keep, " bytes of ",
                                            seg.name));
        set_aside_from = i + 1;
      } else {
        result.notes.push_back(
            absl::StrCat("salvage: ", damage.message(), "; set aside ",
                         seg.name));
        set_aside_from = i;
      }
      return true;
    };

    absl::StatusOr<uint64_t> header =
        DecodeFileHeader(contents, kSegmentMagic, path);
    if (!header.ok()) {
      if (last && IsTornHeader(contents)) {
        if (!read_only) {
          TASKWAL_RETURN_IF_ERROR(before_change());
          TASKWAL_RETURN_IF_ERROR(env->RemoveFile(path));
          TASKWAL_RETURN_IF_ERROR(env->SyncDir(dir));
        }
        result.notes.push_back(absl::StrCat(
            read_only ? "skipped " : "removed ", seg.name,
            ": its header is torn (the process died creating it, or is "
            "creating it now)"));
        break;
      }
      TASKWAL_ASSIGN_OR_RETURN(bool stopped, stop(header.status(), 0));
      if (stopped) break;
    }
    if (*header != seg.first_lsn) {
      TASKWAL_ASSIGN_OR_RETURN(
          bool stopped,
          stop(absl::DataLossError(absl::StrCat(
                   path, ": header says first LSN ", *header,
                   " but the file name says ", seg.first_lsn)),
               0));
      if (stopped) break;
    }
    // Records between segments may be missing only if a snapshot covers
    // them.
    const uint64_t expected_first = have_prev ? prev_last + 1 : 1;
    if ((seg.first_lsn > expected_first && seg.first_lsn > after_lsn + 1) ||
        seg.first_lsn < expected_first) {
      TASKWAL_ASSIGN_OR_RETURN(
          bool stopped,
          stop(absl::DataLossError(absl::StrCat(
                   path, ": starts at LSN ", seg.first_lsn, " but LSN ",
                   expected_first,
                   " was expected (a segment is missing or overlaps)")),
               0));
      if (stopped) break;
    }

    LogReader reader(contents, path);
    uint64_t next_lsn = seg.first_lsn;
    bool stopped = false;
    LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      if (!more.ok()) {
        if (last && !reader.ValidRecordFollows()) {
          // A torn final write: nothing valid follows, so nothing
          // acknowledged is lost by cutting it off.
          const uint64_t torn = contents.size() - reader.valid_end();
          if (!read_only) {
            TASKWAL_RETURN_IF_ERROR(before_change());
            TASKWAL_RETURN_IF_ERROR(
                env->TruncateFile(path, reader.valid_end()));
          }
          result.truncated_bytes += torn;
          result.notes.push_back(absl::StrCat(
              read_only ? "skipped" : "truncated", " a torn tail of ", torn,
              " bytes from ", seg.name,
              " at offset ", reader.valid_end(), " (", more.status().message(),
              ")"));
          break;
        }
        TASKWAL_ASSIGN_OR_RETURN(stopped,
                                 stop(more.status(), reader.valid_end()));
        break;
      }
      if (!*more) break;
      if (record.type != RecordType::kTransition || record.lsn != next_lsn) {
        absl::Status damage = absl::DataLossError(absl::StrCat(
            path, " offset ", record.offset, ": ",
            record.type != RecordType::kTransition
                ? absl::StrCat("unexpected record type ",
                               static_cast<int>(record.type))
                : absl::StrCat("LSN ", record.lsn, " where ", next_lsn,
                               " was expected")));
        TASKWAL_ASSIGN_OR_RETURN(stopped, stop(damage, record.offset));
        break;
      }
      ++next_lsn;
      if (record.lsn > after_lsn) {
        TASKWAL_RETURN_IF_ERROR(apply(record.lsn, record.payload));
        ++result.records_replayed;
      }
    }
    if (!stopped || set_aside_from > i) {
      result.segments.push_back(seg);
      prev_last = next_lsn - 1;
      have_prev = true;
    }
    if (stopped) break;
  }

  for (size_t i = set_aside_from; i < segments.size(); ++i) {
    const std::string path = JoinPath(dir, segments[i].name);
    TASKWAL_RETURN_IF_ERROR(env->RenameFile(path, path + ".salvaged"));
    result.notes.push_back(
        absl::StrCat("salvage: set aside ", segments[i].name, " as ",
                     segments[i].name, ".salvaged"));
  }
  if (set_aside_from < segments.size()) {
    TASKWAL_RETURN_IF_ERROR(env->SyncDir(dir));
  }
  result.last_lsn = std::max(after_lsn, have_prev ? prev_last : 0);
  return result;
}

Wal::Wal(const WalOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(
    const WalOptions& options, std::vector<SegmentFile> segments,
    uint64_t last_lsn) {
  if (options.env == nullptr || options.dir.empty()) {
    return absl::InvalidArgumentError("Wal needs an env and a directory");
  }
  std::unique_ptr<Wal> wal(new Wal(options));
  {
    absl::MutexLock l(&wal->mu_);
    wal->last_lsn_ = last_lsn;
    wal->written_lsn_.store(last_lsn, std::memory_order_relaxed);
    wal->synced_lsn_.store(last_lsn, std::memory_order_relaxed);
  }
  if (!segments.empty()) {
    // Recovery may have replayed records that reached the OS but were never
    // fdatasynced (the process died before its sync). New records will be
    // acknowledged on top of them, so they must be durable first; earlier
    // segments were synced when they were rotated.
    const std::string last = JoinPath(options.dir, segments.back().name);
    TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                             options.env->NewAppendableFile(last));
    TASKWAL_RETURN_IF_ERROR(file->Sync());
    TASKWAL_RETURN_IF_ERROR(file->Close());
  }
  {
    absl::MutexLock io(&wal->io_mu_);
    wal->segments_ = std::move(segments);
    TASKWAL_RETURN_IF_ERROR(wal->StartSegmentLocked(last_lsn + 1));
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

absl::Status Wal::StartSegmentLocked(uint64_t first_lsn) {
  const std::string name = SegmentFileName(first_lsn);
  const std::string path = JoinPath(options_.dir, name);
  // A segment with this name can only be an earlier, empty one (its records
  // would have moved last_lsn past first_lsn): replace it.
  segments_.erase(std::remove_if(segments_.begin(), segments_.end(),
                                 [&](const SegmentFile& s) {
                                   return s.first_lsn >= first_lsn;
                                 }),
                  segments_.end());
  // The header is made durable under a temporary name and then renamed, so
  // the segment's name never points at a partial header, even if another
  // directory sync (a snapshot's) makes the name durable early.
  const std::string tmp_path = absl::StrCat(path, kTempSuffix);
  {
    TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> tmp,
                             options_.env->NewWritableFile(tmp_path));
    TASKWAL_RETURN_IF_ERROR(
        tmp->Append(EncodeFileHeader(kSegmentMagic, first_lsn)));
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
  segments_.push_back(SegmentFile{name, first_lsn});
  file_ = std::move(file);
  segment_size_ = kFileHeaderSize;
  segment_has_records_ = false;
  segment_synced_ = true;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Wal::Append(size_t payload_size,
                                     absl::FunctionRef<void(char*)> fill) {
  if (payload_size > kMaxRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("record of ", payload_size, " bytes exceeds the limit of ",
                     kMaxRecordBytes));
  }
  absl::MutexLock l(&mu_);
  if (!sticky_.ok()) return sticky_;
  if (closing_ || closed_) {
    return absl::FailedPreconditionError("log is closed");
  }
  const uint64_t lsn = last_lsn_ + 1;
  const size_t offset = staged_.size();
  fill(AppendRecordHeader(RecordType::kTransition, lsn, payload_size,
                          &staged_));
  SealRecord(&staged_, offset);
  last_lsn_ = lsn;
  ++staged_records_;
  return lsn;
}

absl::Status Wal::FlushOnceLocked(bool sync) {
  ++flush_gen_;
  flushing_ = true;
  inflight_sync_ = sync || next_sync_;
  next_waiters_ = 0;
  next_sync_ = false;
  sync = inflight_sync_;
  std::string batch;
  batch.swap(staged_);
  staged_.swap(spare_);
  const uint64_t target = last_lsn_;
  inflight_target_ = target;
  const uint64_t records = staged_records_;
  staged_records_ = 0;
  const bool rotate_first = rotation_requested_;
  rotation_requested_ = false;
  mu_.Unlock();

  absl::Status s;
  {
    absl::MutexLock io(&io_mu_);
    if (rotate_first && segment_has_records_) {
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
      if (s.ok()) s = StartSegmentLocked(target - records + 1);
    }
    if (s.ok() && !batch.empty()) {
      s = file_->Append(batch);
      if (s.ok()) {
        segment_size_ += batch.size();
        segment_has_records_ = true;
        segment_synced_ = false;
        stats_.bytes_written.fetch_add(batch.size(), std::memory_order_relaxed);
        stats_.flushes.fetch_add(1, std::memory_order_relaxed);
        stats_.records_flushed.fetch_add(records, std::memory_order_relaxed);
      }
    }
    const bool rotate = segment_size_ >= options_.segment_bytes;
    if (s.ok() && (sync || rotate) && !segment_synced_) {
      s = file_->Sync();
      if (s.ok()) {
        segment_synced_ = true;
        stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (s.ok() && rotate) {
      s = file_->Close();
      if (s.ok()) s = StartSegmentLocked(target + 1);
    }
  }

  batch.clear();
  mu_.Lock();
  flushing_ = false;
  if (spare_.capacity() < batch.capacity()) spare_.swap(batch);
  if (s.ok()) {
    if (written_lsn_.load(std::memory_order_relaxed) < target) {
      written_lsn_.store(target, std::memory_order_release);
    }
    if (sync && synced_lsn_.load(std::memory_order_relaxed) < target) {
      synced_lsn_.store(target, std::memory_order_release);
    }
  } else if (sticky_.ok()) {
    sticky_ = s;
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

absl::Status Wal::WaitFor(uint64_t lsn, bool sync) {
  while (true) {
    // A record made durable before a later failure is still durable.
    if (CoveredLocked(lsn, sync)) {
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
      return absl::FailedPreconditionError("log is closed");
    }
    if (!leader_active_) {
      // The batch taken covers lsn: it is at most last_lsn_.
      leader_active_ = true;
      return LeadLocked(sync);
    }
    // The running flush covers the record if it took it (and syncs, if that
    // is needed); otherwise the next one will, started by whoever leads now
    // when this flush ends (it sees next_waiters_).
    uint64_t gen = flush_gen_;
    if (!flushing_ || lsn > inflight_target_ || (sync && !inflight_sync_)) {
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
    if ((sync ? synced_lsn_ : written_lsn_).load(std::memory_order_acquire) >=
        lsn) {
      return absl::OkStatus();
    }
    // The flush failed (or, defensively, did not cover the record): look
    // again under the lock.
    mu_.Lock();
  }
}

absl::Status Wal::Sync(uint64_t lsn) {
  mu_.Lock();
  if (lsn > last_lsn_) {
    const uint64_t last = last_lsn_;
    mu_.Unlock();
    return absl::InvalidArgumentError(
        absl::StrCat("sync to LSN ", lsn, " past the last record ", last));
  }
  switch (options_.sync) {
    case WalSync::kAlways:
      return WaitFor(lsn, /*sync=*/true);
    case WalSync::kInterval:
      return WaitFor(lsn, /*sync=*/false);
    case WalSync::kNone:
      break;
  }
  if (staged_.size() >= options_.buffer_bytes && !leader_active_ &&
      sticky_.ok() && !closed_) {
    leader_active_ = true;
    return LeadLocked(/*sync=*/false);
  }
  absl::Status s = sticky_;
  mu_.Unlock();
  return s;
}

absl::Status Wal::SyncAll() {
  mu_.Lock();
  return WaitFor(last_lsn_, /*sync=*/true);
}

void Wal::IntervalLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.sync_interval)) {
    mu_.Lock();
    if (closed_ || !sticky_.ok() ||
        synced_lsn_.load(std::memory_order_relaxed) >= last_lsn_) {
      mu_.Unlock();
      continue;
    }
    if (leader_active_) {
      // Under load a flush is nearly always running: have the next one
      // fdatasync (and run), or the interval bound would not hold.
      if (!flushing_ || !inflight_sync_ || inflight_target_ < last_lsn_) {
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

void Wal::RequestRotation() {
  absl::MutexLock l(&mu_);
  rotation_requested_ = true;
}

absl::Status Wal::DiscardThrough(uint64_t lsn) {
  // Decide under io_mu_, unlink outside it: the leader of the next group
  // commit must not wait behind file removals and a directory fsync. Only
  // the active segment is ever written, and it is never discarded.
  std::vector<SegmentFile> discarded;
  {
    absl::MutexLock io(&io_mu_);
    size_t n = 0;
    while (n + 1 < segments_.size() &&
           segments_[n + 1].first_lsn - 1 <= lsn) {
      ++n;
    }
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
  closing_ = true;  // Append fails from here on.
  absl::Status s = WaitFor(last_lsn_, /*sync=*/true);
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

uint64_t Wal::last_lsn() const {
  absl::MutexLock l(&mu_);
  return last_lsn_;
}

}  // namespace taskwal::wal
