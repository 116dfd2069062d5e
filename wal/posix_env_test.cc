#include "wal/posix_env.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>
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
using ::testing::UnorderedElementsAre;

mode_t PermissionBits(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class PosixEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    ASSERT_NE(tmp, nullptr);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = absl::StrCat(tmp, "/", info->name());
    ASSERT_THAT(env_->CreateDir(dir_), IsOk());
  }

  std::string Path(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

  void WriteFile(const std::string& path, const std::string& contents) {
    auto file = env_->NewWritableFile(path);
    ASSERT_THAT(file, IsOk());
    ASSERT_THAT((*file)->Append(contents), IsOk());
    ASSERT_THAT((*file)->Close(), IsOk());
  }

  Env* const env_ = Env::Default();
  std::string dir_;
};

TEST_F(PosixEnvTest, DefaultIsASingleton) {
  EXPECT_EQ(Env::Default(), Env::Default());
}

TEST_F(PosixEnvTest, WrittenDataIsReadBack) {
  const std::string path = Path("f");
  auto file = env_->NewWritableFile(path);
  ASSERT_THAT(file, IsOk());
  std::string expected;
  for (int i = 0; i < 100; ++i) {
    const std::string chunk(1000 + i, static_cast<char>('a' + i % 26));
    ASSERT_THAT((*file)->Append(chunk), IsOk());
    expected += chunk;
  }
  ASSERT_THAT((*file)->Sync(), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  EXPECT_EQ(*env_->ReadFileToString(path), expected);
  EXPECT_EQ(*env_->GetFileSize(path), expected.size());
}

// AppendAll writes the pieces in order with writev, also more of them than
// one writev takes (IOV_MAX) and with empty ones among them.
TEST_F(PosixEnvTest, AppendAllWritesEveryPieceInOrder) {
  const std::string path = Path("gathered");
  auto file = env_->NewWritableFile(path);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append("head:"), IsOk());
  std::vector<std::string> storage;
  for (int i = 0; i < 2500; ++i) {
    storage.push_back(i % 7 == 0 ? std::string()
                                 : std::string(1 + i % 300, 'a' + i % 26));
  }
  std::vector<absl::string_view> pieces(storage.begin(), storage.end());
  ASSERT_THAT((*file)->AppendAll(pieces), IsOk());
  ASSERT_THAT((*file)->AppendAll({}), IsOk());
  ASSERT_THAT((*file)->Append(":tail"), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  std::string expected = "head:";
  for (const std::string& piece : storage) expected += piece;
  expected += ":tail";
  EXPECT_EQ(*env_->ReadFileToString(path), expected);
  EXPECT_THAT((*file)->AppendAll(pieces),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PosixEnvTest, LargeFileIsReadWhole) {
  const std::string path = Path("big");
  std::string contents(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < contents.size(); ++i) {
    contents[i] = static_cast<char>(i * 131 % 251);
  }
  WriteFile(path, contents);
  EXPECT_EQ(*env_->ReadFileToString(path), contents);
}

TEST_F(PosixEnvTest, NewFileIsOwnerOnly) {
  const std::string path = Path("f");
  WriteFile(path, "x");
  EXPECT_EQ(PermissionBits(path), 0600);
}

TEST_F(PosixEnvTest, NewWritableFileTruncatesExistingFile) {
  const std::string path = Path("f");
  WriteFile(path, "old contents");
  WriteFile(path, "new");
  EXPECT_EQ(*env_->ReadFileToString(path), "new");
}

TEST_F(PosixEnvTest, AppendableFileAppendsAtTheEnd) {
  const std::string path = Path("f");
  WriteFile(path, "abc");
  auto file = env_->NewAppendableFile(path);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append("def"), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  EXPECT_EQ(*env_->ReadFileToString(path), "abcdef");
}

TEST_F(PosixEnvTest, AppendableFileMustExist) {
  const std::string path = Path("missing");
  EXPECT_THAT(env_->NewAppendableFile(path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_FALSE(env_->FileExists(path));
}

TEST_F(PosixEnvTest, CloseIsIdempotentAndLaterCallsFail) {
  auto file = env_->NewWritableFile(Path("f"));
  ASSERT_THAT(file, IsOk());
  EXPECT_THAT((*file)->Close(), IsOk());
  EXPECT_THAT((*file)->Close(), IsOk());
  EXPECT_THAT((*file)->Append("x"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT((*file)->Sync(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PosixEnvTest, MissingFileIsNotFoundWithPathAndErrnoText) {
  const std::string path = Path("missing");
  EXPECT_THAT(
      env_->ReadFileToString(path),
      StatusIs(absl::StatusCode::kNotFound,
               HasSubstr(absl::StrCat(path, ": No such file or directory"))));
  EXPECT_THAT(env_->GetFileSize(path), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->RemoveFile(path), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->TruncateFile(path, 0),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->RenameFile(path, Path("other")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_THAT(env_->GetChildren(path), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->SyncDir(path), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(env_->FileExists(Path("other")));
}

TEST_F(PosixEnvTest, GetChildrenListsNamesWithoutDots) {
  WriteFile(Path("a"), "");
  WriteFile(Path("b"), "");
  ASSERT_THAT(env_->CreateDir(Path("sub")), IsOk());
  EXPECT_THAT(*env_->GetChildren(dir_), UnorderedElementsAre("a", "b", "sub"));
}

TEST_F(PosixEnvTest, RemoveFileRemoves) {
  WriteFile(Path("a"), "x");
  ASSERT_TRUE(env_->FileExists(Path("a")));
  ASSERT_THAT(env_->RemoveFile(Path("a")), IsOk());
  EXPECT_FALSE(env_->FileExists(Path("a")));
}

TEST_F(PosixEnvTest, RenameReplacesTarget) {
  WriteFile(Path("from"), "new");
  WriteFile(Path("to"), "old");
  ASSERT_THAT(env_->RenameFile(Path("from"), Path("to")), IsOk());
  EXPECT_FALSE(env_->FileExists(Path("from")));
  EXPECT_EQ(*env_->ReadFileToString(Path("to")), "new");
  EXPECT_THAT(env_->SyncDir(dir_), IsOk());
}

TEST_F(PosixEnvTest, TruncateFileCutsTheFile) {
  WriteFile(Path("f"), "0123456789");
  ASSERT_THAT(env_->TruncateFile(Path("f"), 4), IsOk());
  EXPECT_EQ(*env_->ReadFileToString(Path("f")), "0123");
}

TEST_F(PosixEnvTest, CreateDirIsOwnerOnlyAndIdempotent) {
  const std::string sub = Path("sub");
  ASSERT_THAT(env_->CreateDir(sub), IsOk());
  EXPECT_EQ(PermissionBits(sub), 0700);
  EXPECT_THAT(env_->CreateDir(sub), IsOk());
  EXPECT_TRUE(env_->FileExists(sub));
}

TEST_F(PosixEnvTest, CreateDirOverAFileFails) {
  WriteFile(Path("f"), "");
  EXPECT_THAT(env_->CreateDir(Path("f")),
              StatusIs(absl::StatusCode::kInternal, HasSubstr(Path("f"))));
}

TEST_F(PosixEnvTest, CreateDirWithoutParentIsNotFound) {
  EXPECT_THAT(env_->CreateDir(Path("no/such")),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PosixEnvTest, SyncDirSucceedsOnADirectory) {
  EXPECT_THAT(env_->SyncDir(dir_), IsOk());
}

TEST_F(PosixEnvTest, SyncDirOfAFileFails) {
  WriteFile(Path("f"), "");
  EXPECT_THAT(env_->SyncDir(Path("f")), StatusIs(absl::StatusCode::kInternal));
}

TEST_F(PosixEnvTest, UnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root bypasses file permissions";
  const std::string path = Path("secret");
  WriteFile(path, "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  EXPECT_THAT(env_->ReadFileToString(path),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(path)));
}

TEST(PosixErrorToStatusTest, MapsErrnoToCanonicalCodes) {
  EXPECT_THAT(PosixErrorToStatus("open", "/p", ENOENT),
              StatusIs(absl::StatusCode::kNotFound,
                       "open /p: No such file or directory"));
  EXPECT_THAT(PosixErrorToStatus("open", "/p", EACCES),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "open /p: Permission denied"));
  EXPECT_THAT(PosixErrorToStatus("write", "/p", ENOSPC),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "write /p: No space left on device"));
  EXPECT_THAT(PosixErrorToStatus("write", "/p", EDQUOT),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(PosixErrorToStatus("fdatasync", "/p", EIO),
              StatusIs(absl::StatusCode::kInternal,
                       "fdatasync /p: Input/output error"));
  EXPECT_THAT(PosixErrorToStatus("rename", "/a -> /b", EXDEV),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("/a -> /b")));
}

class PosixLockTest : public PosixEnvTest {
 protected:
  // Forks a child that tries LockFile(path) with the default Env. Returns
  // the child's exit code: 0 locked, 1 refused with kFailedPrecondition
  // naming `expected_holder`, 2 anything else.
  int LockInChild(const std::string& path, pid_t expected_holder) {
    const pid_t child = ::fork();
    if (child == 0) {
      auto lock = Env::Default()->LockFile(path);
      int code = 2;
      if (lock.ok()) {
        code = 0;
      } else if (lock.status().code() ==
                     absl::StatusCode::kFailedPrecondition &&
                 lock.status().message() ==
                     absl::StrCat("data directory is locked by process ",
                                  expected_holder, " (", path, ")")) {
        code = 1;
      }
      ::_exit(code);
    }
    EXPECT_GT(child, 0);
    int wait_status = 0;
    EXPECT_EQ(::waitpid(child, &wait_status, 0), child);
    EXPECT_TRUE(WIFEXITED(wait_status));
    return WEXITSTATUS(wait_status);
  }
};

TEST_F(PosixLockTest, LockWritesPidIntoOwnerOnlyFile) {
  const std::string path = Path("LOCK");
  auto lock = env_->LockFile(path);
  ASSERT_THAT(lock, IsOk());
  EXPECT_EQ(*env_->ReadFileToString(path), absl::StrCat(::getpid(), "\n"));
  EXPECT_EQ(PermissionBits(path), 0600);
}

TEST_F(PosixLockTest, StalePidIsOverwritten) {
  const std::string path = Path("LOCK");
  WriteFile(path, "99999999999\n");
  auto lock = env_->LockFile(path);
  ASSERT_THAT(lock, IsOk());
  EXPECT_EQ(*env_->ReadFileToString(path), absl::StrCat(::getpid(), "\n"));
}

TEST_F(PosixLockTest, SecondLockInSameProcessFailsNamingHolder) {
  const std::string path = Path("LOCK");
  auto first = env_->LockFile(path);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(env_->LockFile(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("data directory is locked by process ",
                                    ::getpid(), " (", path, ")")));
  // The failed attempt closed its own descriptor; the first lock must still
  // hold (it would not with fcntl locks).
  EXPECT_THAT(env_->LockFile(path),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PosixLockTest, DestroyingTheLockReleasesIt) {
  const std::string path = Path("LOCK");
  {
    auto lock = env_->LockFile(path);
    ASSERT_THAT(lock, IsOk());
  }
  EXPECT_THAT(env_->LockFile(path), IsOk());
}

TEST_F(PosixLockTest, LockExcludesOtherProcesses) {
  const std::string path = Path("LOCK");
  {
    auto lock = env_->LockFile(path);
    ASSERT_THAT(lock, IsOk());
    EXPECT_EQ(LockInChild(path, ::getpid()), 1);
    // The child's exit closed its inherited descriptor; still locked here.
    EXPECT_THAT(env_->LockFile(path),
                StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  EXPECT_EQ(LockInChild(path, ::getpid()), 0);
  // The child's lock died with it.
  EXPECT_THAT(env_->LockFile(path), IsOk());
}

TEST_F(PosixLockTest, LockInMissingDirectoryIsNotFound) {
  EXPECT_THAT(env_->LockFile(Path("no/LOCK")),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace taskwal::wal
