#include "engine/recovery.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/parallel.h"
#include "engine/snapshot.h"
#include "engine/transition.pb.h"
#include "google/protobuf/arena.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_recovery.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

namespace {

// Replay in two stages: the caller reads and checks records (RecoverLog)
// and hands each to the applier thread of its partition, which parses and
// applies it. Partitions are spread over the appliers (partition p to
// applier p % count), so each partition's records are applied in its own
// order while partitions replay in parallel. A batch holds references to
// the segment buffers its records point into, freed once it is applied.
class ReplayPipeline {
 public:
  explicit ReplayPipeline(std::vector<StateMachine*> states)
      : states_(std::move(states)) {
    const uint32_t count = WorkerCount(static_cast<uint32_t>(states_.size()));
    for (uint32_t i = 0; i < count; ++i) {
      appliers_.push_back(std::make_unique<Applier>());
    }
  }
  ReplayPipeline(const ReplayPipeline&) = delete;
  ReplayPipeline& operator=(const ReplayPipeline&) = delete;
  ~ReplayPipeline() {
    for (auto& a : appliers_) {
      absl::MutexLock l(&a->mu);
      a->stop = true;
    }
    for (auto& a : appliers_) {
      if (a->thread.joinable()) a->thread.join();
    }
  }

  // Queues the record for its partition's applier. The applier's first
  // error, if there is one; kResourceExhausted if an applier thread cannot
  // be started.
  absl::Status Add(uint32_t partition, uint64_t lsn, absl::string_view payload,
                   const std::shared_ptr<const std::string>& buffer) {
    if (failed_.load(std::memory_order_acquire)) return Drain();
    Applier& a = *appliers_[partition % appliers_.size()];
    if (a.filling == nullptr) a.filling = std::make_unique<Batch>();
    Batch& batch = *a.filling;
    if (batch.buffers.empty() || batch.buffers.back() != buffer) {
      batch.buffers.push_back(buffer);
    }
    batch.items.push_back(Item{partition, lsn, payload});
    batch.bytes += payload.size();
    if (batch.items.size() >= kBatchRecords || batch.bytes >= kBatchBytes) {
      return Push(a);
    }
    return absl::OkStatus();
  }

  // Returns once every record added so far is applied (or one failed):
  // the first error, by applier.
  absl::Status Drain() {
    absl::Status first;
    for (auto& a : appliers_) {
      absl::Status s = Push(*a);
      if (first.ok()) first = s;
    }
    for (auto& a : appliers_) {
      absl::MutexLock l(&a->mu);
      a->mu.Await(absl::Condition(a.get(), &Applier::Idle));
      if (first.ok()) first = a->status;
    }
    return first;
  }

 private:
  static constexpr size_t kBatchRecords = 2048;
  static constexpr size_t kBatchBytes = size_t{1} << 20;
  static constexpr size_t kMaxQueued = 4;

  struct Item {
    uint32_t partition;
    uint64_t lsn;
    absl::string_view payload;
  };
  struct Batch {
    std::vector<Item> items;
    std::vector<std::shared_ptr<const std::string>> buffers;
    size_t bytes = 0;
  };
  struct Applier {
    absl::Mutex mu;
    std::deque<std::unique_ptr<Batch>> queue ABSL_GUARDED_BY(mu);
    bool applying ABSL_GUARDED_BY(mu) = false;
    bool stop ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
    std::unique_ptr<Batch> filling;  // The caller's.
    std::thread thread;

    bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return queue.empty() && !applying;
    }
    bool RoomOrFailed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return queue.size() < kMaxQueued || !status.ok();
    }
    bool WorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return !queue.empty() || stop;
    }
  };

  // Queues the applier's current batch, starting its thread on first use.
  absl::Status Push(Applier& a) {
    if (a.filling == nullptr) return absl::OkStatus();
    if (!a.thread.joinable()) {
      try {
        a.thread = std::thread([this, &a] { Run(a); });
      } catch (const std::system_error& e) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "cannot start a thread to replay the log: ", e.what()));
      }
    }
    absl::MutexLock l(&a.mu);
    a.mu.Await(absl::Condition(&a, &Applier::RoomOrFailed));
    if (!a.status.ok()) return a.status;
    a.queue.push_back(std::move(a.filling));
    return absl::OkStatus();
  }

  void Run(Applier& a) {
    absl::MutexLock l(&a.mu);
    while (true) {
      a.mu.Await(absl::Condition(&a, &Applier::WorkOrStop));
      if (a.stop) return;  // Whatever is still queued is dropped.
      std::unique_ptr<Batch> batch = std::move(a.queue.front());
      a.queue.pop_front();
      if (!a.status.ok()) continue;  // Discarded after a failure.
      a.applying = true;
      a.mu.Unlock();
      absl::Status s = Apply(*batch);
      batch.reset();
      a.mu.Lock();
      a.applying = false;
      if (!s.ok()) {
        a.status = s;
        failed_.store(true, std::memory_order_release);
      }
    }
  }

  absl::Status Apply(const Batch& batch) {
    google::protobuf::Arena arena;
    for (const Item& item : batch.items) {
      Transition* record =
          google::protobuf::Arena::CreateMessage<Transition>(&arena);
      if (!record->ParseFromArray(item.payload.data(),
                                  static_cast<int>(item.payload.size()))) {
        return absl::DataLossError(absl::StrCat(
            "log record at partition ", item.partition, " LSN ", item.lsn,
            " has a valid checksum but is not a transition"));
      }
      absl::Status s = states_[item.partition]->Apply(*record, item.lsn);
      if (!s.ok()) {
        return absl::DataLossError(
            absl::StrCat("log record at partition ", item.partition, " LSN ",
                         item.lsn, " does not replay: ", s.message()));
      }
    }
    return absl::OkStatus();
  }

  const std::vector<StateMachine*> states_;
  std::vector<std::unique_ptr<Applier>> appliers_;
  std::atomic<bool> failed_{false};
};

// One partition's snapshot as recovery loaded it.
struct LoadedPartition {
  std::unique_ptr<StateMachine> state;
  std::optional<SnapshotMeta> meta;  // Unset: no valid snapshot.
  std::vector<std::string> damaged;  // Names of snapshots that failed.
  std::vector<std::string> notes;
  absl::Status error;  // Not damage: an I/O error.
};

LoadedPartition LoadPartition(const EngineOptions& options, Env* env,
                              const std::string& dir, uint32_t partition,
                              uint32_t partitions,
                              const std::vector<SnapshotFile>& files) {
  LoadedPartition out;
  for (const SnapshotFile& f : files) {  // Newest first.
    std::unique_ptr<StateMachine> candidate =
        NewPartitionState(options, partition, partitions);
    const std::string path = absl::StrCat(dir, "/", f.name);
    absl::StatusOr<SnapshotMeta> meta =
        LoadSnapshot(env, path, candidate.get());
    if (meta.ok() && meta->first_segment() != f.first_segment) {
      meta = absl::DataLossError(absl::StrCat(
          path, ": says its log starts at segment ", meta->first_segment(),
          " but its name says ", f.first_segment));
    }
    if (meta.ok()) {
      out.state = std::move(candidate);
      out.meta = *std::move(meta);
      return out;
    }
    if (!absl::IsDataLoss(meta.status())) {
      out.error = meta.status();
      return out;
    }
    out.damaged.push_back(f.name);
    out.notes.push_back(absl::StrCat(
        "snapshot ", f.name, " is damaged (", meta.status().message(), "); ",
        options.read_only ? "skipped"
                          : absl::StrCat("set aside as ", f.name, ".corrupt")));
  }
  out.state = NewPartitionState(options, partition, partitions);
  return out;
}

}  // namespace

std::unique_ptr<StateMachine> NewPartitionState(const EngineOptions& options,
                                                uint32_t partition,
                                                uint32_t partitions) {
  const int n = static_cast<int>(partitions);
  return std::make_unique<StateMachine>(
      std::max(1, (options.num_shards + n - 1) / n),
      options.max_history_per_task,
      /*track_finished=*/options.retention > absl::ZeroDuration(), partition,
      partitions);
}

absl::StatusOr<uint32_t> DirectoryPartitions(const EngineOptions& options,
                                             Env* env, const std::string& dir) {
  TASKWAL_ASSIGN_OR_RETURN(std::optional<wal::DirectoryMeta> meta,
                           wal::ReadDirectoryMeta(env, dir));
  if (meta.has_value()) {
    if (options.partitions != 0 && options.partitions != meta->partitions) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " was created with ", meta->partitions,
          meta->partitions == 1 ? " partition" : " partitions",
          " and cannot be opened with ", options.partitions,
          " (a data directory keeps its partition count; open it with "
          "partitions = 0 or ",
          meta->partitions, ")"));
    }
    return meta->partitions;
  }
  TASKWAL_ASSIGN_OR_RETURN(wal::DirectoryListing listing,
                           wal::ListDirectory(env, dir));
  if (!listing.segments.empty() || !listing.snapshots.empty()) {
    const bool segment = !listing.segments.empty();
    const std::string path = absl::StrCat(
        dir, "/",
        segment ? listing.segments.front().name : listing.snapshots.front());
    TASKWAL_ASSIGN_OR_RETURN(std::string contents, env->ReadFileToString(path));
    absl::Status header =
        wal::DecodeFileHeader(
            contents, segment ? wal::kSegmentMagic : wal::kSnapshotMagic, path)
            .status();
    if (absl::IsFailedPrecondition(header)) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " cannot be opened by this build: ", header.message()));
    }
    return absl::DataLossError(absl::StrCat(
        dir, "/", wal::kMetaFileName,
        " is missing, but the directory holds log segments or snapshots"));
  }
  const uint32_t n =
      options.partitions != 0 ? options.partitions : kDefaultPartitions;
  if (!options.read_only) {
    TASKWAL_RETURN_IF_ERROR(
        wal::WriteDirectoryMeta(env, dir, wal::DirectoryMeta{n}));
  }
  return n;
}

absl::StatusOr<RecoveredState> RecoverDirectory(const EngineOptions& options,
                                                Env* env,
                                                const std::string& dir) {
  const absl::Time start = absl::Now();
  TASKWAL_ASSIGN_OR_RETURN(const uint32_t n,
                           DirectoryPartitions(options, env, dir));
  RecoveredState out;
  auto path = [&dir](absl::string_view name) {
    return absl::StrCat(dir, "/", name);
  };

  // Each partition's newest valid snapshot, partitions in parallel. Damaged
  // ones are set aside only once recovery has succeeded, so a failed Open
  // changes nothing.
  TASKWAL_ASSIGN_OR_RETURN(std::vector<SnapshotFile> snapshots,
                           ListSnapshots(env, dir));
  std::vector<std::vector<SnapshotFile>> files(n);
  uint64_t newest_segment = 0;  // Named by any snapshot, valid or not.
  for (SnapshotFile& f : snapshots) {
    newest_segment = std::max(newest_segment, f.first_segment);
    if (f.partition < n) files[f.partition].push_back(std::move(f));
  }
  std::vector<LoadedPartition> loaded(n);
  ParallelFor(n, [&](uint32_t p) {
    loaded[p] = LoadPartition(options, env, dir, p, n, files[p]);
  });
  wal::LogRecoveryOptions log_options;
  log_options.partitions = n;
  log_options.after_lsn.assign(n, 0);
  log_options.salvage = options.salvage;
  log_options.read_only = options.read_only;
  log_options.first_seq = UINT64_MAX;
  std::vector<std::string> damaged;
  std::vector<StateMachine*> states;
  for (uint32_t p = 0; p < n; ++p) {
    LoadedPartition& l = loaded[p];
    TASKWAL_RETURN_IF_ERROR(l.error);
    for (std::string& note : l.notes)
      out.report.notes.push_back(std::move(note));
    damaged.insert(damaged.end(), l.damaged.begin(), l.damaged.end());
    if (l.meta.has_value()) {
      log_options.after_lsn[p] = l.meta->lsn();
      out.report.snapshot_lsn += l.meta->lsn();
    }
    log_options.first_seq =
        std::min<uint64_t>(log_options.first_seq,
                           l.meta.has_value() ? l.meta->first_segment() : 1);
    states.push_back(l.state.get());
    out.states.push_back(std::move(l.state));
  }

  // The states are the appliers' until Drain returns.
  ReplayPipeline replay(std::move(states));
  absl::StatusOr<wal::RecoveryResult> recovered = wal::RecoverLog(
      env, dir, log_options,
      [&](uint32_t partition, uint64_t lsn, absl::string_view payload,
          const std::shared_ptr<const std::string>& buffer) {
        return replay.Add(partition, lsn, payload, buffer);
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
      for (int i = 1; env->FileExists(target); ++i) {
        target = absl::StrCat(path(name), ".corrupt.", i);
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

  // Records appended to the last segment are read only if no snapshot
  // says the log starts after it.
  if (!log.segments.empty() && newest_segment <= log.segments.back().seq) {
    out.tail_bytes = log.tail_bytes;
  }
  out.segments = std::move(log.segments);
  out.last_lsn = log.last_lsn;
  // Every snapshot's first segment counts as used, even if that segment was
  // never started: later records must not go into an earlier one.
  out.next_seq = std::max(log.next_seq, newest_segment);
  out.report.records_replayed = log.records_replayed;
  for (uint64_t lsn : log.last_lsn) out.report.last_lsn += lsn;
  out.report.truncated_bytes = log.truncated_bytes;
  for (std::string& note : log.notes)
    out.report.notes.push_back(std::move(note));
  out.report.duration = absl::Now() - start;
  return out;
}

}  // namespace taskwal::engine
