#include "wal/wal.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "taskwal/fault_injection_env.h"
#include "wal/coding.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_recovery.h"
#include "wal/log_test_util.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {
namespace {

// A group's partitions' commit locks, in ascending order, as the engine
// takes them (a set chosen at run time, which the analysis cannot follow).
template <typename Mutexes>
void LockAll(Mutexes& mu, const std::vector<uint32_t>& partitions)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (uint32_t p : partitions) mu[p].Lock();
}
template <typename Mutexes>
void UnlockAll(Mutexes& mu, const std::vector<uint32_t>& partitions)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (size_t i = partitions.size(); i-- > 0;) mu[partitions[i]].Unlock();
}

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::StatusCode kInternal = absl::StatusCode::kInternal;
constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr char kDir[] = "/db";

const char* ModeName(WalSync mode) {
  switch (mode) {
    case WalSync::kAlways:
      return "always";
    case WalSync::kInterval:
      return "interval";
    case WalSync::kNone:
      return "none";
  }
  return "?";
}

absl::StatusOr<uint64_t> AppendPayload(Wal& wal, uint32_t partition,
                                       absl::string_view payload) {
  return wal.Append(partition, payload.size(), [&](char* dst) {
    std::memcpy(dst, payload.data(), payload.size());
  });
}

absl::StatusOr<uint64_t> AppendPayload(Wal& wal, absl::string_view payload) {
  return AppendPayload(wal, 0, payload);
}

// Stages payloads[i] in partitions[i], as one group; *lsns receives the
// pieces' LSNs.
absl::Status AppendGroupOfPayloads(Wal& wal,
                                   const std::vector<uint32_t>& partitions,
                                   const std::vector<std::string>& payloads,
                                   std::vector<uint64_t>* lsns) {
  std::vector<std::function<void(char*)>> fills;
  std::vector<Wal::GroupPiece> pieces;
  fills.reserve(payloads.size());  // GroupPiece refers to them.
  for (size_t i = 0; i < payloads.size(); ++i) {
    const std::string& payload = payloads[i];
    fills.emplace_back([&payload](char* dst) {
      std::memcpy(dst, payload.data(), payload.size());
    });
    pieces.push_back(Wal::GroupPiece{partitions[i], payload.size(), fills[i]});
  }
  lsns->assign(payloads.size(), 0);
  return wal.AppendGroup(pieces, lsns->data());
}

std::string PathOf(absl::string_view name) { return JoinPath(kDir, name); }

LogRecoveryOptions Partitions(uint32_t partitions) {
  LogRecoveryOptions options;
  options.partitions = partitions;
  return options;
}

absl::StatusOr<Recovered> Recover(
    Env* env, const LogRecoveryOptions& options = LogRecoveryOptions()) {
  return RecoverDir(env, kDir, options);
}

// Recovers the log in env (one partition) and expects every acknowledged
// (LSN, payload) in it.
void ExpectAcknowledgedSurvive(
    Env* env, const absl::flat_hash_map<uint64_t, std::string>& acked) {
  absl::StatusOr<Recovered> recovered = Recover(env);
  ASSERT_THAT(recovered, IsOk());
  absl::flat_hash_map<uint64_t, std::string> found;
  for (const auto& [lsn, payload] : recovered->Of(0)) found[lsn] = payload;
  for (const auto& [lsn, payload] : acked) {
    ASSERT_TRUE(found.contains(lsn)) << "acknowledged LSN " << lsn;
    EXPECT_EQ(found[lsn], payload);
  }
}

// Segment files in kDir, oldest first.
std::vector<SegmentFile> ListSegments(Env* env) {
  absl::StatusOr<DirectoryListing> listing = ListDirectory(env, kDir);
  EXPECT_THAT(listing, IsOk());
  return listing.ok() ? listing->segments : std::vector<SegmentFile>();
}

// (partition, LSN) of every record in a segment's contents, in file order;
// the test fails if the contents do not read cleanly.
std::vector<std::pair<uint32_t, uint64_t>> RecordsIn(
    absl::string_view contents) {
  std::vector<std::pair<uint32_t, uint64_t>> records;
  EXPECT_THAT(DecodeFileHeader(contents, kSegmentMagic, "segment"), IsOk());
  if (contents.size() < kFileHeaderSize) return records;
  LogReader reader(contents, "segment");
  LogReader::Record record;
  while (true) {
    absl::StatusOr<bool> more = reader.Read(&record);
    EXPECT_THAT(more, IsOk());
    if (!more.ok() || !*more) break;
    records.emplace_back(record.partition, record.lsn);
  }
  return records;
}

std::vector<std::pair<uint32_t, uint64_t>> Sorted(
    std::vector<std::pair<uint32_t, uint64_t>> records) {
  std::sort(records.begin(), records.end());
  return records;
}

// (partition, LSN) for LSNs [first, last] of each of `partitions`, sorted.
std::vector<std::pair<uint32_t, uint64_t>> LsnsOf(
    const std::vector<uint32_t>& partitions, uint64_t first, uint64_t last) {
  std::vector<std::pair<uint32_t, uint64_t>> records;
  for (uint32_t partition : partitions) {
    for (uint64_t lsn = first; lsn <= last; ++lsn) {
      records.emplace_back(partition, lsn);
    }
  }
  return Sorted(records);
}

// An Env whose files take `append_delay` per Append, everything else done
// by `base`: keeps a flush running nearly all the time under load.
class SlowAppendEnv final : public EnvWrapper {
 public:
  SlowAppendEnv(Env* base, absl::Duration append_delay)
      : EnvWrapper(base), delay_(append_delay) {}

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) override {
    return Wrap(EnvWrapper::NewWritableFile(path));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return Wrap(EnvWrapper::NewAppendableFile(path));
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

  const absl::Duration delay_;
};

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir(kDir), IsOk()); }

  WalOptions Options(WalSync sync, uint32_t partitions = 1) {
    WalOptions options;
    options.env = &env_;
    options.dir = kDir;
    options.sync = sync;
    options.partitions = partitions;
    return options;
  }

  // A new log in an empty directory: segment 1, every partition at LSN 0.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(const WalOptions& options) {
    return Wal::Open(options, {}, std::vector<uint64_t>(options.partitions, 0),
                     /*next_seq=*/1);
  }

  // Appends Payload(lsn, partition) for the partition's next `count` LSNs,
  // syncing each.
  void AppendAndSync(Wal& wal, int count, uint32_t partition = 0) {
    for (int i = 0; i < count; ++i) {
      const uint64_t expected_lsn = wal.last_lsn(partition) + 1;
      absl::StatusOr<uint64_t> lsn =
          AppendPayload(wal, partition, Payload(expected_lsn, partition));
      ASSERT_THAT(lsn, IsOkAndHolds(expected_lsn));
      ASSERT_THAT(wal.Sync(partition, *lsn), IsOk());
    }
  }

  // A closed log of `records` records spread over several segments.
  std::vector<SegmentFile> BuildRotatedLog(int records,
                                           uint64_t segment_bytes) {
    WalOptions options = Options(WalSync::kAlways);
    options.segment_bytes = segment_bytes;
    absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
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
  static std::string Read(Env* env, absl::string_view name) {
    absl::StatusOr<std::string> contents = env->ReadFileToString(PathOf(name));
    EXPECT_THAT(contents, IsOk()) << name;
    return contents.ok() ? *contents : "";
  }

  FaultInjectionEnv env_{/*seed=*/301};
};

TEST_F(WalTest, AppendedRecordsComeBackInLsnOrder) {
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(Options(WalSync::kAlways));
  ASSERT_THAT(wal, IsOk());
  for (uint64_t lsn = 1; lsn <= 30; ++lsn) {
    ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
  }
  EXPECT_EQ((*wal)->last_lsn(0), 30u);
  ASSERT_THAT((*wal)->Sync(0, 30), IsOk());
  ASSERT_THAT((*wal)->Close(), IsOk());

  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 30)));
  EXPECT_EQ(recovered->result.last_lsn[0], 30u);
  EXPECT_EQ(recovered->result.records_replayed, 30u);
  EXPECT_EQ(recovered->result.truncated_bytes, 0u);
  EXPECT_THAT(recovered->result.notes, IsEmpty());
  EXPECT_EQ(SeqsOf(recovered->result.segments), std::vector<uint64_t>{1});
  EXPECT_EQ(recovered->result.next_seq, 2u);
}

TEST_F(WalTest, SyncPastTheLastRecordIsInvalid) {
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(Options(WalSync::kAlways));
  ASSERT_THAT(wal, IsOk());
  ASSERT_THAT(AppendPayload(**wal, "x"), IsOkAndHolds(1u));
  EXPECT_THAT((*wal)->Sync(0, 2), StatusIs(absl::StatusCode::kInvalidArgument));
  // Not sticky.
  EXPECT_THAT((*wal)->Sync(0, 1), IsOk());
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(Options(WalSync::kAlways));
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
        absl::Status s = lsn.ok() ? wal.Sync(0, *lsn) : lsn.status();
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
  const std::vector<LsnPayload> records = recovered->Of(0);
  ASSERT_EQ(records.size(), kRecords);
  for (uint64_t i = 0; i < kRecords; ++i) {
    EXPECT_EQ(records[i].first, i + 1);
    EXPECT_EQ(records[i].second, payload_by_lsn[i + 1]);
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
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
        absl::Status s = lsn.ok() ? wal.Sync(0, *lsn) : lsn.status();
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
  const std::vector<LsnPayload> records = recovered->Of(0);
  ASSERT_EQ(records.size(), kRecords);
  for (uint64_t i = 0; i < kRecords; ++i) {
    EXPECT_EQ(records[i].first, i + 1);
    EXPECT_EQ(records[i].second, payload_by_lsn[i + 1]);
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
      SCOPED_TRACE(
          absl::StrCat(mode == PowerLossMode::kDropUnsynced ? "drop" : "torn",
                       " seed ", seed));
      FaultInjectionEnv env(seed);
      ASSERT_THAT(env.CreateDir(kDir), IsOk());
      WalOptions options = Options(WalSync::kAlways);
      options.env = &env;
      options.segment_bytes = 8192;  // Rotations happen under the waiters.
      absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
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
            if (!lsn.ok() || !wal.Sync(0, *lsn).ok()) return;
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(Options(WalSync::kAlways));
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
        absl::Status s = wal.Sync(0, *lsn);
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
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
                                   : wal.Sync(0, *lsn);
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(Options(WalSync::kAlways));
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
        absl::Status s = wal.Sync(0, *lsn);
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
  EXPECT_EQ(recovered->Of(0).size(), acked.size());
  for (const auto& [lsn, payload] : recovered->Of(0)) {
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
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
        if (!lsn.ok() || !wal.Sync(0, *lsn).ok()) return;
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
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(Options(WalSync::kAlways));
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
        Open(Options(WalSync::kAlways));
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
          if (!lsn.ok() || !wal.Sync(0, *lsn).ok()) return;
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
    absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
    ASSERT_THAT(wal, IsOk());
    for (uint64_t lsn = 1; lsn <= 40; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
      ASSERT_THAT((*wal)->Sync(0, lsn), IsOk());
    }
    // Staged, never synced: may be lost, must not damage what was synced.
    for (uint64_t lsn = 41; lsn <= 45; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
    }
    env.SimulatePowerLoss(mode);
    wal->reset();

    absl::StatusOr<Recovered> recovered = Recover(&env);
    ASSERT_THAT(recovered, IsOk());
    ASSERT_GE(recovered->Of(0).size(), 40u);
    EXPECT_THAT(recovered->Of(0),
                ElementsAreArray(Expected(1, recovered->Of(0).size())));
    EXPECT_EQ(recovered->result.last_lsn[0], recovered->Of(0).size());
  }
}

TEST_F(WalTest, IntervalModeSyncWritesButDoesNotFdatasync) {
  WalOptions options = Options(WalSync::kInterval);
  options.sync_interval = absl::Hours(1);  // The background sync never runs.
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
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
  EXPECT_THAT(recovered->Of(0), IsEmpty());
}

TEST_F(WalTest, IntervalModeBackgroundSyncMakesRecordsDurable) {
  WalOptions options = Options(WalSync::kInterval);
  options.sync_interval = absl::Milliseconds(2);
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
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
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 5)));
}

TEST_F(WalTest, IntervalModeTornTailKeepsAValidPrefix) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    FaultInjectionEnv env(seed);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(WalSync::kInterval);
    options.env = &env;
    options.sync_interval = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
    ASSERT_THAT(wal, IsOk());
    for (uint64_t lsn = 1; lsn <= 10; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
    }
    ASSERT_THAT((*wal)->SyncAll(), IsOk());
    for (uint64_t lsn = 11; lsn <= 20; ++lsn) {
      ASSERT_THAT(AppendPayload(**wal, Payload(lsn)), IsOkAndHolds(lsn));
      ASSERT_THAT((*wal)->Sync(0, lsn), IsOk());  // Written, not synced.
    }
    env.SimulatePowerLoss(PowerLossMode::kTornTail);
    wal->reset();

    absl::StatusOr<Recovered> recovered = Recover(&env);
    ASSERT_THAT(recovered, IsOk());
    ASSERT_GE(recovered->Of(0).size(), 10u);
    ASSERT_LE(recovered->Of(0).size(), 20u);
    EXPECT_THAT(recovered->Of(0),
                ElementsAreArray(Expected(1, recovered->Of(0).size())));
  }
}

TEST_F(WalTest, NoneModeBuffersUntilClose) {
  WalOptions options = Options(WalSync::kNone);
  options.buffer_bytes = 1 << 20;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
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
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 50)));
}

// kNone writes once a partition has staged its share of buffer_bytes
// (buffer_bytes / partitions, at least 64 KiB), without waiting for Close.
TEST_F(WalTest, NoneModeWritesWhenTheBufferFills) {
  WalOptions options = Options(WalSync::kNone, /*partitions=*/2);
  options.buffer_bytes = 256 << 10;  // 128 KiB for each partition.
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
  ASSERT_THAT(wal, IsOk());
  const std::string path = PathOf(SegmentFileName(1));
  const std::string kilobyte(1024, 'x');
  // About 100 KiB: below the partition's share, still in memory.
  for (uint64_t lsn = 1; lsn <= 100; ++lsn) {
    ASSERT_THAT(AppendPayload(**wal, 0, kilobyte), IsOkAndHolds(lsn));
    ASSERT_THAT((*wal)->Sync(0, lsn), IsOk());
  }
  EXPECT_EQ(Read(path).size(), kFileHeaderSize);
  // Past it: written.
  for (uint64_t lsn = 101; lsn <= 140; ++lsn) {
    ASSERT_THAT(AppendPayload(**wal, 0, kilobyte), IsOkAndHolds(lsn));
    ASSERT_THAT((*wal)->Sync(0, lsn), IsOk());
  }
  EXPECT_GE(Read(path).size(), kFileHeaderSize + (128 << 10));
  ASSERT_THAT((*wal)->Close(), IsOk());
}

TEST_F(WalTest, FailedFdatasyncIsSticky) {
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(Options(WalSync::kAlways));
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);

  env_.FailNextSyncs(1);
  ASSERT_THAT(AppendPayload(**wal, Payload(2)), IsOkAndHolds(2u));
  EXPECT_THAT((*wal)->Sync(0, 2),
              StatusIs(kInternal, HasSubstr("injected EIO")));

  // The disk works again; the log must not trust it.
  const uint64_t syncs = env_.sync_count();
  EXPECT_THAT(AppendPayload(**wal, Payload(3)), StatusIs(kInternal));
  // Record 1 was durable before the failure, and stays acknowledged.
  EXPECT_THAT((*wal)->Sync(0, 1), IsOk());
  EXPECT_THAT((*wal)->Sync(0, 2), StatusIs(kInternal));
  EXPECT_THAT((*wal)->SyncAll(), StatusIs(kInternal));
  EXPECT_THAT((*wal)->Close(), StatusIs(kInternal));
  EXPECT_EQ(env_.sync_count(), syncs);  // No retried fdatasync.

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  wal->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 1)));
}

TEST_F(WalTest, FailedWriteIsSticky) {
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(Options(WalSync::kAlways));
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);
  env_.FailNextAppends(1);
  ASSERT_THAT(AppendPayload(**wal, Payload(2)), IsOkAndHolds(2u));
  EXPECT_THAT((*wal)->Sync(0, 2),
              StatusIs(kInternal, HasSubstr("injected EIO")));
  EXPECT_THAT(AppendPayload(**wal, Payload(3)), StatusIs(kInternal));
  EXPECT_THAT((*wal)->Sync(0, 1), IsOk());  // Durable before the failure.
}

TEST_F(WalTest, RotationSpreadsRecordsOverSegments) {
  const std::vector<SegmentFile> segments =
      BuildRotatedLog(/*records=*/60, /*segment_bytes=*/400);
  ASSERT_GE(segments.size(), 3u);
  // Numbered 1, 2, ... in the order they were started.
  for (size_t i = 0; i < segments.size(); ++i) {
    EXPECT_EQ(segments[i].seq, i + 1);
    EXPECT_EQ(segments[i].name, SegmentFileName(segments[i].seq));
  }

  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 60)));
  EXPECT_EQ(SeqsOf(recovered->result.segments), SeqsOf(segments));
  EXPECT_EQ(recovered->result.last_lsn, std::vector<uint64_t>{60});
  EXPECT_EQ(recovered->result.next_seq, segments.back().seq + 1);

  // Each segment's header holds its number, and its records go on right
  // after the last record of the one before.
  uint64_t expected_lsn = 1;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string contents = Read(PathOf(segments[i].name));
    EXPECT_THAT(DecodeFileHeader(contents, kSegmentMagic, segments[i].name),
                IsOkAndHolds(segments[i].seq));
    const std::vector<std::pair<uint32_t, uint64_t>> records =
        RecordsIn(contents);
    EXPECT_THAT(records, Not(IsEmpty())) << segments[i].name;
    for (const auto& [partition, lsn] : records) {
      EXPECT_EQ(partition, 0u);
      EXPECT_EQ(lsn, expected_lsn++);
    }
  }
  EXPECT_EQ(expected_lsn, 61u);
}

TEST_F(WalTest, ReopenedLogContinuesInANewSegment) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  ASSERT_EQ(recovered->result.next_seq, 2u);
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), recovered->result.segments,
                recovered->result.last_lsn, recovered->result.next_seq);
  ASSERT_THAT(wal, IsOk());
  EXPECT_EQ((*wal)->last_lsn(0), 10u);
  AppendAndSync(**wal, 5);
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), (std::vector<uint64_t>{1, 2}));
  EXPECT_THAT(RecordsIn(Read(PathOf(SegmentFileName(2)))),
              ElementsAre(std::make_pair(0u, 11u), std::make_pair(0u, 12u),
                          std::make_pair(0u, 13u), std::make_pair(0u, 14u),
                          std::make_pair(0u, 15u)));
  recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 15)));
}

// A process that opens the log, writes a little and closes, many times over
// (the CLI), leaves one segment, not one per run.
TEST_F(WalTest, ReopenedLogContinuesItsLastSegment) {
  for (int run = 0; run < 20; ++run) {
    absl::StatusOr<Recovered> recovered = Recover(&env_);
    ASSERT_THAT(recovered, IsOk());
    const RecoveryResult& r = recovered->result;
    absl::StatusOr<std::unique_ptr<Wal>> wal =
        Wal::Open(Options(WalSync::kAlways), r.segments, r.last_lsn, r.next_seq,
                  r.tail_bytes);
    ASSERT_THAT(wal, IsOk());
    AppendAndSync(**wal, 3);
    ASSERT_THAT((*wal)->Close(), IsOk());
    ASSERT_EQ(SegmentSeqs(&env_, kDir), (std::vector<uint64_t>{1}))
        << "run " << run;
  }
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 60)));
  EXPECT_EQ(recovered->result.tail_bytes,
            Read(PathOf(SegmentFileName(1))).size());
}

// A torn tail is cut before the segment is continued: new records follow
// the last whole one, and a power loss later loses none of them.
TEST_F(WalTest, ContinuedSegmentAfterATornTailLosesNothing) {
  // kInterval with a background sync that never comes: Sync writes to the
  // OS without fdatasync, SyncAll makes everything durable.
  WalOptions options = Options(WalSync::kInterval);
  options.sync_interval = absl::Hours(1);
  uint64_t durable = 0;  // Records synced before each power loss.
  for (int run = 0; run < 4; ++run) {
    absl::StatusOr<Recovered> recovered = Recover(&env_);
    ASSERT_THAT(recovered, IsOk());
    const RecoveryResult& r = recovered->result;
    ASSERT_GE(r.last_lsn[0], durable);
    EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, r.last_lsn[0])));
    if (run > 0) {
      EXPECT_EQ(r.tail_bytes, Read(PathOf(SegmentFileName(1))).size());
    }
    absl::StatusOr<std::unique_ptr<Wal>> wal =
        Wal::Open(options, r.segments, r.last_lsn, r.next_seq, r.tail_bytes);
    ASSERT_THAT(wal, IsOk());
    for (int i = 0; i < 3; ++i) {
      const uint64_t lsn = (*wal)->last_lsn(0) + 1;
      ASSERT_THAT(AppendPayload(**wal, 0, Payload(lsn)), IsOkAndHolds(lsn));
    }
    ASSERT_THAT((*wal)->SyncAll(), IsOk());
    durable = (*wal)->last_lsn(0);
    // Written, never synced: torn by the power loss.
    const uint64_t lsn = durable + 1;
    ASSERT_THAT(AppendPayload(**wal, 0, Payload(lsn)), IsOkAndHolds(lsn));
    ASSERT_THAT((*wal)->Sync(0, lsn), IsOk());
    env_.SimulatePowerLoss(PowerLossMode::kTornTail);
  }
  EXPECT_EQ(SegmentSeqs(&env_, kDir), (std::vector<uint64_t>{1}));
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  ASSERT_GE(recovered->result.last_lsn[0], durable);
  EXPECT_THAT(recovered->Of(0),
              ElementsAreArray(Expected(1, recovered->result.last_lsn[0])));
}

// The segment is not continued when the caller does not allow it, when it
// is full, or when the file is not the length recovery validated.
TEST_F(WalTest, OpenStartsANewSegmentWhenTheLastMayNotBeContinued) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  const uint64_t size = Read(PathOf(SegmentFileName(1))).size();
  struct Case {
    const char* name;
    uint64_t tail_bytes;
    uint64_t segment_bytes;
  };
  for (const Case& c :
       {Case{"not allowed", 0, 64 << 20}, Case{"full", size, size},
        Case{"length differs", size - 1, 64 << 20}}) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Recovered> recovered = Recover(&env_);
    ASSERT_THAT(recovered, IsOk());
    const RecoveryResult& r = recovered->result;
    const uint64_t next = r.next_seq;
    WalOptions options = Options(WalSync::kAlways);
    options.segment_bytes = c.segment_bytes;
    absl::StatusOr<std::unique_ptr<Wal>> wal =
        Wal::Open(options, r.segments, r.last_lsn, next, c.tail_bytes);
    ASSERT_THAT(wal, IsOk());
    AppendAndSync(**wal, 1);
    ASSERT_THAT((*wal)->Close(), IsOk());
    EXPECT_EQ(SegmentSeqs(&env_, kDir).back(), next);
    EXPECT_EQ(Read(PathOf(SegmentFileName(1))).size(), size);
  }
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 13)));
}

// Open after a log whose last segment is below next_seq (a snapshot names a
// later segment that the log no longer has, as after a salvage) starts the
// segments between empty, so that recovery finds no numbering gap.
TEST_F(WalTest, OpenFillsTheNumberingUpToNextSeq) {
  BuildRotatedLog(/*records=*/10, /*segment_bytes=*/64 << 20);
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  ASSERT_EQ(recovered->result.next_seq, 2u);
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(Options(WalSync::kAlways), recovered->result.segments,
                recovered->result.last_lsn, /*next_seq=*/5);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 3);
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 13)));
}

TEST_F(WalTest, OpenRefusesInconsistentArguments) {
  WalOptions options = Options(WalSync::kAlways, /*partitions=*/2);
  // One last LSN per partition.
  EXPECT_THAT(Wal::Open(options, {}, {0}, 1), StatusIs(kInvalidArgument));
  EXPECT_THAT(Wal::Open(options, {}, {0, 0, 0}, 1), StatusIs(kInvalidArgument));
  // The next segment follows the existing ones.
  const std::vector<SegmentFile> existing = {
      SegmentFile{SegmentFileName(4), 4}};
  EXPECT_THAT(Wal::Open(options, existing, {0, 0}, 4),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(Wal::Open(options, {}, {0, 0}, 0), StatusIs(kInvalidArgument));
  for (uint32_t partitions : {uint32_t{0}, kMaxPartitions + 1}) {
    options.partitions = partitions;
    EXPECT_THAT(Wal::Open(options, {}, std::vector<uint64_t>(partitions, 0), 1),
                StatusIs(kInvalidArgument));
  }
  EXPECT_THAT(SegmentSeqs(&env_, kDir), IsEmpty());  // Nothing was created.
}

// DiscardBefore(seq) removes exactly the segments numbered below seq, and
// never the one being written, whatever seq is.
TEST_F(WalTest, DiscardBeforeRemovesOnlySegmentsBelowTheSeq) {
  WalOptions options = Options(WalSync::kAlways);
  options.segment_bytes = 400;
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 60);
  const std::vector<uint64_t> seqs = SegmentSeqs(&env_, kDir);
  ASSERT_GE(seqs.size(), 4u);
  const uint64_t active = seqs.back();

  ASSERT_THAT((*wal)->DiscardBefore(1), IsOk());  // Nothing below 1.
  EXPECT_EQ(SegmentSeqs(&env_, kDir), seqs);
  ASSERT_THAT((*wal)->DiscardBefore(3), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir),
            std::vector<uint64_t>(seqs.begin() + 2, seqs.end()));
  ASSERT_THAT((*wal)->DiscardBefore(3), IsOk());  // Again: nothing to do.
  EXPECT_EQ(SegmentSeqs(&env_, kDir),
            std::vector<uint64_t>(seqs.begin() + 2, seqs.end()));

  // Up to the active segment, and past it: the active one stays.
  ASSERT_THAT((*wal)->DiscardBefore(active), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{active});
  ASSERT_THAT((*wal)->DiscardBefore(active + 100), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{active});
  ASSERT_THAT((*wal)->DiscardBefore(UINT64_MAX), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{active});

  // The log still works, and the removals are durable.
  AppendAndSync(**wal, 3);
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  wal->reset();
  const std::vector<uint64_t> left = SegmentSeqs(&env_, kDir);
  ASSERT_THAT(left, Not(IsEmpty()));
  EXPECT_EQ(left.front(), active);
  // Recovery from the segment left: its first record is what a snapshot
  // would have had to hold.
  const std::vector<std::pair<uint32_t, uint64_t>> in_active =
      RecordsIn(Read(PathOf(SegmentFileName(active))));
  ASSERT_THAT(in_active, Not(IsEmpty()));
  LogRecoveryOptions from_active;
  from_active.first_seq = active;
  from_active.after_lsn = {in_active.front().second - 1};
  absl::StatusOr<Recovered> recovered = Recover(&env_, from_active);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0),
              ElementsAreArray(Expected(in_active.front().second, 63)));
}

TEST_F(WalTest, CloseRemovesAnEmptyActiveSegment) {
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(Options(WalSync::kAlways));
  ASSERT_THAT(wal, IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{1});
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_THAT(ListSegments(&env_), IsEmpty());
  EXPECT_THAT((*wal)->Close(), IsOk());  // Idempotent.

  // A segment with records stays; the empty one opened after it goes.
  wal = Open(Options(WalSync::kAlways));
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 2);
  ASSERT_THAT((*wal)->Close(), IsOk());
  absl::StatusOr<Recovered> recovered = Recover(&env_);
  ASSERT_THAT(recovered, IsOk());
  ASSERT_EQ(recovered->result.next_seq, 2u);
  wal = Wal::Open(Options(WalSync::kAlways), recovered->result.segments, {2},
                  recovered->result.next_seq);
  ASSERT_THAT(wal, IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), (std::vector<uint64_t>{1, 2}));
  ASSERT_THAT((*wal)->Close(), IsOk());
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{1});
  // The removal is durable.
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{1});
}

// RequestRotation returns the number of the segment the next flush starts:
// the active segment ends with what was written before the call (synced),
// and every record staged at the call or appended after it lands in the
// returned segment.
TEST_F(WalTest, RequestRotationReturnsTheSegmentLaterRecordsLandIn) {
  const std::vector<uint32_t> both = {0, 1};
  for (WalSync mode : {WalSync::kAlways, WalSync::kInterval, WalSync::kNone}) {
    SCOPED_TRACE(ModeName(mode));
    FaultInjectionEnv env(/*seed=*/3);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(mode, /*partitions=*/2);
    options.env = &env;
    options.sync_interval = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
    ASSERT_THAT(opened, IsOk());
    Wal& wal = **opened;
    for (uint64_t lsn = 1; lsn <= 5; ++lsn) {
      for (uint32_t p : both) {
        ASSERT_THAT(AppendPayload(wal, p, Payload(lsn, p)), IsOkAndHolds(lsn));
      }
      ASSERT_THAT(wal.SyncAll(), IsOk());
    }
    for (uint64_t lsn = 6; lsn <= 7; ++lsn) {  // Staged, not yet written.
      for (uint32_t p : both) {
        ASSERT_THAT(AppendPayload(wal, p, Payload(lsn, p)), IsOk());
      }
    }
    EXPECT_EQ(wal.RequestRotation(), 2u);
    // Until a flush starts it, the same segment.
    EXPECT_EQ(wal.RequestRotation(), 2u);
    for (uint64_t lsn = 8; lsn <= 9; ++lsn) {
      for (uint32_t p : both) {
        ASSERT_THAT(AppendPayload(wal, p, Payload(lsn, p)), IsOk());
      }
    }
    ASSERT_THAT(wal.SyncAll(), IsOk());
    // The old segment ends at 5 and is durable; 6.. went to the new one.
    absl::StatusOr<std::string> old_durable =
        env.DurableContents(PathOf(SegmentFileName(1)));
    ASSERT_THAT(old_durable, IsOk());
    EXPECT_EQ(Sorted(RecordsIn(*old_durable)), LsnsOf(both, 1, 5));

    EXPECT_EQ(wal.RequestRotation(), 3u);
    ASSERT_THAT(AppendPayload(wal, 1, Payload(10, 1)), IsOkAndHolds(10u));
    ASSERT_THAT(wal.Sync(1, 10), IsOk());
    ASSERT_THAT(wal.SyncAll(), IsOk());
    ASSERT_THAT(wal.Close(), IsOk());
    opened->reset();

    EXPECT_EQ(SegmentSeqs(&env, kDir), (std::vector<uint64_t>{1, 2, 3}));
    EXPECT_EQ(Sorted(RecordsIn(Read(&env, SegmentFileName(1)))),
              LsnsOf(both, 1, 5));
    EXPECT_EQ(Sorted(RecordsIn(Read(&env, SegmentFileName(2)))),
              LsnsOf(both, 6, 9));
    EXPECT_THAT(RecordsIn(Read(&env, SegmentFileName(3))),
                ElementsAre(std::make_pair(1u, 10u)));
    absl::StatusOr<Recovered> recovered = Recover(&env, Partitions(2));
    ASSERT_THAT(recovered, IsOk());
    EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 9, 0)));
    EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 10, 1)));
  }
}

// A full segment is rotated by the flush after the one that filled it, and
// RequestRotation made while that rotation is pending names the same
// segment: the records after it are not split over two.
TEST_F(WalTest, RequestRotationAfterAFullSegmentNamesThePendingRotation) {
  WalOptions options = Options(WalSync::kAlways);
  options.segment_bytes = 1;  // Every flush fills its segment.
  absl::StatusOr<std::unique_ptr<Wal>> wal = Open(options);
  ASSERT_THAT(wal, IsOk());
  AppendAndSync(**wal, 1);
  // The flush filled segment 1; it is still the only one.
  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{1});
  EXPECT_EQ((*wal)->RequestRotation(), 2u);
  AppendAndSync(**wal, 1);
  EXPECT_EQ(SegmentSeqs(&env_, kDir), (std::vector<uint64_t>{1, 2}));
  EXPECT_THAT(RecordsIn(Read(PathOf(SegmentFileName(2)))),
              ElementsAre(std::make_pair(0u, 2u)));
  ASSERT_THAT((*wal)->Close(), IsOk());
}

TEST_F(WalTest, AppendToAnOutOfRangePartitionIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Open(Options(WalSync::kAlways, /*partitions=*/3));
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  EXPECT_EQ(wal.partitions(), 3u);
  bool filled = false;
  for (uint32_t partition :
       {uint32_t{3}, uint32_t{4}, kMaxPartitions, UINT32_MAX}) {
    SCOPED_TRACE(partition);
    EXPECT_THAT(wal.Append(partition, 1, [&](char*) { filled = true; }),
                StatusIs(kInvalidArgument, HasSubstr("partition")));
    EXPECT_THAT(wal.Sync(partition, 0), StatusIs(kInvalidArgument));
    EXPECT_EQ(wal.last_lsn(partition), 0u);
  }
  EXPECT_FALSE(filled);
  EXPECT_EQ(wal.records(), 0u);
  // Not sticky: every partition in range still works.
  for (uint32_t partition = 0; partition < 3; ++partition) {
    ASSERT_THAT(AppendPayload(wal, partition, Payload(1, partition)),
                IsOkAndHolds(1u));
    ASSERT_THAT(wal.Sync(partition, 1), IsOk());
  }
  ASSERT_THAT(wal.Close(), IsOk());
  absl::StatusOr<Recovered> recovered = Recover(&env_, Partitions(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_EQ(recovered->records.size(), 3u);
}

TEST_F(WalTest, AppendGroupRefusesMalformedGroups) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Open(Options(WalSync::kAlways, /*partitions=*/3));
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  std::vector<uint64_t> lsns;
  const std::vector<std::vector<uint32_t>> malformed = {
      {1},           // One piece is no group.
      {0, 3},        // Out of range.
      {1, 0},        // Descending.
      {1, 1},        // Twice the same partition.
      {0, 1, 2, 2},  // More pieces than partitions.
  };
  for (const std::vector<uint32_t>& partitions : malformed) {
    SCOPED_TRACE(::testing::PrintToString(partitions));
    EXPECT_THAT(AppendGroupOfPayloads(
                    wal, partitions,
                    std::vector<std::string>(partitions.size(), "g"), &lsns),
                StatusIs(kInvalidArgument));
  }
  EXPECT_EQ(wal.records(), 0u);  // Nothing was staged.
  ASSERT_THAT(AppendGroupOfPayloads(wal, {0, 2}, {"a", "b"}, &lsns), IsOk());
  EXPECT_EQ(lsns, (std::vector<uint64_t>{1, 1}));
}

// Each partition numbers its own records from its own last LSN, and records()
// counts them all.
TEST_F(WalTest, LastLsnAndRecordsArePerPartition) {
  WalOptions options = Options(WalSync::kAlways, /*partitions=*/3);
  // As after a snapshot that holds the partitions through 5, 0 and 9.
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Wal::Open(options, {}, {5, 0, 9}, /*next_seq=*/4);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  EXPECT_EQ(wal.last_lsn(0), 5u);
  EXPECT_EQ(wal.last_lsn(1), 0u);
  EXPECT_EQ(wal.last_lsn(2), 9u);
  EXPECT_EQ(wal.records(), 14u);

  EXPECT_THAT(AppendPayload(wal, 0, Payload(6, 0)), IsOkAndHolds(6u));
  EXPECT_THAT(AppendPayload(wal, 1, Payload(1, 1)), IsOkAndHolds(1u));
  EXPECT_THAT(AppendPayload(wal, 1, Payload(2, 1)), IsOkAndHolds(2u));
  EXPECT_THAT(AppendPayload(wal, 2, Payload(10, 2)), IsOkAndHolds(10u));
  EXPECT_EQ(wal.last_lsn(0), 6u);
  EXPECT_EQ(wal.last_lsn(1), 2u);
  EXPECT_EQ(wal.last_lsn(2), 10u);
  EXPECT_EQ(wal.records(), 18u);

  std::vector<uint64_t> lsns;
  ASSERT_THAT(AppendGroupOfPayloads(wal, {0, 2},
                                    {Payload(7, 0), Payload(11, 2)}, &lsns),
              IsOk());
  EXPECT_EQ(lsns, (std::vector<uint64_t>{7, 11}));
  EXPECT_EQ(wal.last_lsn(0), 7u);
  EXPECT_EQ(wal.last_lsn(1), 2u);
  EXPECT_EQ(wal.last_lsn(2), 11u);
  EXPECT_EQ(wal.records(), 20u);
  ASSERT_THAT(wal.Close(), IsOk());

  EXPECT_EQ(SegmentSeqs(&env_, kDir), std::vector<uint64_t>{4});
  LogRecoveryOptions recovery = Partitions(3);
  recovery.after_lsn = {5, 0, 9};
  recovery.first_seq = 4;
  absl::StatusOr<Recovered> recovered = Recover(&env_, recovery);
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(6, 7, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 2, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(10, 11, 2)));
  EXPECT_EQ(recovered->result.last_lsn, (std::vector<uint64_t>{7, 2, 11}));
}

// A group's pieces are kGroupTransition records whose group header names
// the group's size and its leader (the piece in the lowest partition); the
// transition after the header is the caller's bytes.
TEST_F(WalTest, AppendGroupWritesPiecesWithTheirGroupHeader) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Open(Options(WalSync::kAlways, /*partitions=*/4));
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  ASSERT_THAT(AppendPayload(wal, 1, Payload(1, 1)), IsOkAndHolds(1u));
  ASSERT_THAT(AppendPayload(wal, 1, Payload(2, 1)), IsOkAndHolds(2u));
  std::vector<uint64_t> lsns;
  ASSERT_THAT(
      AppendGroupOfPayloads(
          wal, {1, 2, 3}, {Payload(3, 1), Payload(1, 2), Payload(1, 3)}, &lsns),
      IsOk());
  EXPECT_EQ(lsns, (std::vector<uint64_t>{3, 1, 1}));
  ASSERT_THAT(wal.Close(), IsOk());

  const std::string contents = Read(PathOf(SegmentFileName(1)));
  LogReader reader(contents, "segment");
  LogReader::Record record;
  int pieces = 0;
  while (true) {
    absl::StatusOr<bool> more = reader.Read(&record);
    ASSERT_THAT(more, IsOk());
    if (!*more) break;
    if (record.type != RecordType::kGroupTransition) {
      EXPECT_EQ(record.type, RecordType::kTransition);
      continue;
    }
    ++pieces;
    ASSERT_GE(record.payload.size(), kGroupHeaderSize);
    const char* header = record.payload.data();
    EXPECT_EQ(DecodeFixed16(header + kGroupPiecesOffset), 3u);
    EXPECT_EQ(DecodeFixed16(header + kGroupLeaderPartitionOffset), 1u);
    EXPECT_EQ(DecodeFixed32(header + 4), 0u);  // Reserved.
    EXPECT_EQ(DecodeFixed64(header + kGroupLeaderLsnOffset), 3u);
    EXPECT_EQ(record.payload.substr(kGroupHeaderSize),
              Payload(record.lsn, record.partition));
  }
  EXPECT_EQ(pieces, 3);

  absl::StatusOr<Recovered> recovered = Recover(&env_, Partitions(4));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), IsEmpty());
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 3, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(1, 1, 2)));
  EXPECT_THAT(recovered->Of(3), ElementsAreArray(Expected(1, 1, 3)));
}

// Each partition has an appender of its own, with no lock shared between
// them; some also sync. In every mode, once the log is closed, recovery
// returns every record of every partition, each partition's in LSN order.
TEST_F(WalTest, PartitionsAppendConcurrentlyAndRecoverInLsnOrder) {
  constexpr uint32_t kPartitions = 4;
  constexpr uint64_t kPerPartition = 300;
  for (WalSync mode : {WalSync::kAlways, WalSync::kInterval, WalSync::kNone}) {
    SCOPED_TRACE(ModeName(mode));
    FaultInjectionEnv env(/*seed=*/17);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(mode, kPartitions);
    options.env = &env;
    options.segment_bytes = 4096;
    options.sync_interval = absl::Milliseconds(1);
    absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
    ASSERT_THAT(opened, IsOk());
    Wal& wal = **opened;

    absl::Notification start;
    // One element per thread: no lock needed.
    std::vector<std::vector<absl::Status>> failures(kPartitions);
    std::vector<std::thread> threads;
    for (uint32_t p = 0; p < kPartitions; ++p) {
      threads.emplace_back([&, p] {
        start.WaitForNotification();
        for (uint64_t lsn = 1; lsn <= kPerPartition; ++lsn) {
          absl::StatusOr<uint64_t> got = AppendPayload(wal, p, Payload(lsn, p));
          if (!got.ok() || *got != lsn) {
            failures[p].push_back(got.ok() ? absl::InternalError(absl::StrCat(
                                                 "LSN ", *got, " for ", lsn))
                                           : got.status());
            return;
          }
          // Partition p syncs every (p + 1)th record, partition 0 each.
          if (lsn % (p + 1) == 0) {
            absl::Status s = wal.Sync(p, lsn);
            if (!s.ok()) failures[p].push_back(s);
          }
        }
      });
    }
    start.Notify();
    for (std::thread& thread : threads) thread.join();
    for (uint32_t p = 0; p < kPartitions; ++p) {
      EXPECT_THAT(failures[p], IsEmpty()) << "partition " << p;
      EXPECT_EQ(wal.last_lsn(p), kPerPartition);
    }
    EXPECT_EQ(wal.records(), kPartitions * kPerPartition);
    ASSERT_THAT(wal.Close(), IsOk());
    EXPECT_EQ(wal.stats().records_flushed.load(), kPartitions * kPerPartition);
    if (mode != WalSync::kNone) {
      EXPECT_GT(SegmentSeqs(&env, kDir).size(), 1u);
    }
    opened->reset();

    absl::StatusOr<Recovered> recovered =
        Recover(&env, Partitions(kPartitions));
    ASSERT_THAT(recovered, IsOk());
    EXPECT_EQ(recovered->records.size(), kPartitions * kPerPartition);
    for (uint32_t p = 0; p < kPartitions; ++p) {
      EXPECT_THAT(recovered->Of(p),
                  ElementsAreArray(Expected(1, kPerPartition, p)))
          << "partition " << p;
    }
    EXPECT_EQ(recovered->result.last_lsn,
              std::vector<uint64_t>(kPartitions, kPerPartition));
    EXPECT_THAT(recovered->result.notes, IsEmpty());
  }
}

// Sync on several records at once returns only when every one of them is
// durable, including one that no flush has taken yet while another is
// durable already.
TEST_F(WalTest, SyncOnSeveralPartitionLsnsCoversEachOfThem) {
  absl::StatusOr<std::unique_ptr<Wal>> opened =
      Open(Options(WalSync::kAlways, /*partitions=*/3));
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  ASSERT_THAT(AppendPayload(wal, 0, Payload(1, 0)), IsOkAndHolds(1u));
  ASSERT_THAT(wal.Sync(0, 1), IsOk());
  for (uint64_t lsn = 1; lsn <= 3; ++lsn) {
    ASSERT_THAT(AppendPayload(wal, 2, Payload(lsn, 2)), IsOkAndHolds(lsn));
  }
  ASSERT_THAT(AppendPayload(wal, 1, Payload(1, 1)), IsOkAndHolds(1u));

  const std::string path = PathOf(SegmentFileName(1));
  absl::StatusOr<std::string> durable = env_.DurableContents(path);
  ASSERT_THAT(durable, IsOk());
  ASSERT_EQ(Sorted(RecordsIn(*durable)), LsnsOf({0}, 1, 1));

  // The first is durable already: the call must still wait for the second.
  const std::vector<PartitionLsn> records = {{0, 1}, {2, 3}};
  ASSERT_THAT(wal.Sync(records), IsOk());
  durable = env_.DurableContents(path);
  ASSERT_THAT(durable, IsOk());
  const std::vector<std::pair<uint32_t, uint64_t>> synced =
      Sorted(RecordsIn(*durable));
  EXPECT_THAT(synced, ::testing::IsSupersetOf(
                          {std::make_pair(0u, 1u), std::make_pair(2u, 1u),
                           std::make_pair(2u, 2u), std::make_pair(2u, 3u)}));

  // One record not yet appended makes the whole call invalid (and not
  // sticky); an empty list is trivially covered.
  const std::vector<PartitionLsn> too_far = {{1, 1}, {1, 2}};
  EXPECT_THAT(wal.Sync(too_far), StatusIs(kInvalidArgument));
  const std::vector<PartitionLsn> out_of_range = {{0, 1}, {3, 0}};
  EXPECT_THAT(wal.Sync(out_of_range), StatusIs(kInvalidArgument));
  EXPECT_THAT(wal.Sync(absl::Span<const PartitionLsn>()), IsOk());
  const std::vector<PartitionLsn> all = {{0, 1}, {1, 1}, {2, 3}};
  ASSERT_THAT(wal.Sync(all), IsOk());

  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  opened->reset();
  absl::StatusOr<Recovered> recovered = Recover(&env_, Partitions(3));
  ASSERT_THAT(recovered, IsOk());
  EXPECT_THAT(recovered->Of(0), ElementsAreArray(Expected(1, 1, 0)));
  EXPECT_THAT(recovered->Of(1), ElementsAreArray(Expected(1, 1, 1)));
  EXPECT_THAT(recovered->Of(2), ElementsAreArray(Expected(1, 3, 2)));
}

// In kInterval, Sync on several records waits until each is written to the
// OS (not fdatasynced).
TEST_F(WalTest, IntervalModeSyncOnSeveralRecordsWritesEachOfThem) {
  WalOptions options = Options(WalSync::kInterval, /*partitions=*/2);
  options.sync_interval = absl::Hours(1);
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  ASSERT_THAT(AppendPayload(wal, 0, Payload(1, 0)), IsOkAndHolds(1u));
  ASSERT_THAT(wal.Sync(0, 1), IsOk());
  ASSERT_THAT(AppendPayload(wal, 1, Payload(1, 1)), IsOkAndHolds(1u));
  ASSERT_THAT(AppendPayload(wal, 1, Payload(2, 1)), IsOkAndHolds(2u));
  const std::vector<PartitionLsn> records = {{0, 1}, {1, 2}};
  ASSERT_THAT(wal.Sync(records), IsOk());
  const std::string path = PathOf(SegmentFileName(1));
  EXPECT_EQ(
      Sorted(RecordsIn(Read(path))),
      (std::vector<std::pair<uint32_t, uint64_t>>{{0, 1}, {1, 1}, {1, 2}}));
  absl::StatusOr<std::string> durable = env_.DurableContents(path);
  ASSERT_THAT(durable, IsOk());
  EXPECT_EQ(durable->size(), kFileHeaderSize);  // Not fdatasynced.
  ASSERT_THAT(wal.Close(), IsOk());
}

// What a power loss leaves of groups appended while other threads append to
// and sync the same partitions: every group whole or not at all, and (in
// kAlways) every group and record acknowledged before it. In kInterval with
// no background fdatasync, only rotations sync: the power loss tears a long
// unsynced tail, and so nearly always some group.
TEST_F(WalTest, GroupsSurvivePowerLossWholeOrNotAtAll) {
  constexpr uint32_t kPartitions = 4;
  const std::vector<std::vector<uint32_t>> kShapes = {
      {0, 1}, {1, 2, 3}, {0, 2}, {0, 1, 2, 3}, {2, 3}, {0, 3}};
  for (WalSync sync : {WalSync::kAlways, WalSync::kInterval}) {
    for (PowerLossMode mode :
         {PowerLossMode::kDropUnsynced, PowerLossMode::kTornTail}) {
      for (uint64_t seed : {1u, 2u, 3u, 4u}) {
        SCOPED_TRACE(absl::StrCat(
            ModeName(sync),
            mode == PowerLossMode::kDropUnsynced ? " drop" : " torn", " seed ",
            seed));
        FaultInjectionEnv env(seed);
        ASSERT_THAT(env.CreateDir(kDir), IsOk());
        WalOptions options = Options(sync, kPartitions);
        options.env = &env;
        options.sync_interval = absl::Hours(1);
        options.segment_bytes = 4096;  // Rotations among the groups.
        absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
        ASSERT_THAT(opened, IsOk());
        Wal& wal = **opened;

        // A partition's commit lock serializes its appends with the groups
        // that include it; a group takes its partitions' locks in ascending
        // order.
        std::array<absl::Mutex, kPartitions> commit_mu;
        std::atomic<bool> stop{false};
        std::atomic<int> next_group{0};
        absl::Mutex acked_mu;
        // (partition, LSN) -> payload of each acknowledged record or piece.
        absl::flat_hash_map<std::pair<uint32_t, uint64_t>, std::string> acked;
        int acked_groups = 0;
        std::vector<std::thread> threads;
        for (uint32_t p = 0; p < kPartitions; ++p) {
          threads.emplace_back([&, p] {
            for (int i = 0; !stop.load(); ++i) {
              const std::string payload = absl::StrCat("single-", p, "-", i);
              absl::StatusOr<uint64_t> lsn;
              {
                absl::MutexLock l(&commit_mu[p]);
                lsn = AppendPayload(wal, p, payload);
              }
              if (!lsn.ok() || !wal.Sync(p, *lsn).ok()) return;
              absl::MutexLock l(&acked_mu);
              acked[{p, *lsn}] = payload;
            }
          });
        }
        for (int t = 0; t < 2; ++t) {
          threads.emplace_back([&] {
            while (!stop.load()) {
              const int g = next_group.fetch_add(1);
              const std::vector<uint32_t>& shape = kShapes[g % kShapes.size()];
              std::vector<std::string> payloads;
              for (size_t i = 0; i < shape.size(); ++i) {
                payloads.push_back(absl::StrCat("group-", g, "-of-",
                                                shape.size(), "-piece-", i));
              }
              std::vector<uint64_t> lsns;
              absl::Status s;
              {
                LockAll(commit_mu, shape);
                s = AppendGroupOfPayloads(wal, shape, payloads, &lsns);
                UnlockAll(commit_mu, shape);
              }
              if (!s.ok()) return;
              std::vector<PartitionLsn> pieces;
              for (size_t i = 0; i < shape.size(); ++i) {
                pieces.push_back(PartitionLsn{shape[i], lsns[i]});
              }
              if (!wal.Sync(pieces).ok()) return;
              absl::MutexLock l(&acked_mu);
              for (size_t i = 0; i < shape.size(); ++i) {
                acked[{shape[i], lsns[i]}] = payloads[i];
              }
              ++acked_groups;
            }
          });
        }
        // Let acknowledgments through, then cut the power with acked_mu held:
        // what is in `acked` now was acknowledged before it.
        absl::flat_hash_map<std::pair<uint32_t, uint64_t>, std::string> before;
        {
          absl::MutexLock l(&acked_mu);
          auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(acked_mu) {
            return acked.size() >= 400 && acked_groups >= 40;
          };
          acked_mu.Await(absl::Condition(&enough));
          env.SimulatePowerLoss(mode);
          before = acked;
        }
        stop.store(true);
        for (std::thread& thread : threads) thread.join();
        opened->reset();

        absl::StatusOr<Recovered> recovered =
            Recover(&env, Partitions(kPartitions));
        ASSERT_THAT(recovered, IsOk());
        absl::flat_hash_map<std::pair<uint32_t, uint64_t>, std::string> found;
        // Group number -> (pieces it has, pieces recovered).
        absl::flat_hash_map<int, std::pair<int, int>> groups;
        for (const RecoveredRecord& r : recovered->records) {
          found[{r.partition, r.lsn}] = r.transition;
          if (!absl::StartsWith(r.transition, "group-")) continue;
          const std::vector<std::string> parts =
              absl::StrSplit(r.transition, '-');
          ASSERT_EQ(parts.size(), 6u) << r;
          int g = 0;
          int size = 0;
          ASSERT_TRUE(absl::SimpleAtoi(parts[1], &g)) << r;
          ASSERT_TRUE(absl::SimpleAtoi(parts[3], &size)) << r;
          groups[g].first = size;
          ++groups[g].second;
        }
        for (const auto& [g, counts] : groups) {
          EXPECT_EQ(counts.second, counts.first)
              << "group " << g << " recovered in part";
        }
        // Each partition is a gapless sequence from 1.
        for (uint32_t p = 0; p < kPartitions; ++p) {
          uint64_t expected = 1;
          for (const auto& [lsn, payload] : recovered->Of(p)) {
            ASSERT_EQ(lsn, expected++) << "partition " << p;
          }
        }
        if (sync != WalSync::kAlways) {
          EXPECT_THAT(groups, Not(IsEmpty()));
          continue;  // Acknowledged is only written, not durable.
        }
        EXPECT_GE(groups.size(), 40u);
        for (const auto& [record, payload] : before) {
          auto it = found.find(record);
          ASSERT_TRUE(it != found.end())
              << "acknowledged partition " << record.first << " LSN "
              << record.second;
          EXPECT_EQ(it->second, payload);
        }
      }
    }
  }
}

// A flush is a consistent cut of the lanes: a record staged after another,
// in any lane, is never written by an earlier flush. One thread appends
// numbered records round robin over the lanes without syncing; another
// flushes (SyncAll) all the time; a power loss keeps what was fdatasynced,
// which must be every record up to some number, with no hole.
TEST_F(WalTest, FlushesAreConsistentCutsAcrossLanes) {
  constexpr uint32_t kPartitions = 8;
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    SCOPED_TRACE(seed);
    FaultInjectionEnv env(seed);
    ASSERT_THAT(env.CreateDir(kDir), IsOk());
    WalOptions options = Options(WalSync::kNone, kPartitions);
    options.env = &env;
    options.buffer_bytes = 1 << 30;  // Only SyncAll flushes.
    absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
    ASSERT_THAT(opened, IsOk());
    Wal& wal = **opened;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> appended{0};
    std::thread appender([&] {
      for (uint64_t n = 0; !stop.load(); ++n) {
        if (!AppendPayload(wal, static_cast<uint32_t>(n % kPartitions),
                           absl::StrCat(n))
                 .ok()) {
          return;
        }
        appended.store(n + 1);
      }
    });
    // Records appended before a SyncAll began are durable once it returns.
    std::atomic<uint64_t> durable{0};
    std::thread flusher([&] {
      while (!stop.load()) {
        const uint64_t before = appended.load();
        if (!wal.SyncAll().ok()) return;
        durable.store(before);
      }
    });
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while ((appended.load() < 20000 || durable.load() < 1000) &&
           absl::Now() < give_up) {
      std::this_thread::yield();
    }
    const uint64_t durable_at_loss = durable.load();
    EXPECT_GE(durable_at_loss, 1000u) << "the threads made no progress";
    env.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
    stop.store(true);
    appender.join();
    flusher.join();
    opened->reset();
    absl::StatusOr<Recovered> recovered =
        Recover(&env, Partitions(kPartitions));
    ASSERT_THAT(recovered, IsOk());
    std::vector<uint64_t> numbers;
    for (const RecoveredRecord& r : recovered->records) {
      uint64_t n = 0;
      ASSERT_TRUE(absl::SimpleAtoi(r.transition, &n)) << r;
      numbers.push_back(n);
    }
    std::sort(numbers.begin(), numbers.end());
    EXPECT_GE(numbers.size(), durable_at_loss);
    for (size_t i = 0; i < numbers.size(); ++i) {
      ASSERT_EQ(numbers[i], i) << "record " << i << " lost, later ones kept";
    }
  }
}

// Every flush takes all of a group's pieces or none of them. With a segment
// size of one byte every flush fills its segment and the next one starts a
// new segment, so a group split over two flushes would show as a group
// split over two segments (which recovery rejects).
TEST_F(WalTest, GroupPiecesNeverSpanTwoFlushes) {
  constexpr uint32_t kPartitions = 3;
  WalOptions options = Options(WalSync::kAlways, kPartitions);
  options.segment_bytes = 1;
  absl::StatusOr<std::unique_ptr<Wal>> opened = Open(options);
  ASSERT_THAT(opened, IsOk());
  Wal& wal = **opened;
  std::array<absl::Mutex, kPartitions> commit_mu;
  std::atomic<bool> stop{false};
  std::atomic<int> groups{0};
  std::vector<std::thread> threads;
  // Flushes, as often as they can run.
  for (uint32_t p = 0; p < kPartitions; ++p) {
    threads.emplace_back([&, p] {
      while (!stop.load()) {
        absl::StatusOr<uint64_t> lsn;
        {
          absl::MutexLock l(&commit_mu[p]);
          lsn = AppendPayload(wal, p, "single");
        }
        if (!lsn.ok() || !wal.Sync(p, *lsn).ok()) return;
      }
    });
  }
  threads.emplace_back([&] {
    for (int g = 0; g < 300; ++g) {
      const std::vector<uint32_t> shape = {0, 1, 2};
      std::vector<uint64_t> lsns;
      LockAll(commit_mu, shape);
      const absl::Status s = AppendGroupOfPayloads(
          wal, shape,
          {absl::StrCat("group-", g), absl::StrCat("group-", g),
           absl::StrCat("group-", g)},
          &lsns);
      UnlockAll(commit_mu, shape);
      if (!s.ok()) return;
      groups.fetch_add(1);
      // However the threads are scheduled, flushes (and so segments) come
      // between the groups.
      if (g % 3 == 0 && !wal.Sync(0, lsns[0]).ok()) return;
    }
  });
  threads.back().join();
  threads.pop_back();
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(groups.load(), 300);
  ASSERT_THAT(wal.Close(), IsOk());
  opened->reset();

  const std::vector<SegmentFile> segments = ListSegments(&env_);
  EXPECT_GT(segments.size(), 10u);
  // Group -> the segment each of its pieces is in.
  absl::flat_hash_map<std::string, std::vector<uint64_t>> segments_of;
  for (const SegmentFile& segment : segments) {
    const std::string contents = Read(PathOf(segment.name));
    LogReader reader(contents, segment.name);
    LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      ASSERT_THAT(more, IsOk());
      if (!*more) break;
      if (record.type != RecordType::kGroupTransition) continue;
      segments_of[std::string(record.payload.substr(kGroupHeaderSize))]
          .push_back(segment.seq);
    }
  }
  ASSERT_EQ(segments_of.size(), 300u);
  for (const auto& [group, seqs] : segments_of) {
    ASSERT_EQ(seqs.size(), 3u) << group;
    EXPECT_EQ(seqs[0], seqs[1]) << group;
    EXPECT_EQ(seqs[0], seqs[2]) << group;
  }
  absl::StatusOr<Recovered> recovered = Recover(&env_, Partitions(kPartitions));
  ASSERT_THAT(recovered, IsOk());
}

}  // namespace
}  // namespace taskwal::wal
