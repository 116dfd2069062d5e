#include "wal/wal.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "api/env.h"
#include "api/fault_injection_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
constexpr absl::StatusCode kInternal = absl::StatusCode::kInternal;
constexpr char kDir[] = "/db";

using LsnPayload = std::pair<uint64_t, std::string>;

// Distinct payloads of varying length, so that a record read at the wrong
// place or under the wrong LSN is noticed.
std::string Payload(uint64_t lsn) {
  return absl::StrCat("payload-", lsn, "-",
                      std::string(lsn % 23, static_cast<char>('a' + lsn % 26)));
}

// The records [first, last] as Payload() makes them.
std::vector<LsnPayload> Expected(uint64_t first, uint64_t last) {
  std::vector<LsnPayload> records;
  for (uint64_t lsn = first; lsn <= last; ++lsn) {
    records.emplace_back(lsn, Payload(lsn));
  }
  return records;
}

absl::StatusOr<uint64_t> AppendPayload(Wal& wal, absl::string_view payload) {
  return wal.Append(payload.size(), [&](char* dst) {
    std::memcpy(dst, payload.data(), payload.size());
  });
}

std::string PathOf(absl::string_view name) {
  return absl::StrCat(kDir, "/", name);
}

// A segment file built by hand: a header for first_lsn, then one record of
// Payload(lsn) for each of `lsns`.
std::string SegmentBytes(uint64_t first_lsn,
                         const std::vector<uint64_t>& lsns) {
  std::string contents = EncodeFileHeader(kSegmentMagic, first_lsn);
  for (uint64_t lsn : lsns) {
    AppendRecord(RecordType::kTransition, lsn, Payload(lsn), &contents);
  }
  return contents;
}

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> lsns;
  for (uint64_t lsn = first; lsn <= last; ++lsn) lsns.push_back(lsn);
  return lsns;
}

// Writes a durable file (contents and name).
void WriteDurableFile(Env* env, const std::string& path,
                      absl::string_view contents) {
  auto file = env->NewWritableFile(path);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append(contents), IsOk());
  ASSERT_THAT((*file)->Sync(), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  ASSERT_THAT(env->SyncDir(kDir), IsOk());
}

struct Recovered {
  RecoveryResult result;
  std::vector<LsnPayload> records;
};

absl::StatusOr<Recovered> Recover(Env* env, uint64_t after_lsn = 0,
                                  bool salvage = false,
                                  bool read_only = false) {
  Recovered out;
  absl::StatusOr<RecoveryResult> result =
      RecoverLog(env, kDir, after_lsn, salvage, read_only,
                 [&](uint64_t lsn, absl::string_view payload) {
                   out.records.emplace_back(lsn, std::string(payload));
                   return absl::OkStatus();
                 });
  if (!result.ok()) return result.status();
  out.result = std::move(*result);
  return out;
}

// Recovers the log in env and expects every acknowledged (LSN, payload) in
// it.
void ExpectAcknowledgedSurvive(
    Env* env, const absl::flat_hash_map<uint64_t, std::string>& acked) {
  absl::StatusOr<Recovered> recovered = Recover(env);
  ASSERT_THAT(recovered, IsOk());
  absl::flat_hash_map<uint64_t, std::string> found;
  for (const auto& [lsn, payload] : recovered->records) found[lsn] = payload;
  for (const auto& [lsn, payload] : acked) {
    ASSERT_TRUE(found.contains(lsn)) << "acknowledged LSN " << lsn;
    EXPECT_EQ(found[lsn], payload);
  }
}

// Segment files in kDir, oldest first.
std::vector<SegmentFile> ListSegments(Env* env) {
  std::vector<SegmentFile> segments;
  absl::StatusOr<std::vector<std::string>> children = env->GetChildren(kDir);
  EXPECT_THAT(children, IsOk());
  if (!children.ok()) return segments;
  for (const std::string& name : *children) {
    SegmentFile segment;
    if (ParseSegmentFileName(name, &segment.first_lsn)) {
      segment.name = name;
      segments.push_back(segment);
    }
  }
  std::sort(segments.begin(), segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) {
              return a.first_lsn < b.first_lsn;
            });
  return segments;
}

std::vector<uint64_t> FirstLsns(const std::vector<SegmentFile>& segments) {
  std::vector<uint64_t> lsns;
  for (const SegmentFile& s : segments) lsns.push_back(s.first_lsn);
  return lsns;
}

// An Env whose files take `append_delay` per Append, everything else done
// by `base`: keeps a flush running nearly all the time under load.
class SlowAppendEnv final : public Env {
 public:
  SlowAppendEnv(Env* base, absl::Duration append_delay)
      : base_(base), delay_(append_delay) {}

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override {
    return Wrap(base_->NewWritableFile(path));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return Wrap(base_->NewAppendableFile(path));
  }
  absl::StatusOr<std::string> ReadFileToString(
      const std::string& path) override {
    return base_->ReadFileToString(path);
  }
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    return base_->GetFileSize(path);
  }
  bool FileExists(const std::string& path) override {
    return base_->FileExists(path);
  }
  absl::StatusOr<std::vector<std::string>> GetChildren(
      const std::string& dir) override {
    return base_->GetChildren(dir);
  }
  absl::Status RemoveFile(const std::string& path) override {
    return base_->RemoveFile(path);
  }
  absl::Status RenameFile(const std::string& from,
                          const std::string& to) override {
    return base_->RenameFile(from, to);
  }
  absl::Status TruncateFile(const std::string& path, uint64_t size) override {
    return base_->TruncateFile(path, size);
  }
  absl::Status CreateDir(const std::string& dir) override {
    return base_->CreateDir(dir);
  }
  absl::Status SyncDir(const std::string& dir) override {
    return base_->SyncDir(dir);
  }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(
      const std::string& path) override {
    return base_->LockFile(path);
  }

 private:
  class SlowFile final : public WritableFile {
   public:
    SlowFile(std::unique_ptr<WritableFile> base, absl::Duration delay)
        : base_(std::move(base)), delay_(delay) {}
    absl::Status Append(absl::string_view data) override {
      absl::SleepFor(delay_);
      return base_->Append(data);
    }
    absl::Status Sync() override { return base_->Sync(); }
    absl::Status Close() override { return base_->Close(); }

   private:
    std::unique_ptr<WritableFile> base_;
    absl::Duration delay_;
  };

  absl::StatusOr<std::unique_ptr<WritableFile>> Wrap(
      absl::StatusOr<std::unique_ptr<WritableFile>> file) {
    if (!file.ok()) return file.status();
    return std::unique_ptr<WritableFile>(
        new SlowFile(*std::move(file), delay_));
  }

  Env* const base_;
  const absl::Duration delay_;
};

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir(kDir), IsOk()); }

  WalOptions Options(WalSync sync) {
    WalOptions options;
    options.env = &env_;
    options.dir = kDir;
    options.sync = sync;
    return options;
  }

  // Appends Payload(lsn) for the next `count` LSNs, syncing each.
  void AppendAndSync(Wal& wal, int count) {
    for (int i = 0; i < count; ++i) {
      const uint64_t expected_lsn = wal.last_lsn() + 1;
      absl::StatusOr<uint64_t> lsn = AppendPayload(wal, Payload(expected_lsn));
      ASSERT_THAT(lsn, IsOkAndHolds(expected_lsn));
      ASSERT_THAT(wal.Sync(*lsn), IsOk());
    }
  }

  // A closed log of `records` records spread over several segments.
  std::vector<SegmentFile> BuildRotatedLog(int records,
                                           uint64_t segment_bytes) {
    WalOptions options = Options(WalSync::kAlways);
    options.segment_bytes = segment_bytes;
    absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
    EXPECT_THAT(wal, IsOk());
    if (!wal.ok()) return {};
    AppendAndSync(**wal, records);
    EXPECT_THAT((*wal)->Close(), IsOk());
    return ListSegments(&env_);
  }

  std::string Read(const std::string& path) {
    absl::StatusOr<std::string> contents = env_.ReadFileToString(path);
    EXPECT_THAT(contents, IsOk()) << path;
    return contents.ok() ? *contents : "";
  }

  FaultInjectionEnv env_{/*seed=*/301};
};

TEST_F(WalTest, SegmentFileNamesRoundTrip) {
  uint64_t lsn = 0;
  EXPECT_EQ(SegmentFileName(42), "wal-00000000000000000042.log");
  EXPECT_TRUE(ParseSegmentFileName(SegmentFileName(42), &lsn));
  EXPECT_EQ(lsn, 42u);
  EXPECT_TRUE(ParseSegmentFileName(SegmentFileName(UINT64_MAX), &lsn));
  EXPECT_EQ(lsn, UINT64_MAX);
  EXPECT_FALSE(ParseSegmentFileName("wal-42.log", &lsn));
  EXPECT_FALSE(ParseSegmentFileName(SegmentFileName(42) + ".salvaged", &lsn));
  EXPECT_FALSE(ParseSegmentFileName("wal-0000000000000000004x.log", &lsn));
}

TEST_F(WalTest, AppendedRecordsComeBackInLsnOrder) {
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(wal, IsOk());
  for (uint64_t lsn = 1; lsn <= 30; ++lsn) {
    ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
  }
  EXPECT_EQ((*wal)->last_lsn(), 30u);
  ASSERT_THAT((*wal)->Sync(30), IsOk());
  ASSERT_THAT((*wal)->Close(), IsOk());

  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 30)));
  EXPECT_EQ(recovered->result.last_lsn, 30u);
  EXPECT_EQ(recovered->result.records_replayed, 30u);
  EXPECT_EQ(recovered->result.truncated_bytes, 0u);
  EXPECT_THAT(recovered->result.notes, IsEmpty());
  EXPECT_EQ(FirstLsns(recovered->result.segments), std::vector<uint64_t>{1});
}

TEST_F(WalTest, SyncPastTheLastRecordIsInvalid) {
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(wal, IsOk());
  ASSERT_THAT(AppendPayload(**wal, "x"), IsOkAndHolds(1u));
  EXPECT_THAT((*wal)->Sync(2), StatusIs(absl::StatusCode::kInvalidArgument));
  // Not sticky.
  EXPECT_THAT((*wal)->Sync(1), IsOk());
}

// A reusable barrier: Arrive() returns once `parties` threads arrived in
// the current round.
class RoundBarrier {
 public:
  explicit RoundBarrier(int parties) : parties_(parties) {}

  void Arrive() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    const uint64_t round = round_;
    if (++arrived_ == parties_) {
      arrived_ = 0;
      ++round_;
      return;
    }
    auto next_round = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return round_ != round;
    };
    mu_.Await(absl::Condition(&next_round));
  }

 private:
  const int parties_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 0;
};

// Appends are serialized by the test's own lock, as the engine's commit lock
// does; Syncs run concurrently. In each round every thread appends, then all
// of them call Sync together: whichever comes first (the leader) writes and
// fdatasyncs the whole round for everyone.
TEST_F(WalTest, ConcurrentSyncsShareOneFdatasync) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  constexpr uint64_t kRecords = kThreads * kRounds;
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  const uint64_t syncs_before = env_.sync_count();

  absl::Mutex commit_mu;
  RoundBarrier all_appended(kThreads);
  absl::Mutex results_mu;
  absl::flat_hash_map<uint64_t, std::string> payload_by_lsn;
  std::vector<absl::Status> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        const std::string payload = absl::StrCat("thread-", t, "-", round);
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu);
          lsn = AppendPayload(wal, payload);
        }
        all_appended.Arrive();
        absl::Status s = lsn.ok() ? wal.Sync(*lsn) : lsn.status();
        absl::MutexLock l(&results_mu);
        if (s.ok()) {
          payload_by_lsn[*lsn] = payload;
        } else {
          failures.push_back(s);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_THAT(failures, IsEmpty());
  ASSERT_EQ(payload_by_lsn.size(), kRecords);
  const uint64_t syncs = env_.sync_count() - syncs_before;
  // One fdatasync per record would mean no group commit happened; each
  // round is staged whole before its first Sync, so one per round suffices.
  EXPECT_LT(syncs, kRecords);
  EXPECT_LE(syncs, static_cast<uint64_t>(kRounds));
  EXPECT_EQ(wal.stats().records_flushed.load(), kRecords);

  // Every acknowledged record survives, at its LSN.
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  opened->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  ASSERT_EQ(recovered->records.size(), kRecords);
  for (uint64_t i = 0; i < kRecords; ++i) {
    EXPECT_EQ(recovered->records[i].first, i + 1);
    EXPECT_EQ(recovered->records[i].second, payload_by_lsn[i + 1]);
  }
}

// The same without rounds: threads append and sync at their own pace, with
// segment rotation in between. Whatever the interleaving, every Sync
// succeeds and every acknowledged record survives a power loss.
TEST_F(WalTest, FreeRunningAppendersAndSyncersLoseNothing) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  constexpr uint64_t kRecords = kThreads * kPerThread;
  WalOptions options = Options(WalSync::kAlways);
  options.segment_bytes = 4096;
  absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(options, {}, 0);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;

  absl::Mutex commit_mu;
  absl::Notification start;
  absl::Mutex results_mu;
  absl::flat_hash_map<uint64_t, std::string> payload_by_lsn;
  std::vector<absl::Status> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.WaitForNotification();
      for (int i = 0; i < kPerThread; ++i) {
        const std::string payload = absl::StrCat("thread-", t, "-", i);
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu);
          lsn = AppendPayload(wal, payload);
        }
        absl::Status s = lsn.ok() ? wal.Sync(*lsn) : lsn.status();
        absl::MutexLock l(&results_mu);
        if (s.ok()) {
          payload_by_lsn[*lsn] = payload;
        } else {
          failures.push_back(s);
        }
      }
    });
  }
  start.Notify();
  for (std::thread& thread : threads) thread.join();

  EXPECT_THAT(failures, IsEmpty());
  ASSERT_EQ(payload_by_lsn.size(), kRecords);
  EXPECT_EQ(wal.stats().records_flushed.load(), kRecords);
  EXPECT_GT(ListSegments(&env_).size(), 1u);

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  opened->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  ASSERT_EQ(recovered->records.size(), kRecords);
  for (uint64_t i = 0; i < kRecords; ++i) {
    EXPECT_EQ(recovered->records[i].first, i + 1);
    EXPECT_EQ(recovered->records[i].second, payload_by_lsn[i + 1]);
  }
}

// Many callers blocked in Sync while the power fails under them: every one
// of them returns (the dead file fails the flush, and the error reaches each
// waiter, none is left asleep), and every record acknowledged before the
// power loss is on the disk after it, at its LSN.
TEST_F(WalTest, PowerLossUnderManyWaitersLosesNoAcknowledgedRecord) {
  for (PowerLossMode mode :
       {PowerLossMode::kDropUnsynced, PowerLossMode::kTornTail}) {
    for (uint64_t seed : {1u, 2u, 3u}) {
      SCOPED_TRACE(absl::StrCat(
          mode == PowerLossMode::kDropUnsynced ? "drop" : "torn", " seed ",
          seed));
      FaultInjectionEnv env(seed);
      ASSERT_THAT(env.CreateDir(kDir), IsOk());
      WalOptions options = Options(WalSync::kAlways);
      options.env = &env;
      options.segment_bytes = 8192;  // Rotations happen under the waiters.
      absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(options, {}, 0);
      ASSERT_THAT(opened, IsOk());
      Wal& wal = **opened;

      constexpr int kThreads = 16;
      // A power loss kills the open file, but a rotation that creates the
      // next segment after it succeeds, so the log may go on: stop the
      // threads once the power is out.
      std::atomic<bool> stop{false};
      absl::Mutex commit_mu;
      absl::Mutex acked_mu;
      absl::flat_hash_map<uint64_t, std::string> acked;
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          for (int i = 0; !stop.load(); ++i) {
            const std::string payload = absl::StrCat("thread-", t, "-", i);
            absl::StatusOr<uint64_t> lsn;
            {
              absl::MutexLock l(&commit_mu);
              lsn = AppendPayload(wal, payload);
            }
            if (!lsn.ok() || !wal.Sync(*lsn).ok()) return;
            absl::MutexLock l(&acked_mu);
            acked[*lsn] = payload;
          }
        });
      }
      // Let a few hundred acknowledgments through, then cut the power with
      // acked_mu held: what is in `acked` now was acknowledged before it.
      absl::flat_hash_map<uint64_t, std::string> before;
      {
        absl::MutexLock l(&acked_mu);
        auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(acked_mu) {
          return acked.size() >= 300;
        };
        acked_mu.Await(absl::Condition(&enough));
        env.SimulatePowerLoss(mode);
        before = acked;
      }
      stop.store(true);
      for (std::thread& thread : threads) thread.join();
      opened->reset();

      ExpectAcknowledgedSurvive(&env, before);
    }
  }
}

// A failed fdatasync under many waiters: each gets either success (its
// record was durable before) or the error, none hangs, and the successes
// survive a power loss.
TEST_F(WalTest, FailedFdatasyncReachesEveryWaiter) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  constexpr int kThreads = 16;
  absl::Mutex commit_mu;
  absl::Mutex results_mu;
  absl::flat_hash_map<uint64_t, std::string> acked;
  int failures = 0;
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        const std::string payload = absl::StrCat("thread-", t, "-", i);
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu);
          lsn = AppendPayload(wal, payload);
        }
        if (!lsn.ok()) return;  // The error is sticky: appends fail too.
        if (calls.fetch_add(1) == 200) env_.FailNextSyncs(1);
        absl::Status s = wal.Sync(*lsn);
        absl::MutexLock l(&results_mu);
        if (s.ok()) {
          acked[*lsn] = payload;
        } else {
          EXPECT_THAT(s, StatusIs(kInternal, HasSubstr("injected EIO")));
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_GE(failures, 1);
  EXPECT_GE(acked.size(), 100u);
  EXPECT_THAT(wal.Close(), StatusIs(kInternal));

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  opened->reset();
  ExpectAcknowledgedSurvive(&env_, acked);
}

// kInterval: callers of Sync (written to the OS) and of SyncAll (fdatasync)
// wait side by side; a flush that only writes must not release a SyncAll
// caller, and one that fdatasyncs releases both kinds.
TEST_F(WalTest, IntervalModeSyncAllAmongWritersIsDurable) {
  WalOptions options = Options(WalSync::kInterval);
  options.sync_interval = absl::Hours(1);  // Only SyncAll fdatasyncs.
  absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(options, {}, 0);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  absl::Mutex commit_mu;
  absl::Mutex results_mu;
  absl::flat_hash_map<uint64_t, std::string> durable;
  std::vector<absl::Status> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string payload = absl::StrCat("thread-", t, "-", i);
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu);
          lsn = AppendPayload(wal, payload);
        }
        const bool all = (i % 4) == t % 4;
        absl::Status s = !lsn.ok() ? lsn.status()
                         : all     ? wal.SyncAll()
                                   : wal.Sync(*lsn);
        absl::MutexLock l(&results_mu);
        if (!s.ok()) {
          failures.push_back(s);
        } else if (all) {
          durable[*lsn] = payload;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(failures, IsEmpty());
  ASSERT_FALSE(durable.empty());

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  opened->reset();
  ExpectAcknowledgedSurvive(&env_, durable);
}

// Close while callers are still appending and syncing: it returns, every
// caller returns (success, or "log is closed" for appends after it), and
// every acknowledged record is durable.
TEST_F(WalTest, CloseUnderConcurrentSyncersReturns) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  constexpr int kThreads = 8;
  absl::Mutex commit_mu;
  absl::Mutex results_mu;
  absl::flat_hash_map<uint64_t, std::string> acked;
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        const std::string payload = absl::StrCat("thread-", t, "-", i);
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu);
          lsn = AppendPayload(wal, payload);
        }
        if (!lsn.ok()) {
          EXPECT_THAT(lsn, StatusIs(absl::StatusCode::kFailedPrecondition));
          return;
        }
        calls.fetch_add(1);
        absl::Status s = wal.Sync(*lsn);
        EXPECT_THAT(s, IsOk());
        absl::MutexLock l(&results_mu);
        acked[*lsn] = payload;
      }
    });
  }
  while (calls.load() < 200) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_THAT(wal.Close(), IsOk());
  for (std::thread& thread : threads) thread.join();

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  opened->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(recovered->records.size(), acked.size());
  for (const auto& [lsn, payload] : recovered->records) {
    ASSERT_TRUE(acked.contains(lsn));
    EXPECT_EQ(acked[lsn], payload);
  }
}

// Under sustained load a flush is running at nearly every moment the
// background thread looks; it must still get its fdatasync in, or records
// would stay unsynced for as long as the load lasts (the mode promises at
// most sync_interval). Over 100 intervals of load it gets one in nearly
// every interval; skipping whenever a flush runs gave 3-7. The bound below
// leaves a wide margin for a slow machine.
TEST_F(WalTest, IntervalModeBackgroundSyncHappensUnderLoad) {
  SlowAppendEnv slow(&env_, absl::Microseconds(200));
  WalOptions options = Options(WalSync::kInterval);
  options.env = &slow;
  options.sync_interval = absl::Milliseconds(2);
  absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(options, {}, 0);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked{0};
  absl::Mutex commit_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu);
          lsn = AppendPayload(wal, "under load");
        }
        if (!lsn.ok() || !wal.Sync(*lsn).ok()) return;
        acked.fetch_add(1);
      }
    });
  }
  while (acked.load() < 50) absl::SleepFor(absl::Milliseconds(1));
  const uint64_t before = wal.stats().fsyncs.load();
  absl::SleepFor(100 * options.sync_interval);
  const uint64_t during = wal.stats().fsyncs.load() - before;
  // Everything written by now becomes durable while the load goes on.
  const std::string path = PathOf(SegmentFileName(1));
  const size_t written = Read(path).size();
  bool durable = false;
  for (int i = 0; i < 20000 && !durable; ++i) {
    absl::StatusOr<std::string> contents = env_.DurableContents(path);
    ASSERT_THAT(contents, IsOk());
    durable = contents->size() >= written;
    if (!durable) absl::SleepFor(absl::Milliseconds(1));
  }
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  EXPECT_GE(during, 20u);
  EXPECT_TRUE(durable) << "no background fdatasync under load";
  EXPECT_THAT(wal.Close(), IsOk());
}

// Close is idempotent: a second call returns what the first one returned,
// including an error from closing the segment, which is not sticky.
TEST_F(WalTest, SecondCloseReturnsTheFirstOnesResult) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(opened, IsOk());
  // No record: Close removes the empty segment and syncs the directory.
  env_.FailNextSyncDirs(1);
  const absl::Status first = (*opened)->Close();
  EXPECT_THAT(first, Not(IsOk()));
  EXPECT_EQ((*opened)->Close(), first);
}

// Concurrent Closes under syncers: every one returns the same result, and
// only after the log is closed (the flusher thread joined, the segment
// closed), so the owner may destroy the Wal as soon as any returns.
TEST_F(WalTest, ConcurrentClosesWaitForTheOneThatCloses) {
  for (int round = 0; round < 20; ++round) {
    absl::StatusOr<std::unique_ptr<Wal>> opened =
        Wal::Open(Options(WalSync::kAlways), {}, 0);
    ASSERT_THAT(opened, IsOk());
    Wal& wal = **opened;
    absl::Mutex commit_mu;
    std::vector<std::thread> syncers;
    for (int t = 0; t < 4; ++t) {
      syncers.emplace_back([&] {
        while (true) {
          absl::StatusOr<uint64_t> lsn;
          {
            absl::MutexLock l(&commit_mu);
            lsn = AppendPayload(wal, "x");
          }
          if (!lsn.ok() || !wal.Sync(*lsn).ok()) return;
        }
      });
    }
    absl::SleepFor(absl::Milliseconds(1));
    std::vector<absl::Status> results(3);
    std::vector<std::thread> closers;
    for (int c = 0; c < 3; ++c) {
      closers.emplace_back([&, c] { results[c] = wal.Close(); });
    }
    for (std::thread& t : closers) t.join();
    for (std::thread& t : syncers) t.join();
    for (const absl::Status& r : results) EXPECT_THAT(r, IsOk());
    opened->reset();
    absl::StatusOr<std::vector<std::string>> names = env_.GetChildren(kDir);
    ASSERT_THAT(names, IsOk());
    for (const std::string& name : *names) {
      ASSERT_THAT(env_.RemoveFile(PathOf(name)), IsOk());
    }
  }
}

TEST_F(WalTest, AlwaysModeSyncedRecordsSurvivePowerLoss) {
  for (PowerLossMode mode :
       {PowerLossMode::kDropUnsynced, PowerLossMode::kTornTail}) {
    SCOPED_TRACE(mode == PowerLossMode::kDropUnsynced ? "drop" : "torn");
    FaultInjectionEnv env(/*seed=*/7);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(WalSync::kAlways);
    options.env = &env;
    options.segment_bytes = 512;  // Crosses segment boundaries too.
    absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
    ASSERT_THAT(wal, IsOk());
    for (uint64_t lsn = 1; lsn <= 40; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
      ASSERT_THAT((*wal)->Sync(lsn), IsOk());
    }
    // Staged, never synced: may be lost, must not damage what was synced.
    for (uint64_t lsn = 41; lsn <= 45; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
    }
    env.SimulatePowerLoss(mode);
    wal->reset();

    absl::StatusOr<Recovered> recovered = Recover(&env);
    ASSERT_THAT(recovered, IsOk());
    ASSERT_GE(recovered->records.size(), 40u);
    EXPECT_THAT(recovered->records,
                ElementsAreArray(Expected(1, recovered->records.size())));
    EXPECT_EQ(recovered->result.last_lsn, recovered->records.size());
  }
}

TEST_F(WalTest, IntervalModeSyncWritesButDoesNotFdatasync) {
  WalOptions options = Options(WalSync::kInterval);
  options.sync_interval = absl::Hours(1);  // The background sync never runs.
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 3);

  const std::string path = PathOf(SegmentFileName(1));
  EXPECT_GT(Read(path).size(), kFileHeaderSize);  // Written to the OS...
  absl::StatusOr<std::string> durable = env_.DurableContents(path);
  ASSERT_THAT(durable, IsOk());
  EXPECT_EQ(durable->size(), kFileHeaderSize);  // ...but not fdatasync'ed.

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  wal->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, IsEmpty());
}

TEST_F(WalTest, IntervalModeBackgroundSyncMakesRecordsDurable) {
  WalOptions options = Options(WalSync::kInterval);
  options.sync_interval = absl::Milliseconds(2);
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 5);

  // Wait (bounded) for the background fdatasync to cover everything written.
  const std::string path = PathOf(SegmentFileName(1));
  const std::string written = Read(path);
  ASSERT_GT(written.size(), kFileHeaderSize);
  bool durable = false;
  for (int i = 0; i < 20000 && !durable; ++i) {
    absl::StatusOr<std::string> contents = env_.DurableContents(path);
    ASSERT_THAT(contents, IsOk());
    durable = *contents == written;
    if (!durable) absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(durable) << "no background fdatasync";
  EXPECT_GE((*wal)->stats().fsyncs.load(), 1u);

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  wal->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 5)));
}

TEST_F(WalTest, IntervalModeTornTailKeepsAValidPrefix) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    FaultInjectionEnv env(seed);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(WalSync::kInterval);
    options.env = &env;
    options.sync_interval = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
    ASSERT_THAT(wal, IsOk());
    for (uint64_t lsn = 1; lsn <= 10; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
    }
    ASSERT_THAT((*wal)->SyncAll(), IsOk());
    for (uint64_t lsn = 11; lsn <= 20; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
      ASSERT_THAT((*wal)->Sync(lsn), IsOk());  // Written, not synced.
    }
    env.SimulatePowerLoss(PowerLossMode::kTornTail);
    wal->reset();

    absl::StatusOr<Recovered> recovered = Recover(&env);
    ASSERT_THAT(recovered, IsOk());
    ASSERT_GE(recovered->records.size(), 10u);
    ASSERT_LE(recovered->records.size(), 20u);
    EXPECT_THAT(recovered->records,
                ElementsAreArray(Expected(1, recovered->records.size())));
  }
}

TEST_F(WalTest, NoneModeBuffersUntilClose) {
  WalOptions options = Options(WalSync::kNone);
  options.buffer_bytes = 1 << 20;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 50);
  const std::string path = PathOf(SegmentFileName(1));
  EXPECT_EQ(Read(path).size(), kFileHeaderSize);  // Still in memory.

  ASSERT_THAT((*wal)->Close(), IsOk());
  absl::StatusOr<std::string> durable = env_.DurableContents(path);
  ASSERT_THAT(durable, IsOk());
  EXPECT_GT(durable->size(), kFileHeaderSize);
  EXPECT_EQ(*durable, Read(path));

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 50)));
}

TEST_F(WalTest, NoneModeWritesWhenTheBufferFills) {
  WalOptions options = Options(WalSync::kNone);
  options.buffer_bytes = 200;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 20);  // Well over 200 bytes.
  EXPECT_GT(Read(PathOf(SegmentFileName(1))).size(), kFileHeaderSize + 200);
}

TEST_F(WalTest, FailedFdatasyncIsSticky) {
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);

  env_.FailNextSyncs(1);
  ASSERT_THAT(AppendPayload(**wal, Payload(2)), IsOkAndHolds(2u));
  EXPECT_THAT((*wal)->Sync(2), StatusIs(kInternal, HasSubstr("injected EIO")));

  // The disk works again; the log must not trust it.
  const uint64_t syncs = env_.sync_count();
  EXPECT_THAT(AppendPayload(**wal, Payload(3)), StatusIs(kInternal));
  // Record 1 was durable before the failure, and stays acknowledged.
  EXPECT_THAT((*wal)->Sync(1), IsOk());
  EXPECT_THAT((*wal)->Sync(2), StatusIs(kInternal));
  EXPECT_THAT((*wal)->SyncAll(), StatusIs(kInternal));
  EXPECT_THAT((*wal)->Close(), StatusIs(kInternal));
  EXPECT_EQ(env_.sync_count(), syncs);  // No retried fdatasync.

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  wal->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 1)));
}

TEST_F(WalTest, FailedWriteIsSticky) {
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);
  env_.FailNextAppends(1);
  ASSERT_THAT(AppendPayload(**wal, Payload(2)), IsOkAndHolds(2u));
  EXPECT_THAT((*wal)->Sync(2), StatusIs(kInternal, HasSubstr("injected EIO")));
  EXPECT_THAT(AppendPayload(**wal, Payload(3)), StatusIs(kInternal));
  EXPECT_THAT((*wal)->Sync(1), IsOk());  // Durable before the failure.
}

TEST_F(WalTest, RotationSpreadsRecordsOverSegments) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  EXPECT_EQ(segments.front().first_lsn, 1u);
  for (const SegmentFile& s : segments) {
    EXPECT_EQ(s.name, SegmentFileName(s.first_lsn));
  }

  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 60)));
  EXPECT_EQ(FirstLsns(recovered->result.segments), FirstLsns(segments));
  EXPECT_EQ(recovered->result.last_lsn, 60u);

  // Each segment starts right after the last record of the one before.
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string contents = Read(PathOf(segments[i].name));
    LogReader reader(contents, segments[i].name);
    LogReader::Record record;
    uint64_t expected_lsn = segments[i].first_lsn;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      ASSERT_THAT(more, IsOk());
      if (!*more) break;
      EXPECT_EQ(record.lsn, expected_lsn++);
    }
    if (i + 1 < segments.size()) {
      EXPECT_EQ(expected_lsn, segments[i + 1].first_lsn);
    }
  }
}

TEST_F(WalTest, ReopenedLogContinuesInANewSegment) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), recovered->result.segments,
                recovered->result.last_lsn);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 5);
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), (std::vector<uint64_t>{1, 11}));
  recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 15)));
}

TEST_F(WalTest, DiscardThroughRemovesOnlyFullyCoveredSegments) {
  WalOptions options = Options(WalSync::kAlways);
  options.segment_bytes = 400;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Wal::Open(options, {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 60);
  std::vector<SegmentFile> segments = ListSegments(&env_);
  ASSERT_GE(segments.size(), 4u);
  const std::vector<uint64_t> first = FirstLsns(segments);

  // Segment 1 ends at first[2] - 1: one LSN short covers only segment 0.
  ASSERT_THAT((*wal)->DiscardThrough(first[2] - 2), IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)),
            std::vector<uint64_t>(first.begin() + 1, first.end()));
  ASSERT_THAT((*wal)->DiscardThrough(first[2] - 1), IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)),
            std::vector<uint64_t>(first.begin() + 2, first.end()));

  // Everything covered: the segment being written stays.
  ASSERT_THAT((*wal)->DiscardThrough((*wal)->last_lsn()), IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)),
            std::vector<uint64_t>{first.back()});
  ASSERT_THAT((*wal)->DiscardThrough(UINT64_MAX - 1), IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)),
            std::vector<uint64_t>{first.back()});

  // The log still works, and the removals are durable.
  AppendAndSync(**wal, 3);
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  wal->reset();
  const std::vector<uint64_t> left = FirstLsns(ListSegments(&env_));
  ASSERT_THAT(left, Not(IsEmpty()));
  EXPECT_EQ(left.front(), first.back());
  absl::StatusOr<Recovered> recovered =
      Recover(&env_, /*after_lsn=*/first.back() - 1);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(first.back(), 63)));
}

TEST_F(WalTest, CloseRemovesAnEmptyActiveSegment) {
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(wal, IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), std::vector<uint64_t>{1});
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_THAT(ListSegments(&env_), IsEmpty());
  EXPECT_THAT((*wal)->Close(), IsOk());  // Idempotent.

  // A segment with records stays; the empty one opened after it goes.
  wal = Wal::Open(Options(WalSync::kAlways), {}, 0);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 2);
  ASSERT_THAT((*wal)->Close(), IsOk());
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  wal = Wal::Open(Options(WalSync::kAlways), recovered->result.segments, 2);
  ASSERT_THAT(wal, IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), (std::vector<uint64_t>{1, 3}));
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), std::vector<uint64_t>{1});
  // The removal is durable.
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), std::vector<uint64_t>{1});
}

TEST_F(WalTest, TornTailIsTruncatedAndTheLogContinues) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const std::string path = PathOf(SegmentFileName(1));
  const std::string contents = Read(path);
  // Cut the last record short.
  ASSERT_THAT(env_.TruncateFile(path, contents.size() - 5), IsOk());
  const uint64_t record_size = kRecordHeaderSize + Payload(10).size();
  const uint64_t valid_end = contents.size() - record_size;

  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 9)));
  EXPECT_EQ(recovered->result.last_lsn, 9u);
  EXPECT_EQ(recovered->result.truncated_bytes, record_size - 5);
  EXPECT_THAT(
      recovered->result.notes,
      Contains(AllOf(HasSubstr("torn"), HasSubstr(SegmentFileName(1)))));
  absl::StatusOr<uint64_t> size = env_.GetFileSize(path);
  ASSERT_THAT(size, IsOk());
  EXPECT_EQ(*size, valid_end);

  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), recovered->result.segments,
                recovered->result.last_lsn);
  ASSERT_THAT(wal, IsOk());
  ASSERT_THAT(AppendPayload(**wal, Payload(10)), IsOkAndHolds(10u));
  ASSERT_THAT((*wal)->Sync(10), IsOk());
  ASSERT_THAT((*wal)->Close(), IsOk());

  recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 10)));
  EXPECT_EQ(recovered->result.truncated_bytes, 0u);
  EXPECT_THAT(recovered->result.notes, IsEmpty());
}

TEST_F(WalTest, ReadOnlyRecoverySkipsTornDataWithoutChangingFiles) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const std::string path = PathOf(SegmentFileName(1));
  const std::string contents = Read(path);

  // A torn header of a last segment.
  WriteDurableFile(&env_, PathOf(SegmentFileName(11)), "TWAL");
  absl::StatusOr<Recovered> recovered =
      Recover(&env_, /*after_lsn=*/0, /*salvage=*/false, /*read_only=*/true);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 10)));
  EXPECT_THAT(recovered->result.notes,
              Contains(HasSubstr(SegmentFileName(11))));
  EXPECT_EQ(Read(PathOf(SegmentFileName(11))), "TWAL");
  ASSERT_THAT(env_.RemoveFile(PathOf(SegmentFileName(11))), IsOk());

  // A torn tail.
  ASSERT_THAT(env_.TruncateFile(path, contents.size() - 5), IsOk());
  recovered =
      Recover(&env_, /*after_lsn=*/0, /*salvage=*/false, /*read_only=*/true);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 9)));
  EXPECT_EQ(recovered->result.last_lsn, 9u);
  EXPECT_THAT(recovered->result.notes, Not(IsEmpty()));
  EXPECT_EQ(Read(path), contents.substr(0, contents.size() - 5));

  EXPECT_THAT(Recover(&env_, 0, /*salvage=*/true, /*read_only=*/true),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(WalTest, ZeroedTailIsTruncated) {
  BuildRotatedLog(/*records=*/5, /*segment_bytes=*/64 << 20);
  const std::string path = PathOf(SegmentFileName(1));
  const std::string contents = Read(path);
  WriteDurableFile(&env_, path, contents + std::string(300, '\0'));

  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 5)));
  EXPECT_EQ(recovered->result.truncated_bytes, 300u);
  EXPECT_EQ(Read(path), contents);
}

TEST_F(WalTest, DamageInAMiddleSegmentIsDataLoss) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  const std::string path = PathOf(segments[1].name);
  std::string contents = Read(path);
  const uint64_t second_record = kFileHeaderSize + kRecordHeaderSize +
                                 Payload(segments[1].first_lsn).size();
  contents[second_record + kRecordHeaderSize + 2] ^= 0x10;  // In the payload.
  WriteDurableFile(&env_, path, contents);

  EXPECT_THAT(Recover(&env_),
              StatusIs(kDataLoss,
                       AllOf(HasSubstr(segments[1].name),
                             HasSubstr(absl::StrCat("offset ", second_record)),
                             HasSubstr("checksum mismatch"))));
  // Nothing was changed.
  EXPECT_EQ(Read(path), contents);
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), FirstLsns(segments));
}

TEST_F(WalTest, DamageFollowedByValidRecordsInTheLastSegmentIsDataLoss) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const std::string path = PathOf(SegmentFileName(1));
  std::string contents = Read(path);
  contents[kFileHeaderSize + 1] ^= 0x01;  // CRC of the first record.
  WriteDurableFile(&env_, path, contents);
  EXPECT_THAT(
      Recover(&env_),
      StatusIs(kDataLoss,
               AllOf(HasSubstr(SegmentFileName(1)),
                     HasSubstr(absl::StrCat("offset ", kFileHeaderSize)))));
  EXPECT_EQ(Read(path), contents);
}

TEST_F(WalTest, MissingMiddleSegmentIsDataLoss) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  ASSERT_THAT(env_.RemoveFile(PathOf(segments[1].name)), IsOk());
  EXPECT_THAT(
      Recover(&env_),
      StatusIs(kDataLoss,
               AllOf(HasSubstr(segments[2].name),
                     HasSubstr(absl::StrCat("LSN ", segments[1].first_lsn,
                                            " was expected")))));
}

TEST_F(WalTest, LsnGapInsideASegmentIsDataLoss) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, {1, 2, 4, 5}));
  EXPECT_THAT(Recover(&env_),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(1)),
                                        HasSubstr("LSN 4 where 3"))));
}

TEST_F(WalTest, GapBetweenSegmentsIsDataLoss) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, Range(1, 5)));
  WriteDurableFile(&env_, PathOf(SegmentFileName(8)),
                   SegmentBytes(8, Range(8, 10)));
  EXPECT_THAT(Recover(&env_),
              StatusIs(kDataLoss, HasSubstr(SegmentFileName(8))));
}

TEST_F(WalTest, OverlappingSegmentsAreDataLoss) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, Range(1, 5)));
  WriteDurableFile(&env_, PathOf(SegmentFileName(4)),
                   SegmentBytes(4, Range(4, 8)));
  EXPECT_THAT(Recover(&env_),
              StatusIs(kDataLoss, HasSubstr(SegmentFileName(4))));
}

TEST_F(WalTest, HeaderLsnDifferentFromFileNameIsDataLoss) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, Range(1, 5)));
  WriteDurableFile(&env_, PathOf(SegmentFileName(6)),
                   SegmentBytes(7, Range(6, 8)));
  EXPECT_THAT(Recover(&env_),
              StatusIs(kDataLoss, AllOf(HasSubstr(SegmentFileName(6)),
                                        HasSubstr("header says first LSN 7"))));
}

TEST_F(WalTest, TornHeaderOfTheLastSegmentIsRemoved) {
  const std::string full_header = EncodeFileHeader(kSegmentMagic, 6);
  for (const std::string& torn :
       {std::string(), full_header.substr(0, 10),
        full_header.substr(0, kFileHeaderSize - 1),
        std::string(kFileHeaderSize, '\0'), std::string(100, '\0')}) {
    SCOPED_TRACE(absl::StrCat("torn header of ", torn.size(), " bytes"));
    FaultInjectionEnv env(/*seed=*/3);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WriteDurableFile(&env, PathOf(SegmentFileName(1)),
                     SegmentBytes(1, Range(1, 5)));
    WriteDurableFile(&env, PathOf(SegmentFileName(6)), torn);

    absl::StatusOr<Recovered> recovered = Recover(&env);
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 5)));
    EXPECT_EQ(recovered->result.last_lsn, 5u);
    EXPECT_EQ(FirstLsns(recovered->result.segments), std::vector<uint64_t>{1});
    EXPECT_THAT(recovered->result.notes,
                Contains(HasSubstr(SegmentFileName(6))));
    EXPECT_FALSE(env.FileExists(PathOf(SegmentFileName(6))));
    // Durably removed.
    env.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    EXPECT_FALSE(env.FileExists(PathOf(SegmentFileName(6))));
  }
}

TEST_F(WalTest, TornHeaderOfAMiddleSegmentIsDataLoss) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, Range(1, 5)));
  WriteDurableFile(&env_, PathOf(SegmentFileName(6)),
                   std::string(kFileHeaderSize, '\0'));
  WriteDurableFile(&env_, PathOf(SegmentFileName(7)),
                   SegmentBytes(7, Range(7, 8)));
  EXPECT_THAT(Recover(&env_),
              StatusIs(kDataLoss, HasSubstr(SegmentFileName(6))));
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(6))));
}

TEST_F(WalTest, SalvageKeepsTheValidPrefixAndSetsTheRestAside) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  const std::string path = PathOf(segments[1].name);
  std::string contents = Read(path);
  const uint64_t second_record = kFileHeaderSize + kRecordHeaderSize +
                                 Payload(segments[1].first_lsn).size();
  contents[second_record + kRecordHeaderSize + 2] ^= 0x10;
  WriteDurableFile(&env_, path, contents);
  ASSERT_THAT(Recover(&env_), StatusIs(kDataLoss));

  absl::StatusOr<Recovered> recovered =
      Recover(&env_, /*after_lsn=*/0, /*salvage=*/true);
  ASSERT_THAT(recovered, IsOk());
  const uint64_t kept_last = segments[1].first_lsn;  // Its first record only.
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, kept_last)));
  EXPECT_EQ(recovered->result.last_lsn, kept_last);
  EXPECT_EQ(
      FirstLsns(recovered->result.segments),
      (std::vector<uint64_t>{segments[0].first_lsn, segments[1].first_lsn}));
  EXPECT_EQ(recovered->result.truncated_bytes, contents.size() - second_record);
  EXPECT_EQ(Read(path), contents.substr(0, second_record));
  EXPECT_THAT(recovered->result.notes, Contains(HasSubstr("salvage")));
  for (size_t i = 2; i < segments.size(); ++i) {
    const std::string later = PathOf(segments[i].name);
    EXPECT_FALSE(env_.FileExists(later)) << later;
    EXPECT_TRUE(env_.FileExists(later + ".salvaged")) << later;
    EXPECT_THAT(
        recovered->result.notes,
        Contains(AllOf(HasSubstr(segments[i].name), HasSubstr(".salvaged"))));
  }

  // The renames are durable, and the log goes on after the kept prefix.
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(FirstLsns(ListSegments(&env_)),
            FirstLsns(recovered->result.segments));
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), recovered->result.segments,
                recovered->result.last_lsn);
  ASSERT_THAT(wal, IsOk());
  ASSERT_THAT(AppendPayload(**wal, Payload(kept_last + 1)),
              IsOkAndHolds(kept_last + 1));
  ASSERT_THAT((*wal)->Close(), IsOk());
  recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, kept_last + 1)));
}

TEST_F(WalTest, SalvageSetsAsideASegmentWithADamagedHeader) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, Range(1, 5)));
  std::string bad = SegmentBytes(6, Range(6, 8));
  bad[3] ^= 0x01;  // Magic.
  WriteDurableFile(&env_, PathOf(SegmentFileName(6)), bad);
  WriteDurableFile(&env_, PathOf(SegmentFileName(9)),
                   SegmentBytes(9, Range(9, 10)));
  ASSERT_THAT(Recover(&env_), StatusIs(kDataLoss));

  absl::StatusOr<Recovered> recovered =
      Recover(&env_, /*after_lsn=*/0, /*salvage=*/true);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 5)));
  EXPECT_EQ(recovered->result.last_lsn, 5u);
  EXPECT_EQ(FirstLsns(ListSegments(&env_)), std::vector<uint64_t>{1});
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(6)) + ".salvaged"));
  EXPECT_TRUE(env_.FileExists(PathOf(SegmentFileName(9)) + ".salvaged"));
  EXPECT_THAT(recovered->result.notes, Not(IsEmpty()));
}

TEST_F(WalTest, RecordsCoveredByAfterLsnAreSkipped) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)),
                   SegmentBytes(1, Range(1, 10)));
  absl::StatusOr<Recovered> recovered = Recover(&env_, /*after_lsn=*/4);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(5, 10)));
  EXPECT_EQ(recovered->result.records_replayed, 6u);
  EXPECT_EQ(recovered->result.last_lsn, 10u);

  // A snapshot newer than the whole log.
  recovered = Recover(&env_, /*after_lsn=*/20);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, IsEmpty());
  EXPECT_EQ(recovered->result.last_lsn, 20u);
}

// A segment whose records a snapshot holds whole (the next segment starts
// within it) is not read at all: garbage in it neither stops recovery nor
// shows up in the notes, and it stays listed for a later discard.
TEST_F(WalTest, SegmentsCoveredByAfterLsnAreNotRead) {
  WriteDurableFile(&env_, PathOf(SegmentFileName(1)), "not a segment at all");
  WriteDurableFile(&env_, PathOf(SegmentFileName(11)),
                   SegmentBytes(11, Range(11, 15)));
  absl::StatusOr<Recovered> recovered = Recover(&env_, /*after_lsn=*/12);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(13, 15)));
  EXPECT_THAT(recovered->result.notes, IsEmpty());
  EXPECT_EQ(FirstLsns(recovered->result.segments),
            (std::vector<uint64_t>{1, 11}));
  // Without the snapshot the same segment is damage.
  EXPECT_THAT(Recover(&env_, /*after_lsn=*/0), StatusIs(kDataLoss));
}

// RequestRotation: the next flush closes the segment (synced) and writes its
// batch into a new one that starts right after the records staged before
// the request; with nothing in the active segment it does nothing.
TEST_F(WalTest, RequestedRotationStartsTheNextBatchInANewSegment) {
  for (WalSync mode : {WalSync::kAlways, WalSync::kInterval, WalSync::kNone}) {
    SCOPED_TRACE(static_cast<int>(mode));
    FaultInjectionEnv env(/*seed=*/3);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(mode);
    options.env = &env;
    absl::StatusOr<std::unique_ptr<Wal>> opened = Wal::Open(options, {}, 0);
    ASSERT_THAT(opened, IsOk());
    Wal& wal = **opened;
    (*opened)->RequestRotation();  // Nothing written yet: a no-op.
    for (uint64_t lsn = 1; lsn <= 5; ++lsn) {
      ASSERT_THAT(AppendPayload(wal, Payload(lsn)), IsOk());
      ASSERT_THAT(wal.SyncAll(), IsOk());
    }
    for (uint64_t lsn = 6; lsn <= 7; ++lsn) {  // Staged, not yet written.
      ASSERT_THAT(AppendPayload(wal, Payload(lsn)), IsOk());
    }
    wal.RequestRotation();
    for (uint64_t lsn = 8; lsn <= 9; ++lsn) {
      ASSERT_THAT(AppendPayload(wal, Payload(lsn)), IsOk());
    }
    ASSERT_THAT(wal.SyncAll(), IsOk());
    // The old segment ends at 5 and is durable; 6.. went to the new one.
    absl::StatusOr<std::string> old_durable =
        env.DurableContents(PathOf(SegmentFileName(1)));
    ASSERT_THAT(old_durable, IsOk());
    EXPECT_EQ(*old_durable, SegmentBytes(1, Range(1, 5)));
    ASSERT_THAT(wal.Close(), IsOk());
    opened->reset();
    EXPECT_EQ(FirstLsns(ListSegments(&env)), (std::vector<uint64_t>{1, 6}));
    absl::StatusOr<Recovered> recovered = Recover(&env);
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->records, ElementsAreArray(Expected(1, 9)));
  }
}

TEST_F(WalTest, GapCoveredByAfterLsnIsAccepted) {
  // Segments before 6 were discarded after a snapshot.
  WriteDurableFile(&env_, PathOf(SegmentFileName(6)),
                   SegmentBytes(6, Range(6, 10)));
  EXPECT_THAT(Recover(&env_, /*after_lsn=*/0), StatusIs(kDataLoss));
  EXPECT_THAT(Recover(&env_, /*after_lsn=*/4), StatusIs(kDataLoss));
  absl::StatusOr<Recovered> recovered = Recover(&env_, /*after_lsn=*/5);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(6, 10)));
  recovered = Recover(&env_, /*after_lsn=*/7);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(8, 10)));

  // A gap between segments, covered or not.
  WriteDurableFile(&env_, PathOf(SegmentFileName(15)),
                   SegmentBytes(15, Range(15, 17)));
  EXPECT_THAT(Recover(&env_, /*after_lsn=*/13),
              StatusIs(kDataLoss, HasSubstr(SegmentFileName(15))));
  recovered = Recover(&env_, /*after_lsn=*/14);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->records, ElementsAreArray(Expected(15, 17)));
  EXPECT_EQ(recovered->result.last_lsn, 17u);
}

// Every cut and every single-bit flip in the last three records of the last
// segment: recovery keeps exactly the whole records before a cut, truncates
// a damaged final record, and reports any other damage; it never returns a
// record with a wrong payload.
TEST_F(WalTest, EveryTornOrFlippedTailIsHandled) {
  constexpr uint64_t kRecords = 20;
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(kRecords, /*segment_bytes=*/560);
  ASSERT_EQ(segments.size(), 2u);
  const std::string first = Read(PathOf(segments[0].name));
  const std::string last = Read(PathOf(segments[1].name));
  const uint64_t records_in_first = segments[1].first_lsn - 1;

  struct Span {
    uint64_t begin;
    uint64_t end;
  };
  std::vector<Span> spans;  // Records of the last segment.
  {
    LogReader reader(last, segments[1].name);
    LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      ASSERT_THAT(more, IsOk());
      if (!*more) break;
      spans.push_back({record.offset, reader.valid_end()});
    }
  }
  ASSERT_GE(spans.size(), 3u);
  ASSERT_EQ(records_in_first + spans.size(), kRecords);
  const size_t sweep_from = spans.size() - 3;
  const std::string last_path = PathOf(segments[1].name);

  // Recovers {first, damaged_last} in a fresh env; *size is the size of the
  // last segment afterwards.
  auto recover_with = [&](const std::string& damaged_last, uint64_t* size) {
    FaultInjectionEnv env(/*seed=*/5);
    EXPECT_THAT(env.CreateDir(kDir), IsOk());
    WriteDurableFile(&env, PathOf(segments[0].name), first);
    WriteDurableFile(&env, last_path, damaged_last);
    absl::StatusOr<Recovered> recovered = Recover(&env);
    absl::StatusOr<uint64_t> file_size = env.GetFileSize(last_path);
    EXPECT_THAT(file_size, IsOk());
    *size = file_size.ok() ? *file_size : 0;
    return recovered;
  };

  for (uint64_t cut = spans[sweep_from].begin; cut < last.size(); ++cut) {
    SCOPED_TRACE(absl::StrCat("cut at ", cut));
    size_t whole = 0;
    uint64_t valid_end = kFileHeaderSize;
    for (const Span& span : spans) {
      if (span.end > cut) break;
      ++whole;
      valid_end = span.end;
    }
    uint64_t size = 0;
    absl::StatusOr<Recovered> recovered =
        recover_with(last.substr(0, cut), &size);
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->records,
                ElementsAreArray(Expected(1, records_in_first + whole)));
    EXPECT_EQ(recovered->result.last_lsn, records_in_first + whole);
    EXPECT_EQ(recovered->result.truncated_bytes, cut - valid_end);
    EXPECT_EQ(recovered->result.notes.empty(), cut == valid_end);
    EXPECT_EQ(size, valid_end);
  }

  for (size_t r = sweep_from; r < spans.size(); ++r) {
    const bool final_record = r + 1 == spans.size();
    for (uint64_t offset = spans[r].begin; offset < spans[r].end; ++offset) {
      for (int bit = 0; bit < 8; ++bit) {
        SCOPED_TRACE(
            absl::StrCat("record ", r, ", byte ", offset, ", bit ", bit));
        std::string damaged = last;
        damaged[offset] = static_cast<char>(damaged[offset] ^ (1 << bit));
        uint64_t size = 0;
        absl::StatusOr<Recovered> recovered = recover_with(damaged, &size);
        if (final_record) {
          // Nothing valid follows: a torn final write, cut off.
          ASSERT_THAT(recovered, IsOk());
          EXPECT_THAT(recovered->records,
                      ElementsAreArray(Expected(1, kRecords - 1)));
          EXPECT_EQ(recovered->result.truncated_bytes,
                    last.size() - spans[r].begin);
          EXPECT_EQ(size, spans[r].begin);
        } else {
          EXPECT_THAT(
              recovered,
              StatusIs(kDataLoss, AllOf(HasSubstr(segments[1].name),
                                        HasSubstr(absl::StrCat(
                                            "offset ", spans[r].begin)))));
          EXPECT_EQ(size, last.size());  // Left alone.
        }
      }
    }
  }
}

}  // namespace
}  // namespace taskwal::wal
