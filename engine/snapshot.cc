#include "engine/snapshot.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

void AppendMessage(wal::RecordType type, uint64_t lsn,
                   const google::protobuf::MessageLite& message,
                   std::string* dst) {
  const size_t size = message.ByteSizeLong();
  const size_t offset = dst->size();
  char* payload = wal::AppendRecordHeader(type, lsn, size, dst);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload));
  wal::SealRecord(dst, offset);
}

}  // namespace

std::string SnapshotFileName(uint64_t lsn) {
  return absl::StrFormat("%s%020u%s", kPrefix, lsn, kSuffix);
}

bool ParseSnapshotFileName(absl::string_view name, uint64_t* lsn) {
  if (!absl::ConsumePrefix(&name, kPrefix) ||
      !absl::ConsumeSuffix(&name, kSuffix) || name.size() != 20 ||
      !std::all_of(name.begin(), name.end(), absl::ascii_isdigit)) {
    return false;
  }
  return absl::SimpleAtoi(name, lsn);
}

absl::StatusOr<std::vector<SnapshotFile>> ListSnapshots(
    Env* env, const std::string& dir) {
  TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> children,
                           env->GetChildren(dir));
  std::vector<SnapshotFile> snapshots;
  for (const std::string& name : children) {
    SnapshotFile s;
    if (ParseSnapshotFileName(name, &s.lsn)) {
      s.name = name;
      snapshots.push_back(std::move(s));
    }
  }
  std::sort(snapshots.begin(), snapshots.end(),
            [](const SnapshotFile& a, const SnapshotFile& b) {
              return a.lsn > b.lsn;
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
  const std::string final_path =
      absl::StrCat(dir, "/", SnapshotFileName(meta.lsn()));
  const std::string tmp_path = final_path + ".tmp";
  TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                           env->NewWritableFile(tmp_path));
  absl::Cleanup remove_tmp = [&] {
    file->Close().IgnoreError();
    env->RemoveFile(tmp_path).IgnoreError();
  };

  std::string buffer = wal::EncodeFileHeader(wal::kSnapshotMagic, meta.lsn());
  AppendMessage(wal::RecordType::kSnapshotMeta, meta.lsn(), meta, &buffer);
  uint64_t count = 0;
  SnapshotTask record;
  for (; next_shard < table->num_shards(); ++next_shard) {
    const std::vector<uint64_t> ids = table->SnapshotIds(next_shard);
    for (size_t begin = 0; begin < ids.size(); begin += kChunkTasks) {
      const size_t end = std::min(ids.size(), begin + kChunkTasks);
      table->ReadSnapshot(next_shard, ids, begin, end,
                          [&](const TaskEntry& e) {
                            *record.mutable_task() = e.task;
                            const std::vector<HistoryEntry> history =
                                e.history.Entries();
                            record.mutable_history()->Assign(history.begin(),
                                                             history.end());
                            record.set_last_lsn(e.last_lsn);
                            AppendMessage(wal::RecordType::kSnapshotTask,
                                          meta.lsn(), record, &buffer);
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
  AppendMessage(wal::RecordType::kSnapshotEnd, meta.lsn(), end, &buffer);
  TASKWAL_RETURN_IF_ERROR(file->Append(buffer));
  TASKWAL_RETURN_IF_ERROR(file->Sync());
  TASKWAL_RETURN_IF_ERROR(file->Close());
  TASKWAL_RETURN_IF_ERROR(env->RenameFile(tmp_path, final_path));
  std::move(remove_tmp).Cancel();
  absl::Status synced = env->SyncDir(dir);
  if (!synced.ok()) {
    // Whether the rename is durable is unknown: keep the promise that a
    // failed write leaves no snapshot under the final name.
    env->RemoveFile(final_path).IgnoreError();
  }
  return synced;
}

std::unique_ptr<TaskEntry> TaskEntryFromSnapshot(SnapshotTask record) {
  auto entry = std::make_unique<TaskEntry>();
  entry->task = std::move(*record.mutable_task());
  for (const HistoryEntry& h : record.history()) {
    entry->history.Append(h, std::numeric_limits<size_t>::max());
  }
  entry->last_lsn = record.last_lsn();
  return entry;
}

absl::Status LoadSnapshotContents(absl::string_view contents,
                                  const std::string& path,
                                  StateMachine* state) {
  TASKWAL_ASSIGN_OR_RETURN(
      uint64_t header_lsn,
      wal::DecodeFileHeader(contents, wal::kSnapshotMagic, path));
  wal::LogReader reader(contents, path);
  wal::LogReader::Record record;
  auto damage = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat(path, " offset ", reader.valid_end(), ": ", what));
  };
  auto next = [&]() -> absl::StatusOr<bool> { return reader.Read(&record); };

  TASKWAL_ASSIGN_OR_RETURN(bool more, next());
  SnapshotMeta meta;
  if (!more || record.type != wal::RecordType::kSnapshotMeta ||
      !meta.ParseFromArray(record.payload.data(),
                           static_cast<int>(record.payload.size())) ||
      meta.lsn() != header_lsn) {
    return damage("missing or invalid snapshot meta record");
  }
  uint64_t count = 0;
  while (true) {
    TASKWAL_ASSIGN_OR_RETURN(more, next());
    if (!more) return damage("snapshot ends without an end record");
    if (record.type == wal::RecordType::kSnapshotEnd) break;
    SnapshotTask task;
    if (record.type != wal::RecordType::kSnapshotTask ||
        !task.ParseFromArray(record.payload.data(),
                             static_cast<int>(record.payload.size()))) {
      return damage("invalid snapshot task record");
    }
    absl::Status s = state->RestoreTask(TaskEntryFromSnapshot(std::move(task)));
    if (!s.ok()) return damage(s.message());
    ++count;
  }
  SnapshotEnd end;
  if (!end.ParseFromArray(record.payload.data(),
                          static_cast<int>(record.payload.size())) ||
      end.task_count() != count) {
    return damage("task count in the end record does not match");
  }
  TASKWAL_ASSIGN_OR_RETURN(more, next());
  if (more) return damage("records after the end record");
  state->RestoreMeta(meta);
  return absl::OkStatus();
}

absl::Status LoadSnapshot(Env* env, const std::string& path,
                          StateMachine* state) {
  TASKWAL_ASSIGN_OR_RETURN(std::string contents, env->ReadFileToString(path));
  return LoadSnapshotContents(contents, path, state);
}

}  // namespace taskwal::engine
