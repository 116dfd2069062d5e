// Restart and recovery of a data directory, end to end through the public
// API: exact state after restart (with and without snapshots), snapshot
// fallback, damage that must stop Open, salvage, the directory lock.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/partitioning.h"
#include "engine/stored_options.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/fault_injection_env.h"
#include "tests/engine_dump.h"
#include "wal/coding.h"
#include "wal/crc32c.h"
#include "wal/format.h"
#include "wal/log_writer.h"

namespace taskwal {
namespace {

using ::taskwal::test_util::Dump;

constexpr char kDir[] = "/db";

// The files of the newest snapshot: snapshot-<first segment>-<partition>.snap
// with the highest first segment.
std::vector<std::string> NewestSnapshotFiles(Env* env) {
  std::vector<std::string> snapshots;
  const std::vector<std::string> files = *env->GetChildren(kDir);
  for (const std::string& f : files) {
    if (absl::StartsWith(f, "snapshot-") && absl::EndsWith(f, ".snap")) {
      snapshots.push_back(f);
    }
  }
  std::sort(snapshots.begin(), snapshots.end());
  std::vector<std::string> newest;
  for (const std::string& f : snapshots) {
    if (f.substr(0, 29) == snapshots.back().substr(0, 29)) newest.push_back(f);
  }
  return newest;
}

// Every test runs with one partition and with sixteen.
class RecoveryTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  EngineOptions Options() {
    EngineOptions o;
    o.partitions = GetParam();
    o.data_dir = kDir;
    o.env = &env_;
    o.clock = &clock_;
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    o.segment_bytes = 4096;
    o.random_seed = 5;
    o.retention = absl::Hours(1);
    return o;
  }

  std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  // A workload that leaves every kind of state behind: pending (due and
  // delayed), claimed with leases, completed, failed, cancelled, retried.
  void Work(Engine* e, int round) {
    for (int i = 0; i < 40; ++i) {
      TaskSpec spec;
      spec.idempotency_key = absl::StrCat("r", round, "-", i);
      spec.type = i % 3 == 0 ? "email" : "order";
      spec.payload = std::string(i * 7, 'x');
      spec.priority = i % 4;
      if (i % 5 == 0) spec.not_before = clock_.Now() + absl::Minutes(10);
      ASSERT_TRUE(e->Submit(spec).ok());
    }
    for (int i = 0; i < 25; ++i) {
      clock_.Advance(absl::Seconds(1));
      ClaimNextOptions o;
      o.lease = absl::Seconds(30 + i);
      absl::StatusOr<ClaimedTask> c = e->ClaimNext(absl::StrCat("w", i % 3), o);
      ASSERT_TRUE(c.ok()) << c.status();
      const std::string w = c->task.claimed_by();
      switch (i % 5) {
        case 0:
        case 1:
          ASSERT_TRUE(e->Complete(c->claim, "ok").ok());
          break;
        case 2:
          ASSERT_TRUE(e->Fail(c->claim, "boom").ok());
          break;
        case 3:
          ASSERT_TRUE(e->Heartbeat(c->claim, absl::Minutes(5)).ok());
          break;
        default:
          break;  // Left claimed; its lease runs out later.
      }
    }
    ASSERT_TRUE(
        e->Cancel(e->GetByIdempotencyKey(absl::StrCat("r", round, "-35"))->id())
            .ok());
    clock_.Advance(absl::Minutes(2));
    ASSERT_TRUE(e->RunMaintenance().ok());  // Expires short leases.
  }

  ManualClock clock_;
  FaultInjectionEnv env_{1};
};

TEST_P(RecoveryTest, RestartRebuildsExactlyTheSameState) {
  std::string before;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    before = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  EXPECT_EQ(Dump(e.get()), before);
  RecoveryReport r = e->Recovery();
  EXPECT_EQ(r.snapshot_lsn, 0u);
  EXPECT_GT(r.records_replayed, 60u);
  EXPECT_EQ(r.truncated_bytes, 0u);
  // The engine carries on where it stopped: ids continue (in each
  // partition, past its last), the delayed and claimed tasks come due at
  // the same times.
  TaskSpec spec;
  spec.idempotency_key = "after-restart";
  absl::StatusOr<SubmitResult> r1 = e->Submit(spec);
  ASSERT_TRUE(r1.ok());
  if (GetParam() == 1) {
    EXPECT_EQ(r1->task_id, 41u);
  } else {
    ListFilter all;
    all.limit = 1000;
    absl::StatusOr<ListPage> page = e->List(all);
    ASSERT_TRUE(page.ok());
    uint64_t last_of_partition = 0;
    for (const Task& t : page->tasks) {
      if (t.id() != r1->task_id &&
          t.id() % GetParam() == r1->task_id % GetParam()) {
        last_of_partition = std::max(last_of_partition, t.id());
      }
    }
    EXPECT_EQ(r1->task_id, last_of_partition + GetParam());
  }
}

// Without retention the engine keeps no finish-time index; an engine
// reopened with retention builds it from the snapshot and the log, so tasks
// that finished before still expire.
TEST_P(RecoveryTest, RetentionTurnedOnLaterFindsTasksFinishedBefore) {
  EngineOptions keep_forever = Options();
  keep_forever.retention = absl::ZeroDuration();
  uint64_t finished = 0;
  {
    std::unique_ptr<Engine> e = OpenOrDie(keep_forever);
    Work(e.get(), 0);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 1);
    clock_.Advance(absl::Hours(2));
    ASSERT_TRUE(e->RunMaintenance().ok());
    EXPECT_EQ(e->Stats()->retention_removals, 0u);
    absl::StatusOr<EngineStats> stats = e->Stats();
    ASSERT_TRUE(stats.ok());
    finished = stats->completed + stats->failed + stats->cancelled;
    ASSERT_GT(finished, 0u);
    ASSERT_TRUE(e->Close().ok());
  }
  // Past retention for all of them, those whose lease expired just now too.
  clock_.Advance(absl::Hours(2));
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  ASSERT_TRUE(e->RunMaintenance().ok());
  EXPECT_EQ(e->Stats()->retention_removals, finished);
  // Tasks that finish now are within retention: they stay.
  Work(e.get(), 2);  // Ends with maintenance.
  ASSERT_TRUE(e->RunMaintenance().ok());
  absl::StatusOr<EngineStats> after = e->Stats();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->retention_removals, finished);
  EXPECT_GT(after->completed + after->failed + after->cancelled, 0u);
}

// Keys, types, worker ids and errors are journaled in protobuf string
// fields: text outside ASCII survives a restart, and bytes that are not
// UTF-8 are refused before anything is journaled (they would not parse back
// at Open).
TEST_P(RecoveryTest, TextFieldsSurviveRestartAndNonUtf8IsRefused) {
  std::string before;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    TaskSpec spec;
    spec.idempotency_key = "cl\xc3\xa9-\xf0\x9f\x98\x80";
    spec.type = "\xe2\x82\xac";
    ASSERT_TRUE(e->Submit(spec).ok());
    spec.idempotency_key = "k\xff";
    EXPECT_EQ(e->Submit(spec).status().code(),
              absl::StatusCode::kInvalidArgument);
    absl::StatusOr<ClaimedTask> c = e->ClaimNext("w\xc3\xbc", {});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(e->ClaimNext("w\xff", {}).status().code(),
              absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(e->Fail(c->claim, "\xe2\x9c\x97").ok());
    ASSERT_TRUE(e->Snapshot().ok());
    before = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(Dump(e.get()), before);
}

TEST_P(RecoveryTest, RestartFromSnapshotPlusLogMatchesLiveState) {
  std::string before;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 1);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 2);
    clock_.Advance(absl::Hours(2));  // Past retention for the finished ones.
    ASSERT_TRUE(e->RunMaintenance().ok());
    before = Dump(e.get());
    EXPECT_GT(e->Stats()->retention_removals, 0u);
    ASSERT_TRUE(e->Close().ok());
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  EXPECT_EQ(Dump(e.get()), before);
  RecoveryReport r = e->Recovery();
  EXPECT_GT(r.snapshot_lsn, 0u);
  EXPECT_GT(r.records_replayed, 0u);
  // Segments covered by the older of the two snapshots are gone.
  std::vector<std::string> files = *env_.GetChildren(kDir);
  int segments = 0;
  for (const std::string& f : files) segments += absl::StartsWith(f, "wal-");
  EXPECT_GT(segments, 0);
  // Three restarts in a row change nothing.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(e->Close().ok());
    e = OpenOrDie(Options());
    EXPECT_EQ(Dump(e.get()), before);
  }
}

TEST_P(RecoveryTest, DamagedNewestSnapshotFallsBackToThePreviousOne) {
  std::string before;
  uint64_t newest = 0;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 1);
    ASSERT_TRUE(e->Snapshot().ok());
    newest = e->Stats()->last_snapshot_lsn;
    Work(e.get(), 2);
    before = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  // Flip one byte in the middle of the largest file of the newest snapshot
  // (one partition's; the names sort newest last).
  std::string name;
  size_t largest = 0;
  const std::vector<std::string> files = NewestSnapshotFiles(&env_);
  for (const std::string& f : files) {
    const size_t size =
        env_.ReadFileToString(absl::StrCat(kDir, "/", f))->size();
    if (size > largest) {
      largest = size;
      name = f;
    }
  }
  ASSERT_FALSE(name.empty());
  const std::string path = absl::StrCat(kDir, "/", name);
  std::string contents = *env_.ReadFileToString(path);
  contents[contents.size() / 2] ^= 0x40;
  {
    std::unique_ptr<WritableFile> f = *env_.NewWritableFile(path);
    ASSERT_TRUE(f->Append(contents).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  EXPECT_EQ(Dump(e.get()), before);
  RecoveryReport r = e->Recovery();
  EXPECT_LT(r.snapshot_lsn, newest);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_TRUE(absl::StrContains(r.notes[0], name)) << r.notes[0];
  EXPECT_TRUE(env_.FileExists(path + ".corrupt"));  // Set aside, not deleted.
  EXPECT_FALSE(env_.FileExists(path));
}

// Finds the oldest log segment.
std::string FirstSegment(Env* env) {
  std::vector<std::string> files = *env->GetChildren(kDir);
  std::string first;
  for (const std::string& f : files) {
    if (absl::StartsWith(f, "wal-") && absl::EndsWith(f, ".log") &&
        (first.empty() || f < first)) {
      first = f;
    }
  }
  return first;
}

std::map<std::string, std::string> DirContents(Env* env) {
  std::map<std::string, std::string> out;
  const std::vector<std::string> files = *env->GetChildren(kDir);
  for (const std::string& f : files) {
    out[f] = *env->ReadFileToString(absl::StrCat(kDir, "/", f));
  }
  return out;
}

TEST_P(RecoveryTest, DamageBeforeValidRecordsIsDataLossAndChangesNothing) {
  std::string before;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    Work(e.get(), 1);
    before = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  const std::string segment = FirstSegment(&env_);
  const std::string path = absl::StrCat(kDir, "/", segment);
  std::string contents = *env_.ReadFileToString(path);
  ASSERT_GT(contents.size(), 1000u);
  contents[600] ^= 0x01;
  {
    std::unique_ptr<WritableFile> f = *env_.NewWritableFile(path);
    ASSERT_TRUE(f->Append(contents).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  const std::map<std::string, std::string> damaged = DirContents(&env_);
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(Options());
  ASSERT_EQ(e.status().code(), absl::StatusCode::kDataLoss) << e.status();
  EXPECT_TRUE(absl::StrContains(e.status().message(), segment)) << e.status();
  EXPECT_TRUE(absl::StrContains(e.status().message(), "offset")) << e.status();
  // The failed Open left every file as it was (the lock file aside).
  std::map<std::string, std::string> after = DirContents(&env_);
  after.erase("LOCK");
  std::map<std::string, std::string> expected = damaged;
  expected.erase("LOCK");
  EXPECT_EQ(after, expected);

  // Salvage keeps the valid prefix and sets the rest aside.
  EngineOptions salvage = Options();
  salvage.salvage = true;
  std::unique_ptr<Engine> s = OpenOrDie(salvage);
  RecoveryReport r = s->Recovery();
  EXPECT_GT(r.truncated_bytes, 0u);
  EXPECT_FALSE(r.notes.empty());
  EXPECT_NE(Dump(s.get()), before);  // Something was lost, knowingly.
  bool salvaged = false;
  const std::vector<std::string> files = *env_.GetChildren(kDir);
  for (const std::string& f : files) {
    salvaged |= absl::EndsWith(f, ".salvaged");
  }
  EXPECT_TRUE(salvaged);
  // And it is a working engine again, also after a restart.
  TaskSpec spec;
  spec.idempotency_key = "after-salvage";
  ASSERT_TRUE(s->Submit(spec).ok());
  const std::string salvaged_state = Dump(s.get());
  ASSERT_TRUE(s->Close().ok());
  std::unique_ptr<Engine> again = OpenOrDie(Options());
  EXPECT_EQ(Dump(again.get()), salvaged_state);
}

// The older snapshot's segments are kept only as a way back; damage in one
// whose records the newest snapshot holds costs nothing and must not stop
// Open (nor make salvage drop the intact log after it).
TEST_P(RecoveryTest, DamageInASegmentTheSnapshotCoversIsIgnored) {
  std::string before;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 1);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 2);
    before = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  const std::string segment = FirstSegment(&env_);
  const std::string path = absl::StrCat(kDir, "/", segment);
  std::string contents = *env_.ReadFileToString(path);
  contents[contents.size() / 2] ^= 0x10;
  {
    std::unique_ptr<WritableFile> f = *env_.NewWritableFile(path);
    ASSERT_TRUE(f->Append(contents).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(Dump(e.get()), before);
  // The newest snapshot covers the segment whole, so Open does not even
  // read it (`taskwal verify` does, and reports the damage).
  for (const std::string& n : e->Recovery().notes) {
    EXPECT_FALSE(absl::StrContains(n, segment)) << n;
  }
}

// A snapshot ends the log segment it was taken in, so the records it holds
// sit in segments it covers whole, which the next Open does not read; the
// restart still comes back exactly where it was.
TEST_P(RecoveryTest, SnapshotStartsANewSegmentForLaterRecords) {
  std::string before;
  uint64_t snapshot_lsn = 0;
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    ASSERT_TRUE(e->Snapshot().ok());
    snapshot_lsn = e->Stats()->last_snapshot_lsn;
    Work(e.get(), 1);
    before = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  std::vector<uint64_t> firsts;
  absl::StatusOr<std::vector<std::string>> files = env_.GetChildren(kDir);
  ASSERT_TRUE(files.ok()) << files.status();
  for (absl::string_view f : *files) {
    uint64_t first = 0;
    if (absl::ConsumePrefix(&f, "wal-") && absl::ConsumeSuffix(&f, ".log") &&
        absl::SimpleAtoi(f, &first)) {
      firsts.push_back(first);
    }
  }
  // The snapshot's files are named after the segment it started; the log
  // after the snapshot begins there.
  const std::vector<std::string> newest = NewestSnapshotFiles(&env_);
  ASSERT_EQ(newest.size(), GetParam());
  uint64_t started = 0;
  ASSERT_TRUE(absl::SimpleAtoi(newest[0].substr(9, 20), &started));
  EXPECT_THAT(firsts, ::testing::Contains(started));
  EXPECT_GT(started, *std::min_element(firsts.begin(), firsts.end()));
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(Dump(e.get()), before);
  EXPECT_EQ(e->Recovery().snapshot_lsn, snapshot_lsn);
}

TEST_P(RecoveryTest, SecondOpenOfTheSameDirectoryIsUnavailableUntilClose) {
  std::unique_ptr<Engine> e = OpenOrDie(Options());
  absl::StatusOr<std::unique_ptr<Engine>> second = Engine::Open(Options());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(second.status().message(), "locked"))
      << second.status();
  ASSERT_TRUE(e->Close().ok());
  EXPECT_TRUE(Engine::Open(Options()).ok());
}

TEST_P(RecoveryTest, ReadOnlyOpenInspectsAHeldDirectoryAndChangesNothing) {
  std::unique_ptr<Engine> owner = OpenOrDie(Options());
  Work(owner.get(), 0);
  ASSERT_TRUE(owner->Snapshot().ok());
  Work(owner.get(), 1);
  const std::string state = Dump(owner.get());
  const std::map<std::string, std::string> files = DirContents(&env_);

  EngineOptions ro = Options();
  ro.read_only = true;
  std::unique_ptr<Engine> reader = OpenOrDie(ro);
  EXPECT_EQ(Dump(reader.get()), state);
  TaskSpec spec;
  spec.idempotency_key = "from-the-reader";
  EXPECT_EQ(reader->Submit(spec).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reader->Retry(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reader->Snapshot().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reader->RunMaintenance().code(),
            absl::StatusCode::kFailedPrecondition);
  // A claim is refused as read-only, not as lost (kAborted) or closed
  // (kCancelled), whoever holds it.
  const ClaimRef claim{1, "w", 1};
  EXPECT_EQ(reader->Complete(claim, "r").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reader->Fail(claim, "e").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reader->Heartbeat(claim, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reader->ClaimNext("w", {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Reads work, NextDueTime included.
  EXPECT_TRUE(reader->NextDueTime("").ok());
  ASSERT_TRUE(reader->Close().ok());
  EXPECT_EQ(DirContents(&env_), files);

  // The owner keeps working; a torn tail is skipped, not cut, by a reader.
  ASSERT_TRUE(owner->Submit(spec).ok());
  ASSERT_TRUE(owner->Close().ok());
  const std::string segment = [&] {
    std::string last;
    const std::vector<std::string> names = *env_.GetChildren(kDir);
    for (const std::string& f : names) {
      if (absl::StartsWith(f, "wal-") && f > last) last = f;
    }
    return last;
  }();
  ASSERT_FALSE(segment.empty());
  const std::string path = absl::StrCat(kDir, "/", segment);
  {
    std::unique_ptr<WritableFile> f = *env_.NewAppendableFile(path);
    ASSERT_TRUE(f->Append(std::string("\x07\x00\x00", 3)).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  const std::string torn = *env_.ReadFileToString(path);
  reader = OpenOrDie(ro);
  EXPECT_EQ(reader->Recovery().truncated_bytes, 3u);
  EXPECT_TRUE(reader->GetByIdempotencyKey("from-the-reader").ok());
  EXPECT_EQ(*env_.ReadFileToString(path), torn);

  ro.data_dir = "/missing";
  EXPECT_EQ(Engine::Open(ro).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(RecoveryTest, OversizedRecordIsRefusedWithoutStoppingTheEngine) {
  EngineOptions o = Options();
  o.max_payload_bytes = 8 << 20;
  std::unique_ptr<Engine> e = OpenOrDie(o);
  // Nine keys of one partition: 72 MiB in one record (a batch spread over
  // partitions is one record per partition).
  std::vector<TaskSpec> batch;
  for (int i = 0; batch.size() < 9; ++i) {
    const std::string key = absl::StrCat("big-", i);
    if (engine::PartitionOfKey(key, GetParam()) !=
        engine::PartitionOfKey("big-0", GetParam())) {
      continue;
    }
    batch.emplace_back();
    batch.back().idempotency_key = key;
    batch.back().payload = std::string(8 << 20, 'b');
  }
  absl::StatusOr<std::vector<SubmitResult>> r = e->SubmitBatch(batch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_EQ(e->Stats()->tasks, 0u);
  batch.resize(2);
  EXPECT_TRUE(e->SubmitBatch(batch).ok());
}

// A batch whose keys span partitions is journaled as one group of records,
// one per partition, written by one flush. A power loss that tears the
// flush (kInterval: the batch was written but not yet fdatasynced) must
// leave all of the batch or none of it, never some partitions' share.
TEST_P(RecoveryTest, BatchAcrossPartitionsIsAllOrNothingAcrossPowerLoss) {
  constexpr int kSeeds = 150;
  constexpr int kBatch = 24;
  int all = 0, none = 0;
  for (int seed = 0; seed < kSeeds; ++seed) {
    SCOPED_TRACE(seed);
    FaultInjectionEnv env(/*seed=*/1000 + seed);
    EngineOptions o = Options();
    o.env = &env;
    o.segment_bytes = 1 << 20;
    o.sync_mode = SyncMode::kInterval;
    o.sync_interval = absl::Hours(1);  // Nothing is fdatasynced by itself.
    {
      std::unique_ptr<Engine> e = OpenOrDie(o);
      ASSERT_NE(e, nullptr);
      TaskSpec before;
      before.idempotency_key = "durable";
      ASSERT_TRUE(e->Submit(before).ok());
      ASSERT_TRUE(e->Close().ok());  // Everything so far is durable.
    }
    {
      std::unique_ptr<Engine> e = OpenOrDie(o);
      ASSERT_NE(e, nullptr);
      std::vector<TaskSpec> batch(kBatch);
      for (int i = 0; i < kBatch; ++i) {
        batch[i].idempotency_key = absl::StrCat("batch-", i);
        batch[i].payload = std::string(40, 'p');
      }
      ASSERT_TRUE(e->SubmitBatch(batch).ok());
      TaskSpec after;
      after.idempotency_key = "after";
      ASSERT_TRUE(e->Submit(after).ok());
      env.SimulatePowerLoss(PowerLossMode::kTornTail);
      e->Close().IgnoreError();  // Its files are gone with the power.
    }
    std::unique_ptr<Engine> e = OpenOrDie(o);
    ASSERT_NE(e, nullptr);
    ASSERT_TRUE(e->GetByIdempotencyKey("durable").ok());
    int found = 0;
    for (int i = 0; i < kBatch; ++i) {
      found += e->GetByIdempotencyKey(absl::StrCat("batch-", i)).ok() ? 1 : 0;
    }
    EXPECT_TRUE(found == 0 || found == kBatch) << found << " of " << kBatch;
    all += found == kBatch;
    none += found == 0;
    // What survived is a working engine.
    TaskSpec again;
    again.idempotency_key = "batch-0";
    again.payload = std::string(40, 'p');
    absl::StatusOr<SubmitResult> r = e->Submit(again);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->deduplicated, found == kBatch);
  }
  // The tear fell both before and after the group in some runs.
  EXPECT_GT(all, 0);
  EXPECT_GT(none, 0);
}

// A partition's snapshot holds it through LSN S, and the log's first record
// of the partition past S is missing: Open fails naming S + 1, the LSN the
// log should have gone on with (not 1, as if there were no snapshot), and
// the snapshot that makes it so, and changes nothing.
TEST_P(RecoveryTest, GapRightAfterTheSnapshotNamesTheSnapshotsNextLsn) {
  {
    std::unique_ptr<Engine> e = OpenOrDie(Options());
    Work(e.get(), 0);
    ASSERT_TRUE(e->Snapshot().ok());
    Work(e.get(), 1);
    ASSERT_TRUE(e->Close().ok());
  }
  // snapshot-<first segment, 20 digits>-<partition, 4 digits>.snap
  const std::vector<std::string> snapshots = NewestSnapshotFiles(&env_);
  ASSERT_EQ(snapshots.size(), GetParam());
  const std::string first_segment = snapshots[0].substr(9, 20);
  const std::string segment = absl::StrCat("wal-", first_segment, ".log");
  const std::string path = absl::StrCat(kDir, "/", segment);
  std::string contents = *env_.ReadFileToString(path);

  // The records of the snapshot's first segment: all of them are past the
  // snapshot (nothing ran while it was taken). Pick the first one of a
  // partition that has another record after it there.
  struct Record {
    size_t offset;
    size_t size;
    uint32_t partition;
    uint64_t lsn;
  };
  std::vector<Record> records;
  for (size_t at = wal::kFileHeaderSize;
       at + wal::kRecordHeaderSize <= contents.size();) {
    const char* header = contents.data() + at;
    const size_t size = wal::kRecordHeaderSize +
                        wal::DecodeFixed32(header + wal::kRecordLengthOffset);
    records.push_back({at, size,
                       wal::DecodeFixed16(header + wal::kRecordPartitionOffset),
                       wal::DecodeFixed64(header + wal::kRecordLsnOffset)});
    at += size;
  }
  std::optional<Record> dropped;
  std::optional<Record> next;
  for (size_t i = 0; i < records.size() && !dropped; ++i) {
    for (size_t j = i + 1; j < records.size(); ++j) {
      if (records[j].partition == records[i].partition) {
        dropped = records[i];
        next = records[j];
        break;
      }
    }
  }
  ASSERT_TRUE(dropped.has_value()) << segment;
  // The snapshot of that partition holds it through the LSN just before.
  const std::string snapshot =
      absl::StrCat(kDir, "/snapshot-", first_segment, "-",
                   absl::Dec(dropped->partition, absl::kZeroPad4), ".snap");
  const uint64_t snapshot_lsn = wal::DecodeFixed64(
      env_.ReadFileToString(snapshot)->data() + wal::kFileHeaderLsnOffset);
  ASSERT_GT(snapshot_lsn, 0u);
  ASSERT_EQ(dropped->lsn, snapshot_lsn + 1);
  ASSERT_EQ(next->lsn, snapshot_lsn + 2);

  contents.erase(dropped->offset, dropped->size);
  {
    std::unique_ptr<WritableFile> f = *env_.NewWritableFile(path);
    ASSERT_TRUE(f->Append(contents).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  std::map<std::string, std::string> damaged = DirContents(&env_);
  damaged.erase("LOCK");
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(Options());
  ASSERT_EQ(e.status().code(), absl::StatusCode::kDataLoss) << e.status();
  for (const std::string& part :
       {absl::StrCat(segment, " offset ", next->offset - dropped->size),
        absl::StrCat("partition ", dropped->partition, " LSN ",
                     snapshot_lsn + 2, " where ", snapshot_lsn + 1,
                     " was expected (the snapshot holds the partition "
                     "through LSN ",
                     snapshot_lsn, ")")}) {
    EXPECT_TRUE(absl::StrContains(e.status().message(), part)) << part << "\n"
                                                               << e.status();
  }
  std::map<std::string, std::string> after = DirContents(&env_);
  after.erase("LOCK");
  EXPECT_EQ(after, damaged);
}

// History keeps max_history_per_task entries per task and counts the older
// ones in Task::history_dropped. The count comes from the records like the
// rest of the task, and snapshots keep it: a restart from the log alone,
// from a snapshot, and from a snapshot plus the log all show the same
// entries and the same count.
TEST_P(RecoveryTest, DroppedHistoryIsCountedAlikeAfterReplayAndSnapshot) {
  EngineOptions o = Options();
  o.max_history_per_task = 4;
  uint64_t busy = 0;
  uint64_t quiet = 0;
  // Claim and release: two history entries.
  auto claim_and_release = [](Engine* e, uint64_t id) {
    ASSERT_TRUE(e->Claim(id, "w", absl::ZeroDuration()).ok());
    ASSERT_TRUE(e->Retry(id).ok());
  };
  auto expect_history = [](Engine* e, uint64_t id, uint64_t dropped,
                           size_t kept) {
    absl::StatusOr<Task> task = e->Get(id);
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_EQ(task->history_dropped(), dropped) << "task " << id;
    absl::StatusOr<std::vector<HistoryEntry>> history = e->History(id);
    ASSERT_TRUE(history.ok()) << history.status();
    EXPECT_EQ(history->size(), kept) << "task " << id;
  };
  std::string live;
  {
    std::unique_ptr<Engine> e = OpenOrDie(o);
    TaskSpec spec;
    spec.idempotency_key = "busy";
    busy = e->Submit(spec)->task_id;
    spec.idempotency_key = "quiet";
    quiet = e->Submit(spec)->task_id;
    for (int i = 0; i < 5; ++i) claim_and_release(e.get(), busy);
    claim_and_release(e.get(), quiet);
    // 11 entries for busy, of which the newest 4 are kept; quiet has 3.
    expect_history(e.get(), busy, 7, 4);
    expect_history(e.get(), quiet, 0, 3);
    EXPECT_EQ(e->History(busy)->back().event(), HistoryEntry::RETRIED);
    live = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  {  // The log alone.
    std::unique_ptr<Engine> e = OpenOrDie(o);
    EXPECT_EQ(e->Recovery().snapshot_lsn, 0u);
    expect_history(e.get(), busy, 7, 4);
    expect_history(e.get(), quiet, 0, 3);
    EXPECT_EQ(Dump(e.get()), live);
    ASSERT_TRUE(e->Snapshot().ok());
    ASSERT_TRUE(e->Close().ok());
  }
  {  // The snapshot alone.
    std::unique_ptr<Engine> e = OpenOrDie(o);
    EXPECT_GT(e->Recovery().snapshot_lsn, 0u);
    EXPECT_EQ(e->Recovery().records_replayed, 0u);
    expect_history(e.get(), busy, 7, 4);
    EXPECT_EQ(Dump(e.get()), live);
    claim_and_release(e.get(), busy);
    claim_and_release(e.get(), quiet);
    expect_history(e.get(), busy, 9, 4);
    expect_history(e.get(), quiet, 1, 4);
    live = Dump(e.get());
    ASSERT_TRUE(e->Close().ok());
  }
  {  // The snapshot, then the log after it.
    std::unique_ptr<Engine> e = OpenOrDie(o);
    EXPECT_GT(e->Recovery().records_replayed, 0u);
    expect_history(e.get(), busy, 9, 4);
    expect_history(e.get(), quiet, 1, 4);
    EXPECT_EQ(Dump(e.get()), live);
    ASSERT_TRUE(e->Close().ok());
  }
  // A larger bound cannot bring back what the snapshot no longer holds, and
  // keeps what the log after it replays: kept and dropped still add up to
  // every entry the task had.
  o.max_history_per_task = 100;
  std::unique_ptr<Engine> e = OpenOrDie(o);
  expect_history(e.get(), busy, 7, 6);
  expect_history(e.get(), quiet, 0, 5);
}

// Each Open goes on appending to the last segment when it ended cleanly,
// so many short sessions (a CLI write each) leave one segment, not one per
// session; a power loss after a continued segment loses nothing
// acknowledged; and a segment a snapshot made obsolete is never continued.
TEST_P(RecoveryTest, ShortSessionsShareOneSegment) {
  EngineOptions o = Options();
  o.segment_bytes = 1 << 20;
  auto segments = [this] {
    int n = 0;
    const std::vector<std::string> files = *env_.GetChildren(kDir);
    for (const std::string& f : files) {
      if (absl::StartsWith(f, "wal-")) ++n;
    }
    return n;
  };
  auto expect_tasks = [](Engine* e, int n) {
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(e->GetByIdempotencyKey(absl::StrCat("k-", i)).ok()) << i;
    }
    EXPECT_EQ(e->Stats()->pending, static_cast<uint64_t>(n));
  };
  for (int i = 0; i < 50; ++i) {
    std::unique_ptr<Engine> e = OpenOrDie(o);
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k-", i);
    ASSERT_TRUE(e->Submit(spec).ok());
    if (i == 25) {
      // Acknowledged (kAlways), then the machine loses power.
      env_.SimulatePowerLoss(PowerLossMode::kTornTail);
      e->Close().IgnoreError();  // Its files are gone with the power.
      continue;
    }
    ASSERT_TRUE(e->Close().ok());
  }
  EXPECT_EQ(segments(), 1);
  {
    std::unique_ptr<Engine> e = OpenOrDie(o);
    expect_tasks(e.get(), 50);
    // A snapshot starts the next segment; Close removes it while empty, so
    // the last segment on disk is one the snapshot holds in full.
    ASSERT_TRUE(e->Snapshot().ok());
    ASSERT_TRUE(e->Close().ok());
  }
  for (int i = 50; i < 60; ++i) {
    std::unique_ptr<Engine> e = OpenOrDie(o);
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k-", i);
    ASSERT_TRUE(e->Submit(spec).ok());
    ASSERT_TRUE(e->Close().ok());
  }
  EXPECT_LE(segments(), 2);
  std::unique_ptr<Engine> e = OpenOrDie(o);
  expect_tasks(e.get(), 60);
}

// The owner's data options are stored in the directory; an Open with
// use_stored_options (the CLI's) accepts and keeps what the owner does.
TEST_P(RecoveryTest, UseStoredOptionsTakesTheLastWritersOptions) {
  EngineOptions owner = Options();
  owner.max_max_attempts = 5000;
  owner.max_history_per_task = 100;
  owner.max_type_bytes = 8;
  {
    std::unique_ptr<Engine> e = OpenOrDie(owner);
    TaskSpec spec;
    spec.idempotency_key = "long-lived";
    ASSERT_TRUE(e->Submit(spec).ok());
    // 60 history entries: more than the default bound of 32.
    for (int i = 0; i < 30; ++i) {
      ASSERT_TRUE(e->Claim(e->GetByIdempotencyKey("long-lived")->id(), "w",
                           absl::ZeroDuration())
                      .ok());
      ASSERT_TRUE(e->Retry(e->GetByIdempotencyKey("long-lived")->id()).ok());
    }
    ASSERT_TRUE(e->Close().ok());
  }
  TaskSpec big;
  big.idempotency_key = "big";
  big.max_attempts = 5000;
  EngineOptions tool = Options();
  tool.use_stored_options = true;
  for (bool read_only : {true, false}) {
    tool.read_only = read_only;
    std::unique_ptr<Engine> e = OpenOrDie(tool);
    const uint64_t id = e->GetByIdempotencyKey("long-lived")->id();
    EXPECT_EQ(e->History(id)->size(), 61u) << read_only;
    TaskSpec long_type;
    long_type.idempotency_key = "long-type";
    long_type.type = "nine char";
    EXPECT_EQ(e->Submit(long_type).status().code(),
              absl::StatusCode::kInvalidArgument);
    if (!read_only) {
      ASSERT_TRUE(e->Submit(big).ok());
      // Kept at the owner's bound, not cut to the default 32, also in a
      // snapshot.
      ASSERT_TRUE(e->Claim(id, "w", absl::ZeroDuration()).ok());
      ASSERT_TRUE(e->Snapshot().ok());
      EXPECT_EQ(e->History(id)->size(), 62u);
    }
    ASSERT_TRUE(e->Close().ok());
  }
  {
    std::unique_ptr<Engine> e = OpenOrDie(owner);
    EXPECT_EQ(e->GetByIdempotencyKey("big")->max_attempts(), 5000u);
    EXPECT_EQ(e->History(e->GetByIdempotencyKey("long-lived")->id())->size(),
              62u);
    ASSERT_TRUE(e->Close().ok());
  }
  const std::string options_file = absl::StrCat(kDir, "/OPTIONS");
  // A damaged file: the tool is told, the owner's next Open rewrites it.
  std::string contents = *env_.ReadFileToString(options_file);
  contents.back() ^= 1;
  auto rewrite = [&](const std::string& bytes) {
    auto file = env_.NewWritableFile(options_file);
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE((*file)->Append(bytes).ok());
    ASSERT_TRUE((*file)->Close().ok());
  };
  rewrite(contents);
  tool.read_only = true;
  absl::StatusOr<std::unique_ptr<Engine>> refused = Engine::Open(tool);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("OPTIONS"));
  OpenOrDie(owner)->Close().IgnoreError();
  ASSERT_NE(OpenOrDie(tool), nullptr);
  // A stored value out of range is refused, naming the file.
  EngineOptions bad = owner;
  bad.max_idempotency_key_bytes = 1;
  OpenOrDie(bad)->Close().IgnoreError();
  contents = *env_.ReadFileToString(options_file);
  // The record's payload (after the file and record headers) is a
  // StoredOptions: store a limit of 0, which Open refuses.
  engine::StoredOptions stored;
  ASSERT_TRUE(stored.ParseFromString(
      contents.substr(wal::kFileHeaderSize + wal::kRecordHeaderSize)));
  ASSERT_EQ(stored.max_idempotency_key_bytes(), 1u);
  stored.set_max_idempotency_key_bytes(0);
  std::string framed = wal::EncodeFileHeader(wal::kOptionsMagic, 0);
  wal::AppendRecord(wal::RecordType::kStoredOptions, 0, 0,
                    stored.SerializeAsString(), &framed);
  rewrite(framed);
  refused = Engine::Open(tool);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("OPTIONS"));
}

INSTANTIATE_TEST_SUITE_P(Partitions, RecoveryTest, ::testing::Values(1u, 16u),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return absl::StrCat(info.param, "Partitions");
                         });

// A directory written before partitions (format version 1: no META, one
// LSN sequence) is refused with a message naming the version, writable or
// read-only, and nothing in it is changed.
TEST(FormatVersionTest, VersionOneDirectoryIsRefusedAndLeftAlone) {
  FaultInjectionEnv env(3);
  ASSERT_TRUE(env.CreateDir("/v1").ok());
  std::string header(wal::kFileHeaderSize, '\0');
  std::memcpy(&header[0], wal::kSegmentMagic.data(), wal::kMagicSize);
  wal::EncodeFixed32(&header[wal::kFileHeaderVersionOffset], 1);
  wal::EncodeFixed64(&header[wal::kFileHeaderLsnOffset], 1);
  wal::EncodeFixed32(&header[wal::kFileHeaderCrcOffset],
                     wal::crc32c::Mask(wal::crc32c::Value(
                         header.data(), wal::kFileHeaderCrcOffset)));
  {
    std::unique_ptr<WritableFile> f =
        *env.NewWritableFile("/v1/wal-00000000000000000001.log");
    ASSERT_TRUE(f->Append(header + std::string(100, 'r')).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  const std::string before =
      *env.ReadFileToString("/v1/wal-00000000000000000001.log");
  for (bool read_only : {false, true}) {
    EngineOptions o;
    o.data_dir = "/v1";
    o.env = &env;
    o.read_only = read_only;
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition)
        << e.status();
    EXPECT_TRUE(absl::StrContains(e.status().message(), "version 1"))
        << e.status();
  }
  std::vector<std::string> files = *env.GetChildren("/v1");
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files,
            (std::vector<std::string>{"LOCK", "wal-00000000000000000001.log"}));
  EXPECT_EQ(*env.ReadFileToString("/v1/wal-00000000000000000001.log"), before);
}

// Opening a directory with another partition count than it was created
// with fails and changes nothing; partitions = 0 takes the directory's.
TEST(FormatVersionTest, PartitionCountIsTheDirectorys) {
  FaultInjectionEnv env(4);
  EngineOptions o;
  o.data_dir = "/p";
  o.env = &env;
  o.partitions = 4;
  {
    std::unique_ptr<Engine> e = *Engine::Open(o);
    TaskSpec spec;
    spec.idempotency_key = "k";
    ASSERT_TRUE(e->Submit(spec).ok());
    ASSERT_TRUE(e->Close().ok());
  }
  o.partitions = 8;
  absl::StatusOr<std::unique_ptr<Engine>> wrong = Engine::Open(o);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "4 partitions"))
      << wrong.status();
  o.partitions = 0;
  absl::StatusOr<std::unique_ptr<Engine>> right = Engine::Open(o);
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ((*right)->Stats()->partitions, 4u);
  EXPECT_TRUE((*right)->GetByIdempotencyKey("k").ok());
}

// The same guarantees on the real file system, plus file permissions.
TEST(PosixRecoveryTest, RestartOnDiskAndFilesAreOwnerOnly) {
  const std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/posix-db");
  EngineOptions o;
  o.data_dir = dir;
  o.maintenance_interval = absl::ZeroDuration();
  std::string before;
  {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status();
    for (int i = 0; i < 100; ++i) {
      TaskSpec spec;
      spec.idempotency_key = absl::StrCat("k", i);
      ASSERT_TRUE((*e)->Submit(spec).ok());
    }
    ASSERT_TRUE((*e)->Snapshot().ok());
    absl::StatusOr<ClaimedTask> c = (*e)->ClaimNext("w", {});
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE((*e)->Complete(c->claim, "r").ok());
    before = Dump(e->get());
    ASSERT_TRUE((*e)->Close().ok());
  }
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(o);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(Dump(e->get()), before);
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::vector<std::string> files = *Env::Default()->GetChildren(dir);
  for (const std::string& f : files) {
    ASSERT_EQ(stat(absl::StrCat(dir, "/", f).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
}

}  // namespace
}  // namespace taskwal
