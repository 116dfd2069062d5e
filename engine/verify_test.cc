#include "engine/verify.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/engine.h"
#include "api/fault_injection_env.h"
#include "engine/snapshot.h"
#include "engine/transition.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/wal.h"

namespace taskwal::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kDir[] = "/db";

struct StoredRecord {
  wal::RecordType type;
  uint64_t lsn;
  std::string payload;
  uint64_t offset;
};

// A file split into its header and records, to damage and re-encode.
struct ParsedFile {
  uint64_t header_lsn = 0;
  std::vector<StoredRecord> records;
};

// Data directories written by the real engine on a FaultInjectionEnv, then
// damaged byte by byte.
class VerifyTest : public ::testing::Test {
 protected:
  EngineOptions Options() {
    EngineOptions o;
    o.data_dir = kDir;
    o.env = &env_;
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    o.segment_bytes = 4096;  // The smallest allowed: many segments.
    o.random_seed = 3;
    return o;
  }

  // Submits n tasks (keys prefix-0...), completes every other one and fails
  // every third.
  void Populate(const std::string& prefix, int n, bool snapshot_first = false) {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options());
    ASSERT_TRUE(engine.ok()) << engine.status();
    if (snapshot_first) {
      ASSERT_TRUE((*engine)->Snapshot().ok());
    }
    for (int i = 0; i < n; ++i) {
      TaskSpec spec;
      spec.idempotency_key = absl::StrCat(prefix, "-", i);
      spec.type = "t";
      spec.payload = std::string(300, 'p');
      ASSERT_TRUE((*engine)->Submit(spec).ok());
    }
    for (int i = 0; i < n / 2; ++i) {
      clock_.Advance(absl::Seconds(1));
      absl::StatusOr<ClaimedTask> c = (*engine)->ClaimNext("w", {});
      ASSERT_TRUE(c.ok()) << c.status();
      if (i % 3 == 0) {
        ASSERT_TRUE(
            (*engine)->Fail(c->task.id(), "w", c->claim_token, "x").ok());
      } else {
        ASSERT_TRUE(
            (*engine)->Complete(c->task.id(), "w", c->claim_token, "ok").ok());
      }
    }
    ASSERT_TRUE((*engine)->Close().ok());
  }

  std::vector<std::string> Files(bool (*match)(absl::string_view, uint64_t*)) {
    std::vector<std::string> names;
    const std::vector<std::string> children = *env_.GetChildren(kDir);
    for (const std::string& name : children) {
      uint64_t lsn;
      if (match(name, &lsn)) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  std::vector<std::string> Segments() {
    return Files(&wal::ParseSegmentFileName);
  }
  std::vector<std::string> Snapshots() { return Files(&ParseSnapshotFileName); }

  std::string Path(const std::string& name) {
    return absl::StrCat(kDir, "/", name);
  }
  std::string Contents(const std::string& name) {
    absl::StatusOr<std::string> c = env_.ReadFileToString(Path(name));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : "";
  }
  void Overwrite(const std::string& name, const std::string& contents) {
    auto file = env_.NewWritableFile(Path(name));
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE((*file)->Append(contents).ok());
    ASSERT_TRUE((*file)->Sync().ok());
    ASSERT_TRUE((*file)->Close().ok());
  }
  void FlipByte(const std::string& name, uint64_t offset) {
    std::string c = Contents(name);
    ASSERT_LT(offset, c.size());
    c[offset] ^= 0x40;
    Overwrite(name, c);
  }

  ParsedFile Parse(const std::string& name, absl::string_view magic) {
    ParsedFile parsed;
    const std::string c = Contents(name);
    parsed.header_lsn = *wal::DecodeFileHeader(c, magic, name);
    wal::LogReader reader(c, name);
    wal::LogReader::Record r;
    while (*reader.Read(&r)) {
      parsed.records.push_back(
          {r.type, r.lsn, std::string(r.payload), r.offset});
    }
    return parsed;
  }
  void Write(const std::string& name, absl::string_view magic,
             const ParsedFile& parsed) {
    std::string c = wal::EncodeFileHeader(magic, parsed.header_lsn);
    for (const StoredRecord& r : parsed.records) {
      wal::AppendRecord(r.type, r.lsn, r.payload, &c);
    }
    Overwrite(name, c);
  }

  // Appends to segment `name` a valid transition for a task that does not
  // exist (it passes its checksum and parses, but does not apply); returns
  // it.
  StoredRecord AppendRecordThatDoesNotApply(const std::string& name) {
    ParsedFile parsed = Parse(name, wal::kSegmentMagic);
    EXPECT_FALSE(parsed.records.empty());
    Transition bogus;
    bogus.set_time_micros(1);
    bogus.mutable_complete()->set_task_id(999999);  // No such task.
    StoredRecord extra = parsed.records.back();
    extra.lsn += 1;
    extra.payload = bogus.SerializeAsString();
    parsed.records.push_back(extra);
    Write(name, wal::kSegmentMagic, parsed);
    return extra;
  }

  std::map<std::string, std::string> AllFiles() {
    std::map<std::string, std::string> files;
    const std::vector<std::string> children = *env_.GetChildren(kDir);
    for (const std::string& name : children) {
      files[name] = Contents(name);
    }
    return files;
  }

  // Verifies, and checks that verifying changed nothing.
  std::vector<Problem> Verify(VerifySummary* summary = nullptr) {
    const std::map<std::string, std::string> before = AllFiles();
    absl::StatusOr<std::vector<Problem>> problems =
        VerifyDirectory(&env_, kDir, nullptr, summary);
    EXPECT_TRUE(problems.ok()) << problems.status();
    EXPECT_EQ(AllFiles(), before) << "VerifyDirectory changed the directory";
    std::vector<Problem> out =
        problems.ok() ? *problems : std::vector<Problem>();
    for (const Problem& p : out) std::cerr << FormatProblem(p) << "\n";
    return out;
  }

  FaultInjectionEnv env_{/*seed=*/11};
  ManualClock clock_;
};

TEST_F(VerifyTest, CleanDirectoryHasNoProblems) {
  Populate("a", 30);
  Populate("b", 30, /*snapshot_first=*/true);
  ASSERT_GE(Segments().size(), 3u);
  ASSERT_EQ(Snapshots().size(), 1u);
  VerifySummary summary;
  EXPECT_THAT(Verify(&summary), IsEmpty());
  EXPECT_EQ(summary.snapshots, 1u);
  EXPECT_EQ(summary.segments, Segments().size());
  EXPECT_EQ(summary.first_lsn, 1u);
  EXPECT_GT(summary.last_lsn, summary.replay_base_lsn);
  EXPECT_GT(summary.replay_base_lsn, 0u);
  EXPECT_EQ(summary.replayed, summary.last_lsn - summary.replay_base_lsn);
}

TEST_F(VerifyTest, EmptyDirectoryIsClean) {
  ASSERT_TRUE(env_.CreateDir(kDir).ok());
  EXPECT_THAT(Verify(), IsEmpty());
}

TEST_F(VerifyTest, MissingDirectoryIsNotFound) {
  EXPECT_EQ(VerifyDirectory(&env_, "/nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(VerifyTest, FlippedByteMidLogIsCorruptionFollowedByValidRecords) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  const std::string victim = segments[1];
  const ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  const uint64_t offset = parsed.records[1].offset;
  FlipByte(victim, offset + wal::kRecordHeaderSize + 2);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kCorruption);
  EXPECT_EQ(problems[0].file, victim);
  EXPECT_EQ(problems[0].offset, offset);
  EXPECT_TRUE(problems[0].valid_records_follow);
  EXPECT_FALSE(problems[0].repaired_by_open);
  EXPECT_THAT(problems[0].message, HasSubstr("checksum mismatch"));
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat("offset ", parsed.records[2].offset)));
  EXPECT_THAT(FormatProblem(problems[0]),
              HasSubstr(absl::StrCat(victim, " offset ", offset)));
  // Open agrees that this is fatal.
  EXPECT_EQ(Engine::Open(Options()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(VerifyTest, EveryDamagedPlaceIsReported) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  const ParsedFile first = Parse(segments[0], wal::kSegmentMagic);
  const ParsedFile second = Parse(segments[1], wal::kSegmentMagic);
  ASSERT_GE(first.records.size(), 3u);
  FlipByte(segments[0], first.records[0].offset + 5);
  FlipByte(segments[0], first.records[2].offset + 20);
  FlipByte(segments[1], second.records[1].offset + 20);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_EQ(problems[0].file, segments[0]);
  EXPECT_EQ(problems[0].offset, first.records[0].offset);
  EXPECT_EQ(problems[1].file, segments[0]);
  EXPECT_EQ(problems[1].offset, first.records[2].offset);
  EXPECT_EQ(problems[2].file, segments[1]);
  EXPECT_EQ(problems[2].offset, second.records[1].offset);
  for (const Problem& p : problems) {
    EXPECT_EQ(p.kind, Problem::Kind::kCorruption);
  }
}

TEST_F(VerifyTest, TornTailOfNewestSegmentIsRepairable) {
  Populate("a", 10);
  const std::string newest = Segments().back();
  const std::string c = Contents(newest);
  // Half a record, as a crash in the middle of a write leaves it.
  const ParsedFile parsed = Parse(newest, wal::kSegmentMagic);
  ASSERT_FALSE(parsed.records.empty());
  const uint64_t cut = parsed.records.back().offset;
  Overwrite(newest, c.substr(0, cut + 10));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kTornTail);
  EXPECT_EQ(problems[0].file, newest);
  EXPECT_EQ(problems[0].offset, cut);
  EXPECT_FALSE(problems[0].valid_records_follow);
  EXPECT_TRUE(problems[0].repaired_by_open);
  // Open cuts it off, after which the directory is clean.
  auto engine = Engine::Open(Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->Close().ok());
  EXPECT_THAT(Verify(), IsEmpty());
}

TEST_F(VerifyTest, TruncatedOlderSegmentIsCorruptionAndGap) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  const ParsedFile parsed = Parse(segments[1], wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 2u);
  const uint64_t cut = parsed.records.back().offset;
  Overwrite(segments[1], Contents(segments[1]).substr(0, cut + 3));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kCorruption);
  EXPECT_EQ(problems[0].file, segments[1]);
  EXPECT_EQ(problems[0].offset, cut);
  EXPECT_FALSE(problems[0].valid_records_follow);
  EXPECT_EQ(problems[1].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[1].file, segments[2]);
  EXPECT_EQ(problems[1].offset, 0u);
}

TEST_F(VerifyTest, MissingSegmentIsLsnGap) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  ASSERT_TRUE(env_.RemoveFile(Path(segments[1])).ok());

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[0].file, segments[2]);
  EXPECT_EQ(problems[0].offset, 0u);
  EXPECT_THAT(problems[0].message, HasSubstr("segment is missing"));
}

TEST_F(VerifyTest, MissingFirstSegmentWithoutSnapshotIsLsnGap) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_TRUE(env_.RemoveFile(Path(segments[0])).ok());

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[0].file, segments[1]);
  EXPECT_THAT(problems[0].message, HasSubstr("no valid snapshot"));
}

TEST_F(VerifyTest, LsnGapInsideSegment) {
  Populate("a", 40);
  const std::string victim = Segments()[1];
  ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  const uint64_t missing = parsed.records[1].lsn;
  parsed.records.erase(parsed.records.begin() + 1);
  Write(victim, wal::kSegmentMagic, parsed);
  const ParsedFile rewritten = Parse(victim, wal::kSegmentMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[0].file, victim);
  EXPECT_EQ(problems[0].offset, rewritten.records[1].offset);
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat(missing + 1, " where ", missing)));
}

TEST_F(VerifyTest, HeaderLsnDisagreeingWithNameIsReported) {
  Populate("a", 40);
  const std::string victim = Segments()[1];
  ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  parsed.header_lsn += 7;
  Write(victim, wal::kSegmentMagic, parsed);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kHeaderNameMismatch);
  EXPECT_EQ(problems[0].file, victim);
  EXPECT_EQ(problems[0].offset, wal::kFileHeaderLsnOffset);
}

TEST_F(VerifyTest, BadHeaderStillChecksTheRecords) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  const std::string victim = segments[1];
  FlipByte(victim, 3);  // In the magic.
  const ParsedFile parsed = [&] {
    ParsedFile p;
    const std::string c = Contents(victim);
    wal::LogReader reader(c, victim);
    wal::LogReader::Record r;
    while (*reader.Read(&r)) {
      p.records.push_back({r.type, r.lsn, std::string(r.payload), r.offset});
    }
    return p;
  }();
  ASSERT_GE(parsed.records.size(), 2u);
  FlipByte(victim, parsed.records[1].offset + 20);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadHeader);
  EXPECT_EQ(problems[0].file, victim);
  EXPECT_EQ(problems[0].offset, 0u);
  EXPECT_EQ(problems[1].kind, Problem::Kind::kCorruption);
  EXPECT_EQ(problems[1].offset, parsed.records[1].offset);
}

TEST_F(VerifyTest, TornHeaderOfNewestSegmentIsRepairable) {
  Populate("a", 10);
  const std::vector<std::string> segments = Segments();
  uint64_t lsn = 0;
  ASSERT_TRUE(wal::ParseSegmentFileName(segments.back(), &lsn));
  const ParsedFile parsed = Parse(segments.back(), wal::kSegmentMagic);
  const std::string torn = wal::SegmentFileName(parsed.records.back().lsn + 1);
  Overwrite(torn, std::string(10, '\0'));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kTornHeader);
  EXPECT_EQ(problems[0].file, torn);
  EXPECT_TRUE(problems[0].repaired_by_open);
}

TEST_F(VerifyTest, ValidChecksumThatIsNotATransitionIsReported) {
  Populate("a", 40);
  const std::string victim = Segments()[1];
  ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  parsed.records[1].payload = "\xff\xff\xff\xff";  // Not a protobuf.
  Write(victim, wal::kSegmentMagic, parsed);
  const ParsedFile rewritten = Parse(victim, wal::kSegmentMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadTransition);
  EXPECT_EQ(problems[0].file, victim);
  EXPECT_EQ(problems[0].offset, rewritten.records[1].offset);
  EXPECT_EQ(Engine::Open(Options()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(VerifyTest, TransitionThatDoesNotApplyIsReported) {
  Populate("a", 10);
  const std::string victim = Segments().back();
  AppendRecordThatDoesNotApply(victim);
  const ParsedFile rewritten = Parse(victim, wal::kSegmentMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kDoesNotReplay);
  EXPECT_EQ(problems[0].offset, rewritten.records.back().offset);
  EXPECT_EQ(Engine::Open(Options()).status().code(),
            absl::StatusCode::kDataLoss);
}

// Replay applies records on a second thread while the log is still being
// read: a record that does not apply, followed by a torn tail, must still
// stop Open before the tail is cut (Open changes nothing when it fails).
TEST_F(VerifyTest, RecordThatDoesNotApplyBeforeATornTailChangesNothing) {
  Populate("a", 10);
  const std::string victim = Segments().back();
  const StoredRecord extra = AppendRecordThatDoesNotApply(victim);
  // Half of one more record: a torn final write, which Open would cut.
  std::string torn;
  wal::AppendRecord(wal::RecordType::kTransition, extra.lsn + 1,
                    extra.payload, &torn);
  Overwrite(victim, Contents(victim) + torn.substr(0, torn.size() / 2));

  const std::map<std::string, std::string> before = AllFiles();
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(Options());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(opened.status().message()),
              ::testing::HasSubstr("does not replay"));
  EXPECT_EQ(AllFiles(), before) << "a failed Open changed the directory";
}

TEST_F(VerifyTest, FlippedByteInSnapshotIsSnapshotDamage) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = Snapshots().front();
  const ParsedFile parsed = Parse(snapshot, wal::kSnapshotMagic);
  ASSERT_GE(parsed.records.size(), 4u);
  FlipByte(snapshot, parsed.records[2].offset + 20);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].file, snapshot);
  EXPECT_EQ(problems[0].offset, parsed.records[2].offset);
  EXPECT_TRUE(problems[0].valid_records_follow);
}

TEST_F(VerifyTest, SnapshotTaskCountMismatchIsReported) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = Snapshots().front();
  ParsedFile parsed = Parse(snapshot, wal::kSnapshotMagic);
  ASSERT_GE(parsed.records.size(), 4u);
  // Drop one task record, keeping every checksum valid.
  parsed.records.erase(parsed.records.begin() + 1);
  Write(snapshot, wal::kSnapshotMagic, parsed);
  const ParsedFile rewritten = Parse(snapshot, wal::kSnapshotMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_GE(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].file, snapshot);
  EXPECT_EQ(problems[0].offset, rewritten.records.back().offset);
  EXPECT_THAT(problems[0].message, HasSubstr("task count mismatch"));
  // Without the snapshot the log must start at LSN 1, and it does: nothing
  // else is wrong.
  EXPECT_EQ(problems.size(), 1u);
}

// A history entry that is not a well-formed HistoryEntry makes the task
// record damage, for verify as for Open.
TEST_F(VerifyTest, HistoryEntryThatDoesNotParseIsReported) {
  Populate("a", 5);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = Snapshots().front();
  ParsedFile parsed = Parse(snapshot, wal::kSnapshotMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  SnapshotTask task;
  ASSERT_TRUE(task.ParseFromString(parsed.records[1].payload));
  ASSERT_GT(task.history_size(), 0);
  *task.mutable_history(0) = "\xff\xff";  // A truncated varint key.
  parsed.records[1].payload = task.SerializeAsString();
  Write(snapshot, wal::kSnapshotMagic, parsed);
  const ParsedFile rewritten = Parse(snapshot, wal::kSnapshotMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_GE(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].offset, rewritten.records[1].offset);
  EXPECT_THAT(problems[0].message,
              HasSubstr("a history entry (1 of 3) does not parse"));
}

TEST_F(VerifyTest, RecordsAfterSnapshotEndAreReported) {
  Populate("a", 5);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = Snapshots().front();
  ParsedFile parsed = Parse(snapshot, wal::kSnapshotMagic);
  parsed.records.push_back(parsed.records[1]);
  Write(snapshot, wal::kSnapshotMagic, parsed);
  const ParsedFile rewritten = Parse(snapshot, wal::kSnapshotMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].offset, rewritten.records.back().offset);
  EXPECT_THAT(problems[0].message, HasSubstr("after the end record"));
}

TEST_F(VerifyTest, ProgressReachesTheTotal) {
  Populate("a", 30);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  absl::StatusOr<std::vector<Problem>> problems = VerifyDirectory(
      &env_, kDir,
      [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); });
  ASSERT_TRUE(problems.ok());
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.front().first, 0u);
  EXPECT_EQ(calls.back().first, calls.back().second);
  EXPECT_GT(calls.back().second, 0u);
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_GE(calls[i].first, calls[i - 1].first);
  }
}

TEST(ProblemTest, FormatNamesFileOffsetAndKind) {
  Problem p;
  p.kind = Problem::Kind::kTornTail;
  p.file = "wal-00000000000000000001.log";
  p.offset = 123;
  p.message = "truncated payload";
  EXPECT_EQ(FormatProblem(p),
            "wal-00000000000000000001.log offset 123: torn tail: truncated "
            "payload");
}

}  // namespace
}  // namespace taskwal::engine
