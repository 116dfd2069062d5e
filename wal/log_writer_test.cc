#include "wal/log_writer.h"

#include <cstdint>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/format.h"

namespace taskwal::wal {
namespace {

class LogWriterTest : public ::testing::Test {};

TEST_F(LogWriterTest, FileHeaderHasDocumentedLayout) {
  const std::string header =
      EncodeFileHeader(kSegmentMagic, 0x0102030405060708ull);
  ASSERT_EQ(header.size(), kFileHeaderSize);
  EXPECT_EQ(header.substr(0, 8), "TWALSEG1");
  EXPECT_EQ(header.substr(8, 4), std::string("\x02\x00\x00\x00", 4));
  EXPECT_EQ(DecodeFixed32(header.data() + 8), kFormatVersion);
  EXPECT_EQ(header.substr(12, 8),
            std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  EXPECT_EQ(DecodeFixed32(header.data() + 20),
            crc32c::Mask(crc32c::Value(header.data(), 20)));
}

TEST_F(LogWriterTest, SnapshotHeaderCarriesSnapshotMagic) {
  const std::string header = EncodeFileHeader(kSnapshotMagic, 7);
  EXPECT_EQ(header.substr(0, 8), "TWALSNP1");
  EXPECT_NE(header, EncodeFileHeader(kSegmentMagic, 7));
}

TEST_F(LogWriterTest, RecordHasDocumentedLayout) {
  std::string buf = "prefix";
  AppendRecord(RecordType::kTransition, /*partition=*/0x00a7,
               0x1122334455667788ull, "hello", &buf);
  ASSERT_EQ(kRecordHeaderSize, 19u);
  ASSERT_EQ(buf.size(), 6 + kRecordHeaderSize + 5);
  const char* record = buf.data() + 6;
  EXPECT_EQ(DecodeFixed32(record + 4), 5u);
  EXPECT_EQ(record[8], 1);
  EXPECT_EQ(std::string(record + 9, 2), std::string("\xa7\x00", 2));
  EXPECT_EQ(DecodeFixed64(record + 11), 0x1122334455667788ull);
  EXPECT_EQ(std::string(record + 19, 5), "hello");
  // The CRC covers everything after itself.
  EXPECT_EQ(crc32c::Unmask(DecodeFixed32(record)),
            crc32c::Value(record + 4, kRecordHeaderSize - 4 + 5));
  EXPECT_EQ(buf.substr(0, 6), "prefix");
}

TEST_F(LogWriterTest, EmptyPayloadIsJustAHeader) {
  std::string buf;
  AppendRecord(RecordType::kSnapshotEnd, 0, 3, "", &buf);
  ASSERT_EQ(buf.size(), kRecordHeaderSize);
  EXPECT_EQ(DecodeFixed32(buf.data() + 4), 0u);
  EXPECT_EQ(buf[8], 4);
}

TEST_F(LogWriterTest, HeaderThenSealMatchesAppendRecord) {
  std::string expected = "xy";
  AppendRecord(RecordType::kSnapshotTask, 7, 42, "payload bytes", &expected);

  std::string buf = "xy";
  const size_t offset = buf.size();
  char* payload =
      AppendRecordHeader(RecordType::kSnapshotTask, 7, 42, 13, &buf);
  ASSERT_EQ(payload, buf.data() + offset + kRecordHeaderSize);
  std::memcpy(payload, "payload bytes", 13);
  SealRecord(&buf, offset);
  EXPECT_EQ(buf, expected);

  SealRecord(&buf, offset);  // sealing twice changes nothing
  EXPECT_EQ(buf, expected);
}

TEST_F(LogWriterTest, UnsealedRecordHasNoValidChecksum) {
  std::string buf;
  std::memset(AppendRecordHeader(RecordType::kTransition, 0, 1, 3, &buf), 'a',
              3);
  std::string sealed = buf;
  SealRecord(&sealed, 0);
  EXPECT_NE(buf, sealed);
  EXPECT_EQ(buf.substr(4), sealed.substr(4));
}

TEST_F(LogWriterTest, ConsecutiveRecordsAreAdjacent) {
  std::string buf;
  AppendRecord(RecordType::kTransition, 0, 1, "a", &buf);
  const size_t second = buf.size();
  AppendRecord(RecordType::kTransition, 1, 2, "bc", &buf);
  EXPECT_EQ(second, kRecordHeaderSize + 1);
  EXPECT_EQ(buf.size(), 2 * kRecordHeaderSize + 3);
  EXPECT_EQ(DecodeFixed16(buf.data() + second + kRecordPartitionOffset), 1u);
  EXPECT_EQ(DecodeFixed64(buf.data() + second + kRecordLsnOffset), 2u);
}

TEST_F(LogWriterTest, OversizedPayloadAborts) {
  std::string buf;
  EXPECT_DEATH(AppendRecordHeader(RecordType::kTransition, 0, 1,
                                  size_t{kMaxRecordBytes} + 1, &buf),
               "kMaxRecordBytes");
}

// The partition is part of what the CRC covers: the same record in another
// partition has another checksum, so a flipped partition bit is damage.
TEST_F(LogWriterTest, ChecksumCoversThePartition) {
  std::string in_zero;
  std::string in_one;
  AppendRecord(RecordType::kTransition, 0, 5, "same", &in_zero);
  AppendRecord(RecordType::kTransition, 1, 5, "same", &in_one);
  EXPECT_NE(DecodeFixed32(in_zero.data() + kRecordCrcOffset),
            DecodeFixed32(in_one.data() + kRecordCrcOffset));
  EXPECT_EQ(in_zero.substr(kRecordLsnOffset), in_one.substr(kRecordLsnOffset));
}

TEST_F(LogWriterTest, HighestPartitionIsEncodedInTwoBytes) {
  std::string buf;
  AppendRecord(RecordType::kGroupTransition, kMaxPartitions - 1, 9, "g", &buf);
  EXPECT_EQ(DecodeFixed16(buf.data() + kRecordPartitionOffset),
            kMaxPartitions - 1);
  EXPECT_EQ(static_cast<uint8_t>(buf[kRecordTypeOffset]), 5);
}

TEST_F(LogWriterTest, PartitionOutOfRangeAborts) {
  std::string buf;
  EXPECT_DEATH(
      AppendRecordHeader(RecordType::kTransition, kMaxPartitions, 1, 0, &buf),
      "kMaxPartitions");
}

}  // namespace
}  // namespace taskwal::wal
