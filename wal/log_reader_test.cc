#include "wal/log_reader.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/format.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kFileName[] = "000001.log";

struct Written {
  RecordType type;
  uint32_t partition;
  uint64_t lsn;
  std::string payload;
  uint64_t offset;
};

// Builds a segment in memory (header + records) and reads it back; the
// tests damage contents_ in between.
class LogReaderTest : public ::testing::Test {
 protected:
  LogReaderTest() : contents_(EncodeFileHeader(kSegmentMagic, 1)) {}

  // The reader does not judge LSNs; each record gets the next one of the
  // whole file, whatever its partition.
  void Write(absl::string_view payload,
             RecordType type = RecordType::kTransition,
             uint32_t partition = 0) {
    const uint64_t lsn = written_.size() + 1;
    written_.push_back(
        {type, partition, lsn, std::string(payload), contents_.size()});
    AppendRecord(type, partition, lsn, payload, &contents_);
  }

  // Pseudo-random payload whose bytes depend on (n, seed).
  static std::string Payload(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  }

  uint64_t EndOf(size_t i) const {
    return written_[i].offset + kRecordHeaderSize + written_[i].payload.size();
  }

  // Reads until end or error; returns the final outcome (false or an error)
  // and appends the records read to *records.
  static absl::StatusOr<bool> ReadAll(LogReader* reader,
                                      std::vector<LogReader::Record>* records) {
    while (true) {
      LogReader::Record record;
      absl::StatusOr<bool> more = reader->Read(&record);
      if (!more.ok() || !*more) return more;
      records->push_back(record);
    }
  }

  // Expects `records` to equal the first records.size() written records.
  void ExpectPrefixOfWritten(const std::vector<LogReader::Record>& records) {
    ASSERT_LE(records.size(), written_.size());
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].type, written_[i].type) << "record " << i;
      EXPECT_EQ(records[i].partition, written_[i].partition) << "record " << i;
      EXPECT_EQ(records[i].lsn, written_[i].lsn) << "record " << i;
      EXPECT_EQ(records[i].offset, written_[i].offset) << "record " << i;
      ASSERT_EQ(records[i].payload, written_[i].payload) << "record " << i;
    }
  }

  void FlipBit(uint64_t offset, int bit) {
    contents_[offset] = static_cast<char>(contents_[offset] ^ (1 << bit));
  }

  // Overwrites a record's type byte and recomputes its CRC, so only the type
  // is wrong.
  void SetTypeAndReseal(size_t i, uint8_t type) {
    contents_[written_[i].offset + kRecordTypeOffset] = static_cast<char>(type);
    SealRecord(&contents_, written_[i].offset);
  }

  std::string contents_;
  std::vector<Written> written_;
};

TEST_F(LogReaderTest, HeaderOnlyIsCleanEnd) {
  LogReader reader(contents_, kFileName);
  LogReader::Record record;
  EXPECT_THAT(reader.Read(&record), IsOkAndHolds(false));
  EXPECT_EQ(reader.valid_end(), kFileHeaderSize);
  EXPECT_FALSE(reader.ValidRecordFollows());
}

TEST_F(LogReaderTest, EmptyDataIsCleanEnd) {
  LogReader reader("", kFileName, 0);
  LogReader::Record record;
  EXPECT_THAT(reader.Read(&record), IsOkAndHolds(false));
  EXPECT_THAT(reader.Read(&record), IsOkAndHolds(false));
  EXPECT_EQ(reader.valid_end(), 0u);
}

TEST_F(LogReaderTest, RoundTripsRecordsOfManySizes) {
  std::vector<size_t> sizes = {0,    1,    2,    16,    17,    18,    100,
                               4095, 4096, 4097, 32768, 65536, 100000};
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) sizes.push_back(rng() % 2000);
  for (int i = 0; i < 20; ++i) sizes.push_back(rng() % 100001);
  const RecordType types[] = {
      RecordType::kTransition,      RecordType::kSnapshotMeta,
      RecordType::kSnapshotTask,    RecordType::kSnapshotEnd,
      RecordType::kGroupTransition, RecordType::kDirectoryMeta,
      RecordType::kStoredOptions};
  const uint32_t partitions[] = {0, 1, 2, 255, 128, kMaxPartitions - 1, 7};
  for (size_t i = 0; i < sizes.size(); ++i) {
    Write(Payload(sizes[i], static_cast<uint32_t>(i)), types[i % 6],
          partitions[i % 7]);
  }

  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records), IsOkAndHolds(false));
  ASSERT_EQ(records.size(), written_.size());
  ExpectPrefixOfWritten(records);
  EXPECT_EQ(reader.valid_end(), contents_.size());
  EXPECT_FALSE(reader.ValidRecordFollows());
}

TEST_F(LogReaderTest, ValidEndFollowsEachRecord) {
  Write("one");
  Write("");
  Write("three");
  LogReader reader(contents_, kFileName);
  EXPECT_EQ(reader.valid_end(), kFileHeaderSize);
  LogReader::Record record;
  for (size_t i = 0; i < written_.size(); ++i) {
    ASSERT_THAT(reader.Read(&record), IsOkAndHolds(true));
    EXPECT_EQ(reader.valid_end(), EndOf(i));
  }
  EXPECT_THAT(reader.Read(&record), IsOkAndHolds(false));
  EXPECT_EQ(reader.valid_end(), contents_.size());
}

TEST_F(LogReaderTest, StartsAtTheGivenOffset) {
  Write("first");
  Write("second");
  LogReader reader(contents_, kFileName, written_[1].offset);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records), IsOkAndHolds(false));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].payload, "second");
  EXPECT_EQ(records[0].lsn, 2u);
}

TEST_F(LogReaderTest, StartOffsetBeyondEndIsInvalidArgument) {
  LogReader reader(contents_, kFileName, contents_.size() + 1);
  LogReader::Record record;
  EXPECT_THAT(reader.Read(&record),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_LE(reader.valid_end(), contents_.size());
  EXPECT_FALSE(reader.ValidRecordFollows());
}

// One 64 MiB buffer serves both sides of the boundary: a payload of exactly
// kMaxRecordBytes is read back; the same record grown by one byte (and
// resealed, so its CRC is right) is rejected by the length check.
TEST_F(LogReaderTest, MaxRecordBytesIsTheLargestAcceptedLength) {
  contents_.reserve(kFileHeaderSize + kRecordHeaderSize + kMaxRecordBytes + 1);
  const size_t offset = contents_.size();
  char* payload = AppendRecordHeader(RecordType::kTransition, 3, 9,
                                     kMaxRecordBytes, &contents_);
  std::memset(payload, 'x', kMaxRecordBytes);
  SealRecord(&contents_, offset);
  {
    LogReader reader(contents_, kFileName);
    LogReader::Record record;
    ASSERT_THAT(reader.Read(&record), IsOkAndHolds(true));
    EXPECT_EQ(record.payload.size(), kMaxRecordBytes);
    EXPECT_EQ(record.payload.data(),
              contents_.data() + offset + kRecordHeaderSize);
    EXPECT_EQ(record.partition, 3u);
    EXPECT_THAT(reader.Read(&record), IsOkAndHolds(false));
  }

  contents_.push_back('x');
  EncodeFixed32(&contents_[offset + kRecordLengthOffset], kMaxRecordBytes + 1);
  SealRecord(&contents_, offset);
  LogReader reader(contents_, kFileName);
  LogReader::Record record;
  EXPECT_THAT(reader.Read(&record),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("exceeds kMaxRecordBytes")));
  EXPECT_EQ(reader.valid_end(), offset);
}

TEST_F(LogReaderTest, HugeLengthIsRejectedWithoutTrustingIt) {
  Write("ok");
  Write("victim");
  EncodeFixed32(&contents_[written_[1].offset + kRecordLengthOffset],
                0xffffffffu);
  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(
      ReadAll(&reader, &records),
      StatusIs(absl::StatusCode::kDataLoss,
               AllOf(HasSubstr(kFileName),
                     HasSubstr("offset " + std::to_string(written_[1].offset)),
                     HasSubstr("record length 4294967295 exceeds"))));
  ExpectPrefixOfWritten(records);
  EXPECT_EQ(records.size(), 1u);
  EXPECT_EQ(reader.valid_end(), written_[1].offset);
}

TEST_F(LogReaderTest, LengthPastEndOfDataIsTruncatedPayload) {
  Write("ok");
  Write("victim");
  EncodeFixed32(&contents_[written_[1].offset + kRecordLengthOffset], 1000);
  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("truncated payload (record length 1000")));
  EXPECT_EQ(records.size(), 1u);
  EXPECT_EQ(reader.valid_end(), written_[1].offset);
}

TEST_F(LogReaderTest, ChecksumMismatchIsDataLoss) {
  Write("good");
  Write("corrupted payload");
  Write("after");
  FlipBit(written_[1].offset + kRecordHeaderSize + 3, 2);
  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(
      ReadAll(&reader, &records),
      StatusIs(
          absl::StatusCode::kDataLoss,
          AllOf(HasSubstr(kFileName), HasSubstr("checksum mismatch"),
                HasSubstr("offset " + std::to_string(written_[1].offset)))));
  EXPECT_EQ(records.size(), 1u);
  EXPECT_EQ(reader.valid_end(), written_[1].offset);
}

TEST_F(LogReaderTest, ErrorIsSticky) {
  Write("good");
  Write("bad");
  FlipBit(written_[1].offset + kRecordHeaderSize, 0);
  LogReader reader(contents_, kFileName);
  LogReader::Record record;
  ASSERT_THAT(reader.Read(&record), IsOkAndHolds(true));
  const absl::StatusOr<bool> first = reader.Read(&record);
  ASSERT_THAT(first, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(record.payload, "good");  // untouched by the failed Read
  EXPECT_EQ(reader.Read(&record).status(), first.status());
  EXPECT_EQ(reader.valid_end(), written_[1].offset);
}

TEST_F(LogReaderTest, TruncatedTailAtEveryOffsetOfTheLastRecord) {
  Write("first record");
  Write(Payload(40, 2));
  Write(Payload(50, 3));
  const std::string full = contents_;
  const uint64_t last = written_[2].offset;

  {  // Cut exactly at the record boundary: clean end, no damage.
    LogReader reader(absl::string_view(full).substr(0, last), kFileName);
    std::vector<LogReader::Record> records;
    EXPECT_THAT(ReadAll(&reader, &records), IsOkAndHolds(false));
    EXPECT_EQ(records.size(), 2u);
  }
  for (uint64_t cut = last + 1; cut < full.size(); ++cut) {
    SCOPED_TRACE(cut);
    LogReader reader(absl::string_view(full).substr(0, cut), kFileName);
    std::vector<LogReader::Record> records;
    const absl::StatusOr<bool> end = ReadAll(&reader, &records);
    if (cut - last < kRecordHeaderSize) {
      EXPECT_THAT(end, StatusIs(absl::StatusCode::kDataLoss,
                                AnyOf(HasSubstr("truncated header"),
                                      HasSubstr("zeroed space"))));
    } else {
      EXPECT_THAT(end, StatusIs(absl::StatusCode::kDataLoss,
                                HasSubstr("truncated payload")));
    }
    EXPECT_EQ(records.size(), 2u);
    ExpectPrefixOfWritten(records);
    EXPECT_EQ(reader.valid_end(), last);
    EXPECT_FALSE(reader.ValidRecordFollows());
  }
}

TEST_F(LogReaderTest, TornHeaderIsTruncatedHeader) {
  Write("whole");
  contents_.append("\x01\x02\x03\x04\x05", 5);
  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("truncated header (5 of 19 bytes)")));
  EXPECT_EQ(reader.valid_end(), EndOf(0));
  EXPECT_FALSE(reader.ValidRecordFollows());
}

TEST_F(LogReaderTest, ZeroedTailIsDamageWithNothingValidAfter) {
  Write("a");
  Write("b");
  for (size_t zeros : {size_t{1}, size_t{5}, size_t{17}, size_t{4096}}) {
    SCOPED_TRACE(zeros);
    const std::string data = contents_ + std::string(zeros, '\0');
    LogReader reader(data, kFileName);
    std::vector<LogReader::Record> records;
    EXPECT_THAT(
        ReadAll(&reader, &records),
        StatusIs(absl::StatusCode::kDataLoss, HasSubstr("zeroed space")));
    EXPECT_EQ(records.size(), 2u);
    EXPECT_EQ(reader.valid_end(), contents_.size());
    EXPECT_FALSE(reader.ValidRecordFollows());
  }
}

TEST_F(LogReaderTest, UnknownTypeWithGoodChecksumIsDataLoss) {
  Write("a");
  Write("b");
  Write("c");
  for (uint8_t type :
       {uint8_t{0}, uint8_t{kMaxRecordType + 1}, uint8_t{9}, uint8_t{255}}) {
    SCOPED_TRACE(type + 0);
    SetTypeAndReseal(1, type);
    LogReader reader(contents_, kFileName);
    std::vector<LogReader::Record> records;
    EXPECT_THAT(
        ReadAll(&reader, &records),
        StatusIs(absl::StatusCode::kDataLoss,
                 HasSubstr("unknown record type " + std::to_string(type))));
    EXPECT_EQ(records.size(), 1u);
    EXPECT_EQ(reader.valid_end(), written_[1].offset);
    EXPECT_TRUE(reader.ValidRecordFollows());
  }
}

TEST_F(LogReaderTest, TypeIsCheckedOnlyAfterTheChecksum) {
  Write("a");
  contents_[written_[0].offset + kRecordTypeOffset] = 9;  // not resealed
  LogReader reader(contents_, kFileName);
  LogReader::Record record;
  EXPECT_THAT(reader.Read(&record), StatusIs(absl::StatusCode::kDataLoss,
                                             HasSubstr("checksum mismatch")));
}

// Every single-bit error anywhere in any record is reported as damage at
// that record; the records before it come back intact and nothing else does.
TEST_F(LogReaderTest, FlippedBitInEveryPositionIsDetected) {
  Write("");
  Write("x");
  Write(Payload(10, 4));
  Write(Payload(30, 5));
  Write("end");
  const std::string original = contents_;
  for (size_t i = 0; i < written_.size(); ++i) {
    for (uint64_t pos = written_[i].offset; pos < EndOf(i); ++pos) {
      for (int bit = 0; bit < 8; ++bit) {
        SCOPED_TRACE(testing::Message()
                     << "record " << i << " byte " << pos << " bit " << bit);
        contents_ = original;
        FlipBit(pos, bit);
        LogReader reader(contents_, kFileName);
        std::vector<LogReader::Record> records;
        ASSERT_THAT(ReadAll(&reader, &records),
                    StatusIs(absl::StatusCode::kDataLoss,
                             HasSubstr("offset " +
                                       std::to_string(written_[i].offset))));
        ASSERT_EQ(records.size(), i);
        ExpectPrefixOfWritten(records);
        ASSERT_EQ(reader.valid_end(), written_[i].offset);
        ASSERT_EQ(reader.ValidRecordFollows(), i + 1 < written_.size());
      }
    }
  }
}

TEST_F(LogReaderTest, CorruptionInTheMiddleHasValidRecordsAfter) {
  for (int i = 0; i < 10; ++i) Write(Payload(100, i));
  FlipBit(written_[3].offset + kRecordHeaderSize + 50, 7);
  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(records.size(), 3u);
  EXPECT_EQ(reader.valid_end(), written_[3].offset);
  EXPECT_TRUE(reader.ValidRecordFollows());
}

TEST_F(LogReaderTest, ValidRecordAfterGarbageIsFound) {
  Write("a");
  contents_.append("garbage that is not a record at all");
  const size_t after = contents_.size();
  AppendRecord(RecordType::kTransition, 2, 5, "survivor", &contents_);
  LogReader reader(contents_, kFileName);
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(reader.valid_end(), EndOf(0));
  EXPECT_TRUE(reader.ValidRecordFollows());
  // The survivor alone is readable from its own offset.
  LogReader tail(contents_, kFileName, after);
  LogReader::Record record;
  ASSERT_THAT(tail.Read(&record), IsOkAndHolds(true));
  EXPECT_EQ(record.payload, "survivor");
  EXPECT_EQ(record.partition, 2u);
}

TEST_F(LogReaderTest, ValidRecordFollowsIsFalseWithoutDamage) {
  Write("a");
  LogReader reader(contents_, kFileName);
  EXPECT_FALSE(reader.ValidRecordFollows());  // nothing read yet
  std::vector<LogReader::Record> records;
  EXPECT_THAT(ReadAll(&reader, &records), IsOkAndHolds(false));
  EXPECT_FALSE(reader.ValidRecordFollows());
}

class FileHeaderTest : public ::testing::Test {
 protected:
  static constexpr char kName[] = "snapshot-000042";
};

TEST_F(FileHeaderTest, RoundTripsLsn) {
  for (uint64_t lsn :
       {uint64_t{0}, uint64_t{1}, uint64_t{1} << 40, ~uint64_t{0}}) {
    EXPECT_THAT(DecodeFileHeader(EncodeFileHeader(kSegmentMagic, lsn),
                                 kSegmentMagic, kName),
                IsOkAndHolds(lsn));
    EXPECT_THAT(DecodeFileHeader(EncodeFileHeader(kSnapshotMagic, lsn),
                                 kSnapshotMagic, kName),
                IsOkAndHolds(lsn));
  }
}

TEST_F(FileHeaderTest, IgnoresBytesAfterTheHeader) {
  std::string data = EncodeFileHeader(kSnapshotMagic, 42);
  AppendRecord(RecordType::kSnapshotMeta, 0, 42, "meta", &data);
  EXPECT_THAT(DecodeFileHeader(data, kSnapshotMagic, kName), IsOkAndHolds(42u));
}

TEST_F(FileHeaderTest, ShortFileIsDataLoss) {
  const std::string header = EncodeFileHeader(kSegmentMagic, 5);
  for (size_t n = 0; n < kFileHeaderSize; ++n) {
    EXPECT_THAT(
        DecodeFileHeader(header.substr(0, n), kSegmentMagic, kName),
        StatusIs(absl::StatusCode::kDataLoss,
                 AllOf(HasSubstr(kName), HasSubstr("header truncated"))));
  }
}

TEST_F(FileHeaderTest, WrongMagicIsDataLoss) {
  EXPECT_THAT(DecodeFileHeader(EncodeFileHeader(kSegmentMagic, 5),
                               kSnapshotMagic, kName),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(kName), HasSubstr("magic"))));
}

TEST_F(FileHeaderTest, ZeroedHeaderIsDataLoss) {
  EXPECT_THAT(DecodeFileHeader(std::string(4096, '\0'), kSegmentMagic, kName),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(kName), HasSubstr("zeroed"))));
}

TEST_F(FileHeaderTest, EveryFlippedBitIsDataLoss) {
  const std::string header = EncodeFileHeader(kSegmentMagic, 77);
  for (size_t pos = 0; pos < kFileHeaderSize; ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = header;
      damaged[pos] = static_cast<char>(damaged[pos] ^ (1 << bit));
      EXPECT_THAT(DecodeFileHeader(damaged, kSegmentMagic, kName),
                  StatusIs(absl::StatusCode::kDataLoss, HasSubstr(kName)))
          << "byte " << pos << " bit " << bit;
    }
  }
}

TEST_F(FileHeaderTest, BadChecksumIsDataLoss) {
  std::string header = EncodeFileHeader(kSegmentMagic, 77);
  EncodeFixed64(&header[kFileHeaderLsnOffset], 78);
  EXPECT_THAT(
      DecodeFileHeader(header, kSegmentMagic, kName),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum mismatch")));
}

TEST_F(FileHeaderTest, UnsupportedVersionIsFailedPrecondition) {
  // An intact header (valid CRC) from a different format version.
  std::string header = EncodeFileHeader(kSegmentMagic, 77);
  EncodeFixed32(&header[kFileHeaderVersionOffset], kFormatVersion + 1);
  EncodeFixed32(&header[kFileHeaderCrcOffset],
                crc32c::Mask(crc32c::Value(header.data(), 20)));
  EXPECT_THAT(
      DecodeFileHeader(header, kSegmentMagic, kName),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr(kName),
                     HasSubstr(absl::StrCat("unsupported format version ",
                                            kFormatVersion + 1)),
                     HasSubstr(absl::StrCat("reads version ", kFormatVersion)),
                     Not(HasSubstr("before partitions")))));
}

// A segment of taskwal before partitions (format version 1, 17-byte record
// headers) is intact but unreadable: not damage, and the message says why.
TEST_F(FileHeaderTest, VersionOneIsFailedPreconditionBeforePartitions) {
  std::string header = EncodeFileHeader(kSegmentMagic, 1);
  EncodeFixed32(&header[kFileHeaderVersionOffset], 1);
  EncodeFixed32(&header[kFileHeaderCrcOffset],
                crc32c::Mask(crc32c::Value(header.data(), 20)));
  EXPECT_THAT(DecodeFileHeader(header, kSegmentMagic, kName),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(kName), HasSubstr("version 1"),
                             HasSubstr("before partitions"))));
}

TEST_F(FileHeaderTest, MetaMagicIsItsOwn) {
  const std::string meta = EncodeFileHeader(kMetaMagic, 0);
  EXPECT_THAT(DecodeFileHeader(meta, kMetaMagic, kName), IsOkAndHolds(0u));
  EXPECT_THAT(DecodeFileHeader(meta, kSegmentMagic, kName),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("magic")));
}

}  // namespace
TEST(GroupHeaderTest, DecodesWhatTheFormatDescribes) {
  std::string payload(kGroupHeaderSize, '\0');
  EncodeFixed16(&payload[kGroupPiecesOffset], 3);
  EncodeFixed16(&payload[kGroupLeaderPartitionOffset], 2);
  EncodeFixed64(&payload[kGroupLeaderLsnOffset], 77);
  payload += "transition";
  GroupHeader header;
  absl::string_view transition;
  ASSERT_TRUE(DecodeGroupHeader(payload, &header, &transition));
  EXPECT_EQ(header.pieces, 3u);
  EXPECT_EQ(header.leader_partition, 2u);
  EXPECT_EQ(header.leader_lsn, 77u);
  EXPECT_EQ(transition, "transition");
  EXPECT_FALSE(DecodeGroupHeader(payload.substr(0, 15), &header, &transition));
}

TEST(GroupHeaderTest, EncodeAndDecodeRoundTrip) {
  char encoded[kGroupHeaderSize];
  EncodeGroupHeader(256, 255, 0x0123456789abcdefull, encoded);
  const std::string payload = std::string(encoded, sizeof(encoded)) + "t";
  GroupHeader header;
  absl::string_view transition;
  ASSERT_TRUE(DecodeGroupHeader(payload, &header, &transition));
  EXPECT_EQ(header.pieces, 256u);
  EXPECT_EQ(header.leader_partition, 255u);
  EXPECT_EQ(header.leader_lsn, 0x0123456789abcdefull);
  EXPECT_EQ(transition, "t");
  // The reserved bytes are zero.
  EXPECT_EQ(DecodeFixed32(encoded + 4), 0u);
}

}  // namespace taskwal::wal
