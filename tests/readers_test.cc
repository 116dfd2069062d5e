// Readers beside a busy writer (issue 12, item 1): read-only Opens (what
// `taskwal stats`, `list` and `get` do) and `taskwal verify`'s check run in
// a loop, for several seconds, on a directory whose owner snapshots every
// few dozen transitions, and each of them must see a consistent directory:
// no kDataLoss, no vanished file, no damage reported, on the real file
// system.

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/verify.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::taskwal::wal::IsOk;

constexpr absl::Duration kRunFor = absl::Seconds(5);
// A snapshot after this many lifecycles (three transitions each).
constexpr int kSnapshotEvery = 12;

std::string FreshDir(absl::string_view name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, "-", ::getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

// Failures seen by the reader threads, for one report at the end.
class Failures {
 public:
  void Add(std::string what) {
    absl::MutexLock l(&mu_);
    if (list_.size() < 10) list_.push_back(std::move(what));
    ++count_;
  }
  int count() const {
    absl::MutexLock l(&mu_);
    return count_;
  }
  std::string Describe() const {
    absl::MutexLock l(&mu_);
    std::string out;
    for (const std::string& f : list_) absl::StrAppend(&out, "\n  ", f);
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> list_ ABSL_GUARDED_BY(mu_);
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

void RunReadersBesideWriter(uint32_t partitions, uint64_t segment_bytes) {
  const std::string dir = FreshDir(absl::StrCat("readers-", partitions));
  EngineOptions options;
  options.data_dir = dir;
  options.partitions = partitions;
  options.sync_mode = SyncMode::kInterval;  // Every call reaches the file.
  options.segment_bytes = segment_bytes;
  options.snapshot_every_records = 0;  // The writer snapshots by itself.
  absl::StatusOr<std::unique_ptr<Engine>> writer = Engine::Open(options);
  ASSERT_THAT(writer, IsOk());

  std::atomic<bool> stop{false};
  Failures failures;
  std::atomic<uint64_t> opens{0}, verifies{0}, snapshots{0}, lifecycles{0};

  // One thread mutates: submit, claim, complete, and a snapshot every
  // kSnapshotEvery lifecycles. At every moment the log therefore holds a
  // prefix of this sequence: all tasks but the newest are COMPLETED.
  std::thread writer_thread([&] {
    for (uint64_t i = 0; !stop.load(); ++i) {
      TaskSpec spec;
      spec.idempotency_key = absl::StrCat("key-", i);
      spec.type = "t";
      spec.payload = std::string(i % 200, 'p');
      absl::StatusOr<SubmitResult> submitted = (*writer)->Submit(spec);
      if (!submitted.ok()) {
        failures.Add(
            absl::StrCat("writer Submit: ", submitted.status().ToString()));
        return;
      }
      absl::StatusOr<ClaimedTask> claim =
          (*writer)->Claim(submitted->task_id, "w", absl::ZeroDuration());
      if (!claim.ok()) {
        failures.Add(absl::StrCat("writer Claim: ", claim.status().ToString()));
        return;
      }
      absl::Status s = (*writer)->Complete(claim->claim, "done");
      if (!s.ok()) {
        failures.Add(absl::StrCat("writer Complete: ", s.ToString()));
        return;
      }
      lifecycles.fetch_add(1);
      if (i % kSnapshotEvery == kSnapshotEvery - 1) {
        s = (*writer)->Snapshot();
        if (!s.ok()) {
          failures.Add(absl::StrCat("writer Snapshot: ", s.ToString()));
          return;
        }
        snapshots.fetch_add(1);
      }
    }
  });

  // Read-only Opens: each sees the writer's sequence up to some point, and
  // never an earlier point than the previous Open of the same thread.
  auto open_loop = [&] {
    EngineOptions read_options;
    read_options.data_dir = dir;
    read_options.read_only = true;
    uint64_t last_tasks = 0;
    while (!stop.load()) {
      absl::StatusOr<std::unique_ptr<Engine>> reader =
          Engine::Open(read_options);
      if (!reader.ok()) {
        failures.Add(
            absl::StrCat("read-only Open: ", reader.status().ToString()));
        continue;
      }
      absl::StatusOr<EngineStats> stats = (*reader)->Stats();
      if (!stats.ok()) {
        failures.Add(absl::StrCat("Stats: ", stats.status().ToString()));
        continue;
      }
      const uint64_t tasks = stats->tasks;
      if (stats->failed != 0 || stats->completed + 1 < tasks ||
          tasks < last_tasks) {
        failures.Add(absl::StrCat(
            "inconsistent view: tasks ", tasks, " (previous view ", last_tasks,
            "), completed ", stats->completed, ", failed ", stats->failed));
      }
      last_tasks = tasks;
      opens.fetch_add(1);
    }
  };
  // `taskwal verify`'s check: nothing but what Open repairs by itself (a
  // record that the writer is writing at that instant, read half-written).
  auto verify_loop = [&] {
    while (!stop.load()) {
      absl::StatusOr<std::vector<engine::Problem>> problems =
          engine::VerifyDirectory(Env::Default(), dir);
      if (!problems.ok()) {
        failures.Add(absl::StrCat("verify: ", problems.status().ToString()));
        continue;
      }
      for (const engine::Problem& p : *problems) {
        if (!p.repaired_by_open) {
          failures.Add(absl::StrCat("verify: ", engine::FormatProblem(p)));
        }
      }
      verifies.fetch_add(1);
    }
  };
  std::vector<std::thread> readers;
  readers.emplace_back(open_loop);
  readers.emplace_back(open_loop);
  readers.emplace_back(verify_loop);

  absl::SleepFor(kRunFor);
  stop.store(true);
  writer_thread.join();
  for (std::thread& t : readers) t.join();
  ASSERT_THAT((*writer)->Close(), IsOk());

  EXPECT_EQ(failures.count(), 0)
      << failures.count()
      << " failures, the first ones:" << failures.Describe();
  // The run means something only if the readers overlapped many snapshots.
  EXPECT_GE(snapshots.load(), 20u);
  EXPECT_GE(opens.load(), 10u);
  EXPECT_GE(verifies.load(), 5u);
  std::cout << "partitions " << partitions << ": " << lifecycles.load()
            << " lifecycles, " << snapshots.load() << " snapshots, "
            << opens.load() << " read-only opens, " << verifies.load()
            << " verifies\n";
  std::filesystem::remove_all(dir);
}

TEST(ReadersTest, SixteenPartitionsSnapshottingOften) {
  RunReadersBesideWriter(16, 64 << 20);
}

// Small segments: the writer also starts new segments while readers pin.
TEST(ReadersTest, OnePartitionSmallSegments) {
  RunReadersBesideWriter(1, 16 << 10);
}

}  // namespace
}  // namespace taskwal
