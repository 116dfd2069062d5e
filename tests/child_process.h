#ifndef TASKWAL_TESTS_CHILD_PROCESS_H_
#define TASKWAL_TESTS_CHILD_PROCESS_H_

// A child process for crash tests: started from a binary among the test's
// data dependencies, its stdout on a pipe the test reads line by line, and
// killed with SIGKILL. The child dies with the test too (PR_SET_PDEATHSIG),
// and the destructor kills and reaps it, so a failed assertion leaves no
// process behind. Not thread-safe.

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskwal::test_util {

// The path of a binary among the test's runfiles: "tests/crash_child".
std::string RunfilePath(absl::string_view path);

// A fresh (emptied) directory under the test's temporary directory.
std::string FreshTestDir(absl::string_view name);

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  // Forks and execs args[0] with args. kInternal: a system call failed.
  absl::Status Start(const std::vector<std::string>& args);

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // Reads what the child writes for `duration`, or until its stdout
  // closes; returns false if it closed.
  bool ReadFor(absl::Duration duration);

  // Complete lines read so far, removed from the buffer; a partial last
  // line stays behind (after a kill: a line that never finished).
  std::vector<std::string> TakeLines();

  // The next line the child writes. kDeadlineExceeded: none within
  // `timeout`; kFailedPrecondition: the child ended first (says how).
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);

  // Sends a signal (SIGSTOP, SIGCONT, ...) without reaping.
  void Signal(int signal);

  // SIGKILLs and reaps the child, then drains its stdout. OK if it was
  // still running (it died by this SIGKILL); otherwise says how it ended.
  absl::Status Kill() { return Reap(/*kill=*/true); }

  // Reaps a child that exits by itself. OK if it exited with status 0.
  absl::Status WaitExit() { return Reap(/*kill=*/false); }

 private:
  absl::Status Reap(bool kill);

  // Appends what one read returns: > 0 bytes read, 0 end of file (or an
  // error), -1 nothing within timeout_ms.
  ssize_t ReadSome(int timeout_ms);

  pid_t pid_ = -1;
  int read_fd_ = -1;
  std::string buffer_;
};

}  // namespace taskwal::test_util

#endif  // TASKWAL_TESTS_CHILD_PROCESS_H_
