#include "engine/snapshot.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "engine/partitioning.h"
#include "engine/state_machine.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

namespace {

constexpr absl::string_view kPrefix = "snapshot-";
constexpr absl::string_view kSuffix = ".snap";
// Tasks read per shard-lock hold, and bytes buffered per file write.
constexpr size_t kChunkTasks = 256;
constexpr size_t kWriteBytes = 1 << 20;

void AppendMessage(wal::RecordType type, uint32_t partition, uint64_t lsn,
                   const google::protobuf::MessageLite& message,
                   std::string* dst) {
  const size_t size = message.ByteSizeLong();
  const size_t offset = dst->size();
  char* payload = wal::AppendRecordHeader(type, partition, lsn, size, dst);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload));
  wal::SealRecord(dst, offset);
}

}  // namespace

std::string SnapshotFileName(uint64_t first_segment, uint32_t partition) {
  return absl::StrFormat("%s%020u-%04u%s", kPrefix, first_segment, partition,
                         kSuffix);
}

bool ParseSnapshotFileName(absl::string_view name, uint64_t* first_segment,
                           uint32_t* partition) {
  if (!absl::ConsumePrefix(&name, kPrefix) ||
      !absl::ConsumeSuffix(&name, kSuffix) || name.size() != 25 ||
      name[20] != '-' ||
      !std::all_of(name.begin(), name.begin() + 20, absl::ascii_isdigit) ||
      !std::all_of(name.begin() + 21, name.end(), absl::ascii_isdigit)) {
    return false;
  }
  return absl::SimpleAtoi(name.substr(0, 20), first_segment) &&
         absl::SimpleAtoi(name.substr(21), partition);
}

absl::StatusOr<std::vector<SnapshotFile>> ListSnapshots(
    Env* env, const std::string& dir) {
  TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                           env->GetChildren(dir));
  std::vector<SnapshotFile> snapshots;
  for (const std::string& name : children) {
    SnapshotFile s;
    if (ParseSnapshotFileName(name, &s.first_segment, &s.partition)) {
      s.name = name;
      snapshots.push_back(std::move(s));
    }
  }
  std::sort(snapshots.begin(), snapshots.end(),
            [](const SnapshotFile& a, const SnapshotFile& b) {
              return a.first_segment != b.first_segment
                         ? a.first_segment > b.first_segment
                         : a.partition < b.partition;
            });
  return snapshots;
}

absl::Status WriteSnapshot(Env* env, const std::string& dir,
                           const SnapshotMeta& meta, TaskTable* table) {
  size_t next_shard = 0;
  // Every shard's copy-on-write view must end, whatever happens.
  absl::Cleanup end_views = [&] {
    for (; next_shard < table->num_shards(); ++next_shard) {
      table->EndSnapshot(next_shard);
    }
  };
  const std::string final_path = absl::StrCat(
      dir, "/", SnapshotFileName(meta.first_segment(), meta.partition()));
  const std::string tmp_path = final_path + ".tmp";
  TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                           env->NewWritableFile(tmp_path));
  absl::Cleanup remove_tmp = [&] {
    file->Close().IgnoreError();
    env->RemoveFile(tmp_path).IgnoreError();
  };

  std::string buffer = wal::EncodeFileHeader(wal::kSnapshotMagic, meta.lsn());
  const uint32_t partition = meta.partition();
  AppendMessage(wal::RecordType::kSnapshotMeta, partition, meta.lsn(), meta,
                &buffer);
  uint64_t count = 0;
  SnapshotTask record;
  for (; next_shard < table->num_shards(); ++next_shard) {
    const std::vector<uint64_t> ids = table->SnapshotIds(next_shard);
    for (size_t begin = 0; begin < ids.size(); begin += kChunkTasks) {
      const size_t end = std::min(ids.size(), begin + kChunkTasks);
      table->ReadSnapshot(next_shard, ids, begin, end, [&](const TaskEntry& e) {
        e.ToTask(record.mutable_task());
        record.clear_history();
        e.ForEachSerializedHistory([&](absl::string_view entry) {
          record.add_history()->assign(entry.data(), entry.size());
        });
        record.set_last_lsn(e.state.last_lsn);
        AppendMessage(wal::RecordType::kSnapshotTask, partition, meta.lsn(),
                      record, &buffer);
        ++count;
      });
      if (buffer.size() >= kWriteBytes) {
        TASKWAL_RETURN_IF_ERROR(file->Append(buffer));
        buffer.clear();
      }
    }
    table->EndSnapshot(next_shard);
  }
  SnapshotEnd end;
  end.set_task_count(count);
  AppendMessage(wal::RecordType::kSnapshotEnd, partition, meta.lsn(), end,
                &buffer);
  TASKWAL_RETURN_IF_ERROR(file->Append(buffer));
  TASKWAL_RETURN_IF_ERROR(file->Sync());
  TASKWAL_RETURN_IF_ERROR(file->Close());
  TASKWAL_RETURN_IF_ERROR(env->RenameFile(tmp_path, final_path));
  std::move(remove_tmp).Cancel();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TaskEntry>> TaskEntryFromSnapshot(
    const SnapshotTask& record) {
  if (!ValidDependencies(record.task())) {
    return absl::DataLossError(absl::StrCat(
        "task ", record.task().id(), ": its dependencies are not valid"));
  }
  std::unique_ptr<TaskEntry> entry =
      TaskEntry::Create(record.task(), record.last_lsn());
  size_t bad = 0;
  if (!entry->AssignSerializedHistory(record.history(), &bad)) {
    return absl::DataLossError(absl::StrCat(
        "task ", record.task().id(), ": a history entry (", bad + 1, " of ",
        record.history_size(), ") does not parse"));
  }
  return entry;
}

namespace {

// Snapshot task records parsed on a second thread, a few batches ahead of
// the restore, which stays on the caller's thread (it fills the scheduler
// and checks ids and keys for uniqueness, in file order).
class ParsePipeline {
 public:
  struct Batch {
    std::vector<std::unique_ptr<TaskEntry>> entries;
    std::vector<uint64_t> ends;  // File offset after each entry's record.
  };

  // Takes over reader from its current position: parses task records until
  // the end record, then checks the end record and that nothing follows.
  // Records must carry the snapshot's partition and LSN.
  ParsePipeline(wal::LogReader* reader, std::string path, uint32_t partition,
                uint64_t lsn)
      : reader_(reader),
        path_(std::move(path)),
        partition_(partition),
        lsn_(lsn) {}

  // Starts the parse thread; kResourceExhausted if there is none to have.
  absl::Status Start() {
    try {
      thread_ = std::thread([this] { Run(); });
    } catch (const std::system_error& e) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot start a thread to load ", path_, ": ", e.what()));
    }
    return absl::OkStatus();
  }
  ~ParsePipeline() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  // The next batch, or nullopt when the parser is done (see status()).
  std::optional<Batch> Next() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &ParsePipeline::ReadyOrDone));
    if (queue_.empty()) return std::nullopt;
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    return batch;
  }

  // After Next() returned nullopt: OK if the records up to and including
  // the end record were all valid.
  absl::Status status() {
    absl::MutexLock l(&mu_);
    return status_;
  }

 private:
  static constexpr size_t kBatchTasks = 2048;
  static constexpr size_t kMaxQueued = 8;

  bool ReadyOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || done_;
  }
  bool RoomOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.size() < kMaxQueued || stop_;
  }

  void Run() {
    absl::Status s = Parse();
    absl::MutexLock l(&mu_);
    status_ = s;
    done_ = true;
  }

  // False if the consumer stopped listening.
  bool Push(Batch* batch) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &ParsePipeline::RoomOrStop));
    if (stop_) return false;
    queue_.push_back(std::move(*batch));
    *batch = Batch();
    return true;
  }

  absl::Status Parse() {
    auto damage = [&](absl::string_view what) {
      return absl::DataLossError(
          absl::StrCat(path_, " offset ", reader_->valid_end(), ": ", what));
    };
    wal::LogReader::Record record;
    SnapshotTask task;  // Reused: parsing into it recycles its allocations.
    Batch batch;
    uint64_t count = 0;
    while (true) {
      TASKWAL_ASSIGN_OR_RETURN(bool more, reader_->Read(&record));
      if (!more) return damage("snapshot ends without an end record");
      if (record.partition != partition_ || record.lsn != lsn_) {
        return damage("record of another partition or LSN");
      }
      if (record.type == wal::RecordType::kSnapshotEnd) break;
      if (record.type != wal::RecordType::kSnapshotTask ||
          !task.ParseFromArray(record.payload.data(),
                               static_cast<int>(record.payload.size()))) {
        return damage("invalid snapshot task record");
      }
      absl::StatusOr<std::unique_ptr<TaskEntry>> entry =
          TaskEntryFromSnapshot(task);
      if (!entry.ok()) return damage(entry.status().message());
      batch.entries.push_back(*std::move(entry));
      batch.ends.push_back(reader_->valid_end());
      ++count;
      if (batch.entries.size() == kBatchTasks && !Push(&batch)) {
        return absl::CancelledError("restore stopped");
      }
    }
    if (!batch.entries.empty() && !Push(&batch)) {
      return absl::CancelledError("restore stopped");
    }
    SnapshotEnd end;
    if (!end.ParseFromArray(record.payload.data(),
                            static_cast<int>(record.payload.size())) ||
        end.task_count() != count) {
      return damage("task count in the end record does not match");
    }
    TASKWAL_ASSIGN_OR_RETURN(bool more, reader_->Read(&record));
    if (more) return damage("records after the end record");
    return absl::OkStatus();
  }

  wal::LogReader* const reader_;
  const std::string path_;
  const uint32_t partition_;
  const uint64_t lsn_;
  absl::Mutex mu_;
  std::deque<Batch> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace

absl::StatusOr<SnapshotMeta> LoadSnapshotContents(absl::string_view contents,
                                                  const std::string& path,
                                                  StateMachine* state) {
  TASKWAL_ASSIGN_OR_RETURN(
      uint64_t header_lsn,
      wal::DecodeFileHeader(contents, wal::kSnapshotMagic, path));
  wal::LogReader reader(contents, path);
  wal::LogReader::Record record;
  TASKWAL_ASSIGN_OR_RETURN(bool more, reader.Read(&record));
  SnapshotMeta meta;
  if (!more || record.type != wal::RecordType::kSnapshotMeta ||
      !meta.ParseFromArray(record.payload.data(),
                           static_cast<int>(record.payload.size())) ||
      meta.lsn() != header_lsn) {
    return absl::DataLossError(
        absl::StrCat(path, " offset ", reader.valid_end(),
                     ": missing or invalid snapshot meta record"));
  }
  if (meta.partition() != state->partition() ||
      meta.partitions() != state->partitions() ||
      record.partition != meta.partition()) {
    return absl::DataLossError(absl::StrCat(
        path, ": holds partition ", meta.partition(), " of ", meta.partitions(),
        ", not partition ", state->partition(), " of ", state->partitions()));
  }
  // The ids and tokens the partition hands out next must be its own, or
  // every later submit (claim) would be refused.
  for (uint64_t next : {meta.next_task_id(), meta.next_claim_token()}) {
    if (next < FirstTaskId(meta.partition(), meta.partitions()) ||
        PartitionOfId(next, meta.partitions()) != meta.partition()) {
      return absl::DataLossError(
          absl::StrCat(path, ": meta names next id or claim token ", next,
                       ", which is not of partition ", meta.partition()));
    }
  }
  for (const Schedule& schedule : meta.schedules()) {
    if (schedule.name().empty() ||
        PartitionOfKey(schedule.name(), meta.partitions()) !=
            meta.partition()) {
      return absl::DataLossError(absl::StrCat(
          path, ": meta holds a schedule named \"", schedule.name(),
          "\", which is not of partition ", meta.partition()));
    }
  }
  ParsePipeline pipeline(&reader, path, meta.partition(), meta.lsn());
  TASKWAL_RETURN_IF_ERROR(pipeline.Start());
  while (std::optional<ParsePipeline::Batch> batch = pipeline.Next()) {
    for (size_t i = 0; i < batch->entries.size(); ++i) {
      absl::Status s = state->RestoreTask(std::move(batch->entries[i]));
      if (!s.ok()) {
        return absl::DataLossError(
            absl::StrCat(path, " offset ", batch->ends[i], ": ", s.message()));
      }
    }
  }
  TASKWAL_RETURN_IF_ERROR(pipeline.status());
  state->RestoreMeta(meta);
  return meta;
}

absl::StatusOr<SnapshotMeta> LoadSnapshot(Env* env, const std::string& path,
                                          StateMachine* state) {
  TASKWAL_ASSIGN_OR_RETURN(std::string contents, env->ReadFileToString(path));
  return LoadSnapshotContents(contents, path, state);
}

}  // namespace taskwal::engine
