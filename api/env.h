#ifndef TASKWAL_API_ENV_H_
#define TASKWAL_API_ENV_H_

// The file-system seam. The engine does all its I/O through an Env, so a
// test (the project's or an embedder's) can swap in FaultInjectionEnv
// (api/fault_injection_env.h) and simulate power loss, torn writes and
// failing fsyncs. Env::Default() is the POSIX implementation.
//
// Paths are plain strings; directories are separated by '/'. Every method
// returns kNotFound for a missing file, kFailedPrecondition for a held lock,
// and another code for any other I/O failure; messages name the path and the
// errno text.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace taskwal {

// A file open for appending. Not safe for concurrent use.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends data at the end of the file. Not durable until Sync().
  virtual absl::Status Append(absl::string_view data) = 0;
  // Appends the pieces in order, as Append of their concatenation would
  // (without building it). The default appends them one by one; the POSIX
  // file writes them with writev(2).
  virtual absl::Status AppendAll(absl::Span<const absl::string_view> pieces) {
    for (absl::string_view piece : pieces) {
      absl::Status s = Append(piece);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Makes every appended byte durable (fdatasync). Does not make the file's
  // directory entry durable: that is Env::SyncDir.
  virtual absl::Status Sync() = 0;
  // Closes without syncing. Idempotent.
  virtual absl::Status Close() = 0;
};

// A file open for reading. It reads the file it opened even after that
// file's name is removed or replaced, and sees what is appended to the file
// meanwhile, as a POSIX file descriptor does. Safe for concurrent use.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // The file's whole contents as they are now.
  virtual absl::StatusOr<std::string> ReadAll() = 0;
  // The file's size now.
  virtual absl::StatusOr<uint64_t> Size() = 0;
};

// An exclusive lock on a file, released when the object is destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

// Safe for concurrent use.
class Env {
 public:
  virtual ~Env() = default;

  // The POSIX Env. Lives for the whole process.
  static Env* Default();

  // Creates (or truncates) path, readable and writable by its owner only.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  // Opens an existing file to append at its end.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) = 0;
  // Opens an existing file for reading.
  virtual absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      const std::string& path) = 0;
  virtual absl::StatusOr<std::string> ReadFileToString(
      const std::string& path) = 0;
  virtual absl::StatusOr<uint64_t> GetFileSize(const std::string& path) = 0;
  virtual bool FileExists(const std::string& path) = 0;
  // Names (not paths) of the entries in dir, in no particular order.
  virtual absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // Atomically replaces `to` with `from`. Not durable until SyncDir.
  virtual absl::Status RenameFile(const std::string& from,
                                  const std::string& to) = 0;
  // Cuts the file to `size` bytes and makes the new size durable.
  virtual absl::Status TruncateFile(const std::string& path, uint64_t size) = 0;
  // Creates dir (owner-only access) if it does not exist.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  // Makes the entries of dir (created, renamed, removed files) durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Takes an exclusive lock on path (creating it), held until the returned
  // object is destroyed. A lock held by this or another process:
  // kFailedPrecondition naming the holder's pid when it is known. The
  // holder's pid is written into the file.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) = 0;
};

// An Env that forwards every call to `target` (not owned; must outlive
// it): derive from it and override only what a test or an embedder's Env
// changes, as with LevelDB's EnvWrapper.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override {
    return target_->NewWritableFile(path);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return target_->NewAppendableFile(path);
  }
  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      const std::string& path) override {
    return target_->NewReadableFile(path);
  }
  absl::StatusOr<std::string> ReadFileToString(
      const std::string& path) override {
    return target_->ReadFileToString(path);
  }
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    return target_->GetFileSize(path);
  }
  bool FileExists(const std::string& path) override {
    return target_->FileExists(path);
  }
  absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) override {
    return target_->GetChildren(dir);
  }
  absl::Status RemoveFile(const std::string& path) override {
    return target_->RemoveFile(path);
  }
  absl::Status RenameFile(const std::string& from,
                          const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  absl::Status TruncateFile(const std::string& path, uint64_t size) override {
    return target_->TruncateFile(path, size);
  }
  absl::Status CreateDir(const std::string& dir) override {
    return target_->CreateDir(dir);
  }
  absl::Status SyncDir(const std::string& dir) override {
    return target_->SyncDir(dir);
  }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override {
    return target_->LockFile(path);
  }

 private:
  Env* const target_;
};

}  // namespace taskwal

#endif  // TASKWAL_API_ENV_H_
