// Env::Default(): the POSIX file system.
#include "wal/posix_env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "taskwal/env.h"
#include "wal/status_macros.h"

namespace taskwal {
namespace wal {

absl::Status PosixErrorToStatus(absl::string_view operation,
                                absl::string_view path, int error_number) {
  // strerror is MT-safe in glibc >= 2.32 (Debian 12 ships 2.36).
  std::string message =
      absl::StrCat(operation, " ", path, ": ", std::strerror(error_number));
  switch (error_number) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

namespace {

constexpr mode_t kFileMode = 0600;
constexpr mode_t kDirMode = 0700;

// Runs `call` (a system call returning -1 on error) again while it fails
// with EINTR.
template <typename Call>
auto RetryOnEintr(Call call) -> decltype(call()) {
  decltype(call()) result;
  do {
    result = call();
  } while (result == -1 && errno == EINTR);
  return result;
}

absl::StatusOr<int> OpenFile(const std::string& path, int flags) {
  int fd = RetryOnEintr(
      [&] { return ::open(path.c_str(), flags | O_CLOEXEC, kFileMode); });
  if (fd < 0) return PosixErrorToStatus("open", path, errno);
  return fd;
}

// Writes all of data at the current offset (or at the end under O_APPEND),
// continuing after short writes.
absl::Status WriteFully(int fd, const std::string& path,
                        absl::string_view data) {
  while (!data.empty()) {
    ssize_t written =
        RetryOnEintr([&] { return ::write(fd, data.data(), data.size()); });
    if (written < 0) return PosixErrorToStatus("write", path, errno);
    if (written == 0) {
      // Never seen for regular files; avoids spinning if it ever happens.
      return PosixErrorToStatus("write", path, EIO);
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

// writev(2) of every piece, in IOV_MAX chunks, resuming after short writes.
absl::Status WriteAllFully(int fd, const std::string& path,
                           absl::Span<const absl::string_view> pieces) {
  if (pieces.size() == 1) return WriteFully(fd, path, pieces.front());
  absl::InlinedVector<iovec, 16> iov;
  size_t next = 0;  // First piece not yet in iov.
  while (next < pieces.size() || !iov.empty()) {
    while (next < pieces.size() && iov.size() < IOV_MAX) {
      if (!pieces[next].empty()) {
        iov.push_back(
            iovec{const_cast<char*>(pieces[next].data()), pieces[next].size()});
      }
      ++next;
    }
    if (iov.empty()) break;
    ssize_t written = RetryOnEintr(
        [&] { return ::writev(fd, iov.data(), static_cast<int>(iov.size())); });
    if (written < 0) return PosixErrorToStatus("writev", path, errno);
    if (written == 0) return PosixErrorToStatus("writev", path, EIO);
    // Drop what was written; a piece written in part stays, shortened.
    size_t done = static_cast<size_t>(written);
    size_t i = 0;
    while (i < iov.size() && done >= iov[i].iov_len) done -= iov[i++].iov_len;
    iov.erase(iov.begin(), iov.begin() + i);
    if (!iov.empty()) {
      iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + done;
      iov[0].iov_len -= done;
    }
  }
  return absl::OkStatus();
}

absl::Status CloseFd(int fd, const std::string& path) {
  // No retry on EINTR: Linux releases the descriptor even then, and a retry
  // could close a descriptor another thread has just been given.
  if (::close(fd) != 0) return PosixErrorToStatus("close", path, errno);
  return absl::OkStatus();
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path)
      : fd_(fd), path_(std::move(path)) {}
  PosixWritableFile(const PosixWritableFile&) = delete;
  PosixWritableFile& operator=(const PosixWritableFile&) = delete;
  ~PosixWritableFile() override {
    if (fd_ >= 0) Close().IgnoreError();
  }

  absl::Status Append(absl::string_view data) override {
    TASKWAL_RETURN_IF_ERROR(CheckOpen("write"));
    return WriteFully(fd_, path_, data);
  }

  absl::Status AppendAll(absl::Span<const absl::string_view> pieces) override {
    TASKWAL_RETURN_IF_ERROR(CheckOpen("write"));
    return WriteAllFully(fd_, path_, pieces);
  }

  absl::Status Sync() override {
    TASKWAL_RETURN_IF_ERROR(CheckOpen("fdatasync"));
    // No retry on failure: after a failed fdatasync the kernel may have
    // dropped the dirty pages, so a second, successful call proves nothing.
    if (::fdatasync(fd_) != 0) {
      return PosixErrorToStatus("fdatasync", path_, errno);
    }
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (fd_ < 0) return absl::OkStatus();
    const int fd = fd_;
    fd_ = -1;
    return CloseFd(fd, path_);
  }

 private:
  absl::Status CheckOpen(absl::string_view operation) const {
    if (fd_ >= 0) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(operation, " ", path_, ": file is closed"));
  }

  int fd_;  // -1 once closed.
  const std::string path_;
};

// Holds the flock() through its open file description until destroyed.
class PosixFileLock final : public FileLock {
 public:
  PosixFileLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  PosixFileLock(const PosixFileLock&) = delete;
  PosixFileLock& operator=(const PosixFileLock&) = delete;
  // Closing the last descriptor of the description releases the lock.
  ~PosixFileLock() override { CloseFd(fd_, path_).IgnoreError(); }

 private:
  const int fd_;
  const std::string path_;
};

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::string path)
      : fd_(fd), path_(std::move(path)) {}
  ~PosixReadableFile() override { CloseFd(fd_, path_).IgnoreError(); }

  absl::StatusOr<std::string> ReadAll() override {
    TASKWAL_ASSIGN_OR_RETURN(uint64_t size, Size());
    std::string contents;
    contents.reserve(static_cast<size_t>(size));
    char buffer[64 * 1024];
    // pread from 0: the descriptor has no position to share between calls.
    for (off_t offset = 0;;) {
      ssize_t n = RetryOnEintr(
          [&] { return ::pread(fd_, buffer, sizeof(buffer), offset); });
      if (n < 0) return PosixErrorToStatus("read", path_, errno);
      if (n == 0) break;
      contents.append(buffer, static_cast<size_t>(n));
      offset += n;
    }
    return contents;
  }

  absl::StatusOr<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
      return PosixErrorToStatus("fstat", path_, errno);
    }
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  const int fd_;
  const std::string path_;
};

class PosixEnv final : public Env {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd,
                             OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
    return std::make_unique<PosixWritableFile>(fd, path);
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd, OpenFile(path, O_WRONLY | O_APPEND));
    return std::make_unique<PosixWritableFile>(fd, path);
  }

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      const std::string& path) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd, OpenFile(path, O_RDONLY));
    return std::make_unique<PosixReadableFile>(fd, path);
  }

  absl::StatusOr<std::string> ReadFileToString(
      const std::string& path) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd, OpenFile(path, O_RDONLY));
    absl::StatusOr<std::string> contents = ReadAll(fd, path);
    absl::Status close_status = CloseFd(fd, path);
    if (!contents.ok()) return contents.status();
    TASKWAL_RETURN_IF_ERROR(close_status);
    return contents;
  }

  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return PosixErrorToStatus("stat", path, errno);
    }
    return static_cast<uint64_t>(st.st_size);
  }

  bool FileExists(const std::string& path) override {
    return ::access(path.c_str(), F_OK) == 0;
  }

  absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) override {
    DIR* handle = ::opendir(dir.c_str());
    if (handle == nullptr) return PosixErrorToStatus("opendir", dir, errno);
    std::vector<std::string> names;
    int read_error = 0;
    while (true) {
      errno = 0;
      const struct dirent* entry = ::readdir(handle);
      if (entry == nullptr) {
        read_error = errno;
        break;
      }
      absl::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    ::closedir(handle);
    if (read_error != 0) return PosixErrorToStatus("readdir", dir, read_error);
    return names;
  }

  absl::Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) {
      return PosixErrorToStatus("unlink", path, errno);
    }
    return absl::OkStatus();
  }

  absl::Status RenameFile(const std::string& from,
                          const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return PosixErrorToStatus("rename", absl::StrCat(from, " -> ", to),
                                errno);
    }
    return absl::OkStatus();
  }

  absl::Status TruncateFile(const std::string& path, uint64_t size) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd, OpenFile(path, O_WRONLY));
    absl::Status status;
    if (RetryOnEintr(
            [&] { return ::ftruncate(fd, static_cast<off_t>(size)); }) != 0) {
      status = PosixErrorToStatus("ftruncate", path, errno);
    } else if (::fsync(fd) != 0) {
      status = PosixErrorToStatus("fsync", path, errno);
    }
    absl::Status close_status = CloseFd(fd, path);
    TASKWAL_RETURN_IF_ERROR(status);
    return close_status;
  }

  absl::Status CreateDir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), kDirMode) == 0) return absl::OkStatus();
    const int mkdir_error = errno;
    struct stat st;
    if (mkdir_error == EEXIST && ::stat(dir.c_str(), &st) == 0 &&
        S_ISDIR(st.st_mode)) {
      return absl::OkStatus();
    }
    return PosixErrorToStatus("mkdir", dir, mkdir_error);
  }

  absl::Status SyncDir(const std::string& dir) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
    absl::Status status;
    if (::fsync(fd) != 0) status = PosixErrorToStatus("fsync", dir, errno);
    absl::Status close_status = CloseFd(fd, dir);
    TASKWAL_RETURN_IF_ERROR(status);
    return close_status;
  }

  // flock(), not fcntl() locks: an fcntl lock belongs to the process, so a
  // second LockFile in the same process would succeed, and closing any
  // descriptor of the file (as a failed second attempt does) would release
  // it. An flock belongs to the open file description, so a second open of
  // the same path conflicts even within one process. A child created by
  // fork() shares the description and with it the lock.
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override {
    TASKWAL_ASSIGN_OR_RETURN(int fd, OpenFile(path, O_RDWR | O_CREAT));
    if (RetryOnEintr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); }) != 0) {
      const int lock_error = errno;
      absl::Status status;
      if (lock_error == EWOULDBLOCK) {
        status = LockedError(fd, path);
      } else {
        status = PosixErrorToStatus("flock", path, lock_error);
      }
      CloseFd(fd, path).IgnoreError();
      return status;
    }
    const std::string pid_line = absl::StrCat(::getpid(), "\n");
    absl::Status status;
    if (RetryOnEintr([&] { return ::ftruncate(fd, 0); }) != 0) {
      status = PosixErrorToStatus("ftruncate", path, errno);
    } else {
      // The descriptor's offset is 0: it was just opened without O_APPEND.
      status = WriteFully(fd, path, pid_line);
    }
    if (!status.ok()) {
      CloseFd(fd, path).IgnoreError();
      return status;
    }
    return std::make_unique<PosixFileLock>(fd, path);
  }

 private:
  static absl::StatusOr<std::string> ReadAll(int fd, const std::string& path) {
    std::string contents;
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      contents.reserve(static_cast<size_t>(st.st_size));
    }
    char buffer[64 * 1024];
    while (true) {
      ssize_t n =
          RetryOnEintr([&] { return ::read(fd, buffer, sizeof(buffer)); });
      if (n < 0) return PosixErrorToStatus("read", path, errno);
      if (n == 0) break;
      contents.append(buffer, static_cast<size_t>(n));
    }
    return contents;
  }

  // The status for a lock held elsewhere, naming the holder's pid if the
  // file holds one (the holder may not have written it yet).
  static absl::Status LockedError(int fd, const std::string& path) {
    char buffer[32];
    ssize_t n = RetryOnEintr(
        [&] { return ::pread(fd, buffer, sizeof(buffer) - 1, 0); });
    uint64_t pid = 0;
    if (n > 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(
                                      buffer, static_cast<size_t>(n))),
                                  &pid)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory is locked by process ", pid, " (", path, ")"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory is locked by another process (", path, ")"));
  }
};

}  // namespace
}  // namespace wal

Env* Env::Default() {
  // Never destroyed: WritableFiles and locks may outlive static destruction.
  static Env* const env = new wal::PosixEnv();
  return env;
}

}  // namespace taskwal
