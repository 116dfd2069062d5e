#include "wal/pinned_dir.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "wal/format.h"
#include "wal/status_macros.h"

namespace taskwal::wal {

namespace {

// Tries before Pin gives up on a directory that never stands still.
constexpr int kMaxPinAttempts = 200;

// A segment or snapshot being written: "<name>.tmp" until renamed.
bool IsTemporary(const std::string& name) {
  return absl::EndsWith(name, ".tmp");
}

// The listing without temporary files (segment or snapshot being created).
absl::StatusOr<DirectoryListing> ListStable(Env* env, const std::string& dir) {
  TASKWAL_ASSIGN_OR_RETURN(DirectoryListing listing, ListDirectory(env, dir));
  listing.temp_segments.clear();
  listing.snapshots.erase(std::remove_if(listing.snapshots.begin(),
                                         listing.snapshots.end(), IsTemporary),
                          listing.snapshots.end());
  listing.other.erase(
      std::remove_if(listing.other.begin(), listing.other.end(), IsTemporary),
      listing.other.end());
  std::sort(listing.snapshots.begin(), listing.snapshots.end());
  return listing;
}

// The data files of a listing in the order they are pinned: META, then
// snapshots and segments, oldest first.
std::vector<std::string> DataFileNames(const DirectoryListing& listing) {
  std::vector<std::string> names;
  if (listing.has_meta) names.emplace_back(kMetaFileName);
  names.insert(names.end(), listing.snapshots.begin(), listing.snapshots.end());
  for (const SegmentFile& s : listing.segments) names.push_back(s.name);
  return names;
}

// Shares a pinned file with a caller of NewReadableFile.
class SharedReader final : public ReadableFile {
 public:
  explicit SharedReader(std::shared_ptr<ReadableFile> file)
      : file_(std::move(file)) {}
  absl::StatusOr<std::string> ReadAll() override { return file_->ReadAll(); }
  absl::StatusOr<uint64_t> Size() override { return file_->Size(); }

 private:
  const std::shared_ptr<ReadableFile> file_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PinnedDir>> PinnedDir::Pin(
    Env* base, const std::string& dir) {
  std::unique_ptr<PinnedDir> view(new PinnedDir(base, dir));
  for (int attempt = 0; attempt < kMaxPinAttempts; ++attempt) {
    TASKWAL_ASSIGN_OR_RETURN(bool pinned, view->TryPin());
    if (pinned) return view;
    // The owner is in the middle of a snapshot: let it finish.
    if (attempt >= 2) absl::SleepFor(absl::Microseconds(50 * attempt));
  }
  return absl::UnavailableError(
      absl::StrCat(dir, " changed while it was being opened for reading, ",
                   kMaxPinAttempts, " times in a row"));
}

PinnedDir::~PinnedDir() = default;

absl::StatusOr<bool> PinnedDir::TryPin() {
  files_.clear();
  TASKWAL_ASSIGN_OR_RETURN(listing_, ListStable(base_, dir_));
  std::vector<std::string> names = DataFileNames(listing_);
  complete_ = names.size() <= kMaxPinnedFiles;
  if (!complete_) names.resize(kMaxPinnedFiles);
  for (const std::string& name : names) {
    const std::string path = JoinPath(dir_, name);
    absl::StatusOr<std::unique_ptr<ReadableFile>> file =
        base_->NewReadableFile(path);
    if (absl::IsNotFound(file.status())) return false;  // Removed meanwhile.
    if (!file.ok()) return file.status();
    files_.emplace(path, std::shared_ptr<ReadableFile>(std::move(*file)));
  }
  TASKWAL_ASSIGN_OR_RETURN(bool changed, Changed());
  return !changed;
}

absl::StatusOr<bool> PinnedDir::Changed() {
  TASKWAL_ASSIGN_OR_RETURN(DirectoryListing now, ListStable(base_, dir_));
  return !Consistent(now);
}

bool PinnedDir::Consistent(const DirectoryListing& now) const {
  // Every listed data file is still there: none was removed between the
  // listings, so none was missed for having been removed during the first.
  const std::vector<std::string> now_names = DataFileNames(now);
  const absl::flat_hash_set<std::string> present(now_names.begin(),
                                                 now_names.end());
  for (const std::string& name : DataFileNames(listing_)) {
    if (!present.contains(name)) return false;
  }
  // Nothing that could change what a reader chooses was created meanwhile.
  // A segment after the newest listed one is harmless: it extends the log
  // past the view's end.
  if (now.has_meta && !listing_.has_meta) return false;
  if (!std::includes(listing_.snapshots.begin(), listing_.snapshots.end(),
                     now.snapshots.begin(), now.snapshots.end())) {
    return false;
  }
  const uint64_t newest =
      listing_.segments.empty() ? 0 : listing_.segments.back().seq;
  size_t i = 0;
  for (const SegmentFile& s : now.segments) {
    if (s.seq > newest) break;
    while (i < listing_.segments.size() && listing_.segments[i].seq < s.seq) {
      ++i;
    }
    if (i == listing_.segments.size() || listing_.segments[i].seq != s.seq) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<ReadableFile>> PinnedDir::NewReadableFile(
    const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) return base_->NewReadableFile(path);
  return std::make_unique<SharedReader>(it->second);
}

absl::StatusOr<std::string> PinnedDir::ReadFileToString(
    const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) return base_->ReadFileToString(path);
  return it->second->ReadAll();
}

absl::StatusOr<uint64_t> PinnedDir::GetFileSize(const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) return base_->GetFileSize(path);
  return it->second->Size();
}

bool PinnedDir::FileExists(const std::string& path) {
  return files_.contains(path) || base_->FileExists(path);
}

absl::StatusOr<std::vector<std::string>> PinnedDir::GetChildren(
    const std::string& dir) {
  if (dir != dir_) return base_->GetChildren(dir);
  std::vector<std::string> names = DataFileNames(listing_);
  names.insert(names.end(), listing_.other.begin(), listing_.other.end());
  return names;
}

absl::Status PinnedDir::ReadOnly(const std::string& path) const {
  return absl::FailedPreconditionError(
      absl::StrCat(path, ": a read-only view of ", dir_, " changes nothing"));
}

absl::StatusOr<std::unique_ptr<WritableFile>> PinnedDir::NewWritableFile(
    const std::string& path) {
  return ReadOnly(path);
}
absl::StatusOr<std::unique_ptr<WritableFile>> PinnedDir::NewAppendableFile(
    const std::string& path) {
  return ReadOnly(path);
}
absl::Status PinnedDir::RemoveFile(const std::string& path) {
  return ReadOnly(path);
}
absl::Status PinnedDir::RenameFile(const std::string& from,
                                   const std::string& /*to*/) {
  return ReadOnly(from);
}
absl::Status PinnedDir::TruncateFile(const std::string& path,
                                     uint64_t /*size*/) {
  return ReadOnly(path);
}
absl::Status PinnedDir::CreateDir(const std::string& dir) {
  return ReadOnly(dir);
}
absl::Status PinnedDir::SyncDir(const std::string& dir) {
  return ReadOnly(dir);
}
absl::StatusOr<std::unique_ptr<FileLock>> PinnedDir::LockFile(
    const std::string& path) {
  return ReadOnly(path);
}

}  // namespace taskwal::wal
