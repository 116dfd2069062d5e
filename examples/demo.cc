// The seed's idempotent-tasks demos (shared/seed/idempotent-tasks.md)
// re-created on the real engine and a real data directory, followed by two
// restarts: a clean Close + Open, and a child process killed with SIGKILL in
// the middle of its work.
//
//   bazel run //examples:demo                      demos 1-7 in a fresh dir
//   bazel run //examples:demo -- --data_dir=DIR   demos 1-7 in DIR (empty)
//   bazel run //examples:demo -- --crash --data_dir=DIR
//                                                  demo 7 only, on DIR as a
//                                                  previous run left it
//
// Every claim the demo makes is checked against the engine; the exit code is
// 0 only if every check passed. Only api/ headers are used, as an embedder
// would.

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/const_init.h"
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
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/task.pb.h"

ABSL_FLAG(std::string, data_dir, "",
          "Directory for the engine's log and snapshots. Default: a fresh "
          "directory made with mkdtemp under /tmp (left in place afterwards).");
ABSL_FLAG(bool, crash, false,
          "Run only demo 7 (kill -9 mid-work, then recover) on --data_dir as "
          "it is, e.g. the directory of a previous run.");

namespace taskwal::examples {
namespace {

constexpr absl::string_view kOrderType = "process_order";
constexpr uint32_t kMaxAttempts = 3;
// Per-task retry policy: short and without jitter, so the demo is quick and
// its retries happen in a predictable order.
constexpr absl::Duration kBackoff = absl::Milliseconds(50);
// How long a worker "works" on an order.
constexpr absl::Duration kProcessingTime = absl::Milliseconds(20);
// The crash child's lease: after the SIGKILL the parent waits for it to run
// out before the orphaned claim can be taken again.
constexpr absl::Duration kCrashLease = absl::Seconds(1);
// The crash child would process this many orders; it is killed long before.
constexpr int kCrashOrders = 12;
// The parent kills the child right after this many acknowledged claims, while
// the child is "processing" the last of them.
constexpr int kKillAfterClaims = 4;
// Upper bound for any phase that waits on workers or the child.
constexpr absl::Duration kPhaseTimeout = absl::Seconds(8);

// ---------------------------------------------------------------------------
// Output and checks. Workers print from several threads; each line is
// written whole.

ABSL_CONST_INIT absl::Mutex output_mu(absl::kConstInit);
std::atomic<int> failed_checks{0};

void Say(absl::string_view line) ABSL_LOCKS_EXCLUDED(output_mu) {
  absl::MutexLock l(&output_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Records a failed check unless ok. Returns ok.
bool Check(bool ok, absl::string_view what) {
  if (!ok) {
    failed_checks.fetch_add(1);
    Say(absl::StrCat("✗ CHECK FAILED: ", what));
  }
  return ok;
}

bool CheckOk(const absl::Status& status, absl::string_view what) {
  return Check(status.ok(), absl::StrCat(what, ": ", status.ToString()));
}

std::string StatusName(TaskStatus status) { return TaskStatus_Name(status); }

// ---------------------------------------------------------------------------
// Orders: the seed's process_order tasks. The payload is JSON-ish text.

std::string OrderKey(int number) { return absl::StrCat("order-", number); }

TaskSpec OrderSpec(int number, absl::string_view amount,
                   absl::string_view customer) {
  TaskSpec spec;
  spec.idempotency_key = OrderKey(number);
  spec.type = std::string(kOrderType);
  spec.payload =
      absl::StrFormat(R"({"order_id":"%d","customer":"%s","amount":%s})",
                      number, customer, amount);
  spec.max_attempts = kMaxAttempts;
  RetryPolicy policy;
  policy.set_initial_backoff_micros(absl::ToInt64Microseconds(kBackoff));
  policy.set_max_backoff_micros(absl::ToInt64Microseconds(4 * kBackoff));
  policy.set_multiplier(2.0);
  policy.set_jitter(0.0);
  spec.retry_policy = policy;
  return spec;
}

// The crash child's orders (and their resubmission by the parent) must be
// built identically, or the resubmission would be a conflict, not a dedup.
TaskSpec CrashOrderSpec(int number, int index) {
  return OrderSpec(number, absl::StrFormat("%.2f", 12.50 + 7.25 * index),
                   "crash-test");
}

// The value of "name" in the flat JSON-ish payload; empty if absent.
std::string PayloadField(absl::string_view payload, absl::string_view name) {
  const std::string needle = absl::StrCat("\"", name, "\":");
  const size_t start = payload.find(needle);
  if (start == absl::string_view::npos) return "";
  absl::string_view value = payload.substr(start + needle.size());
  value = value.substr(0, value.find_first_of(",}"));
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return std::string(value);
}

std::string OrderResult(const Task& task) {
  return absl::StrCat("Order ", PayloadField(task.payload(), "order_id"),
                      " processed, charged $",
                      PayloadField(task.payload(), "amount"));
}

// The deterministic "temporary failures": order 12346 fails its first attempt
// only; order 12348 fails every attempt and ends FAILED.
std::optional<std::string> SimulatedFailure(const Task& task,
                                            uint32_t attempt) {
  const std::string order_id = PayloadField(task.payload(), "order_id");
  if (order_id == "12346" && attempt == 1) {
    return "processing failed: temporary error";
  }
  if (order_id == "12348") return "processing failed: payment gateway timeout";
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Reading the whole engine state, for the before/after restart comparison.

absl::StatusOr<std::vector<Task>> ListAll(Engine& engine,
                                          std::optional<TaskStatus> status) {
  std::vector<Task> all;
  ListFilter filter;
  filter.status = status;
  filter.limit = 1000;
  while (true) {
    absl::StatusOr<ListPage> page = engine.List(filter);
    if (!page.ok()) return page.status();
    for (Task& task : page->tasks) all.push_back(std::move(task));
    if (page->next_cursor == 0) return all;
    filter.after_id = page->next_cursor;
  }
}

// Every task (result included) with its history, plus the lifetime counters
// that the engine documents as surviving restarts.
struct StateDump {
  std::map<uint64_t, std::string> tasks;  // id -> serialized task + history.
  std::map<uint64_t, std::string> text;   // id -> the same, readable.
  std::string lifetime_counters;
};

absl::StatusOr<StateDump> DumpState(Engine& engine) {
  absl::StatusOr<std::vector<Task>> tasks = ListAll(engine, std::nullopt);
  if (!tasks.ok()) return tasks.status();
  StateDump dump;
  for (const Task& task : *tasks) {
    absl::StatusOr<std::vector<HistoryEntry>> history =
        engine.History(task.id());
    if (!history.ok()) return history.status();
    std::string bytes = task.SerializeAsString();
    std::string text = task.ShortDebugString();
    for (const HistoryEntry& entry : *history) {
      absl::StrAppend(&bytes, "|", entry.SerializeAsString());
      absl::StrAppend(&text, "\n      history: ", entry.ShortDebugString());
    }
    dump.tasks[task.id()] = std::move(bytes);
    dump.text[task.id()] = std::move(text);
  }
  absl::StatusOr<EngineStats> stats = engine.Stats();
  if (!stats.ok()) return stats.status();
  dump.lifetime_counters = absl::StrCat(
      "submitted=", stats->submitted, " claims=", stats->claims,
      " completions=", stats->completions,
      " failed_attempts=", stats->failed_attempts,
      " lease_expiries=", stats->lease_expiries, " retries=", stats->retries,
      " cancellations=", stats->cancellations, " deletions=", stats->deletions,
      " retention_removals=", stats->retention_removals,
      " transitions=", stats->transitions);
  return dump;
}

// Checks that every task of `before` is in `after` unchanged. With
// `exact`, `after` must hold nothing else and the counters must match too.
// Prints each difference. Returns the number of tasks compared.
size_t CompareDumps(const StateDump& before, const StateDump& after,
                    bool exact) {
  int differences = 0;
  for (const auto& [id, bytes] : before.tasks) {
    auto it = after.tasks.find(id);
    if (it == after.tasks.end()) {
      Check(false, absl::StrCat("task ", id, " missing after reopen; before: ",
                                before.text.at(id)));
      ++differences;
    } else if (it->second != bytes) {
      Check(false, absl::StrCat("task ", id, " changed across the restart\n",
                                "    before: ", before.text.at(id), "\n",
                                "    after:  ", after.text.at(id)));
      ++differences;
    }
  }
  if (exact) {
    for (const auto& [id, text] : after.text) {
      if (before.tasks.count(id) == 0) {
        Check(false,
              absl::StrCat("task ", id, " appeared after reopen: ", text));
        ++differences;
      }
    }
    if (before.lifetime_counters != after.lifetime_counters) {
      Check(false, absl::StrCat("lifetime counters changed across the "
                                "restart\n    before: ",
                                before.lifetime_counters,
                                "\n    after:  ", after.lifetime_counters));
      ++differences;
    }
  }
  return differences == 0 ? before.tasks.size() : 0;
}

// ---------------------------------------------------------------------------
// Opening the engine and describing what recovery found.

absl::StatusOr<std::unique_ptr<Engine>> OpenEngine(const std::string& dir) {
  EngineOptions options;
  options.data_dir = dir;
  // Every acknowledged call is fdatasync'ed: what the crash demo relies on.
  options.sync_mode = SyncMode::kAlways;
  return Engine::Open(options);
}

void PrintRecovery(const RecoveryReport& report) {
  Say(absl::StrCat(
      "✓ Recovered in ",
      absl::FormatDuration(absl::Trunc(report.duration, absl::Microseconds(1))),
      ": snapshot ",
      report.snapshot_lsn == 0 ? std::string("none")
                               : absl::StrCat("at LSN ", report.snapshot_lsn),
      " + ", report.records_replayed, " log records replayed (last LSN ",
      report.last_lsn, ", ", report.truncated_bytes, " torn bytes cut)"));
  for (const std::string& note : report.notes) {
    Say(absl::StrCat("  recovery note: ", note));
  }
}

std::string HistoryLine(const HistoryEntry& entry, int64_t origin_micros,
                        uint32_t max_attempts) {
  std::string line =
      absl::StrFormat("  %+8.3fs  %-14s %-15s attempt %u/%u",
                      (entry.time_micros() - origin_micros) / 1e6,
                      HistoryEntry::Event_Name(entry.event()),
                      entry.worker_id().empty() ? "-" : entry.worker_id(),
                      entry.attempt(), max_attempts);
  if (!entry.error().empty()) {
    absl::StrAppend(&line, "  error: ", entry.error());
  }
  return line;
}

absl::Status PrintHistory(Engine& engine, const Task& task) {
  absl::StatusOr<std::vector<HistoryEntry>> history = engine.History(task.id());
  if (!history.ok()) return history.status();
  Say(absl::StrCat("History(", task.id(), ") - ", task.idempotency_key(), ", ",
                   StatusName(task.status()), ", ", history->size(),
                   " events:"));
  const int64_t origin = history->empty() ? 0 : history->front().time_micros();
  for (const HistoryEntry& entry : *history) {
    Say(HistoryLine(entry, origin, task.max_attempts()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Demos 1-3: the producer.

struct Submitted {
  int number;
  uint64_t id;
};

absl::Status RunProducer(Engine& engine, std::vector<Submitted>* orders) {
  Say("=== Idempotent Task Producer ===");
  Say("");
  Say("--- Demo 1: Basic Task Submission ---");
  const TaskSpec first = OrderSpec(12345, "99.99", "alice");
  absl::StatusOr<SubmitResult> r1 = engine.Submit(first);
  if (!r1.ok()) return r1.status();
  Check(!r1->deduplicated, "a fresh key must create a task");
  Say(absl::StrCat("✓ Submitted task: ", r1->task_id,
                   " (key: ", first.idempotency_key, ")"));
  Say(absl::StrCat("  payload: ", first.payload));
  orders->push_back({12345, r1->task_id});

  Say("");
  Say("--- Demo 2: Idempotent Deduplication ---");
  Say("Attempting to submit same order again (should dedupe)...");
  absl::StatusOr<SubmitResult> r2 = engine.Submit(first);
  if (!r2.ok()) return r2.status();
  if (Check(r2->deduplicated && r2->task_id == r1->task_id,
            absl::StrCat("resubmission should return task ", r1->task_id,
                         ", got ", r2->task_id,
                         r2->deduplicated ? " (deduplicated)" : " (new)"))) {
    Say(absl::StrCat("✓ Deduplicated! Returned existing task: ", r2->task_id));
  }
  Say("Attempting to reuse the key with a different payload (should be "
      "refused)...");
  const TaskSpec conflicting = OrderSpec(12345, "89.99", "alice");
  absl::StatusOr<SubmitResult> r3 = engine.Submit(conflicting);
  if (Check(absl::IsAlreadyExists(r3.status()),
            absl::StrCat("a conflicting payload should be kAlreadyExists, "
                         "got ",
                         r3.status().ToString()))) {
    Say(absl::StrCat("✗ Refused: ", r3.status().ToString()));
  }

  Say("");
  Say("--- Demo 3: Submitting Multiple Unique Tasks ---");
  const std::pair<int, const char*> more[] = {
      {12346, "49.99"}, {12347, "199.99"}, {12348, "29.99"}};
  for (const auto& [number, amount] : more) {
    absl::StatusOr<SubmitResult> r =
        engine.Submit(OrderSpec(number, amount, "bob"));
    if (!r.ok()) return r.status();
    Check(!r->deduplicated, absl::StrCat(OrderKey(number), " is new"));
    Say(absl::StrCat("✓ Submitted: ", r->task_id, " (", OrderKey(number), ", $",
                     amount, ")"));
    orders->push_back({number, r->task_id});
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Demo 4: the workers.

// Claims and processes orders until every task is terminal.
void RunWorker(Engine* engine, const std::string& worker_id) {
  const std::string tag = absl::StrCat("[", worker_id, "] ");
  Say(absl::StrCat(tag, "Task Worker started"));
  const absl::Time give_up = absl::Now() + kPhaseTimeout;
  while (true) {
    if (!Check(absl::Now() < give_up,
               absl::StrCat(worker_id, " did not finish within ",
                            absl::FormatDuration(kPhaseTimeout)))) {
      return;
    }
    ClaimNextOptions options;
    options.type = std::string(kOrderType);
    options.lease = absl::Seconds(10);
    options.wait = absl::Milliseconds(250);
    absl::StatusOr<ClaimedTask> claimed = engine->ClaimNext(worker_id, options);
    if (absl::IsNotFound(claimed.status())) {
      // Nothing ready. Done only if nothing can become ready any more: a
      // task in backoff is PENDING (NextDueTime says until when), and a
      // claim still out may fail back to PENDING.
      absl::StatusOr<std::optional<absl::Time>> due =
          engine->NextDueTime(kOrderType);
      if (!CheckOk(due.status(), "NextDueTime")) return;
      absl::StatusOr<EngineStats> stats = engine->Stats();
      if (!CheckOk(stats.status(), "Stats")) return;
      if (!due->has_value() && stats->claimed == 0) {
        Say(absl::StrCat(tag, "No work left (all tasks terminal), exiting"));
        return;
      }
      continue;
    }
    if (!CheckOk(claimed.status(), absl::StrCat(worker_id, " ClaimNext"))) {
      return;
    }
    const Task& task = claimed->task;
    const uint64_t id = task.id();
    const uint32_t max_attempts = task.max_attempts();
    Say(absl::StrFormat("%sProcessing: %d (%s) - attempt %d/%d", tag, id,
                        task.type(), claimed->attempt, max_attempts));
    absl::SleepFor(kProcessingTime);

    if (std::optional<std::string> error =
            SimulatedFailure(task, claimed->attempt)) {
      absl::Status s = engine->Fail(claimed->claim, *error);
      if (!CheckOk(s, absl::StrCat(worker_id, " Fail(", id, ")"))) return;
      if (claimed->attempt < max_attempts) {
        Say(absl::StrFormat("%s↻ Retry queued: %d - %s (attempt %d/%d)", tag,
                            id, *error, claimed->attempt, max_attempts));
      } else {
        Say(absl::StrFormat("%s✗ Failed permanently: %d - %s (attempt %d/%d)",
                            tag, id, *error, claimed->attempt, max_attempts));
      }
      continue;
    }
    const std::string result = OrderResult(task);
    absl::Status s = engine->Complete(claimed->claim, result);
    if (!CheckOk(s, absl::StrCat(worker_id, " Complete(", id, ")"))) return;
    Say(absl::StrFormat("%s✓ Completed: %d - %s", tag, id, result));
  }
}

absl::Status RunWorkers(Engine& engine) {
  Say("");
  Say("--- Demo 4: Workers Claim, Complete, Fail and Retry ---");
  // A snapshot now, so that demo 6's restart loads it and replays only the
  // records the workers add.
  absl::Status snapshot = engine.Snapshot();
  if (!snapshot.ok()) return snapshot;
  absl::StatusOr<EngineStats> stats = engine.Stats();
  if (!stats.ok()) return stats.status();
  Say(absl::StrCat("✓ Snapshot written at LSN ", stats->last_snapshot_lsn,
                   " (the restart in demo 6 starts from it)"));
  Say(absl::StrCat("Two workers compete with ClaimNext; retry backoff ",
                   absl::FormatDuration(kBackoff), " doubling, no jitter, ",
                   kMaxAttempts, " attempts per task"));
  Say("Processing loop active - waiting for tasks...");
  std::vector<std::thread> workers;
  for (const char* name : {"worker-1", "worker-2"}) {
    workers.emplace_back(RunWorker, &engine, std::string(name));
  }
  for (std::thread& worker : workers) worker.join();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Demo 5: lookups.

absl::Status RunLookups(Engine& engine, const std::vector<Submitted>& orders) {
  Say("");
  Say("--- Demo 5: Looking Up Tasks ---");
  const std::map<int, std::pair<TaskStatus, uint32_t>> expected = {
      {12345, {COMPLETED, 1}},
      {12346, {COMPLETED, 2}},
      {12347, {COMPLETED, 1}},
      {12348, {FAILED, 3}}};
  for (const Submitted& order : orders) {
    absl::StatusOr<Task> task = engine.Get(order.id);
    if (!task.ok()) return task.status();
    const auto& [status, attempts] = expected.at(order.number);
    Check(task->status() == status && task->attempts() == attempts,
          absl::StrCat(OrderKey(order.number), " should be ",
                       StatusName(status), " after ", attempts,
                       " attempts; it is ", task->ShortDebugString()));
    if (status == COMPLETED) {
      Check(task->result() == OrderResult(*task),
            absl::StrCat(OrderKey(order.number), " result: ", task->result()));
    }
  }

  absl::StatusOr<Task> by_id = engine.Get(orders[0].id);
  if (!by_id.ok()) return by_id.status();
  Say(absl::StrFormat("Get(%d): %s %s after %d/%d attempts, result: %s",
                      by_id->id(), by_id->idempotency_key(),
                      StatusName(by_id->status()), by_id->attempts(),
                      by_id->max_attempts(), by_id->result()));

  absl::StatusOr<Task> by_key = engine.GetByIdempotencyKey(OrderKey(12346));
  if (!by_key.ok()) return by_key.status();
  Say(absl::StrFormat(
      "GetByIdempotencyKey(\"%s\"): task %d %s after %d/%d attempts, "
      "result: %s (last error: %s)",
      by_key->idempotency_key(), by_key->id(), StatusName(by_key->status()),
      by_key->attempts(), by_key->max_attempts(), by_key->result(),
      by_key->last_error()));

  std::optional<Task> failed_task;
  for (TaskStatus status : {COMPLETED, FAILED, PENDING}) {
    absl::StatusOr<std::vector<Task>> tasks = ListAll(engine, status);
    if (!tasks.ok()) return tasks.status();
    std::vector<std::string> entries;
    for (const Task& task : *tasks) {
      entries.push_back(absl::StrCat(task.id(), " ", task.idempotency_key()));
      if (status == FAILED) failed_task = task;
    }
    Say(absl::StrCat("List(", StatusName(status), "): ", tasks->size(),
                     tasks->size() == 1 ? " task" : " tasks",
                     entries.empty() ? "" : " [", absl::StrJoin(entries, ", "),
                     entries.empty() ? "" : "]"));
    const size_t want = status == COMPLETED ? 3 : status == FAILED ? 1 : 0;
    Check(tasks->size() == want,
          absl::StrCat("List(", StatusName(status), ") should have ", want));
  }
  if (failed_task.has_value()) {
    absl::Status s = PrintHistory(engine, *failed_task);
    if (!s.ok()) return s;
  }

  absl::StatusOr<EngineStats> stats = engine.Stats();
  if (!stats.ok()) return stats.status();
  Say(absl::StrCat("Stats: ", stats->tasks, " tasks, ", stats->claims,
                   " claims, ", stats->completions, " completions, ",
                   stats->failed_attempts, " failed attempts, ",
                   stats->deduplicated, " deduplicated submits, ",
                   stats->fsyncs, " fsyncs, LSN ", stats->last_lsn));
  Check(stats->claims == 7 && stats->completions == 3 &&
            stats->failed_attempts == 4,
        "expected 7 claims, 3 completions and 4 failed attempts");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Demo 6: clean restart.

absl::Status RunRestart(std::unique_ptr<Engine>& engine, const std::string& dir,
                        const Submitted& first_order) {
  Say("");
  Say("--- Demo 6: Restart (Close, then Open the same directory) ---");
  absl::StatusOr<StateDump> before = DumpState(*engine);
  if (!before.ok()) return before.status();
  absl::StatusOr<EngineStats> stats = engine->Stats();
  if (!stats.ok()) return stats.status();
  const uint64_t snapshot_lsn = stats->last_snapshot_lsn;
  absl::Status closed = engine->Close();
  if (!closed.ok()) return closed;
  engine.reset();
  Say(absl::StrCat("✓ Engine closed with ", before->tasks.size(),
                   " tasks (last LSN ", stats->last_lsn, ")"));

  absl::StatusOr<std::unique_ptr<Engine>> reopened = OpenEngine(dir);
  if (!reopened.ok()) return reopened.status();
  engine = *std::move(reopened);
  const RecoveryReport report = engine->Recovery();
  PrintRecovery(report);
  Check(report.snapshot_lsn == snapshot_lsn,
        absl::StrCat("recovery should start from the snapshot at LSN ",
                     snapshot_lsn, ", used ", report.snapshot_lsn));
  Check(report.last_lsn == stats->last_lsn,
        absl::StrCat("last LSN should be ", stats->last_lsn, ", is ",
                     report.last_lsn));

  absl::StatusOr<StateDump> after = DumpState(*engine);
  if (!after.ok()) return after.status();
  const size_t recovered = CompareDumps(*before, *after, /*exact=*/true);
  if (recovered > 0) {
    Say(absl::StrCat("✓ all ", recovered,
                     " tasks, results and histories recovered (compared "
                     "field by field with the state before Close)"));
  }

  Say("Resubmitting order-12345 after the restart...");
  absl::StatusOr<SubmitResult> again =
      engine->Submit(OrderSpec(12345, "99.99", "alice"));
  if (!again.ok()) return again.status();
  absl::StatusOr<Task> task = engine->Get(again->task_id);
  if (!task.ok()) return task.status();
  if (Check(again->deduplicated && again->task_id == first_order.id,
            absl::StrCat("order-12345 should dedupe to task ", first_order.id,
                         " after the restart"))) {
    Say(absl::StrCat("✓ Deduplicated! Returned existing task: ", again->task_id,
                     " (", StatusName(task->status()),
                     ", result kept: ", task->result(), ")"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Demo 7: kill -9 mid-work.
//
// The child reports each acknowledged call to the parent over a pipe, one
// tab-separated line per event, written only after the call returned OK:
//   opened     <records replayed>
//   submitted  <key> <task id> <amount>
//   claimed    <task id> <key> <attempt> <max attempts>
//   completed  <task id> <result>
//   error      <message>
// Only the parent prints, so the output stays in order.

void WriteLine(int fd, const std::vector<std::string>& fields) {
  const std::string line = absl::StrCat(absl::StrJoin(fields, "\t"), "\n");
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);  // The parent is gone; nobody to report to.
    written += static_cast<size_t>(n);
  }
}

[[noreturn]] void RunCrashChild(const std::string& dir, int first_order,
                                int report_fd) {
  absl::StatusOr<std::unique_ptr<Engine>> opened = OpenEngine(dir);
  if (!opened.ok()) {
    WriteLine(report_fd, {"error", opened.status().ToString()});
    _exit(1);
  }
  Engine& engine = **opened;
  WriteLine(report_fd,
            {"opened", absl::StrCat(engine.Recovery().records_replayed)});
  for (int i = 0; i < kCrashOrders; ++i) {
    const int number = first_order + i;
    const TaskSpec spec = CrashOrderSpec(number, i);
    absl::StatusOr<SubmitResult> submitted = engine.Submit(spec);
    if (!submitted.ok()) {
      WriteLine(report_fd, {"error", submitted.status().ToString()});
      _exit(1);
    }
    WriteLine(report_fd, {"submitted", spec.idempotency_key,
                          absl::StrCat(submitted->task_id),
                          PayloadField(spec.payload, "amount")});

    ClaimNextOptions options;
    options.type = std::string(kOrderType);
    options.lease = kCrashLease;
    options.wait = absl::Seconds(1);
    absl::StatusOr<ClaimedTask> claimed =
        engine.ClaimNext("crash-worker", options);
    if (!claimed.ok()) {
      WriteLine(report_fd, {"error", claimed.status().ToString()});
      _exit(1);
    }
    const Task& task = claimed->task;
    WriteLine(
        report_fd,
        {"claimed", absl::StrCat(task.id()), task.idempotency_key(),
         absl::StrCat(claimed->attempt), absl::StrCat(task.max_attempts())});
    absl::SleepFor(kProcessingTime);  // The parent's SIGKILL lands here.
    const std::string result = OrderResult(task);
    absl::Status s = engine.Complete(claimed->claim, result);
    if (!s.ok()) {
      WriteLine(report_fd, {"error", s.ToString()});
      _exit(1);
    }
    WriteLine(report_fd, {"completed", absl::StrCat(task.id()), result});
  }
  absl::Status closed = engine.Close();
  _exit(closed.ok() ? 0 : 1);
}

// Reads the child's report lines. Next() returns false at EOF or after
// kPhaseTimeout without a complete line.
class ReportReader {
 public:
  explicit ReportReader(int fd) : fd_(fd) {}

  bool Next(std::string* line) {
    const absl::Time deadline = absl::Now() + kPhaseTimeout;
    while (true) {
      const size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        *line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return true;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        timed_out_ = true;
        return false;
      }
      pollfd pfd = {fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, absl::ToInt64Milliseconds(left) + 1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // EOF: the child is gone.
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  bool timed_out() const { return timed_out_; }

 private:
  const int fd_;
  std::string buffer_;
  bool timed_out_ = false;
};

struct ChildEvent {
  std::vector<std::string> fields;
  bool after_kill;  // Read after SIGKILL was sent (still acknowledged).
};

// The highest N of the "order-N" keys in the engine, or 12348 (the last
// order of demo 3) if there are none higher.
absl::StatusOr<int> LastOrderNumber(Engine& engine) {
  absl::StatusOr<std::vector<Task>> tasks = ListAll(engine, std::nullopt);
  if (!tasks.ok()) return tasks.status();
  int last = 12348;
  for (const Task& task : *tasks) {
    int number = 0;
    absl::string_view key = task.idempotency_key();
    if (absl::ConsumePrefix(&key, "order-") && absl::SimpleAtoi(key, &number)) {
      last = std::max(last, number);
    }
  }
  return last;
}

// Whether a report line has the fields its kind needs (see above).
bool WellFormed(const std::vector<std::string>& fields) {
  const std::map<std::string, size_t> sizes = {{"opened", 2},
                                               {"submitted", 4},
                                               {"claimed", 5},
                                               {"completed", 3},
                                               {"error", 2}};
  auto it = sizes.find(fields[0]);
  return it != sizes.end() && fields.size() == it->second;
}

// Prints one child event the way a worker line reads.
void PrintChildEvent(const ChildEvent& event, pid_t pid) {
  const std::vector<std::string>& f = event.fields;
  const std::string tag = absl::StrCat("[crash-worker pid ", pid, "] ");
  const std::string late = event.after_kill ? "  (read after SIGKILL)" : "";
  if (f[0] == "opened") {
    Say(absl::StrCat(tag, "Opened the engine (sync_mode always), ", f[1],
                     " records replayed"));
  } else if (f[0] == "submitted") {
    Say(absl::StrCat(tag, "✓ Submitted: ", f[2], " (", f[1], ", $", f[3],
                     ") - acknowledged", late));
  } else if (f[0] == "claimed") {
    Say(absl::StrCat(tag, "Processing: ", f[1], " (", kOrderType, ", ", f[2],
                     ") - attempt ", f[3], "/", f[4], late));
  } else if (f[0] == "completed") {
    Say(absl::StrCat(tag, "✓ Completed: ", f[1], " - ", f[2], late));
  } else {
    Say(absl::StrCat(tag, "✗ ", absl::StrJoin(f, " ")));
  }
}

// Checks every acknowledged event against the recovered engine.
void VerifyAcknowledged(Engine& engine, const std::vector<ChildEvent>& events) {
  int submissions = 0, claims = 0, completions = 0, missing = 0;
  for (const ChildEvent& event : events) {
    const std::vector<std::string>& f = event.fields;
    uint64_t id = 0;
    if (f[0] == "submitted") {
      ++submissions;
      absl::StatusOr<Task> task = engine.GetByIdempotencyKey(f[1]);
      if (!Check(task.ok() && absl::SimpleAtoi(f[2], &id) && task->id() == id,
                 absl::StrCat("acknowledged submission of ", f[1], " as task ",
                              f[2], " is lost: ", task.status().ToString()))) {
        ++missing;
      }
    } else if (f[0] == "claimed") {
      ++claims;
      uint32_t attempt = 0;
      absl::StatusOr<Task> task = absl::SimpleAtoi(f[1], &id)
                                      ? engine.Get(id)
                                      : absl::InvalidArgumentError(f[1]);
      if (!Check(task.ok() && absl::SimpleAtoi(f[3], &attempt) &&
                     task->attempts() >= attempt,
                 absl::StrCat("acknowledged claim of task ", f[1], " (attempt ",
                              f[3], ") is lost"))) {
        ++missing;
      }
    } else if (f[0] == "completed") {
      ++completions;
      absl::StatusOr<Task> task = absl::SimpleAtoi(f[1], &id)
                                      ? engine.Get(id)
                                      : absl::InvalidArgumentError(f[1]);
      if (!Check(task.ok() && task->status() == COMPLETED &&
                     task->result() == f[2],
                 absl::StrCat("acknowledged completion of task ", f[1],
                              " is lost"))) {
        ++missing;
      }
    }
  }
  Check(submissions > 0 && completions > 0,
        "the child acknowledged no submission or completion before SIGKILL");
  if (missing == 0) {
    Say(absl::StrCat("✓ all ", submissions + claims + completions,
                     " acknowledged events recovered (", submissions,
                     " submissions, ", claims, " claims, ", completions,
                     " completions)"));
  }
}

// Claims whatever the child left unfinished (its orphaned claim comes back
// when its lease expires) and completes it.
absl::Status FinishLeftovers(Engine& engine) {
  const std::string worker_id = "recovery-worker";
  const std::string tag = absl::StrCat("[", worker_id, "] ");
  const absl::Time give_up = absl::Now() + kPhaseTimeout;
  while (true) {
    absl::StatusOr<EngineStats> stats = engine.Stats();
    if (!stats.ok()) return stats.status();
    if (stats->pending == 0 && stats->claimed == 0) return absl::OkStatus();
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError(absl::StrCat(
          "leftover tasks not finished within ",
          absl::FormatDuration(kPhaseTimeout), " (", stats->pending,
          " pending, ", stats->claimed, " claimed)"));
    }
    ClaimNextOptions options;
    options.type = std::string(kOrderType);
    options.wait = kCrashLease + absl::Milliseconds(500);
    absl::StatusOr<ClaimedTask> claimed = engine.ClaimNext(worker_id, options);
    if (absl::IsNotFound(claimed.status())) continue;
    if (!claimed.ok()) return claimed.status();
    const Task& task = claimed->task;
    Say(absl::StrFormat(
        "%sProcessing: %d (%s, %s) - attempt %d/%d%s", tag, task.id(),
        task.type(), task.idempotency_key(), claimed->attempt,
        task.max_attempts(),
        task.last_error().empty()
            ? ""
            : absl::StrCat(" (previous attempt: ", task.last_error(), ")")));
    const std::string result = OrderResult(task);
    absl::Status s = engine.Complete(claimed->claim, result);
    if (!s.ok()) return s;
    Say(absl::StrFormat("%s✓ Completed: %d - %s", tag, task.id(), result));
    absl::StatusOr<Task> done = engine.Get(task.id());
    if (!done.ok()) return done.status();
    absl::Status h = PrintHistory(engine, *done);
    if (!h.ok()) return h;
  }
}

absl::Status RunCrash(const std::string& dir) {
  Say("");
  Say("--- Demo 7: kill -9 Mid-Work (SIGKILL, then recover) ---");
  // What the directory holds now, to check that the crash loses none of it.
  int first_order = 0;
  StateDump before;
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = OpenEngine(dir);
    if (!engine.ok()) return engine.status();
    absl::StatusOr<int> last = LastOrderNumber(**engine);
    if (!last.ok()) return last.status();
    first_order = *last + 1;
    // Only terminal tasks are sure to stay as they are: the child may claim
    // anything left PENDING.
    absl::StatusOr<StateDump> dump = DumpState(**engine);
    if (!dump.ok()) return dump.status();
    for (const auto& [id, bytes] : dump->tasks) {
      absl::StatusOr<Task> task = (*engine)->Get(id);
      if (!task.ok()) return task.status();
      if (task->status() == COMPLETED || task->status() == FAILED ||
          task->status() == CANCELLED) {
        before.tasks[id] = bytes;
        before.text[id] = dump->text.at(id);
      }
    }
    absl::Status closed = (*engine)->Close();
    if (!closed.ok()) return closed;
    // Destroyed here: the child must not inherit the directory lock, and
    // no engine thread may be running when we fork.
  }

  Say(absl::StrCat("Forking a child to submit and process ",
                   OrderKey(first_order), "..",
                   OrderKey(first_order + kCrashOrders - 1), " in ", dir));
  Say(absl::StrCat("The parent sends it SIGKILL right after its ",
                   kKillAfterClaims, "th claim, while it is mid-processing"));
  int fds[2];
  if (::pipe(fds) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    ::close(fds[0]);
    RunCrashChild(dir, first_order, fds[1]);
  }
  ::close(fds[1]);

  std::vector<ChildEvent> events;
  ReportReader reader(fds[0]);
  bool killed = false;
  int claims = 0;
  std::string line;
  while (reader.Next(&line)) {
    ChildEvent event{absl::StrSplit(line, '\t'), killed};
    if (!Check(WellFormed(event.fields),
               absl::StrCat("malformed report from the child: ", line))) {
      continue;
    }
    PrintChildEvent(event, pid);
    const std::string kind = event.fields[0];
    std::string claimed_task;
    if (kind == "claimed") {
      ++claims;
      claimed_task = absl::StrCat(event.fields[1], " (", event.fields[2], ")");
    }
    if (kind != "opened" && kind != "error") events.push_back(std::move(event));
    if (!killed && claims == kKillAfterClaims) {
      ::kill(pid, SIGKILL);
      killed = true;
      Say(absl::StrCat("✗ SIGKILL sent to pid ", pid, " while it processes ",
                       claimed_task, "; ", events.size(),
                       " events acknowledged so far"));
    }
  }
  ::close(fds[0]);
  if (!killed) ::kill(pid, SIGKILL);  // Timed out or failed: don't leak it.
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  Check(!reader.timed_out(), "the child stopped reporting (timeout)");
  const bool died_of_sigkill =
      WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL;
  if (Check(killed && died_of_sigkill,
            absl::StrCat("the child should die of SIGKILL mid-work; wait "
                         "status ",
                         wait_status))) {
    Say(absl::StrCat("✓ Child pid ", pid, " died of SIGKILL (signal ",
                     WTERMSIG(wait_status), ") with ", events.size(),
                     " acknowledged events; no Close(), no flush"));
  }

  Say("Reopening the directory after the kill...");
  absl::StatusOr<std::unique_ptr<Engine>> reopened = OpenEngine(dir);
  if (!reopened.ok()) return reopened.status();
  Engine& engine = **reopened;
  PrintRecovery(engine.Recovery());

  VerifyAcknowledged(engine, events);
  absl::StatusOr<StateDump> after = DumpState(engine);
  if (!after.ok()) return after.status();
  const size_t kept = CompareDumps(before, *after, /*exact=*/false);
  if (kept > 0 || before.tasks.empty()) {
    Say(absl::StrCat("✓ all ", before.tasks.size(),
                     " earlier finished tasks recovered unchanged"));
  }

  // What the kill interrupted.
  for (TaskStatus status : {CLAIMED, PENDING}) {
    absl::StatusOr<std::vector<Task>> tasks = ListAll(engine, status);
    if (!tasks.ok()) return tasks.status();
    for (const Task& task : *tasks) {
      Say(absl::StrFormat(
          "Interrupted: %d (%s) is %s%s, attempt %d/%d", task.id(),
          task.idempotency_key(), StatusName(task.status()),
          task.claimed_by().empty()
              ? ""
              : absl::StrCat(
                    " by ", task.claimed_by(), ", lease ends ",
                    absl::FormatDuration(absl::Trunc(
                        absl::FromUnixMicros(task.lease_deadline_micros()) -
                            absl::Now(),
                        absl::Milliseconds(1))),
                    " from now"),
          task.attempts(), task.max_attempts()));
    }
  }

  Say("Resubmitting every order the child got acknowledged...");
  for (const ChildEvent& event : events) {
    const std::vector<std::string>& f = event.fields;
    if (f[0] != "submitted") continue;
    int number = 0;
    absl::string_view key = f[1];
    if (!absl::ConsumePrefix(&key, "order-") ||
        !absl::SimpleAtoi(key, &number)) {
      return absl::InternalError(absl::StrCat("bad key from child: ", f[1]));
    }
    absl::StatusOr<SubmitResult> again =
        engine.Submit(CrashOrderSpec(number, number - first_order));
    if (!again.ok()) return again.status();
    if (Check(again->deduplicated && absl::StrCat(again->task_id) == f[2],
              absl::StrCat(f[1], " should dedupe to task ", f[2], ", got ",
                           again->deduplicated ? "" : "a new task ",
                           again->task_id))) {
      Say(absl::StrCat("✓ Deduplicated! ", f[1],
                       " returned existing task: ", again->task_id));
    }
  }

  Say("Finishing what the child left behind...");
  absl::Status finished = FinishLeftovers(engine);
  if (!finished.ok()) return finished;
  for (int i = 0; i < kCrashOrders; ++i) {
    absl::StatusOr<Task> task =
        engine.GetByIdempotencyKey(OrderKey(first_order + i));
    if (absl::IsNotFound(task.status())) continue;  // Never submitted.
    if (!task.ok()) return task.status();
    Check(task->status() == COMPLETED && task->result() == OrderResult(*task),
          absl::StrCat(task->idempotency_key(),
                       " should be COMPLETED: ", task->ShortDebugString()));
  }
  absl::StatusOr<EngineStats> stats = engine.Stats();
  if (!stats.ok()) return stats.status();
  Say(absl::StrCat("✓ Every submitted order is COMPLETED: ", stats->completed,
                   " completed, ", stats->failed, " failed, ", stats->pending,
                   " pending, ", stats->claimed, " claimed"));
  return engine.Close();
}

// ---------------------------------------------------------------------------

int Run() {
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) {
    char templ[] = "/tmp/taskwal-demo.XXXXXX";
    if (::mkdtemp(templ) == nullptr) {
      std::fprintf(stderr, "mkdtemp: %s\n", std::strerror(errno));
      return 1;
    }
    dir = templ;
  }
  Say("=== taskwal: idempotent tasks on a write-ahead log ===");
  Say(absl::StrCat("Data directory: ", dir));

  absl::Status status;
  if (absl::GetFlag(FLAGS_crash)) {
    status = RunCrash(dir);
  } else {
    Say("");
    absl::StatusOr<std::unique_ptr<Engine>> opened = OpenEngine(dir);
    if (!opened.ok()) {
      Say(absl::StrCat("✗ Open(", dir, "): ", opened.status().ToString()));
      return 1;
    }
    std::unique_ptr<Engine> engine = *std::move(opened);
    absl::StatusOr<EngineStats> stats = engine->Stats();
    if (stats.ok() && stats->tasks != 0) {
      Say(absl::StrCat("✗ ", dir, " already holds ", stats->tasks,
                       " tasks; demos 1-6 need a fresh directory (run with "
                       "--crash to re-run only the kill -9 demo on it)"));
      return 2;
    }
    std::vector<Submitted> orders;
    status = stats.status();
    if (status.ok()) status = RunProducer(*engine, &orders);
    if (status.ok()) status = RunWorkers(*engine);
    if (status.ok()) status = RunLookups(*engine, orders);
    if (status.ok()) status = RunRestart(engine, dir, orders.front());
    if (status.ok()) status = engine->Close();
    engine.reset();
    if (status.ok()) status = RunCrash(dir);
  }

  Say("");
  if (!status.ok()) {
    Say(absl::StrCat("✗ Demo aborted: ", status.ToString()));
    return 1;
  }
  if (failed_checks.load() != 0) {
    Say(absl::StrCat("✗ ", failed_checks.load(), " checks FAILED"));
    return 1;
  }
  Say(absl::StrCat("✓ All checks passed. The data is still in ", dir));
  return 0;
}

}  // namespace
}  // namespace taskwal::examples

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs the seed's idempotent-tasks demos on a real taskwal data "
      "directory, including a clean restart and a kill -9 restart.\n"
      "  demo [--data_dir=DIR]          demos 1-7\n"
      "  demo --crash --data_dir=DIR    demo 7 only, on an existing DIR");
  absl::ParseCommandLine(argc, argv);
  return taskwal::examples::Run();
}
