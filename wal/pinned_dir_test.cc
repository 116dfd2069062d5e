#include "wal/pinned_dir.h"

#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "taskwal/fault_injection_env.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr char kDir[] = "/db";

std::string PathOf(absl::string_view name) { return JoinPath(kDir, name); }

void WriteFile(Env* env, const std::string& path, absl::string_view data) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      env->NewWritableFile(path);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append(data), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
}

std::string SnapshotName(uint64_t first_segment, uint32_t partition) {
  return absl::StrCat("snapshot-", absl::StrFormat("%020d", first_segment), "-",
                      absl::StrFormat("%04d", partition), ".snap");
}

// Forwards to a FaultInjectionEnv and runs a hook before each listing and
// each open, so that a test can change the directory in the middle of Pin.
class HookEnv final : public EnvWrapper {
 public:
  explicit HookEnv(Env* base) : EnvWrapper(base) {}

  std::function<void(int)> before_list;  // Gets the listing's number.
  std::function<void(const std::string&)> before_open;
  int lists = 0;

  absl::StatusOr<std::unique_ptr<ReadableFile>> NewReadableFile(
      const std::string& path) override {
    if (before_open) before_open(path);
    return EnvWrapper::NewReadableFile(path);
  }
  absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) override {
    if (before_list) before_list(lists);
    ++lists;
    return EnvWrapper::GetChildren(dir);
  }
};

class PinnedDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(env_.CreateDir(kDir), IsOk());
    Write(std::string(kMetaFileName), "meta");
    Write(SnapshotName(3, 0), "snapshot 3/0");
    Write(SnapshotName(3, 1), "snapshot 3/1");
    for (uint64_t seq = 1; seq <= 4; ++seq) {
      Write(SegmentFileName(seq), absl::StrCat("segment ", seq));
    }
    Write("LOCK", "123\n");
    Write(SegmentFileName(5) + ".tmp", "being created");
    Write(SnapshotName(5, 0) + ".tmp", "being written");
  }

  void Write(const std::string& name, absl::string_view data) {
    WriteFile(&env_, PathOf(name), data);
  }

  FaultInjectionEnv env_{/*seed=*/1};
};

TEST_F(PinnedDirTest, ReadsRemovedFilesAndListsTheMomentItPinned) {
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(&env_, kDir);
  ASSERT_THAT(view, IsOk());
  EXPECT_TRUE((*view)->complete());
  EXPECT_EQ((*view)->pinned_files(), 7u);  // META, 2 snapshots, 4 segments.

  // The owner takes a snapshot: new files, older ones discarded.
  Write(SnapshotName(5, 0), "snapshot 5/0");
  Write(SnapshotName(5, 1), "snapshot 5/1");
  Write(SegmentFileName(5), "segment 5");
  for (const std::string& name :
       {SnapshotName(3, 0), SnapshotName(3, 1), SegmentFileName(1),
        SegmentFileName(2), SegmentFileName(3)}) {
    ASSERT_THAT(env_.RemoveFile(PathOf(name)), IsOk());
  }
  // The view still reads them, and lists only what it pinned (less
  // temporary files).
  EXPECT_THAT((*view)->ReadFileToString(PathOf(SnapshotName(3, 1))),
              IsOkAndHolds("snapshot 3/1"));
  EXPECT_THAT((*view)->ReadFileToString(PathOf(SegmentFileName(2))),
              IsOkAndHolds("segment 2"));
  EXPECT_THAT((*view)->GetFileSize(PathOf(SegmentFileName(1))),
              IsOkAndHolds(9u));
  EXPECT_TRUE((*view)->FileExists(PathOf(SegmentFileName(3))));
  absl::StatusOr<std::unique_ptr<ReadableFile>> reader =
      (*view)->NewReadableFile(PathOf(SegmentFileName(3)));
  ASSERT_THAT(reader, IsOk());
  EXPECT_THAT((*reader)->ReadAll(), IsOkAndHolds("segment 3"));
  EXPECT_THAT(
      (*view)->GetChildren(kDir),
      IsOkAndHolds(UnorderedElementsAre(
          "META", SnapshotName(3, 0), SnapshotName(3, 1), SegmentFileName(1),
          SegmentFileName(2), SegmentFileName(3), SegmentFileName(4), "LOCK")));
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(true));

  // A segment still being written is read as it is now.
  absl::StatusOr<std::unique_ptr<WritableFile>> active =
      env_.NewAppendableFile(PathOf(SegmentFileName(4)));
  ASSERT_THAT(active, IsOk());
  ASSERT_THAT((*active)->Append(" more"), IsOk());
  EXPECT_THAT((*view)->ReadFileToString(PathOf(SegmentFileName(4))),
              IsOkAndHolds("segment 4 more"));
}

TEST_F(PinnedDirTest, ChangedOnlyWhenAReaderCouldChooseDifferently) {
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(&env_, kDir);
  ASSERT_THAT(view, IsOk());
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(false));
  // Later segments and temporary files only extend the log.
  Write(SegmentFileName(5), "segment 5");
  Write(SegmentFileName(6), "segment 6");
  Write(SnapshotName(6, 1) + ".tmp", "being written");
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(false));
  // A new snapshot does not.
  Write(SnapshotName(6, 1), "snapshot 6/1");
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(true));
  ASSERT_THAT(env_.RemoveFile(PathOf(SnapshotName(6, 1))), IsOk());
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(false));
  // Nor does a removed file.
  ASSERT_THAT(env_.RemoveFile(PathOf(SegmentFileName(1))), IsOk());
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(true));
}

TEST_F(PinnedDirTest, ChangesNothing) {
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(&env_, kDir);
  ASSERT_THAT(view, IsOk());
  PinnedDir& v = **view;
  const std::string seg = PathOf(SegmentFileName(1));
  EXPECT_THAT(v.NewWritableFile(PathOf("x")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("read-only view")));
  EXPECT_THAT(v.NewAppendableFile(seg),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(v.RemoveFile(seg),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(v.RenameFile(seg, seg + ".x"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(v.TruncateFile(seg, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(v.CreateDir("/db/sub"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(v.SyncDir(kDir), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(v.LockFile(PathOf("LOCK")),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(env_.ReadFileToString(seg), IsOkAndHolds("segment 1"));
}

TEST_F(PinnedDirTest, MissingDirectoryIsNotFound) {
  EXPECT_THAT(PinnedDir::Pin(&env_, "/nowhere").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

// A file removed between the listing and its open: Pin starts over and
// pins the directory as it is now.
TEST_F(PinnedDirTest, StartsOverWhenAFileVanishesBeforeItIsOpened) {
  HookEnv hook(&env_);
  bool snapshotted = false;
  hook.before_open = [&](const std::string& path) {
    if (snapshotted || path != PathOf(SnapshotName(3, 1))) return;
    snapshotted = true;
    Write(SnapshotName(5, 0), "snapshot 5/0");
    Write(SnapshotName(5, 1), "snapshot 5/1");
    for (const std::string& name :
         {SnapshotName(3, 0), SnapshotName(3, 1), SegmentFileName(1),
          SegmentFileName(2), SegmentFileName(3)}) {
      ASSERT_THAT(env_.RemoveFile(PathOf(name)), IsOk());
    }
  };
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(&hook, kDir);
  ASSERT_THAT(view, IsOk());
  EXPECT_TRUE(snapshotted);
  EXPECT_THAT((*view)->GetChildren(kDir),
              IsOkAndHolds(UnorderedElementsAre("META", SnapshotName(5, 0),
                                                SnapshotName(5, 1),
                                                SegmentFileName(4), "LOCK")));
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(false));
}

// A snapshot that appears between the two listings may hide a removal
// that the first listing missed: Pin starts over.
TEST_F(PinnedDirTest, StartsOverWhenASnapshotAppearsBetweenTheListings) {
  HookEnv hook(&env_);
  hook.before_list = [&](int n) {
    if (n == 1) Write(SnapshotName(5, 1), "snapshot 5/1");
  };
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(&hook, kDir);
  ASSERT_THAT(view, IsOk());
  EXPECT_EQ(hook.lists, 4);  // Two tries of two listings each.
  EXPECT_THAT((*view)->ReadFileToString(PathOf(SnapshotName(5, 1))),
              IsOkAndHolds("snapshot 5/1"));
}

TEST_F(PinnedDirTest, GivesUpOnADirectoryThatNeverStandsStill) {
  HookEnv hook(&env_);
  uint64_t next = 10;
  hook.before_list = [&](int n) {
    if (n % 2 == 1) Write(SnapshotName(next++, 0), "snapshot");
  };
  EXPECT_THAT(PinnedDir::Pin(&hook, kDir).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("changed while it was being opened")));
}

TEST_F(PinnedDirTest, PinsAtMostMaxPinnedFiles) {
  for (uint64_t seq = 5; seq < PinnedDir::kMaxPinnedFiles + 10; ++seq) {
    Write(SegmentFileName(seq), absl::StrCat("segment ", seq));
  }
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(&env_, kDir);
  ASSERT_THAT(view, IsOk());
  EXPECT_EQ((*view)->pinned_files(), PinnedDir::kMaxPinnedFiles);
  EXPECT_FALSE((*view)->complete());
  // The oldest are pinned; the newest are read from the directory.
  const std::string oldest = PathOf(SegmentFileName(1));
  const std::string newest =
      PathOf(SegmentFileName(PinnedDir::kMaxPinnedFiles + 9));
  ASSERT_THAT(env_.RemoveFile(oldest), IsOk());
  ASSERT_THAT(env_.RemoveFile(newest), IsOk());
  EXPECT_THAT((*view)->ReadFileToString(oldest), IsOkAndHolds("segment 1"));
  EXPECT_THAT((*view)->ReadFileToString(newest).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(true));
}

// On POSIX, through the real file system: an unlinked file stays readable
// through the descriptor the view holds.
TEST(PinnedDirPosixTest, ReadsUnlinkedFiles) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/pinned-", ::getpid());
  Env* env = Env::Default();
  ASSERT_THAT(env->CreateDir(dir), IsOk());
  const std::string segment = JoinPath(dir, SegmentFileName(1));
  WriteFile(env, segment, "records");
  absl::StatusOr<std::unique_ptr<PinnedDir>> view = PinnedDir::Pin(env, dir);
  ASSERT_THAT(view, IsOk());
  ASSERT_THAT(env->RemoveFile(segment), IsOk());
  EXPECT_FALSE(env->FileExists(segment));
  EXPECT_THAT((*view)->ReadFileToString(segment), IsOkAndHolds("records"));
  EXPECT_THAT((*view)->GetFileSize(segment), IsOkAndHolds(7u));
  EXPECT_THAT((*view)->Changed(), IsOkAndHolds(true));
}

}  // namespace
}  // namespace taskwal::wal
