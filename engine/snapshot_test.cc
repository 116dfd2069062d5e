#include "engine/snapshot.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "engine/partitioning.h"
#include "engine/snapshot.pb.h"
#include "engine/state_machine.h"
#include "engine/task_table.h"
#include "engine/transition.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "taskwal/fault_injection_env.h"
#include "taskwal/task.pb.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::engine {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::IsOkAndHolds;
using ::taskwal::wal::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
constexpr char kDir[] = "/db";
constexpr int kShards = 4;
constexpr size_t kMaxHistory = 6;
// The first segment the fixture's snapshots name: unlike their LSNs, so a
// file named by the LSN would not be found.
constexpr uint64_t kFirstSegment = 7;

// A task in readable form, its payload (up to tens of KB here) summarized.
std::string TaskString(const Task& task) {
  Task copy = task;
  copy.clear_payload();
  return absl::StrCat(
      copy.ShortDebugString(), " payload_bytes=", task.payload().size(),
      " payload_hash=", std::hash<std::string>()(task.payload()));
}

// Everything a snapshot must carry, in a comparable, readable form: every
// task with its history and last LSN, the key index, the counters and the id
// counters.
std::string Dump(const StateMachine& sm) {
  std::map<uint64_t, std::pair<std::string, std::string>> tasks;  // key, dump
  sm.table().ForEach([&](const TaskEntry& e) {
    std::string s =
        absl::StrCat(TaskString(e.ToTask()), " last_lsn=", e.state.last_lsn);
    for (const HistoryEntry& h : e.History()) {
      absl::StrAppend(&s, "\n    history ", h.ShortDebugString());
    }
    tasks[e.id()] = {std::string(e.idempotency_key()), std::move(s)};
  });
  std::string out;
  for (const auto& [id, task] : tasks) {
    // Outside ForEach: the key may live in the shard ForEach holds.
    absl::StrAppend(&out, "task ", id, ": ", task.second, "\n  key owner ",
                    sm.table().LookupKey(task.first).value_or(0), "\n");
  }
  const Counters& c = sm.counters();
  absl::StrAppend(&out, "by_status");
  for (uint64_t n : c.by_status) absl::StrAppend(&out, " ", n);
  absl::StrAppend(
      &out, "\nsubmitted ", c.submitted, " claims ", c.claims, " completions ",
      c.completions, " failed_attempts ", c.failed_attempts, " lease_expiries ",
      c.lease_expiries, " retries ", c.retries, " cancellations ",
      c.cancellations, " deletions ", c.deletions, " retention_removals ",
      c.retention_removals, " transitions ", c.transitions, "\nnext_task_id ",
      sm.next_task_id(), " next_claim_token ", sm.next_claim_token(),
      " last_applied_lsn ", sm.last_applied_lsn(), "\n");
  // By type, sorted: the counts and when the oldest ready task became
  // ready (delayed ones counted as due), both rebuilt from the tasks.
  std::map<std::string, std::string> types;
  for (const auto& [type, counts] : c.by_type) {
    std::string& line = types[type];
    for (uint64_t n : counts.by_status) absl::StrAppend(&line, " ", n);
    absl::StrAppend(&line, " oldest_ready ",
                    sm.scheduler().OldestReady(type, INT64_MAX).value_or(-1));
  }
  for (const auto& [type, line] : types) {
    absl::StrAppend(&out, "type ", type, line, "\n");
  }
  return out;
}

// Applies random transitions that fit the current state, as the engine's
// live path would decide them, with ids of the state machine's partition.
// Not thread-safe: the caller serializes it with every other mutation of
// the state machine.
class Workload {
 public:
  Workload(uint64_t seed, size_t payload_bytes)
      : rng_(seed), payload_bytes_(payload_bytes) {}

  absl::Status Submit(StateMachine& sm, int count = 1) {
    Transition t = Stamped();
    for (int i = 0; i < count; ++i) {
      const uint64_t id = sm.next_task_id() + uint64_t{sm.partitions()} * i;
      Task* task = t.mutable_submit()->add_tasks();
      task->set_id(id);
      task->set_idempotency_key(absl::StrCat("key-", id));
      task->set_type(rng_() % 2 ? "a" : "b");
      task->set_payload(std::string(payload_bytes_ + rng_() % 16,
                                    static_cast<char>('a' + id % 26)));
      task->set_priority(static_cast<int32_t>(rng_() % 3));
      task->set_status(PENDING);
      task->set_max_attempts(1 + rng_() % 3);
      task->set_created_micros(now_);
    }
    return Apply(sm, t);
  }

  // One transition on a random task of the partition, dead or alive (or a
  // submit).
  absl::Status Step(StateMachine& sm) {
    const uint64_t first = FirstTaskId(sm.partition(), sm.partitions());
    const uint64_t ids_handed_out =
        (sm.next_task_id() - first) / sm.partitions();
    const uint64_t id =
        ids_handed_out > 0 ? first + sm.partitions() * (rng_() % ids_handed_out)
                           : 0;
    std::optional<Task> task = sm.table().GetTask(id);
    if (!task.has_value() || rng_() % 10 == 0) return Submit(sm);
    Transition t = Stamped();
    const int dice = static_cast<int>(rng_() % 10);
    switch (task->status()) {
      case PENDING:
        if (dice < 6) {
          ClaimRecord* c = t.mutable_claim();
          c->set_task_id(id);
          c->set_worker_id(absl::StrCat("w", rng_() % 3));
          c->set_claim_token(sm.next_claim_token());
          c->set_lease_deadline_micros(now_ + 1000);
        } else if (dice < 8) {
          t.mutable_cancel()->set_task_id(id);
        } else {
          t.mutable_retry()->set_task_id(id);
        }
        break;
      case CLAIMED:
        if (dice < 4) {
          t.mutable_complete()->set_task_id(id);
          t.mutable_complete()->set_result(absl::StrCat("result-", id));
        } else if (dice < 7) {
          FailRecord* f = t.mutable_fail();
          f->set_task_id(id);
          f->set_error(absl::StrCat("error-", now_));
          f->set_retry_at_micros(now_ + 500);
          f->set_lease_expired(dice == 6);
        } else if (dice < 9) {
          t.mutable_heartbeat()->set_task_id(id);
          t.mutable_heartbeat()->set_lease_deadline_micros(now_ + 2000);
        } else {
          t.mutable_retry()->set_task_id(id);
        }
        break;
      case FAILED:
        if (dice < 5) {
          t.mutable_retry()->set_task_id(id);
        } else {
          t.mutable_delete_()->set_task_id(id);
        }
        break;
      default:  // COMPLETED, CANCELLED.
        if (dice < 5) return Submit(sm);
        t.mutable_delete_()->set_task_id(id);
        t.mutable_delete_()->set_retention(dice == 9);
        break;
    }
    return Apply(sm, t);
  }

 private:
  Transition Stamped() {
    now_ += 1 + static_cast<int64_t>(rng_() % 50);
    Transition t;
    t.set_time_micros(now_);
    return t;
  }

  static absl::Status Apply(StateMachine& sm, const Transition& t) {
    return sm.Apply(t, sm.last_applied_lsn() + 1);
  }

  std::mt19937_64 rng_;
  const size_t payload_bytes_;
  int64_t now_ = 1000;
};

// Ids and entries the table's snapshot view yields, as Dump renders tasks.
std::map<uint64_t, std::string> SnapshotView(const TaskTable& table) {
  std::map<uint64_t, std::string> view;
  for (size_t shard = 0; shard < table.num_shards(); ++shard) {
    const std::vector<uint64_t> ids = table.SnapshotIds(shard);
    table.ReadSnapshot(shard, ids, 0, ids.size(), [&](const TaskEntry& e) {
      view[e.id()] = absl::StrCat(TaskString(e.ToTask()), " ", e.state.last_lsn,
                                  " ", e.history_size());
    });
  }
  return view;
}

std::map<uint64_t, std::string> LiveView(const TaskTable& table) {
  std::map<uint64_t, std::string> view;
  table.ForEach([&](const TaskEntry& e) {
    view[e.id()] = absl::StrCat(TaskString(e.ToTask()), " ", e.state.last_lsn,
                                " ", e.history_size());
  });
  return view;
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir(kDir), IsOk()); }

  static std::unique_ptr<StateMachine> NewState(uint32_t partition = 0,
                                                uint32_t partitions = 1) {
    return std::make_unique<StateMachine>(
        kShards, kMaxHistory, /*track_finished=*/true, partition, partitions);
  }

  // A state with every kind of task and counter: `tasks` submitted, then
  // `steps` random transitions.
  static void Build(StateMachine& sm, int tasks, int steps, uint64_t seed = 1,
                    size_t payload_bytes = 8) {
    Workload workload(seed, payload_bytes);
    ASSERT_THAT(workload.Submit(sm, tasks / 2), IsOk());
    for (int i = tasks / 2; i < tasks; ++i) {
      ASSERT_THAT(workload.Submit(sm), IsOk());
    }
    for (int i = 0; i < steps; ++i) ASSERT_THAT(workload.Step(sm), IsOk());
  }

  // Takes the snapshot as the engine does: meta (naming kFirstSegment) and
  // BeginSnapshot together (here nothing else runs), then WriteSnapshot.
  absl::Status TakeSnapshot(StateMachine& sm, SnapshotMeta* meta = nullptr) {
    SnapshotMeta m = sm.MakeSnapshotMeta();
    m.set_first_segment(kFirstSegment);
    sm.table().BeginSnapshot();
    if (meta != nullptr) *meta = m;
    return WriteSnapshot(&env_, kDir, m, &sm.table());
  }

  static std::string PathOf(uint64_t first_segment = kFirstSegment,
                            uint32_t partition = 0) {
    return absl::StrCat(kDir, "/", SnapshotFileName(first_segment, partition));
  }

  // Loads path into a fresh state machine of `partition` of `partitions`;
  // *meta (if given) gets the meta LoadSnapshot returned.
  absl::StatusOr<std::unique_ptr<StateMachine>> Load(
      const std::string& path, uint32_t partition = 0, uint32_t partitions = 1,
      SnapshotMeta* meta = nullptr) {
    std::unique_ptr<StateMachine> sm = NewState(partition, partitions);
    absl::StatusOr<SnapshotMeta> loaded = LoadSnapshot(&env_, path, sm.get());
    if (!loaded.ok()) return loaded.status();
    if (meta != nullptr) *meta = *loaded;
    return sm;
  }

  std::vector<std::string> Children() {
    absl::StatusOr<std::vector<std::string>> children = env_.GetChildren(kDir);
    EXPECT_THAT(children, IsOk());
    return children.ok() ? *children : std::vector<std::string>();
  }

  FaultInjectionEnv env_{/*seed=*/11};
};

TEST_F(SnapshotTest, FileNamesRoundTrip) {
  EXPECT_EQ(SnapshotFileName(7, 3), "snapshot-00000000000000000007-0003.snap");
  EXPECT_EQ(SnapshotFileName(0, 0), "snapshot-00000000000000000000-0000.snap");
  EXPECT_EQ(SnapshotFileName(UINT64_MAX, 255),
            "snapshot-18446744073709551615-0255.snap");
  const std::pair<uint64_t, uint32_t> cases[] = {
      {0, 0}, {7, 3}, {12345678901234, 255}, {UINT64_MAX, 9999}};
  for (const auto& [first_segment, partition] : cases) {
    const std::string name = SnapshotFileName(first_segment, partition);
    uint64_t parsed_segment = 0;
    uint32_t parsed_partition = 0;
    EXPECT_TRUE(ParseSnapshotFileName(name, &parsed_segment, &parsed_partition))
        << name;
    EXPECT_EQ(parsed_segment, first_segment) << name;
    EXPECT_EQ(parsed_partition, partition) << name;
  }
}

TEST_F(SnapshotTest, MalformedFileNamesAreRejected) {
  for (const char* name : {
           // Format version 1: named by LSN alone, no partition.
           "snapshot-00000000000000000007.snap",
           // The temporary file WriteSnapshot renames from.
           "snapshot-00000000000000000007-0003.snap.tmp",
           "snapshot-7-3.snap",
           "snapshot-0000000000000000007-0003.snap",   // 19 digits.
           "snapshot-000000000000000000007-003.snap",  // 21 and 3 digits.
           "snapshot-00000000000000000007-003.snap",
           "snapshot-00000000000000000007-00003.snap",
           "snapshot-00000000000000000007_0003.snap",
           "snapshot-00000000000000000007-00a3.snap",
           "snapshot-0000000000000000000x-0003.snap",
           "snapshot-00000000000000000007--003.snap",
           "snapshot-+0000000000000000007-0003.snap",
           "snapshot-00000000000000000007-+003.snap",
           "snapshot- 0000000000000000007-0003.snap",
           // Past UINT64_MAX.
           "snapshot-18446744073709551616-0000.snap",
           "snapshot-99999999999999999999-0000.snap",
           "Snapshot-00000000000000000007-0003.snap",
           "snapshot-00000000000000000007-0003.SNAP",
           "snapshot-00000000000000000007-0003",
           "00000000000000000007-0003.snap",
           "snapshot-.snap",
           "snapshot-",
           "",
           "wal-00000000000000000007.log",
       }) {
    uint64_t first_segment = 0;
    uint32_t partition = 0;
    EXPECT_FALSE(ParseSnapshotFileName(name, &first_segment, &partition))
        << name;
  }
}

TEST_F(SnapshotTest, ListSnapshotsIsNewestFirstThenByPartition) {
  const std::pair<uint64_t, uint32_t> files[] = {
      {5, 1}, {30, 2}, {12, 0}, {30, 0}, {5, 0}, {12, 3}, {30, 1}, {100, 10}};
  for (const auto& [first_segment, partition] : files) {
    ASSERT_THAT(env_.NewWritableFile(PathOf(first_segment, partition)), IsOk());
  }
  // Not snapshots: ignored.
  ASSERT_THAT(env_.NewWritableFile(PathOf(40, 0) + ".tmp"), IsOk());
  ASSERT_THAT(env_.NewWritableFile(
                  absl::StrCat(kDir, "/snapshot-00000000000000000050.snap")),
              IsOk());
  ASSERT_THAT(env_.NewWritableFile(absl::StrCat(kDir, "/wal-1.log")), IsOk());
  ASSERT_THAT(env_.CreateDir(absl::StrCat(kDir, "/sub")), IsOk());
  ASSERT_THAT(env_.NewWritableFile(
                  absl::StrCat(kDir, "/sub/", SnapshotFileName(60, 0))),
              IsOk());

  absl::StatusOr<std::vector<SnapshotFile>> listed = ListSnapshots(&env_, kDir);
  ASSERT_THAT(listed, IsOk());
  std::vector<std::pair<uint64_t, uint32_t>> order;
  for (const SnapshotFile& s : *listed) {
    EXPECT_EQ(s.name, SnapshotFileName(s.first_segment, s.partition));
    order.emplace_back(s.first_segment, s.partition);
  }
  EXPECT_THAT(order,
              ElementsAre(Pair(100, 10), Pair(30, 0), Pair(30, 1), Pair(30, 2),
                          Pair(12, 0), Pair(12, 3), Pair(5, 0), Pair(5, 1)));

  EXPECT_THAT(ListSnapshots(&env_, "/missing"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SnapshotTest, RoundTripRestoresEveryTaskHistoryAndCounter) {
  // One shard with more tasks than WriteSnapshot reads per lock hold, and
  // several shards.
  for (int shards : {1, kShards}) {
    SCOPED_TRACE(absl::StrCat(shards, " shards"));
    FaultInjectionEnv env(/*seed=*/2);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    StateMachine live(shards, kMaxHistory);
    Build(live, /*tasks=*/600, /*steps=*/3000);
    const Counters& c = live.counters();
    // The workload reached every kind of state.
    for (int status = PENDING; status <= CANCELLED; ++status) {
      ASSERT_GT(c.by_status[status], 0u) << status;
    }
    ASSERT_GT(c.deletions, 0u);
    ASSERT_GT(c.retention_removals, 0u);
    ASSERT_GT(c.lease_expiries, 0u);
    ASSERT_GT(c.retries, 0u);

    SnapshotMeta meta = live.MakeSnapshotMeta();
    meta.set_first_segment(kFirstSegment);
    live.table().BeginSnapshot();
    ASSERT_THAT(WriteSnapshot(&env, kDir, meta, &live.table()), IsOk());
    const std::string path = PathOf();
    absl::StatusOr<std::vector<std::string>> children = env.GetChildren(kDir);
    ASSERT_THAT(children, IsOk());
    EXPECT_THAT(*children, ElementsAre(SnapshotFileName(kFirstSegment, 0)));

    // Durable once the caller syncs the directory (the engine does, once
    // for every partition's file): contents, name and directory entry.
    ASSERT_THAT(env.SyncDir(kDir), IsOk());
    env.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    StateMachine loaded(shards, kMaxHistory);
    absl::StatusOr<SnapshotMeta> loaded_meta =
        LoadSnapshot(&env, path, &loaded);
    ASSERT_THAT(loaded_meta, IsOk());
    EXPECT_EQ(loaded_meta->ShortDebugString(), meta.ShortDebugString());
    EXPECT_EQ(Dump(loaded), Dump(live));
    EXPECT_EQ(loaded.last_applied_lsn(), meta.lsn());

    // The loaded state goes on exactly as the live one (scheduler and key
    // index included).
    Workload a(/*seed=*/99, 8), b(/*seed=*/99, 8);
    for (int i = 0; i < 500; ++i) {
      ASSERT_THAT(a.Step(live), IsOk());
      ASSERT_THAT(b.Step(loaded), IsOk());
    }
    EXPECT_EQ(Dump(loaded), Dump(live));
    live.scheduler().PromoteDue(INT64_MAX);
    loaded.scheduler().PromoteDue(INT64_MAX);
    EXPECT_EQ(loaded.scheduler().PeekReady(""), live.scheduler().PeekReady(""));
    EXPECT_EQ(loaded.scheduler().DueLeases(INT64_MAX),
              live.scheduler().DueLeases(INT64_MAX));
  }
}

TEST_F(SnapshotTest, EmptyStateRoundTrips) {
  std::unique_ptr<StateMachine> live = NewState();
  SnapshotMeta meta;
  ASSERT_THAT(TakeSnapshot(*live, &meta), IsOk());
  EXPECT_EQ(meta.lsn(), 0u);
  SnapshotMeta loaded_meta;
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded =
      Load(PathOf(), /*partition=*/0, /*partitions=*/1, &loaded_meta);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*live));
  EXPECT_EQ(loaded_meta.ShortDebugString(), meta.ShortDebugString());
}

// Changes made after BeginSnapshot, before WriteSnapshot reads anything, are
// not in the snapshot; the live state has them.
TEST_F(SnapshotTest, SnapshotHoldsTheStateAtBeginSnapshot) {
  std::unique_ptr<StateMachine> live = NewState();
  Build(*live, /*tasks=*/200, /*steps=*/600);
  SnapshotMeta meta = live->MakeSnapshotMeta();
  meta.set_first_segment(kFirstSegment);
  live->table().BeginSnapshot();
  const std::string at_begin = Dump(*live);
  const uint64_t first_new_id = live->next_task_id();

  // Mutate, insert, erase; several changes to the same task; tasks inserted
  // and then changed or erased; tasks changed and then erased.
  Workload workload(/*seed=*/5, 8);
  ASSERT_THAT(workload.Submit(*live, 30), IsOk());
  for (int i = 0; i < 3000; ++i) ASSERT_THAT(workload.Step(*live), IsOk());
  const std::string after = Dump(*live);
  ASSERT_NE(after, at_begin);
  ASSERT_GT(live->counters().deletions + live->counters().retention_removals,
            0u);

  ASSERT_THAT(WriteSnapshot(&env_, kDir, meta, &live->table()), IsOk());
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded = Load(PathOf());
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), at_begin);
  EXPECT_EQ(Dump(*live), after);
  EXPECT_FALSE((*loaded)->table().Contains(first_new_id));
  EXPECT_GT(live->next_task_id(), first_new_id);
  // The views ended: the live table reads as itself again.
  EXPECT_EQ(SnapshotView(live->table()), LiveView(live->table()));
}

// A writer keeps applying records (under the commit lock, as the engine
// does) while WriteSnapshot reads the table.
TEST_F(SnapshotTest, ConcurrentWritesDoNotLeakIntoTheSnapshot) {
  std::unique_ptr<StateMachine> live = NewState();
  Build(*live, /*tasks=*/2000, /*steps=*/2000);

  absl::Mutex commit_mu;
  // Guarded by commit_mu.
  bool snapshot_begun = false;
  int applied_since_begin = 0;
  std::atomic<bool> stop{false};
  absl::Status writer_status;
  std::thread writer([&] {
    Workload workload(/*seed=*/17, 8);
    while (!stop.load()) {
      absl::MutexLock l(&commit_mu);
      absl::Status s = workload.Step(*live);
      if (!s.ok()) {
        writer_status = s;
        return;
      }
      if (snapshot_begun) ++applied_since_begin;
    }
  });

  SnapshotMeta meta;
  std::string at_begin;
  {
    absl::MutexLock l(&commit_mu);
    meta = live->MakeSnapshotMeta();
    meta.set_first_segment(kFirstSegment);
    live->table().BeginSnapshot();
    at_begin = Dump(*live);
    snapshot_begun = true;
    // Let the writer change some tasks before the first shard is read; it
    // keeps going while they are.
    auto writer_moved = [&] {
      return applied_since_begin >= 200 || !writer_status.ok();
    };
    commit_mu.Await(absl::Condition(&writer_moved));
  }
  const absl::Status written = WriteSnapshot(&env_, kDir, meta, &live->table());
  stop.store(true);
  writer.join();
  ASSERT_THAT(writer_status, IsOk());
  ASSERT_THAT(written, IsOk());

  absl::StatusOr<std::unique_ptr<StateMachine>> loaded = Load(PathOf());
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), at_begin);
  EXPECT_NE(Dump(*live), at_begin);
  EXPECT_EQ(SnapshotView(live->table()), LiveView(live->table()));
}

// WriteSnapshot syncs the file but not the directory: the engine syncs it
// once for every partition's file of a snapshot. Until the caller does, a
// power loss may take the name.
TEST_F(SnapshotTest, NameIsDurableOnlyOnceTheCallerSyncsTheDirectory) {
  std::unique_ptr<StateMachine> live = NewState();
  Build(*live, /*tasks=*/50, /*steps=*/200);
  // An armed directory-sync failure stays armed: WriteSnapshot never asks.
  env_.FailNextSyncDirs(1);
  const uint64_t dir_syncs = env_.sync_dir_count();
  ASSERT_THAT(TakeSnapshot(*live), IsOk());
  EXPECT_EQ(env_.sync_dir_count(), dir_syncs);
  EXPECT_THAT(env_.DurableContents(PathOf()),
              StatusIs(absl::StatusCode::kNotFound));
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_THAT(Children(), IsEmpty());
  EXPECT_THAT(env_.SyncDir(kDir),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("injected EIO")));

  ASSERT_THAT(TakeSnapshot(*live), IsOk());
  absl::StatusOr<std::string> contents = env_.ReadFileToString(PathOf());
  ASSERT_THAT(contents, IsOk());
  ASSERT_THAT(env_.SyncDir(kDir), IsOk());
  // The contents were synced before the rename; the name is durable now.
  EXPECT_THAT(env_.DurableContents(PathOf()), IsOkAndHolds(*contents));
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_THAT(Children(), ElementsAre(SnapshotFileName(kFirstSegment, 0)));
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded = Load(PathOf());
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*live));
}

// Partition 3 of 4 owns ids 7, 11, 15, ...; its file is named by its
// partition and every record header names it.
TEST_F(SnapshotTest, NonZeroPartitionRoundTrips) {
  constexpr uint32_t kPartition = 3;
  constexpr uint32_t kPartitions = 4;
  std::unique_ptr<StateMachine> live = NewState(kPartition, kPartitions);
  Build(*live, /*tasks=*/300, /*steps=*/1500);
  ASSERT_GT(live->counters().deletions, 0u);
  ASSERT_GT(live->counters().by_status[CLAIMED], 0u);
  EXPECT_EQ(live->next_task_id(), 7 + 4 * live->counters().submitted);
  std::vector<uint64_t> ids;
  live->table().ForEach([&](const TaskEntry& e) { ids.push_back(e.id()); });
  ASSERT_FALSE(ids.empty());
  for (uint64_t id : ids) {
    EXPECT_EQ(id % kPartitions, kPartition) << id;
    EXPECT_GE(id, 7u);
  }

  SnapshotMeta meta;
  ASSERT_THAT(TakeSnapshot(*live, &meta), IsOk());
  EXPECT_EQ(meta.partition(), kPartition);
  EXPECT_EQ(meta.partitions(), kPartitions);
  const std::string path = PathOf(kFirstSegment, kPartition);
  EXPECT_EQ(path,
            absl::StrCat(kDir, "/snapshot-00000000000000000007-0003.snap"));
  EXPECT_THAT(Children(),
              ElementsAre(SnapshotFileName(kFirstSegment, kPartition)));

  absl::StatusOr<std::string> contents = env_.ReadFileToString(path);
  ASSERT_THAT(contents, IsOk());
  wal::LogReader reader(*contents, path);
  wal::LogReader::Record record;
  size_t records = 0;
  while (true) {
    absl::StatusOr<bool> more = reader.Read(&record);
    ASSERT_THAT(more, IsOk());
    if (!*more) break;
    EXPECT_EQ(record.partition, kPartition);
    ++records;
  }
  EXPECT_EQ(records, live->table().size() + 2);

  SnapshotMeta loaded_meta;
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded =
      Load(path, kPartition, kPartitions, &loaded_meta);
  ASSERT_THAT(loaded, IsOk());
  StateMachine& restored = **loaded;
  EXPECT_EQ(loaded_meta.ShortDebugString(), meta.ShortDebugString());
  EXPECT_EQ(Dump(restored), Dump(*live));
  EXPECT_EQ(restored.next_task_id() % kPartitions, kPartition);

  // The loaded partition goes on exactly as the live one, with its ids.
  Workload a(/*seed=*/99, 8), b(/*seed=*/99, 8);
  for (int i = 0; i < 500; ++i) {
    ASSERT_THAT(a.Step(*live), IsOk());
    ASSERT_THAT(b.Step(restored), IsOk());
  }
  EXPECT_EQ(Dump(restored), Dump(*live));
  EXPECT_EQ(restored.next_task_id() % kPartitions, kPartition);
}

// A snapshot belongs to one partition of one partition count; loaded
// anywhere else its ids and keys would be in the wrong place.
TEST_F(SnapshotTest, LoadingIntoAnotherPartitionIsDataLoss) {
  std::unique_ptr<StateMachine> three_of_four = NewState(3, 4);
  Build(*three_of_four, /*tasks=*/40, /*steps=*/100);
  ASSERT_THAT(TakeSnapshot(*three_of_four), IsOk());
  std::unique_ptr<StateMachine> only = NewState();
  Build(*only, /*tasks=*/40, /*steps=*/100);
  ASSERT_THAT(TakeSnapshot(*only), IsOk());

  struct Case {
    std::string path;
    uint32_t partition;
    uint32_t partitions;
  };
  const std::string path3 = PathOf(kFirstSegment, 3);
  const std::string path0 = PathOf(kFirstSegment, 0);
  for (const Case& c : std::vector<Case>{{path3, 0, 4},
                                         {path3, 2, 4},
                                         {path3, 3, 8},
                                         {path3, 3, 5},
                                         {path3, 0, 1},
                                         {path0, 0, 2},
                                         {path0, 1, 2},
                                         {path0, 0, 16}}) {
    SCOPED_TRACE(absl::StrCat(c.path, " into partition ", c.partition, " of ",
                              c.partitions));
    std::unique_ptr<StateMachine> sm = NewState(c.partition, c.partitions);
    const std::string empty = Dump(*sm);
    EXPECT_THAT(
        LoadSnapshot(&env_, c.path, sm.get()),
        StatusIs(kDataLoss, AllOf(HasSubstr(c.path), HasSubstr("partition"))));
    EXPECT_EQ(Dump(*sm), empty);
  }

  absl::StatusOr<std::unique_ptr<StateMachine>> loaded = Load(path3, 3, 4);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*three_of_four));
  loaded = Load(path0);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*only));
}

// A task record of the right partition's file whose id is another
// partition's (CRC intact) cannot be restored.
TEST_F(SnapshotTest, TaskOfAnotherPartitionIsDataLoss) {
  std::unique_ptr<StateMachine> live = NewState(1, 2);
  Build(*live, /*tasks=*/10, /*steps=*/20);
  SnapshotMeta meta;
  ASSERT_THAT(TakeSnapshot(*live, &meta), IsOk());
  const std::string path = PathOf(kFirstSegment, 1);
  absl::StatusOr<std::string> contents = env_.ReadFileToString(path);
  ASSERT_THAT(contents, IsOk());

  // Re-encode the file with the first task's id moved to partition 0.
  std::string damaged = wal::EncodeFileHeader(wal::kSnapshotMagic, meta.lsn());
  wal::LogReader reader(*contents, path);
  wal::LogReader::Record record;
  bool moved = false;
  while (true) {
    absl::StatusOr<bool> more = reader.Read(&record);
    ASSERT_THAT(more, IsOk());
    if (!*more) break;
    std::string payload(record.payload);
    if (record.type == wal::RecordType::kSnapshotTask && !moved) {
      SnapshotTask task;
      ASSERT_TRUE(task.ParseFromString(payload));
      ASSERT_EQ(task.task().id() % 2, 1u);
      task.mutable_task()->set_id(task.task().id() + 1);
      payload = task.SerializeAsString();
      moved = true;
    }
    wal::AppendRecord(record.type, record.partition, record.lsn, payload,
                      &damaged);
  }
  ASSERT_TRUE(moved);
  std::unique_ptr<StateMachine> sm = NewState(1, 2);
  EXPECT_THAT(LoadSnapshotContents(damaged, path, sm.get()),
              StatusIs(kDataLoss, HasSubstr(path)));
  // The unchanged file loads.
  sm = NewState(1, 2);
  EXPECT_THAT(LoadSnapshotContents(*contents, path, sm.get()), IsOk());
}

// Damage tests work on the bytes of a real snapshot.
class SnapshotDamageTest : public SnapshotTest {
 protected:
  struct Record {
    wal::RecordType type;
    std::string payload;
  };

  void SetUp() override {
    SnapshotTest::SetUp();
    std::unique_ptr<StateMachine> live = NewState();
    Build(*live, /*tasks=*/12, /*steps=*/40);
    SnapshotMeta meta;
    ASSERT_THAT(TakeSnapshot(*live, &meta), IsOk());
    lsn_ = meta.lsn();
    path_ = PathOf();
    absl::StatusOr<std::string> contents = env_.ReadFileToString(path_);
    ASSERT_THAT(contents, IsOk());
    good_ = *contents;
    task_count_ = live->table().size();
    ASSERT_GT(task_count_, 2u);

    wal::LogReader reader(good_, path_);
    wal::LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      ASSERT_THAT(more, IsOk());
      if (!*more) break;
      records_.push_back({record.type, std::string(record.payload)});
    }
    ASSERT_EQ(records_.size(), task_count_ + 2);  // Meta, tasks, end.
    ASSERT_THAT(LoadContents(good_), IsOk());
  }

  absl::Status LoadContents(absl::string_view contents) {
    std::unique_ptr<StateMachine> sm = NewState();
    return LoadSnapshotContents(contents, path_, sm.get()).status();
  }

  // A snapshot file of `records`, every CRC correct, every record header
  // naming `partition`.
  std::string Encode(const std::vector<Record>& records, uint64_t header_lsn,
                     uint32_t partition = 0) const {
    std::string contents =
        wal::EncodeFileHeader(wal::kSnapshotMagic, header_lsn);
    for (const Record& r : records) {
      wal::AppendRecord(r.type, partition, lsn_, r.payload, &contents);
    }
    return contents;
  }
  std::string Encode(const std::vector<Record>& records) const {
    return Encode(records, lsn_);
  }

  static Record End(uint64_t count) {
    SnapshotEnd end;
    end.set_task_count(count);
    return {wal::RecordType::kSnapshotEnd, end.SerializeAsString()};
  }

  uint64_t lsn_ = 0;
  std::string path_;
  std::string good_;
  size_t task_count_ = 0;
  std::vector<Record> records_;
};

TEST_F(SnapshotDamageTest, EveryFlippedBitIsDataLoss) {
  for (size_t offset = 0; offset < good_.size(); ++offset) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = good_;
      damaged[offset] = static_cast<char>(damaged[offset] ^ (1 << bit));
      ASSERT_THAT(LoadContents(damaged), StatusIs(kDataLoss, HasSubstr(path_)))
          << "byte " << offset << " bit " << bit;
    }
  }
}

TEST_F(SnapshotDamageTest, EveryTruncationIsDataLoss) {
  for (size_t size = 0; size < good_.size(); ++size) {
    ASSERT_THAT(LoadContents(good_.substr(0, size)),
                StatusIs(kDataLoss, HasSubstr(path_)))
        << "cut at " << size;
  }
}

TEST_F(SnapshotDamageTest, TrailingBytesAreDataLoss) {
  std::string valid_record;
  wal::AppendRecord(records_[1].type, /*partition=*/0, lsn_,
                    records_[1].payload, &valid_record);
  std::string another_end;
  wal::AppendRecord(wal::RecordType::kSnapshotEnd, /*partition=*/0, lsn_,
                    End(task_count_).payload, &another_end);
  for (const std::string& tail :
       {std::string(1, '\0'), std::string(100, '\0'), std::string("garbage"),
        valid_record, another_end}) {
    EXPECT_THAT(LoadContents(good_ + tail),
                StatusIs(kDataLoss, HasSubstr(path_)))
        << tail.size() << " bytes appended";
  }
}

TEST_F(SnapshotDamageTest, MissingEndRecordIsDataLoss) {
  std::vector<Record> records = records_;
  records.pop_back();
  EXPECT_THAT(LoadContents(Encode(records)),
              StatusIs(kDataLoss, AllOf(HasSubstr(path_),
                                        HasSubstr("without an end record"))));
}

TEST_F(SnapshotDamageTest, WrongTaskCountIsDataLoss) {
  for (uint64_t count : {task_count_ - 1, task_count_ + 1, uint64_t{0}}) {
    std::vector<Record> records = records_;
    records.back() = End(count);
    EXPECT_THAT(
        LoadContents(Encode(records)),
        StatusIs(kDataLoss, AllOf(HasSubstr(path_), HasSubstr("task count"))))
        << count;
  }
  // A dropped task record is caught by the count.
  std::vector<Record> records = records_;
  records.erase(records.begin() + 2);
  EXPECT_THAT(LoadContents(Encode(records)),
              StatusIs(kDataLoss, HasSubstr("task count")));
  // The encoder itself is right.
  EXPECT_THAT(LoadContents(Encode(records_)), IsOk());
}

TEST_F(SnapshotDamageTest, MalformedStructureIsDataLoss) {
  // No meta record.
  std::vector<Record> no_meta(records_.begin() + 1, records_.end());
  EXPECT_THAT(LoadContents(Encode(no_meta)), StatusIs(kDataLoss));
  // Meta for another LSN than the header's.
  EXPECT_THAT(LoadContents(Encode(records_, lsn_ + 1)), StatusIs(kDataLoss));
  // A task twice.
  std::vector<Record> twice = records_;
  twice.insert(twice.begin() + 1, records_[1]);
  twice.back() = End(task_count_ + 1);
  EXPECT_THAT(LoadContents(Encode(twice)),
              StatusIs(kDataLoss, HasSubstr(path_)));
  // A log record in a snapshot.
  std::vector<Record> foreign = records_;
  foreign[1].type = wal::RecordType::kTransition;
  EXPECT_THAT(LoadContents(Encode(foreign)), StatusIs(kDataLoss));
  // A task payload that is not a valid task (CRC intact).
  std::vector<Record> bad_task = records_;
  bad_task[1].payload = "\xff\xff\xff";
  EXPECT_THAT(LoadContents(Encode(bad_task)), StatusIs(kDataLoss));
  SnapshotTask invalid;
  invalid.mutable_task()->set_id(999);  // No key, status or max_attempts.
  bad_task[1].payload = invalid.SerializeAsString();
  EXPECT_THAT(LoadContents(Encode(bad_task)), StatusIs(kDataLoss));
  // A task whose history entry is not a well-formed HistoryEntry.
  bad_task = records_;
  SnapshotTask with_history;
  ASSERT_TRUE(with_history.ParseFromString(bad_task[1].payload));
  ASSERT_GT(with_history.history_size(), 0);
  *with_history.mutable_history(0) = "\x08";  // A key, then no varint.
  bad_task[1].payload = with_history.SerializeAsString();
  EXPECT_THAT(
      LoadContents(Encode(bad_task)),
      StatusIs(kDataLoss, AllOf(HasSubstr(path_), HasSubstr("history entry"))));
  // A log segment is not a snapshot.
  std::string segment = good_;
  segment.replace(0, wal::kFileHeaderSize,
                  wal::EncodeFileHeader(wal::kSegmentMagic, lsn_));
  EXPECT_THAT(LoadContents(segment), StatusIs(kDataLoss));
}

TEST_F(SnapshotDamageTest, MetaOfAnotherPartitionIsDataLoss) {
  SnapshotMeta meta;
  ASSERT_TRUE(meta.ParseFromString(records_[0].payload));
  ASSERT_EQ(meta.partition(), 0u);
  ASSERT_EQ(meta.partitions(), 1u);
  // The meta names another partition (its header too), or no partition
  // count at all, as a meta from before partitions would.
  const std::pair<uint32_t, uint32_t> others[] = {{1, 2}, {0, 2}, {0, 0}};
  for (const auto& [partition, partitions] : others) {
    std::vector<Record> records = records_;
    SnapshotMeta other = meta;
    other.set_partition(partition);
    other.set_partitions(partitions);
    records[0].payload = other.SerializeAsString();
    EXPECT_THAT(LoadContents(Encode(records, lsn_, partition)),
                StatusIs(kDataLoss, HasSubstr(path_)))
        << partition << " of " << partitions;
  }
  // The meta is right but its record header names another partition.
  EXPECT_THAT(LoadContents(Encode(records_, lsn_, /*partition=*/1)),
              StatusIs(kDataLoss, HasSubstr(path_)));
}

TEST_F(SnapshotDamageTest, LoadSnapshotReadsTheFile) {
  std::string damaged = good_;
  damaged[damaged.size() - 3] ^= 0x04;
  auto file = env_.NewWritableFile(path_);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append(damaged), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  EXPECT_THAT(Load(path_), StatusIs(kDataLoss, HasSubstr(path_)));
  EXPECT_THAT(Load(PathOf(kFirstSegment + 1)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Load(PathOf(kFirstSegment, 1), 1, 2),
              StatusIs(absl::StatusCode::kNotFound));
}

enum class Fault { kSync, kRename, kAppend };

// A failed write leaves no snapshot and no temporary file, and ends the
// copy-on-write view of every shard.
class SnapshotWriteFailureTest
    : public SnapshotTest,
      public ::testing::WithParamInterface<std::tuple<Fault, size_t>> {};

TEST_P(SnapshotWriteFailureTest, LeavesNothingAndEndsEveryView) {
  const auto [fault, payload_bytes] = GetParam();
  std::unique_ptr<StateMachine> live = NewState();
  // Large payloads make WriteSnapshot write (and fail) in the middle of the
  // first shards, before it ends their views.
  Build(*live, /*tasks=*/payload_bytes > 1000 ? 60 : 300, /*steps=*/300,
        /*seed=*/3, payload_bytes);
  switch (fault) {
    case Fault::kSync:
      env_.FailNextSyncs(1);
      break;
    case Fault::kRename:
      env_.FailNextRenames(1);
      break;
    case Fault::kAppend:
      env_.FailNextAppends(1);
      break;
  }
  SnapshotMeta meta;
  EXPECT_THAT(TakeSnapshot(*live, &meta),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("injected EIO")));
  EXPECT_THAT(Children(), IsEmpty());

  // Every view ended: changes made now are seen by the table's snapshot
  // readers as they are, and erased tasks are gone from them.
  Workload workload(/*seed=*/8, 8);
  for (int i = 0; i < 500; ++i) ASSERT_THAT(workload.Step(*live), IsOk());
  ASSERT_GT(live->counters().deletions, 0u);
  EXPECT_EQ(SnapshotView(live->table()), LiveView(live->table()));

  // The next snapshot works.
  ASSERT_THAT(TakeSnapshot(*live, &meta), IsOk());
  EXPECT_THAT(Children(), ElementsAre(SnapshotFileName(kFirstSegment, 0)));
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded = Load(PathOf());
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*live));
}

std::string FaultTestName(
    const ::testing::TestParamInfo<std::tuple<Fault, size_t>>& info) {
  static constexpr const char* kNames[] = {"Sync", "Rename", "Append"};
  return absl::StrCat(kNames[static_cast<int>(std::get<0>(info.param))],
                      "Payload", std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    Faults, SnapshotWriteFailureTest,
    ::testing::Combine(::testing::Values(Fault::kSync, Fault::kRename,
                                         Fault::kAppend),
                       ::testing::Values(size_t{8}, size_t{40000})),
    FaultTestName);

TEST_F(SnapshotTest, MissingDirectoryFailsAndEndsEveryView) {
  std::unique_ptr<StateMachine> live = NewState();
  Build(*live, /*tasks=*/100, /*steps=*/100);
  const SnapshotMeta meta = live->MakeSnapshotMeta();
  live->table().BeginSnapshot();
  EXPECT_THAT(WriteSnapshot(&env_, "/missing", meta, &live->table()),
              StatusIs(absl::StatusCode::kNotFound));
  Workload workload(/*seed=*/8, 8);
  for (int i = 0; i < 300; ++i) ASSERT_THAT(workload.Step(*live), IsOk());
  EXPECT_EQ(SnapshotView(live->table()), LiveView(live->table()));
}

}  // namespace
}  // namespace taskwal::engine
