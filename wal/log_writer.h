#ifndef TASKWAL_WAL_LOG_WRITER_H_
#define TASKWAL_WAL_LOG_WRITER_H_

// Encoding of file headers and records (layout: wal/format.h,
// wal/log_format.md). These functions only build bytes in memory; writing
// and syncing them is the caller's job. All are stateless and safe for
// concurrent use on distinct buffers.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "wal/format.h"

namespace taskwal::wal {

// Returns the 24-byte file header for a file with `magic` (kSegmentMagic or
// kSnapshotMagic), version kFormatVersion and `lsn`.
// REQUIRES: magic.size() == kMagicSize.
std::string EncodeFileHeader(absl::string_view magic, uint64_t lsn);

// Appends one complete, sealed record to *dst.
// REQUIRES: payload.size() <= kMaxRecordBytes.
// `partition` is the record's partition (0 in snapshots of partition 0,
// the META file, and a directory of one partition).
void AppendRecord(RecordType type, uint32_t partition, uint64_t lsn,
                  absl::string_view payload, std::string* dst);

// Zero-copy variant of AppendRecord, for serializing straight into the
// buffer:
//
//   const size_t offset = buf.size();
//   char* payload =
//       AppendRecordHeader(type, partition, lsn, msg.ByteSizeLong(), &buf);
//   msg.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload));
//   SealRecord(&buf, offset);
//
// AppendRecordHeader grows *dst by kRecordHeaderSize + payload_size, writes
// the header with a zero CRC and returns a pointer to the payload bytes,
// valid until *dst is next modified. The caller must fill exactly
// payload_size bytes there and then call SealRecord with the offset *dst had
// before the call; an unsealed record reads back as a checksum mismatch.
// REQUIRES: payload_size <= kMaxRecordBytes (checked; aborts otherwise, as
// such a record would read back as damage).
// REQUIRES: partition < kMaxPartitions (checked likewise).
char* AppendRecordHeader(RecordType type, uint32_t partition, uint64_t lsn,
                         size_t payload_size, std::string* dst);

// Writes the kGroupHeaderSize-byte header of a kGroupTransition payload
// (wal/format.h) to dst.
void EncodeGroupHeader(uint32_t pieces, uint32_t leader_partition,
                       uint64_t leader_lsn, char* dst);

// Computes and stores the CRC of the record starting at `record_offset`.
// Sealing twice is harmless.
// REQUIRES: a record header written by AppendRecordHeader starts at
// record_offset and its whole payload lies within *dst.
void SealRecord(std::string* dst, size_t record_offset);

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_LOG_WRITER_H_
