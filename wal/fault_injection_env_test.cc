#include "taskwal/fault_injection_env.h"

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
constexpr absl::StatusCode kInternal = absl::StatusCode::kInternal;
constexpr absl::StatusCode kPrecondition =
    absl::StatusCode::kFailedPrecondition;

class FaultInjectionEnvTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir("/db"), IsOk()); }

  std::unique_ptr<WritableFile> Create(const std::string& path) {
    auto file = env_.NewWritableFile(path);
    EXPECT_THAT(file, IsOk());
    return file.ok() ? std::move(*file) : nullptr;
  }

  // Creates path holding `synced` (synced), then appends `unsynced`.
  std::unique_ptr<WritableFile> CreateSyncedThenAppend(
      const std::string& path, const std::string& synced,
      const std::string& unsynced) {
    std::unique_ptr<WritableFile> file = Create(path);
    EXPECT_THAT(file->Append(synced), IsOk());
    EXPECT_THAT(file->Sync(), IsOk());
    EXPECT_THAT(env_.SyncDir(ParentOf(path)), IsOk());
    EXPECT_THAT(file->Append(unsynced), IsOk());
    return file;
  }

  static std::string ParentOf(const std::string& path) {
    return path.substr(0, path.rfind('/'));
  }

  std::string Read(const std::string& path) {
    auto contents = env_.ReadFileToString(path);
    EXPECT_THAT(contents, IsOk()) << path;
    return contents.ok() ? *contents : "";
  }

  FaultInjectionEnv env_{/*seed=*/1};
};

TEST_F(FaultInjectionEnvTest, BehavesAsAFileSystem) {
  std::unique_ptr<WritableFile> file = Create("/db/a");
  ASSERT_THAT(file->Append("hello "), IsOk());
  ASSERT_THAT(file->Append("world"), IsOk());
  EXPECT_EQ(Read("/db/a"), "hello world");
  EXPECT_EQ(*env_.GetFileSize("/db/a"), 11u);
  EXPECT_TRUE(env_.FileExists("/db/a"));
  EXPECT_TRUE(env_.FileExists("/db"));
  ASSERT_THAT(file->Close(), IsOk());

  auto appendable = env_.NewAppendableFile("/db/a");
  ASSERT_THAT(appendable, IsOk());
  ASSERT_THAT((*appendable)->Append("!"), IsOk());
  EXPECT_EQ(Read("/db/a"), "hello world!");

  Create("/db/b");
  ASSERT_THAT(env_.CreateDir("/db/sub"), IsOk());
  EXPECT_THAT(*env_.GetChildren("/db"), UnorderedElementsAre("a", "b", "sub"));
  EXPECT_THAT(*env_.GetChildren("/db/"), UnorderedElementsAre("a", "b", "sub"));
  EXPECT_THAT(*env_.GetChildren("/db/sub"), IsEmpty());

  ASSERT_THAT(env_.RenameFile("/db/a", "/db/b"), IsOk());
  EXPECT_FALSE(env_.FileExists("/db/a"));
  EXPECT_EQ(Read("/db/b"), "hello world!");

  ASSERT_THAT(env_.TruncateFile("/db/b", 5), IsOk());
  EXPECT_EQ(Read("/db/b"), "hello");

  ASSERT_THAT(env_.RemoveFile("/db/b"), IsOk());
  EXPECT_FALSE(env_.FileExists("/db/b"));
  EXPECT_THAT(*env_.GetChildren("/db"), UnorderedElementsAre("sub"));
}

TEST_F(FaultInjectionEnvTest, NewWritableFileTruncates) {
  EXPECT_THAT(Create("/db/a")->Append("old"), IsOk());
  Create("/db/a");
  EXPECT_EQ(Read("/db/a"), "");
}

TEST_F(FaultInjectionEnvTest, MissingThingsAreNotFound) {
  EXPECT_THAT(env_.NewAppendableFile("/db/x"),
              StatusIs(kNotFound, "open /db/x: No such file or directory"));
  EXPECT_THAT(env_.ReadFileToString("/db/x"), StatusIs(kNotFound));
  EXPECT_THAT(env_.GetFileSize("/db/x"), StatusIs(kNotFound));
  EXPECT_THAT(env_.RemoveFile("/db/x"), StatusIs(kNotFound));
  EXPECT_THAT(env_.RenameFile("/db/x", "/db/y"),
              StatusIs(kNotFound, HasSubstr("/db/x -> /db/y")));
  EXPECT_THAT(env_.TruncateFile("/db/x", 0), StatusIs(kNotFound));
  EXPECT_THAT(env_.GetChildren("/nodir"), StatusIs(kNotFound));
  EXPECT_THAT(env_.SyncDir("/nodir"), StatusIs(kNotFound));
  EXPECT_THAT(env_.NewWritableFile("/nodir/f"), StatusIs(kNotFound));
  EXPECT_THAT(env_.LockFile("/nodir/LOCK"), StatusIs(kNotFound));
  EXPECT_FALSE(env_.FileExists("/db/x"));
  EXPECT_FALSE(env_.FileExists("/nodir"));
}

TEST_F(FaultInjectionEnvTest, CreateDirCreatesParents) {
  ASSERT_THAT(env_.CreateDir("/a/b/c"), IsOk());
  EXPECT_THAT(*env_.GetChildren("/a"), UnorderedElementsAre("b"));
  EXPECT_THAT(*env_.GetChildren("/a/b"), UnorderedElementsAre("c"));
  EXPECT_THAT(env_.CreateDir("/a/b/c"), IsOk());
  Create("/a/b/c/f");
  EXPECT_THAT(env_.CreateDir("/a/b/c/f"), StatusIs(kInternal));
}

TEST_F(FaultInjectionEnvTest, UnsyncedDataVanishesSyncedSurvives) {
  std::unique_ptr<WritableFile> file =
      CreateSyncedThenAppend("/db/log", "synced", "-unsynced");
  EXPECT_EQ(*env_.DurableContents("/db/log"), "synced");
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(Read("/db/log"), "synced");
}

TEST_F(FaultInjectionEnvTest, SyncedFileWithoutDirSyncVanishes) {
  std::unique_ptr<WritableFile> file = Create("/db/log");
  ASSERT_THAT(file->Append("data"), IsOk());
  ASSERT_THAT(file->Sync(), IsOk());
  EXPECT_THAT(env_.DurableContents("/db/log"), StatusIs(kNotFound));
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_FALSE(env_.FileExists("/db/log"));
  EXPECT_THAT(*env_.GetChildren("/db"), IsEmpty());
  EXPECT_TRUE(env_.FileExists("/db"));  // Directories are always durable.
}

TEST_F(FaultInjectionEnvTest, SyncDirOfAnotherDirDoesNotHelp) {
  ASSERT_THAT(env_.CreateDir("/other"), IsOk());
  Create("/db/log");
  ASSERT_THAT(env_.SyncDir("/other"), IsOk());
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_FALSE(env_.FileExists("/db/log"));
}

TEST_F(FaultInjectionEnvTest, RenameWithoutSyncDirReverts) {
  CreateSyncedThenAppend("/db/CURRENT", "old", "");
  CreateSyncedThenAppend("/db/CURRENT.tmp", "new", "");
  ASSERT_THAT(env_.RenameFile("/db/CURRENT.tmp", "/db/CURRENT"), IsOk());
  EXPECT_EQ(Read("/db/CURRENT"), "new");
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(Read("/db/CURRENT"), "old");
  EXPECT_EQ(Read("/db/CURRENT.tmp"), "new");
}

TEST_F(FaultInjectionEnvTest, RenameWithSyncDirSurvives) {
  CreateSyncedThenAppend("/db/CURRENT", "old", "");
  CreateSyncedThenAppend("/db/CURRENT.tmp", "new", "");
  ASSERT_THAT(env_.RenameFile("/db/CURRENT.tmp", "/db/CURRENT"), IsOk());
  ASSERT_THAT(env_.SyncDir("/db"), IsOk());
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(Read("/db/CURRENT"), "new");
  EXPECT_FALSE(env_.FileExists("/db/CURRENT.tmp"));
}

TEST_F(FaultInjectionEnvTest, RemovalWithoutSyncDirReappears) {
  CreateSyncedThenAppend("/db/old-log", "records", "");
  ASSERT_THAT(env_.RemoveFile("/db/old-log"), IsOk());
  EXPECT_FALSE(env_.FileExists("/db/old-log"));
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(Read("/db/old-log"), "records");

  ASSERT_THAT(env_.RemoveFile("/db/old-log"), IsOk());
  ASSERT_THAT(env_.SyncDir("/db"), IsOk());
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_FALSE(env_.FileExists("/db/old-log"));
}

TEST_F(FaultInjectionEnvTest, RecreatedFileRevertsToOldDurableContents) {
  CreateSyncedThenAppend("/db/f", "durable", "");
  std::unique_ptr<WritableFile> file = Create("/db/f");  // Truncates.
  ASSERT_THAT(file->Append("replacement"), IsOk());
  env_.SimulatePowerLoss(PowerLossMode::kTornTail);
  EXPECT_EQ(Read("/db/f"), "durable");
}

TEST_F(FaultInjectionEnvTest, TruncateIsDurableAtOnce) {
  CreateSyncedThenAppend("/db/log", "0123456789", "abc");
  ASSERT_THAT(env_.TruncateFile("/db/log", 4), IsOk());
  EXPECT_EQ(*env_.DurableContents("/db/log"), "0123");
  env_.SimulatePowerLoss(PowerLossMode::kTornTail);
  EXPECT_EQ(Read("/db/log"), "0123");
}

TEST_F(FaultInjectionEnvTest, OpenHandleKeepsRemovedFileAlive) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  ASSERT_THAT(env_.RemoveFile("/db/f"), IsOk());
  EXPECT_THAT(file->Append("x"), IsOk());
  EXPECT_THAT(file->Sync(), IsOk());
  EXPECT_FALSE(env_.FileExists("/db/f"));
}

TEST_F(FaultInjectionEnvTest, ReaderSeesAppendsAndOutlivesRemoval) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  ASSERT_THAT(file->Append("ab"), IsOk());
  absl::StatusOr<std::unique_ptr<ReadableFile>> reader =
      env_.NewReadableFile("/db/f");
  ASSERT_THAT(reader, IsOk());
  EXPECT_THAT((*reader)->ReadAll(), IsOkAndHolds("ab"));
  ASSERT_THAT(file->Append("c"), IsOk());
  ASSERT_THAT(env_.RemoveFile("/db/f"), IsOk());
  // Another file under the same name is another file.
  std::unique_ptr<WritableFile> other = Create("/db/f");
  ASSERT_THAT(other->Append("other"), IsOk());
  EXPECT_THAT((*reader)->ReadAll(), IsOkAndHolds("abc"));
  EXPECT_THAT((*reader)->Size(), IsOkAndHolds(3u));
  EXPECT_THAT(env_.NewReadableFile("/db/missing").status(),
              StatusIs(absl::StatusCode::kNotFound));

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_THAT((*reader)->ReadAll().status(),
              StatusIs(kPrecondition, HasSubstr("from before power loss")));
  EXPECT_THAT((*reader)->Size().status(), StatusIs(kPrecondition));
}

TEST_F(FaultInjectionEnvTest, HandlesFromBeforePowerLossAreDead) {
  std::unique_ptr<WritableFile> file =
      CreateSyncedThenAppend("/db/log", "a", "b");
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_THAT(
      file->Append("c"),
      StatusIs(kPrecondition, HasSubstr("file handle from before power loss")));
  EXPECT_THAT(file->Sync(),
              StatusIs(kPrecondition, HasSubstr("from before power loss")));
  EXPECT_THAT(file->Close(),
              StatusIs(kPrecondition, HasSubstr("from before power loss")));
  EXPECT_EQ(Read("/db/log"), "a");

  // The next "process" reopens and goes on.
  auto reopened = env_.NewAppendableFile("/db/log");
  ASSERT_THAT(reopened, IsOk());
  EXPECT_THAT((*reopened)->Append("c"), IsOk());
  EXPECT_EQ(Read("/db/log"), "ac");
}

TEST_F(FaultInjectionEnvTest, ClosedHandleRejectsWritesAndCloseIsIdempotent) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  EXPECT_THAT(file->Close(), IsOk());
  EXPECT_THAT(file->Close(), IsOk());
  EXPECT_THAT(file->Append("x"), StatusIs(kPrecondition, HasSubstr("closed")));
  EXPECT_THAT(file->Sync(), StatusIs(kPrecondition));
}

// Classifies what a torn tail left after `synced`: the file must be
// synced + a prefix of `unsynced` + (nothing | zeros | other bytes).
enum class Tail { kNothing, kZeros, kGarbage };

Tail ClassifyTornTail(const std::string& contents, const std::string& synced,
                      const std::string& unsynced) {
  EXPECT_THAT(contents, StartsWith(synced));
  size_t kept = 0;
  const std::string rest = contents.substr(synced.size());
  while (kept < rest.size() && kept < unsynced.size() &&
         rest[kept] == unsynced[kept]) {
    ++kept;
  }
  const std::string junk = rest.substr(kept);
  EXPECT_LE(junk.size(), FaultInjectionEnv::kMaxTornJunkBytes);
  if (junk.empty()) return Tail::kNothing;
  if (junk.find_first_not_of('\0') == std::string::npos) return Tail::kZeros;
  return Tail::kGarbage;
}

TEST(FaultInjectionEnvTornTailTest, KeepsSyncedPrefixThenAnyTornShape) {
  // No zero bytes, so that kept data and zero fill cannot be confused.
  const std::string synced = "synced-record|";
  std::string unsynced;
  for (int i = 0; i < 300; ++i)
    unsynced.push_back(static_cast<char>('A' + i % 26));

  int nothing = 0, zeros = 0, garbage = 0;
  bool kept_partial = false;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    FaultInjectionEnv env(seed);
    ASSERT_THAT(env.CreateDir("/db"), IsOk());
    auto file = env.NewWritableFile("/db/log");
    ASSERT_THAT(file, IsOk());
    ASSERT_THAT((*file)->Append(synced), IsOk());
    ASSERT_THAT((*file)->Sync(), IsOk());
    ASSERT_THAT(env.SyncDir("/db"), IsOk());
    ASSERT_THAT((*file)->Append(unsynced), IsOk());
    env.SimulatePowerLoss(PowerLossMode::kTornTail);

    const std::string contents = *env.ReadFileToString("/db/log");
    switch (ClassifyTornTail(contents, synced, unsynced)) {
      case Tail::kNothing:
        ++nothing;
        break;
      case Tail::kZeros:
        ++zeros;
        break;
      case Tail::kGarbage:
        ++garbage;
        break;
    }
    const size_t after_synced = contents.size() - synced.size();
    if (after_synced > 0 && after_synced < unsynced.size()) kept_partial = true;
    // What the crash left is what the next crash starts from.
    EXPECT_EQ(*env.DurableContents("/db/log"), contents);
  }
  EXPECT_GT(nothing, 0);
  EXPECT_GT(zeros, 0);
  EXPECT_GT(garbage, 0);
  EXPECT_TRUE(kept_partial);
}

TEST(FaultInjectionEnvTornTailTest, SameSeedSameOutcome) {
  auto run = [](uint64_t seed) {
    FaultInjectionEnv env(seed);
    EXPECT_THAT(env.CreateDir("/db"), IsOk());
    std::vector<std::unique_ptr<WritableFile>> files;
    for (int i = 0; i < 4; ++i) {
      const std::string path = absl::StrCat("/db/f", i);
      auto file = env.NewWritableFile(path);
      EXPECT_THAT(file, IsOk());
      EXPECT_THAT((*file)->Append(std::string(100, 'x')), IsOk());
      files.push_back(std::move(*file));
    }
    EXPECT_THAT(env.SyncDir("/db"), IsOk());
    env.SimulatePowerLoss(PowerLossMode::kTornTail);
    std::string all;
    for (int i = 0; i < 4; ++i) {
      all += *env.ReadFileToString(absl::StrCat("/db/f", i)) + "|";
    }
    return all;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST_F(FaultInjectionEnvTest, DropUnsyncedNeverTears) {
  for (int i = 0; i < 20; ++i) {
    const std::string path = absl::StrCat("/db/f", i);
    CreateSyncedThenAppend(path, "synced", "unsynced");
  }
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Read(absl::StrCat("/db/f", i)), "synced");
  }
}

TEST_F(FaultInjectionEnvTest, FailNextSyncsFiresExactlyN) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  ASSERT_THAT(env_.SyncDir("/db"), IsOk());
  ASSERT_THAT(file->Append("data"), IsOk());
  env_.FailNextSyncs(2);
  EXPECT_THAT(file->Sync(), StatusIs(kInternal, HasSubstr("injected EIO")));
  EXPECT_THAT(file->Sync(), StatusIs(kInternal, HasSubstr("injected EIO")));
  EXPECT_EQ(env_.sync_count(), 0u);
  EXPECT_EQ(*env_.DurableContents("/db/f"), "");  // Nothing made durable.
  EXPECT_THAT(file->Sync(), IsOk());
  EXPECT_EQ(env_.sync_count(), 1u);
  EXPECT_EQ(*env_.DurableContents("/db/f"), "data");
}

TEST_F(FaultInjectionEnvTest, FailNextAppendsFiresExactlyNWithPartialWrite) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  const std::string data(1000, 'd');
  env_.FailNextAppends(3);
  uint64_t size = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(file->Append(data),
                StatusIs(kInternal, "write /db/f: injected EIO"));
    const uint64_t new_size = *env_.GetFileSize("/db/f");
    EXPECT_LT(new_size - size, data.size());  // A prefix, never all of it.
    size = new_size;
  }
  EXPECT_THAT(file->Append(data), IsOk());
  EXPECT_EQ(*env_.GetFileSize("/db/f"), size + data.size());
  EXPECT_EQ(Read("/db/f"), std::string(size + data.size(), 'd'));
}

TEST_F(FaultInjectionEnvTest, FailNextRenamesFiresExactlyNAndChangesNothing) {
  Create("/db/a");
  env_.FailNextRenames(1);
  EXPECT_THAT(env_.RenameFile("/db/missing", "/db/b"), StatusIs(kNotFound));
  EXPECT_THAT(env_.RenameFile("/db/a", "/db/b"),
              StatusIs(kInternal, HasSubstr("injected EIO")));
  EXPECT_TRUE(env_.FileExists("/db/a"));
  EXPECT_FALSE(env_.FileExists("/db/b"));
  EXPECT_THAT(env_.RenameFile("/db/a", "/db/b"), IsOk());
  EXPECT_TRUE(env_.FileExists("/db/b"));
}

TEST_F(FaultInjectionEnvTest, FailNextSyncDirsFiresExactlyNAndPersistsNothing) {
  Create("/db/a");
  env_.FailNextSyncDirs(2);
  EXPECT_THAT(env_.SyncDir("/db"), StatusIs(kInternal));
  EXPECT_THAT(env_.SyncDir("/db"), StatusIs(kInternal));
  EXPECT_EQ(env_.sync_dir_count(), 0u);
  EXPECT_THAT(env_.DurableContents("/db/a"), StatusIs(kNotFound));
  EXPECT_THAT(env_.SyncDir("/db"), IsOk());
  EXPECT_EQ(env_.sync_dir_count(), 1u);
  EXPECT_THAT(env_.DurableContents("/db/a"), IsOk());
}

TEST_F(FaultInjectionEnvTest, NoSpaceFailuresAreResourceExhausted) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  env_.SetInjectedError(FaultInjectionEnv::InjectedError::kNoSpace);
  env_.FailNextAppends(1);
  env_.FailNextSyncs(1);
  env_.FailNextSyncDirs(1);
  env_.FailNextRenames(1);
  constexpr absl::StatusCode kExhausted = absl::StatusCode::kResourceExhausted;
  EXPECT_THAT(file->Append("data"),
              StatusIs(kExhausted, "write /db/f: injected ENOSPC"));
  EXPECT_THAT(file->Sync(), StatusIs(kExhausted, HasSubstr("injected ENOSPC")));
  EXPECT_THAT(env_.SyncDir("/db"), StatusIs(kExhausted));
  EXPECT_THAT(env_.RenameFile("/db/f", "/db/g"), StatusIs(kExhausted));
  env_.SetInjectedError(FaultInjectionEnv::InjectedError::kEio);
  env_.FailNextSyncs(1);
  EXPECT_THAT(file->Sync(), StatusIs(kInternal, HasSubstr("injected EIO")));
}

TEST_F(FaultInjectionEnvTest, FailNextReplacesAndZeroDisarms) {
  std::unique_ptr<WritableFile> file = Create("/db/f");
  env_.FailNextSyncs(5);
  env_.FailNextSyncs(0);
  EXPECT_THAT(file->Sync(), IsOk());
}

TEST_F(FaultInjectionEnvTest, InjectedFailuresSurvivePowerLoss) {
  env_.FailNextSyncs(1);
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  std::unique_ptr<WritableFile> file = Create("/db/f");
  EXPECT_THAT(file->Sync(), StatusIs(kInternal));
  EXPECT_THAT(file->Sync(), IsOk());
}

TEST_F(FaultInjectionEnvTest, LockIsExclusiveUntilReleased) {
  const std::string expected = absl::StrCat(
      "data directory is locked by process ", ::getpid(), " (/db/LOCK)");
  {
    auto lock = env_.LockFile("/db/LOCK");
    ASSERT_THAT(lock, IsOk());
    EXPECT_EQ(Read("/db/LOCK"), absl::StrCat(::getpid(), "\n"));
    EXPECT_THAT(env_.LockFile("/db/LOCK"), StatusIs(kPrecondition, expected));
    EXPECT_THAT(env_.LockFile("/db/OTHER"), IsOk());
  }
  EXPECT_THAT(env_.LockFile("/db/LOCK"), IsOk());
}

TEST_F(FaultInjectionEnvTest, PowerLossReleasesLocks) {
  auto old_lock = env_.LockFile("/db/LOCK");
  ASSERT_THAT(old_lock, IsOk());
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  auto new_lock = env_.LockFile("/db/LOCK");
  ASSERT_THAT(new_lock, IsOk());
  // Destroying the dead process's lock must not release the new one.
  old_lock->reset();
  EXPECT_THAT(env_.LockFile("/db/LOCK"), StatusIs(kPrecondition));
}

TEST_F(FaultInjectionEnvTest, ConcurrentWritersAndInjectors) {
  constexpr int kThreads = 4;
  constexpr int kRecords = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      auto file = env_.NewWritableFile(absl::StrCat("/db/f", t));
      ASSERT_THAT(file, IsOk());
      for (int i = 0; i < kRecords; ++i) {
        ASSERT_THAT((*file)->Append("record"), IsOk());
        ASSERT_THAT((*file)->Sync(), IsOk());
        EXPECT_THAT(env_.GetChildren("/db"), IsOk());
      }
    });
  }
  threads.emplace_back([this] {
    for (int i = 0; i < kRecords; ++i) {
      EXPECT_THAT(env_.SyncDir("/db"), IsOk());
      env_.FailNextRenames(0);
    }
  });
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(env_.sync_count(), uint64_t{kThreads} * kRecords);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(*env_.GetFileSize(absl::StrCat("/db/f", t)), 6u * kRecords);
  }
}

}  // namespace
}  // namespace taskwal::wal
