// A long-running daemon that embeds taskwal the way a real service does:
// producer threads submit jobs, a taskwal::WorkerPool runs them, and the
// main thread writes metrics and handles SIGTERM/SIGINT.
//
//   bazel run //examples:daemon -- --data_dir=/tmp/taskwal-daemon
//       --metrics_file=/tmp/taskwal-daemon.prom      (one command line)
//
// Stop it with Ctrl-C, `kill <pid>` or `kill -9 <pid>`, and start it again
// with the same --data_dir: it carries on where it stopped, because
//
//   - job n is submitted under the idempotency key "job-<n>", and on start
//     the daemon asks the engine which keys exist: a restart neither skips
//     a job nor creates one twice;
//   - a claim has a lease: when the process dies mid-job, the lease runs out
//     and the task is PENDING again. Jobs run at least once and complete
//     exactly once, so a handler must tolerate being redone;
//   - a graceful shutdown stops the producers, gives running jobs a deadline
//     (WorkerPool::Stop hands back whatever still runs then, so the next run
//     starts it at once instead of waiting out its lease), then Snapshot()
//     (a fast next start) and Close() (everything durable).
//
// Only public headers (taskwal/...) are used, as in any embedder's program.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/metrics.h"
#include "taskwal/task.pb.h"
#include "taskwal/worker_pool.h"

ABSL_FLAG(std::string, data_dir, "",
          "Required. The engine's directory; created if missing. One daemon "
          "at a time: a second one fails to open it.");
ABSL_FLAG(uint32_t, producers, 2, "Threads submitting jobs.");
ABSL_FLAG(uint32_t, workers, 4, "Worker pool threads running jobs.");
ABSL_FLAG(std::string, sync_mode, "always",
          "always | interval | none (README.md, \"Durability\").");
ABSL_FLAG(uint32_t, task_ms, 100, "Simulated work per job, in milliseconds.");
ABSL_FLAG(uint32_t, lease_ms, 3000,
          "Claim lease, renewed every lease/3 while a job runs. A job whose "
          "process died is claimable again this long after its last renewal.");
ABSL_FLAG(uint32_t, shutdown_deadline_ms, 5000,
          "On SIGTERM/SIGINT, how long running jobs may take to finish before "
          "they are handed back to PENDING for the next run.");
ABSL_FLAG(std::string, metrics_file, "",
          "If set, the engine's metrics in the Prometheus text format are "
          "written here every second (temp file + rename).");
ABSL_FLAG(uint64_t, max_tasks_to_submit, 0,
          "Submit jobs job-1 .. job-N, counted across restarts, then stop "
          "submitting. 0: submit forever.");
ABSL_FLAG(bool, exit_when_idle, false,
          "Shut down once every job up to --max_tasks_to_submit is submitted "
          "and no simulated_job task is pending (even waiting out a backoff) "
          "or running. Tasks of other types do not count (for tests).");
ABSL_FLAG(uint32_t, submit_interval_ms, 100,
          "Pause of each producer between two submits.");
ABSL_FLAG(uint32_t, fail_every, 10,
          "Job n fails its first attempt with a simulated temporary error "
          "when n is a multiple of this (0: never); it is retried later.");

namespace taskwal::examples {
namespace {

constexpr absl::string_view kJobType = "simulated_job";
constexpr absl::string_view kJobKeyPrefix = "job-";

// One line on stdout, prefixed with the time since the daemon started.
void Say(absl::string_view line) {
  static const absl::Time start = absl::Now();
  std::printf("[%7.3fs] %s\n", absl::ToDoubleSeconds(absl::Now() - start),
              std::string(line).c_str());
  std::fflush(stdout);
}

// The job number of a "job-<n>" key, or nullopt for any other key.
std::optional<uint64_t> JobNumber(absl::string_view key) {
  uint64_t job = 0;
  if (!absl::ConsumePrefix(&key, kJobKeyPrefix) ||
      !absl::SimpleAtoi(key, &job) || job == 0) {
    return std::nullopt;
  }
  return job;
}

TaskSpec JobSpec(uint64_t job) {
  TaskSpec spec;
  spec.idempotency_key = absl::StrCat(kJobKeyPrefix, job);
  spec.type = std::string(kJobType);
  // Deterministic in the job number: resubmitting a key with a different
  // payload would be kAlreadyExists, not a deduplicated submit.
  spec.payload = absl::StrCat("{\"job\": ", job, "}");
  spec.max_attempts = 5;  // Outlives a simulated error and a crash or two.
  return spec;
}

// The handler of simulated_job tasks, called on a pool thread. The pool
// renews the claim's lease while it runs, then completes the task with the
// string it returns, or fails the attempt with the error it returns.
struct SimulatedJob {
  absl::Duration work;
  uint64_t fail_every = 0;

  absl::StatusOr<std::string> operator()(const Task& task,
                                         HandlerContext& context) const {
    // Work that stops when the pool cancels it (Stop's deadline passed, or
    // the claim was lost): a result returned then would not be stored.
    if (context.WaitForCancellation(work)) {
      return absl::CancelledError("handed back at the shutdown deadline");
    }
    const uint64_t job = JobNumber(task.idempotency_key()).value_or(0);
    if (fail_every != 0 && job % fail_every == 0 && context.attempt() == 1) {
      // Sooner than the retry policy's backoff (1 s, doubling): this error
      // knows when trying again makes sense.
      context.RetryAfter(absl::Milliseconds(200));
      return absl::UnavailableError("simulated temporary error");
    }
    return absl::StrCat("done by ", context.claim().worker_id, ", attempt ",
                        context.attempt());
  }
};

// Threads that each submit the next job every `interval` until every job up
// to `last` is submitted, or Stop. Thread safety: Done and error may be
// called from any thread, the rest from one.
class Producers {
 public:
  // Finds which jobs `engine` already has; `last` 0 means no end.
  // `engine` is borrowed and must outlive the Producers.
  //
  // Producers submit concurrently, so a crash can land after job-8 was
  // acknowledged but before job-7 was: resuming at "highest + 1" would skip
  // job-7 forever. Looking at every key is exact, given that finished tasks
  // are kept (EngineOptions::retention is zero).
  absl::Status Resume(Engine* engine, uint64_t last) {
    engine_ = engine;
    last_ = last;
    std::vector<bool> present;  // Indexed by job number.
    ListFilter filter;
    filter.limit = 10000;
    do {
      absl::StatusOr<ListPage> page = engine->List(filter);
      if (!page.ok()) return page.status();
      for (const Task& task : page->tasks) {
        const std::optional<uint64_t> job = JobNumber(task.idempotency_key());
        if (!job) continue;
        if (*job >= present.size()) present.resize(*job + 1, false);
        present[*job] = true;
      }
      filter.after_id = page->next_cursor;
    } while (filter.after_id != 0);
    for (uint64_t job = 1; job < present.size(); ++job) {
      if (!present[job] && (last == 0 || job <= last)) missing_.push_back(job);
    }
    next_fresh_ = std::max<uint64_t>(present.size(), 1);
    if (missing_.empty() && last != 0 && next_fresh_ > last) {
      Say(absl::StrCat("all ", last, " jobs already submitted"));
    } else if (missing_.empty()) {
      Say(absl::StrCat("producers resume at job-", next_fresh_));
    } else {
      Say(absl::StrCat("producers resume at job-", next_fresh_, ", after ",
                       missing_.size(),
                       " job(s) a crash left unsubmitted (first: job-",
                       missing_.front(), ")"));
    }
    return absl::OkStatus();
  }

  void Start(uint32_t threads, absl::Duration interval) {
    running_ = threads;
    for (uint32_t i = 0; i < threads; ++i) {
      threads_.emplace_back([this, interval] { Produce(interval); });
    }
  }

  // True once every producer finished: each job handed out is submitted.
  bool Done() const { return running_.load() == 0; }

  // The first Submit error, or OK.
  absl::Status error() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    return error_;
  }

  void Stop() {
    stop_.Notify();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Produce(absl::Duration interval) ABSL_LOCKS_EXCLUDED(mu_) {
    // Stop is checked before taking a number, and a number taken is always
    // submitted: a graceful shutdown leaves no gap for the restart to fill.
    while (!stop_.HasBeenNotified()) {
      // The i-th number handed out: the missing jobs first, then fresh ones.
      const uint64_t i = handed_out_.fetch_add(1);
      const uint64_t job = i < missing_.size()
                               ? missing_[i]
                               : next_fresh_ + (i - missing_.size());
      if (last_ != 0 && job > last_) break;
      // A key that exists returns its task rather than a second one:
      // Resume makes that rare, the engine makes it harmless.
      const absl::Status s = engine_->Submit(JobSpec(job)).status();
      if (!s.ok()) {
        absl::MutexLock l(&mu_);
        if (error_.ok()) error_ = s;
        break;
      }
      stop_.WaitForNotificationWithTimeout(interval);
    }
    running_.fetch_sub(1);
  }

  // Set by Resume, before the threads start.
  Engine* engine_ = nullptr;
  uint64_t last_ = 0;
  std::vector<uint64_t> missing_;  // Ascending.
  uint64_t next_fresh_ = 1;

  std::atomic<uint64_t> handed_out_{0};
  std::atomic<uint32_t> running_{0};
  absl::Notification stop_;
  std::vector<std::thread> threads_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

// True once the producers are done and no task of the type this daemon
// handles is pending (due or not) or claimed; other types do not count, as
// the pool never claims them. Stats() does not count per type, so List()
// looks for one task of the type in each status. A task can move between
// the two looks (CLAIMED, then PENDING again after a failed attempt) and be
// missed by both, so they count only if no transition happened meanwhile.
bool Idle(Engine& engine, const Producers& producers) {
  if (!producers.Done()) return false;
  const absl::StatusOr<EngineStats> before = engine.Stats();
  if (!before.ok()) return false;
  for (TaskStatus status : {PENDING, CLAIMED}) {
    ListFilter filter;
    filter.status = status;
    filter.type = std::string(kJobType);
    filter.limit = 1;
    const absl::StatusOr<ListPage> page = engine.List(filter);
    if (!page.ok() || !page->tasks.empty()) return false;
  }
  const absl::StatusOr<EngineStats> after = engine.Stats();
  return after.ok() && after->transitions == before->transitions;
}

// Writes the metrics file, whole: a reader sees the old file or the new
// one, never half of one. No fsync: metrics need not be durable.
absl::Status WriteMetrics(Engine& engine, const std::string& path) {
  const absl::StatusOr<EngineStats> stats = engine.Stats();
  if (!stats.ok()) return stats.status();
  const std::string temp = path + ".tmp";
  std::ofstream out(temp, std::ios::trunc);
  out << RenderPrometheus(*stats, engine.Recovery(), absl::Now());
  out.close();
  if (!out || std::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

int Main() {
  const std::string sync_mode = absl::GetFlag(FLAGS_sync_mode);
  const char* usage = nullptr;
  if (absl::GetFlag(FLAGS_data_dir).empty()) {
    usage = "--data_dir is required";
  } else if (absl::GetFlag(FLAGS_workers) == 0) {
    usage = "--workers must be at least 1";
  } else if (sync_mode != "always" && sync_mode != "interval" &&
             sync_mode != "none") {
    usage = "--sync_mode must be always, interval or none";
  } else if (absl::GetFlag(FLAGS_exit_when_idle) &&
             absl::GetFlag(FLAGS_producers) > 0 &&
             absl::GetFlag(FLAGS_max_tasks_to_submit) == 0) {
    usage = "--exit_when_idle needs --max_tasks_to_submit";
  }
  if (usage != nullptr) {
    std::fprintf(stderr, "daemon: %s\n", usage);
    return 2;
  }

  // SIGTERM and SIGINT are blocked before any thread exists (Open starts
  // one), so every thread inherits the mask and the signals wait for the
  // main loop's sigtimedwait: no signal handler, so nothing needs to be
  // async-signal-safe. A second signal changes nothing: the shutdown
  // deadline bounds it, and kill -9 is the hard stop a restart recovers.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Say(absl::StrCat("daemon pid ", ::getpid(), " starting"));
  EngineOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.sync_mode = sync_mode == "always"     ? SyncMode::kAlways
                      : sync_mode == "interval" ? SyncMode::kInterval
                                                : SyncMode::kNone;
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
  if (!opened.ok()) {
    // kUnavailable: another daemon holds the directory; kDataLoss: damage
    // an operator must look at (see EngineOptions::salvage).
    Say(absl::StrCat("cannot open the engine: ", opened.status().ToString()));
    return 1;
  }
  Engine& engine = **opened;  // Closed below, or by ~Engine on an error.

  // Tasks CLAIMED by a run that died need nothing from us: they become
  // PENDING when their leases run out.
  const RecoveryReport& recovery = engine.Recovery();
  Say(recovery.last_lsn == 0
          ? "new data directory: nothing to recover"
          : absl::StrFormat("recovered in %s: %d records, %d replayed after "
                            "the snapshot, %d torn bytes cut",
                            absl::FormatDuration(recovery.duration),
                            recovery.last_lsn, recovery.records_replayed,
                            recovery.truncated_bytes));
  for (const std::string& note : recovery.notes) Say(note);
  Producers producers;
  if (absl::Status s =
          producers.Resume(&engine, absl::GetFlag(FLAGS_max_tasks_to_submit));
      !s.ok()) {
    Say(absl::StrCat("cannot list the jobs: ", s.ToString()));
    return 1;
  }

  // The workers: a handler per task type this daemon runs. Worker ids name
  // the process, so that a task's history tells runs apart.
  WorkerPoolOptions pool_options;
  pool_options.threads = absl::GetFlag(FLAGS_workers);
  pool_options.worker_id_prefix = absl::StrCat("pid", ::getpid());
  pool_options.lease = absl::Milliseconds(absl::GetFlag(FLAGS_lease_ms));
  WorkerPool pool(&engine, pool_options);
  absl::Status started = pool.Register(
      std::string(kJobType),
      SimulatedJob{absl::Milliseconds(absl::GetFlag(FLAGS_task_ms)),
                   absl::GetFlag(FLAGS_fail_every)});
  if (started.ok()) started = pool.Start();
  if (!started.ok()) {
    Say(absl::StrCat("cannot start the workers: ", started.ToString()));
    return 1;
  }

  // Metrics are not worth stopping the job engine for: a failure is said
  // once, not every second.
  const std::string metrics_file = absl::GetFlag(FLAGS_metrics_file);
  bool metrics_ok = true;
  auto write_metrics = [&] {
    if (metrics_file.empty()) return;
    const absl::Status s = WriteMetrics(engine, metrics_file);
    if (!s.ok() && metrics_ok) Say(absl::StrCat("metrics: ", s.ToString()));
    metrics_ok = s.ok();
  };
  write_metrics();  // The file exists from the start.
  producers.Start(absl::GetFlag(FLAGS_producers),
                  absl::Milliseconds(absl::GetFlag(FLAGS_submit_interval_ms)));
  Say("running; SIGTERM or SIGINT shuts down gracefully");

  // The main thread only supervises: once a second, or at a signal.
  const timespec one_second = {1, 0};
  while (true) {
    const int signal = ::sigtimedwait(&signals, nullptr, &one_second);
    if (signal > 0) {
      Say(absl::StrCat("received ", signal == SIGTERM ? "SIGTERM" : "SIGINT",
                       ": shutting down"));
      break;
    }
    write_metrics();
    // A failed write or fsync is sticky: the engine takes no more writes.
    // The pool goes on past engine errors, so the daemon has to look.
    absl::Status health = engine.Health();
    if (health.ok()) health = producers.error();
    if (!health.ok()) {
      Say(absl::StrCat("error, shutting down: ", health.ToString()));
      break;
    }
    if (absl::GetFlag(FLAGS_exit_when_idle) && Idle(engine, producers)) {
      Say(absl::StrCat("idle: every job is submitted and no ", kJobType,
                       " task is pending or running; shutting down"));
      break;
    }
  }

  // Graceful shutdown: no new jobs; running ones get a deadline, and what
  // still runs then goes back to PENDING instead of waiting out its lease.
  producers.Stop();
  const absl::Duration deadline =
      absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_deadline_ms));
  Say(absl::StrCat("shutdown: producers stopped; running jobs have ",
                   absl::FormatDuration(deadline), " to finish"));
  absl::Status result = pool.Stop(absl::Now() + deadline);
  const WorkerPoolStats pool_stats = pool.Stats();
  Say(absl::StrFormat(
      "shutdown: workers stopped: %d attempts run, %d failed, %d handed back",
      pool_stats.handled, pool_stats.failed, pool_stats.released));
  // The next Open loads the snapshot instead of replaying the whole log.
  // Not fatal if it fails: the log alone recovers everything.
  const absl::Status snapshot = engine.Snapshot();
  Say(snapshot.ok()
          ? "shutdown: snapshot written"
          : absl::StrCat("shutdown: no snapshot: ", snapshot.ToString()));
  write_metrics();  // The final state.
  for (const absl::Status& s : {engine.Close(), producers.error()}) {
    if (result.ok()) result = s;
  }
  if (!result.ok()) {
    Say(absl::StrCat("shutdown: ", result.ToString()));
    return 1;
  }
  Say("shutdown: engine closed, everything durable; exit 0");
  return 0;
}

}  // namespace
}  // namespace taskwal::examples

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "An example daemon embedding taskwal. Usage: daemon --data_dir=DIR "
      "[--metrics_file=FILE] [flags]");
  absl::ParseCommandLine(argc, argv);
  return taskwal::examples::Main();
}
