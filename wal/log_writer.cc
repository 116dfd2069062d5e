#include "wal/log_writer.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/format.h"

namespace taskwal::wal {
namespace {

// Violated preconditions here would write data the reader rejects as damage
// and recovery would then discard; stop loudly instead.
void CheckOrDie(bool condition, const char* message) {
  if (condition) return;
  std::fprintf(stderr, "taskwal log_writer: %s\n", message);
  std::abort();
}

}  // namespace

std::string EncodeFileHeader(absl::string_view magic, uint64_t lsn) {
  CheckOrDie(magic.size() == kMagicSize, "file magic must be 8 bytes");
  std::string header(kFileHeaderSize, '\0');
  char* p = &header[0];
  std::memcpy(p, magic.data(), kMagicSize);
  EncodeFixed32(p + kFileHeaderVersionOffset, kFormatVersion);
  EncodeFixed64(p + kFileHeaderLsnOffset, lsn);
  EncodeFixed32(p + kFileHeaderCrcOffset,
                crc32c::Mask(crc32c::Value(p, kFileHeaderCrcOffset)));
  return header;
}

char* AppendRecordHeader(RecordType type, uint32_t partition, uint64_t lsn,
                         size_t payload_size, std::string* dst) {
  CheckOrDie(payload_size <= kMaxRecordBytes,
             "record payload exceeds kMaxRecordBytes");
  CheckOrDie(partition < kMaxPartitions, "partition exceeds kMaxPartitions");
  const size_t offset = dst->size();
  dst->resize(offset + kRecordHeaderSize + payload_size);
  char* header = &(*dst)[offset];
  EncodeFixed32(header + kRecordCrcOffset, 0);
  EncodeFixed32(header + kRecordLengthOffset,
                static_cast<uint32_t>(payload_size));
  header[kRecordTypeOffset] = static_cast<char>(type);
  EncodeFixed16(header + kRecordPartitionOffset,
                static_cast<uint16_t>(partition));
  EncodeFixed64(header + kRecordLsnOffset, lsn);
  return header + kRecordHeaderSize;
}

void SealRecord(std::string* dst, size_t record_offset) {
  CheckOrDie(record_offset <= dst->size() &&
                 dst->size() - record_offset >= kRecordHeaderSize,
             "SealRecord: no record header at the given offset");
  char* header = &(*dst)[record_offset];
  const uint32_t length = DecodeFixed32(header + kRecordLengthOffset);
  CheckOrDie(dst->size() - record_offset - kRecordHeaderSize >= length,
             "SealRecord: record payload extends past the buffer");
  const uint32_t crc =
      crc32c::Value(header + kRecordLengthOffset,
                    kRecordHeaderSize - kRecordLengthOffset + length);
  EncodeFixed32(header + kRecordCrcOffset, crc32c::Mask(crc));
}

void EncodeGroupHeader(uint32_t pieces, uint32_t leader_partition,
                       uint64_t leader_lsn, char* dst) {
  std::memset(dst, 0, kGroupHeaderSize);
  EncodeFixed16(dst + kGroupPiecesOffset, static_cast<uint16_t>(pieces));
  EncodeFixed16(dst + kGroupLeaderPartitionOffset,
                static_cast<uint16_t>(leader_partition));
  EncodeFixed64(dst + kGroupLeaderLsnOffset, leader_lsn);
}

void AppendRecord(RecordType type, uint32_t partition, uint64_t lsn,
                  absl::string_view payload, std::string* dst) {
  const size_t offset = dst->size();
  char* out = AppendRecordHeader(type, partition, lsn, payload.size(), dst);
  if (!payload.empty()) std::memcpy(out, payload.data(), payload.size());
  SealRecord(dst, offset);
}

}  // namespace taskwal::wal
