#include "wal/log_recovery.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "wal/coding.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/status_macros.h"

namespace taskwal::wal {

namespace {

constexpr uint64_t kNoOffset = std::numeric_limits<uint64_t>::max();

// One pass over a directory's log; see RecoverLog.
class LogRecovery {
 public:
  LogRecovery(Env* env, const std::string& dir,
              const LogRecoveryOptions& options, RecoveredRecordFn apply,
              absl::FunctionRef<absl::Status()> before_change)
      : env_(env),
        dir_(dir),
        options_(options),
        apply_(apply),
        before_change_(before_change),
        after_(options.partitions, 0),
        seen_(options.partitions, 0),
        committed_(options.partitions, 0) {
    for (size_t i = 0; i < options.after_lsn.size() && i < after_.size(); ++i) {
      after_[i] = options.after_lsn[i];
    }
  }

  absl::StatusOr<RecoveryResult> Run();

 private:
  // A record read but not yet passed on: it follows the first piece of a
  // group that is not complete yet.
  struct Held {
    uint32_t partition;
    uint64_t lsn;
    absl::string_view transition;
    uint64_t offset;
  };
  struct OpenGroup {
    uint32_t pieces;
    uint32_t seen;
  };

  // Reads segment i. Sets *stop when recovery ends there.
  absl::Status ReadSegment(size_t i, bool* stop);
  // Damage that stops recovery in segment i at byte `keep`: fatal, or the
  // end of the kept prefix when salvaging (0 sets the whole segment aside).
  absl::Status Stop(size_t i, absl::Status damage, uint64_t keep);
  // Cuts segment i at `end` (a torn final write, or an incomplete group).
  absl::Status CutTail(size_t i, uint64_t end, absl::string_view why);
  // Checks one record's partition, LSN and group; a damage status if it
  // does not fit.
  absl::Status Admit(const std::string& path, const LogReader::Record& record,
                     absl::string_view* transition);
  // Passes on a record, or holds it while a group is open.
  absl::Status Take(const Held& record);
  absl::Status Dispatch(const Held& record);
  // Passes on every held record before `offset`, drops the rest.
  absl::Status ReleaseHeldBefore(uint64_t offset);
  // Where the log must end if the open groups are cut off: the first held
  // record (kNoOffset if none). Groups of one flush can interleave, so this
  // may lie before every open group's first piece, at the first piece of
  // an already complete group that overlaps one; cutting later would keep
  // part of that group.
  uint64_t OpenGroupStart() const;

  Env* const env_;
  const std::string& dir_;
  const LogRecoveryOptions& options_;
  RecoveredRecordFn apply_;
  absl::FunctionRef<absl::Status()> before_change_;

  std::vector<SegmentFile> segments_;
  std::shared_ptr<const std::string> contents_;  // Segment being read.
  RecoveryResult result_;
  std::vector<uint64_t> after_;
  std::vector<uint64_t> seen_;       // Last LSN read, per partition.
  std::vector<uint64_t> committed_;  // Last LSN passed on or covered.
  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, OpenGroup> open_;
  std::vector<Held> held_;
  // Set when salvage stops early: segments from this index on are set aside.
  size_t set_aside_from_ = 0;
};

absl::Status LogRecovery::Dispatch(const Held& r) {
  if (r.lsn > after_[r.partition]) {
    TASKWAL_RETURN_IF_ERROR(
        apply_(r.partition, r.lsn, r.transition, contents_));
    ++result_.records_replayed;
  }
  committed_[r.partition] = std::max(committed_[r.partition], r.lsn);
  return absl::OkStatus();
}

absl::Status LogRecovery::Take(const Held& r) {
  if (open_.empty() && held_.empty()) return Dispatch(r);
  held_.push_back(r);
  if (!open_.empty()) return absl::OkStatus();
  for (const Held& h : held_) TASKWAL_RETURN_IF_ERROR(Dispatch(h));
  held_.clear();
  return absl::OkStatus();
}

absl::Status LogRecovery::ReleaseHeldBefore(uint64_t offset) {
  for (const Held& h : held_) {
    if (h.offset >= offset) break;
    TASKWAL_RETURN_IF_ERROR(Dispatch(h));
  }
  held_.clear();
  open_.clear();
  return absl::OkStatus();
}

uint64_t LogRecovery::OpenGroupStart() const {
  // Records are held from the first piece of the group that opened while
  // none was open, until no group is open: every group with a piece in
  // held_ has its first piece there too.
  return held_.empty() ? kNoOffset : held_.front().offset;
}

absl::Status LogRecovery::Admit(const std::string& path,
                                const LogReader::Record& r,
                                absl::string_view* transition) {
  auto damage = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat(path, " offset ", r.offset, ": ", what));
  };
  const bool group = r.type == RecordType::kGroupTransition;
  if (r.type != RecordType::kTransition && !group) {
    return damage(
        absl::StrCat("unexpected record type ", static_cast<int>(r.type)));
  }
  if (r.partition >= options_.partitions) {
    return damage(absl::StrCat("partition ", r.partition,
                               " is out of range (the directory has ",
                               options_.partitions, ")"));
  }
  const uint32_t p = r.partition;
  // Below the snapshot, LSNs only have to ascend (discarded segments and
  // cut tails leave gaps there); above it they must follow on: from the
  // partition's previous record, or from the snapshot when that is newer
  // (the log's first record past it must be the snapshot's LSN + 1).
  if (r.lsn <= after_[p]) {
    if (r.lsn <= seen_[p]) {
      return damage(absl::StrCat("partition ", p, " LSN ", r.lsn, " after LSN ",
                                 seen_[p], ": LSNs must ascend"));
    }
  } else if (const uint64_t expected = std::max(seen_[p], after_[p]) + 1;
             r.lsn != expected) {
    return damage(absl::StrCat(
        "partition ", p, " LSN ", r.lsn, " where ", expected, " was expected",
        seen_[p] < after_[p]
            ? absl::StrCat(" (the snapshot holds the partition through LSN ",
                           after_[p], ")")
            : ""));
  }
  *transition = r.payload;
  if (group) {
    GroupHeader header;
    if (!DecodeGroupHeader(r.payload, &header, transition)) {
      return damage("group record too short for its header");
    }
    const uint32_t pieces = header.pieces;
    const uint32_t leader = header.leader_partition;
    const uint64_t leader_lsn = header.leader_lsn;
    if (pieces < 2 || pieces > options_.partitions || leader > p ||
        (leader == p && leader_lsn != r.lsn)) {
      return damage("group record with an invalid group header");
    }
    // The leader, the piece in the lowest partition, is written first.
    auto it = open_.find({leader, leader_lsn});
    if (it == open_.end()) {
      if (leader != p) {
        return damage(absl::StrCat("group piece without its leader (partition ",
                                   leader, " LSN ", leader_lsn, ")"));
      }
      open_.emplace(std::make_pair(leader, leader_lsn), OpenGroup{pieces, 1});
    } else if (it->second.pieces != pieces) {
      return damage("group pieces disagree on the group's size");
    } else if (++it->second.seen == pieces) {
      open_.erase(it);
    }
  }
  seen_[p] = r.lsn;
  return absl::OkStatus();
}

absl::Status LogRecovery::Stop(size_t i, absl::Status damage, uint64_t keep) {
  if (!options_.salvage) return damage;
  TASKWAL_RETURN_IF_ERROR(ReleaseHeldBefore(keep));
  TASKWAL_RETURN_IF_ERROR(before_change_());
  const SegmentFile& seg = segments_[i];
  if (keep >= kFileHeaderSize) {
    TASKWAL_RETURN_IF_ERROR(env_->TruncateFile(JoinPath(dir_, seg.name), keep));
    result_.segments.push_back(seg);
    result_.tail_bytes = keep;
    result_.truncated_bytes += contents_->size() - keep;
    result_.notes.push_back(absl::StrCat("salvage: ", damage.message(),
                                         "; kept ", keep, " bytes of ",
                                         seg.name));
    set_aside_from_ = i + 1;
  } else {
    result_.notes.push_back(
        absl::StrCat("salvage: ", damage.message(), "; set aside ", seg.name));
    set_aside_from_ = i;
  }
  return absl::OkStatus();
}

absl::Status LogRecovery::CutTail(size_t i, uint64_t end,
                                  absl::string_view why) {
  TASKWAL_RETURN_IF_ERROR(ReleaseHeldBefore(end));
  const SegmentFile& seg = segments_[i];
  const uint64_t torn = contents_->size() - end;
  if (!options_.read_only) {
    TASKWAL_RETURN_IF_ERROR(before_change_());
    TASKWAL_RETURN_IF_ERROR(env_->TruncateFile(JoinPath(dir_, seg.name), end));
  }
  result_.truncated_bytes += torn;
  result_.notes.push_back(absl::StrCat(
      options_.read_only ? "skipped" : "truncated", " a torn tail of ", torn,
      " bytes from ", seg.name, " at offset ", end, " (", why, ")"));
  return absl::OkStatus();
}

absl::Status LogRecovery::ReadSegment(size_t i, bool* stop) {
  const SegmentFile& seg = segments_[i];
  const bool last = i + 1 == segments_.size();
  const std::string path = JoinPath(dir_, seg.name);
  TASKWAL_ASSIGN_OR_RETURN(std::string contents, env_->ReadFileToString(path));
  contents_ = std::make_shared<const std::string>(std::move(contents));
  *stop = true;

  absl::StatusOr<uint64_t> header =
      DecodeFileHeader(*contents_, kSegmentMagic, path);
  if (!header.ok()) {
    if (last && IsTornHeader(*contents_)) {
      if (!options_.read_only) {
        TASKWAL_RETURN_IF_ERROR(before_change_());
        TASKWAL_RETURN_IF_ERROR(env_->RemoveFile(path));
        TASKWAL_RETURN_IF_ERROR(env_->SyncDir(dir_));
      }
      result_.notes.push_back(absl::StrCat(
          options_.read_only ? "skipped " : "removed ", seg.name,
          ": its header is torn (the process died creating it, or is "
          "creating it now)"));
      set_aside_from_ = i + 1;  // Not set aside: removed, or left alone.
      return absl::OkStatus();
    }
    return Stop(i, header.status(), 0);
  }
  if (*header != seg.seq) {
    return Stop(i,
                absl::DataLossError(
                    absl::StrCat(path, ": header says segment ", *header,
                                 " but the file name says ", seg.seq)),
                0);
  }
  const uint64_t expected =
      result_.segments.empty() ||
              result_.segments.back().seq < options_.first_seq
          ? options_.first_seq
          : result_.segments.back().seq + 1;
  if (seg.seq != expected) {
    return Stop(i,
                absl::DataLossError(absl::StrCat(
                    path, ": segment ", expected,
                    " is missing (this one is segment ", seg.seq, ")")),
                0);
  }
  LogReader reader(*contents_, path);
  LogReader::Record record;
  while (true) {
    absl::StatusOr<bool> more = reader.Read(&record);
    if (!more.ok()) {
      const uint64_t end = std::min(reader.valid_end(), OpenGroupStart());
      if (last && !reader.ValidRecordFollows()) {
        // A torn final write: nothing valid follows, so nothing
        // acknowledged is lost by cutting it off.
        TASKWAL_RETURN_IF_ERROR(CutTail(i, end, more.status().message()));
        result_.segments.push_back(seg);
        result_.tail_bytes = end;
        return absl::OkStatus();
      }
      return Stop(i, more.status(), end);
    }
    if (!*more) break;
    absl::string_view transition;
    if (absl::Status s = Admit(path, record, &transition); !s.ok()) {
      return Stop(i, s, std::min(record.offset, OpenGroupStart()));
    }
    TASKWAL_RETURN_IF_ERROR(
        Take(Held{record.partition, record.lsn, transition, record.offset}));
  }
  if (!open_.empty()) {
    const uint64_t start = OpenGroupStart();
    if (last) {
      // The flush that held the group was cut short.
      TASKWAL_RETURN_IF_ERROR(
          CutTail(i, start, "a group of records is incomplete"));
      result_.segments.push_back(seg);
      result_.tail_bytes = start;
      return absl::OkStatus();
    }
    return Stop(i,
                absl::DataLossError(absl::StrCat(
                    path, " offset ", start,
                    ": a group of records is incomplete and later segments "
                    "follow")),
                start);
  }
  result_.segments.push_back(seg);
  result_.tail_bytes = contents_->size();
  *stop = false;
  return absl::OkStatus();
}

absl::StatusOr<RecoveryResult> LogRecovery::Run() {
  if (options_.salvage && options_.read_only) {
    return absl::InvalidArgumentError("salvage needs a writable directory");
  }
  if (options_.partitions < 1 || options_.partitions > kMaxPartitions) {
    return absl::InvalidArgumentError("partitions out of range");
  }
  TASKWAL_ASSIGN_OR_RETURN(DirectoryListing listing, ListDirectory(env_, dir_));
  if (!options_.read_only && !listing.temp_segments.empty()) {
    // A segment that was being created when the process died; its name was
    // never made durable, so no record was ever written to it.
    for (const std::string& name : listing.temp_segments) {
      TASKWAL_RETURN_IF_ERROR(env_->RemoveFile(JoinPath(dir_, name)));
    }
    TASKWAL_RETURN_IF_ERROR(env_->SyncDir(dir_));
  }
  segments_ = std::move(listing.segments);
  set_aside_from_ = segments_.size();
  for (size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].seq < options_.first_seq) {
      // Every record in it is held by the snapshots: it is not even read.
      // It stays on the list until a later snapshot lets the log drop it.
      result_.segments.push_back(segments_[i]);
      result_.tail_bytes = 0;
      continue;
    }
    bool stop = false;
    TASKWAL_RETURN_IF_ERROR(ReadSegment(i, &stop));
    if (stop) {
      if (set_aside_from_ == segments_.size()) set_aside_from_ = i + 1;
      break;
    }
  }
  contents_.reset();
  if (options_.salvage) {
    for (size_t i = set_aside_from_; i < segments_.size(); ++i) {
      const std::string path = JoinPath(dir_, segments_[i].name);
      TASKWAL_RETURN_IF_ERROR(env_->RenameFile(path, path + ".salvaged"));
      result_.notes.push_back(absl::StrCat("salvage: set aside ",
                                           segments_[i].name, " as ",
                                           segments_[i].name, ".salvaged"));
    }
    if (set_aside_from_ < segments_.size()) {
      TASKWAL_RETURN_IF_ERROR(env_->SyncDir(dir_));
    }
  }
  result_.last_lsn.resize(options_.partitions);
  for (uint32_t p = 0; p < options_.partitions; ++p) {
    result_.last_lsn[p] = std::max(after_[p], committed_[p]);
  }
  result_.next_seq =
      std::max(options_.first_seq,
               result_.segments.empty() ? 1 : result_.segments.back().seq + 1);
  return std::move(result_);
}

}  // namespace

absl::StatusOr<RecoveryResult> RecoverLog(
    Env* env, const std::string& dir, const LogRecoveryOptions& options,
    RecoveredRecordFn apply, absl::FunctionRef<absl::Status()> before_change) {
  LogRecovery recovery(env, dir, options, apply, before_change);
  return recovery.Run();
}

}  // namespace taskwal::wal
