#ifndef TASKWAL_WAL_FORMAT_H_
#define TASKWAL_WAL_FORMAT_H_

// Constants of taskwal's on-disk format. The prose description (byte layout,
// checksum, validity rules, what the reader does with torn or corrupt data,
// partitions and groups) is wal/log_format.md; keep the two in step.
//
// Summary (all integers little-endian):
//
//   file header (24 bytes: log segments, snapshots, the META file):
//     magic[8] | format_version u32 | lsn u64 | masked_crc32c u32
//     (CRC over the first 20 bytes; for a segment, lsn is its sequence
//     number; for a snapshot, the partition LSN it covers; for META, 0)
//
//   record (19-byte header, then payload):
//     masked_crc32c u32 | payload_length u32 | type u8 | partition u16 |
//     lsn u64 | payload
//     (CRC over everything after the CRC field: length, type, partition,
//     lsn, payload)
//
//   group transition payload (record type 5):
//     pieces u16 | leader_partition u16 | reserved u32 (0) |
//     leader_lsn u64 | transition

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace taskwal::wal {

// File header.
inline constexpr size_t kMagicSize = 8;
inline constexpr absl::string_view kSegmentMagic = "TWALSEG1";
inline constexpr absl::string_view kSnapshotMagic = "TWALSNP1";
inline constexpr absl::string_view kMetaMagic = "TWALMETA";
inline constexpr absl::string_view kOptionsMagic = "TWALOPTS";
// Version 1: one global LSN sequence, 17-byte record headers, segments
// named by their first LSN (taskwal before partitions). Version 2:
// partitions, each with its own LSN sequence.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr size_t kFileHeaderSize = 24;
// Offsets of the header fields.
inline constexpr size_t kFileHeaderVersionOffset = 8;
inline constexpr size_t kFileHeaderLsnOffset = 12;
inline constexpr size_t kFileHeaderCrcOffset = 20;

// Record.
inline constexpr size_t kRecordHeaderSize = 19;
// Offsets of the record header fields.
inline constexpr size_t kRecordCrcOffset = 0;
inline constexpr size_t kRecordLengthOffset = 4;
inline constexpr size_t kRecordTypeOffset = 8;
inline constexpr size_t kRecordPartitionOffset = 9;
inline constexpr size_t kRecordLsnOffset = 11;
// Largest payload a record may carry. A stored length above it is damage;
// readers check it before trusting the length for anything.
inline constexpr uint32_t kMaxRecordBytes = 64u << 20;

// Partitions of a data directory: [1, kMaxPartitions].
inline constexpr uint32_t kMaxPartitions = 256;

// What a record's payload holds. 0 is never valid, so zeroed space (a
// preallocated or never-written tail) reads as damage, not as a record.
enum class RecordType : uint8_t {
  kTransition = 1,    // one task state transition (log segments)
  kSnapshotMeta = 2,  // first record of a snapshot
  kSnapshotTask = 3,  // one task of a snapshot
  kSnapshotEnd = 4,   // last record of a snapshot
  // One partition's piece of a transition that spans partitions (a batch
  // of submits): valid only together with every other piece of its group.
  kGroupTransition = 5,
  kDirectoryMeta = 6,  // the META file's one record
  kStoredOptions = 7,  // the OPTIONS file's one record
};
inline constexpr uint8_t kMinRecordType = 1;
inline constexpr uint8_t kMaxRecordType = 7;

inline constexpr bool IsValidRecordType(uint8_t type) {
  return type >= kMinRecordType && type <= kMaxRecordType;
}

// The group header at the start of a kGroupTransition payload. A group is
// named by its leader: the piece in the lowest partition, and its LSN.
inline constexpr size_t kGroupHeaderSize = 16;
inline constexpr size_t kGroupPiecesOffset = 0;
inline constexpr size_t kGroupLeaderPartitionOffset = 2;
inline constexpr size_t kGroupLeaderLsnOffset = 8;

// The META file (kDirectoryMeta payload): partitions u32, then fields a
// later version may add (a reader ignores bytes it does not know).
inline constexpr absl::string_view kMetaFileName = "META";
inline constexpr size_t kMetaPartitionsOffset = 0;
inline constexpr size_t kMetaMinPayloadSize = 4;

// The OPTIONS file (kStoredOptions payload: a serialized
// taskwal.engine.StoredOptions, engine/stored_options.proto): the data
// options of the directory's last writer.
inline constexpr absl::string_view kOptionsFileName = "OPTIONS";

static_assert(kSegmentMagic.size() == kMagicSize, "magic is 8 bytes");
static_assert(kSnapshotMagic.size() == kMagicSize, "magic is 8 bytes");
static_assert(kMetaMagic.size() == kMagicSize, "magic is 8 bytes");
static_assert(kOptionsMagic.size() == kMagicSize, "magic is 8 bytes");
static_assert(kFileHeaderCrcOffset + 4 == kFileHeaderSize, "header layout");
static_assert(kRecordLsnOffset + 8 == kRecordHeaderSize, "record layout");
static_assert(kGroupLeaderLsnOffset + 8 == kGroupHeaderSize, "group layout");

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_FORMAT_H_
