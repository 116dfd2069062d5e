#include "taskwal/fault_injection_env.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "taskwal/env.h"

namespace taskwal {
namespace wal {
namespace {

// "" (the working directory) for a bare name, "/" for a name in the root.
std::string ParentDir(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return "";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string BaseName(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path
                                                      : path.substr(slash + 1));
}

// "a/b/" -> "a/b"; "/" stays.
std::string NormalizeDir(absl::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  return std::string(dir);
}

// Messages follow the POSIX Env's "<operation> <path>: <strerror>".
absl::Status NotFound(absl::string_view operation, absl::string_view path) {
  return absl::NotFoundError(
      absl::StrCat(operation, " ", path, ": No such file or directory"));
}

absl::Status Injected(FaultInjectionEnv::InjectedError error,
                      absl::string_view operation, absl::string_view path) {
  if (error == FaultInjectionEnv::InjectedError::kNoSpace) {
    return absl::ResourceExhaustedError(
        absl::StrCat(operation, " ", path, ": injected ENOSPC"));
  }
  return absl::InternalError(
      absl::StrCat(operation, " ", path, ": injected EIO"));
}

}  // namespace
}  // namespace wal

using wal::BaseName;
using wal::Injected;
using wal::NormalizeDir;
using wal::NotFound;
using wal::ParentDir;

// One file's contents. Every member is guarded by the env's mu_.
struct FaultInjectionEnv::Inode {
  // What the process reads.
  std::string data;
  // What survives power loss.
  std::string durable_data;
  // data and durable_data agree on [0, agreed_prefix), so that Sync copies
  // only what changed. <= min(data.size(), durable_data.size()).
  size_t agreed_prefix = 0;

  void Resize(size_t size) {
    data.resize(size, '\0');
    agreed_prefix = std::min(agreed_prefix, size);
  }

  void MakeDurable() {
    durable_data.resize(agreed_prefix);
    durable_data.append(data, agreed_prefix, std::string::npos);
    agreed_prefix = data.size();
  }

  void RevertToDurable() {
    data = durable_data;
    agreed_prefix = data.size();
  }

  // The bytes appended since the contents were last durable; empty if the
  // file was truncated (or recreated) since, because then the durable
  // contents are no prefix of the live ones.
  absl::string_view UnsyncedAppend() const {
    if (agreed_prefix != durable_data.size()) return {};
    return absl::string_view(data).substr(agreed_prefix);
  }
};

class FaultInjectionEnv::File final : public WritableFile {
 public:
  File(FaultInjectionEnv* env, std::string path, std::shared_ptr<Inode> inode,
       uint64_t generation)
      : env_(env),
        path_(std::move(path)),
        inode_(std::move(inode)),
        generation_(generation) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  absl::Status Append(absl::string_view data) override {
    return env_->Append(*this, data);
  }
  absl::Status Sync() override { return env_->Sync(*this); }
  absl::Status Close() override {
    absl::MutexLock lock(&env_->mu_);
    if (closed_) return absl::OkStatus();
    closed_ = true;
    if (generation_ != env_->generation_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "close ", path_, ": file handle from before power loss"));
    }
    return absl::OkStatus();
  }

 private:
  friend class FaultInjectionEnv;

  FaultInjectionEnv* const env_;
  const std::string path_;
  const std::shared_ptr<Inode> inode_;
  const uint64_t generation_;
  bool closed_ = false;  // Touched only by this handle's (serialized) calls.
};

class FaultInjectionEnv::Reader final : public ReadableFile {
 public:
  Reader(FaultInjectionEnv* env, std::string path,
         std::shared_ptr<const Inode> inode, uint64_t generation)
      : env_(env),
        path_(std::move(path)),
        inode_(std::move(inode)),
        generation_(generation) {}
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  absl::StatusOr<std::string> ReadAll() override {
    absl::MutexLock lock(&env_->mu_);
    if (absl::Status s = CheckAlive("read"); !s.ok()) return s;
    return inode_->data;
  }
  absl::StatusOr<uint64_t> Size() override {
    absl::MutexLock lock(&env_->mu_);
    if (absl::Status s = CheckAlive("stat"); !s.ok()) return s;
    return inode_->data.size();
  }

 private:
  absl::Status CheckAlive(absl::string_view operation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(env_->mu_) {
    if (generation_ == env_->generation_) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        operation, " ", path_, ": file handle from before power loss"));
  }

  FaultInjectionEnv* const env_;
  const std::string path_;
  const std::shared_ptr<const Inode> inode_;
  const uint64_t generation_;
};

class FaultInjectionEnv::Lock final : public FileLock {
 public:
  Lock(FaultInjectionEnv* env, std::string path, uint64_t generation)
      : env_(env), path_(std::move(path)), generation_(generation) {}
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  ~Lock() override { env_->Unlock(path_, generation_); }

 private:
  FaultInjectionEnv* const env_;
  const std::string path_;
  const uint64_t generation_;
};

FaultInjectionEnv::FaultInjectionEnv(uint64_t seed) : rng_(seed) {}

FaultInjectionEnv::~FaultInjectionEnv() = default;

absl::StatusOr<std::unique_ptr<WritableFile>>
FaultInjectionEnv::NewWritableFile(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckParentExists("open", path); !s.ok()) return s;
  if (dirs_.count(path) > 0) {
    return absl::InternalError(absl::StrCat("open ", path, ": Is a directory"));
  }
  std::shared_ptr<Inode>& inode = live_[path];
  if (inode == nullptr) {
    inode = std::make_shared<Inode>();
  } else {
    inode->Resize(0);  // O_TRUNC: the same file, emptied.
  }
  return std::make_unique<File>(this, path, inode, generation_);
}

absl::StatusOr<std::unique_ptr<WritableFile>>
FaultInjectionEnv::NewAppendableFile(const std::string& path) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Inode> inode = FindLive(path);
  if (inode == nullptr) return NotFound("open", path);
  return std::make_unique<File>(this, path, std::move(inode), generation_);
}

absl::StatusOr<std::unique_ptr<ReadableFile>>
FaultInjectionEnv::NewReadableFile(const std::string& path) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Inode> inode = FindLive(path);
  if (inode == nullptr) return NotFound("open", path);
  return std::make_unique<Reader>(this, path, std::move(inode), generation_);
}

absl::StatusOr<std::string> FaultInjectionEnv::ReadFileToString(
    const std::string& path) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Inode> inode = FindLive(path);
  if (inode == nullptr) return NotFound("open", path);
  return inode->data;
}

absl::StatusOr<uint64_t> FaultInjectionEnv::GetFileSize(
    const std::string& path) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Inode> inode = FindLive(path);
  if (inode == nullptr) return NotFound("stat", path);
  return inode->data.size();
}

bool FaultInjectionEnv::FileExists(const std::string& path) {
  absl::MutexLock lock(&mu_);
  const std::string dir = NormalizeDir(path);
  return live_.count(path) > 0 || dir == "/" || dirs_.count(dir) > 0;
}

absl::StatusOr<std::vector<std::string>> FaultInjectionEnv::GetChildren(
    const std::string& dir) {
  absl::MutexLock lock(&mu_);
  const std::string normalized = NormalizeDir(dir);
  if (!DirExists(normalized)) return NotFound("opendir", dir);
  std::vector<std::string> names;
  for (const auto& entry : live_) {
    if (ParentDir(entry.first) == normalized) {
      names.push_back(BaseName(entry.first));
    }
  }
  for (const std::string& child : dirs_) {
    if (ParentDir(child) == normalized) names.push_back(BaseName(child));
  }
  return names;
}

absl::Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (live_.erase(path) == 0) return NotFound("unlink", path);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::RenameFile(const std::string& from,
                                           const std::string& to) {
  absl::MutexLock lock(&mu_);
  const std::string paths = absl::StrCat(from, " -> ", to);
  auto source = live_.find(from);
  if (source == live_.end()) return NotFound("rename", paths);
  if (!DirExists(ParentDir(to))) return NotFound("rename", paths);
  if (dirs_.count(to) > 0) {
    return absl::InternalError(
        absl::StrCat("rename ", paths, ": Is a directory"));
  }
  if (TakeFailure(&failing_renames_)) {
    return Injected(injected_error_, "rename", paths);
  }
  if (from == to) return absl::OkStatus();
  std::shared_ptr<Inode> inode = std::move(source->second);
  live_.erase(source);
  live_[to] = std::move(inode);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::TruncateFile(const std::string& path,
                                             uint64_t size) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Inode> inode = FindLive(path);
  if (inode == nullptr) return NotFound("open", path);
  inode->Resize(size);
  inode->MakeDurable();
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::CreateDir(const std::string& dir) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> missing;
  for (std::string d = NormalizeDir(dir); !DirExists(d); d = ParentDir(d)) {
    if (live_.count(d) > 0) {
      return absl::InternalError(absl::StrCat("mkdir ", d, ": File exists"));
    }
    missing.push_back(d);
  }
  dirs_.insert(missing.begin(), missing.end());
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  absl::MutexLock lock(&mu_);
  const std::string normalized = NormalizeDir(dir);
  if (!DirExists(normalized)) return NotFound("open", dir);
  if (TakeFailure(&failing_sync_dirs_)) {
    return Injected(injected_error_, "fsync", dir);
  }
  for (auto it = durable_.begin(); it != durable_.end();) {
    if (ParentDir(it->first) == normalized) {
      it = durable_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& entry : live_) {
    if (ParentDir(entry.first) == normalized) durable_.insert(entry);
  }
  ++sync_dir_count_;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileLock>> FaultInjectionEnv::LockFile(
    const std::string& path) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckParentExists("open", path); !s.ok()) return s;
  if (dirs_.count(path) > 0) {
    return absl::InternalError(absl::StrCat("open ", path, ": Is a directory"));
  }
  if (locked_.count(path) > 0) {
    // Every holder is this process: the env lives in one.
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory is locked by process ", ::getpid(), " (", path, ")"));
  }
  locked_.insert(path);
  std::shared_ptr<Inode>& inode = live_[path];
  if (inode == nullptr) inode = std::make_shared<Inode>();
  inode->Resize(0);
  inode->data = absl::StrCat(::getpid(), "\n");
  return std::make_unique<Lock>(this, path, generation_);
}

void FaultInjectionEnv::SimulatePowerLoss(PowerLossMode mode) {
  absl::MutexLock lock(&mu_);
  // A file reachable under two durable names is rolled back once.
  std::unordered_set<const Inode*> done;
  for (const auto& entry : durable_) {
    Inode& inode = *entry.second;
    if (!done.insert(&inode).second) continue;
    if (mode == PowerLossMode::kTornTail) {
      TearTail(inode);
    } else {
      inode.RevertToDurable();
    }
  }
  // Files with no durable name are gone once the last live handle (dead
  // from now on) lets go of them.
  live_ = durable_;
  locked_.clear();
  ++generation_;
}

void FaultInjectionEnv::TearTail(Inode& inode) {
  const std::string unsynced(inode.UnsyncedAppend());
  inode.RevertToDurable();
  if (unsynced.empty()) return;
  inode.data.append(unsynced, 0, Uniform(unsynced.size() + 1));
  switch (Uniform(3)) {
    case 0:
      break;
    case 1:
      inode.data.append(1 + Uniform(kMaxTornJunkBytes), '\0');
      break;
    default: {
      const uint64_t length = 1 + Uniform(kMaxTornJunkBytes);
      for (uint64_t i = 0; i < length; ++i) {
        inode.data.push_back(static_cast<char>(Uniform(256)));
      }
      break;
    }
  }
  // What is on the disk after the crash is, by definition, durable.
  inode.MakeDurable();
}

void FaultInjectionEnv::FailNextSyncs(int n) {
  absl::MutexLock lock(&mu_);
  failing_syncs_ = std::max(n, 0);
}

void FaultInjectionEnv::FailNextAppends(int n) {
  absl::MutexLock lock(&mu_);
  failing_appends_ = std::max(n, 0);
}

void FaultInjectionEnv::FailNextRenames(int n) {
  absl::MutexLock lock(&mu_);
  failing_renames_ = std::max(n, 0);
}

void FaultInjectionEnv::FailNextSyncDirs(int n) {
  absl::MutexLock lock(&mu_);
  failing_sync_dirs_ = std::max(n, 0);
}

void FaultInjectionEnv::SetInjectedError(InjectedError error) {
  absl::MutexLock lock(&mu_);
  injected_error_ = error;
}

uint64_t FaultInjectionEnv::sync_count() const {
  absl::MutexLock lock(&mu_);
  return sync_count_;
}

uint64_t FaultInjectionEnv::sync_dir_count() const {
  absl::MutexLock lock(&mu_);
  return sync_dir_count_;
}

absl::StatusOr<std::string> FaultInjectionEnv::DurableContents(
    const std::string& path) const {
  absl::MutexLock lock(&mu_);
  auto it = durable_.find(path);
  if (it == durable_.end()) return NotFound("durable", path);
  return it->second->durable_data;
}

absl::Status FaultInjectionEnv::Append(const File& file,
                                       absl::string_view data) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckAlive(file, "write"); !s.ok()) return s;
  if (TakeFailure(&failing_appends_)) {
    const size_t written = data.empty() ? 0 : Uniform(data.size());
    file.inode_->data.append(data.data(), written);
    return Injected(injected_error_, "write", file.path_);
  }
  file.inode_->data.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::Sync(const File& file) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckAlive(file, "fdatasync"); !s.ok()) return s;
  if (TakeFailure(&failing_syncs_)) {
    return Injected(injected_error_, "fdatasync", file.path_);
  }
  file.inode_->MakeDurable();
  ++sync_count_;
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::CheckAlive(const File& file,
                                           absl::string_view operation) const {
  if (file.generation_ != generation_) {
    return absl::FailedPreconditionError(absl::StrCat(
        operation, " ", file.path_, ": file handle from before power loss"));
  }
  if (file.closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat(operation, " ", file.path_, ": file is closed"));
  }
  return absl::OkStatus();
}

void FaultInjectionEnv::Unlock(const std::string& path, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  // A lock from before a power loss is already gone, and the path may be
  // locked again by the next "process".
  if (generation == generation_) locked_.erase(path);
}

bool FaultInjectionEnv::DirExists(const std::string& dir) const {
  return dir.empty() || dir == "/" || dirs_.count(dir) > 0;
}

absl::Status FaultInjectionEnv::CheckParentExists(
    absl::string_view operation, const std::string& path) const {
  if (DirExists(ParentDir(path))) return absl::OkStatus();
  return NotFound(operation, path);
}

std::shared_ptr<FaultInjectionEnv::Inode> FaultInjectionEnv::FindLive(
    const std::string& path) const {
  auto it = live_.find(path);
  return it == live_.end() ? nullptr : it->second;
}

bool FaultInjectionEnv::TakeFailure(int* pending) {
  if (*pending == 0) return false;
  --*pending;
  return true;
}

uint64_t FaultInjectionEnv::Uniform(uint64_t n) { return rng_() % n; }

}  // namespace taskwal
