#include "wal/data_dir.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "taskwal/fault_injection_env.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/format.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::UnorderedElementsAre;

constexpr char kDir[] = "/db";

class DataDirTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir(kDir), IsOk()); }

  static std::string PathOf(absl::string_view name) {
    return absl::StrCat(kDir, "/", name);
  }

  void WriteFile(absl::string_view name, absl::string_view contents) {
    auto file = env_.NewWritableFile(PathOf(name));
    ASSERT_THAT(file, IsOk());
    ASSERT_THAT((*file)->Append(contents), IsOk());
    ASSERT_THAT((*file)->Sync(), IsOk());
    ASSERT_THAT((*file)->Close(), IsOk());
    ASSERT_THAT(env_.SyncDir(kDir), IsOk());
  }

  std::string Read(absl::string_view name) {
    absl::StatusOr<std::string> contents = env_.ReadFileToString(PathOf(name));
    EXPECT_THAT(contents, IsOk());
    return contents.ok() ? *contents : "";
  }

  // A META file as WriteDirectoryMeta lays it out, with any payload.
  static std::string MetaBytes(absl::string_view payload) {
    std::string contents = EncodeFileHeader(kMetaMagic, 0);
    AppendRecord(RecordType::kDirectoryMeta, 0, 0, payload, &contents);
    return contents;
  }

  static std::string PartitionsPayload(uint32_t partitions) {
    std::string payload;
    PutFixed32(&payload, partitions);
    return payload;
  }

  FaultInjectionEnv env_{/*seed=*/11};
};

TEST_F(DataDirTest, SegmentFileNamesRoundTrip) {
  EXPECT_EQ(SegmentFileName(42), "wal-00000000000000000042.log");
  for (uint64_t seq : {uint64_t{0}, uint64_t{1}, uint64_t{42},
                       uint64_t{1} << 40, UINT64_MAX}) {
    uint64_t parsed = 12345;
    EXPECT_TRUE(ParseSegmentFileName(SegmentFileName(seq), &parsed)) << seq;
    EXPECT_EQ(parsed, seq);
  }
}

TEST_F(DataDirTest, ParseSegmentFileNameRejectsOtherNames) {
  for (const std::string& name : {
           std::string(""),
           std::string("wal-42.log"),
           SegmentFileName(42) + ".salvaged",
           SegmentFileName(42) + ".tmp",
           std::string("wal-0000000000000000004x.log"),
           std::string("wal-+0000000000000000042.log"),
           std::string("wal- 0000000000000000042.log"),
           std::string("wal-000000000000000000042.log"),  // 21 digits
           std::string("wal-0000000000000000042.log"),    // 19 digits
           std::string("WAL-00000000000000000042.log"),
           std::string("wal-00000000000000000042.LOG"),
           std::string("xwal-00000000000000000042.log"),
           std::string("00000000000000000042.log"),
           // 20 digits, but above UINT64_MAX.
           std::string("wal-99999999999999999999.log"),
           std::string(kMetaFileName),
       }) {
    uint64_t seq = 7;
    EXPECT_FALSE(ParseSegmentFileName(name, &seq)) << name;
  }
}

TEST_F(DataDirTest, JoinPathPutsOneSlashBetween) {
  EXPECT_EQ(JoinPath("/db", "META"), "/db/META");
  EXPECT_EQ(JoinPath("rel/dir", SegmentFileName(3)),
            "rel/dir/wal-00000000000000000003.log");
}

TEST_F(DataDirTest, ListDirectoryClassifiesEveryName) {
  for (uint64_t seq : {3, 1, 12, 2}) {
    WriteFile(SegmentFileName(seq), EncodeFileHeader(kSegmentMagic, seq));
  }
  WriteFile(SegmentFileName(13) + ".tmp", "");
  WriteFile(std::string(kMetaFileName), MetaBytes(PartitionsPayload(4)));
  WriteFile("snapshot-00000000000000000007.snap", "s");
  WriteFile("snapshot-00000000000000000009.snap.tmp", "s");
  WriteFile(SegmentFileName(1) + ".salvaged", "x");
  WriteFile("LOCK", "123\n");
  WriteFile("wal-5.log", "x");
  WriteFile("META.tmp", "x");

  absl::StatusOr<DirectoryListing> listing = ListDirectory(&env_, kDir);
  ASSERT_THAT(listing, IsOk());
  std::vector<uint64_t> seqs;
  for (const SegmentFile& segment : listing->segments) {
    EXPECT_EQ(segment.name, SegmentFileName(segment.seq));
    seqs.push_back(segment.seq);
  }
  EXPECT_THAT(seqs, ElementsAre(1, 2, 3, 12));  // Ascending.
  EXPECT_THAT(listing->temp_segments,
              ElementsAre(SegmentFileName(13) + ".tmp"));
  EXPECT_THAT(listing->snapshots,
              UnorderedElementsAre("snapshot-00000000000000000007.snap",
                                   "snapshot-00000000000000000009.snap.tmp"));
  EXPECT_TRUE(listing->has_meta);
  EXPECT_THAT(listing->other,
              UnorderedElementsAre(SegmentFileName(1) + ".salvaged", "LOCK",
                                   "wal-5.log", "META.tmp"));
}

TEST_F(DataDirTest, ListDirectoryOfAnEmptyDirectory) {
  absl::StatusOr<DirectoryListing> listing = ListDirectory(&env_, kDir);
  ASSERT_THAT(listing, IsOk());
  EXPECT_THAT(listing->segments, IsEmpty());
  EXPECT_THAT(listing->temp_segments, IsEmpty());
  EXPECT_THAT(listing->snapshots, IsEmpty());
  EXPECT_FALSE(listing->has_meta);
  EXPECT_THAT(listing->other, IsEmpty());
}

TEST_F(DataDirTest, ListDirectoryOfAMissingDirectoryIsNotFound) {
  EXPECT_THAT(ListDirectory(&env_, "/nowhere"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DataDirTest, ClassifyDirectoryTellsDataFromOtherDirectories) {
  DirectoryListing listing;
  EXPECT_EQ(ClassifyDirectory(listing), DirectoryKind::kEmpty);
  // What an Open that died before writing META leaves.
  listing.other = {std::string(kLockFileName), "META.tmp"};
  EXPECT_EQ(ClassifyDirectory(listing), DirectoryKind::kEmpty);

  listing.other.push_back("notes.txt");
  EXPECT_EQ(ClassifyDirectory(listing), DirectoryKind::kOther);
  listing.other = {"lock"};  // Names are case-sensitive.
  EXPECT_EQ(ClassifyDirectory(listing), DirectoryKind::kOther);

  // META decides, whatever else is there.
  listing.has_meta = true;
  EXPECT_EQ(ClassifyDirectory(listing), DirectoryKind::kDataDirectory);
  listing.other.clear();
  EXPECT_EQ(ClassifyDirectory(listing), DirectoryKind::kDataDirectory);

  // Without META, a segment or snapshot makes it data that lost (or, at
  // format version 1, never had) its META, other files or not.
  for (int i = 0; i < 3; ++i) {
    DirectoryListing data;
    data.other = {"notes.txt"};
    if (i == 0) data.segments.push_back({SegmentFileName(1), 1});
    if (i == 1) data.temp_segments.push_back(SegmentFileName(2) + ".tmp");
    if (i == 2) data.snapshots.push_back("snapshot-00000000000000000001.snap");
    EXPECT_EQ(ClassifyDirectory(data), DirectoryKind::kDataWithoutMeta) << i;
  }
}

TEST_F(DataDirTest, ClassifyDirectoryOfRealListings) {
  auto kind = [this] {
    absl::StatusOr<DirectoryListing> listing = ListDirectory(&env_, kDir);
    EXPECT_THAT(listing, IsOk());
    return listing.ok() ? ClassifyDirectory(*listing) : DirectoryKind::kOther;
  };
  EXPECT_EQ(kind(), DirectoryKind::kEmpty);
  WriteFile("LOCK", "123\n");
  EXPECT_EQ(kind(), DirectoryKind::kEmpty);
  ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{4}), IsOk());
  EXPECT_EQ(kind(), DirectoryKind::kDataDirectory);
  ASSERT_THAT(env_.CreateDir("/other"), IsOk());
  auto file = env_.NewWritableFile("/other/photo.jpg");
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  absl::StatusOr<DirectoryListing> other = ListDirectory(&env_, "/other");
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(ClassifyDirectory(*other), DirectoryKind::kOther);
}

TEST_F(DataDirTest, ShortOrZeroedHeaderIsTorn) {
  const std::string header = EncodeFileHeader(kSegmentMagic, 6);
  EXPECT_TRUE(IsTornHeader(""));
  EXPECT_TRUE(IsTornHeader(header.substr(0, 1)));
  EXPECT_TRUE(IsTornHeader(header.substr(0, kFileHeaderSize - 1)));
  EXPECT_TRUE(IsTornHeader(std::string(kFileHeaderSize, '\0')));
  EXPECT_TRUE(IsTornHeader(std::string(4096, '\0')));
}

TEST_F(DataDirTest, WholeOrDamagedHeaderIsNotTorn) {
  const std::string header = EncodeFileHeader(kSegmentMagic, 6);
  EXPECT_FALSE(IsTornHeader(header));
  std::string with_record = header;
  AppendRecord(RecordType::kTransition, 0, 1, "r", &with_record);
  EXPECT_FALSE(IsTornHeader(with_record));
  // A full-size header of garbage is damage, not a torn creation.
  EXPECT_FALSE(IsTornHeader(std::string(kFileHeaderSize, 'x')));
  // Zeros with one byte set anywhere, even past the header, are not torn.
  std::string zeros(100, '\0');
  zeros[99] = 1;
  EXPECT_FALSE(IsTornHeader(zeros));
}

TEST_F(DataDirTest, DirectoryMetaRoundTripsAndIsDurable) {
  for (uint32_t partitions : {uint32_t{1}, uint32_t{16}, kMaxPartitions}) {
    SCOPED_TRACE(partitions);
    ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{partitions}),
                IsOk());
    absl::StatusOr<std::optional<DirectoryMeta>> meta =
        ReadDirectoryMeta(&env_, kDir);
    ASSERT_THAT(meta, IsOk());
    ASSERT_TRUE(meta->has_value());
    EXPECT_EQ((*meta)->partitions, partitions);

    // Contents and name survive a power loss; no temporary file is left.
    env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    meta = ReadDirectoryMeta(&env_, kDir);
    ASSERT_THAT(meta, IsOk());
    ASSERT_TRUE(meta->has_value());
    EXPECT_EQ((*meta)->partitions, partitions);
    absl::StatusOr<DirectoryListing> listing = ListDirectory(&env_, kDir);
    ASSERT_THAT(listing, IsOk());
    EXPECT_TRUE(listing->has_meta);
    EXPECT_THAT(listing->other, IsEmpty());
  }
}

TEST_F(DataDirTest, DirectoryMetaHasTheDocumentedLayout) {
  ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{9}), IsOk());
  EXPECT_EQ(Read(kMetaFileName), MetaBytes(PartitionsPayload(9)));
}

TEST_F(DataDirTest, MissingMetaIsNullopt) {
  absl::StatusOr<std::optional<DirectoryMeta>> meta =
      ReadDirectoryMeta(&env_, kDir);
  ASSERT_THAT(meta, IsOk());
  EXPECT_FALSE(meta->has_value());
}

TEST_F(DataDirTest, MetaWithLaterFieldsIsRead) {
  WriteFile(kMetaFileName,
            MetaBytes(PartitionsPayload(5) + "fields of a later version"));
  EXPECT_THAT(
      ReadDirectoryMeta(&env_, kDir),
      IsOkAndHolds(Optional(::testing::Field(&DirectoryMeta::partitions, 5u))));
}

TEST_F(DataDirTest, DamagedMetaIsDataLoss) {
  ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{4}), IsOk());
  const std::string good = Read(kMetaFileName);
  const std::string path = PathOf(kMetaFileName);
  std::vector<std::string> damaged;
  for (size_t pos : {size_t{0}, size_t{kFileHeaderLsnOffset},
                     kFileHeaderSize + kRecordLengthOffset,
                     kFileHeaderSize + kRecordTypeOffset,
                     kFileHeaderSize + kRecordHeaderSize}) {
    std::string bytes = good;
    bytes[pos] ^= 0x04;
    damaged.push_back(bytes);
  }
  damaged.push_back(good.substr(0, kFileHeaderSize - 1));  // Torn header.
  damaged.push_back(good.substr(0, good.size() - 1));      // Torn record.
  damaged.push_back(good.substr(0, kFileHeaderSize));      // No record.
  damaged.push_back(std::string(good.size(), '\0'));
  damaged.push_back(MetaBytes("abc"));  // Payload shorter than its fields.
  {
    // A sound record of another type.
    std::string bytes = EncodeFileHeader(kMetaMagic, 0);
    AppendRecord(RecordType::kTransition, 0, 0, PartitionsPayload(4), &bytes);
    damaged.push_back(bytes);
  }
  for (size_t i = 0; i < damaged.size(); ++i) {
    SCOPED_TRACE(i);
    WriteFile(kMetaFileName, damaged[i]);
    EXPECT_THAT(ReadDirectoryMeta(&env_, kDir),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path)));
  }
}

TEST_F(DataDirTest, MetaOfAnotherVersionIsFailedPrecondition) {
  std::string bytes = MetaBytes(PartitionsPayload(4));
  EncodeFixed32(&bytes[kFileHeaderVersionOffset], kFormatVersion + 1);
  EncodeFixed32(
      &bytes[kFileHeaderCrcOffset],
      crc32c::Mask(crc32c::Value(bytes.data(), kFileHeaderCrcOffset)));
  WriteFile(kMetaFileName, bytes);
  EXPECT_THAT(ReadDirectoryMeta(&env_, kDir),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(DataDirTest, PartitionsOutOfRangeAreRefused) {
  for (uint32_t partitions : {uint32_t{0}, kMaxPartitions + 1, UINT32_MAX}) {
    SCOPED_TRACE(partitions);
    EXPECT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{partitions}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("partition count")));
    EXPECT_FALSE(env_.FileExists(PathOf(kMetaFileName)));

    // A META that says so (well-formed, checksums right) is damage: no
    // taskwal writes one.
    WriteFile(kMetaFileName, MetaBytes(PartitionsPayload(partitions)));
    EXPECT_THAT(ReadDirectoryMeta(&env_, kDir),
                StatusIs(absl::StatusCode::kDataLoss,
                         AllOf(HasSubstr(PathOf(kMetaFileName)),
                               HasSubstr(absl::StrCat(partitions)))));
    ASSERT_THAT(env_.RemoveFile(PathOf(kMetaFileName)), IsOk());
  }
}

TEST_F(DataDirTest, WriteDirectoryMetaReplacesAnOlderOne) {
  ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{2}), IsOk());
  ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{3}), IsOk());
  EXPECT_THAT(
      ReadDirectoryMeta(&env_, kDir),
      IsOkAndHolds(Optional(::testing::Field(&DirectoryMeta::partitions, 3u))));
}

// The META file is written under a temporary name and renamed: a failure
// before the rename leaves the old META whole.
TEST_F(DataDirTest, FailedWriteLeavesTheOldMeta) {
  ASSERT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{2}), IsOk());
  env_.FailNextSyncs(1);
  EXPECT_THAT(WriteDirectoryMeta(&env_, kDir, DirectoryMeta{3}),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(
      ReadDirectoryMeta(&env_, kDir),
      IsOkAndHolds(Optional(::testing::Field(&DirectoryMeta::partitions, 2u))));
}

}  // namespace
}  // namespace taskwal::wal
