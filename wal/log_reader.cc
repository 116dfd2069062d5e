#include "wal/log_reader.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/format.h"

namespace taskwal::wal {
namespace {

bool AllZero(absl::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(),
                     [](char c) { return c == '\0'; });
}

}  // namespace

absl::StatusOr<uint64_t> DecodeFileHeader(absl::string_view data,
                                          absl::string_view magic,
                                          absl::string_view file_name) {
  if (data.size() < kFileHeaderSize) {
    return absl::DataLossError(absl::StrCat(
        file_name, ": file header truncated: file has ", data.size(),
        " bytes, the header needs ", kFileHeaderSize));
  }
  const absl::string_view header = data.substr(0, kFileHeaderSize);
  if (header.substr(0, kMagicSize) != magic) {
    return absl::DataLossError(absl::StrCat(
        file_name, ": bad file header at offset 0: ",
        AllZero(header) ? "header is zeroed space"
                        : absl::StrCat("magic is not \"", magic, "\"")));
  }
  const uint32_t stored_crc =
      crc32c::Unmask(DecodeFixed32(header.data() + kFileHeaderCrcOffset));
  if (stored_crc != crc32c::Value(header.data(), kFileHeaderCrcOffset)) {
    return absl::DataLossError(absl::StrCat(
        file_name, ": bad file header at offset 0: checksum mismatch"));
  }
  const uint32_t version =
      DecodeFixed32(header.data() + kFileHeaderVersionOffset);
  if (version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        file_name, ": unsupported format version ", version,
        version == 1 ? " (written by taskwal before partitions)" : "",
        "; this build reads version ", kFormatVersion));
  }
  return DecodeFixed64(header.data() + kFileHeaderLsnOffset);
}

bool DecodeGroupHeader(absl::string_view payload, GroupHeader* header,
                       absl::string_view* transition) {
  if (payload.size() < kGroupHeaderSize) return false;
  const char* h = payload.data();
  header->pieces = DecodeFixed16(h + kGroupPiecesOffset);
  header->leader_partition = DecodeFixed16(h + kGroupLeaderPartitionOffset);
  header->leader_lsn = DecodeFixed64(h + kGroupLeaderLsnOffset);
  *transition = payload.substr(kGroupHeaderSize);
  return true;
}

LogReader::LogReader(absl::string_view contents, std::string file_name,
                     uint64_t start_offset)
    : contents_(contents),
      file_name_(std::move(file_name)),
      valid_end_(std::min<uint64_t>(start_offset, contents.size())) {
  if (start_offset > contents.size()) {
    status_ = absl::InvalidArgumentError(absl::StrCat(
        file_name_, ": start offset ", start_offset,
        " is beyond the end of the data (", contents.size(), " bytes)"));
  }
}

LogReader::Damage LogReader::ParseRecord(uint64_t offset, Record* out) const {
  const absl::string_view rest = contents_.substr(offset);
  const absl::string_view header = rest.substr(0, kRecordHeaderSize);
  if (AllZero(header)) return Damage::kZeroedSpace;
  if (header.size() < kRecordHeaderSize) return Damage::kTruncatedHeader;
  // The length is checked against the limit before it is used for anything.
  const uint32_t length = DecodeFixed32(header.data() + kRecordLengthOffset);
  if (length > kMaxRecordBytes) return Damage::kLengthTooLarge;
  if (rest.size() - kRecordHeaderSize < length) {
    return Damage::kTruncatedPayload;
  }
  const uint32_t stored_crc =
      crc32c::Unmask(DecodeFixed32(header.data() + kRecordCrcOffset));
  const uint32_t actual_crc =
      crc32c::Value(rest.data() + kRecordLengthOffset,
                    kRecordHeaderSize - kRecordLengthOffset + length);
  if (stored_crc != actual_crc) return Damage::kChecksumMismatch;
  const auto type = static_cast<uint8_t>(header[kRecordTypeOffset]);
  if (!IsValidRecordType(type)) return Damage::kUnknownType;

  out->type = static_cast<RecordType>(type);
  out->partition = DecodeFixed16(header.data() + kRecordPartitionOffset);
  out->lsn = DecodeFixed64(header.data() + kRecordLsnOffset);
  out->payload = rest.substr(kRecordHeaderSize, length);
  out->offset = offset;
  return Damage::kNone;
}

absl::Status LogReader::DamageStatus(Damage damage, uint64_t offset) const {
  const absl::string_view rest = contents_.substr(offset);
  std::string what;
  switch (damage) {
    case Damage::kNone:
      return absl::OkStatus();
    case Damage::kZeroedSpace:
      what = absl::StrCat("zeroed space (", rest.size(),
                          " bytes to the end, header bytes all zero)");
      break;
    case Damage::kTruncatedHeader:
      what = absl::StrCat("truncated header (", rest.size(), " of ",
                          kRecordHeaderSize, " bytes)");
      break;
    case Damage::kLengthTooLarge:
      what = absl::StrCat("record length ",
                          DecodeFixed32(rest.data() + kRecordLengthOffset),
                          " exceeds kMaxRecordBytes (", kMaxRecordBytes, ")");
      break;
    case Damage::kTruncatedPayload:
      what =
          absl::StrCat("truncated payload (record length ",
                       DecodeFixed32(rest.data() + kRecordLengthOffset), ", ",
                       rest.size() - kRecordHeaderSize, " bytes present)");
      break;
    case Damage::kChecksumMismatch:
      what = "checksum mismatch";
      break;
    case Damage::kUnknownType:
      what = absl::StrCat("unknown record type ",
                          static_cast<uint8_t>(rest[kRecordTypeOffset]) + 0);
      break;
  }
  return absl::DataLossError(absl::StrCat(
      file_name_, ": damaged record at offset ", offset, ": ", what));
}

absl::StatusOr<bool> LogReader::Read(Record* out) {
  if (!status_.ok()) return status_;
  if (valid_end_ == contents_.size()) return false;
  Record record;
  const Damage damage = ParseRecord(valid_end_, &record);
  if (damage != Damage::kNone) {
    status_ = DamageStatus(damage, valid_end_);
    return status_;
  }
  valid_end_ = record.offset + kRecordHeaderSize + record.payload.size();
  *out = record;
  return true;
}

bool LogReader::ValidRecordFollows() const {
  if (!absl::IsDataLoss(status_)) return false;
  if (contents_.size() < kRecordHeaderSize) return false;
  Record unused;
  for (uint64_t offset = valid_end_ + 1;
       offset <= contents_.size() - kRecordHeaderSize; ++offset) {
    // Cheap rejections first; only a plausible header costs a CRC.
    const char* header = contents_.data() + offset;
    if (!IsValidRecordType(static_cast<uint8_t>(header[kRecordTypeOffset]))) {
      continue;
    }
    const uint32_t length = DecodeFixed32(header + kRecordLengthOffset);
    if (length > contents_.size() - offset - kRecordHeaderSize) continue;
    if (ParseRecord(offset, &unused) == Damage::kNone) return true;
  }
  return false;
}

}  // namespace taskwal::wal
