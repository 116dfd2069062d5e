// The README's API tour as a program of its own, built against an installed
// taskwal: examples/consumers/cmake (find_package) and
// examples/consumers/pkgconfig (pkg-config) both compile this file, and
// tools/cmake_check.sh runs them. Keep ApiTour's body the same as the
// README's sample (only data_dir differs).
//
//   quickstart DATA_DIR   runs the tour on DATA_DIR (which must not hold
//                         an engine's data yet), then reopens DATA_DIR and
//                         checks that what the tour did survived.
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/version.h"

namespace {

// The README's sample ("API tour"), with the data directory passed in.
absl::Status ApiTour(const std::string& data_dir) {
  taskwal::EngineOptions options;
  options.data_dir = data_dir;
  options.sync_mode = taskwal::SyncMode::kAlways;  // see "Durability"
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> opened =
      taskwal::Engine::Open(options);
  if (!opened.ok()) return opened.status();
  taskwal::Engine& engine = **opened;

  // Producer: the same key always yields the same task.
  taskwal::TaskSpec spec;
  spec.idempotency_key = "order-12345";
  spec.type = "process_order";
  spec.payload = R"({"order": 12345, "amount": 99.99})";
  spec.max_attempts = 3;
  absl::StatusOr<taskwal::SubmitResult> submitted = engine.Submit(spec);
  if (!submitted.ok()) return submitted.status();  // kAlreadyExists: same key,
  const uint64_t id = submitted->task_id;          // different payload.

  // Worker: claim the best ready task (priority, then age), waiting up to 1 s.
  taskwal::ClaimNextOptions claim;
  claim.type = "process_order";
  claim.lease = absl::Seconds(30);
  claim.wait = absl::Seconds(1);
  absl::StatusOr<taskwal::ClaimedTask> c = engine.ClaimNext("worker-1", claim);
  if (c.ok()) {
    // Long work keeps the claim alive:
    engine.Heartbeat(c->claim, absl::Seconds(30)).IgnoreError();
    absl::Status done = engine.Complete(c->claim, "charged $99.99");
    // or: engine.Fail(c->claim, "card declined");
    // kAborted: the claim was lost (lease ran out); drop the task.
    if (!done.ok() && !absl::IsAborted(done)) return done;
  } else if (absl::IsNotFound(c.status())) {
    // Nothing ready. Tasks may still wait out a backoff or their not_before:
    absl::StatusOr<std::optional<absl::Time>> due =
        engine.NextDueTime("process_order");
    if (!due.ok()) return due.status();
    // *due == std::nullopt: nothing is pending; else the next is due at **due.
  } else {
    return c.status();  // kCancelled: the engine is closed.
  }

  // Lookups: by id, by key, by status (pages), the audit trail, counters.
  absl::StatusOr<taskwal::Task> task = engine.Get(id);
  task = engine.GetByIdempotencyKey("order-12345");
  taskwal::ListFilter filter;
  filter.status = taskwal::COMPLETED;
  filter.limit = 100;
  absl::StatusOr<taskwal::ListPage> page = engine.List(filter);
  // ...then filter.after_id = page->next_cursor until it is 0.
  absl::StatusOr<std::vector<taskwal::HistoryEntry>> history =
      engine.History(id);
  absl::StatusOr<taskwal::EngineStats> stats = engine.Stats();

  // Operator actions, snapshots (also taken every N records), shutdown.
  engine.Retry(id).IgnoreError();  // release a claim, or re-drive a FAILED task
  engine.Cancel(id).IgnoreError();  // a PENDING task
  engine.Delete(id).IgnoreError();  // a finished task; frees its key
  if (absl::Status s = engine.Snapshot(); !s.ok()) return s;
  return engine.Close();
}

// Reopens the directory: the tour's task was submitted, claimed, completed
// and deleted, and the engine's totals say so after the restart.
absl::Status CheckReopened(const std::string& data_dir) {
  taskwal::EngineOptions options;
  options.data_dir = data_dir;
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> opened =
      taskwal::Engine::Open(options);
  if (!opened.ok()) return opened.status();
  taskwal::Engine& engine = **opened;
  absl::StatusOr<taskwal::EngineStats> stats = engine.Stats();
  if (!stats.ok()) return stats.status();
  if (stats->submitted != 1 || stats->claims != 1 || stats->completions != 1 ||
      stats->deletions != 1 || stats->tasks != 0) {
    return absl::InternalError(absl::StrCat(
        "after reopening: submitted=", stats->submitted,
        " claims=", stats->claims, " completions=", stats->completions,
        " deletions=", stats->deletions, " tasks=", stats->tasks,
        " (want 1 1 1 1 0)"));
  }
  // Delete freed the key.
  absl::StatusOr<taskwal::Task> gone =
      engine.GetByIdempotencyKey("order-12345");
  if (!absl::IsNotFound(gone.status())) {
    return absl::InternalError(
        absl::StrCat("after reopening: key order-12345 still names a task: ",
                     gone.status().ToString()));
  }
  return engine.Close();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " DATA_DIR\n";
    return 2;
  }
  const std::string data_dir = argv[1];
  if (absl::Status s = ApiTour(data_dir); !s.ok()) {
    std::cerr << "quickstart: the API tour failed: " << s << "\n";
    return 1;
  }
  if (absl::Status s = CheckReopened(data_dir); !s.ok()) {
    std::cerr << "quickstart: " << s << "\n";
    return 1;
  }
  std::cout << "quickstart: taskwal " << TASKWAL_VERSION
            << ": submitted, claimed, completed and deleted a task in "
            << data_dir << "; reopened, the totals survived\n";
  return 0;
}
