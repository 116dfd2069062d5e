#include "engine/verify.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/snapshot.h"
#include "engine/snapshot.pb.h"
#include "engine/state_machine.h"
#include "engine/transition.pb.h"
#include "wal/coding.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/status_macros.h"
#include "wal/wal.h"

namespace taskwal::engine {
namespace {

// A file that vanishes mid-check (its owner discarded it after a snapshot)
// restarts the check; this bounds the restarts.
constexpr int kMaxAttempts = 5;
// Progress is reported at least this often within a file.
constexpr uint64_t kProgressStepBytes = 1 << 20;
// The rebuilt state only serves to check that records apply; history
// length does not change whether they do.
constexpr int kShards = 16;
constexpr size_t kHistoryPerTask = 32;

// The message of a reader or header status without the "<file>: " and
// "... at offset N: " prefixes that Problem already carries.
std::string Detail(const absl::Status& status, absl::string_view file) {
  absl::string_view m = status.message();
  absl::ConsumePrefix(&m, file);
  absl::ConsumePrefix(&m, ": ");
  for (absl::string_view prefix :
       {"damaged record at offset ", "bad file header at offset "}) {
    if (absl::ConsumePrefix(&m, prefix)) {
      const size_t colon = m.find(": ");
      if (colon != absl::string_view::npos) m.remove_prefix(colon + 2);
    }
  }
  return std::string(m);
}

// "LSN 5 is missing", "LSNs 5..9 are missing".
std::string Missing(uint64_t first, uint64_t last) {
  return first == last
             ? absl::StrCat("LSN ", first, " is missing")
             : absl::StrCat("LSNs ", first, "..", last, " are missing");
}

// As recovery judges a segment header: short or all zeros means the
// writer died creating the file.
bool IsTornHeader(absl::string_view contents) {
  if (contents.size() < wal::kFileHeaderSize) return true;
  return std::all_of(contents.begin(), contents.end(),
                     [](char c) { return c == 0; });
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

class Verifier {
 public:
  Verifier(Env* env, const std::string& dir, const ProgressFn& progress)
      : env_(env), dir_(dir), progress_(progress) {}

  // kNotFound: a file vanished (or dir does not exist); the caller retries.
  absl::Status Run();

  std::vector<Problem>& problems() { return problems_; }
  const VerifySummary& summary() const { return summary_; }

 private:
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

  // Checks one snapshot, restoring it into *state. Returns whether Open
  // would load it.
  bool CheckSnapshot(const SnapshotFile& snapshot, absl::string_view contents,
                     StateMachine* state);
  void CheckSegment(const wal::SegmentFile& segment, bool newest,
                    absl::string_view contents);
  // One valid log record at its place in the chain.
  void CheckRecord(const std::string& file, const wal::LogReader::Record& r);
  // The chain of LSNs (or the replay) can no longer be followed.
  void StopReplay() { replaying_ = false; }

  Env* const env_;
  const std::string dir_;
  const ProgressFn& progress_;

  std::vector<Problem> problems_;
  VerifySummary summary_;
  uint64_t bytes_total_ = 0;
  uint64_t bytes_before_file_ = 0;  // Sum of the sizes of files done.
  uint64_t last_progress_ = 0;

  // The newest snapshot that loads, replayed onto as the log is read.
  std::unique_ptr<StateMachine> state_;
  uint64_t base_lsn_ = 0;
  bool replaying_ = true;
  // The LSN the next log record should carry; nullopt when unknown (an
  // unreadable segment).
  std::optional<uint64_t> expected_lsn_;
  bool first_segment_ = true;
  Transition transition_;
};

absl::StatusOr<std::optional<std::string>> Verifier::Read(
    const std::string& name) {
  absl::StatusOr<std::string> contents =
      env_->ReadFileToString(absl::StrCat(dir_, "/", name));
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
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SnapshotFile> snapshots,
                           ListSnapshots(env_, dir_));
  TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                           env_->GetChildren(dir_));
  std::vector<wal::SegmentFile> segments;
  for (const std::string& name : children) {
    wal::SegmentFile s;
    if (wal::ParseSegmentFileName(name, &s.first_lsn)) {
      s.name = name;
      segments.push_back(std::move(s));
    }
  }
  std::sort(segments.begin(), segments.end(),
            [](const wal::SegmentFile& a, const wal::SegmentFile& b) {
              return a.first_lsn < b.first_lsn;
            });
  for (const SnapshotFile& s : snapshots) {
    TASKWAL_ASSIGN_OR_RETURN(
        uint64_t size, env_->GetFileSize(absl::StrCat(dir_, "/", s.name)));
    bytes_total_ += size;
  }
  for (const wal::SegmentFile& s : segments) {
    TASKWAL_ASSIGN_OR_RETURN(
        uint64_t size, env_->GetFileSize(absl::StrCat(dir_, "/", s.name)));
    bytes_total_ += size;
  }
  summary_.snapshots = snapshots.size();
  summary_.segments = segments.size();
  summary_.bytes = bytes_total_;
  Progress(0);

  // Newest first, as recovery tries them: the first that loads is the base
  // the log is replayed onto.
  for (const SnapshotFile& snapshot : snapshots) {
    TASKWAL_ASSIGN_OR_RETURN(std::optional<std::string> contents,
                             Read(snapshot.name));
    if (contents.has_value()) {
      auto state = std::make_unique<StateMachine>(kShards, kHistoryPerTask);
      if (CheckSnapshot(snapshot, *contents, state.get()) &&
          state_ == nullptr) {
        state_ = std::move(state);
        base_lsn_ = state_->last_applied_lsn();
      }
      bytes_before_file_ += contents->size();
    }
    Progress(0);
  }
  if (state_ == nullptr) {
    state_ = std::make_unique<StateMachine>(kShards, kHistoryPerTask);
  }
  summary_.replay_base_lsn = base_lsn_;

  for (size_t i = 0; i < segments.size(); ++i) {
    TASKWAL_ASSIGN_OR_RETURN(std::optional<std::string> contents,
                             Read(segments[i].name));
    if (!contents.has_value()) {
      expected_lsn_.reset();
      StopReplay();
      first_segment_ = false;
      continue;
    }
    CheckSegment(segments[i], i + 1 == segments.size(), *contents);
    bytes_before_file_ += contents->size();
    Progress(0);
  }
  return absl::OkStatus();
}

bool Verifier::CheckSnapshot(const SnapshotFile& snapshot,
                             absl::string_view contents, StateMachine* state) {
  const std::string& file = snapshot.name;
  absl::StatusOr<uint64_t> header =
      wal::DecodeFileHeader(contents, wal::kSnapshotMagic, file);
  if (!header.ok()) {
    Report(absl::IsFailedPrecondition(header.status())
               ? Problem::Kind::kUnsupportedVersion
               : Problem::Kind::kBadHeader,
           file, 0, Detail(header.status(), file));
    return false;
  }
  if (*header != snapshot.lsn) {
    Report(Problem::Kind::kHeaderNameMismatch, file, wal::kFileHeaderLsnOffset,
           absl::StrCat("header says LSN ", *header, " but the file name says ",
                        snapshot.lsn));
  }

  auto damage = [&](uint64_t offset, std::string message) {
    Report(Problem::Kind::kSnapshotDamage, file, offset, std::move(message));
  };
  bool loads = true;
  bool seen_first = false;
  bool ended = false;
  uint64_t count = 0;
  SnapshotMeta meta;
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
      return false;
    }
    if (!*more) break;
    Progress(record.offset);
    if (ended) {
      damage(record.offset, "records after the end record");
      loads = false;
      break;
    }
    const auto size = static_cast<int>(record.payload.size());
    if (!seen_first) {
      seen_first = true;
      if (record.type != wal::RecordType::kSnapshotMeta) {
        damage(record.offset, absl::StrCat("the first record has type ",
                                           static_cast<int>(record.type),
                                           ", not a snapshot meta record"));
        loads = false;
      } else {
        if (!meta.ParseFromArray(record.payload.data(), size)) {
          damage(record.offset, "the snapshot meta record does not parse");
          loads = false;
        } else if (meta.lsn() != *header) {
          damage(record.offset,
                 absl::StrCat("the meta record says LSN ", meta.lsn(),
                              " but the header says ", *header));
          loads = false;
        }
        continue;
      }
    }
    if (record.type == wal::RecordType::kSnapshotEnd) {
      ended = true;
      SnapshotEnd end;
      if (!end.ParseFromArray(record.payload.data(), size)) {
        damage(record.offset, "the end record does not parse");
        loads = false;
      } else if (end.task_count() != count) {
        damage(
            record.offset,
            absl::StrCat("task count mismatch: the end record says ",
                         end.task_count(), " but the snapshot holds ", count));
        loads = false;
      }
      continue;
    }
    ++count;
    SnapshotTask task;
    if (record.type != wal::RecordType::kSnapshotTask) {
      damage(record.offset,
             absl::StrCat("record type ", static_cast<int>(record.type),
                          " where a task record was expected"));
      loads = false;
      continue;
    }
    if (!task.ParseFromArray(record.payload.data(), size)) {
      damage(record.offset, "a task record does not parse");
      loads = false;
      continue;
    }
    absl::StatusOr<std::unique_ptr<TaskEntry>> entry =
        TaskEntryFromSnapshot(task);
    if (!entry.ok()) {
      damage(record.offset, std::string(entry.status().message()));
      loads = false;
      continue;
    }
    absl::Status restored = state->RestoreTask(*std::move(entry));
    if (!restored.ok()) {
      damage(record.offset, std::string(restored.message()));
      loads = false;
    }
  }
  if (!seen_first) {
    damage(reader.valid_end(), "the snapshot holds no records");
    return false;
  }
  if (!ended) {
    damage(reader.valid_end(), "the snapshot ends without an end record");
    return false;
  }
  if (loads) state->RestoreMeta(meta);
  return loads;
}

void Verifier::CheckSegment(const wal::SegmentFile& segment, bool newest,
                            absl::string_view contents) {
  const std::string& file = segment.name;
  absl::StatusOr<uint64_t> header =
      wal::DecodeFileHeader(contents, wal::kSegmentMagic, file);
  if (!header.ok()) {
    if (newest && IsTornHeader(contents)) {
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
    StopReplay();
    if (unsupported || contents.size() < wal::kFileHeaderSize) {
      expected_lsn_.reset();
      first_segment_ = false;
      return;
    }
    // Only the header is damaged as far as we know: check the records,
    // trusting the LSN in the file name.
  } else if (*header != segment.first_lsn) {
    Report(Problem::Kind::kHeaderNameMismatch, file, wal::kFileHeaderLsnOffset,
           absl::StrCat("header says first LSN ", *header,
                        " but the file name says ", segment.first_lsn));
    StopReplay();
  }

  // Between segments. Records at or below the replay base may be missing
  // (their segments were discarded after a snapshot), as recovery allows.
  const uint64_t first = segment.first_lsn;
  if (first_segment_) {
    if (first > base_lsn_ + 1) {
      Report(Problem::Kind::kLsnGap, file, 0,
             absl::StrCat("the log starts at LSN ", first, " but ",
                          base_lsn_ == 0
                              ? std::string("there is no valid snapshot")
                              : absl::StrCat("the newest valid snapshot "
                                             "covers only LSNs up to ",
                                             base_lsn_),
                          ": ", Missing(base_lsn_ + 1, first - 1)));
      StopReplay();
    }
  } else if (expected_lsn_.has_value() && first != *expected_lsn_ &&
             !(first > *expected_lsn_ && first <= base_lsn_ + 1)) {
    Report(Problem::Kind::kLsnGap, file, 0,
           first > *expected_lsn_
               ? absl::StrCat("the segment starts at LSN ", first,
                              " but the log so far ends at LSN ",
                              *expected_lsn_ - 1, ": ",
                              Missing(*expected_lsn_, first - 1),
                              " (a segment is missing)")
               : absl::StrCat("the segment starts at LSN ", first,
                              " but the previous segment already reaches LSN ",
                              *expected_lsn_ - 1, " (segments overlap)"));
    StopReplay();
  }
  first_segment_ = false;
  expected_lsn_ = first;

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
        Report(Problem::Kind::kTornTail, file, offset,
               absl::StrCat(what,
                            "; nothing valid follows: a torn final "
                            "write of ",
                            contents.size() - offset,
                            " bytes, never acknowledged; Open cuts it off"),
               /*valid_records_follow=*/false, /*repaired_by_open=*/true);
      } else {
        Report(Problem::Kind::kCorruption, file, offset,
               absl::StrCat(what,
                            "; nothing valid follows in this segment, "
                            "but it is not the newest one: ",
                            contents.size() - offset,
                            " bytes of the log are lost"));
        StopReplay();
      }
      break;
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
                        next->offset, " (LSN ", next->lsn, "), ",
                        next->offset - offset, " bytes are damaged"),
           /*valid_records_follow=*/true);
    StopReplay();
    // The LSNs lost in the damaged bytes are part of this report, not a
    // separate gap.
    expected_lsn_ = next->lsn;
    reader = std::make_unique<wal::LogReader>(contents, file, next->offset);
  }
}

void Verifier::CheckRecord(const std::string& file,
                           const wal::LogReader::Record& record) {
  ++summary_.log_records;
  if (summary_.first_lsn == 0) summary_.first_lsn = record.lsn;
  summary_.last_lsn = std::max(summary_.last_lsn, record.lsn);

  if (expected_lsn_.has_value() && record.lsn != *expected_lsn_) {
    Report(Problem::Kind::kLsnGap, file, record.offset,
           record.lsn > *expected_lsn_
               ? absl::StrCat(
                     "LSN ", record.lsn, " where ", *expected_lsn_,
                     " was expected: ", Missing(*expected_lsn_, record.lsn - 1))
               : absl::StrCat("LSN ", record.lsn, " where ", *expected_lsn_,
                              " was expected: an LSN repeats or goes back"));
    StopReplay();
  }
  expected_lsn_ = record.lsn + 1;

  if (record.type != wal::RecordType::kTransition) {
    Report(Problem::Kind::kBadTransition, file, record.offset,
           absl::StrCat("a record of type ", static_cast<int>(record.type),
                        " (a snapshot record) in a log segment"));
    StopReplay();
    return;
  }
  if (!transition_.ParseFromArray(record.payload.data(),
                                  static_cast<int>(record.payload.size()))) {
    Report(Problem::Kind::kBadTransition, file, record.offset,
           absl::StrCat("LSN ", record.lsn,
                        ": valid checksum, but the payload does not parse "
                        "as a transition"));
    StopReplay();
    return;
  }
  if (transition_.kind_case() == Transition::KIND_NOT_SET) {
    Report(Problem::Kind::kBadTransition, file, record.offset,
           absl::StrCat("LSN ", record.lsn,
                        ": the transition has no kind (unknown or empty)"));
    StopReplay();
    return;
  }
  if (!replaying_ || record.lsn <= base_lsn_) return;
  if (record.lsn != state_->last_applied_lsn() + 1) {
    StopReplay();
    return;
  }
  absl::Status applied = state_->Apply(transition_, record.lsn);
  if (!applied.ok()) {
    Report(Problem::Kind::kDoesNotReplay, file, record.offset,
           absl::StrCat("LSN ", record.lsn,
                        " does not apply: ", applied.message()));
    StopReplay();
    return;
  }
  ++summary_.replayed;
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
    case Problem::Kind::kTornHeader:
      return "torn header";
    case Problem::Kind::kHeaderNameMismatch:
      return "header/name LSN mismatch";
    case Problem::Kind::kTornTail:
      return "torn tail";
    case Problem::Kind::kCorruption:
      return "corruption";
    case Problem::Kind::kLsnGap:
      return "LSN gap";
    case Problem::Kind::kBadTransition:
      return "bad transition";
    case Problem::Kind::kDoesNotReplay:
      return "does not replay";
    case Problem::Kind::kSnapshotDamage:
      return "snapshot damage";
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
  absl::Status status;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    Verifier verifier(env, dir, progress);
    status = verifier.Run();
    if (status.ok()) {
      if (summary != nullptr) *summary = verifier.summary();
      return std::move(verifier.problems());
    }
    // The directory itself is missing: no point in retrying.
    if (!absl::IsNotFound(status) || !env->FileExists(dir)) break;
  }
  return status;
}

}  // namespace taskwal::engine
