#include "wal/log_recovery.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "taskwal/fault_injection_env.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_test_util.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"
#include "wal/wal.h"

namespace taskwal::wal {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
constexpr char kDir[] = "/db";

std::string PathOf(absl::string_view name) { return JoinPath(kDir, name); }

// A kGroupTransition payload: the group header, then the transition.
std::string GroupPayload(uint32_t pieces, uint32_t leader_partition,
                         uint64_t leader_lsn, absl::string_view transition) {
  std::string payload(kGroupHeaderSize, '\0');
  EncodeFixed16(&payload[kGroupPiecesOffset], static_cast<uint16_t>(pieces));
  EncodeFixed16(&payload[kGroupLeaderPartitionOffset],
                static_cast<uint16_t>(leader_partition));
  EncodeFixed64(&payload[kGroupLeaderLsnOffset], leader_lsn);
  payload.append(transition.data(), transition.size());
  return payload;
}

// A segment file built by hand, record by record. Each Add returns the
// offset of the record it wrote.
class SegmentBuilder {
 public:
  explicit SegmentBuilder(uint64_t seq)
      : contents_(EncodeFileHeader(kSegmentMagic, seq)) {}

  // A transition record carrying Payload(lsn, partition).
  uint64_t Add(uint32_t partition, uint64_t lsn) {
    return AddRecord(RecordType::kTransition, partition, lsn,
                     Payload(lsn, partition));
  }
  // Records [first, last] of a partition.
  SegmentBuilder& AddRange(uint32_t partition, uint64_t first, uint64_t last) {
    for (uint64_t lsn = first; lsn <= last; ++lsn) Add(partition, lsn);
    return *this;
  }
  // A piece of the group of `pieces` led by (leader_partition, leader_lsn),
  // carrying Payload(lsn, partition).
  uint64_t AddPiece(uint32_t partition, uint64_t lsn, uint32_t pieces,
                    uint32_t leader_partition, uint64_t leader_lsn) {
    return AddRecord(RecordType::kGroupTransition, partition, lsn,
                     GroupPayload(pieces, leader_partition, leader_lsn,
                                  Payload(lsn, partition)));
  }
  uint64_t AddRecord(RecordType type, uint32_t partition, uint64_t lsn,
                     absl::string_view payload) {
    const uint64_t offset = contents_.size();
    AppendRecord(type, partition, lsn, payload, &contents_);
    return offset;
  }

  const std::string& contents() const { return contents_; }
  uint64_t size() const { return contents_.size(); }

 private:
  std::string contents_;
};

LogRecoveryOptions Options(uint32_t partitions = 1,
                           std::vector<uint64_t> after_lsn = {},
                           uint64_t first_seq = 1) {
  LogRecoveryOptions options;
  options.partitions = partitions;
  options.after_lsn = std::move(after_lsn);
  options.first_seq = first_seq;
  return options;
}

LogRecoveryOptions Salvage(LogRecoveryOptions options) {
  options.salvage = true;
  return options;
}

LogRecoveryOptions ReadOnly(LogRecoveryOptions options) {
  options.read_only = true;
  return options;
}

class LogRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir(kDir), IsOk()); }

  void WriteSegment(uint64_t seq, absl::string_view contents) {
    WriteDurableFile(&env_, kDir, SegmentFileName(seq), contents);
  }
  void WriteSegment(uint64_t seq, const SegmentBuilder& builder) {
    WriteSegment(seq, builder.contents());
  }

  std::string Read(absl::string_view name) {
    absl::StatusOr<std::string> contents = env_.ReadFileToString(PathOf(name));
    EXPECT_THAT(contents, IsOk()) << name;
    return contents.ok() ? *contents : "";
  }

  uint64_t SizeOf(absl::string_view name) {
    absl::StatusOr<uint64_t> size = env_.GetFileSize(PathOf(name));
    EXPECT_THAT(size, IsOk()) << name;
    return size.ok() ? *size : 0;
  }

  // Every file in kDir with its contents: to check that nothing changed.
  std::map<std::string, std::string> Files() {
    std::map<std::string, std::string> files;
    absl::StatusOr<std::vector<std::string>> names = env_.GetChildren(kDir);
    EXPECT_THAT(names, IsOk());
    if (!names.ok()) return files;
    for (const std::string& name : *names) files[name] = Read(name);
    return files;
  }

  absl::StatusOr<Recovered> Recover(
      const LogRecoveryOptions& options = LogRecoveryOptions(),
      int* before_change_calls = nullptr) {
    return RecoverDir(&env_, kDir, options, before_change_calls);
  }

  // Appends Payload(lsn) for the next `count` LSNs of partition 0, syncing
  // each.
  void AppendAndSync(Wal& wal, int count) {
    for (int i = 0; i < count; ++i) {
      const uint64_t lsn = wal.last_lsn(0) + 1;
      const std::string payload = Payload(lsn);
      ASSERT_THAT(wal.Append(0, payload.size(),
                             [&](char* dst) {
                               std::memcpy(dst, payload.data(), payload.size());
                             }),
                  IsOkAndHolds(lsn));
      ASSERT_THAT(wal.Sync(0, lsn), IsOk());
    }
  }

  WalOptions WriterOptions() {
    WalOptions options;
    options.env = &env_;
    options.dir = kDir;
    options.sync = WalSync::kAlways;
    return options;
  }

  // A closed one-partition log of `records` records, written by Wal and
  // spread over segments of about segment_bytes.
  std::vector<SegmentFile> BuildRotatedLog(int records,
                                           uint64_t segment_bytes) {
    WalOptions options = WriterOptions();
    options.segment_bytes = segment_bytes;
    absl::StatusOr<std::unique_ptr<Wal>> wal =
        Wal::Open(options, {}, {0}, /*next_seq=*/1);
    EXPECT_THAT(wal, IsOk());
    if (!wal.ok()) return {};
    AppendAndSync(**wal, records);
    EXPECT_THAT((*wal)->Close(), IsOk());
    absl::StatusOr<DirectoryListing> listing = ListDirectory(&env_, kDir);
    EXPECT_THAT(listing, IsOk());
    return listing.ok() ? listing->segments : std::vector<SegmentFile>();
  }

  // The LSNs in a segment file of partition 0, first to last.
  std::vector<uint64_t> LsnsIn(absl::string_view name) {
    const std::string contents = Read(name);
    std::vector<uint64_t> lsns;
    LogReader reader(contents, std::string(name));
    LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      EXPECT_THAT(more, IsOk());
      if (!more.ok() || !*more) break;
      lsns.push_back(record.lsn);
    }
    return lsns;
  }

  FaultInjectionEnv env_{/*seed=*/301};
};

TEST_F(LogRecoveryTest, EmptyDirectoryRecoversNothing) {
  absl::StatusOr<Recovered> recovered = Recover(Options(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, IsEmpty());
  EXPECT_THAT(recovered->result.segments, IsEmpty());
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{0, 0, 0}));
  EXPECT_EQ(recovered->result.next_seq, 1u);
  EXPECT_EQ(recovered->result.records_replayed, 0u);
}

TEST_F(LogRecoveryTest, RecordsOfEveryPartitionComeBackInLsnOrder) {
  SegmentBuilder first(1);
  first.AddRange(0, 1, 3).AddRange(2, 1, 2).AddRange(1, 1, 1);
  first.Add(0, 4);
  WriteSegment(1, first);
  WriteSegment(2, SegmentBuilder(2).AddRange(1, 2, 4).AddRange(0, 5, 6));

  absl::StatusOr<Recovered> recovered = Recover(Options(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 6, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 4, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(1, 2, 2)));
  EXPECT_EQ(recovered->records.size(), 12u);
  EXPECT_EQ(recovered->result.records_replayed, 12u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{6, 4, 2}));
  EXPECT_EQ(SeqsOf(recovered->result.segments), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(recovered->result.next_seq, 3u);
  EXPECT_EQ(recovered->result.truncated_bytes, 0u);
  EXPECT_THAT(recovered->result.notes, IsEmpty());
}

TEST_F(LogRecoveryTest, RejectsInvalidOptions) {
  EXPECT_THAT(Recover(Salvage(ReadOnly(Options()))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Recover(Options(0)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Recover(Options(kMaxPartitions + 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(LogRecoveryTest, TornTailIsTruncatedAndTheLogContinues) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const std::string name = SegmentFileName(1);
  const std::string path = PathOf(name);
  const std::string contents = Read(name);
  // Cut the last record short.
  ASSERT_THAT(env_.TruncateFile(path, contents.size() - 5), IsOk());
  const uint64_t record_size = kRecordHeaderSize + Payload(10).size();
  const uint64_t valid_end = contents.size() - record_size;

  absl::StatusOr<Recovered> recovered = Recover();
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 9)));
  EXPECT_EQ(recovered->result.last_lsn, std::vector<uint64_t>{9});
  EXPECT_EQ(recovered->result.truncated_bytes, record_size - 5);
  EXPECT_THAT(recovered->result.notes,
              Contains(AllOf(HasSubstr("torn"), HasSubstr(name),
                             HasSubstr(absl::StrCat("offset ", valid_end)))));
  EXPECT_EQ(SizeOf(name), valid_end);
  EXPECT_EQ(recovered->result.next_seq, 2u);

  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(WriterOptions(), recovered->result.segments,
                recovered->result.last_lsn, recovered->result.next_seq);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);
  ASSERT_THAT((*wal)->Close(), IsOk());

  recovered = Recover();
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 10)));
  EXPECT_EQ(recovered->result.truncated_bytes, 0u);
  EXPECT_THAT(recovered->result.notes, IsEmpty());
}

TEST_F(LogRecoveryTest, ReadOnlyRecoverySkipsTornDataWithoutChangingFiles) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const std::string name = SegmentFileName(1);
  const std::string contents = Read(name);

  // A torn header of a last segment.
  WriteSegment(2, "TWAL");
  absl::StatusOr<Recovered> recovered = Recover(ReadOnly(Options()));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 10)));
  EXPECT_THAT(recovered->result.notes, Contains(HasSubstr(SegmentFileName(2))));
  EXPECT_EQ(Read(SegmentFileName(2)), "TWAL");
  EXPECT_EQ(SeqsOf(recovered->result.segments), std::vector<uint64_t>{1});
  ASSERT_THAT(env_.RemoveFile(PathOf(SegmentFileName(2))), IsOk());

  // A torn tail.
  ASSERT_THAT(env_.TruncateFile(PathOf(name), contents.size() - 5), IsOk());
  recovered = Recover(ReadOnly(Options()));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 9)));
  EXPECT_EQ(recovered->result.last_lsn, std::vector<uint64_t>{9});
  EXPECT_THAT(recovered->result.notes, Contains(HasSubstr("skipped")));
  EXPECT_EQ(Read(name), contents.substr(0, contents.size() - 5));
}

TEST_F(LogRecoveryTest, ZeroedTailIsTruncated) {
  BuildRotatedLog(/*records=*/5, /*segment_bytes=*/64 << 20);
  const std::string name = SegmentFileName(1);
  const std::string contents = Read(name);
  WriteSegment(1, contents + std::string(300, '\0'));

  absl::StatusOr<Recovered> recovered = Recover();
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 5)));
  EXPECT_EQ(recovered->result.truncated_bytes, 300u);
  EXPECT_EQ(Read(name), contents);
}

TEST_F(LogRecoveryTest, DamageInAMiddleSegmentIsDataLoss) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  const std::string name = segments[1].name;
  std::string contents = Read(name);
  const uint64_t first_lsn = LsnsIn(name).front();
  const uint64_t second_record =
      kFileHeaderSize + kRecordHeaderSize + Payload(first_lsn).size();
  contents[second_record + kRecordHeaderSize + 2] ^= 0x10;  // In the payload.
  WriteSegment(segments[1].seq, contents);
  const std::map<std::string, std::string> before = Files();

  EXPECT_THAT(Recover(),
              StatusIs(kDataLoss,
                       AllOf(HasSubstr(name),
                             HasSubstr(absl::StrCat("offset ", second_record)),
                             HasSubstr("checksum mismatch"))));
  EXPECT_EQ(Files(), before);  // Nothing was changed.
}

TEST_F(LogRecoveryTest,
       DamageFollowedByValidRecordsInTheLastSegmentIsDataLoss) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const std::string name = SegmentFileName(1);
  std::string contents = Read(name);
  contents[kFileHeaderSize + 1] ^= 0x01;  // CRC of the first record.
  WriteSegment(1, contents);
  EXPECT_THAT(
      Recover(),
      StatusIs(kDataLoss,
               AllOf(HasSubstr(name),
                     HasSubstr(absl::StrCat("offset ", kFileHeaderSize)))));
  EXPECT_EQ(Read(name), contents);
}

TEST_F(LogRecoveryTest, MissingMiddleSegmentIsDataLoss) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  ASSERT_THAT(env_.RemoveFile(PathOf(segments[1].name)), IsOk());
  const std::map<std::string, std::string> before = Files();
  EXPECT_THAT(Recover(),
              StatusIs(kDataLoss,
                       AllOf(HasSubstr(segments[2].name),
                             HasSubstr(absl::StrCat("segment ", segments[1].seq,
                                                    " is missing")))));
  EXPECT_EQ(Files(), before);
}

// Segments from first_seq on are numbered without a gap, from first_seq.
TEST_F(LogRecoveryTest, MissingFirstSegmentIsDataLoss) {
  WriteSegment(2, SegmentBuilder(2).AddRange(0, 1, 3));
  EXPECT_THAT(Recover(),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(2)),
                                        HasSubstr("segment 1 is "
                                                  "missing"))));
  // Below first_seq, a segment need not be there.
  WriteSegment(5, SegmentBuilder(5).AddRange(0, 4, 5));
  EXPECT_THAT(Recover(Options(1, {}, /*first_seq=*/4)),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(5)),
                                        HasSubstr("segment 4 is missing"))));
  absl::StatusOr<Recovered> recovered = Recover(Options(1, {3}, 5));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(4, 5)));
  EXPECT_EQ(SeqsOf(recovered->result.segments), (std::vector<uint64_t>{2, 5}));
}

TEST_F(LogRecoveryTest, LsnGapInsideASegmentIsDataLoss) {
  SegmentBuilder segment(1);
  segment.AddRange(0, 1, 2);
  const uint64_t offset = segment.Add(0, 4);
  segment.Add(0, 5);
  WriteSegment(1, segment);
  EXPECT_THAT(
      Recover(),
      StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(1)),
                                HasSubstr(absl::StrCat("offset ", offset)),
                                HasSubstr("LSN 4 where 3"))));
}

TEST_F(LogRecoveryTest, LsnGapBetweenSegmentsIsDataLoss) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 5));
  WriteSegment(2, SegmentBuilder(2).AddRange(0, 8, 10));
  EXPECT_THAT(Recover(),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(2)),
                                        HasSubstr("LSN 8 where 6"))));
}

TEST_F(LogRecoveryTest, OverlappingSegmentsAreDataLoss) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 5));
  WriteSegment(2, SegmentBuilder(2).AddRange(0, 4, 8));
  EXPECT_THAT(Recover(),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(2)),
                                        HasSubstr("LSN 4 where 6"))));
}

// Each partition's LSNs above after_lsn must follow on without a gap; the
// other partitions do not excuse or hide it.
TEST_F(LogRecoveryTest, GapAboveAfterLsnIsDataLossPerPartition) {
  SegmentBuilder segment(1);
  segment.AddRange(0, 1, 3).AddRange(1, 1, 2);
  segment.Add(0, 4);
  const uint64_t offset = segment.Add(1, 4);  // Partition 1 skips 3.
  segment.Add(0, 5);
  WriteSegment(1, segment);
  const std::map<std::string, std::string> before = Files();
  EXPECT_THAT(
      Recover(Options(2)),
      StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(1)),
                                HasSubstr(absl::StrCat("offset ", offset)),
                                HasSubstr("partition 1 LSN 4 where 3"))));
  // Above a snapshot of partition 1 through 2, still a gap.
  EXPECT_THAT(Recover(Options(2, {0, 2})),
              StatusIs(kDataLoss, HasSubstr("partition 1 LSN 4 where 3")));
  // The first record above after_lsn must be after_lsn + 1.
  EXPECT_THAT(Recover(Options(2, {2, 0})),
              StatusIs(kDataLoss, HasSubstr("partition 1 LSN 4 where 3")));
  // A snapshot through 3 covers the gap.
  absl::StatusOr<Recovered> recovered = Recover(Options(2, {0, 3}));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 5, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(4, 4, 1)));
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{5, 4}));
  EXPECT_EQ(Files(), before);
}

// At or below a partition's after_lsn (records a snapshot holds), LSNs need
// only ascend: discarded segments and cut tails leave gaps there.
TEST_F(LogRecoveryTest, LsnsAtOrBelowAfterLsnNeedOnlyAscend) {
  SegmentBuilder segment(1);
  for (uint64_t lsn : {2, 5, 9, 10}) segment.Add(0, lsn);
  segment.AddRange(0, 11, 12);
  segment.AddRange(1, 1, 2);
  WriteSegment(1, segment);
  absl::StatusOr<Recovered> recovered = Recover(Options(2, {10, 0}));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(11, 12, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 2, 1)));
  EXPECT_EQ(recovered->result.records_replayed, 4u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{12, 2}));
  // The same records with after_lsn 7 have a gap above it.
  EXPECT_THAT(Recover(Options(2, {7, 0})),
              StatusIs(kDataLoss, HasSubstr("partition 0 LSN 9 where 8")));

  // Descending below after_lsn is damage all the same.
  SegmentBuilder descending(1);
  descending.Add(0, 5);
  const uint64_t offset = descending.Add(0, 3);
  descending.Add(0, 11);
  WriteSegment(1, descending);
  // Any LSN above 5 would do there, so no single one was expected.
  EXPECT_THAT(
      Recover(Options(1, {10})),
      StatusIs(kDataLoss,
               AllOf(HasSubstr(SegmentFileName(1)),
                     HasSubstr(absl::StrCat("offset ", offset)),
                     HasSubstr("partition 0 LSN 3 after LSN 5: LSNs must "
                               "ascend"))));
}

// When a partition's first record in the log lies past its snapshot's LSN
// S + 1, the message names S + 1 (not 1, nor another partition's) and the
// snapshot that makes it the expected one.
TEST_F(LogRecoveryTest, GapAfterTheSnapshotNamesTheSnapshotsNextLsn) {
  SegmentBuilder segment(3);
  segment.AddRange(1, 1, 2);
  const uint64_t offset = segment.Add(0, 12);  // The snapshot holds 1..9.
  segment.Add(0, 13);
  WriteSegment(3, segment);
  const std::map<std::string, std::string> before = Files();
  EXPECT_THAT(
      Recover(Options(2, {9, 0}, /*first_seq=*/3)),
      StatusIs(kDataLoss,
               AllOf(HasSubstr(SegmentFileName(3)),
                     HasSubstr(absl::StrCat("offset ", offset)),
                     HasSubstr("partition 0 LSN 12 where 10 was expected "
                               "(the snapshot holds the partition through "
                               "LSN 9)"))));
  EXPECT_EQ(Files(), before);
  // One partition: the same.
  WriteSegment(3, SegmentBuilder(3).AddRange(0, 12, 13));
  EXPECT_THAT(Recover(Options(1, {9}, /*first_seq=*/3)),
              StatusIs(kDataLoss, HasSubstr("partition 0 LSN 12 where 10 was "
                                            "expected (the snapshot holds")));
  // A record at the snapshot's LSN in the log: the gap follows that record,
  // which is named as usual.
  WriteSegment(3, SegmentBuilder(3).AddRange(0, 9, 9).AddRange(0, 12, 13));
  EXPECT_THAT(
      Recover(Options(1, {9}, /*first_seq=*/3)),
      StatusIs(kDataLoss, AllOf(HasSubstr("partition 0 LSN 12 where 10 was "
                                          "expected"),
                                Not(HasSubstr("snapshot")))));
  // With the snapshot through 11 there is no gap.
  EXPECT_THAT(Recover(Options(1, {11}, /*first_seq=*/3)), IsOk());
}

TEST_F(LogRecoveryTest, RecordsCoveredByAfterLsnAreSkipped) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 10).AddRange(1, 1, 3));
  absl::StatusOr<Recovered> recovered = Recover(Options(2, {4, 3}));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(5, 10)));
  EXPECT_THAT(recovered->Of(1), IsEmpty());
  EXPECT_EQ(recovered->result.records_replayed, 6u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{10, 3}));

  // A snapshot newer than the whole log.
  recovered = Recover(Options(2, {20, 7}));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, IsEmpty());
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{20, 7}));
}

// Segments below first_seq are not read at all: garbage in them neither
// stops recovery nor shows up in the notes, and they stay listed (for a
// later DiscardBefore).
TEST_F(LogRecoveryTest, SegmentsBelowFirstSeqAreNotRead) {
  WriteSegment(1, "not a segment at all");
  WriteSegment(2, std::string(kFileHeaderSize, '\0'));
  WriteSegment(3, SegmentBuilder(3).AddRange(0, 11, 15));
  const std::map<std::string, std::string> before = Files();
  absl::StatusOr<Recovered> recovered =
      Recover(Options(1, {12}, /*first_seq=*/3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(13, 15)));
  EXPECT_THAT(recovered->result.notes, IsEmpty());
  EXPECT_EQ(SeqsOf(recovered->result.segments),
            (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(recovered->result.next_seq, 4u);
  EXPECT_EQ(Files(), before);
  // Without the snapshot the same segments are damage.
  EXPECT_THAT(Recover(Options(1, {12})), StatusIs(kDataLoss));
}

TEST_F(LogRecoveryTest, HeaderSeqDifferentFromFileNameIsDataLoss) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 5));
  WriteSegment(2, SegmentBuilder(3).AddRange(0, 6, 8));
  EXPECT_THAT(Recover(),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(2)),
                                        HasSubstr("header says segment 3"))));
}

TEST_F(LogRecoveryTest, VersionOneSegmentIsFailedPreconditionAndLeftAlone) {
  std::string v1 = SegmentBuilder(1).AddRange(0, 1, 2).contents();
  EncodeFixed32(&v1[kFileHeaderVersionOffset], 1);
  EncodeFixed32(&v1[kFileHeaderCrcOffset],
                crc32c::Mask(crc32c::Value(v1.data(), kFileHeaderCrcOffset)));
  WriteSegment(1, v1);
  EXPECT_THAT(Recover(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                  HasSubstr("before partitions")));
  EXPECT_EQ(Read(SegmentFileName(1)), v1);
}

TEST_F(LogRecoveryTest, RecordOfAnUnknownPartitionIsDataLoss) {
  SegmentBuilder segment(1);
  segment.AddRange(0, 1, 2);
  const uint64_t offset = segment.Add(3, 1);
  WriteSegment(1, segment);
  EXPECT_THAT(
      Recover(Options(3)),
      StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(1)),
                                HasSubstr(absl::StrCat("offset ", offset)),
                                HasSubstr("partition 3 is out of range"))));
  EXPECT_THAT(Recover(Options(4)), IsOk());
}

TEST_F(LogRecoveryTest, RecordOfAnotherFileKindIsDataLoss) {
  for (RecordType type : {RecordType::kSnapshotMeta, RecordType::kSnapshotTask,
                          RecordType::kSnapshotEnd, RecordType::kDirectoryMeta,
                          RecordType::kStoredOptions}) {
    SCOPED_TRACE(static_cast<int>(type));
    SegmentBuilder segment(1);
    segment.AddRange(0, 1, 2);
    const uint64_t offset = segment.AddRecord(type, 0, 3, "x");
    WriteSegment(1, segment);
    EXPECT_THAT(
        Recover(),
        StatusIs(kDataLoss, AllOf(HasSubstr(absl::StrCat("offset ", offset)),
                                  HasSubstr("unexpected record type"))));
  }
}

TEST_F(LogRecoveryTest, TornHeaderOfTheLastSegmentIsRemoved) {
  const std::string full_header = EncodeFileHeader(kSegmentMagic, 2);
  for (const std::string& torn :
       {std::string(), full_header.substr(0, 10),
        full_header.substr(0, kFileHeaderSize - 1),
        std::string(kFileHeaderSize, '\0'), std::string(100, '\0')}) {
    SCOPED_TRACE(absl::StrCat("torn header of ", torn.size(), " bytes"));
    FaultInjectionEnv env(/*seed=*/3);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WriteDurableFile(&env, kDir, SegmentFileName(1),
                     SegmentBuilder(1).AddRange(0, 1, 5).contents());
    WriteDurableFile(&env, kDir, SegmentFileName(2), torn);

    absl::StatusOr<Recovered> recovered = RecoverDir(&env, kDir, Options());
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 5)));
    EXPECT_EQ(recovered->result.last_lsn, std::vector<uint64_t>{5});
    EXPECT_EQ(SeqsOf(recovered->result.segments), std::vector<uint64_t>{1});
    EXPECT_EQ(recovered->result.next_seq, 2u);
    EXPECT_THAT(recovered->result.notes,
                Contains(HasSubstr(SegmentFileName(2))));
    EXPECT_FALSE(env.FileExists(PathOf(SegmentFileName(2))));
    // Durably removed.
    env.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    EXPECT_FALSE(env.FileExists(PathOf(SegmentFileName(2))));
  }
}

TEST_F(LogRecoveryTest, TornHeaderOfAMiddleSegmentIsDataLoss) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 5));
  WriteSegment(2, std::string(kFileHeaderSize, '\0'));
  WriteSegment(3, SegmentBuilder(3).AddRange(0, 6, 8));
  EXPECT_THAT(Recover(), StatusIs(kDataLoss, HasSubstr(SegmentFileName(2))));
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(2))));
}

// A segment being created when its writer died; its name was never made
// durable, so no record was ever written to it.
TEST_F(LogRecoveryTest, TemporarySegmentsAreRemovedUnlessReadOnly) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 2));
  const std::string tmp = SegmentFileName(2) + ".tmp";
  WriteDurableFile(&env_, kDir, tmp, EncodeFileHeader(kSegmentMagic, 2));
  ASSERT_THAT(Recover(ReadOnly(Options())), IsOk());
  EXPECT_TRUE(env_.FileExists(PathOf(tmp)));
  absl::StatusOr<Recovered> recovered = Recover();
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 2)));
  EXPECT_FALSE(env_.FileExists(PathOf(tmp)));
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_FALSE(env_.FileExists(PathOf(tmp)));
}

TEST_F(LogRecoveryTest, SalvageKeepsTheValidPrefixAndSetsTheRestAside) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  const std::string name = segments[1].name;
  std::string contents = Read(name);
  const uint64_t kept_last = LsnsIn(name).front();  // Its first record only.
  const uint64_t second_record =
      kFileHeaderSize + kRecordHeaderSize + Payload(kept_last).size();
  contents[second_record + kRecordHeaderSize + 2] ^= 0x10;
  WriteSegment(segments[1].seq, contents);
  ASSERT_THAT(Recover(), StatusIs(kDataLoss));

  int before_change_calls = 0;
  absl::StatusOr<Recovered> recovered =
      Recover(Salvage(Options()), &before_change_calls);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(before_change_calls, 1);
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, kept_last)));
  EXPECT_EQ(recovered->result.last_lsn, std::vector<uint64_t>{kept_last});
  EXPECT_EQ(SeqsOf(recovered->result.segments),
            (std::vector<uint64_t>{segments[0].seq, segments[1].seq}));
  EXPECT_EQ(recovered->result.next_seq, segments[1].seq + 1);
  EXPECT_EQ(recovered->result.truncated_bytes, contents.size() - second_record);
  EXPECT_EQ(Read(name), contents.substr(0, second_record));
  EXPECT_THAT(recovered->result.notes, Contains(HasSubstr("salvage")));
  for (size_t i = 2; i < segments.size(); ++i) {
    const std::string later = PathOf(segments[i].name);
    EXPECT_FALSE(env_.FileExists(later)) << later;
    EXPECT_TRUE(env_.FileExists(later + ".salvaged")) << later;
    EXPECT_THAT(
        recovered->result.notes,
        Contains(AllOf(HasSubstr(segments[i].name), HasSubstr(".salvaged"))));
  }

  // The renames are durable, and the log goes on after the kept prefix.
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(SegmentSeqs(&env_, kDir), SeqsOf(recovered->result.segments));
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(WriterOptions(), recovered->result.segments,
                recovered->result.last_lsn, recovered->result.next_seq);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);
  ASSERT_THAT((*wal)->Close(), IsOk());
  recovered = Recover();
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, kept_last + 1)));
}

TEST_F(LogRecoveryTest, SalvageSetsAsideASegmentWithADamagedHeader) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 5));
  std::string bad = SegmentBuilder(2).AddRange(0, 6, 8).contents();
  bad[3] ^= 0x01;  // Magic.
  WriteSegment(2, bad);
  WriteSegment(3, SegmentBuilder(3).AddRange(0, 9, 10));
  ASSERT_THAT(Recover(), StatusIs(kDataLoss));

  absl::StatusOr<Recovered> recovered = Recover(Salvage(Options()));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 5)));
  EXPECT_EQ(recovered->result.last_lsn, std::vector<uint64_t>{5});
  EXPECT_EQ(recovered->result.next_seq, 2u);
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{1});
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(2)) + ".salvaged"));
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(3)) + ".salvaged"));
  EXPECT_THAT(recovered->result.notes, Not(IsEmpty()));
}

// --- Groups ---

// A group's pieces are passed on once every piece is read, without the
// group header; records of other partitions read in between arrive too, and
// each partition's records stay in LSN order.
TEST_F(LogRecoveryTest, CompleteGroupsArePassedOnWithoutTheirHeader) {
  SegmentBuilder segment(1);
  segment.Add(0, 1);
  segment.AddPiece(0, 2, /*pieces=*/3, /*leader=*/0, 2);
  segment.Add(0, 3);
  segment.Add(1, 1);
  segment.AddPiece(1, 2, 3, 0, 2);
  segment.Add(1, 3);
  segment.AddPiece(2, 1, 3, 0, 2);
  segment.Add(2, 2);
  WriteSegment(1, segment);
  absl::StatusOr<Recovered> recovered = Recover(Options(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 3, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 3, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(1, 2, 2)));
  EXPECT_EQ(recovered->result.records_replayed, 8u);
  EXPECT_THAT(recovered->result.notes, IsEmpty());
}

// A group incomplete where the log ends was being written when the writer
// died: the log ends just before its first piece. Records before it arrive;
// records after it (whatever their partition) do not.
TEST_F(LogRecoveryTest, IncompleteGroupAtTheEndOfTheLastSegmentIsCut) {
  WriteSegment(1, SegmentBuilder(1).AddRange(0, 1, 2).AddRange(1, 1, 1));
  SegmentBuilder last(2);
  last.Add(0, 3);
  last.Add(2, 1);
  const uint64_t group = last.AddPiece(0, 4, /*pieces=*/3, /*leader=*/0, 4);
  last.Add(0, 5);
  last.Add(1, 2);
  last.AddPiece(1, 3, 3, 0, 4);
  last.Add(2, 2);
  // The piece of partition 2 never reached the disk.
  WriteSegment(2, last);
  const std::string name = SegmentFileName(2);

  // Read only: the same records, and the file is left as it is.
  absl::StatusOr<Recovered> recovered = Recover(ReadOnly(Options(3)));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 3, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 1, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(1, 1, 2)));
  EXPECT_THAT(recovered->result.notes,
              Contains(AllOf(HasSubstr("skipped"), HasSubstr(name),
                             HasSubstr("incomplete"))));
  EXPECT_EQ(Read(name), last.contents());

  int before_change_calls = 0;
  recovered = Recover(Options(3), &before_change_calls);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(before_change_calls, 1);
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 3, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 1, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(1, 1, 2)));
  EXPECT_EQ(recovered->result.records_replayed, 5u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{3, 1, 1}));
  EXPECT_EQ(recovered->result.truncated_bytes, last.size() - group);
  EXPECT_THAT(recovered->result.notes,
              Contains(AllOf(HasSubstr("truncated"), HasSubstr(name),
                             HasSubstr(absl::StrCat("offset ", group)),
                             HasSubstr("incomplete"))));
  EXPECT_EQ(SeqsOf(recovered->result.segments), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(recovered->result.next_seq, 3u);
  EXPECT_EQ(Read(name), last.contents().substr(0, group));

  // The cut log reads cleanly now.
  recovered = Recover(Options(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->result.notes, IsEmpty());
  EXPECT_EQ(recovered->records.size(), 5u);
}

// Groups of one flush can interleave: A's first piece, B's first piece,
// A's last piece, then B's last piece torn off. Cutting at B's first piece
// would keep half of A; the log must end before A's first piece.
TEST_F(LogRecoveryTest, InterleavedGroupsAreCutTogether) {
  SegmentBuilder segment(1);
  segment.Add(2, 1);
  const uint64_t group_a = segment.AddPiece(0, 1, 2, /*leader=*/0, 1);
  segment.Add(0, 2);
  segment.AddPiece(1, 1, 2, /*leader=*/1, 1);  // B's first piece.
  segment.AddPiece(2, 2, 2, 0, 1);             // A is complete.
  const std::string whole = segment.contents();
  segment.AddPiece(2, 3, 2, 1, 1);  // B's last piece: torn.
  const uint64_t torn_at = whole.size() + 7;
  WriteSegment(1, segment.contents().substr(0, torn_at));

  absl::StatusOr<Recovered> recovered = Recover(Options(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records,
              ElementsAre(RecoveredRecord{2, 1, Payload(1, 2)}));
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{0, 0, 1}));
  EXPECT_EQ(Read(SegmentFileName(1)), whole.substr(0, group_a));
  EXPECT_EQ(recovered->result.truncated_bytes, torn_at - group_a);

  // The same with B's last piece missing whole: nothing damaged, the log
  // just ends inside B.
  WriteSegment(1, whole);
  recovered = Recover(Options(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records,
              ElementsAre(RecoveredRecord{2, 1, Payload(1, 2)}));
  EXPECT_EQ(Read(SegmentFileName(1)), whole.substr(0, group_a));
}

TEST_F(LogRecoveryTest, TornPieceCutsItsWholeGroup) {
  SegmentBuilder segment(1);
  segment.AddRange(0, 1, 2);
  const uint64_t group = segment.AddPiece(0, 3, 2, 0, 3);
  segment.Add(1, 1);
  segment.AddPiece(1, 2, 2, 0, 3);
  const std::string full = segment.contents();
  for (uint64_t cut = group + 1; cut < full.size(); ++cut) {
    SCOPED_TRACE(cut);
    WriteSegment(1, full.substr(0, cut));
    absl::StatusOr<Recovered> recovered = Recover(Options(2));
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 2, 0)));
    EXPECT_THAT(recovered->Of(1), IsEmpty());
    EXPECT_EQ(SizeOf(SegmentFileName(1)), group);
  }
}

// The flush that wrote a group wrote all of it into one segment, so a group
// still incomplete when the next segment begins is damage, not a torn tail.
TEST_F(LogRecoveryTest, IncompleteGroupFollowedByAnotherSegmentIsDataLoss) {
  SegmentBuilder first(1);
  first.AddRange(0, 1, 2);
  first.Add(1, 1);
  const uint64_t group = first.AddPiece(0, 3, 2, 0, 3);
  first.Add(0, 4);
  WriteSegment(1, first);
  WriteSegment(2, SegmentBuilder(2).AddRange(0, 5, 6).AddRange(1, 2, 3));
  const std::map<std::string, std::string> before = Files();
  EXPECT_THAT(
      Recover(Options(2)),
      StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(1)),
                                HasSubstr(absl::StrCat("offset ", group)),
                                HasSubstr("incomplete"))));
  EXPECT_EQ(Files(), before);

  int before_change_calls = 0;
  absl::StatusOr<Recovered> recovered =
      Recover(Salvage(Options(2)), &before_change_calls);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(before_change_calls, 1);
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 2, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 1, 1)));
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(Read(SegmentFileName(1)), first.contents().substr(0, group));
  EXPECT_EQ(SeqsOf(recovered->result.segments), std::vector<uint64_t>{1});
  EXPECT_EQ(recovered->result.next_seq, 2u);
  EXPECT_FALSE(env_.FileExists(PathOf(SegmentFileName(2))));
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(2)) + ".salvaged"));
  EXPECT_THAT(recovered->result.notes, Contains(HasSubstr("salvage")));
}

TEST_F(LogRecoveryTest, GroupPieceWithoutItsLeaderIsDataLoss) {
  {
    // The leader was never written: partition 0 has a plain record there.
    SegmentBuilder segment(1);
    segment.Add(0, 1);
    const uint64_t offset = segment.AddPiece(1, 1, 2, /*leader=*/0, 1);
    WriteSegment(1, segment);
    EXPECT_THAT(
        Recover(Options(2)),
        StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(1)),
                                  HasSubstr(absl::StrCat("offset ", offset)),
                                  HasSubstr("without its leader"))));
  }
  {
    // A third piece of a group of two, after the group was complete.
    SegmentBuilder segment(1);
    segment.AddPiece(0, 1, 2, 0, 1);
    segment.AddPiece(1, 1, 2, 0, 1);
    const uint64_t offset = segment.AddPiece(2, 1, 2, 0, 1);
    WriteSegment(1, segment);
    EXPECT_THAT(
        Recover(Options(3)),
        StatusIs(kDataLoss, AllOf(HasSubstr(absl::StrCat("offset ", offset)),
                                  HasSubstr("without its leader"))));
  }
  {
    // The leader in the segment before: a group never spans two.
    SegmentBuilder first(1);
    first.AddPiece(0, 1, 2, 0, 1);
    WriteSegment(1, first);
    SegmentBuilder second(2);
    second.AddPiece(1, 1, 2, 0, 1);
    WriteSegment(2, second);
    EXPECT_THAT(Recover(Options(2)), StatusIs(kDataLoss));
    ASSERT_THAT(env_.RemoveFile(PathOf(SegmentFileName(2))), IsOk());
  }
}

TEST_F(LogRecoveryTest, MalformedGroupHeaderIsDataLoss) {
  struct Case {
    const char* what;
    std::string payload;  // Of a piece in partition 1, LSN 1.
    const char* message;
  };
  const std::vector<Case> cases = {
      {"too short", std::string(kGroupHeaderSize - 1, '\0'), "too short"},
      {"one piece", GroupPayload(1, 1, 1, "t"), "invalid group header"},
      {"more pieces than partitions", GroupPayload(4, 1, 1, "t"),
       "invalid group header"},
      {"leader above the piece", GroupPayload(2, 2, 1, "t"),
       "invalid group header"},
      {"leader itself, another LSN", GroupPayload(2, 1, 7, "t"),
       "invalid group header"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    SegmentBuilder segment(1);
    segment.Add(0, 1);
    const uint64_t offset =
        segment.AddRecord(RecordType::kGroupTransition, 1, 1, c.payload);
    WriteSegment(1, segment);
    EXPECT_THAT(
        Recover(Options(3)),
        StatusIs(kDataLoss, AllOf(HasSubstr(absl::StrCat("offset ", offset)),
                                  HasSubstr(c.message))));
  }
  // Pieces that disagree on the group's size.
  SegmentBuilder segment(1);
  segment.AddPiece(0, 1, 2, 0, 1);
  const uint64_t offset = segment.AddPiece(1, 1, 3, 0, 1);
  WriteSegment(1, segment);
  EXPECT_THAT(
      Recover(Options(3)),
      StatusIs(kDataLoss, AllOf(HasSubstr(absl::StrCat("offset ", offset)),
                                HasSubstr("disagree"))));
}

// --- before_change ---

// before_change runs once records have gone to apply and before the first
// file change, for every kind of change; an error from it is returned as is
// and nothing is changed.
TEST_F(LogRecoveryTest, BeforeChangeRunsBeforeAnyFileChange) {
  struct Case {
    const char* what;
    std::vector<std::pair<uint64_t, std::string>> segments;
    bool salvage;
    size_t records;  // Passed to apply before the change.
  };
  const std::string good = SegmentBuilder(1).AddRange(0, 1, 3).contents();
  const std::string torn_tail = good.substr(0, good.size() - 4);
  std::string incomplete_group = good;
  AppendRecord(RecordType::kGroupTransition, 0, 4, GroupPayload(2, 0, 4, "t"),
               &incomplete_group);
  std::string damaged = good;
  damaged[kFileHeaderSize + kRecordHeaderSize + 1] ^= 1;  // First record.
  const std::vector<Case> cases = {
      {"torn tail", {{1, torn_tail}}, false, 2},
      {"torn header", {{1, good}, {2, std::string(10, '\0')}}, false, 3},
      {"incomplete group", {{1, incomplete_group}}, false, 3},
      {"salvage", {{1, damaged}}, true, 0},
      {"salvage, later segment",
       {{1, good},
        {2, std::string("garbage").append(kFileHeaderSize, 'x')},
        {3, SegmentBuilder(3).AddRange(0, 4, 4).contents()}},
       true,
       3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    for (const bool fail : {true, false}) {
      FaultInjectionEnv env(/*seed=*/5);
      ASSERT_THAT(env.CreateDir(kDir), IsOk());
      std::map<std::string, std::string> before;
      for (const auto& [seq, contents] : c.segments) {
        WriteDurableFile(&env, kDir, SegmentFileName(seq), contents);
        before[SegmentFileName(seq)] = contents;
      }
      auto files = [&] {
        std::map<std::string, std::string> now;
        absl::StatusOr<std::vector<std::string>> names = env.GetChildren(kDir);
        EXPECT_THAT(names, IsOk());
        if (!names.ok()) return now;
        for (const std::string& name : *names) {
          absl::StatusOr<std::string> contents =
              env.ReadFileToString(PathOf(name));
          EXPECT_THAT(contents, IsOk());
          if (contents.ok()) now[name] = *contents;
        }
        return now;
      };
      LogRecoveryOptions options;
      options.partitions = 2;
      options.salvage = c.salvage;
      size_t applied = 0;
      int calls = 0;
      absl::StatusOr<RecoveryResult> result = RecoverLog(
          &env, kDir, options,
          [&](uint32_t, uint64_t, absl::string_view,
              const std::shared_ptr<const std::string>&) {
            ++applied;
            return absl::OkStatus();
          },
          [&] {
            ++calls;
            EXPECT_EQ(files(), before);  // Nothing changed yet.
            EXPECT_EQ(applied, c.records);
            return fail ? absl::AbortedError("apply failed") : absl::OkStatus();
          });
      EXPECT_EQ(calls, 1);
      if (fail) {
        EXPECT_THAT(result, StatusIs(absl::StatusCode::kAborted,
                                     HasSubstr("apply failed")));
        EXPECT_EQ(files(), before);
        env.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
        EXPECT_EQ(files(), before);
      } else {
        EXPECT_THAT(result, IsOk());
        EXPECT_NE(files(), before);
      }
    }
  }
}

TEST_F(LogRecoveryTest, BeforeChangeIsNotCalledWhenNothingChanges) {
  SegmentBuilder segment(1);
  segment.AddRange(0, 1, 3);
  WriteSegment(1, segment);
  int calls = 0;
  ASSERT_THAT(Recover(Options(), &calls), IsOk());
  EXPECT_EQ(calls, 0);
  // Read only changes nothing, whatever it finds.
  WriteSegment(2, std::string(5, '\0'));
  absl::StatusOr<Recovered> recovered = Recover(ReadOnly(Options()), &calls);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->result.notes, Not(IsEmpty()));
  EXPECT_EQ(calls, 0);
  ASSERT_THAT(env_.RemoveFile(PathOf(SegmentFileName(2))), IsOk());
  WriteSegment(1, segment.contents().substr(0, segment.size() - 3));
  recovered = Recover(ReadOnly(Options()), &calls);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->result.notes, Not(IsEmpty()));
  EXPECT_EQ(calls, 0);
}

TEST_F(LogRecoveryTest, ApplyErrorIsReturnedAsIsAndNothingChanges) {
  SegmentBuilder segment(1);
  segment.AddRange(0, 1, 5);
  WriteSegment(1, segment.contents().substr(0, segment.size() - 2));
  const std::map<std::string, std::string> before = Files();
  int applied = 0;
  int calls = 0;
  absl::StatusOr<RecoveryResult> result = RecoverLog(
      &env_, kDir, LogRecoveryOptions(),
      [&](uint32_t, uint64_t lsn, absl::string_view,
          const std::shared_ptr<const std::string>&) {
        ++applied;
        return lsn == 3 ? absl::InvalidArgumentError("record 3 does not apply")
                        : absl::OkStatus();
      },
      [&] {
        ++calls;
        return absl::OkStatus();
      });
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("record 3 does not apply")));
  EXPECT_EQ(applied, 3);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(Files(), before);
}

// next_seq is one past the last segment kept and at least first_seq;
// last_lsn is, per partition, the last record or after_lsn if higher.
TEST_F(LogRecoveryTest, NextSeqAndLastLsnInTheResult) {
  WriteSegment(3, SegmentBuilder(3).AddRange(0, 1, 2));
  WriteSegment(4, SegmentBuilder(4).AddRange(1, 1, 4));
  absl::StatusOr<Recovered> recovered =
      Recover(Options(3, {0, 2, 7}, /*first_seq=*/3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(recovered->result.next_seq, 5u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{2, 4, 7}));
  EXPECT_EQ(recovered->result.records_replayed, 4u);

  // Every segment below first_seq: the next one is first_seq.
  recovered = Recover(Options(3, {2, 4, 7}, /*first_seq=*/9));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(recovered->result.next_seq, 9u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{2, 4, 7}));
  EXPECT_THAT(recovered->records, IsEmpty());
  EXPECT_EQ(SeqsOf(recovered->result.segments), (std::vector<uint64_t>{3, 4}));

  // A torn header on the last segment: it is removed and its number used
  // again.
  WriteSegment(5, std::string(3, '\0'));
  recovered = Recover(Options(3, {}, /*first_seq=*/3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(recovered->result.next_seq, 5u);
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{2, 4, 0}));
}

// Every cut and every single-bit flip in the last three records of the last
// segment: recovery keeps exactly the whole records before a cut, truncates
// a damaged final record, and reports any other damage; it never returns a
// record with a wrong payload.
TEST_F(LogRecoveryTest, EveryTornOrFlippedTailIsHandled) {
  constexpr uint64_t kRecords = 20;
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(kRecords, /*segment_bytes=*/560);
  ASSERT_EQ(segments.size(), 2u);
  const std::string first = Read(segments[0].name);
  const std::string last = Read(segments[1].name);
  const uint64_t records_in_first = LsnsIn(segments[0].name).size();

  struct Span {
    uint64_t begin;
    uint64_t end;
  };
  std::vector<Span> spans;  // Records of the last segment.
  {
    LogReader reader(last, segments[1].name);
    LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      ASSERT_THAT(more, IsOk());
      if (!*more) break;
      spans.push_back({record.offset, reader.valid_end()});
    }
  }
  ASSERT_GE(spans.size(), 3u);
  ASSERT_EQ(records_in_first + spans.size(), kRecords);
  const size_t sweep_from = spans.size() - 3;

  // Recovers {first, damaged_last} in a fresh env; *size is the size of the
  // last segment afterwards.
  auto recover_with = [&](const std::string& damaged_last, uint64_t* size) {
    FaultInjectionEnv env(/*seed=*/5);
    EXPECT_THAT(env.CreateDir(kDir), IsOk());
    WriteDurableFile(&env, kDir, segments[0].name, first);
    WriteDurableFile(&env, kDir, segments[1].name, damaged_last);
    absl::StatusOr<Recovered> recovered = RecoverDir(&env, kDir, Options());
    absl::StatusOr<uint64_t> file_size =
        env.GetFileSize(PathOf(segments[1].name));
    EXPECT_THAT(file_size, IsOk());
    *size = file_size.ok() ? *file_size : 0;
    return recovered;
  };

  for (uint64_t cut = spans[sweep_from].begin; cut < last.size(); ++cut) {
    SCOPED_TRACE(absl::StrCat("cut at ", cut));
    size_t whole = 0;
    uint64_t valid_end = kFileHeaderSize;
    for (const Span& span : spans) {
      if (span.end > cut) break;
      ++whole;
      valid_end = span.end;
    }
    uint64_t size = 0;
    absl::StatusOr<Recovered> recovered =
        recover_with(last.substr(0, cut), &size);
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->Of(0),
                ElementsAreArray(Expected(1, records_in_first + whole)));
    EXPECT_EQ(recovered->result.last_lsn,
              std::vector<uint64_t>{records_in_first + whole});
    EXPECT_EQ(recovered->result.truncated_bytes, cut - valid_end);
    EXPECT_EQ(recovered->result.notes.empty(), cut == valid_end);
    EXPECT_EQ(size, valid_end);
  }

  for (size_t r = sweep_from; r < spans.size(); ++r) {
    const bool final_record = r + 1 == spans.size();
    for (uint64_t offset = spans[r].begin; offset < spans[r].end; ++offset) {
      for (int bit = 0; bit < 8; ++bit) {
        SCOPED_TRACE(
            absl::StrCat("record ", r, ", byte ", offset, ", bit ", bit));
        std::string damaged = last;
        damaged[offset] = static_cast<char>(damaged[offset] ^ (1 << bit));
        uint64_t size = 0;
        absl::StatusOr<Recovered> recovered = recover_with(damaged, &size);
        if (final_record) {
          // Nothing valid follows: a torn final write, cut off.
          ASSERT_THAT(recovered, IsOk());
          EXPECT_THAT(recovered->Of(0),
                      ElementsAreArray(Expected(1, kRecords - 1)));
          EXPECT_EQ(recovered->result.truncated_bytes,
                    last.size() - spans[r].begin);
          EXPECT_EQ(size, spans[r].begin);
        } else {
          EXPECT_THAT(
              recovered,
              StatusIs(kDataLoss, AllOf(HasSubstr(segments[1].name),
                                        HasSubstr(absl::StrCat(
                                            "offset ", spans[r].begin)))));
          EXPECT_EQ(size, last.size());  // Left alone.
        }
      }
    }
  }
}

}  // namespace
}  // namespace taskwal::wal
