// A small long-running daemon that embeds taskwal the way a real service
// does: producer threads submit jobs, worker threads claim and run them, a
// supervising main thread publishes metrics and handles SIGTERM/SIGINT.
//
//   bazel run //examples:daemon -- --data_dir=/tmp/taskwal-daemon
//       --metrics_file=/tmp/taskwal-daemon.prom      (one command line)
//
// Stop it with Ctrl-C or `kill <pid>`, or `kill -9` it, and start it again
// with the same --data_dir: it carries on where it stopped. What makes that
// work, and what this file means to show:
//
//   - Idempotency keys. Job n is submitted under the key "job-<n>". On start
//     the daemon asks the engine which jobs exist, so a restart neither skips
//     a job nor creates one twice: a key always names one task.
//   - Claims and leases. A worker holds a claim token; only that claim can
//     complete or fail the task. When the process dies mid-task, the claim's
//     lease runs out and the engine makes the task PENDING again, so the next
//     run redoes it. Work is therefore done at least once and completed
//     exactly once: a real job must tolerate being redone after a crash.
//   - Graceful shutdown. Stop claiming, give running work a deadline, hand
//     back (Retry) whatever is still running at the deadline so the next run
//     starts it at once instead of waiting for its lease, then Snapshot()
//     (a fast next start) and Close() (everything durable).
//
// Only api/ headers are used, as in any embedder's program.

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
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
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/metrics.h"
#include "taskwal/task.pb.h"

ABSL_FLAG(std::string, data_dir, "",
          "Required. The engine's directory (log and snapshots); created if "
          "missing. One daemon at a time: a second one fails to open it.");
ABSL_FLAG(int, producers, 2, "Threads submitting jobs.");
ABSL_FLAG(int, workers, 4, "Threads claiming and running jobs.");
ABSL_FLAG(std::string, sync_mode, "always",
          "always | interval | none: when an engine call returns relative to "
          "the fdatasync of its record (README.md, \"Durability\").");
ABSL_FLAG(int, task_ms, 100, "Simulated work per job, in milliseconds.");
ABSL_FLAG(int, lease_ms, 3000,
          "Claim lease. A job running longer heartbeats every lease/3; a job "
          "whose worker died is claimable again this long after its last "
          "heartbeat.");
ABSL_FLAG(int, shutdown_deadline_ms, 5000,
          "On SIGTERM/SIGINT, how long running jobs may take to finish before "
          "they are handed back to PENDING for the next run.");
ABSL_FLAG(std::string, metrics_file, "",
          "If set, the Prometheus text exposition of the engine's metrics is "
          "written here every second (atomically: temp file + rename).");
ABSL_FLAG(int64_t, max_tasks_to_submit, 0,
          "Submit jobs job-1 .. job-N, counted across restarts, then stop "
          "submitting. 0: submit forever.");
ABSL_FLAG(bool, exit_when_idle, false,
          "Shut down once every job up to --max_tasks_to_submit is submitted "
          "and no task of the type this daemon runs (simulated_job) is "
          "pending or running; a pending one counts even while it waits out "
          "a retry backoff. Tasks of other types, which this daemon never "
          "claims, do not keep it running (for tests).");
ABSL_FLAG(int, submit_interval_ms, 100,
          "Pause of each producer between two submits: the simulated arrival "
          "rate of new jobs.");
ABSL_FLAG(int, fail_every, 10,
          "Job n fails its first attempt with a simulated temporary error "
          "when n is a multiple of this (0: never); the engine retries it "
          "after a backoff.");

namespace taskwal::examples {
namespace {

constexpr absl::string_view kJobType = "simulated_job";
constexpr absl::string_view kJobKeyPrefix = "job-";
// Enough attempts to outlive a simulated error plus a crash or two.
constexpr uint32_t kMaxAttempts = 5;
// How long an idle worker waits in ClaimNext. It bounds how late a worker
// notices shutdown; waiting itself costs nothing (the engine wakes the
// worker when a task becomes ready, it does not poll).
constexpr absl::Duration kClaimWait = absl::Milliseconds(250);
constexpr absl::Duration kSummaryInterval = absl::Seconds(1);

// When the daemon started; the first call (early in Main) fixes it.
absl::Time StartTime() {
  static const absl::Time start = absl::Now();
  return start;
}

// One lifecycle line on stdout, prefixed with the time since start. Only the
// main thread prints: workers and producers report through Daemon's state,
// so a busy daemon prints a summary a second, not a line per job.
void Say(absl::string_view line) {
  const std::string out = absl::StrFormat(
      "[%7.3fs] %s\n", absl::ToDoubleSeconds(absl::Now() - StartTime()), line);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

std::string JobKey(uint64_t job) { return absl::StrCat(kJobKeyPrefix, job); }

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
  spec.idempotency_key = JobKey(job);
  spec.type = std::string(kJobType);
  // Deterministic in the job number: resubmitting a key with a different
  // payload would be kAlreadyExists, not a deduplicated submit.
  spec.payload = absl::StrCat("{\"job\": ", job, "}");
  spec.max_attempts = kMaxAttempts;
  // Short backoff so a simulated error is retried within the demo's
  // attention span; a real job would keep the default (1 s doubling to 5 min).
  RetryPolicy retry;
  retry.set_initial_backoff_micros(200000);
  retry.set_max_backoff_micros(5000000);
  retry.set_multiplier(2.0);
  retry.set_jitter(0.2);
  spec.retry_policy = retry;
  return spec;
}

// Hands out job numbers to the producers: first the numbers missing below
// the highest job already submitted, then fresh ones. Safe for concurrent
// use.
//
// Why missing numbers exist at all: producers submit concurrently, so a
// crash can land after job-8 was acknowledged but before job-7 was. A
// counter resumed at "highest + 1" (or at Stats().submitted + 1) would skip
// job-7 forever. Asking the engine which keys exist is exact.
class JobSequence {
 public:
  // `missing` in ascending order; `last` 0 means unbounded.
  JobSequence(std::vector<uint64_t> missing, uint64_t next_fresh, uint64_t last)
      : last_(last),
        missing_(missing.rbegin(), missing.rend()),
        next_fresh_(next_fresh) {}
  JobSequence(const JobSequence&) = delete;
  JobSequence& operator=(const JobSequence&) = delete;

  // The next job to submit, or nullopt once every job up to `last` is
  // handed out.
  std::optional<uint64_t> Next() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (!missing_.empty()) {
      const uint64_t job = missing_.back();
      missing_.pop_back();
      return job;
    }
    if (last_ != 0 && next_fresh_ > last_) return std::nullopt;
    return next_fresh_++;
  }

 private:
  const uint64_t last_;
  absl::Mutex mu_;
  std::vector<uint64_t> missing_ ABSL_GUARDED_BY(mu_);  // Next one last.
  uint64_t next_fresh_ ABSL_GUARDED_BY(mu_);
};

struct ResumePoint {
  std::vector<uint64_t> missing;  // Ascending.
  uint64_t next_fresh = 1;
};

// Pages through every task once. This is O(tasks) at start, next to the
// O(log) replay Open has just done. It is exact because this daemon keeps
// finished tasks (EngineOptions::retention is zero): with retention, old
// keys are deleted and would look missing, so a daemon using retention
// keeps its high-water mark elsewhere (in its own records, or in the
// payload of a marker task).
absl::StatusOr<ResumePoint> FindResumePoint(Engine& engine, uint64_t last) {
  std::vector<bool> present;  // Indexed by job number.
  ListFilter filter;
  filter.limit = 10000;
  do {
    absl::StatusOr<ListPage> page = engine.List(filter);
    if (!page.ok()) return page.status();
    for (const Task& task : page->tasks) {
      const std::optional<uint64_t> job = JobNumber(task.idempotency_key());
      if (!job) continue;
      if (*job >= present.size()) present.resize(*job + 1, false);
      present[*job] = true;
    }
    filter.after_id = page->next_cursor;
  } while (filter.after_id != 0);

  ResumePoint resume;
  resume.next_fresh = std::max<uint64_t>(present.size(), 1);
  for (uint64_t job = 1; job < present.size(); ++job) {
    if (!present[job] && (last == 0 || job <= last)) {
      resume.missing.push_back(job);
    }
  }
  return resume;
}

// Writes contents to path so that a reader sees the old file or the new one,
// never a half-written one. No fsync: a metrics file must be whole, not
// durable.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents) {
  const std::string temp = absl::StrCat(path, ".tmp");
  const int fd =
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("open ", temp, ": ", std::strerror(errno)));
  }
  while (!contents.empty()) {
    const ssize_t n = ::write(fd, contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return absl::UnavailableError(
          absl::StrCat("write ", temp, ": ", std::strerror(error)));
    }
    contents.remove_prefix(static_cast<size_t>(n));
  }
  if (::close(fd) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("close/rename ", temp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

struct DaemonConfig {
  int producers = 0;
  int workers = 0;
  absl::Duration task_time;
  absl::Duration lease;
  absl::Duration shutdown_deadline;
  absl::Duration submit_interval;
  uint64_t fail_every = 0;
  std::string metrics_file;
};

// The daemon's threads around one engine. Start() once, then Shutdown()
// once, both from the main thread; Idle() and Fatal() may be called from any
// thread.
//
// Lock order: mu_ is never held across an engine call, so there is none to
// state.
class Daemon {
 public:
  // `engine` is borrowed and must outlive the Daemon.
  Daemon(Engine* engine, DaemonConfig config, JobSequence* jobs)
      : engine_(engine),
        config_(std::move(config)),
        jobs_(jobs),
        worker_prefix_(absl::StrCat("pid", ::getpid(), "-worker-")),
        in_flight_(static_cast<size_t>(config_.workers)) {}
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  void Start() {
    producers_running_ = config_.producers;
    for (int i = 0; i < config_.producers; ++i) {
      producers_.emplace_back([this] { ProducerLoop(); });
    }
    {
      absl::MutexLock l(&mu_);
      workers_running_ = config_.workers;
    }
    for (int i = 0; i < config_.workers; ++i) {
      workers_.emplace_back([this, i] { WorkerLoop(i); });
    }
  }

  // True once every producer is done and no task of kJobType is pending
  // (due or not) or claimed. Other types do not count: this daemon never
  // claims them. Producers are checked first: a job they submitted is
  // visible to the calls that follow.
  //
  // Stats() counts statuses but not per type, so List() looks for one task
  // of the type in each status. A task can move between the two looks
  // (CLAIMED, then PENDING again after a failed attempt) and be missed by
  // both, so the looks count only if no transition happened around them:
  // Stats().transitions, read before and after, is then unchanged.
  bool Idle() {
    if (producers_running_.load() > 0) return false;
    const absl::StatusOr<EngineStats> before = engine_->Stats();
    if (!before.ok()) return false;
    for (TaskStatus status : {PENDING, CLAIMED}) {
      ListFilter filter;
      filter.status = status;
      filter.type = std::string(kJobType);
      filter.limit = 1;
      const absl::StatusOr<ListPage> page = engine_->List(filter);
      if (!page.ok() || !page->tasks.empty()) return false;
    }
    const absl::StatusOr<EngineStats> after = engine_->Stats();
    return after.ok() && after->transitions == before->transitions;
  }

  // The first unexpected engine error any thread met, or OK. Such an error
  // is the engine's sticky journal failure: nothing more can be recorded,
  // so the daemon stops.
  absl::Status Fatal() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    return fatal_;
  }

  // Stops producers and workers as described at the top of this file.
  // Returns the first error of a step that failed (every step still runs).
  absl::Status Shutdown() ABSL_LOCKS_EXCLUDED(mu_) {
    stopping_.Notify();
    for (std::thread& t : producers_) t.join();
    Say("shutdown: producers stopped, workers claim no new jobs");

    bool finished;
    {
      absl::MutexLock l(&mu_);
      Say(absl::StrFormat(
          "shutdown: waiting up to %s for %d running job(s) to finish",
          absl::FormatDuration(config_.shutdown_deadline),
          InFlightCountLocked()));
      finished = mu_.AwaitWithTimeout(
          absl::Condition(
              +[](int* running) { return *running == 0; }, &workers_running_),
          config_.shutdown_deadline);
    }
    // Past the deadline, running jobs are abandoned: their workers stop
    // working and leave their claims in in_flight_ (a real job would take a
    // cancellation token for this).
    if (!finished) abandon_.Notify();
    for (std::thread& t : workers_) t.join();
    Say(finished ? "shutdown: workers done, running jobs finished in time"
                 : "shutdown: deadline reached, running jobs abandoned");

    // Only this thread is left, so in_flight_ now lists exactly the claims
    // still held: abandoned jobs, and claims a worker got while shutdown
    // began. Retry hands each back to PENDING at once; without it the next
    // run would wait for the lease to run out.
    std::vector<ClaimedTask> still_held;
    {
      absl::MutexLock l(&mu_);
      for (std::optional<ClaimedTask>& claim : in_flight_) {
        if (claim) still_held.push_back(*std::move(claim));
        claim.reset();
      }
    }
    absl::Status result = Fatal();
    std::vector<std::string> released;
    for (const ClaimedTask& claim : still_held) {
      const absl::Status s = engine_->Retry(claim.task.id());
      if (s.ok()) {
        released.push_back(claim.task.idempotency_key());
      } else {
        Say(absl::StrCat("shutdown: could not release ",
                         claim.task.idempotency_key(), ": ", s.ToString()));
        if (result.ok()) result = s;
      }
    }
    if (!released.empty()) {
      Say(absl::StrFormat("shutdown: released %d job(s) back to PENDING: %s",
                          released.size(), absl::StrJoin(released, " ")));
    }
    return result;
  }

 private:
  enum class WorkOutcome { kDone, kAbandoned, kClaimLost };

  void ProducerLoop() ABSL_LOCKS_EXCLUDED(mu_) {
    // The stop check comes before taking a number, and a number taken is
    // always submitted: a graceful shutdown leaves no gap to fill later.
    while (!stopping_.HasBeenNotified()) {
      const std::optional<uint64_t> job = jobs_->Next();
      if (!job) break;
      // A key that already exists returns its task (deduplicated) instead of
      // making a second one; FindResumePoint makes that rare, the engine
      // makes it harmless.
      const absl::StatusOr<SubmitResult> submitted =
          engine_->Submit(JobSpec(*job));
      if (!submitted.ok()) {
        SetFatal(submitted.status());
        break;
      }
      stopping_.WaitForNotificationWithTimeout(config_.submit_interval);
    }
    producers_running_.fetch_sub(1);
  }

  void WorkerLoop(int index) ABSL_LOCKS_EXCLUDED(mu_) {
    const std::string worker_id = absl::StrCat(worker_prefix_, index);
    ClaimNextOptions options;
    options.type = std::string(kJobType);
    options.lease = config_.lease;
    options.wait = kClaimWait;
    while (!stopping_.HasBeenNotified()) {
      absl::StatusOr<ClaimedTask> claim =
          engine_->ClaimNext(worker_id, options);
      if (absl::IsNotFound(claim.status())) continue;  // Nothing ready yet.
      if (!claim.ok()) {
        SetFatal(claim.status());
        break;
      }
      // Published before any work, so that Shutdown can release it.
      SetInFlight(index, *claim);
      // Claimed while shutdown began: leave it to Shutdown to hand back.
      if (stopping_.HasBeenNotified()) break;

      const WorkOutcome outcome = SimulateWork(*claim);
      if (outcome == WorkOutcome::kAbandoned) break;  // Shutdown releases it.
      if (outcome == WorkOutcome::kDone) {
        const uint64_t job =
            JobNumber(claim->task.idempotency_key()).value_or(0);
        const bool fail = job != 0 && config_.fail_every != 0 &&
                          job % config_.fail_every == 0 && claim->attempt == 1;
        const absl::Status s =
            fail
                ? engine_->Fail(claim->claim, "simulated temporary error")
                : engine_->Complete(claim->claim,
                                    absl::StrCat("done by ", worker_id,
                                                 ", attempt ", claim->attempt));
        // kAborted: the claim is no longer ours (the lease ran out while
        // this worker stalled and the job went back to PENDING). The engine
        // refused the stale completion; someone else redoes the job.
        if (!s.ok() && !absl::IsAborted(s)) SetFatal(s);
      }
      SetInFlight(index, std::nullopt);
    }
    absl::MutexLock l(&mu_);
    --workers_running_;
  }

  // Sleeps for the job's duration, heartbeating every lease/3 so that a long
  // job keeps its claim; a third gives two more chances before the lease
  // runs out if one heartbeat is late.
  WorkOutcome SimulateWork(const ClaimedTask& claim) {
    const absl::Duration heartbeat_every = config_.lease / 3;
    const absl::Time done = absl::Now() + config_.task_time;
    absl::Time next_heartbeat = absl::Now() + heartbeat_every;
    while (true) {
      if (abandon_.WaitForNotificationWithDeadline(
              std::min(done, next_heartbeat))) {
        return WorkOutcome::kAbandoned;
      }
      if (absl::Now() >= done) return WorkOutcome::kDone;
      const absl::StatusOr<absl::Time> deadline =
          engine_->Heartbeat(claim.claim, config_.lease);
      if (absl::IsAborted(deadline.status())) return WorkOutcome::kClaimLost;
      if (!deadline.ok()) {
        SetFatal(deadline.status());
        return WorkOutcome::kClaimLost;
      }
      next_heartbeat = absl::Now() + heartbeat_every;
    }
  }

  void SetInFlight(int index, std::optional<ClaimedTask> claim)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    in_flight_[static_cast<size_t>(index)] = std::move(claim);
  }

  size_t InFlightCountLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<size_t>(
        std::count_if(in_flight_.begin(), in_flight_.end(),
                      [](const auto& c) { return c.has_value(); }));
  }

  void SetFatal(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (fatal_.ok()) fatal_ = status;
  }

  Engine* const engine_;
  const DaemonConfig config_;
  JobSequence* const jobs_;
  const std::string worker_prefix_;

  absl::Notification stopping_;  // Stop submitting and claiming.
  absl::Notification abandon_;   // Shutdown deadline passed: stop working.
  std::atomic<int> producers_running_{0};
  std::vector<std::thread> producers_;
  std::vector<std::thread> workers_;

  absl::Mutex mu_;
  // The claim each worker holds, by worker index.
  std::vector<std::optional<ClaimedTask>> in_flight_ ABSL_GUARDED_BY(mu_);
  int workers_running_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<SyncMode> ParseSyncMode(absl::string_view name) {
  if (name == "always") return SyncMode::kAlways;
  if (name == "interval") return SyncMode::kInterval;
  if (name == "none") return SyncMode::kNone;
  return absl::InvalidArgumentError(absl::StrCat(
      "--sync_mode must be always, interval or none, not \"", name, "\""));
}

// Flags to a config; kInvalidArgument names the offending flag.
absl::StatusOr<DaemonConfig> ConfigFromFlags() {
  DaemonConfig config;
  config.producers = absl::GetFlag(FLAGS_producers);
  config.workers = absl::GetFlag(FLAGS_workers);
  const int task_ms = absl::GetFlag(FLAGS_task_ms);
  const int lease_ms = absl::GetFlag(FLAGS_lease_ms);
  const int deadline_ms = absl::GetFlag(FLAGS_shutdown_deadline_ms);
  const int interval_ms = absl::GetFlag(FLAGS_submit_interval_ms);
  const int fail_every = absl::GetFlag(FLAGS_fail_every);
  if (config.producers < 0 || config.workers < 1 || task_ms < 0 ||
      lease_ms < 3 || deadline_ms < 0 || interval_ms < 0 || fail_every < 0 ||
      absl::GetFlag(FLAGS_max_tasks_to_submit) < 0) {
    return absl::InvalidArgumentError(
        "need --producers >= 0, --workers >= 1, --lease_ms >= 3, and the "
        "other numeric flags >= 0");
  }
  if (absl::GetFlag(FLAGS_exit_when_idle) && config.producers > 0 &&
      absl::GetFlag(FLAGS_max_tasks_to_submit) == 0) {
    return absl::InvalidArgumentError(
        "--exit_when_idle needs --max_tasks_to_submit (or --producers=0): "
        "unbounded producers are never done");
  }
  config.task_time = absl::Milliseconds(task_ms);
  config.lease = absl::Milliseconds(lease_ms);
  config.shutdown_deadline = absl::Milliseconds(deadline_ms);
  config.submit_interval = absl::Milliseconds(interval_ms);
  config.fail_every = static_cast<uint64_t>(fail_every);
  config.metrics_file = absl::GetFlag(FLAGS_metrics_file);
  return config;
}

void ReportRecovery(const RecoveryReport& recovery, const EngineStats& stats) {
  if (recovery.last_lsn == 0 && recovery.notes.empty()) {
    Say("new data directory: nothing to recover");
    return;
  }
  Say(absl::StrFormat(
      "recovered in %s: %s, %d log records replayed, last lsn %d, %d torn "
      "bytes cut",
      absl::FormatDuration(recovery.duration),
      recovery.snapshot_lsn == 0
          ? "no snapshot"
          : absl::StrCat("snapshot at lsn ", recovery.snapshot_lsn),
      recovery.records_replayed, recovery.last_lsn, recovery.truncated_bytes));
  for (const std::string& note : recovery.notes) {
    Say(absl::StrCat("recovery note: ", note));
  }
  Say(absl::StrFormat(
      "found %d tasks: %d pending, %d claimed, %d completed, %d failed",
      stats.tasks, stats.pending, stats.claimed, stats.completed,
      stats.failed));
  // Tasks found CLAIMED belong to workers of a process that died without
  // shutting down: nobody will complete them, so the engine expires their
  // leases and makes them PENDING again.
  if (stats.claimed > 0) {
    Say(absl::StrFormat(
        "%d task(s) were claimed by a previous run that crashed; they return "
        "to pending when their leases run out",
        stats.claimed));
  }
}

// The once-a-second work of the main thread: the metrics file and one
// summary line.
class Ticker {
 public:
  // `engine` is borrowed and must outlive the Ticker.
  Ticker(Engine* engine, std::string metrics_file)
      : engine_(engine), metrics_file_(std::move(metrics_file)) {}

  // Writes the metrics file; with `summary`, prints what changed since the
  // previous summary.
  void Tick(bool summary) {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    if (!stats.ok()) return;  // Closed; the caller reports why.
    if (!metrics_file_.empty()) {
      const absl::Status written = WriteFileAtomically(
          metrics_file_,
          RenderPrometheus(*stats, engine_->Recovery(), absl::Now()));
      // Metrics are not worth stopping the job engine for: say it once.
      if (!written.ok() && !metrics_error_reported_) {
        Say(absl::StrCat("metrics: ", written.ToString()));
        metrics_error_reported_ = true;
      }
    }
    if (summary && previous_) {
      Say(absl::StrFormat(
          "+%d submitted, +%d completed, +%d failed attempts | %d pending, %d "
          "running, %d completed, %d failed | lsn %d, +%d fsyncs",
          stats->submitted - previous_->submitted,
          stats->completions - previous_->completions,
          stats->failed_attempts - previous_->failed_attempts, stats->pending,
          stats->claimed, stats->completed, stats->failed, stats->last_lsn,
          stats->fsyncs - previous_->fsyncs));
    }
    if (summary || !previous_) previous_ = *stats;
  }

 private:
  Engine* const engine_;
  const std::string metrics_file_;
  std::optional<EngineStats> previous_;
  bool metrics_error_reported_ = false;
};

// Waits for SIGTERM or SIGINT (blocked in every thread, see Main) until
// `deadline`. Returns the signal, or 0 at the deadline.
int WaitForSignal(const sigset_t& signals, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    const timespec timeout = absl::ToTimespec(left);
    const int signal = ::sigtimedwait(&signals, nullptr, &timeout);
    if (signal > 0) return signal;
    if (errno != EINTR && errno != EAGAIN) return 0;
  }
}

int Main() {
  StartTime();
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) {
    std::fprintf(stderr, "daemon: --data_dir is required\n");
    return 2;
  }
  const absl::StatusOr<SyncMode> sync_mode =
      ParseSyncMode(absl::GetFlag(FLAGS_sync_mode));
  absl::StatusOr<DaemonConfig> config = ConfigFromFlags();
  if (!sync_mode.ok() || !config.ok()) {
    std::fprintf(stderr, "daemon: %s\n",
                 (sync_mode.ok() ? config.status() : sync_mode.status())
                     .ToString()
                     .c_str());
    return 2;
  }
  const uint64_t last_job =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_tasks_to_submit));

  // SIGTERM and SIGINT are blocked before any thread exists (the engine
  // starts one in Open), so every thread inherits the mask and the signals
  // stay pending until the main loop takes them with sigtimedwait. No
  // signal handler runs, so nothing has to be async-signal-safe. A second
  // signal during shutdown changes nothing: the deadline already bounds it,
  // and kill -9 is the hard stop a restart recovers from.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Say(absl::StrFormat(
      "daemon pid %d starting: data_dir=%s sync_mode=%s producers=%d "
      "workers=%d task=%s lease=%s shutdown_deadline=%s",
      ::getpid(), data_dir, absl::GetFlag(FLAGS_sync_mode), config->producers,
      config->workers, absl::FormatDuration(config->task_time),
      absl::FormatDuration(config->lease),
      absl::FormatDuration(config->shutdown_deadline)));

  EngineOptions options;
  options.data_dir = data_dir;
  options.sync_mode = *sync_mode;
  absl::StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(options);
  if (!opened.ok()) {
    // kUnavailable: another daemon holds the directory (try again once it
    // exits); kDataLoss: damage an operator must look at (see
    // EngineOptions::salvage).
    Say(absl::StrCat("cannot open the engine: ", opened.status().ToString()));
    return 1;
  }
  Engine& engine = **opened;

  absl::StatusOr<EngineStats> stats = engine.Stats();
  absl::StatusOr<ResumePoint> resume = FindResumePoint(engine, last_job);
  if (!stats.ok() || !resume.ok()) {
    Say(absl::StrCat(
        "cannot read the engine's state: ",
        (stats.ok() ? resume.status() : stats.status()).ToString()));
    engine.Close().IgnoreError();  // Already failing; the first error counts.
    return 1;
  }
  ReportRecovery(engine.Recovery(), *stats);
  if (last_job != 0 && resume->next_fresh > last_job &&
      resume->missing.empty()) {
    Say(absl::StrFormat("all %d jobs already submitted", last_job));
  } else {
    Say(absl::StrFormat(
        "producers resume at %s%s", JobKey(resume->next_fresh),
        resume->missing.empty()
            ? ""
            : absl::StrFormat(", after %d job(s) a crash left unsubmitted "
                              "(first: %s)",
                              resume->missing.size(),
                              JobKey(resume->missing.front()))));
  }

  JobSequence jobs(std::move(resume->missing), resume->next_fresh, last_job);
  Daemon daemon(&engine, *config, &jobs);
  Ticker ticker(&engine, config->metrics_file);
  ticker.Tick(/*summary=*/false);  // The metrics file exists from the start.
  daemon.Start();
  Say("running; SIGTERM or SIGINT shuts down gracefully");

  // The main thread only supervises: it sleeps until the next tick or a
  // signal, whichever comes first.
  absl::Time next_tick = absl::Now() + kSummaryInterval;
  while (true) {
    const int signal = WaitForSignal(signals, next_tick);
    if (signal != 0) {
      Say(absl::StrCat("received ", signal == SIGTERM ? "SIGTERM" : "SIGINT",
                       ": shutting down"));
      break;
    }
    next_tick += kSummaryInterval;
    ticker.Tick(/*summary=*/true);
    if (const absl::Status fatal = daemon.Fatal(); !fatal.ok()) {
      Say(absl::StrCat("engine error, shutting down: ", fatal.ToString()));
      break;
    }
    if (absl::GetFlag(FLAGS_exit_when_idle) && daemon.Idle()) {
      Say(absl::StrCat("idle: every job is submitted and no ", kJobType,
                       " task is pending or running; shutting down"));
      break;
    }
  }

  absl::Status result = daemon.Shutdown();
  // A snapshot now makes the next Open load it instead of replaying the log.
  const absl::Status snapshot = engine.Snapshot();
  if (snapshot.ok()) {
    absl::StatusOr<EngineStats> final_stats = engine.Stats();
    Say(absl::StrCat("shutdown: snapshot written at lsn ",
                     final_stats.ok() ? final_stats->last_snapshot_lsn : 0));
  } else {
    // Not fatal: the log alone still recovers everything.
    Say(absl::StrCat("shutdown: snapshot failed: ", snapshot.ToString()));
  }
  ticker.Tick(/*summary=*/true);  // Final metrics and summary.
  const absl::Status closed = engine.Close();
  if (result.ok()) result = closed;
  if (!result.ok()) {
    Say(absl::StrCat("shutdown: engine closed with error: ",
                     result.ToString()));
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
