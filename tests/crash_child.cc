// The victim of crash_test: opens an engine on --data_dir and runs a random
// workload on --threads threads until it is killed. After every call that
// returned OK it reports the acknowledged transition on stdout, in the line
// format of tests/crash_protocol.h. It never exits on its own; an unexpected
// status (or a failed Open) ends it with a message on stderr and exit code
// 2, which the parent reports as a failure.
//
//   crash_child --data_dir=DIR --sync_mode=always|interval --seed=N
//               [--partitions=0] [--threads=4] [--key_base=0]
//               [--key_space=200]
//
// Submits use keys k<key_base> .. k<key_base + key_space - 1>.
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "tests/crash_protocol.h"

ABSL_FLAG(std::string, data_dir, "", "Engine data directory.");
ABSL_FLAG(std::string, sync_mode, "always", "always or interval.");
ABSL_FLAG(uint64_t, seed, 1, "Workload and engine seed.");
ABSL_FLAG(uint32_t, partitions, 0,
          "Engine partitions (0: the directory's, or the default).");
ABSL_FLAG(int, threads, 4, "Workload threads.");
ABSL_FLAG(uint64_t, key_base, 0, "First idempotency key number.");
ABSL_FLAG(uint64_t, key_space, 200, "Number of idempotency keys.");

namespace taskwal {
namespace crash {
namespace {

[[noreturn]] void Die(absl::string_view what, const absl::Status& status) {
  const std::string message =
      absl::StrCat("crash_child: ", what, ": ", status.ToString(), "\n");
  (void)!::write(STDERR_FILENO, message.data(), message.size());
  // Not exit(): the other threads are still using the engine.
  ::_exit(2);
}

// Writes acknowledgement lines to stdout, one write(2) per line.
class Reporter {
 public:
  void Line(const std::string& line) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t n =
          ::write(STDOUT_FILENO, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      // The parent went away: nobody is checking any more.
      if (n <= 0) ::_exit(3);
      done += static_cast<size_t>(n);
    }
  }

 private:
  absl::Mutex mu_;
};

struct Workload {
  Engine* engine;
  Reporter* out;
  uint64_t seed;
  uint64_t key_base;
  uint64_t key_space;
};

// One submit, or (batch) a SubmitBatch of 2-6 keys, which usually span
// partitions; each acknowledged task is reported as a submit.
void Submit(const Workload& w, std::mt19937_64& rng, bool batch = false) {
  std::vector<TaskSpec> specs(batch ? 2 + rng() % 5 : 1);
  for (TaskSpec& spec : specs) {
    spec.idempotency_key = KeyFor(w.key_base + rng() % w.key_space);
    spec.payload = PayloadFor(spec.idempotency_key);
  }
  absl::StatusOr<std::vector<SubmitResult>> r = w.engine->SubmitBatch(specs);
  if (!r.ok()) {
    Die(absl::StrCat("Submit ", specs[0].idempotency_key), r.status());
  }
  std::string lines;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StrAppend(&lines, "S ", specs[i].idempotency_key, " ",
                    (*r)[i].task_id, " ", Fnv1a(specs[i].payload), "\n");
  }
  w.out->Line(lines);
}

void Run(const Workload& w, int thread) {
  std::mt19937_64 rng(w.seed * 1000 + thread);
  const std::string me = absl::StrCat("s", w.seed, "t", thread);
  std::vector<ClaimedTask> held;
  while (true) {
    const int op = rng() % 100;
    if (op < 35) {
      Submit(w, rng, /*batch=*/op < 5);
    } else if (held.empty() || (op < 65 && held.size() < 8)) {
      absl::StatusOr<ClaimedTask> c = w.engine->ClaimNext(me, {});
      if (absl::IsNotFound(c.status())) {
        Submit(w, rng);  // Nothing ready: make work rather than spin.
        continue;
      }
      if (!c.ok()) Die("ClaimNext", c.status());
      held.push_back(*c);
      w.out->Line(
          absl::StrCat("C ", c->task.id(), " ", me, " ", c->attempt, "\n"));
    } else if (op < 75) {
      const ClaimedTask& c = held[rng() % held.size()];
      absl::StatusOr<absl::Time> deadline =
          w.engine->Heartbeat(c.claim, absl::ZeroDuration());
      if (!deadline.ok()) Die("Heartbeat", deadline.status());
      w.out->Line(absl::StrCat("H ", c.task.id(), " ", me, " ", c.attempt, " ",
                               absl::ToUnixMicros(*deadline), "\n"));
    } else if (op < 99 || thread != 0) {
      const size_t i = rng() % held.size();
      const ClaimedTask c = held[i];
      held.erase(held.begin() + i);
      if (rng() % 3 != 0) {
        const std::string result = absl::StrCat("r-", me, "-", c.attempt);
        absl::Status s = w.engine->Complete(c.claim, result);
        if (!s.ok()) Die("Complete", s);
        w.out->Line(absl::StrCat("D ", c.task.id(), " ", me, " ", c.attempt,
                                 " ", result, "\n"));
      } else {
        absl::Status s = w.engine->Fail(c.claim, "x");
        if (!s.ok()) Die("Fail", s);
        const bool final_attempt = c.attempt >= c.task.max_attempts();
        w.out->Line(absl::StrCat("F ", c.task.id(), " ", me, " ", c.attempt,
                                 " ", final_attempt ? 1 : 0, "\n"));
      }
    } else if (rng() % 8 == 0) {
      // Manual snapshots race with writers and with the automatic ones.
      absl::Status s = w.engine->Snapshot();
      if (!s.ok()) Die("Snapshot", s);
    }
  }
}

int Main() {
  const std::string mode = absl::GetFlag(FLAGS_sync_mode);
  SyncMode sync_mode;
  if (mode == "always") {
    sync_mode = SyncMode::kAlways;
  } else if (mode == "interval") {
    sync_mode = SyncMode::kInterval;
  } else {
    Die("flags", absl::InvalidArgumentError("--sync_mode=" + mode));
  }
  if (absl::GetFlag(FLAGS_data_dir).empty() ||
      absl::GetFlag(FLAGS_threads) < 1 || absl::GetFlag(FLAGS_key_space) < 1) {
    Die("flags", absl::InvalidArgumentError(
                     "need --data_dir, --threads >= 1, --key_space >= 1"));
  }
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Open(CrashOptions(absl::GetFlag(FLAGS_data_dir), sync_mode, seed,
                                absl::GetFlag(FLAGS_partitions)));
  if (!engine.ok()) Die("Open", engine.status());

  Reporter out;
  out.Line(absl::StrCat("R ", ::getpid(), "\n"));
  const Workload w{engine->get(), &out, seed, absl::GetFlag(FLAGS_key_base),
                   absl::GetFlag(FLAGS_key_space)};
  std::vector<std::thread> threads;
  for (int t = 1; t < absl::GetFlag(FLAGS_threads); ++t) {
    threads.emplace_back(Run, w, t);
  }
  Run(w, 0);  // Never returns: the parent kills the process.
  return 0;
}

}  // namespace
}  // namespace crash
}  // namespace taskwal

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskwal::crash::Main();
}
