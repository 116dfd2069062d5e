#ifndef TASKWAL_WAL_LOG_READER_H_
#define TASKWAL_WAL_LOG_READER_H_

// Decoding of file headers and records (layout: wal/format.h,
// wal/log_format.md).

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wal/format.h"

namespace taskwal::wal {

// Checks the 24-byte file header at the start of `data` and returns its lsn.
// `file_name` only appears in error messages.
//   kDataLoss: data is shorter than kFileHeaderSize, the magic is not
//     `magic`, or the header CRC does not match.
//   kFailedPrecondition: the header is intact but its format version is not
//     kFormatVersion. The file is not damaged, only unreadable by this
//     build, so recovery must not truncate or delete it.
absl::StatusOr<uint64_t> DecodeFileHeader(absl::string_view data,
                                          absl::string_view magic,
                                          absl::string_view file_name);

// The header of a kGroupTransition payload (wal/format.h).
struct GroupHeader {
  uint32_t pieces = 0;
  uint32_t leader_partition = 0;
  uint64_t leader_lsn = 0;
};

// Splits a kGroupTransition payload into its header and the transition
// after it. false: the payload is shorter than the header.
bool DecodeGroupHeader(absl::string_view payload, GroupHeader* header,
                       absl::string_view* transition);

// Reads the records of one file whose contents are already in memory,
// front to back. Checks framing, CRC and record type; it does not judge LSN
// order or continuity (recovery does).
//
// Not safe for concurrent use; one reader per thread. Cheap to construct;
// returns views into `contents`, which must outlive the reader and every
// Record it returned.
class LogReader {
 public:
  struct Record {
    RecordType type;
    uint32_t partition;
    uint64_t lsn;
    absl::string_view payload;  // points into the reader's contents
    uint64_t offset;            // of the record header within the contents
  };

  // Reads records starting at `start_offset` (by default right after the
  // file header; the caller checks the header with DecodeFileHeader).
  LogReader(absl::string_view contents, std::string file_name,
            uint64_t start_offset = kFileHeaderSize);

  // Reads the next record.
  //   true: *out holds the record, valid_end() is just past it.
  //   false: clean end; the previous record ended exactly at the end of the
  //     contents. Further calls return false again.
  //   kDataLoss: the bytes at valid_end() do not hold a valid record. The
  //     message names the file, the offset and the damage: "zeroed space"
  //     (the header bytes present are all zero), "truncated header",
  //     "record length N exceeds kMaxRecordBytes", "truncated payload",
  //     "checksum mismatch", "unknown record type N" (only reported when
  //     the CRC is good). *out is untouched. Further calls return the same
  //     status; use ValidRecordFollows() to tell a torn tail from
  //     corruption.
  //   kInvalidArgument: start_offset is beyond the end of the contents.
  absl::StatusOr<bool> Read(Record* out);

  // Offset just past the last record Read returned; before the first
  // record, the start offset (clamped to the contents' size). After a clean
  // end it equals the contents' size; after kDataLoss it is the offset of the
  // damaged record, i.e. the length to truncate the file to.
  uint64_t valid_end() const { return valid_end_; }

  // After Read returned kDataLoss: whether some offset after the damage
  // (scanned byte by byte from valid_end() + 1) holds a complete record
  // whose length, CRC and type check out. false means nothing valid
  // follows, the signature of a torn final write; true means valid data
  // follows the damage, i.e. real corruption. Returns false if Read has not
  // reported damage. Cost: linear in the bytes after the damage, plus a CRC
  // for each offset whose header looks plausible.
  bool ValidRecordFollows() const;

 private:
  // Validates the record starting at `offset`. On success fills *out; on
  // failure returns the kind of damage (for the message).
  enum class Damage {
    kNone,
    kZeroedSpace,
    kTruncatedHeader,
    kLengthTooLarge,
    kTruncatedPayload,
    kChecksumMismatch,
    kUnknownType,
  };
  Damage ParseRecord(uint64_t offset, Record* out) const;
  absl::Status DamageStatus(Damage damage, uint64_t offset) const;

  const absl::string_view contents_;
  const std::string file_name_;

  uint64_t valid_end_;
  absl::Status status_;  // sticky: the first error Read reported
};

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_LOG_READER_H_
