#include "engine/verify.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/snapshot.h"
#include "engine/snapshot.pb.h"
#include "engine/transition.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/fault_injection_env.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"

namespace taskwal::engine {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kDir[] = "/db";

struct StoredRecord {
  wal::RecordType type;
  uint32_t partition;
  uint64_t lsn;
  std::string payload;
  uint64_t offset;
};

// A file split into its header and records, to damage and re-encode.
struct ParsedFile {
  uint64_t header_lsn = 0;
  std::vector<StoredRecord> records;
};

// Where a record lies in the log.
struct RecordPlace {
  std::string segment;
  uint64_t offset = 0;
};

// Data directories written by the real engine on a FaultInjectionEnv, then
// damaged byte by byte. The parameter is the directory's partition count.
class VerifyTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  uint32_t partitions() const { return GetParam(); }

  EngineOptions Options() {
    EngineOptions o;
    o.data_dir = kDir;
    o.env = &env_;
    o.clock = &clock_;
    o.partitions = partitions();
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    o.segment_bytes = 4096;  // The smallest allowed: many segments.
    o.random_seed = 3;
    return o;
  }

  static TaskSpec Spec(const std::string& key) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = "t";
    spec.payload = std::string(300, 'p');
    return spec;
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
      ASSERT_TRUE((*engine)->Submit(Spec(absl::StrCat(prefix, "-", i))).ok());
    }
    for (int i = 0; i < n / 2; ++i) {
      clock_.Advance(absl::Seconds(1));
      absl::StatusOr<ClaimedTask> c = (*engine)->ClaimNext("w", {});
      ASSERT_TRUE(c.ok()) << c.status();
      if (i % 3 == 0) {
        ASSERT_TRUE((*engine)->Fail(c->claim, "x").ok());
      } else {
        ASSERT_TRUE((*engine)->Complete(c->claim, "ok").ok());
      }
    }
    ASSERT_TRUE((*engine)->Close().ok());
  }

  // Submits a few tasks, then (last) one batch whose keys span partitions:
  // a group of records. Returns the segment holding the group.
  // The first three tasks carry `filler` bytes of payload each; with
  // filler, the segment may grow to 1 MiB.
  std::string PopulateWithGroupAtTheEnd(const std::string& prefix,
                                        size_t filler = 0) {
    EngineOptions options = Options();
    if (filler > 0) options.segment_bytes = 1 << 20;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return "";
    for (int i = 0; i < 3; ++i) {
      TaskSpec spec = Spec(absl::StrCat(prefix, "-", i));
      spec.payload = std::string(filler, 'f');
      EXPECT_TRUE((*engine)->Submit(spec).ok());
    }
    std::vector<TaskSpec> batch;
    for (int i = 0; i < 8; ++i) {
      batch.push_back(Spec(absl::StrCat(prefix, "-batch-", i)));
      batch.back().payload = "small";
    }
    EXPECT_TRUE((*engine)->SubmitBatch(batch).ok());
    EXPECT_TRUE((*engine)->Close().ok());
    return Segments().back();
  }

  // Makes the group whose first piece is the first group record of
  // `segment` incomplete, without a gap: its last piece becomes a plain
  // transition of the same partition and LSN. Returns the group's first
  // piece.
  StoredRecord BreakFirstGroup(const std::string& segment) {
    ParsedFile parsed = Parse(segment, wal::kSegmentMagic);
    std::optional<size_t> leader;
    std::optional<size_t> last_piece;
    wal::GroupHeader leader_header;
    for (size_t i = 0; i < parsed.records.size(); ++i) {
      const StoredRecord& r = parsed.records[i];
      if (r.type != wal::RecordType::kGroupTransition) continue;
      wal::GroupHeader h;
      absl::string_view transition;
      EXPECT_TRUE(wal::DecodeGroupHeader(r.payload, &h, &transition));
      if (!leader.has_value()) {
        leader = i;
        leader_header = h;
      } else if (h.leader_partition == leader_header.leader_partition &&
                 h.leader_lsn == leader_header.leader_lsn) {
        last_piece = i;
      }
    }
    EXPECT_TRUE(leader.has_value() && last_piece.has_value())
        << segment << " holds no group of two pieces";
    if (!leader.has_value() || !last_piece.has_value()) return {};
    StoredRecord& piece = parsed.records[*last_piece];
    piece.type = wal::RecordType::kTransition;
    piece.payload = piece.payload.substr(wal::kGroupHeaderSize);
    Write(segment, wal::kSegmentMagic, parsed);
    return parsed.records[*leader];
  }

  std::vector<std::string> Children() {
    absl::StatusOr<std::vector<std::string>> children = env_.GetChildren(kDir);
    EXPECT_TRUE(children.ok()) << children.status();
    return children.ok() ? *std::move(children) : std::vector<std::string>();
  }
  std::vector<std::string> Segments() {
    std::vector<std::string> names;
    for (const std::string& name : Children()) {
      uint64_t seq;
      if (wal::ParseSegmentFileName(name, &seq)) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  std::vector<std::string> Snapshots() {
    std::vector<std::string> names;
    for (const std::string& name : Children()) {
      uint64_t first_segment;
      uint32_t partition;
      if (ParseSnapshotFileName(name, &first_segment, &partition)) {
        names.push_back(name);
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  // The snapshot file holding the most tasks (with several partitions,
  // one may hold few).
  std::string LargestSnapshot() {
    std::string largest;
    size_t most = 0;
    for (const std::string& name : Snapshots()) {
      const size_t n = Parse(name, wal::kSnapshotMagic).records.size();
      if (n > most) {
        most = n;
        largest = name;
      }
    }
    return largest;
  }

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

  // The records of a file whose header may be damaged.
  static std::vector<StoredRecord> Records(const std::string& contents,
                                           const std::string& name) {
    std::vector<StoredRecord> records;
    wal::LogReader reader(contents, name);
    wal::LogReader::Record r;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&r);
      if (!more.ok() || !*more) break;
      records.push_back(
          {r.type, r.partition, r.lsn, std::string(r.payload), r.offset});
    }
    return records;
  }
  ParsedFile Parse(const std::string& name, absl::string_view magic) {
    ParsedFile parsed;
    const std::string c = Contents(name);
    parsed.header_lsn = *wal::DecodeFileHeader(c, magic, name);
    parsed.records = Records(c, name);
    return parsed;
  }
  void Write(const std::string& name, absl::string_view magic,
             const ParsedFile& parsed) {
    std::string c = wal::EncodeFileHeader(magic, parsed.header_lsn);
    for (const StoredRecord& r : parsed.records) {
      wal::AppendRecord(r.type, r.partition, r.lsn, r.payload, &c);
    }
    Overwrite(name, c);
  }

  // The first record of `partition` after `offset` in segment `from`, in
  // log order (that segment first, then the later ones).
  std::optional<RecordPlace> NextRecordOf(uint32_t partition,
                                          const std::string& from,
                                          uint64_t offset) {
    for (const std::string& segment : Segments()) {
      if (segment < from) continue;
      for (const StoredRecord& r : Parse(segment, wal::kSegmentMagic).records) {
        if (r.partition == partition && (segment > from || r.offset > offset)) {
          return RecordPlace{segment, r.offset};
        }
      }
    }
    return std::nullopt;
  }

  // Appends to segment `name` a valid transition for a task that does not
  // exist (it passes its checksum and parses, but does not apply), in the
  // partition of the segment's last record; returns it.
  StoredRecord AppendRecordThatDoesNotApply(const std::string& name) {
    ParsedFile parsed = Parse(name, wal::kSegmentMagic);
    EXPECT_FALSE(parsed.records.empty());
    Transition bogus;
    bogus.set_time_micros(1);
    bogus.mutable_complete()->set_task_id(999999);  // No such task.
    StoredRecord extra = parsed.records.back();
    extra.type = wal::RecordType::kTransition;
    extra.lsn += 1;
    extra.payload = bogus.SerializeAsString();
    parsed.records.push_back(extra);
    Write(name, wal::kSegmentMagic, parsed);
    return extra;
  }

  std::map<std::string, std::string> AllFiles() {
    std::map<std::string, std::string> files;
    for (const std::string& name : Children()) {
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

  absl::StatusCode OpenCode() {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options());
    if (engine.ok()) {
      EXPECT_TRUE((*engine)->Close().ok());
    }
    return engine.status().code();
  }

  FaultInjectionEnv env_{/*seed=*/11};
  ManualClock clock_;
};

INSTANTIATE_TEST_SUITE_P(Partitions, VerifyTest, ::testing::Values(1u, 4u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat("P", info.param);
                         });

// Tests of groups, which need several partitions.
class VerifyGroupTest : public VerifyTest {};
INSTANTIATE_TEST_SUITE_P(Partitions, VerifyGroupTest, ::testing::Values(4u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat("P", info.param);
                         });

TEST_P(VerifyTest, CleanDirectoryHasNoProblems) {
  Populate("a", 30);
  Populate("b", 30, /*snapshot_first=*/true);
  ASSERT_GE(Segments().size(), 3u);
  ASSERT_EQ(Snapshots().size(), partitions());  // One snapshot.
  VerifySummary summary;
  EXPECT_THAT(Verify(&summary), IsEmpty());
  EXPECT_EQ(summary.partitions, partitions());
  EXPECT_EQ(summary.snapshots, partitions());
  EXPECT_EQ(summary.segments, Segments().size());
  EXPECT_GT(summary.last_lsn, summary.replay_base_lsn);
  EXPECT_GT(summary.replay_base_lsn, 0u);
  EXPECT_EQ(summary.replayed, summary.last_lsn - summary.replay_base_lsn);
  // The sums are the ones Open reports.
  EngineOptions options = Options();
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->Recovery().last_lsn, summary.last_lsn);
  EXPECT_EQ((*engine)->Recovery().snapshot_lsn, summary.replay_base_lsn);
  EXPECT_EQ((*engine)->Recovery().records_replayed, summary.replayed);
  EXPECT_TRUE((*engine)->Close().ok());
}

TEST_P(VerifyTest, EmptyDirectoryIsClean) {
  ASSERT_TRUE(env_.CreateDir(kDir).ok());
  VerifySummary summary;
  EXPECT_THAT(Verify(&summary), IsEmpty());
  EXPECT_EQ(summary.partitions, 0u);
}

TEST_P(VerifyTest, MissingDirectoryIsNotFound) {
  EXPECT_EQ(VerifyDirectory(&env_, "/nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(VerifyTest, FlippedByteMidLogIsCorruptionFollowedByValidRecords) {
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
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyTest, EveryDamagedPlaceIsReported) {
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

TEST_P(VerifyTest, TornTailOfNewestSegmentIsRepairable) {
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
  EXPECT_EQ(OpenCode(), absl::StatusCode::kOk);
  EXPECT_THAT(Verify(), IsEmpty());
}

// Whether Open repairs a torn tail is Open's to say: beside damage that
// makes Open fail, the torn tail is repaired by nothing.
TEST_P(VerifyTest, TornTailBesideFatalDamageIsNotRepairedByOpen) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  const ParsedFile older = Parse(segments[1], wal::kSegmentMagic);
  ASSERT_GE(older.records.size(), 3u);
  FlipByte(segments[1], older.records[1].offset + wal::kRecordHeaderSize + 2);
  const std::string newest = segments.back();
  const ParsedFile parsed = Parse(newest, wal::kSegmentMagic);
  ASSERT_FALSE(parsed.records.empty());
  const uint64_t cut = parsed.records.back().offset;
  Overwrite(newest, Contents(newest).substr(0, cut + 10));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kCorruption);
  EXPECT_EQ(problems[1].kind, Problem::Kind::kTornTail);
  EXPECT_EQ(problems[1].offset, cut);
  EXPECT_FALSE(problems[1].repaired_by_open);
  EXPECT_THAT(problems[1].message, HasSubstr("but Open does not repair it"));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

// The records lost with an older segment's tail show where the log goes on:
// at the next record of the partition that lost one.
TEST_P(VerifyTest, TruncatedOlderSegmentIsCorruptionAndGap) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  const ParsedFile parsed = Parse(segments[1], wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 2u);
  const StoredRecord& lost = parsed.records.back();
  const std::optional<RecordPlace> next =
      NextRecordOf(lost.partition, segments[1], lost.offset);
  ASSERT_TRUE(next.has_value());
  Overwrite(segments[1], Contents(segments[1]).substr(0, lost.offset + 3));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kCorruption);
  EXPECT_EQ(problems[0].file, segments[1]);
  EXPECT_EQ(problems[0].offset, lost.offset);
  EXPECT_FALSE(problems[0].valid_records_follow);
  EXPECT_EQ(problems[1].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[1].file, next->segment);
  EXPECT_EQ(problems[1].offset, next->offset);
  EXPECT_THAT(problems[1].message,
              HasSubstr(absl::StrCat("partition ", lost.partition, " LSN ",
                                     lost.lsn + 1, " where ", lost.lsn,
                                     " was expected")));
}

TEST_P(VerifyTest, MissingSegmentIsLsnGap) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_GE(segments.size(), 3u);
  uint64_t seq = 0;
  ASSERT_TRUE(wal::ParseSegmentFileName(segments[1], &seq));
  ASSERT_TRUE(env_.RemoveFile(Path(segments[1])).ok());

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[0].file, segments[2]);
  EXPECT_EQ(problems[0].offset, 0u);
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat("segment ", seq, " is missing")));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyTest, MissingFirstSegmentWithoutSnapshotIsLsnGap) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  ASSERT_TRUE(env_.RemoveFile(Path(segments[0])).ok());

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[0].file, segments[1]);
  EXPECT_THAT(problems[0].message, HasSubstr("no valid snapshot"));
  EXPECT_THAT(problems[0].message, HasSubstr("segment 1 is missing"));
}

// A record missing from the middle of one partition's sequence: reported
// at that partition's next record, wherever it lies; the other partitions'
// records are not affected.
TEST_P(VerifyTest, LsnGapInOnePartition) {
  Populate("a", 40);
  const std::string victim = Segments()[1];
  ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  const StoredRecord missing = parsed.records[1];
  parsed.records.erase(parsed.records.begin() + 1);
  Write(victim, wal::kSegmentMagic, parsed);
  const std::optional<RecordPlace> next =
      NextRecordOf(missing.partition, victim, parsed.records[0].offset);
  ASSERT_TRUE(next.has_value());

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kLsnGap);
  EXPECT_EQ(problems[0].file, next->segment);
  EXPECT_EQ(problems[0].offset, next->offset);
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat("partition ", missing.partition, " LSN ",
                                     missing.lsn + 1, " where ", missing.lsn,
                                     " was expected")));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyTest, HeaderSequenceDisagreeingWithNameIsReported) {
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
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyTest, BadHeaderStillChecksTheRecords) {
  Populate("a", 40);
  const std::vector<std::string> segments = Segments();
  const std::string victim = segments[1];
  FlipByte(victim, 3);  // In the magic.
  const std::vector<StoredRecord> records = Records(Contents(victim), victim);
  ASSERT_GE(records.size(), 2u);
  FlipByte(victim, records[1].offset + 20);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadHeader);
  EXPECT_EQ(problems[0].file, victim);
  EXPECT_EQ(problems[0].offset, 0u);
  EXPECT_EQ(problems[1].kind, Problem::Kind::kCorruption);
  EXPECT_EQ(problems[1].offset, records[1].offset);
}

TEST_P(VerifyTest, TornHeaderOfNewestSegmentIsRepairable) {
  Populate("a", 10);
  uint64_t seq = 0;
  ASSERT_TRUE(wal::ParseSegmentFileName(Segments().back(), &seq));
  const std::string torn = wal::SegmentFileName(seq + 1);
  Overwrite(torn, std::string(10, '\0'));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kTornHeader);
  EXPECT_EQ(problems[0].file, torn);
  EXPECT_TRUE(problems[0].repaired_by_open);
  EXPECT_EQ(OpenCode(), absl::StatusCode::kOk);
  EXPECT_THAT(Verify(), IsEmpty());
}

TEST_P(VerifyTest, ValidChecksumThatIsNotATransitionIsReported) {
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
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

// A record of a snapshot's type in a segment: not a transition, but it
// still holds its LSN, so no gap follows it.
TEST_P(VerifyTest, RecordOfAnotherTypeIsBadTransitionWithoutAGap) {
  Populate("a", 40);
  const std::string victim = Segments()[1];
  ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  parsed.records[1].type = wal::RecordType::kSnapshotTask;
  Write(victim, wal::kSegmentMagic, parsed);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadTransition);
  EXPECT_EQ(problems[0].offset, parsed.records[1].offset);
  EXPECT_THAT(problems[0].message, HasSubstr("a record of type 3"));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyTest, RecordOfAPartitionOutOfRangeIsReported) {
  Populate("a", 20);
  const std::string victim = Segments().back();
  ParsedFile parsed = Parse(victim, wal::kSegmentMagic);
  ASSERT_FALSE(parsed.records.empty());
  StoredRecord stray = parsed.records.back();
  stray.partition = partitions();  // One past the last.
  stray.lsn = 1;
  parsed.records.push_back(stray);
  Write(victim, wal::kSegmentMagic, parsed);
  const ParsedFile rewritten = Parse(victim, wal::kSegmentMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadTransition);
  EXPECT_EQ(problems[0].offset, rewritten.records.back().offset);
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat("partition ", partitions(),
                                     " is outside the directory's ",
                                     partitions(), " partition")));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyTest, TransitionThatDoesNotApplyIsReported) {
  Populate("a", 10);
  const std::string victim = Segments().back();
  AppendRecordThatDoesNotApply(victim);
  const ParsedFile rewritten = Parse(victim, wal::kSegmentMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kDoesNotReplay);
  EXPECT_EQ(problems[0].offset, rewritten.records.back().offset);
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

// Replay applies records on other threads while the log is still being
// read: a record that does not apply, followed by a torn tail, must still
// stop Open before the tail is cut (Open changes nothing when it fails).
TEST_P(VerifyTest, RecordThatDoesNotApplyBeforeATornTailChangesNothing) {
  Populate("a", 10);
  const std::string victim = Segments().back();
  const StoredRecord extra = AppendRecordThatDoesNotApply(victim);
  // Half of one more record: a torn final write, which Open would cut.
  std::string torn;
  wal::AppendRecord(wal::RecordType::kTransition, extra.partition,
                    extra.lsn + 1, extra.payload, &torn);
  Overwrite(victim, Contents(victim) + torn.substr(0, torn.size() / 2));

  const std::map<std::string, std::string> before = AllFiles();
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(Options());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(opened.status().message()),
              HasSubstr("does not replay"));
  EXPECT_EQ(AllFiles(), before) << "a failed Open changed the directory";
}

TEST_P(VerifyTest, FlippedByteInSnapshotIsSnapshotDamage) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = LargestSnapshot();
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

TEST_P(VerifyTest, SnapshotTaskCountMismatchIsReported) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = LargestSnapshot();
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
  // Without the snapshot the partition's log must start at LSN 1, and it
  // does: nothing else is wrong.
  EXPECT_EQ(problems.size(), 1u);
}

// A history entry that is not a well-formed HistoryEntry makes the task
// record damage, for verify as for Open.
TEST_P(VerifyTest, HistoryEntryThatDoesNotParseIsReported) {
  Populate("a", 5);
  Populate("b", 5, /*snapshot_first=*/true);
  // The first task record that has a history.
  std::string snapshot;
  ParsedFile parsed;
  size_t index = 0;
  SnapshotTask task;
  for (const std::string& name : Snapshots()) {
    ParsedFile p = Parse(name, wal::kSnapshotMagic);
    for (size_t i = 1; i + 1 < p.records.size() && snapshot.empty(); ++i) {
      ASSERT_TRUE(task.ParseFromString(p.records[i].payload));
      if (task.history_size() > 1) {
        snapshot = name;
        parsed = p;
        index = i;
      }
    }
    if (!snapshot.empty()) break;
  }
  ASSERT_FALSE(snapshot.empty());
  const int entries = task.history_size();
  *task.mutable_history(0) = "\xff\xff";  // A truncated varint key.
  parsed.records[index].payload = task.SerializeAsString();
  Write(snapshot, wal::kSnapshotMagic, parsed);
  const ParsedFile rewritten = Parse(snapshot, wal::kSnapshotMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_GE(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].file, snapshot);
  EXPECT_EQ(problems[0].offset, rewritten.records[index].offset);
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat("a history entry (1 of ", entries,
                                     ") does not parse")));
}

TEST_P(VerifyTest, RecordsAfterSnapshotEndAreReported) {
  Populate("a", 5);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = LargestSnapshot();
  ParsedFile parsed = Parse(snapshot, wal::kSnapshotMagic);
  ASSERT_GE(parsed.records.size(), 3u);
  parsed.records.push_back(parsed.records[1]);
  Write(snapshot, wal::kSnapshotMagic, parsed);
  const ParsedFile rewritten = Parse(snapshot, wal::kSnapshotMagic);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].offset, rewritten.records.back().offset);
  EXPECT_THAT(problems[0].message, HasSubstr("after the end record"));
}

// A snapshot written for another partitioning of the tasks (its meta says
// another partition count than META): Open sets it aside, verify says so.
TEST_P(VerifyTest, SnapshotOfAnotherPartitionCountIsSnapshotDamage) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = LargestSnapshot();
  ParsedFile parsed = Parse(snapshot, wal::kSnapshotMagic);
  SnapshotMeta meta;
  ASSERT_TRUE(meta.ParseFromString(parsed.records[0].payload));
  meta.set_partitions(partitions() * 2);
  parsed.records[0].payload = meta.SerializeAsString();
  Write(snapshot, wal::kSnapshotMagic, parsed);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].file, snapshot);
  EXPECT_EQ(problems[0].offset, parsed.records[0].offset);
  EXPECT_THAT(
      problems[0].message,
      HasSubstr(absl::StrCat("of ", partitions() * 2,
                             " partitions, but this one has ", partitions())));
  EXPECT_FALSE(problems[0].repaired_by_open);
  // Open falls back to the whole log for that partition.
  EXPECT_EQ(OpenCode(), absl::StatusCode::kOk);
}

TEST_P(VerifyTest, SnapshotOfAPartitionOutsideTheDirectoryIsReported) {
  Populate("a", 5, /*snapshot_first=*/true);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = Snapshots().back();
  uint64_t first_segment = 0;
  uint32_t partition = 0;
  ASSERT_TRUE(ParseSnapshotFileName(snapshot, &first_segment, &partition));
  const std::string stray = SnapshotFileName(first_segment, partitions());
  Overwrite(stray, Contents(snapshot));

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kSnapshotDamage);
  EXPECT_EQ(problems[0].file, stray);
  EXPECT_THAT(problems[0].message, HasSubstr("Open ignores the file"));
}

TEST_P(VerifyTest, SnapshotNamedForAnotherSegmentIsReported) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  const std::string snapshot = Snapshots().front();
  uint64_t first_segment = 0;
  uint32_t partition = 0;
  ASSERT_TRUE(ParseSnapshotFileName(snapshot, &first_segment, &partition));
  // Newer by its name than the real one, so checked (and rejected) first.
  const std::string renamed = SnapshotFileName(first_segment + 1, partition);
  Overwrite(renamed, Contents(snapshot));

  VerifySummary summary;
  const std::vector<Problem> problems = Verify(&summary);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kHeaderNameMismatch);
  EXPECT_EQ(problems[0].file, renamed);
  EXPECT_THAT(
      problems[0].message,
      HasSubstr(absl::StrCat("starts at segment ", first_segment,
                             " but the file name says ", first_segment + 1)));
  // The real one is the replay base.
  EXPECT_GT(summary.replay_base_lsn, 0u);
}

TEST_P(VerifyTest, MissingMetaBesideSegmentsIsBadMeta) {
  Populate("a", 20);
  ASSERT_TRUE(env_.RemoveFile(Path("META")).ok());

  VerifySummary summary;
  const std::vector<Problem> problems = Verify(&summary);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadMeta);
  EXPECT_EQ(problems[0].file, "META");
  EXPECT_FALSE(problems[0].repaired_by_open);
  EXPECT_THAT(problems[0].message, HasSubstr("missing"));
  EXPECT_THAT(problems[0].message, HasSubstr("without replaying"));
  EXPECT_EQ(summary.partitions, 0u);
  EXPECT_GT(summary.log_records, 0u);
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

// With a snapshot, the partition count it names is used for the rest of
// the check, which replays the log as usual.
TEST_P(VerifyTest, MissingMetaBesideSnapshotsIsCheckedWithTheirCount) {
  Populate("a", 20);
  Populate("b", 5, /*snapshot_first=*/true);
  ASSERT_TRUE(env_.RemoveFile(Path("META")).ok());

  VerifySummary summary;
  const std::vector<Problem> problems = Verify(&summary);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadMeta);
  EXPECT_THAT(
      problems[0].message,
      HasSubstr(absl::StrCat("checked as ", partitions(), " partition")));
  EXPECT_GT(summary.replayed, 0u);
}

TEST_P(VerifyTest, DamagedMetaIsBadMeta) {
  Populate("a", 5);
  FlipByte("META", 17);  // In the header's LSN field: the CRC fails.

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadMeta);
  EXPECT_EQ(problems[0].file, "META");
  EXPECT_THAT(problems[0].message, HasSubstr("checksum mismatch"));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

// OPTIONS holds no tasks: damage there is reported (the CLI refuses the
// directory until it is fixed) but does not stop Open, and the owner's next
// Open rewrites the file.
TEST_P(VerifyTest, DamagedOptionsIsReportedAndTheOwnersOpenRewritesIt) {
  Populate("a", 5);
  const std::string contents = Contents("OPTIONS");
  Overwrite("OPTIONS", contents.substr(0, contents.size() - 3));

  std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kBadOptions);
  EXPECT_EQ(problems[0].file, "OPTIONS");
  EXPECT_FALSE(problems[0].repaired_by_open);
  EXPECT_THAT(problems[0].message, HasSubstr("not tasks"));
  EngineOptions tool = Options();
  tool.use_stored_options = true;
  EXPECT_EQ(Engine::Open(tool).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(OpenCode(), absl::StatusCode::kOk);  // The owner's Open.
  EXPECT_THAT(Verify(), IsEmpty());
}

// A directory written before partitions: no META, segment headers of
// version 1. Reported once; nothing else is judged.
TEST_P(VerifyTest, Version1DirectoryIsUnsupported) {
  ASSERT_TRUE(env_.CreateDir(kDir).ok());
  std::string header = wal::EncodeFileHeader(wal::kSegmentMagic, 1);
  wal::EncodeFixed32(&header[wal::kFileHeaderVersionOffset], 1);
  wal::EncodeFixed32(&header[wal::kFileHeaderCrcOffset],
                     wal::crc32c::Mask(wal::crc32c::Value(
                         header.data(), wal::kFileHeaderCrcOffset)));
  const std::string segment = wal::SegmentFileName(1);
  Overwrite(segment, header + std::string(40, 'x'));
  Overwrite("snapshot-00000000000000000007.snap", "old snapshot");

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kUnsupportedVersion);
  EXPECT_EQ(problems[0].file, segment);
  EXPECT_THAT(problems[0].message, HasSubstr("version 1"));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(VerifyTest, ProgressReachesTheTotal) {
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

TEST_P(VerifyGroupTest, CompleteGroupIsClean) {
  const std::string segment = PopulateWithGroupAtTheEnd("g");
  size_t pieces = 0;
  for (const StoredRecord& r : Parse(segment, wal::kSegmentMagic).records) {
    if (r.type == wal::RecordType::kGroupTransition) ++pieces;
  }
  ASSERT_GE(pieces, 2u);
  VerifySummary summary;
  EXPECT_THAT(Verify(&summary), IsEmpty());
  EXPECT_EQ(summary.replayed, summary.log_records);
}

// The flush that wrote a group was cut short: Open cuts the log where the
// group starts, as it cuts a torn tail.
TEST_P(VerifyGroupTest, IncompleteGroupAtTheEndOfTheNewestSegmentIsTornTail) {
  const std::string segment = PopulateWithGroupAtTheEnd("g");
  const StoredRecord leader = BreakFirstGroup(segment);
  const uint64_t size = Contents(segment).size();

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kIncompleteGroup);
  EXPECT_EQ(problems[0].file, segment);
  EXPECT_EQ(problems[0].offset, leader.offset);
  EXPECT_TRUE(problems[0].repaired_by_open);
  EXPECT_THAT(problems[0].message,
              HasSubstr(absl::StrCat("led by partition ", leader.partition,
                                     " LSN ", leader.lsn)));

  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->Recovery().truncated_bytes, size - leader.offset);
  ASSERT_TRUE((*engine)->Close().ok());
  EXPECT_THAT(Verify(), IsEmpty());
}

TEST_P(VerifyGroupTest, IncompleteGroupFollowedByAnotherSegmentIsCorruption) {
  const std::string segment = PopulateWithGroupAtTheEnd("g", 2048);
  // A later session writes another segment: the last one is already past
  // this session's segment size, so it may not continue it.
  {
    EngineOptions options = Options();
    options.segment_bytes = 4096;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_TRUE((*engine)->Submit(Spec("late")).ok());
    ASSERT_TRUE((*engine)->Close().ok());
  }
  ASSERT_NE(Segments().back(), segment);
  const StoredRecord leader = BreakFirstGroup(segment);

  const std::vector<Problem> problems = Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].kind, Problem::Kind::kIncompleteGroup);
  EXPECT_EQ(problems[0].file, segment);
  EXPECT_EQ(problems[0].offset, leader.offset);
  EXPECT_FALSE(problems[0].repaired_by_open);
  EXPECT_THAT(problems[0].message, HasSubstr("later segments follow"));
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
}

TEST_P(VerifyGroupTest, GroupPieceWithoutItsFirstPieceIsReported) {
  const std::string segment = PopulateWithGroupAtTheEnd("g");
  ParsedFile parsed = Parse(segment, wal::kSegmentMagic);
  // The group's first piece becomes a plain transition: the others lead
  // nowhere.
  std::optional<size_t> leader;
  for (size_t i = 0; i < parsed.records.size() && !leader.has_value(); ++i) {
    if (parsed.records[i].type == wal::RecordType::kGroupTransition) leader = i;
  }
  ASSERT_TRUE(leader.has_value());
  StoredRecord& r = parsed.records[*leader];
  r.type = wal::RecordType::kTransition;
  r.payload = r.payload.substr(wal::kGroupHeaderSize);
  Write(segment, wal::kSegmentMagic, parsed);

  const std::vector<Problem> problems = Verify();
  ASSERT_GE(problems.size(), 1u);
  for (const Problem& p : problems) {
    EXPECT_EQ(p.kind, Problem::Kind::kIncompleteGroup);
    EXPECT_FALSE(p.repaired_by_open);
    EXPECT_THAT(p.message, HasSubstr("whose first piece is not before it"));
  }
  EXPECT_EQ(OpenCode(), absl::StatusCode::kDataLoss);
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
