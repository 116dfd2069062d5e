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
#include "api/env.h"
#include "api/fault_injection_env.h"
#include "api/task.pb.h"
#include "engine/snapshot.pb.h"
#include "engine/state_machine.h"
#include "engine/task_table.h"
#include "engine/transition.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::engine {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
constexpr char kDir[] = "/db";
constexpr int kShards = 4;
constexpr size_t kMaxHistory = 6;

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
  return out;
}

// Applies random transitions that fit the current state, as the engine's
// live path would decide them. Not thread-safe: the caller serializes it
// with every other mutation of the state machine.
class Workload {
 public:
  Workload(uint64_t seed, size_t payload_bytes)
      : rng_(seed), payload_bytes_(payload_bytes) {}

  absl::Status Submit(StateMachine& sm, int count = 1) {
    Transition t = Stamped();
    for (int i = 0; i < count; ++i) {
      const uint64_t id = sm.next_task_id() + i;
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

  // One transition on a random task (or a submit).
  absl::Status Step(StateMachine& sm) {
    const uint64_t id =
        sm.next_task_id() > 1 ? 1 + rng_() % (sm.next_task_id() - 1) : 0;
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

  static std::unique_ptr<StateMachine> NewState() {
    return std::make_unique<StateMachine>(kShards, kMaxHistory);
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

  // Takes the snapshot as the engine does: meta and BeginSnapshot together
  // (here nothing else runs), then WriteSnapshot.
  absl::Status TakeSnapshot(StateMachine& sm, SnapshotMeta* meta = nullptr) {
    SnapshotMeta m = sm.MakeSnapshotMeta();
    sm.table().BeginSnapshot();
    if (meta != nullptr) *meta = m;
    return WriteSnapshot(&env_, kDir, m, &sm.table());
  }

  static std::string PathOf(uint64_t lsn) {
    return absl::StrCat(kDir, "/", SnapshotFileName(lsn));
  }

  absl::StatusOr<std::unique_ptr<StateMachine>> Load(const std::string& path) {
    std::unique_ptr<StateMachine> sm = NewState();
    absl::Status s = LoadSnapshot(&env_, path, sm.get());
    if (!s.ok()) return s;
    return sm;
  }

  std::vector<std::string> Children() {
    absl::StatusOr<std::vector<std::string>> children = env_.GetChildren(kDir);
    EXPECT_THAT(children, IsOk());
    return children.ok() ? *children : std::vector<std::string>();
  }

  FaultInjectionEnv env_{/*seed=*/11};
};

TEST_F(SnapshotTest, FileNamesRoundTripAndListNewestFirst) {
  uint64_t lsn = 0;
  EXPECT_EQ(SnapshotFileName(7), "snapshot-00000000000000000007.snap");
  EXPECT_TRUE(ParseSnapshotFileName(SnapshotFileName(7), &lsn));
  EXPECT_EQ(lsn, 7u);
  EXPECT_FALSE(ParseSnapshotFileName(SnapshotFileName(7) + ".tmp", &lsn));
  EXPECT_FALSE(ParseSnapshotFileName("snapshot-7.snap", &lsn));

  for (uint64_t l : {5, 30, 12}) {
    auto file = env_.NewWritableFile(PathOf(l));
    ASSERT_THAT(file, IsOk());
  }
  ASSERT_THAT(env_.NewWritableFile(PathOf(40) + ".tmp"), IsOk());
  ASSERT_THAT(env_.NewWritableFile(absl::StrCat(kDir, "/wal-1.log")), IsOk());
  absl::StatusOr<std::vector<SnapshotFile>> listed = ListSnapshots(&env_, kDir);
  ASSERT_THAT(listed, IsOk());
  std::vector<uint64_t> lsns;
  for (const SnapshotFile& s : *listed) {
    EXPECT_EQ(s.name, SnapshotFileName(s.lsn));
    lsns.push_back(s.lsn);
  }
  EXPECT_THAT(lsns, ElementsAre(30, 12, 5));
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

    const SnapshotMeta meta = live.MakeSnapshotMeta();
    live.table().BeginSnapshot();
    ASSERT_THAT(WriteSnapshot(&env, kDir, meta, &live.table()), IsOk());
    const std::string path =
        absl::StrCat(kDir, "/", SnapshotFileName(meta.lsn()));
    absl::StatusOr<std::vector<std::string>> children = env.GetChildren(kDir);
    ASSERT_THAT(children, IsOk());
    EXPECT_THAT(*children, ElementsAre(SnapshotFileName(meta.lsn())));

    // Durable: contents, name and directory entry.
    env.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    StateMachine loaded(shards, kMaxHistory);
    ASSERT_THAT(LoadSnapshot(&env, path, &loaded), IsOk());
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
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded = Load(PathOf(0));
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*live));
}

// Changes made after BeginSnapshot, before WriteSnapshot reads anything, are
// not in the snapshot; the live state has them.
TEST_F(SnapshotTest, SnapshotHoldsTheStateAtBeginSnapshot) {
  std::unique_ptr<StateMachine> live = NewState();
  Build(*live, /*tasks=*/200, /*steps=*/600);
  const SnapshotMeta meta = live->MakeSnapshotMeta();
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
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded =
      Load(PathOf(meta.lsn()));
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

  absl::StatusOr<std::unique_ptr<StateMachine>> loaded =
      Load(PathOf(meta.lsn()));
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), at_begin);
  EXPECT_NE(Dump(*live), at_begin);
  EXPECT_EQ(SnapshotView(live->table()), LiveView(live->table()));
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
    path_ = PathOf(lsn_);
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
    return LoadSnapshotContents(contents, path_, sm.get());
  }

  // A snapshot file of `records`, every CRC correct.
  std::string Encode(const std::vector<Record>& records,
                     uint64_t header_lsn) const {
    std::string contents =
        wal::EncodeFileHeader(wal::kSnapshotMagic, header_lsn);
    for (const Record& r : records) {
      wal::AppendRecord(r.type, lsn_, r.payload, &contents);
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
  wal::AppendRecord(records_[1].type, lsn_, records_[1].payload, &valid_record);
  std::string another_end;
  wal::AppendRecord(wal::RecordType::kSnapshotEnd, lsn_,
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
  EXPECT_THAT(LoadContents(Encode(bad_task)),
              StatusIs(kDataLoss, AllOf(HasSubstr(path_),
                                        HasSubstr("history entry"))));
  // A log segment is not a snapshot.
  std::string segment = good_;
  segment.replace(0, wal::kFileHeaderSize,
                  wal::EncodeFileHeader(wal::kSegmentMagic, lsn_));
  EXPECT_THAT(LoadContents(segment), StatusIs(kDataLoss));
}

TEST_F(SnapshotDamageTest, LoadSnapshotReadsTheFile) {
  std::string damaged = good_;
  damaged[damaged.size() - 3] ^= 0x04;
  auto file = env_.NewWritableFile(path_);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append(damaged), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  EXPECT_THAT(Load(path_), StatusIs(kDataLoss, HasSubstr(path_)));
  EXPECT_THAT(Load(PathOf(lsn_ + 1)), StatusIs(absl::StatusCode::kNotFound));
}

enum class Fault { kSync, kRename, kAppend, kSyncDir };

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
    case Fault::kSyncDir:
      env_.FailNextSyncDirs(1);
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
  EXPECT_THAT(Children(), ElementsAre(SnapshotFileName(meta.lsn())));
  absl::StatusOr<std::unique_ptr<StateMachine>> loaded =
      Load(PathOf(meta.lsn()));
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(Dump(**loaded), Dump(*live));
}

std::string FaultTestName(
    const ::testing::TestParamInfo<std::tuple<Fault, size_t>>& info) {
  static constexpr const char* kNames[] = {"Sync", "Rename", "Append",
                                           "SyncDir"};
  return absl::StrCat(kNames[static_cast<int>(std::get<0>(info.param))],
                      "Payload", std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    Faults, SnapshotWriteFailureTest,
    ::testing::Combine(::testing::Values(Fault::kSync, Fault::kRename,
                                         Fault::kAppend, Fault::kSyncDir),
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
