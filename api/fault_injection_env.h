#ifndef TASKWAL_API_FAULT_INJECTION_ENV_H_
#define TASKWAL_API_FAULT_INJECTION_ENV_H_

// FaultInjectionEnv: an in-memory Env (no real disk) that remembers what
// would survive a power loss, and fails I/O on demand. It is how the
// project's crash tests, and an embedder's, check that acknowledged work
// survives a crash and that I/O errors are handled.
//
// Durability model. Each file has the contents the process sees and the
// contents that survive power loss; the namespace (name -> file) has a live
// view and a durable view:
//   - WritableFile::Sync() makes that file's current contents durable.
//   - TruncateFile() is durable at once (contents and size), as in env.h.
//   - SyncDir(dir) makes every live entry directly in dir durable: files
//     created, renamed into or out of, or removed from dir since its last
//     SyncDir. A rename between two directories needs both synced.
//   - A file whose name is not durable is lost on power loss, however much
//     of its data was synced; a removed file whose removal is not durable
//     comes back with its durable contents.
//   - Directories are durable once CreateDir() returns and are never
//     removed. CreateDir() also creates missing parents (the in-memory tree
//     starts empty); files can only be created in a directory that exists
//     ("" and "/" always exist). Paths are compared as strings: spell each
//     path the same way every time (no "./", "//" or trailing '/' on files).
//   - Open handles keep a removed or replaced file alive, as on POSIX.
//
// SimulatePowerLoss() rolls everything back to its durable state, kills
// every open WritableFile and releases every lock: the process "died", and
// the test goes on as the next process, with the same Env.
//
// Randomness (torn-tail shapes, partial writes of failing appends) comes
// from the seed alone: a given seed and sequence of calls give the same
// outcome on every run.
//
// Thread safety: safe for concurrent use, like any Env. Each WritableFile,
// as env.h says, needs external synchronization.
//
// REQUIRES: the env outlives every WritableFile and FileLock it returns.
//
// Example, a crash test:
//
//   FaultInjectionEnv env(/*seed=*/7);
//   ASSERT_TRUE(env.CreateDir("/db").ok());
//   auto log = env.NewWritableFile("/db/log");
//   ASSERT_TRUE((*log)->Append("committed").ok());
//   ASSERT_TRUE((*log)->Sync().ok());
//   ASSERT_TRUE(env.SyncDir("/db").ok());
//   ASSERT_TRUE((*log)->Append("in flight").ok());
//   env.SimulatePowerLoss(PowerLossMode::kTornTail);
//   // *log is dead now. The file starts with "committed", then holds a
//   // prefix of "in flight", possibly followed by zeros or garbage; the
//   // code under test must recover from exactly that.
//   auto recovered = env.ReadFileToString("/db/log");
//
// An embedder passes &env wherever taskwal takes an Env*.

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "taskwal/env.h"

namespace taskwal {

enum class PowerLossMode {
  // Every file reverts to its durable contents, the namespace to its durable
  // view.
  kDropUnsynced,
  // As kDropUnsynced, except that a file with unsynced bytes appended after
  // its durable contents keeps a random-length prefix of them (possibly
  // none, possibly all), followed at random by nothing, by zeros or by
  // random bytes, 1 to kMaxTornJunkBytes of them: a torn final write, as a
  // disk that persists sectors out of order, or extends the size before the
  // data, leaves it.
  kTornTail,
};

class FaultInjectionEnv final : public Env {
 public:
  // Most zero or garbage bytes a kTornTail power loss appends to a file.
  static constexpr uint64_t kMaxTornJunkBytes = 512;

  explicit FaultInjectionEnv(uint64_t seed);
  FaultInjectionEnv(const FaultInjectionEnv&) = delete;
  FaultInjectionEnv& operator=(const FaultInjectionEnv&) = delete;
  ~FaultInjectionEnv() override;

  // Env. Error codes are those of env.h; a missing file or directory is
  // kNotFound. Injected failures are kInternal with "injected EIO" in the
  // message (see SetInjectedError). A WritableFile from before the last
  // SimulatePowerLoss returns kFailedPrecondition("... file handle from before
  // power loss") from every call; a closed one returns kFailedPrecondition
  // from Append and Sync.
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  // A reader keeps a removed or replaced file's contents, as on POSIX; one
  // from before the last SimulatePowerLoss returns kFailedPrecondition.
  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // True for a live file or a directory.
  bool FileExists(const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);
  // Live files and directories directly in dir.
  absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status RemoveFile(const std::string& path) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status RenameFile(const std::string& from,
                          const std::string& to) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status TruncateFile(const std::string& path, uint64_t size) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CreateDir(const std::string& dir) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SyncDir(const std::string& dir) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // Creates the file if needed and writes "<pid>\n" into it, as the POSIX
  // Env does. A lock held through this env: kFailedPrecondition "data
  // directory is locked by process <pid> (<path>)".
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override ABSL_LOCKS_EXCLUDED(mu_);

  // Rolls every file and name back to its durable state (see PowerLossMode),
  // makes every open WritableFile dead and releases every lock. Pending
  // injected failures stay armed: they belong to the disk, not the process.
  void SimulatePowerLoss(PowerLossMode mode) ABSL_LOCKS_EXCLUDED(mu_);

  // Each makes the next n calls of one kind fail with kInternal "injected
  // EIO", replacing any count still pending (0 disarms). Only calls that
  // would otherwise succeed count: a call on a dead or closed handle, or
  // naming a missing file or directory, fails as it would without
  // injection. A failed call changes nothing, except that
  // a failing Append first writes a random prefix (possibly empty, never
  // all) of its data, as a short write followed by EIO would.
  // REQUIRES: n >= 0.
  void FailNextSyncs(int n) ABSL_LOCKS_EXCLUDED(mu_);  // WritableFile::Sync
  void FailNextAppends(int n) ABSL_LOCKS_EXCLUDED(mu_);
  void FailNextRenames(int n) ABSL_LOCKS_EXCLUDED(mu_);
  void FailNextSyncDirs(int n) ABSL_LOCKS_EXCLUDED(mu_);

  // The error injected failures report from now on.
  enum class InjectedError {
    kEio,      // kInternal "injected EIO" (the default).
    kNoSpace,  // kResourceExhausted "injected ENOSPC": a full disk, as the
               // POSIX Env reports ENOSPC and EDQUOT.
  };
  void SetInjectedError(InjectedError error) ABSL_LOCKS_EXCLUDED(mu_);

  // Successful WritableFile::Sync and SyncDir calls so far.
  uint64_t sync_count() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t sync_dir_count() const ABSL_LOCKS_EXCLUDED(mu_);
  // What a kDropUnsynced power loss would leave at path now: kNotFound if
  // the name is not durable.
  absl::StatusOr<std::string> DurableContents(const std::string& path) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Inode;
  class File;
  class Reader;
  class Lock;
  using Namespace = std::map<std::string, std::shared_ptr<Inode>>;

  // For File and Lock, which hold the generation they were opened in.
  absl::Status Append(const File& file, absl::string_view data)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Sync(const File& file) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CheckAlive(const File& file, absl::string_view operation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unlock(const std::string& path, uint64_t generation)
      ABSL_LOCKS_EXCLUDED(mu_);

  bool DirExists(const std::string& dir) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckParentExists(absl::string_view operation,
                                 const std::string& path) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Inode> FindLive(const std::string& path) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Consumes one pending failure from *pending, if any.
  static bool TakeFailure(int* pending);
  // Uniform in [0, n). REQUIRES: n > 0.
  uint64_t Uniform(uint64_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TearTail(Inode& inode) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The only lock; File and Lock objects take it through the env.
  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Ordered maps and sets: power loss draws random numbers file by file, and
  // a hash order would change between runs.
  Namespace live_ ABSL_GUARDED_BY(mu_);
  Namespace durable_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> locked_ ABSL_GUARDED_BY(mu_);
  // Incremented by each power loss; older handles and locks are dead.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int failing_syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int failing_appends_ ABSL_GUARDED_BY(mu_) = 0;
  int failing_renames_ ABSL_GUARDED_BY(mu_) = 0;
  int failing_sync_dirs_ ABSL_GUARDED_BY(mu_) = 0;
  InjectedError injected_error_ ABSL_GUARDED_BY(mu_) = InjectedError::kEio;
  uint64_t sync_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sync_dir_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace taskwal

#endif  // TASKWAL_API_FAULT_INJECTION_ENV_H_
