// Real crashes: a child process (crash_child) runs a concurrent workload on
// the POSIX file system and reports every acknowledged transition on a pipe;
// at a random moment it gets SIGKILL. The engine is then opened in this
// process on the same directory and checked against all acknowledgements of
// all earlier cycles (the oracle):
//   - Open succeeds: kill -9 loses nothing in kAlways or kInterval mode
//     (both hand every record to the OS before acknowledging it);
//   - every acknowledged submit is there, under its key, with its payload;
//   - every acknowledged claim, completion and failure is in the task's
//     history, an acknowledged completion is final (COMPLETED, its result),
//     and an acknowledged heartbeat's deadline holds while the claim does;
//   - no idempotency key names two tasks, and Stats() agrees with List().
// A call in flight at the moment of the kill may go either way.
//
// Cycles per sync mode: --crash_cycles=N, else $TASKWAL_CRASH_CYCLES, else
// 150 (100 under sanitizers). On a failure the data directory is copied to
// $TEST_UNDECLARED_OUTPUTS_DIR.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
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
#include "tests/crash_protocol.h"

namespace taskwal {
namespace crash {
namespace {

// Per sync mode and partition count.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kDefaultCycles = 60;
#else
constexpr int kDefaultCycles = 100;
#endif

int g_crash_cycles = 0;  // From --crash_cycles; 0: not given.

int CyclesPerMode() {
  if (g_crash_cycles > 0) return g_crash_cycles;
  int cycles = 0;
  const char* env = std::getenv("TASKWAL_CRASH_CYCLES");
  if (env != nullptr && absl::SimpleAtoi(env, &cycles) && cycles > 0) {
    return cycles;
  }
  return kDefaultCycles;
}

// Keys per child: half already used (deduplicated submits check the key
// index after recovery), half fresh (new tasks for the workload).
constexpr uint64_t kKeySpace = 80;

std::string ChildPath() { return test_util::RunfilePath("tests/crash_child"); }

std::string FreshDir(absl::string_view name) {
  return test_util::FreshTestDir(name);
}

// File names and sizes, for failure messages.
std::string DescribeDir(const std::string& dir) {
  std::map<std::string, uintmax_t> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code size_ec;
    const uintmax_t size = entry.file_size(size_ec);
    files[entry.path().filename().string()] = size_ec ? 0 : size;
  }
  std::string out = absl::StrCat("contents of ", dir, ":");
  if (ec) absl::StrAppend(&out, " ", ec.message());
  for (const auto& [name, size] : files) {
    absl::StrAppend(&out, "\n  ", name, " ", size);
  }
  return out;
}

// Keeps the evidence of a failed cycle (bazel zips the outputs directory).
void PreserveDir(const std::string& dir, absl::string_view label) {
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  if (outputs == nullptr) return;
  std::error_code ec;
  std::filesystem::copy(dir, absl::StrCat(outputs, "/", label),
                        std::filesystem::copy_options::recursive, ec);
}

// A crash_child process with its stdout on a pipe (tests/child_process.h).
using Child = test_util::ChildProcess;

// Reads until the child's ready line, "R <pid>"; kFailedPrecondition if it
// ends first.
absl::Status WaitReady(Child& child) {
  absl::StatusOr<std::string> line = child.ReadLine(absl::InfiniteDuration());
  if (!line.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "child ended before it was ready: ", line.status().message()));
  }
  if (*line != absl::StrCat("R ", child.pid())) {
    return absl::InternalError(absl::StrCat("bad ready line: ", *line));
  }
  return absl::OkStatus();
}

using Event = std::tuple<int, std::string, uint32_t>;  // event, worker, attempt
using ClaimKey = std::tuple<uint64_t, std::string, uint32_t>;

// Everything the children were told, accumulated over all cycles of a mode.
struct Oracle {
  std::map<std::string, uint64_t> id_by_key;
  std::map<uint64_t, std::string> key_by_id;
  std::map<uint64_t, std::map<Event, int>> events;  // task -> event -> count
  std::map<uint64_t, std::string> completed;        // task -> result
  std::map<ClaimKey, int64_t> heartbeat_deadline;   // latest acknowledged
  uint64_t next_fresh_key = 0;  // One past the highest acknowledged key.
  uint64_t acknowledged = 0;

  void Acknowledge(const std::string& line);
};

void Oracle::Acknowledge(const std::string& line) {
  const std::vector<std::string> f = absl::StrSplit(line, ' ');
  auto number = [&](size_t i) {
    uint64_t n = 0;
    EXPECT_TRUE(i < f.size() && absl::SimpleAtoi(f[i], &n)) << line;
    return n;
  };
  ++acknowledged;
  if (f[0] == "S" && f.size() == 4) {
    const std::string& key = f[1];
    const uint64_t id = number(2);
    EXPECT_EQ(number(3), Fnv1a(PayloadFor(key))) << line;
    auto [it, inserted] = id_by_key.emplace(key, id);
    EXPECT_EQ(it->second, id) << "key " << key << " was acknowledged as task "
                              << it->second << " and now as " << line;
    auto [kt, fresh_id] = key_by_id.emplace(id, key);
    EXPECT_EQ(kt->second, key) << "task " << id << " has two keys: " << line;
    uint64_t n = 0;
    EXPECT_TRUE(absl::SimpleAtoi(absl::string_view(key).substr(1), &n)) << line;
    next_fresh_key = std::max(next_fresh_key, n + 1);
  } else if (f[0] == "C" && f.size() == 4) {
    const uint64_t id = number(1);
    EXPECT_EQ(completed.count(id), 0u) << "completed task claimed: " << line;
    ++events[id][{HistoryEntry::CLAIMED, f[2], number(3)}];
  } else if (f[0] == "D" && f.size() == 5) {
    const uint64_t id = number(1);
    ++events[id][{HistoryEntry::COMPLETED, f[2], number(3)}];
    auto [it, inserted] = completed.emplace(id, f[4]);
    EXPECT_TRUE(inserted) << "task completed twice: " << line;
  } else if (f[0] == "F" && f.size() == 5) {
    const int event =
        number(4) == 1 ? HistoryEntry::FAILED : HistoryEntry::ATTEMPT_FAILED;
    ++events[number(1)][{event, f[2], number(3)}];
  } else if (f[0] == "H" && f.size() == 5) {
    int64_t& deadline = heartbeat_deadline[{number(1), f[2], number(3)}];
    deadline = std::max(deadline, static_cast<int64_t>(number(4)));
  } else {
    ADD_FAILURE() << "malformed line from the child: " << line;
  }
}

std::vector<Task> AllTasks(Engine* engine) {
  std::vector<Task> tasks;
  ListFilter filter;
  filter.limit = 10000;
  do {
    absl::StatusOr<ListPage> page = engine->List(filter);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    for (Task& t : page->tasks) tasks.push_back(std::move(t));
    filter.after_id = page->next_cursor;
  } while (filter.after_id != 0);
  return tasks;
}

void CheckAgainstOracle(Engine* engine, const Oracle& oracle) {
  std::map<uint64_t, Task> tasks;
  for (Task& t : AllTasks(engine)) {
    const uint64_t id = t.id();
    EXPECT_TRUE(tasks.emplace(id, std::move(t)).second)
        << "listed twice: " << id;
  }

  std::set<std::string> keys;
  uint64_t by_status[6] = {};
  uint64_t claim_events = 0;
  uint64_t completion_events = 0;
  for (const auto& [id, t] : tasks) {
    EXPECT_TRUE(keys.insert(t.idempotency_key()).second)
        << "key " << t.idempotency_key() << " names two tasks";
    absl::StatusOr<Task> by_key =
        engine->GetByIdempotencyKey(t.idempotency_key());
    ASSERT_TRUE(by_key.ok()) << by_key.status();
    EXPECT_EQ(by_key->id(), id);
    EXPECT_EQ(t.payload(), PayloadFor(t.idempotency_key())) << id;
    if (t.status() >= 0 && t.status() < 6) ++by_status[t.status()];
    absl::StatusOr<std::vector<HistoryEntry>> history = engine->History(id);
    ASSERT_TRUE(history.ok()) << history.status();
    std::map<Event, int> seen;
    for (const HistoryEntry& e : *history) {
      ++seen[{e.event(), e.worker_id(), e.attempt()}];
      claim_events += e.event() == HistoryEntry::CLAIMED;
      completion_events += e.event() == HistoryEntry::COMPLETED;
    }
    auto acked = oracle.events.find(id);
    if (acked == oracle.events.end()) continue;
    for (const auto& [event, count] : acked->second) {
      auto it = seen.find(event);
      EXPECT_GE(it == seen.end() ? 0 : it->second, count)
          << "acknowledged event lost: task " << id << " event "
          << HistoryEntry::Event_Name(std::get<0>(event)) << " worker "
          << std::get<1>(event) << " attempt " << std::get<2>(event);
    }
  }

  for (const auto& [key, id] : oracle.id_by_key) {
    auto it = tasks.find(id);
    if (it == tasks.end()) {
      ADD_FAILURE() << "acknowledged task " << id << " (" << key
                    << ") was lost";
      continue;
    }
    EXPECT_EQ(it->second.idempotency_key(), key) << id;
  }
  for (const auto& [id, events] : oracle.events) {
    EXPECT_EQ(tasks.count(id), 1u) << "task " << id << " with " << events.size()
                                   << " acknowledged events was lost";
  }
  for (const auto& [id, result] : oracle.completed) {
    auto it = tasks.find(id);
    if (it == tasks.end()) continue;  // Reported above (its submit was acked).
    EXPECT_EQ(it->second.status(), COMPLETED) << id;
    EXPECT_EQ(it->second.result(), result) << id;
  }
  for (const auto& [claim, deadline] : oracle.heartbeat_deadline) {
    const auto& [id, worker, attempt] = claim;
    auto it = tasks.find(id);
    if (it == tasks.end()) continue;
    const Task& t = it->second;
    if (t.status() == CLAIMED && t.claimed_by() == worker &&
        t.attempts() == attempt) {
      EXPECT_GE(t.lease_deadline_micros(), deadline)
          << "acknowledged heartbeat lost: task " << id << " " << worker;
    }
  }

  absl::StatusOr<EngineStats> stats = engine->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->tasks, tasks.size());
  EXPECT_EQ(stats->pending, by_status[PENDING]);
  EXPECT_EQ(stats->claimed, by_status[CLAIMED]);
  EXPECT_EQ(stats->completed, by_status[COMPLETED]);
  EXPECT_EQ(stats->failed, by_status[FAILED]);
  EXPECT_EQ(stats->cancelled, by_status[CANCELLED]);
  // Nothing is deleted and every event stays in History, so the totals that
  // survive restarts must match the tasks exactly.
  EXPECT_EQ(stats->submitted, tasks.size());
  EXPECT_EQ(stats->claims, claim_events);
  EXPECT_EQ(stats->completions, completion_events);
}

const char* ModeName(SyncMode mode) {
  return mode == SyncMode::kAlways ? "always" : "interval";
}

// Each sync mode with one partition and with sixteen (four client threads).
class CrashTest
    : public ::testing::TestWithParam<std::tuple<SyncMode, uint32_t>> {};

// Many cycles of: start the child (it recovers), let it work 1-40 ms, kill
// -9, recover here, check. The oracle accumulates across cycles, so a
// transition acknowledged in cycle 3 must still be there in cycle 150.
// A slow machine (TSan, a slow disk) gets more cycles, up to three times
// as many, until the workload got far enough to be worth something.
TEST_P(CrashTest, AcknowledgedTransitionsSurviveKillNine) {
  const SyncMode mode = std::get<0>(GetParam());
  const uint32_t partitions = std::get<1>(GetParam());
  const std::string dir =
      FreshDir(absl::StrCat("crash_", ModeName(mode), "_", partitions));
  const int cycles = CyclesPerMode();
  std::mt19937_64 rng(mode == SyncMode::kAlways ? 1 : 2);
  Oracle oracle;
  uint64_t torn_tails = 0;
  uint64_t snapshot_recoveries = 0;
  // Tasks in every state, recoveries from snapshots (checked below).
  auto far_enough = [&] {
    return oracle.id_by_key.size() > 100 && oracle.completed.size() > 50 &&
           snapshot_recoveries > 0;
  };
  for (int cycle = 0; cycle < 3 * cycles && (cycle < cycles || !far_enough());
       ++cycle) {
    const uint64_t seed = cycle + 1;
    const uint64_t key_base = oracle.next_fresh_key > kKeySpace / 2
                                  ? oracle.next_fresh_key - kKeySpace / 2
                                  : 0;
    const absl::Duration work = absl::Milliseconds(1 + rng() % 40);
    SCOPED_TRACE(absl::StrCat("mode ", ModeName(mode), " cycle ", cycle,
                              " seed ", seed, " key_base ", key_base, " work ",
                              absl::FormatDuration(work)));
    {
      Child child;
      ASSERT_TRUE(child
                      .Start({ChildPath(), "--data_dir=" + dir,
                              absl::StrCat("--sync_mode=", ModeName(mode)),
                              absl::StrCat("--seed=", seed),
                              absl::StrCat("--partitions=", partitions),
                              absl::StrCat("--key_base=", key_base),
                              absl::StrCat("--key_space=", kKeySpace)})
                      .ok());
      const absl::Status ready = WaitReady(child);
      if (!ready.ok())
        PreserveDir(dir, absl::StrCat(ModeName(mode), partitions, "_", cycle));
      ASSERT_TRUE(ready.ok()) << ready << "\n" << DescribeDir(dir);
      child.ReadFor(work);
      const absl::Status killed = child.Kill();
      for (const std::string& line : child.TakeLines()) {
        oracle.Acknowledge(line);
      }
      ASSERT_TRUE(killed.ok()) << killed;
    }

    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(CrashOptions(dir, mode, seed, partitions));
    if (!engine.ok())
      PreserveDir(dir, absl::StrCat(ModeName(mode), partitions, "_", cycle));
    ASSERT_TRUE(engine.ok()) << engine.status() << "\n" << DescribeDir(dir);
    torn_tails += (*engine)->Recovery().truncated_bytes > 0;
    snapshot_recoveries += (*engine)->Recovery().snapshot_lsn > 0;
    CheckAgainstOracle(engine->get(), oracle);
    if (HasFailure()) {
      PreserveDir(dir, absl::StrCat(ModeName(mode), partitions, "_", cycle));
      ADD_FAILURE() << DescribeDir(dir);
      return;
    }
    // Every tenth cycle hands the next one a snapshot, however little the
    // child got done: under TSan on a busy machine, the kill may cut short
    // every snapshot the child starts.
    if (cycle % 10 == 9) {
      ASSERT_TRUE((*engine)->Snapshot().ok());
    }
    ASSERT_TRUE((*engine)->Close().ok());
  }
  // Only worth something if the workload got far: tasks in every state,
  // recoveries from snapshots.
  EXPECT_GT(oracle.id_by_key.size(), 100u);
  EXPECT_GT(oracle.completed.size(), 50u);
  EXPECT_GT(snapshot_recoveries, 0u);
  RecordProperty("acknowledged", static_cast<int>(oracle.acknowledged));
  RecordProperty("tasks", static_cast<int>(oracle.id_by_key.size()));
  RecordProperty("torn_tails", static_cast<int>(torn_tails));
  RecordProperty("snapshot_recoveries", static_cast<int>(snapshot_recoveries));
  std::printf(
      "%s: %d cycles, %llu acknowledged, %zu tasks, %zu completed, "
      "%llu torn tails, %llu recoveries from a snapshot\n",
      ModeName(mode), cycles,
      static_cast<unsigned long long>(oracle.acknowledged),
      oracle.id_by_key.size(), oracle.completed.size(),
      static_cast<unsigned long long>(torn_tails),
      static_cast<unsigned long long>(snapshot_recoveries));
}

INSTANTIATE_TEST_SUITE_P(
    SyncModes, CrashTest,
    ::testing::Combine(::testing::Values(SyncMode::kAlways,
                                         SyncMode::kInterval),
                       ::testing::Values(1u, 16u)),
    [](const ::testing::TestParamInfo<std::tuple<SyncMode, uint32_t>>& info) {
      return absl::StrCat(ModeName(std::get<0>(info.param)), "_",
                          std::get<1>(info.param), "Partitions");
    });

// The directory lock holds across processes: while a child has the engine
// open, Open here fails, naming the child.
TEST(CrashLockTest, OpenWhileAnotherProcessHoldsTheDirectoryFails) {
  const std::string dir = FreshDir("crash_lock");
  Child child;
  ASSERT_TRUE(child
                  .Start({ChildPath(), "--data_dir=" + dir,
                          "--sync_mode=interval", "--seed=1"})
                  .ok());
  const absl::Status ready = WaitReady(child);
  ASSERT_TRUE(ready.ok()) << ready;
  const pid_t pid = child.pid();

  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Open(CrashOptions(dir, SyncMode::kAlways, 1, 0));
  ASSERT_FALSE(engine.ok());
  // kUnavailable: held by a live process, so a later try may succeed.
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kUnavailable)
      << engine.status();
  EXPECT_TRUE(absl::StrContains(engine.status().message(), absl::StrCat(pid)))
      << engine.status() << " does not name pid " << pid;

  ASSERT_TRUE(child.Kill().ok());
  // The lock died with its holder.
  engine = Engine::Open(CrashOptions(dir, SyncMode::kAlways, 1, 0));
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_TRUE((*engine)->Close().ok());
}

}  // namespace
}  // namespace crash
}  // namespace taskwal

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--crash_cycles=")) continue;
    if (!absl::SimpleAtoi(arg, &taskwal::crash::g_crash_cycles) ||
        taskwal::crash::g_crash_cycles < 1) {
      std::fprintf(stderr, "bad flag: %s\n", argv[i]);
      return 2;
    }
  }
  return RUN_ALL_TESTS();
}
