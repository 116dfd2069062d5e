// Real crashes of a WorkerPool: a child process (pool_crash_child) runs a
// pool over an engine on the POSIX file system; once its handlers are
// running it gets SIGKILL, and a new child takes over the same directory,
// kKills times; a last child runs until every task is COMPLETED. The
// handlers log each run to a side file they fsync (B when a run begins, E
// with the result just before it returns). Then, from the user's point of
// view, every task must have completed exactly once:
//   - status COMPLETED, with exactly one COMPLETED entry in its History;
//   - its stored result is the one an E line logged for the very worker and
//     attempt of that COMPLETED entry (an attempt that really ran);
//   - it ran at least once (a B line);
// and the runs beyond the first (at-least-once delivery) are explained by
// the kills: each kill interrupts at most one run per pool thread, so there
// are at most kills x threads of them.
//
// The kill moments are random; nothing here asserts timing (the waits for
// progress are generous and only stop a broken test). On a failure the
// data directory and the log are copied to $TEST_UNDECLARED_OUTPUTS_DIR.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "tests/child_process.h"
#include "tests/pool_crash_protocol.h"

namespace taskwal {
namespace pool_crash {
namespace {

constexpr int kTasks = 240;  // Half of each type.
constexpr int kKills = 6;
constexpr int kThreads = 4;  // The child pool's threads.
// How long to wait for progress before calling the test broken: generous,
// for a loaded machine and sanitizers. It measures nothing.
constexpr absl::Duration kPatience = absl::Seconds(120);

std::string ChildPath() {
  return test_util::RunfilePath("tests/pool_crash_child");
}

std::string TempPath(absl::string_view name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp ? tmp : "/tmp", "/", name);
}

// Keeps the evidence of a failure (bazel zips the outputs directory).
void Preserve(const std::string& path) {
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  if (outputs == nullptr) return;
  std::error_code ec;
  std::filesystem::copy(
      path,
      absl::StrCat(outputs, "/",
                   std::filesystem::path(path).filename().string()),
      std::filesystem::copy_options::recursive, ec);
}

// A pool_crash_child process with its stdout on a pipe
// (tests/child_process.h).
using Child = test_util::ChildProcess;

struct LoggedRun {
  std::string worker;
  uint32_t attempt = 0;
  std::string result;  // E lines only.
};

// The execution log, parsed.
struct ExecLog {
  std::map<uint64_t, std::vector<LoggedRun>> begun;     // B lines by task.
  std::map<uint64_t, std::vector<LoggedRun>> finished;  // E lines by task.
  size_t runs = 0;                                      // B lines.
  size_t torn = 0;  // Lines a kill cut short (skipped).
};

ExecLog ReadExecLog(const std::string& path) {
  ExecLog log;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> lines = absl::StrSplit(text.str(), '\n');
  if (!lines.empty()) lines.pop_back();  // After the last '\n' (or a torn end).
  for (const std::string& line : lines) {
    const std::vector<std::string> f = absl::StrSplit(line, ' ');
    uint64_t id = 0;
    uint32_t attempt = 0;
    const bool begin = f.size() == 4 && f[0] == "B";
    const bool end = f.size() == 5 && f[0] == "E";
    if ((!begin && !end) || !absl::SimpleAtoi(f[1], &id) ||
        !absl::SimpleAtoi(f[3], &attempt)) {
      ++log.torn;
      continue;
    }
    if (begin) {
      log.begun[id].push_back({f[2], attempt, ""});
      ++log.runs;
    } else {
      log.finished[id].push_back({f[2], attempt, f[4]});
    }
  }
  return log;
}

TEST(PoolCrashTest, EveryTaskCompletesExactlyOnceAcrossKillNine) {
  const std::string dir = TempPath("pool_crash");
  const std::string exec_log = TempPath("pool_crash_exec.log");
  std::filesystem::remove_all(dir);
  std::filesystem::remove(exec_log);

  std::vector<uint64_t> ids;
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(PoolCrashOptions(dir));
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::vector<TaskSpec> specs(kTasks);
    for (int i = 0; i < kTasks; ++i) {
      specs[i].idempotency_key = absl::StrCat("task-", i);
      specs[i].type = i % 2 == 0 ? kPlainType : kLimitedType;
      specs[i].payload = absl::StrCat("payload-", i);
    }
    absl::StatusOr<std::vector<SubmitResult>> submitted =
        (*engine)->SubmitBatch(specs);
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    for (const SubmitResult& r : *submitted) ids.push_back(r.task_id);
    ASSERT_TRUE((*engine)->Close().ok());
  }

  const std::vector<std::string> args = {ChildPath(), "--data_dir=" + dir,
                                         "--exec_log=" + exec_log,
                                         absl::StrCat("--threads=", kThreads)};
  std::mt19937_64 rng(20261);
  int kills = 0;
  for (int cycle = 0; cycle < kKills; ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle));
    Child child;
    ASSERT_TRUE(child.Start(args).ok());
    absl::StatusOr<std::string> ready = child.ReadLine(kPatience);
    ASSERT_TRUE(ready.ok()) << ready.status();
    ASSERT_TRUE(absl::StartsWith(*ready, "R ")) << *ready;
    // Kill once this child's handlers have begun a few runs, at a random
    // moment in the middle of its work.
    const size_t want = ReadExecLog(exec_log).runs + 8 + rng() % 16;
    const absl::Time give_up = absl::Now() + kPatience;
    while (ReadExecLog(exec_log).runs < want) {
      ASSERT_LT(absl::Now(), give_up) << "the child makes no progress";
      absl::SleepFor(absl::Milliseconds(2));
    }
    absl::SleepFor(absl::Microseconds(rng() % 10000));
    const absl::Status killed = child.Kill();
    ASSERT_TRUE(killed.ok()) << killed;
    ++kills;
  }

  {
    Child child;
    std::vector<std::string> finish = args;
    finish.push_back("--finish");
    finish.push_back(absl::StrCat("--tasks=", kTasks));
    ASSERT_TRUE(child.Start(finish).ok());
    absl::StatusOr<std::string> line = child.ReadLine(kPatience);
    ASSERT_TRUE(line.ok()) << line.status();
    ASSERT_TRUE(absl::StartsWith(*line, "R ")) << *line;
    line = child.ReadLine(kPatience);
    ASSERT_TRUE(line.ok()) << line.status();
    const absl::Status exited = child.WaitExit();
    ASSERT_TRUE(exited.ok()) << exited;
    // The last pool ran undisturbed: it lost no claim (which would be a run
    // no kill explains) and every engine call worked.
    EXPECT_EQ(*line, "DONE 0 0") << "DONE <lost claims> <engine errors>";
  }

  const ExecLog log = ReadExecLog(exec_log);
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Open(PoolCrashOptions(dir));
  ASSERT_TRUE(engine.ok()) << engine.status();
  size_t duplicates = 0;
  for (uint64_t id : ids) {
    SCOPED_TRACE(absl::StrCat("task ", id));
    absl::StatusOr<Task> task = (*engine)->Get(id);
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_EQ(task->status(), COMPLETED);
    absl::StatusOr<std::vector<HistoryEntry>> history = (*engine)->History(id);
    ASSERT_TRUE(history.ok()) << history.status();
    int completions = 0;
    const HistoryEntry* completed = nullptr;
    for (const HistoryEntry& e : *history) {
      if (e.event() == HistoryEntry::COMPLETED) {
        ++completions;
        completed = &e;
      }
    }
    EXPECT_EQ(completions, 1);
    if (completed != nullptr) {
      bool logged = false;
      auto finished = log.finished.find(id);
      if (finished != log.finished.end()) {
        for (const LoggedRun& run : finished->second) {
          logged |= run.worker == completed->worker_id() &&
                    run.attempt == completed->attempt() &&
                    run.result == task->result();
        }
      }
      EXPECT_TRUE(logged) << "stored result " << task->result() << " of "
                          << completed->worker_id() << " attempt "
                          << completed->attempt()
                          << " is not from a run that finished";
    }
    auto begun = log.begun.find(id);
    const size_t runs = begun == log.begun.end() ? 0 : begun->second.size();
    EXPECT_GE(runs, 1u) << "completed but never ran";
    if (runs > 1) duplicates += runs - 1;
  }
  EXPECT_LE(duplicates, static_cast<size_t>(kills * kThreads))
      << "more runs than the kills explain";
  EXPECT_LE(log.torn, static_cast<size_t>(kills));
  absl::StatusOr<EngineStats> stats = (*engine)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->completed, static_cast<uint64_t>(kTasks));
  EXPECT_EQ(stats->completions, static_cast<uint64_t>(kTasks));
  ASSERT_TRUE((*engine)->Close().ok());
  if (HasFailure()) {
    Preserve(dir);
    Preserve(exec_log);
  }
  RecordProperty("kills", kills);
  RecordProperty("runs", static_cast<int>(log.runs));
  RecordProperty("duplicates", static_cast<int>(duplicates));
  std::printf(
      "%d kills, %d tasks, %zu runs, %zu duplicate runs (bound %d), "
      "%llu lease expiries, %zu torn log lines\n",
      kills, kTasks, log.runs, duplicates, kills * kThreads,
      static_cast<unsigned long long>(stats->lease_expiries), log.torn);
}

}  // namespace
}  // namespace pool_crash
}  // namespace taskwal
