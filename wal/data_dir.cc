#include "wal/data_dir.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "wal/coding.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_macros.h"

namespace taskwal::wal {

namespace {

constexpr absl::string_view kSegmentPrefix = "wal-";
constexpr absl::string_view kSegmentSuffix = ".log";
constexpr absl::string_view kTempSuffix = ".tmp";

bool IsDigits(absl::string_view s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), absl::ascii_isdigit);
}

}  // namespace

std::string SegmentFileName(uint64_t seq) {
  return absl::StrFormat("%s%020u%s", kSegmentPrefix, seq, kSegmentSuffix);
}

bool ParseSegmentFileName(absl::string_view name, uint64_t* seq) {
  if (!absl::ConsumePrefix(&name, kSegmentPrefix) ||
      !absl::ConsumeSuffix(&name, kSegmentSuffix) || !IsDigits(name, 20)) {
    return false;
  }
  return absl::SimpleAtoi(name, seq);
}

std::string JoinPath(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

absl::StatusOr<DirectoryListing> ListDirectory(Env* env,
                                               const std::string& dir) {
  TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                           env->GetChildren(dir));
  DirectoryListing listing;
  for (std::string& name : children) {
    SegmentFile segment;
    if (ParseSegmentFileName(name, &segment.seq)) {
      segment.name = std::move(name);
      listing.segments.push_back(std::move(segment));
    } else if (absl::StartsWith(name, kSegmentPrefix) &&
               absl::EndsWith(name,
                              absl::StrCat(kSegmentSuffix, kTempSuffix))) {
      listing.temp_segments.push_back(std::move(name));
    } else if (name == kMetaFileName) {
      listing.has_meta = true;
    } else if (absl::StartsWith(name, "snapshot-")) {
      listing.snapshots.push_back(std::move(name));
    } else {
      listing.other.push_back(std::move(name));
    }
  }
  std::sort(
      listing.segments.begin(), listing.segments.end(),
      [](const SegmentFile& a, const SegmentFile& b) { return a.seq < b.seq; });
  return listing;
}

DirectoryKind ClassifyDirectory(const DirectoryListing& listing) {
  if (listing.has_meta) return DirectoryKind::kDataDirectory;
  if (!listing.segments.empty() || !listing.temp_segments.empty() ||
      !listing.snapshots.empty()) {
    return DirectoryKind::kDataWithoutMeta;
  }
  // Open takes the lock, then writes META through its temporary file
  // (WriteDirectoryMeta): a process that died in between leaves these.
  const std::string meta_temp = absl::StrCat(kMetaFileName, kTempSuffix);
  for (const std::string& name : listing.other) {
    if (name != kLockFileName && name != meta_temp) {
      return DirectoryKind::kOther;
    }
  }
  return DirectoryKind::kEmpty;
}

bool IsTornHeader(absl::string_view contents) {
  if (contents.size() < kFileHeaderSize) return true;
  return std::all_of(contents.begin(), contents.end(),
                     [](char c) { return c == 0; });
}

absl::StatusOr<std::optional<DirectoryMeta>> ReadDirectoryMeta(
    Env* env, const std::string& dir) {
  const std::string path = JoinPath(dir, kMetaFileName);
  if (!env->FileExists(path)) return std::optional<DirectoryMeta>();
  TASKWAL_ASSIGN_OR_RETURN(std::string contents, env->ReadFileToString(path));
  TASKWAL_RETURN_IF_ERROR(
      DecodeFileHeader(contents, kMetaMagic, path).status());
  LogReader reader(contents, path);
  LogReader::Record record;
  TASKWAL_ASSIGN_OR_RETURN(bool found, reader.Read(&record));
  if (!found || record.type != RecordType::kDirectoryMeta ||
      record.payload.size() < kMetaMinPayloadSize) {
    return absl::DataLossError(
        absl::StrCat(path, ": holds no directory meta record"));
  }
  DirectoryMeta meta;
  meta.partitions =
      DecodeFixed32(record.payload.data() + kMetaPartitionsOffset);
  if (meta.partitions < 1 || meta.partitions > kMaxPartitions) {
    return absl::DataLossError(absl::StrCat(path, ": partition count ",
                                            meta.partitions, " is outside [1, ",
                                            kMaxPartitions, "]"));
  }
  return std::optional<DirectoryMeta>(meta);
}

absl::Status WriteDirectoryMeta(Env* env, const std::string& dir,
                                const DirectoryMeta& meta) {
  if (meta.partitions < 1 || meta.partitions > kMaxPartitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition count ", meta.partitions, " is outside [1, ",
                     kMaxPartitions, "]"));
  }
  std::string contents = EncodeFileHeader(kMetaMagic, 0);
  std::string payload;
  PutFixed32(&payload, meta.partitions);
  AppendRecord(RecordType::kDirectoryMeta, 0, 0, payload, &contents);
  return WriteFileDurably(env, dir, kMetaFileName, contents);
}

absl::Status WriteFileDurably(Env* env, const std::string& dir,
                              absl::string_view name,
                              absl::string_view contents) {
  const std::string path = JoinPath(dir, name);
  const std::string tmp = absl::StrCat(path, kTempSuffix);
  {
    TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                             env->NewWritableFile(tmp));
    TASKWAL_RETURN_IF_ERROR(file->Append(contents));
    TASKWAL_RETURN_IF_ERROR(file->Sync());
    TASKWAL_RETURN_IF_ERROR(file->Close());
  }
  TASKWAL_RETURN_IF_ERROR(env->RenameFile(tmp, path));
  return env->SyncDir(dir);
}

}  // namespace taskwal::wal
