#include "engine/recovery.h"

#include <atomic>
#include <deque>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/snapshot.h"
#include "engine/transition.pb.h"
#include "google/protobuf/arena.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

namespace {

// Replay in two stages: the caller reads, checks and parses records into
// batches (parsing is a third of replay), and a second thread applies them
// in LSN order. Each batch's records live in its own arena, freed once the
// batch is applied.
class ReplayPipeline {
 public:
  explicit ReplayPipeline(StateMachine* state) : state_(state) {}
  ReplayPipeline(const ReplayPipeline&) = delete;
  ReplayPipeline& operator=(const ReplayPipeline&) = delete;
  ~ReplayPipeline() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  // Parses the record into the current batch and queues full batches.
  // kDataLoss if it does not parse; the applier's first error, if it has
  // one; kResourceExhausted if the applier thread cannot be started.
  absl::Status Add(uint64_t lsn, absl::string_view payload) {
    if (failed_.load(std::memory_order_acquire)) return Drain();
    if (batch_ == nullptr) batch_ = std::make_unique<Batch>();
    Transition* record =
        google::protobuf::Arena::CreateMessage<Transition>(&batch_->arena);
    if (!record->ParseFromArray(payload.data(),
                                static_cast<int>(payload.size()))) {
      return absl::DataLossError(absl::StrCat(
          "log record at LSN ", lsn,
          " has a valid checksum but is not a transition"));
    }
    batch_->records.emplace_back(lsn, record);
    batch_->bytes += payload.size();
    if (batch_->records.size() >= kBatchRecords ||
        batch_->bytes >= kBatchBytes) {
      return Push();
    }
    return absl::OkStatus();
  }

  // Returns once every record added so far is applied (or one failed):
  // the first error, which is the one earliest in LSN order.
  absl::Status Drain() {
    TASKWAL_RETURN_IF_ERROR(Push());
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &ReplayPipeline::Idle));
    return status_;
  }

 private:
  static constexpr size_t kBatchRecords = 2048;
  static constexpr size_t kBatchBytes = size_t{1} << 20;
  static constexpr size_t kMaxQueued = 4;

  struct Batch {
    google::protobuf::Arena arena;
    std::vector<std::pair<uint64_t, Transition*>> records;
    size_t bytes = 0;
  };

  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && !applying_;
  }
  bool RoomOrFailed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.size() < kMaxQueued || !status_.ok();
  }
  bool WorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stop_;
  }

  // Queues the current batch, starting the applier on first use.
  absl::Status Push() {
    if (batch_ == nullptr) return absl::OkStatus();
    if (!thread_.joinable()) {
      try {
        thread_ = std::thread([this] { Run(); });
      } catch (const std::system_error& e) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot start a thread to replay the log: ",
                         e.what()));
      }
    }
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &ReplayPipeline::RoomOrFailed));
    if (!status_.ok()) return status_;
    queue_.push_back(std::move(batch_));
    return absl::OkStatus();
  }

  void Run() {
    absl::MutexLock l(&mu_);
    while (true) {
      mu_.Await(absl::Condition(this, &ReplayPipeline::WorkOrStop));
      if (stop_) return;  // Whatever is still queued is dropped.
      std::unique_ptr<Batch> batch = std::move(queue_.front());
      queue_.pop_front();
      if (!status_.ok()) continue;  // Discarded after a failure.
      applying_ = true;
      mu_.Unlock();
      absl::Status s;
      for (const auto& [lsn, record] : batch->records) {
        s = state_->Apply(*record, lsn);
        if (!s.ok()) {
          s = absl::DataLossError(absl::StrCat(
              "log record at LSN ", lsn, " does not replay: ", s.message()));
          break;
        }
      }
      batch.reset();
      mu_.Lock();
      applying_ = false;
      if (!s.ok()) {
        status_ = s;
        failed_.store(true, std::memory_order_release);
      }
    }
  }

  StateMachine* const state_;
  std::unique_ptr<Batch> batch_;  // Being filled by the caller.
  absl::Mutex mu_;
  std::deque<std::unique_ptr<Batch>> queue_ ABSL_GUARDED_BY(mu_);
  bool applying_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<RecoveredState> RecoverDirectory(const EngineOptions& options,
                                                Env* env,
                                                const std::string& dir) {
  const absl::Time start = absl::Now();
  RecoveredState out;
  auto path = [&dir](absl::string_view name) {
    return absl::StrCat(dir, "/", name);
  };

  // Newest valid snapshot. Damaged ones are set aside only once recovery
  // has succeeded, so a failed Open changes nothing.
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SnapshotFile> snapshots,
                           ListSnapshots(env, dir));
  std::vector<std::string> damaged;
  for (const SnapshotFile& snapshot : snapshots) {
    auto candidate = std::make_unique<StateMachine>(
        options.num_shards, options.max_history_per_task,
        /*track_finished=*/options.retention > absl::ZeroDuration());
    absl::Status s = LoadSnapshot(env, path(snapshot.name), candidate.get());
    if (s.ok() && candidate->last_applied_lsn() != snapshot.lsn) {
      s = absl::DataLossError(absl::StrCat(
          path(snapshot.name), ": holds records through LSN ",
          candidate->last_applied_lsn(), " but its name says ", snapshot.lsn));
    }
    if (s.ok()) {
      out.state = std::move(candidate);
      out.report.snapshot_lsn = snapshot.lsn;
      break;
    }
    if (!absl::IsDataLoss(s)) return s;
    damaged.push_back(snapshot.name);
    out.report.notes.push_back(absl::StrCat(
        "snapshot ", snapshot.name, " is damaged (", s.message(), "); ",
        options.read_only ? "skipped"
                          : absl::StrCat("set aside as ", snapshot.name,
                                         ".corrupt")));
  }
  if (out.state == nullptr) {
    out.state = std::make_unique<StateMachine>(
        options.num_shards, options.max_history_per_task,
        /*track_finished=*/options.retention > absl::ZeroDuration());
  }

  StateMachine* state = out.state.get();
  // The state is the applier's until Drain returns.
  const uint64_t after_lsn = state->last_applied_lsn();
  ReplayPipeline replay(state);
  absl::StatusOr<wal::RecoveryResult> recovered = wal::RecoverLog(
      env, dir, after_lsn, options.salvage, options.read_only,
      [&](uint64_t lsn, absl::string_view payload) {
        return replay.Add(lsn, payload);
      },
      [&] { return replay.Drain(); });
  // A record that failed to apply comes before whatever stopped the reader.
  TASKWAL_RETURN_IF_ERROR(replay.Drain());
  TASKWAL_RETURN_IF_ERROR(recovered.status());
  wal::RecoveryResult& log = *recovered;

  // A read-only open changes nothing: damaged snapshots stay where they are.
  if (!options.read_only) {
    for (const std::string& name : damaged) {
      // Never overwrite an earlier set-aside file.
      std::string target = path(name) + ".corrupt";
      for (int n = 1; env->FileExists(target); ++n) {
        target = absl::StrCat(path(name), ".corrupt.", n);
      }
      TASKWAL_RETURN_IF_ERROR(env->RenameFile(path(name), target));
    }
    // Leftovers of a snapshot that was being written when the process died.
    TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                             env->GetChildren(dir));
    bool removed = !damaged.empty();
    for (const std::string& name : children) {
      if (absl::EndsWith(name, ".snap.tmp")) {
        TASKWAL_RETURN_IF_ERROR(env->RemoveFile(path(name)));
        removed = true;
      }
    }
    if (removed) TASKWAL_RETURN_IF_ERROR(env->SyncDir(dir));
  }

  out.segments = std::move(log.segments);
  out.last_lsn = log.last_lsn;
  out.report.records_replayed = log.records_replayed;
  out.report.last_lsn = log.last_lsn;
  out.report.truncated_bytes = log.truncated_bytes;
  for (std::string& note : log.notes) out.report.notes.push_back(std::move(note));
  out.report.duration = absl::Now() - start;
  return out;
}

}  // namespace taskwal::engine
