// Runs examples/daemon as a real process on a directory under $TEST_TMPDIR,
// stops it (SIGTERM, or SIGKILL mid-work), restarts it with
// --exit_when_idle until every job is done, then opens the directory itself
// and checks that every job job-1 .. job-N is one task, COMPLETED once:
// nothing lost, nothing duplicated across the restart.
//
// The only timing here is generous upper bounds on waiting for the daemon to
// make progress or to exit; the checks are about the final state.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
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
#include <optional>
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
#include "taskwal/task.pb.h"

namespace taskwal::examples {
namespace {

// Upper bounds, generous for sanitizer builds on a loaded machine.
constexpr absl::Duration kProgressTimeout = absl::Seconds(60);
constexpr absl::Duration kExitTimeout = absl::Seconds(60);
constexpr absl::Duration kDrainTimeout = absl::Seconds(120);

std::string DaemonPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/",
                      workspace ? workspace : "taskwal", "/examples/daemon");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// The value of an unlabelled sample `name` in Prometheus text, if present.
std::optional<uint64_t> MetricValue(const std::string& text,
                                    absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) {
      continue;
    }
    uint64_t value = 0;
    if (absl::SimpleAtoi(line, &value)) return value;
  }
  return std::nullopt;
}

// One daemon process, its stdout and stderr in a log file. The destructor
// SIGKILLs and reaps it if it is still running, so a failed assertion
// leaves no process behind holding the directory's lock.
class DaemonProcess {
 public:
  DaemonProcess() = default;
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;
  ~DaemonProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int wstatus;
      while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
      }
    }
  }

  absl::Status Start(const std::vector<std::string>& flags,
                     const std::string& log_path) {
    std::vector<std::string> args = {DaemonPath()};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path.c_str(),
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return absl::InternalError(
          absl::StrCat("open ", log_path, ": ", std::strerror(errno)));
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    }
    if (pid == 0) {
      // Only async-signal-safe calls until exec. Die with the test, too.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      if (::dup2(log_fd, STDOUT_FILENO) < 0) ::_exit(126);
      if (::dup2(log_fd, STDERR_FILENO) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    pid_ = pid;
    log_path_ = log_path;
    return absl::OkStatus();
  }

  void Signal(int signal) {
    ASSERT_GT(pid_, 0);
    ASSERT_EQ(::kill(pid_, signal), 0) << std::strerror(errno);
  }

  // The wait status once the process ended, or kDeadlineExceeded.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      int wstatus = 0;
      const pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return wstatus;
      }
      if (r < 0 && errno != EINTR) {
        return absl::InternalError(
            absl::StrCat("waitpid: ", std::strerror(errno)));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "daemon still running after ", absl::FormatDuration(timeout)));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  std::string Log() const { return ReadFile(log_path_); }

  // Copies the log into the test's output, to read what the daemon did.
  void ShowLog() const {
    std::printf("--- %s\n%s", log_path_.c_str(), Log().c_str());
  }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(
        tmp ? tmp : "/tmp", "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    data_dir_ = root_ + "/data";
    metrics_file_ = root_ + "/metrics.prom";
  }

  std::vector<std::string> CommonFlags() const {
    return {absl::StrCat("--data_dir=", data_dir_),
            absl::StrCat("--metrics_file=", metrics_file_),
            absl::StrCat("--max_tasks_to_submit=", kJobs), "--producers=2",
            "--workers=3",
            // 20 jobs a second: the first run stops before it has
            // submitted them all, so the restart must resume submitting.
            "--submit_interval_ms=100", "--fail_every=7"};
  }

  // Polls the metrics file until taskwal_completions_total reaches `target`,
  // so that a signal lands while the daemon is demonstrably mid-work.
  void WaitForCompletions(DaemonProcess& daemon, uint64_t target) {
    const absl::Time deadline = absl::Now() + kProgressTimeout;
    while (true) {
      const std::optional<uint64_t> completions =
          MetricValue(ReadFile(metrics_file_), "taskwal_completions_total");
      if (completions && *completions >= target) return;
      ASSERT_LT(absl::Now(), deadline) << "no progress; daemon log:\n"
                                       << daemon.Log();
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  // The job the restarted producers went on with, from the log line
  // "producers resume at job-<n>"; 0 if there is no such line (the daemon
  // says "all N jobs already submitted" instead).
  static uint64_t ResumedAt(const std::string& log) {
    constexpr absl::string_view kLine = "producers resume at job-";
    const size_t at = log.find(kLine);
    if (at == std::string::npos) return 0;
    absl::string_view rest = absl::string_view(log).substr(at + kLine.size());
    rest = rest.substr(0, rest.find_first_not_of("0123456789"));
    uint64_t job = 0;
    return absl::SimpleAtoi(rest, &job) ? job : 0;
  }

  // Restarts the daemon with --exit_when_idle and expects exit 0.
  void DrainWithRestart(const std::string& log_name, std::string* log) {
    DaemonProcess daemon;
    std::vector<std::string> flags = CommonFlags();
    flags.insert(flags.end(),
                 {"--task_ms=5", "--lease_ms=600", "--exit_when_idle"});
    ASSERT_TRUE(daemon.Start(flags, root_ + "/" + log_name).ok());
    const absl::StatusOr<int> exit = daemon.WaitForExit(kDrainTimeout);
    daemon.ShowLog();
    *log = daemon.Log();
    ASSERT_TRUE(exit.ok()) << exit.status() << "\n" << *log;
    ASSERT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0)
        << "wait status " << *exit << "\n"
        << *log;
  }

  // Opens the directory (the daemon has exited) and checks that the jobs are
  // exactly job-1 .. job-kJobs, one task each, every one COMPLETED, and that
  // the engine's lifetime counters agree: each task completed exactly once.
  void ExpectEveryJobCompletedOnce() {
    EngineOptions options;
    options.data_dir = data_dir_;
    options.read_only = true;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status();

    std::map<std::string, std::vector<const Task*>> tasks_by_key;
    std::vector<Task> tasks;
    ListFilter filter;
    filter.limit = 10000;
    do {
      absl::StatusOr<ListPage> page = (*engine)->List(filter);
      ASSERT_TRUE(page.ok()) << page.status();
      for (Task& task : page->tasks) tasks.push_back(std::move(task));
      filter.after_id = page->next_cursor;
    } while (filter.after_id != 0);
    for (const Task& task : tasks) {
      tasks_by_key[task.idempotency_key()].push_back(&task);
    }

    EXPECT_EQ(tasks.size(), kJobs);
    for (uint64_t job = 1; job <= kJobs; ++job) {
      const std::string key = absl::StrCat("job-", job);
      auto it = tasks_by_key.find(key);
      if (it == tasks_by_key.end()) {
        ADD_FAILURE() << key << " was never submitted";
        continue;
      }
      ASSERT_EQ(it->second.size(), 1u) << key << " names several tasks";
      EXPECT_EQ(it->second[0]->status(), COMPLETED)
          << key << ": " << it->second[0]->DebugString();
      tasks_by_key.erase(it);
    }
    for (const auto& [key, unexpected] : tasks_by_key) {
      ADD_FAILURE() << "unexpected task key " << key;
    }

    absl::StatusOr<EngineStats> stats = (*engine)->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->submitted, kJobs);
    EXPECT_EQ(stats->completed, kJobs);
    EXPECT_EQ(stats->completions, kJobs);
    EXPECT_EQ(stats->pending + stats->claimed + stats->failed, 0u);
    EXPECT_TRUE((*engine)->Close().ok());
  }

  static constexpr uint64_t kJobs = 60;
  std::string root_;
  std::string data_dir_;
  std::string metrics_file_;
};

TEST_F(DaemonTest, SigtermShutsDownCleanlyAndRestartFinishesEveryJobOnce) {
  {
    DaemonProcess daemon;
    std::vector<std::string> flags = CommonFlags();
    // Jobs long enough to heartbeat (every 200 ms) and a deadline short
    // enough that some are still running when it passes and get released.
    flags.insert(flags.end(),
                 {"--task_ms=400", "--lease_ms=600",
                  "--shutdown_deadline_ms=100", "--sync_mode=always"});
    ASSERT_TRUE(daemon.Start(flags, root_ + "/first.log").ok());
    WaitForCompletions(daemon, 3);
    daemon.Signal(SIGTERM);
    const absl::StatusOr<int> exit = daemon.WaitForExit(kExitTimeout);
    daemon.ShowLog();
    const std::string log = daemon.Log();
    ASSERT_TRUE(exit.ok()) << exit.status() << "\n" << log;
    EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0)
        << "wait status " << *exit << "\n"
        << log;
    for (absl::string_view line :
         {"new data directory", "received SIGTERM", "producers stopped",
          "snapshot written", "engine closed"}) {
      EXPECT_TRUE(absl::StrContains(log, line)) << line << "\n" << log;
    }

    const std::string metrics = ReadFile(metrics_file_);
    for (absl::string_view status :
         {"pending", "claimed", "completed", "failed", "cancelled"}) {
      EXPECT_TRUE(absl::StrContains(
          metrics, absl::StrCat("\ntaskwal_tasks{status=\"", status, "\"} ")))
          << metrics;
    }
    for (absl::string_view name :
         {"taskwal_submitted_total", "taskwal_completions_total",
          "taskwal_fsyncs_total", "taskwal_last_lsn"}) {
      EXPECT_TRUE(MetricValue(metrics, name).has_value()) << name << metrics;
    }
    // The file is replaced whole, so no temp file remains beside it.
    EXPECT_FALSE(std::filesystem::exists(metrics_file_ + ".tmp"));
  }

  std::string log;
  DrainWithRestart("restart.log", &log);
  EXPECT_TRUE(absl::StrContains(log, "recovered in")) << log;
  // Where the first run stopped submitting depends on timing; that the
  // restart did not start over does not.
  EXPECT_NE(ResumedAt(log), 1u) << log;
  EXPECT_TRUE(absl::StrContains(log, "idle:")) << log;
  ExpectEveryJobCompletedOnce();
  // The final metrics, written just before Close, show the finished state.
  EXPECT_EQ(MetricValue(ReadFile(metrics_file_), "taskwal_completions_total"),
            kJobs);
}

TEST_F(DaemonTest, SigkillMidWorkLosesNothingAndDuplicatesNothing) {
  {
    DaemonProcess daemon;
    std::vector<std::string> flags = CommonFlags();
    flags.insert(flags.end(),
                 {"--task_ms=200", "--lease_ms=600", "--sync_mode=interval"});
    ASSERT_TRUE(daemon.Start(flags, root_ + "/first.log").ok());
    WaitForCompletions(daemon, 5);
    daemon.Signal(SIGKILL);
    const absl::StatusOr<int> exit = daemon.WaitForExit(kExitTimeout);
    daemon.ShowLog();
    ASSERT_TRUE(exit.ok()) << exit.status();
    ASSERT_TRUE(WIFSIGNALED(*exit) && WTERMSIG(*exit) == SIGKILL)
        << "wait status " << *exit << "\n"
        << daemon.Log();
  }

  // Jobs the dead workers held come back when their leases run out.
  std::string log;
  DrainWithRestart("restart.log", &log);
  EXPECT_TRUE(absl::StrContains(log, "recovered in")) << log;
  EXPECT_NE(ResumedAt(log), 1u) << log;
  ExpectEveryJobCompletedOnce();
}

// Concurrent producers can leave a gap when the process dies: job-8
// acknowledged, job-6 and job-7 still in flight. The restart must submit the
// gap, not only what comes after the highest key.
TEST_F(DaemonTest, RestartSubmitsJobsACrashLeftUnsubmitted) {
  {
    EngineOptions options;
    options.data_dir = data_dir_;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (uint64_t job : {1, 2, 3, 4, 5, 8}) {
      TaskSpec spec;
      spec.idempotency_key = absl::StrCat("job-", job);
      spec.type = "simulated_job";
      spec.payload = absl::StrCat("{\"job\": ", job, "}");
      ASSERT_TRUE((*engine)->Submit(spec).ok());
    }
    ASSERT_TRUE((*engine)->Close().ok());
  }
  DaemonProcess daemon;
  ASSERT_TRUE(
      daemon
          .Start({absl::StrCat("--data_dir=", data_dir_),
                  absl::StrCat("--max_tasks_to_submit=", kJobs),
                  "--submit_interval_ms=0", "--task_ms=0", "--exit_when_idle"},
                 root_ + "/gap.log")
          .ok());
  const absl::StatusOr<int> exit = daemon.WaitForExit(kDrainTimeout);
  daemon.ShowLog();
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0)
      << "wait status " << *exit;
  EXPECT_TRUE(absl::StrContains(
      daemon.Log(),
      "producers resume at job-9, after 2 job(s) a crash left unsubmitted "
      "(first: job-6)"))
      << daemon.Log();
  ExpectEveryJobCompletedOnce();
}

// --exit_when_idle waits for the daemon's own work only: a PENDING task of
// a type it does not run (another program's) neither keeps it running nor
// gets touched.
TEST_F(DaemonTest, ExitWhenIdleIgnoresPendingTasksOfOtherTypes) {
  constexpr uint64_t kOwnJobs = 12;
  {
    EngineOptions options;
    options.data_dir = data_dir_;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    TaskSpec spec;
    spec.idempotency_key = "report-1";
    spec.type = "nightly_report";
    ASSERT_TRUE((*engine)->Submit(spec).ok());
    ASSERT_TRUE((*engine)->Close().ok());
  }
  DaemonProcess daemon;
  ASSERT_TRUE(daemon
                  .Start({absl::StrCat("--data_dir=", data_dir_),
                          absl::StrCat("--max_tasks_to_submit=", kOwnJobs),
                          "--submit_interval_ms=0", "--task_ms=0",
                          "--fail_every=5", "--exit_when_idle"},
                         root_ + "/other_types.log")
                  .ok());
  // Without the fix the daemon never exits; the timeout ends the test.
  const absl::StatusOr<int> exit = daemon.WaitForExit(kDrainTimeout);
  daemon.ShowLog();
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0)
      << "wait status " << *exit;
  EXPECT_TRUE(absl::StrContains(daemon.Log(), "idle:")) << daemon.Log();

  EngineOptions options;
  options.data_dir = data_dir_;
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  // Its own jobs are all done, the retried ones included.
  for (uint64_t job = 1; job <= kOwnJobs; ++job) {
    absl::StatusOr<Task> task =
        (*engine)->GetByIdempotencyKey(absl::StrCat("job-", job));
    ASSERT_TRUE(task.ok()) << "job-" << job << ": " << task.status();
    EXPECT_EQ(task->status(), COMPLETED) << task->DebugString();
  }
  absl::StatusOr<Task> other = (*engine)->GetByIdempotencyKey("report-1");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->status(), PENDING);
  EXPECT_EQ(other->attempts(), 0u);
  absl::StatusOr<EngineStats> stats = (*engine)->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pending, 1u);
  EXPECT_EQ(stats->claimed, 0u);
  EXPECT_EQ(stats->completed, kOwnJobs);
  EXPECT_TRUE((*engine)->Close().ok());
}

TEST_F(DaemonTest, MissingDataDirIsAUsageError) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start({}, root_ + "/usage.log").ok());
  const absl::StatusOr<int> exit = daemon.WaitForExit(kExitTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 2)
      << "wait status " << *exit << "\n"
      << daemon.Log();
  EXPECT_TRUE(absl::StrContains(daemon.Log(), "--data_dir is required"));
}

}  // namespace
}  // namespace taskwal::examples
