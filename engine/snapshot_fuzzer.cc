// libFuzzer target for LoadSnapshotContents. Build and run with
// tools/fuzz.sh (clang + ASan/UBSan); not part of `bazel test //...`.
//
// Each input is loaded twice into a fresh StateMachine:
//  1. as raw snapshot contents, into partition 0 of 1;
//  2. as a recipe: a partition p of P (P in [1, 4]) and a snapshot file with
//     a valid header and valid record CRCs are built from the input (meta,
//     task and end records whose fields, partitions and ids come from the
//     input, mostly those of p, or raw records of any type), so that
//     parsing, the partition checks, RestoreTask and the structural checks
//     are reached; raw bytes rarely carry valid CRCs.
// Loading must never crash, whatever the bytes; any error is fine. When it
// succeeds, the restored state must be self-consistent.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/partitioning.h"
#include "engine/snapshot.h"
#include "engine/snapshot.pb.h"
#include "engine/state_machine.h"
#include "taskwal/task.pb.h"
#include "wal/format.h"
#include "wal/log_writer.h"

namespace taskwal::engine {
namespace {

#define FUZZ_CHECK(condition)                                               \
  do {                                                                      \
    if (!(condition)) {                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #condition);                                             \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

constexpr int kShards = 3;
constexpr size_t kMaxHistory = 4;

void Load(absl::string_view contents, uint32_t partition = 0,
          uint32_t partitions = 1) {
  StateMachine state(kShards, kMaxHistory, /*track_finished=*/true, partition,
                     partitions);
  const absl::StatusOr<SnapshotMeta> meta =
      LoadSnapshotContents(contents, "fuzz", &state);
  if (!meta.ok()) {
    // Damage of any kind, a snapshot of another partition included, is
    // kDataLoss; a readable header of another format version is
    // kFailedPrecondition.
    const absl::Status& s = meta.status();
    FUZZ_CHECK(absl::IsDataLoss(s) || absl::IsFailedPrecondition(s));
    return;
  }
  FUZZ_CHECK(meta->partition() == partition);
  FUZZ_CHECK(meta->partitions() == partitions);
  // Every restored task is counted under its status, and the id counters
  // are past every restored id.
  uint64_t counted = 0;
  for (int status = 0; status < 6; ++status) {
    counted += state.counters().by_status[status];
  }
  FUZZ_CHECK(state.counters().by_status[0] == 0);
  FUZZ_CHECK(counted == state.table().size());
  // And under its type, where no type is listed without tasks.
  uint64_t by_type = 0;
  for (const auto& [type, counts] : state.counters().by_type) {
    FUZZ_CHECK(counts.tasks > 0);
    by_type += counts.tasks;
  }
  FUZZ_CHECK(by_type == counted);
  std::vector<std::pair<uint64_t, std::string>> keys;
  state.table().ForEach([&](const TaskEntry& e) {
    // Every restored task is the partition's.
    FUZZ_CHECK(PartitionOfId(e.id(), partitions) == partition);
    FUZZ_CHECK(e.id() >= FirstTaskId(partition, partitions));
    // (The partition's last ids have no successor.)
    FUZZ_CHECK(e.id() < state.next_task_id() ||
               e.id() > UINT64_MAX - partitions);
    keys.emplace_back(e.id(), std::string(e.idempotency_key()));
  });
  // Outside ForEach, which holds a shard lock that LookupKey may need.
  for (const auto& [id, key] : keys) {
    FUZZ_CHECK(state.table().LookupKey(key) == id);
  }
}

// Short ASCII strings (proto3 string fields must be UTF-8), sometimes empty.
std::string SmallString(FuzzedDataProvider& fdp, char prefix) {
  const int n = fdp.ConsumeIntegralInRange<int>(-1, 5);
  return n < 0 ? std::string() : std::string(1, prefix) + std::to_string(n);
}

enum class RecordKind {
  kMeta,
  kTask,
  kEnd,
  kRaw,
  kMaxValue = kRaw,  // for FuzzedDataProvider::ConsumeEnum
};

void FuzzBuiltSnapshot(FuzzedDataProvider& fdp) {
  const uint32_t partitions = fdp.ConsumeIntegralInRange<uint32_t>(1, 4);
  const uint32_t partition =
      fdp.ConsumeIntegralInRange<uint32_t>(0, partitions - 1);
  // Mostly the partition's own; sometimes another, or out of range.
  auto some_partition = [&](uint32_t own) {
    return fdp.ConsumeProbability<float>() < 0.9f
               ? own
               : fdp.ConsumeIntegralInRange<uint32_t>(0, 5);
  };
  const uint64_t lsn = fdp.ConsumeIntegralInRange<uint64_t>(0, 1000);
  std::string contents = wal::EncodeFileHeader(wal::kSnapshotMagic, lsn);
  uint64_t tasks = 0;
  const int count = fdp.ConsumeIntegralInRange<int>(0, 12);
  for (int i = 0; i < count; ++i) {
    std::string payload;
    wal::RecordType type = wal::RecordType::kSnapshotTask;
    switch (fdp.ConsumeEnum<RecordKind>()) {
      case RecordKind::kMeta: {
        SnapshotMeta meta;
        meta.set_lsn(fdp.ConsumeBool() ? lsn : fdp.ConsumeIntegral<uint64_t>());
        meta.set_next_task_id(fdp.ConsumeIntegral<uint64_t>());
        meta.set_next_claim_token(fdp.ConsumeIntegral<uint64_t>());
        meta.set_submitted(fdp.ConsumeIntegral<uint64_t>());
        meta.set_transitions(fdp.ConsumeIntegral<uint64_t>());
        meta.set_partition(some_partition(partition));
        meta.set_partitions(some_partition(partitions));
        meta.set_first_segment(fdp.ConsumeIntegral<uint64_t>());
        type = wal::RecordType::kSnapshotMeta;
        payload = meta.SerializeAsString();
        break;
      }
      case RecordKind::kTask: {
        SnapshotTask record;
        Task* task = record.mutable_task();
        // Ids of every partition near the start, or the last ones, whose
        // successors overflow.
        task->set_id(fdp.ConsumeBool()
                         ? fdp.ConsumeIntegralInRange<uint64_t>(0, 40)
                         : UINT64_MAX -
                               fdp.ConsumeIntegralInRange<uint64_t>(0, 8));
        task->set_idempotency_key(SmallString(fdp, 'k'));
        task->set_status(
            static_cast<TaskStatus>(fdp.ConsumeIntegralInRange<int>(-1, 7)));
        task->set_max_attempts(fdp.ConsumeIntegralInRange<uint32_t>(0, 3));
        task->set_attempts(fdp.ConsumeIntegralInRange<uint32_t>(0, 3));
        task->set_claim_token(fdp.ConsumeIntegral<uint64_t>());
        task->set_not_before_micros(fdp.ConsumeIntegral<int64_t>());
        task->set_lease_deadline_micros(fdp.ConsumeIntegral<int64_t>());
        task->set_finished_micros(fdp.ConsumeIntegral<int64_t>());
        task->set_type(SmallString(fdp, 't'));
        task->set_priority(fdp.ConsumeIntegral<int32_t>());
        const int history = fdp.ConsumeIntegralInRange<int>(0, 6);
        for (int h = 0; h < history; ++h) {
          if (fdp.ConsumeBool()) {
            HistoryEntry entry;
            entry.set_time_micros(fdp.ConsumeIntegral<int64_t>());
            entry.set_worker_id(SmallString(fdp, 'w'));
            *record.add_history() = entry.SerializeAsString();
          } else {
            *record.add_history() = SmallString(fdp, 'h');  // Maybe junk.
          }
        }
        record.set_last_lsn(fdp.ConsumeIntegral<uint64_t>());
        payload = record.SerializeAsString();
        ++tasks;
        break;
      }
      case RecordKind::kEnd: {
        SnapshotEnd end;
        end.set_task_count(fdp.ConsumeBool() ? tasks
                                             : fdp.ConsumeIntegral<uint64_t>());
        type = wal::RecordType::kSnapshotEnd;
        payload = end.SerializeAsString();
        break;
      }
      case RecordKind::kRaw:
        type = static_cast<wal::RecordType>(fdp.ConsumeIntegralInRange<uint8_t>(
            wal::kMinRecordType, wal::kMaxRecordType));
        payload = fdp.ConsumeRandomLengthString(64);
        break;
    }
    wal::AppendRecord(type, some_partition(partition), lsn, payload, &contents);
  }
  contents += fdp.ConsumeRemainingBytesAsString();
  Load(contents, partition, partitions);
}

}  // namespace
}  // namespace taskwal::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  taskwal::engine::Load(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  FuzzedDataProvider fdp(data, size);
  taskwal::engine::FuzzBuiltSnapshot(fdp);
  return 0;
}
