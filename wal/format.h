#ifndef TASKWAL_WAL_FORMAT_H_
#define TASKWAL_WAL_FORMAT_H_

// Constants of taskwal's on-disk format. The prose description (byte layout,
// checksum, validity rules, what the reader does with torn or corrupt data)
// is wal/log_format.md; keep the two in step.
//
// Summary (all integers little-endian):
//
//   file header (24 bytes, log segments and snapshots):
//     magic[8] | format_version u32 | lsn u64 | masked_crc32c u32
//     (CRC over the first 20 bytes)
//
//   record (17-byte header, then payload):
//     masked_crc32c u32 | payload_length u32 | type u8 | lsn u64 | payload
//     (CRC over everything after the CRC field: length, type, lsn, payload)

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace taskwal::wal {

// File header.
inline constexpr size_t kMagicSize = 8;
inline constexpr absl::string_view kSegmentMagic = "TWALSEG1";
inline constexpr absl::string_view kSnapshotMagic = "TWALSNP1";
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kFileHeaderSize = 24;
// Offsets of the header fields.
inline constexpr size_t kFileHeaderVersionOffset = 8;
inline constexpr size_t kFileHeaderLsnOffset = 12;
inline constexpr size_t kFileHeaderCrcOffset = 20;

// Record.
inline constexpr size_t kRecordHeaderSize = 17;
// Offsets of the record header fields.
inline constexpr size_t kRecordCrcOffset = 0;
inline constexpr size_t kRecordLengthOffset = 4;
inline constexpr size_t kRecordTypeOffset = 8;
inline constexpr size_t kRecordLsnOffset = 9;
// Largest payload a record may carry. A stored length above it is damage;
// readers check it before trusting the length for anything.
inline constexpr uint32_t kMaxRecordBytes = 64u << 20;

// What a record's payload holds. 0 is never valid, so zeroed space (a
// preallocated or never-written tail) reads as damage, not as a record.
enum class RecordType : uint8_t {
  kTransition = 1,    // one task state transition (log segments)
  kSnapshotMeta = 2,  // first record of a snapshot
  kSnapshotTask = 3,  // one task of a snapshot
  kSnapshotEnd = 4,   // last record of a snapshot
};
inline constexpr uint8_t kMinRecordType = 1;
inline constexpr uint8_t kMaxRecordType = 4;

inline constexpr bool IsValidRecordType(uint8_t type) {
  return type >= kMinRecordType && type <= kMaxRecordType;
}

static_assert(kSegmentMagic.size() == kMagicSize, "magic is 8 bytes");
static_assert(kSnapshotMagic.size() == kMagicSize, "magic is 8 bytes");
static_assert(kFileHeaderCrcOffset + 4 == kFileHeaderSize, "header layout");
static_assert(kRecordLsnOffset + 8 == kRecordHeaderSize, "record layout");

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_FORMAT_H_
