// The victim of pool_crash_test: opens the engine on --data_dir and runs a
// WorkerPool over it whose handlers log every run to --exec_log (the line
// format of tests/pool_crash_protocol.h), until it is killed. With
// --finish it instead stops once every one of the --tasks tasks is
// COMPLETED, closes the pool and the engine, prints
// "DONE <lost-claims> <engine-errors>" (the pool's counters) and exits 0. An
// unexpected status ends it with a message on stderr and exit code 2.
//
//   pool_crash_child --data_dir=DIR --exec_log=FILE [--threads=4]
//                    [--handler_ms=5] [--finish --tasks=N]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/worker_pool.h"
#include "tests/pool_crash_protocol.h"

ABSL_FLAG(std::string, data_dir, "", "Engine data directory.");
ABSL_FLAG(std::string, exec_log, "", "Execution log (appended to).");
ABSL_FLAG(int, threads, 4, "Shared pool threads.");
ABSL_FLAG(int, handler_ms, 5, "How long a handler works.");
ABSL_FLAG(bool, finish, false, "Exit once every task is COMPLETED.");
ABSL_FLAG(uint64_t, tasks, 0, "With --finish: how many tasks there are.");

namespace taskwal {
namespace pool_crash {
namespace {

[[noreturn]] void Die(absl::string_view what, const absl::Status& status) {
  const std::string message =
      absl::StrCat("pool_crash_child: ", what, ": ", status.ToString(), "\n");
  (void)!::write(STDERR_FILENO, message.data(), message.size());
  // Not exit(): the pool's threads are still using the engine.
  ::_exit(2);
}

absl::Status ErrnoStatus(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": errno ", errno));
}

// Writes all of `data` to fd with write(2) calls, then fdatasyncs.
void WriteDurably(int fd, absl::string_view data, absl::string_view what) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Die(what, ErrnoStatus("write"));
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) Die(what, ErrnoStatus("fdatasync"));
}

// Opens the execution log for appending; ends a line an earlier child's
// kill cut short, so that this child's lines start on a line of their own.
int OpenExecLog(const std::string& path) {
  const int fd =
      ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) Die("open exec log", ErrnoStatus(path));
  struct stat st;
  if (::fstat(fd, &st) != 0) Die("fstat exec log", ErrnoStatus(path));
  if (st.st_size > 0) {
    char last = 0;
    if (::pread(fd, &last, 1, st.st_size - 1) != 1) {
      Die("read exec log", ErrnoStatus(path));
    }
    if (last != '\n') WriteDurably(fd, "\n", "end a torn line");
  }
  return fd;
}

void Write(const std::string& line) {
  if (::write(STDOUT_FILENO, line.data(), line.size()) !=
      static_cast<ssize_t>(line.size())) {
    ::_exit(3);  // The parent went away: nobody is checking any more.
  }
}

int Main() {
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  const std::string exec_log = absl::GetFlag(FLAGS_exec_log);
  const int threads = absl::GetFlag(FLAGS_threads);
  if (data_dir.empty() || exec_log.empty() || threads < 1) {
    Die("flags", absl::InvalidArgumentError(
                     "need --data_dir, --exec_log and --threads >= 1"));
  }
  const int log_fd = OpenExecLog(exec_log);
  absl::StatusOr<std::unique_ptr<Engine>> opened =
      Engine::Open(PoolCrashOptions(data_dir));
  if (!opened.ok()) Die("Open", opened.status());
  Engine* engine = opened->get();

  WorkerPoolOptions options;
  options.threads = threads;
  options.worker_id_prefix = absl::StrCat("p", ::getpid());
  options.claim_wait = absl::Milliseconds(20);
  WorkerPool pool(engine, options);
  const absl::Duration work =
      absl::Milliseconds(absl::GetFlag(FLAGS_handler_ms));
  const TaskHandler handler =
      [log_fd, work](const Task& task,
                     HandlerContext& ctx) -> absl::StatusOr<std::string> {
    const ClaimRef& claim = ctx.claim();
    const std::string run =
        absl::StrCat(task.id(), " ", claim.worker_id, " ", ctx.attempt());
    WriteDurably(log_fd, absl::StrCat("B ", run, "\n"), "log B");
    if (ctx.WaitForCancellation(work)) {
      return absl::CancelledError("cancelled");  // Not stored.
    }
    const std::string result = ResultFor(claim.worker_id, claim.token);
    WriteDurably(log_fd, absl::StrCat("E ", run, " ", result, "\n"), "log E");
    return result;
  };
  absl::Status s = pool.Register(kPlainType, handler);
  if (!s.ok()) Die("Register", s);
  HandlerOptions limited;
  limited.max_running = kLimitedMaxRunning;
  if (s = pool.Register(kLimitedType, handler, limited); !s.ok()) {
    Die("Register", s);
  }
  if (s = pool.Start(); !s.ok()) Die("Start", s);
  Write(absl::StrCat("R ", ::getpid(), "\n"));

  const bool finish = absl::GetFlag(FLAGS_finish);
  const uint64_t tasks = absl::GetFlag(FLAGS_tasks);
  while (true) {
    absl::SleepFor(absl::Milliseconds(20));
    if (!finish) continue;  // Runs until killed.
    absl::StatusOr<EngineStats> stats = engine->Stats();
    if (!stats.ok()) Die("Stats", stats.status());
    if (stats->completed >= tasks) break;
  }
  if (s = pool.Stop(absl::Now() + absl::Seconds(30)); !s.ok()) Die("Stop", s);
  const WorkerPoolStats stats = pool.Stats();
  if (s = engine->Close(); !s.ok()) Die("Close", s);
  ::close(log_fd);
  Write(
      absl::StrCat("DONE ", stats.lost_claims, " ", stats.engine_errors, "\n"));
  return 0;
}

}  // namespace
}  // namespace pool_crash
}  // namespace taskwal

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskwal::pool_crash::Main();
}
