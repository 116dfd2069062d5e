#include "tests/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace taskwal::test_util {

std::string RunfilePath(absl::string_view path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/",
                      workspace ? workspace : "taskwal", "/", path);
}

std::string FreshTestDir(absl::string_view name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

ChildProcess::~ChildProcess() {
  Kill().IgnoreError();
  if (read_fd_ >= 0) ::close(read_fd_);
}

absl::Status ChildProcess::Start(const std::vector<std::string>& args) {
  if (pid_ > 0) return absl::InternalError("the child is running");
  if (read_fd_ >= 0) {
    ::close(read_fd_);
    read_fd_ = -1;
  }
  buffer_.clear();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  std::vector<char*> argv;
  for (const std::string& arg : args) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(error)));
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Die with the test, too.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    if (::dup2(fds[1], STDOUT_FILENO) < 0) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  pid_ = pid;
  read_fd_ = fds[0];
  return absl::OkStatus();
}

bool ChildProcess::ReadFor(absl::Duration duration) {
  if (read_fd_ < 0) return false;
  const absl::Time deadline = absl::Now() + duration;
  for (absl::Time now = absl::Now(); now < deadline; now = absl::Now()) {
    const int timeout_ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - now)) + 1;
    if (ReadSome(timeout_ms) == 0) return false;
  }
  return true;
}

std::vector<std::string> ChildProcess::TakeLines() {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = buffer_.find('\n', start)) != std::string::npos;
       start = end + 1) {
    lines.push_back(buffer_.substr(start, end - start));
  }
  buffer_.erase(0, start);
  return lines;
}

void ChildProcess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

absl::StatusOr<std::string> ChildProcess::ReadLine(absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (true) {
    const size_t end = buffer_.find('\n');
    if (end != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      return line;
    }
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError("no line from the child");
    }
    if (read_fd_ < 0 || ReadSome(/*timeout_ms=*/100) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("the child ended: ", Reap(/*kill=*/false).message()));
    }
  }
}

absl::Status ChildProcess::Reap(bool kill) {
  if (pid_ <= 0) return absl::OkStatus();
  if (kill) ::kill(pid_, SIGKILL);
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, 0);
  } while (r < 0 && errno == EINTR);
  const pid_t pid = pid_;
  pid_ = -1;
  while (read_fd_ >= 0 && ReadSome(/*timeout_ms=*/-1) > 0) {
  }
  if (r != pid) {
    return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL && kill) {
    return absl::OkStatus();
  }
  if (WIFEXITED(wstatus)) {
    if (!kill && WEXITSTATUS(wstatus) == 0) return absl::OkStatus();
    return absl::InternalError(absl::StrCat(
        "child ", pid, " exited with ", WEXITSTATUS(wstatus), " (see stderr)"));
  }
  return absl::InternalError(
      absl::StrCat("child ", pid, " died of signal ", WTERMSIG(wstatus)));
}

ssize_t ChildProcess::ReadSome(int timeout_ms) {
  pollfd p{read_fd_, POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&p, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) return -1;  // Timeout: nothing yet.
  char chunk[64 << 10];
  ssize_t n;
  do {
    n = ::read(read_fd_, chunk, sizeof(chunk));
  } while (n < 0 && errno == EINTR);
  if (n > 0) buffer_.append(chunk, static_cast<size_t>(n));
  return n < 0 ? 0 : n;
}

}  // namespace taskwal::test_util
