// pool_benchmark: what the WorkerPool costs over the loop it replaces, and
// whether its rate limit holds. One invocation, one table:
//
//   bazel run --config=opt //benchmarks:pool_benchmark
//   bazel run --config=opt //benchmarks:pool_benchmark -- --tasks=50000
//       --rounds=3 --threads=1,2,4 --rate=2000 --rate_seconds=10
//       (one command line)
//
// Overhead: for each thread count, `--tasks` tasks are submitted to a fresh
// engine (in memory unless --sync says otherwise, so that the engine is as
// fast as it gets and the pool's share is as large as it gets), then
// drained, the clock running from the threads' start to the last Complete:
//   bare  T threads: ClaimNext(type, wait 100 ms), Complete(claim, "").
//   pool  a WorkerPool of T shared threads whose handler returns "".
// Both see the same engine options and the same tasks; the submits are not
// timed. The rounds alternate bare and pool (each goes first in every other
// round), so a load that other programs put on the machine meanwhile falls
// on both; the table shows the median
// of each and the median of the per-round ratios pool / bare, and the
// process's CPU time (user + sys) per task, which a busy machine disturbs
// less than wall time. Both are timed the same way: the main thread reads
// Engine::Stats every 200 us.
//
// Rate: a pool of --rate_threads threads drains a backlog of no-op tasks
// of a type limited to --rate per second (burst --rate_burst) for
// --rate_seconds; achieved = (tasks started - burst) / elapsed, and the
// bound the pool promises, burst + rate * elapsed, is checked.
//
// Nothing here asserts timing: it measures and reports (exit status 1 only
// if an engine call fails or the promised bound is broken).

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmarks/bench_util.h"
#include "taskwal/engine.h"
#include "taskwal/worker_pool.h"

ABSL_FLAG(uint64_t, tasks, 100000, "Tasks per overhead run.");
ABSL_FLAG(int, rounds, 7, "Bare/pool pairs per thread count.");
ABSL_FLAG(std::string, threads, "1,2,4", "Thread counts, comma-separated.");
ABSL_FLAG(std::string, sync, "memory",
          "Engine for the overhead runs: memory (no data_dir), none, "
          "interval or always (a data_dir under $TMPDIR).");
ABSL_FLAG(std::string, only, "",
          "bare or pool: run only that side of the overhead runs (to "
          "profile it); the table then shows it against itself.");
ABSL_FLAG(double, rate, 2000, "Rate limit for the rate run (per second).");
ABSL_FLAG(int, rate_burst, 10, "Burst for the rate run.");
ABSL_FLAG(int, rate_threads, 4, "Pool threads for the rate run.");
ABSL_FLAG(double, rate_seconds, 10, "Length of the rate run; 0 skips it.");

namespace taskwal::bench {
namespace {

constexpr char kType[] = "bench";

[[noreturn]] void Die(absl::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "pool_benchmark: %.*s: %s\n",
               static_cast<int>(what.size()), what.data(),
               status.ToString().c_str());
  std::exit(1);
}

struct Fixture {
  std::unique_ptr<TempDir> dir;  // Declared first: removed last.
  std::unique_ptr<Engine> engine;
};

// A fresh engine holding `tasks` PENDING tasks of kType.
Fixture Prepare(uint64_t tasks) {
  Fixture f;
  EngineOptions options;
  options.snapshot_every_records = 0;
  options.max_tasks = 0;
  const std::string sync = absl::GetFlag(FLAGS_sync);
  if (sync != "memory") {
    absl::StatusOr<TempDir> dir = TempDir::Create(ScratchRoot(), "pool_bench");
    if (!dir.ok()) Die("TempDir", dir.status());
    f.dir = std::make_unique<TempDir>(*std::move(dir));
    options.data_dir = f.dir->path();
    options.sync_mode = sync == "always"     ? SyncMode::kAlways
                        : sync == "interval" ? SyncMode::kInterval
                                             : SyncMode::kNone;
  }
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  if (!engine.ok()) Die("Open", engine.status());
  f.engine = *std::move(engine);
  std::vector<TaskSpec> batch;
  for (uint64_t i = 0; i < tasks; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i);
    spec.type = kType;
    spec.payload = "0123456789abcdef";
    batch.push_back(std::move(spec));
    if (batch.size() == 10000 || i + 1 == tasks) {
      absl::StatusOr<std::vector<SubmitResult>> r =
          f.engine->SubmitBatch(batch);
      if (!r.ok()) Die("SubmitBatch", r.status());
      batch.clear();
    }
  }
  return f;
}

// What one run measured.
struct Rate {
  double per_second = 0;       // Tasks per second of wall time.
  double cpu_us_per_task = 0;  // Process CPU time (user + sys) per task.
};

absl::Duration CpuTime() {
  rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) +
         absl::DurationFromTimeval(usage.ru_stime);
}

Rate RateOf(uint64_t tasks, absl::Duration wall, absl::Duration cpu) {
  Rate r;
  r.per_second = static_cast<double>(tasks) / absl::ToDoubleSeconds(wall);
  r.cpu_us_per_task =
      absl::ToDoubleMicroseconds(cpu) / static_cast<double>(tasks);
  return r;
}

uint64_t Completed(Engine* engine) {
  absl::StatusOr<EngineStats> stats = engine->Stats();
  if (!stats.ok()) Die("Stats", stats.status());
  return stats->completed;
}

// Sleeps in short steps until `tasks` are completed; the time it saw that.
absl::Time WaitCompleted(Engine* engine, uint64_t tasks) {
  while (Completed(engine) < tasks) absl::SleepFor(absl::Microseconds(200));
  return absl::Now();
}

// The bare loop on `threads` threads.
Rate RunBare(int threads, uint64_t tasks) {
  Fixture f = Prepare(tasks);
  Engine* engine = f.engine.get();
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  const absl::Duration cpu = CpuTime();
  const absl::Time begin = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([engine, t, &failed] {
      const std::string worker = absl::StrCat("bare-", t + 1);
      ClaimNextOptions options;
      options.type = kType;
      options.wait = absl::Milliseconds(100);
      while (true) {
        absl::StatusOr<ClaimedTask> claimed =
            engine->ClaimNext(worker, options);
        if (absl::IsNotFound(claimed.status()) ||
            absl::IsCancelled(claimed.status())) {
          return;
        }
        if (!claimed.ok()) {
          failed = true;
          return;
        }
        if (!engine->Complete(claimed->claim, "").ok()) failed = true;
      }
    });
  }
  const absl::Time end = WaitCompleted(engine, tasks);
  const absl::Duration cpu_used = CpuTime() - cpu;
  for (std::thread& w : workers) w.join();
  if (failed) Die("bare loop", absl::InternalError("an engine call failed"));
  if (absl::Status s = engine->Close(); !s.ok()) Die("Close", s);
  return RateOf(tasks, end - begin, cpu_used);
}

// A WorkerPool of `threads` shared threads.
Rate RunPool(int threads, uint64_t tasks) {
  Fixture f = Prepare(tasks);
  Engine* engine = f.engine.get();
  WorkerPoolOptions options;
  options.threads = threads;
  options.worker_id_prefix = "pool";
  WorkerPool pool(engine, options);
  absl::Status s = pool.Register(
      kType, [](const Task&, HandlerContext&) -> absl::StatusOr<std::string> {
        return std::string();
      });
  if (!s.ok()) Die("Register", s);
  const absl::Duration cpu = CpuTime();
  const absl::Time begin = absl::Now();
  if (s = pool.Start(); !s.ok()) Die("Start", s);
  const absl::Time end = WaitCompleted(engine, tasks);
  const absl::Duration cpu_used = CpuTime() - cpu;
  if (s = pool.Stop(absl::Now() + absl::Seconds(10)); !s.ok()) Die("Stop", s);
  const WorkerPoolStats stats = pool.Stats();
  if (stats.succeeded != tasks || stats.engine_errors != 0) {
    Die("pool", absl::InternalError(
                    absl::StrCat(stats.succeeded, " succeeded, ",
                                 stats.engine_errors, " engine errors")));
  }
  if (s = engine->Close(); !s.ok()) Die("Close", s);
  return RateOf(tasks, end - begin, cpu_used);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Returns false if the pool started more tasks than it promises.
bool RunRate() {
  const double rate = absl::GetFlag(FLAGS_rate);
  const int burst = absl::GetFlag(FLAGS_rate_burst);
  const absl::Duration length =
      absl::Seconds(absl::GetFlag(FLAGS_rate_seconds));
  // A backlog the limit cannot drain: the pool is never short of work.
  const uint64_t tasks = static_cast<uint64_t>(
      burst + rate * absl::ToDoubleSeconds(length) * 1.2 + 1000);
  Fixture f = Prepare(tasks);
  std::atomic<uint64_t> started{0};
  WorkerPoolOptions options;
  options.threads = absl::GetFlag(FLAGS_rate_threads);
  options.worker_id_prefix = "rate";
  WorkerPool pool(f.engine.get(), options);
  HandlerOptions limited;
  limited.rate_per_second = rate;
  limited.rate_burst = burst;
  absl::Status s = pool.Register(
      kType,
      [&started](const Task&, HandlerContext&) -> absl::StatusOr<std::string> {
        started.fetch_add(1, std::memory_order_relaxed);
        return std::string();
      },
      limited);
  if (!s.ok()) Die("Register", s);
  const absl::Time begin = absl::Now();
  if (s = pool.Start(); !s.ok()) Die("Start", s);
  absl::SleepFor(length);
  const uint64_t count = started.load();
  const absl::Duration elapsed = absl::Now() - begin;
  if (s = pool.Stop(absl::Now() + absl::Seconds(10)); !s.ok()) Die("Stop", s);
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double achieved = (static_cast<double>(count) - burst) / seconds;
  const double bound = burst + rate * seconds;
  std::printf(
      "\nRate limit: %d threads, rate %.0f/s, burst %d, %.2f s\n"
      "  started %llu (bound burst + rate * elapsed = %.0f)\n"
      "  achieved (started - burst) / elapsed = %.1f/s = %.2f%% of the "
      "configured rate (%s 5%%)\n",
      options.threads, rate, burst, seconds,
      static_cast<unsigned long long>(count), bound, achieved,
      100 * achieved / rate,
      std::abs(achieved - rate) <= 0.05 * rate ? "within" : "NOT within");
  return static_cast<double>(count) <= bound + 1;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string line;
  std::getline(in, line);
  return line;
}

int Main() {
  std::vector<int> thread_counts;
  for (absl::string_view t :
       absl::StrSplit(absl::GetFlag(FLAGS_threads), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(t, &n) || n < 1) {
      std::fprintf(stderr, "pool_benchmark: bad --threads\n");
      return 2;
    }
    thread_counts.push_back(n);
  }
  const uint64_t tasks = absl::GetFlag(FLAGS_tasks);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  std::printf(
      "pool_benchmark: %ld CPUs, load average %s\n"
      "engine %s, %llu tasks per run, %d rounds of bare + pool\n\n",
      ::sysconf(_SC_NPROCESSORS_ONLN), LoadAverage().c_str(),
      absl::GetFlag(FLAGS_sync).c_str(), static_cast<unsigned long long>(tasks),
      rounds);
  std::printf("%8s %14s %14s %10s %10s %10s  %s\n", "threads", "bare tasks/s",
              "pool tasks/s", "pool/bare", "bare CPU", "pool CPU",
              "per-round pool/bare");
  for (int threads : thread_counts) {
    std::vector<double> bare, pool, ratio, bare_cpu, pool_cpu;
    for (int r = 0; r < rounds; ++r) {
      // Each goes first in every other round: neither always inherits
      // the other's freed heap.
      Rate b, p;
      const std::string only = absl::GetFlag(FLAGS_only);
      if (!only.empty()) {
        b = p =
            only == "pool" ? RunPool(threads, tasks) : RunBare(threads, tasks);
      } else if (r % 2 == 0) {
        b = RunBare(threads, tasks);
        p = RunPool(threads, tasks);
      } else {
        p = RunPool(threads, tasks);
        b = RunBare(threads, tasks);
      }
      bare.push_back(b.per_second);
      pool.push_back(p.per_second);
      bare_cpu.push_back(b.cpu_us_per_task);
      pool_cpu.push_back(p.cpu_us_per_task);
      ratio.push_back(p.per_second / b.per_second);
    }
    std::string ratios;
    for (double x : ratio) {
      char buffer[32];
      std::snprintf(buffer, sizeof(buffer), "%s%.2f", ratios.empty() ? "" : " ",
                    x);
      ratios += buffer;
    }
    std::printf("%8d %14.0f %14.0f %9.3fx %8.2fus %8.2fus  %s\n", threads,
                Median(bare), Median(pool), Median(ratio), Median(bare_cpu),
                Median(pool_cpu), ratios.c_str());
    std::fflush(stdout);
  }
  bool ok = true;
  if (absl::GetFlag(FLAGS_rate_seconds) > 0) ok = RunRate();
  std::printf("\nload average at the end: %s\n", LoadAverage().c_str());
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace taskwal::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskwal::bench::Main();
}
