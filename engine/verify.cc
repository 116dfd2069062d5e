#include "engine/verify.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/recovery.h"
#include "engine/snapshot.h"
#include "engine/snapshot.pb.h"
#include "engine/state_machine.h"
#include "engine/stored_options.h"
#include "engine/transition.pb.h"
#include "taskwal/engine.h"
#include "wal/coding.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/pinned_dir.h"
#include "wal/status_macros.h"

namespace taskwal::engine {
namespace {

// A file that vanishes mid-check (its owner discarded it after a snapshot)
// restarts the check; this bounds the restarts.
constexpr int kMaxAttempts = 5;
// Progress is reported at least this often within a file.
constexpr uint64_t kProgressStepBytes = 1 << 20;
constexpr uint64_t kNoOffset = std::numeric_limits<uint64_t>::max();

// The message of a status without the "<prefix>: " (or "<prefix> offset N:
// ") and "... at offset N: " parts that a Problem already carries.
std::string Detail(const absl::Status& status, absl::string_view prefix) {
  absl::string_view m = status.message();
  if (absl::ConsumePrefix(&m, prefix)) {
    if (!absl::ConsumePrefix(&m, ": ") && absl::ConsumePrefix(&m, " offset ")) {
      const size_t colon = m.find(": ");
      if (colon != absl::string_view::npos) m.remove_prefix(colon + 2);
    }
  }
  for (absl::string_view p :
       {"damaged record at offset ", "bad file header at offset "}) {
    if (absl::ConsumePrefix(&m, p)) {
      const size_t colon = m.find(": ");
      if (colon != absl::string_view::npos) m.remove_prefix(colon + 2);
    }
  }
  return std::string(m);
}

// What follows "<name>: " in a message, or all of it.
std::string AfterName(absl::string_view message, absl::string_view name) {
  const std::string marker = absl::StrCat(name, ": ");
  const size_t at = message.find(marker);
  return std::string(at == absl::string_view::npos
                         ? message
                         : message.substr(at + marker.size()));
}

// "LSN 5 is missing", "LSNs 5..9 are missing".
std::string Missing(uint64_t first, uint64_t last) {
  return first == last
             ? absl::StrCat("LSN ", first, " is missing")
             : absl::StrCat("LSNs ", first, "..", last, " are missing");
}

// "1 partition", "4 partitions".
std::string PartitionCount(uint64_t n) {
  return absl::StrCat(n, n == 1 ? " partition" : " partitions");
}

std::string MissingSegments(uint64_t first, uint64_t last) {
  return first == last
             ? absl::StrCat("segment ", first, " is missing")
             : absl::StrCat("segments ", first, "..", last, " are missing");
}

// Files Open leaves alone or cleans up by itself: set aside (*.corrupt,
// *.corrupt.N, *.salvaged) or half-written (*.tmp).
bool IsSetAside(absl::string_view name) {
  return absl::StrContains(name, ".corrupt") ||
         absl::EndsWith(name, ".salvaged") || absl::EndsWith(name, ".tmp");
}

// The first record after `damage` whose length, checksum and type check
// out, as LogReader::ValidRecordFollows finds it.
std::optional<wal::LogReader::Record> NextValidRecord(
    absl::string_view contents, uint64_t damage) {
  if (contents.size() < wal::kRecordHeaderSize) return std::nullopt;
  for (uint64_t offset = damage + 1;
       offset <= contents.size() - wal::kRecordHeaderSize; ++offset) {
    const char* header = contents.data() + offset;
    if (!wal::IsValidRecordType(
            static_cast<uint8_t>(header[wal::kRecordTypeOffset]))) {
      continue;
    }
    const uint32_t length =
        wal::DecodeFixed32(header + wal::kRecordLengthOffset);
    if (length > contents.size() - offset - wal::kRecordHeaderSize) continue;
    wal::LogReader probe(contents, "", offset);
    wal::LogReader::Record record;
    absl::StatusOr<bool> more = probe.Read(&record);
    if (more.ok() && *more) return record;
  }
  return std::nullopt;
}

// One check of a directory (VerifyDirectory runs one per attempt). Not
// safe for concurrent use.
class Verifier {
 public:
  Verifier(Env* env, const std::string& dir, const ProgressFn& progress)
      : env_(env), dir_(dir), progress_(progress) {}

  // kNotFound: a file vanished (or dir does not exist); the caller retries.
  absl::Status Run();

  std::vector<Problem>& problems() { return problems_; }
  const VerifySummary& summary() const { return summary_; }

 private:
  // One partition's view of the log.
  struct Lane {
    // The newest valid snapshot's state, then the log replayed onto it;
    // nullptr while none is chosen, or when nothing is replayed.
    std::unique_ptr<StateMachine> state;
    bool has_base = false;       // A valid snapshot was found.
    uint64_t base_lsn = 0;       // Its LSN (0: none).
    uint64_t first_segment = 1;  // Where its log starts (1: none).
    uint64_t last_lsn = 0;       // Of the partition's last record read.
    bool started = false;        // A record of the partition was read.
    // Records of the partition may be missing since last_lsn, in damage
    // already reported: the next one may skip LSNs.
    bool lost = false;
    bool replaying = true;
  };
  struct OpenGroup {
    uint32_t pieces;
    uint32_t seen;
    uint64_t first_offset;
  };

  void Report(Problem::Kind kind, const std::string& file, uint64_t offset,
              std::string message, bool valid_records_follow = false,
              bool repaired_by_open = false) {
    Problem p;
    p.kind = kind;
    p.file = file;
    p.offset = offset;
    p.valid_records_follow = valid_records_follow;
    p.repaired_by_open = repaired_by_open;
    p.message = std::move(message);
    problems_.push_back(std::move(p));
  }

  // The file's contents. nullopt: unreadable, and reported. kNotFound: it
  // vanished.
  absl::StatusOr<std::optional<std::string>> Read(const std::string& name);
  void Progress(uint64_t offset_in_file);
  std::string Path(absl::string_view name) const {
    return wal::JoinPath(dir_, name);
  }

  // Checks META and sets the partition count. false: the directory is of
  // a format this build does not read, and nothing else is checked.
  absl::StatusOr<bool> CheckMeta(const wal::DirectoryListing& listing,
                                 const std::vector<SnapshotFile>& snapshots);
  // Without a usable META: the partition count the newest snapshot whose
  // meta parses gives, and its name.
  absl::StatusOr<std::optional<std::pair<uint32_t, std::string>>>
  PartitionsFromSnapshots(const std::vector<SnapshotFile>& snapshots);

  // Checks one snapshot file; the first (newest) valid one of each
  // partition becomes the partition's replay base.
  absl::Status CheckSnapshot(const SnapshotFile& snapshot);
  // Finds every problem of a snapshot file that does not load. state:
  // where its tasks are restored to check them (nullptr: the partition
  // count is unknown, they are only parsed).
  void ScanSnapshot(const SnapshotFile& snapshot, absl::string_view contents,
                    StateMachine* state);

  void CheckSegment(const wal::SegmentFile& segment, bool newest,
                    absl::string_view contents);
  // One valid log record at its place in its partition's sequence.
  void CheckRecord(const std::string& file, const wal::LogReader::Record& r);
  void CheckLsn(const std::string& file, const wal::LogReader::Record& r,
                Lane& lane);
  // Tracks the record's group; false if its group header is invalid.
  bool CheckGroup(const std::string& file, const wal::LogReader::Record& r,
                  const wal::GroupHeader& group);
  // Reports the groups still open at the end of a segment.
  // Reports a damaged OPTIONS file (kBadOptions).
  void CheckOptions();
  // Asks Open's own recovery, read-only over the same files, whether it
  // repairs what the checks expect it to (see Problem::repaired_by_open).
  absl::Status ConfirmRepairsByOpen();
  void ReportOpenGroups(const std::string& file, bool newest,
                        uint64_t segment_size);
  void ForgetGroups() {
    open_groups_.clear();
    held_start_ = kNoOffset;
  }
  // Records of every partition may have been lost in reported damage.
  void MarkAllLost() {
    for (Lane& lane : lanes_) lane.lost = true;
  }

  Env* const env_;
  const std::string dir_;
  const ProgressFn& progress_;
  // Options for the states rebuilt: the engine's defaults (the history
  // bound does not change whether a record applies).
  const EngineOptions state_options_{};

  std::vector<Problem> problems_;
  VerifySummary summary_;
  uint64_t bytes_total_ = 0;
  uint64_t bytes_before_file_ = 0;  // Sum of the sizes of files done.
  uint64_t last_progress_ = 0;

  // The directory's partition count, or (without a usable META) the one a
  // snapshot gives; 0 when unknown.
  uint32_t partitions_ = 0;
  std::vector<Lane> lanes_;  // One per partition (kMaxPartitions if unknown).
  bool replay_ = true;       // Whether the log is replayed at all.

  // Groups of the segment being read whose pieces are not all read yet, by
  // (leader partition, leader LSN); and where Open would cut the log if
  // they stayed incomplete: the first piece of the group that opened while
  // none was open (as wal/log_recovery.cc holds records back).
  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, OpenGroup> open_groups_;
  uint64_t held_start_ = kNoOffset;
  // Damage in this segment may have swallowed a group's first piece: a
  // later piece without it is part of that damage, not a new problem.
  bool pieces_lost_ = false;
  Transition transition_;
};

absl::StatusOr<std::optional<std::string>> Verifier::Read(
    const std::string& name) {
  absl::StatusOr<std::string> contents = env_->ReadFileToString(Path(name));
  if (absl::IsNotFound(contents.status())) return contents.status();
  if (!contents.ok()) {
    Report(Problem::Kind::kUnreadable, name, 0,
           std::string(contents.status().message()));
    return std::optional<std::string>();
  }
  return std::optional<std::string>(*std::move(contents));
}

void Verifier::Progress(uint64_t offset_in_file) {
  if (!progress_) return;
  const uint64_t done =
      std::min(bytes_total_, bytes_before_file_ + offset_in_file);
  if (done != bytes_total_ && done - last_progress_ < kProgressStepBytes &&
      done != 0) {
    return;
  }
  last_progress_ = done;
  progress_(done, bytes_total_);
}

absl::Status Verifier::Run() {
  TASKWAL_ASSIGN_OR_RETURN(wal::DirectoryListing listing,
                           wal::ListDirectory(env_, dir_));
  // Snapshot files newest first, then by partition, as Open tries them.
  std::vector<SnapshotFile> snapshots;
  std::vector<std::string> bad_names;
  for (const std::string& name : listing.snapshots) {
    SnapshotFile f;
    if (ParseSnapshotFileName(name, &f.first_segment, &f.partition)) {
      f.name = name;
      snapshots.push_back(std::move(f));
    } else if (!IsSetAside(name)) {
      bad_names.push_back(name);
    }
  }
  std::sort(snapshots.begin(), snapshots.end(),
            [](const SnapshotFile& a, const SnapshotFile& b) {
              return a.first_segment != b.first_segment
                         ? a.first_segment > b.first_segment
                         : a.partition < b.partition;
            });
  std::sort(bad_names.begin(), bad_names.end());

  TASKWAL_ASSIGN_OR_RETURN(bool supported, CheckMeta(listing, snapshots));
  CheckOptions();
  summary_.snapshots = snapshots.size();
  summary_.segments = listing.segments.size();
  if (!supported) return absl::OkStatus();

  for (const std::string& name : bad_names) {
    Report(Problem::Kind::kSnapshotDamage, name, 0,
           "not a snapshot file name (snapshot-<first segment, 20 "
           "digits>-<partition, 4 digits>.snap): Open ignores the file");
  }
  for (const SnapshotFile& s : snapshots) {
    TASKWAL_ASSIGN_OR_RETURN(uint64_t size, env_->GetFileSize(Path(s.name)));
    bytes_total_ += size;
  }
  for (const wal::SegmentFile& s : listing.segments) {
    TASKWAL_ASSIGN_OR_RETURN(uint64_t size, env_->GetFileSize(Path(s.name)));
    bytes_total_ += size;
  }
  summary_.bytes = bytes_total_;
  Progress(0);

  for (const SnapshotFile& snapshot : snapshots) {
    TASKWAL_RETURN_IF_ERROR(CheckSnapshot(snapshot));
  }

  // Where Open starts reading the log: the lowest first segment of the
  // snapshots it loads, 1 if a partition has none.
  uint64_t first_seq = std::numeric_limits<uint64_t>::max();
  std::optional<uint32_t> first_seq_partition;
  for (uint32_t p = 0; p < partitions_; ++p) {
    Lane& lane = lanes_[p];
    summary_.replay_base_lsn += lane.base_lsn;
    if (lane.first_segment < first_seq) {
      first_seq = lane.first_segment;
      first_seq_partition = p;
    }
    if (replay_ && lane.state == nullptr) {
      lane.state = NewPartitionState(state_options_, p, partitions_);
    }
  }
  if (!first_seq_partition.has_value()) first_seq = 1;

  const std::vector<wal::SegmentFile>& segments = listing.segments;
  for (size_t i = 0; i < segments.size(); ++i) {
    const wal::SegmentFile& segment = segments[i];
    // Segments follow on by number from where the snapshots need the log.
    const uint64_t expected = i == 0 ? first_seq : segments[i - 1].seq + 1;
    if (segment.seq > expected) {
      std::string why;
      if (i == 0) {
        const Lane* lane = first_seq_partition.has_value()
                               ? &lanes_[*first_seq_partition]
                               : nullptr;
        why = absl::StrCat(
            "the log starts at segment ", segment.seq, ", but ",
            lane == nullptr
                ? std::string("no snapshot can be loaded without the "
                              "partition count")
            : lane->has_base
                ? absl::StrCat("the newest valid snapshot of partition ",
                               *first_seq_partition,
                               " needs the log from segment ",
                               lane->first_segment)
                : absl::StrCat("there is no valid snapshot of partition ",
                               *first_seq_partition),
            ": ", MissingSegments(expected, segment.seq - 1));
      } else {
        why = absl::StrCat(MissingSegments(expected, segment.seq - 1),
                           " (this is segment ", segment.seq, ")");
        if (segment.seq <= first_seq) {
          absl::StrAppend(&why, "; Open does not read segments below ",
                          first_seq, ", which the snapshots hold");
        }
      }
      Report(Problem::Kind::kLsnGap, segment.name, 0, std::move(why));
      MarkAllLost();
    }
    TASKWAL_ASSIGN_OR_RETURN(std::optional<std::string> contents,
                             Read(segment.name));
    if (!contents.has_value()) {
      MarkAllLost();
      continue;
    }
    CheckSegment(segment, i + 1 == segments.size(), *contents);
    bytes_before_file_ += contents->size();
    Progress(0);
  }
  for (const Lane& lane : lanes_) {
    summary_.last_lsn += std::max(lane.base_lsn, lane.last_lsn);
  }
  return ConfirmRepairsByOpen();
}

void Verifier::CheckOptions() {
  EngineOptions options;
  const absl::Status read = ApplyStoredOptions(env_, dir_, &options);
  if (read.ok()) return;
  const std::string name(wal::kOptionsFileName);
  Report(Problem::Kind::kBadOptions, name, 0, AfterName(read.message(), name));
}

absl::Status Verifier::ConfirmRepairsByOpen() {
  if (std::none_of(problems_.begin(), problems_.end(),
                   [](const Problem& p) { return p.repaired_by_open; })) {
    return absl::OkStatus();
  }
  // The checks above describe the damage; whether Open repairs it is for
  // Open's rules alone to say, so that the two cannot drift apart. Open
  // repairs a torn segment header by dropping the segment, and a torn tail
  // or an incomplete group at the log's end by cutting the log where the
  // problem starts.
  EngineOptions options;
  options.data_dir = dir_;
  options.read_only = true;
  absl::StatusOr<RecoveredState> recovered =
      RecoverDirectory(options, env_, dir_);
  if (absl::IsNotFound(recovered.status())) return recovered.status();
  for (Problem& p : problems_) {
    if (!p.repaired_by_open) continue;
    bool repaired = false;
    if (recovered.ok()) {
      const std::vector<wal::SegmentFile>& kept = recovered->segments;
      if (p.kind == Problem::Kind::kTornHeader) {
        repaired = std::none_of(
            kept.begin(), kept.end(),
            [&](const wal::SegmentFile& s) { return s.name == p.file; });
      } else {
        repaired = !kept.empty() && kept.back().name == p.file &&
                   recovered->tail_bytes == p.offset;
      }
    }
    if (!repaired) {
      p.repaired_by_open = false;
      absl::StrAppend(&p.message, " (but Open does not repair it",
                      recovered.ok()
                          ? ": it reads the log differently"
                          : absl::StrCat(": ", recovered.status().message()),
                      ")");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Verifier::CheckMeta(
    const wal::DirectoryListing& listing,
    const std::vector<SnapshotFile>& snapshots) {
  const std::string meta_name(wal::kMetaFileName);
  if (!listing.has_meta && listing.segments.empty() &&
      listing.snapshots.empty()) {
    return true;  // A directory no engine has written to.
  }
  EngineOptions options;
  options.read_only = true;  // Never writes META.
  absl::StatusOr<uint32_t> partitions =
      DirectoryPartitions(options, env_, dir_);
  if (partitions.ok() && listing.has_meta) {
    partitions_ = *partitions;
    summary_.partitions = partitions_;
    lanes_.resize(partitions_);
    return true;
  }
  if (partitions.ok()) {
    // No META, and nothing DirectoryPartitions counts as data beside it.
    return true;
  }
  const absl::Status& status = partitions.status();
  if (absl::IsNotFound(status)) return status;
  if (absl::IsFailedPrecondition(status)) {
    // META of another version; or, without META, log segments or snapshots
    // of another version (version 1: taskwal before partitions), as
    // DirectoryPartitions judged from the first of them.
    const std::string file =
        listing.has_meta
            ? meta_name
            : (!listing.segments.empty() ? listing.segments.front().name
                                         : listing.snapshots.front());
    Report(Problem::Kind::kUnsupportedVersion, file, 0,
           absl::StrCat(AfterName(status.message(), file),
                        listing.has_meta
                            ? ""
                            : "; the directory has no META file (a directory "
                              "of format version 1 has none)",
                        ": nothing else is checked"));
    return false;
  }
  std::string message;
  Problem::Kind kind = Problem::Kind::kBadMeta;
  if (absl::IsDataLoss(status) && !listing.has_meta) {
    message = "missing, but the directory holds log segments or snapshots";
  } else if (absl::IsDataLoss(status) || absl::IsInvalidArgument(status)) {
    message = Detail(status, Path(meta_name));
  } else {
    kind = Problem::Kind::kUnreadable;
    message = std::string(status.message());
  }
  TASKWAL_ASSIGN_OR_RETURN(auto inferred, PartitionsFromSnapshots(snapshots));
  if (inferred.has_value()) {
    partitions_ = inferred->first;
    absl::StrAppend(&message, "; checked as ", PartitionCount(partitions_),
                    ", as snapshot ", inferred->second, " says");
  } else {
    replay_ = false;
    absl::StrAppend(&message,
                    "; no snapshot gives the partition count: the log is "
                    "checked without replaying it");
  }
  Report(kind, meta_name, 0, std::move(message));
  lanes_.resize(partitions_ != 0 ? partitions_ : wal::kMaxPartitions);
  return true;
}

absl::StatusOr<std::optional<std::pair<uint32_t, std::string>>>
Verifier::PartitionsFromSnapshots(const std::vector<SnapshotFile>& snapshots) {
  for (const SnapshotFile& f : snapshots) {
    absl::StatusOr<std::string> contents = env_->ReadFileToString(Path(f.name));
    if (absl::IsNotFound(contents.status())) return contents.status();
    if (!contents.ok() ||
        !wal::DecodeFileHeader(*contents, wal::kSnapshotMagic, f.name).ok()) {
      continue;
    }
    wal::LogReader reader(*contents, f.name);
    wal::LogReader::Record record;
    absl::StatusOr<bool> more = reader.Read(&record);
    SnapshotMeta meta;
    if (more.ok() && *more && record.type == wal::RecordType::kSnapshotMeta &&
        meta.ParseFromArray(record.payload.data(),
                            static_cast<int>(record.payload.size())) &&
        meta.partitions() >= 1 && meta.partitions() <= wal::kMaxPartitions) {
      return std::make_optional(std::make_pair(meta.partitions(), f.name));
    }
  }
  return std::optional<std::pair<uint32_t, std::string>>();
}

absl::Status Verifier::CheckSnapshot(const SnapshotFile& snapshot) {
  const std::string& file = snapshot.name;
  if (snapshot.partition >= lanes_.size()) {
    Report(Problem::Kind::kSnapshotDamage, file, 0,
           absl::StrCat(
               "partition ", snapshot.partition, " is outside the directory's ",
               PartitionCount(lanes_.size()), ": Open ignores the file"));
    TASKWAL_ASSIGN_OR_RETURN(uint64_t size, env_->GetFileSize(Path(file)));
    bytes_before_file_ += size;
    Progress(0);
    return absl::OkStatus();
  }
  TASKWAL_ASSIGN_OR_RETURN(std::optional<std::string> contents, Read(file));
  if (!contents.has_value()) return absl::OkStatus();
  Lane& lane = lanes_[snapshot.partition];
  std::unique_ptr<StateMachine> state =
      partitions_ == 0
          ? nullptr
          : NewPartitionState(state_options_, snapshot.partition, partitions_);
  if (state == nullptr) {
    ScanSnapshot(snapshot, *contents, nullptr);
  } else {
    // Open's loader decides whether the file loads; the scan, only when it
    // does not, says where and why.
    absl::StatusOr<SnapshotMeta> meta =
        LoadSnapshotContents(*contents, file, state.get());
    if (meta.ok()) {
      if (meta->first_segment() != snapshot.first_segment) {
        Report(Problem::Kind::kHeaderNameMismatch, file, wal::kFileHeaderSize,
               absl::StrCat("the meta record says the partition's log "
                            "starts at segment ",
                            meta->first_segment(), " but the file name says ",
                            snapshot.first_segment,
                            "; Open does not load the file"));
      } else if (!lane.has_base) {
        lane.state = std::move(state);
        lane.has_base = true;
        lane.base_lsn = meta->lsn();
        lane.first_segment = meta->first_segment();
      }
    } else if (absl::IsDataLoss(meta.status()) ||
               absl::IsFailedPrecondition(meta.status())) {
      const size_t before = problems_.size();
      ScanSnapshot(
          snapshot, *contents,
          NewPartitionState(state_options_, snapshot.partition, partitions_)
              .get());
      if (problems_.size() == before) {
        Report(Problem::Kind::kSnapshotDamage, file, 0,
               Detail(meta.status(), file));
      }
    } else {
      return meta.status();
    }
  }
  bytes_before_file_ += contents->size();
  Progress(0);
  return absl::OkStatus();
}

void Verifier::ScanSnapshot(const SnapshotFile& snapshot,
                            absl::string_view contents, StateMachine* state) {
  const std::string& file = snapshot.name;
  absl::StatusOr<uint64_t> header =
      wal::DecodeFileHeader(contents, wal::kSnapshotMagic, file);
  if (!header.ok()) {
    Report(absl::IsFailedPrecondition(header.status())
               ? Problem::Kind::kUnsupportedVersion
               : Problem::Kind::kBadHeader,
           file, 0, Detail(header.status(), file));
    return;
  }

  auto damage = [&](uint64_t offset, std::string message) {
    Report(Problem::Kind::kSnapshotDamage, file, offset, std::move(message));
  };
  bool seen_first = false;
  bool ended = false;
  uint64_t count = 0;
  wal::LogReader reader(contents, file);
  wal::LogReader::Record record;
  while (true) {
    absl::StatusOr<bool> more = reader.Read(&record);
    if (!more.ok()) {
      const bool follows = reader.ValidRecordFollows();
      Report(Problem::Kind::kSnapshotDamage, file, reader.valid_end(),
             absl::StrCat(Detail(more.status(), file),
                          follows ? "; valid records follow"
                                  : "; nothing valid follows"),
             follows);
      return;
    }
    if (!*more) break;
    Progress(record.offset);
    if (ended) {
      damage(record.offset, "records after the end record");
      break;
    }
    const auto size = static_cast<int>(record.payload.size());
    if (!seen_first) {
      seen_first = true;
      SnapshotMeta meta;
      if (record.type != wal::RecordType::kSnapshotMeta) {
        damage(record.offset, absl::StrCat("the first record has type ",
                                           static_cast<int>(record.type),
                                           ", not a snapshot meta record"));
      } else if (!meta.ParseFromArray(record.payload.data(), size)) {
        damage(record.offset, "the snapshot meta record does not parse");
        continue;
      } else {
        if (meta.lsn() != *header) {
          damage(record.offset,
                 absl::StrCat("the meta record says LSN ", meta.lsn(),
                              " but the header says ", *header));
        }
        if (meta.partition() != snapshot.partition ||
            record.partition != snapshot.partition) {
          Report(
              Problem::Kind::kHeaderNameMismatch, file, record.offset,
              absl::StrCat("the meta record says partition ", meta.partition(),
                           " (its record header ", record.partition,
                           ") but the file name says ", snapshot.partition));
        }
        if (meta.first_segment() != snapshot.first_segment) {
          Report(Problem::Kind::kHeaderNameMismatch, file, record.offset,
                 absl::StrCat("the meta record says the partition's log "
                              "starts at segment ",
                              meta.first_segment(), " but the file name says ",
                              snapshot.first_segment));
        }
        if (partitions_ != 0 && meta.partitions() != partitions_) {
          damage(record.offset,
                 absl::StrCat("the snapshot is of a directory of ",
                              PartitionCount(meta.partitions()),
                              ", but this one has ", partitions_));
          // Its tasks' ids belong to another partitioning.
          state = nullptr;
        }
        continue;
      }
    }
    if (record.type == wal::RecordType::kSnapshotEnd) {
      ended = true;
      SnapshotEnd end;
      if (!end.ParseFromArray(record.payload.data(), size)) {
        damage(record.offset, "the end record does not parse");
      } else if (end.task_count() != count) {
        damage(
            record.offset,
            absl::StrCat("task count mismatch: the end record says ",
                         end.task_count(), " but the snapshot holds ", count));
      }
      continue;
    }
    ++count;
    SnapshotTask task;
    if (record.type != wal::RecordType::kSnapshotTask) {
      damage(record.offset,
             absl::StrCat("record type ", static_cast<int>(record.type),
                          " where a task record was expected"));
      continue;
    }
    if (!task.ParseFromArray(record.payload.data(), size)) {
      damage(record.offset, "a task record does not parse");
      continue;
    }
    absl::StatusOr<std::unique_ptr<TaskEntry>> entry =
        TaskEntryFromSnapshot(task);
    if (!entry.ok()) {
      damage(record.offset, std::string(entry.status().message()));
      continue;
    }
    if (state == nullptr) continue;
    absl::Status restored = state->RestoreTask(*std::move(entry));
    if (!restored.ok()) {
      damage(record.offset, std::string(restored.message()));
    }
  }
  if (!seen_first) {
    damage(reader.valid_end(), "the snapshot holds no records");
  } else if (!ended) {
    damage(reader.valid_end(), "the snapshot ends without an end record");
  }
}

void Verifier::CheckSegment(const wal::SegmentFile& segment, bool newest,
                            absl::string_view contents) {
  const std::string& file = segment.name;
  ForgetGroups();
  pieces_lost_ = false;
  absl::StatusOr<uint64_t> header =
      wal::DecodeFileHeader(contents, wal::kSegmentMagic, file);
  if (!header.ok()) {
    if (newest && wal::IsTornHeader(contents)) {
      Report(
          Problem::Kind::kTornHeader, file, 0,
          absl::StrCat("the header is ",
                       contents.size() < wal::kFileHeaderSize
                           ? absl::StrCat("short (", contents.size(), " bytes)")
                           : "zeroed",
                       ": the writer died creating the segment (or is "
                       "creating it now); Open removes it"),
          /*valid_records_follow=*/false, /*repaired_by_open=*/true);
      return;
    }
    const bool unsupported = absl::IsFailedPrecondition(header.status());
    Report(unsupported ? Problem::Kind::kUnsupportedVersion
                       : Problem::Kind::kBadHeader,
           file, 0, Detail(header.status(), file));
    if (unsupported || contents.size() < wal::kFileHeaderSize) {
      MarkAllLost();
      return;
    }
    // Only the header is damaged as far as we know: check the records.
  } else if (*header != segment.seq) {
    Report(Problem::Kind::kHeaderNameMismatch, file, wal::kFileHeaderLsnOffset,
           absl::StrCat("the header says segment ", *header,
                        " but the file name says ", segment.seq));
  }

  auto reader = std::make_unique<wal::LogReader>(contents, file);
  wal::LogReader::Record record;
  while (true) {
    absl::StatusOr<bool> more = reader->Read(&record);
    if (more.ok()) {
      if (!*more) break;
      CheckRecord(file, record);
      Progress(record.offset);
      continue;
    }
    const uint64_t offset = reader->valid_end();
    const std::string what = Detail(more.status(), file);
    if (!reader->ValidRecordFollows()) {
      if (newest) {
        // Open cuts the log here, or at the start of a group the torn
        // write broke.
        const uint64_t cut = std::min(offset, held_start_);
        Report(Problem::Kind::kTornTail, file, cut,
               absl::StrCat(what,
                            cut < offset ? absl::StrCat(" at offset ", offset,
                                                        ", inside a group of "
                                                        "records that starts "
                                                        "here")
                                         : "",
                            "; nothing valid follows: a torn final write of ",
                            contents.size() - cut,
                            " bytes, never acknowledged; Open cuts it off"),
               /*valid_records_follow=*/false, /*repaired_by_open=*/true);
      } else {
        Report(Problem::Kind::kCorruption, file, offset,
               absl::StrCat(what,
                            "; nothing valid follows in this segment, "
                            "but it is not the newest one: ",
                            contents.size() - offset,
                            " bytes of the log are lost"));
      }
      // The groups' missing pieces were in the lost bytes.
      ForgetGroups();
      return;
    }
    // Corruption inside the segment: resume at the next valid record so
    // one run shows every damaged place.
    const std::optional<wal::LogReader::Record> next =
        NextValidRecord(contents, offset);
    if (!next.has_value()) break;  // ValidRecordFollows said otherwise.
    Report(Problem::Kind::kCorruption, file, offset,
           absl::StrCat(what,
                        "; valid records follow: the next one is at "
                        "offset ",
                        next->offset, " (partition ", next->partition, " LSN ",
                        next->lsn, "), ", next->offset - offset,
                        " bytes are damaged"),
           /*valid_records_follow=*/true);
    // Whatever records (and group pieces) the damaged bytes held are part
    // of this report, not a separate gap or incomplete group.
    MarkAllLost();
    ForgetGroups();
    pieces_lost_ = true;
    reader = std::make_unique<wal::LogReader>(contents, file, next->offset);
  }
  ReportOpenGroups(file, newest, contents.size());
}

void Verifier::ReportOpenGroups(const std::string& file, bool newest,
                                uint64_t segment_size) {
  if (open_groups_.empty()) return;
  // Describe the group that starts first.
  auto first = open_groups_.begin();
  for (auto it = open_groups_.begin(); it != open_groups_.end(); ++it) {
    if (it->second.first_offset < first->second.first_offset) first = it;
  }
  const auto& [leader, group] = *first;
  std::string message =
      absl::StrCat("the group of ", group.pieces, " records led by partition ",
                   leader.first, " LSN ", leader.second, " has only ",
                   group.seen, " of its pieces in the segment");
  if (open_groups_.size() > 1) {
    absl::StrAppend(&message, " (and ", open_groups_.size() - 1,
                    " more groups are incomplete)");
  }
  if (newest) {
    absl::StrAppend(&message,
                    ": the flush that wrote it was cut short, never "
                    "acknowledged; Open cuts the log here (",
                    segment_size - held_start_,
                    " bytes), as it does a torn tail");
  } else {
    absl::StrAppend(&message,
                    ", and later segments follow: a group never spans "
                    "segments, so pieces are lost");
  }
  Report(Problem::Kind::kIncompleteGroup, file, held_start_, std::move(message),
         /*valid_records_follow=*/false,
         /*repaired_by_open=*/newest);
  ForgetGroups();
}

void Verifier::CheckRecord(const std::string& file,
                           const wal::LogReader::Record& r) {
  ++summary_.log_records;
  const bool group = r.type == wal::RecordType::kGroupTransition;
  const bool log_record = group || r.type == wal::RecordType::kTransition;
  if (!log_record) {
    Report(Problem::Kind::kBadTransition, file, r.offset,
           absl::StrCat("a record of type ", static_cast<int>(r.type),
                        " (not a log record) in a log segment"));
  }
  if (r.partition >= lanes_.size()) {
    if (log_record) {
      Report(Problem::Kind::kBadTransition, file, r.offset,
             absl::StrCat("partition ", r.partition,
                          " is outside the directory's ",
                          PartitionCount(lanes_.size())));
    }
    return;
  }
  Lane& lane = lanes_[r.partition];
  // Even a record of the wrong type holds its place in the sequence.
  CheckLsn(file, r, lane);
  if (!log_record) {
    lane.replaying = false;
    return;
  }

  absl::string_view payload = r.payload;
  if (group) {
    wal::GroupHeader header;
    if (!wal::DecodeGroupHeader(r.payload, &header, &payload)) {
      Report(Problem::Kind::kBadTransition, file, r.offset,
             absl::StrCat("partition ", r.partition, " LSN ", r.lsn,
                          ": a group record too short for its group header"));
      lane.replaying = false;
      return;
    }
    if (!CheckGroup(file, r, header)) {
      lane.replaying = false;
      return;
    }
  }
  if (!transition_.ParseFromArray(payload.data(),
                                  static_cast<int>(payload.size()))) {
    Report(Problem::Kind::kBadTransition, file, r.offset,
           absl::StrCat("partition ", r.partition, " LSN ", r.lsn,
                        ": valid checksum, but the payload does not parse "
                        "as a transition"));
    lane.replaying = false;
    return;
  }
  if (transition_.kind_case() == Transition::KIND_NOT_SET) {
    Report(Problem::Kind::kBadTransition, file, r.offset,
           absl::StrCat("partition ", r.partition, " LSN ", r.lsn,
                        ": the transition has no kind (unknown or empty)"));
    lane.replaying = false;
    return;
  }
  if (!replay_ || !lane.replaying || r.lsn <= lane.base_lsn) return;
  if (r.lsn != lane.state->last_applied_lsn() + 1) {
    // Records are missing (reported): the state cannot follow.
    lane.replaying = false;
    return;
  }
  absl::Status applied = lane.state->Apply(transition_, r.lsn);
  if (!applied.ok()) {
    Report(Problem::Kind::kDoesNotReplay, file, r.offset,
           absl::StrCat("partition ", r.partition, " LSN ", r.lsn,
                        " does not apply: ", applied.message()));
    lane.replaying = false;
    return;
  }
  ++summary_.replayed;
}

void Verifier::CheckLsn(const std::string& file,
                        const wal::LogReader::Record& r, Lane& lane) {
  const uint32_t p = r.partition;
  if (!lane.started && !lane.lost) {
    // The partition's first record in the log: records up to the snapshot
    // may have been discarded with their segments, no more.
    if (r.lsn > lane.base_lsn + 1) {
      Report(Problem::Kind::kLsnGap, file, r.offset,
             absl::StrCat(
                 "partition ", p, "'s log starts at LSN ", r.lsn, ", but ",
                 lane.has_base ? absl::StrCat("its newest valid snapshot holds "
                                              "LSNs only up to ",
                                              lane.base_lsn)
                               : std::string("it has no valid snapshot"),
                 ": ", Missing(lane.base_lsn + 1, r.lsn - 1)));
    }
  } else if (r.lsn <= lane.last_lsn) {
    Report(Problem::Kind::kLsnGap, file, r.offset,
           absl::StrCat("partition ", p, " LSN ", r.lsn, " where ",
                        lane.last_lsn + 1,
                        " was expected: an LSN repeats or goes back"));
  } else if (!lane.lost && r.lsn != lane.last_lsn + 1 &&
             r.lsn > lane.base_lsn + 1) {
    // Below the snapshot LSNs only have to ascend, as recovery allows.
    Report(Problem::Kind::kLsnGap, file, r.offset,
           absl::StrCat(
               "partition ", p, " LSN ", r.lsn, " where ", lane.last_lsn + 1,
               " was expected: ", Missing(lane.last_lsn + 1, r.lsn - 1)));
  }
  lane.started = true;
  lane.lost = false;
  lane.last_lsn = std::max(lane.last_lsn, r.lsn);
}

bool Verifier::CheckGroup(const std::string& file,
                          const wal::LogReader::Record& r,
                          const wal::GroupHeader& group) {
  const uint32_t p = r.partition;
  // The leader is the piece in the lowest partition, and written first.
  if (group.pieces < 2 || group.pieces > lanes_.size() ||
      group.leader_partition > p ||
      (group.leader_partition == p && group.leader_lsn != r.lsn)) {
    Report(Problem::Kind::kBadTransition, file, r.offset,
           absl::StrCat("partition ", p, " LSN ", r.lsn,
                        ": an invalid group header (", group.pieces,
                        " pieces, led by partition ", group.leader_partition,
                        " LSN ", group.leader_lsn, ")"));
    return false;
  }
  const std::pair<uint32_t, uint64_t> key(group.leader_partition,
                                          group.leader_lsn);
  auto it = open_groups_.find(key);
  if (it == open_groups_.end()) {
    if (group.leader_partition != p) {
      if (!pieces_lost_) {
        Report(Problem::Kind::kIncompleteGroup, file, r.offset,
               absl::StrCat("partition ", p, " LSN ", r.lsn,
                            " is a piece of the group led by partition ",
                            group.leader_partition, " LSN ", group.leader_lsn,
                            ", whose first piece is not before it in the "
                            "segment"));
      }
      return true;
    }
    open_groups_.emplace(key, OpenGroup{group.pieces, 1, r.offset});
    if (held_start_ == kNoOffset) held_start_ = r.offset;
    return true;
  }
  if (it->second.pieces != group.pieces) {
    Report(Problem::Kind::kBadTransition, file, r.offset,
           absl::StrCat("partition ", p, " LSN ", r.lsn,
                        ": the group's pieces disagree on its size (",
                        group.pieces, " here, ", it->second.pieces,
                        " at its first piece)"));
    return false;
  }
  if (++it->second.seen == group.pieces) {
    open_groups_.erase(it);
    if (open_groups_.empty()) held_start_ = kNoOffset;
  }
  return true;
}

}  // namespace

absl::string_view ProblemKindName(Problem::Kind kind) {
  switch (kind) {
    case Problem::Kind::kUnreadable:
      return "unreadable";
    case Problem::Kind::kBadHeader:
      return "bad header";
    case Problem::Kind::kUnsupportedVersion:
      return "unsupported version";
    case Problem::Kind::kBadMeta:
      return "bad META";
    case Problem::Kind::kTornHeader:
      return "torn header";
    case Problem::Kind::kHeaderNameMismatch:
      return "file/name mismatch";
    case Problem::Kind::kTornTail:
      return "torn tail";
    case Problem::Kind::kCorruption:
      return "corruption";
    case Problem::Kind::kLsnGap:
      return "LSN gap";
    case Problem::Kind::kIncompleteGroup:
      return "incomplete group";
    case Problem::Kind::kBadTransition:
      return "bad transition";
    case Problem::Kind::kDoesNotReplay:
      return "does not replay";
    case Problem::Kind::kSnapshotDamage:
      return "snapshot damage";
    case Problem::Kind::kBadOptions:
      return "bad OPTIONS";
  }
  return "unknown";
}

std::string FormatProblem(const Problem& problem) {
  return absl::StrCat(problem.file, " offset ", problem.offset, ": ",
                      ProblemKindName(problem.kind), ": ", problem.message);
}

absl::StatusOr<std::vector<Problem>> VerifyDirectory(Env* env,
                                                     const std::string& dir,
                                                     ProgressFn progress,
                                                     VerifySummary* summary) {
  // The files of one moment, however busy the owner is (wal/pinned_dir.h).
  // Only a directory too large to pin whole can change under the check; it
  // is checked again when a file vanished or problems were found and the
  // directory changed meanwhile.
  absl::Status status;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<wal::PinnedDir> view,
                             wal::PinnedDir::Pin(env, dir));
    Verifier verifier(view.get(), dir, progress);
    status = verifier.Run();
    const bool last = attempt + 1 == kMaxAttempts;
    if (status.ok()) {
      if (!verifier.problems().empty() && !view->complete() && !last) {
        TASKWAL_ASSIGN_OR_RETURN(bool changed, view->Changed());
        if (changed) continue;
      }
      if (summary != nullptr) *summary = verifier.summary();
      return std::move(verifier.problems());
    }
    if (!absl::IsNotFound(status) || view->complete()) break;
  }
  return status;
}

}  // namespace taskwal::engine
