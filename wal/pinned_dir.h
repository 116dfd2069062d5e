#ifndef TASKWAL_WAL_PINNED_DIR_H_
#define TASKWAL_WAL_PINNED_DIR_H_

// A read-only view of a data directory that its owner may be writing:
// readers (Engine::Open with read_only, `taskwal verify`) see the files of
// one moment, however long they take to read them.
//
// Pin() lists the directory and opens every data file in it (META, log
// segments, snapshots, set-aside copies) at once. Reads go through those
// handles, which keep a file readable after the owner removes it, as a
// snapshot does with older snapshots and segments. Pin() then lists the
// directory again and starts over if a pinned file vanished meanwhile, or
// if a snapshot, META or a segment before the newest pinned one appeared:
// the first listing may have missed files created and removed while it
// ran. What is pinned is the directory as it stood at one moment between
// the two listings, and the owner orders its writes so that every such
// moment is recoverable (it is what a kill -9 then would leave). A segment
// that the owner is still appending to is read as it is when read: the
// records added since extend the log, and a half-written final record is
// skipped as a torn tail.
//
// Temporary files (*.tmp: a segment or snapshot being created) are neither
// pinned nor listed. Other names (LOCK, unknown files) are listed as they
// were and read from the directory itself.
//
// Only the first kMaxPinnedFiles data files are pinned (older snapshots
// and segments first); a larger directory's later files are read from the
// directory, so a snapshot taken meanwhile can make them vanish (kNotFound)
// and the reader must try again. Changed() tells whether that is worth it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "taskwal/env.h"
#include "wal/data_dir.h"

namespace taskwal::wal {

class PinnedDir final : public Env {
 public:
  // Files held open at most: well below the usual 1024 descriptors.
  static constexpr size_t kMaxPinnedFiles = 512;

  // Pins dir's data files, read through base (which must outlive the
  // result). kNotFound: dir does not exist. kUnavailable: the directory
  // changed between the listings on every one of many tries. Other codes:
  // from base.
  static absl::StatusOr<std::unique_ptr<PinnedDir>> Pin(Env* base,
                                                        const std::string& dir);

  PinnedDir(const PinnedDir&) = delete;
  PinnedDir& operator=(const PinnedDir&) = delete;
  ~PinnedDir() override;

  // Whether the directory's data files differ from the pinned ones now
  // (one was removed, or a snapshot or an earlier segment was added): a
  // reader that failed on this view may succeed on a new one.
  absl::StatusOr<bool> Changed();

  // How many files are held open.
  size_t pinned_files() const { return files_.size(); }
  // Whether every data file is held open (there are at most
  // kMaxPinnedFiles): then what a reader finds is not a race with the
  // owner, and trying again is pointless.
  bool complete() const { return complete_; }

  // Env. Reads of pinned files and listings of dir come from the view;
  // everything else is read from base. Every call that would change a file
  // returns kFailedPrecondition.
  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      const std::string& path) override;
  absl::StatusOr<std::string> ReadFileToString(
      const std::string& path) override;
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override;
  bool FileExists(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override;
  absl::Status RemoveFile(const std::string& path) override;
  absl::Status RenameFile(const std::string& from,
                          const std::string& to) override;
  absl::Status TruncateFile(const std::string& path, uint64_t size) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override;

 private:
  PinnedDir(Env* base, std::string dir) : base_(base), dir_(std::move(dir)) {}

  // One try: list, open, list again. false: the directory changed between
  // the listings (or a file vanished before it was opened); try again.
  absl::StatusOr<bool> TryPin();
  // Whether `now` may stand beside listing_ (see Changed()).
  bool Consistent(const DirectoryListing& now) const;
  absl::Status ReadOnly(const std::string& path) const;

  Env* const base_;
  const std::string dir_;
  // The first listing, less temporary files; fixed once Pin returns.
  DirectoryListing listing_;
  // Path -> open file. Shared with the readers NewReadableFile hands out.
  absl::flat_hash_map<std::string, std::shared_ptr<ReadableFile>> files_;
  bool complete_ = false;
};

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_PINNED_DIR_H_
