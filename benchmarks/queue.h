#ifndef TASKWAL_BENCHMARKS_QUEUE_H_
#define TASKWAL_BENCHMARKS_QUEUE_H_

// The task-queue operations that benchmarks/compare runs against every
// system: idempotent Submit, ClaimNext, Complete. Each system (taskwal in a
// sync mode, an SQLite queue, a RocksDB task store) implements them as
// that system is normally used, with the same durability promise per call
// as its name says.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace taskwal::bench {

struct NewTask {
  absl::string_view key;
  absl::string_view type;
  absl::string_view payload;
  int32_t priority = 0;
};

struct ClaimedRef {
  uint64_t id = 0;
  uint64_t token = 0;  // What Complete must present.
};

// One client's connection to a system. Used by one thread at a time; each
// client thread has its own (SQLite: its own connection).
class QueueClient {
 public:
  virtual ~QueueClient() = default;
  // OK: the task exists once the call returns, as durable as the system's
  // mode promises; *deduplicated tells whether the key named a task
  // already.
  virtual absl::Status Submit(const NewTask& task, bool* deduplicated) = 0;
  // The ready task with the highest priority, oldest first. kNotFound: none.
  virtual absl::StatusOr<ClaimedRef> ClaimNext() = 0;
  // Completes a claim this client holds.
  virtual absl::Status Complete(const ClaimedRef& claim,
                                absl::string_view result) = 0;

  // Batched calls, for the systems whose QueueSystem::batches() says so
  // (the others answer kUnimplemented). Submits new tasks (unique keys)
  // all at once.
  virtual absl::Status SubmitBatch(absl::Span<const NewTask> tasks);
  // Up to max ready tasks into *claims (cleared first). kNotFound: none.
  virtual absl::Status ClaimNextBatch(size_t max,
                                      std::vector<ClaimedRef>* claims);
  // Completes claims this client holds; any refused is an error.
  virtual absl::Status CompleteBatch(absl::Span<const ClaimedRef> claims,
                                     absl::string_view result);
};

// A system under test with one data directory. Safe for concurrent use by
// its clients.
class QueueSystem {
 public:
  virtual ~QueueSystem() = default;
  // client_index is unique per thread (worker ids derive from it).
  virtual absl::StatusOr<std::unique_ptr<QueueClient>> NewClient(
      int client_index) = 0;
  // Flushes and closes; clients must be gone.
  virtual absl::Status Close() = 0;
  // Counters worth printing with a run (fsyncs, batching), or empty.
  virtual std::string Diagnostics() { return ""; }
  // Whether its clients take batched calls (QueueClient::SubmitBatch...).
  virtual bool batches() const { return false; }
};

// How a system's calls relate to the disk, for the tables.
enum class Durability {
  kFsyncPerCall,  // the call returns after an fdatasync covering it
  kOsPerCall,     // the call returns after its write reached the OS
  kBuffered,      // the call may return with the write still in memory
  // The call returns once a majority of the NATS servers holding the
  // stream have the record, in their memory: NATS 2.9 fsyncs its store
  // every 60 s, so this survives a server's crash (R3), not a power loss of
  // the whole NATS cluster within that minute.
  kReplicatedMajority,
};

struct SystemSpec {
  std::string name;         // as in the tables: "taskwal-always", ...
  std::string description;  // one line for the legend
  Durability durability;
  // Opens the system in `dir` (created by the caller, empty).
  std::function<absl::StatusOr<std::unique_ptr<QueueSystem>>(
      const std::string& dir)>
      open;
  // The system keeps its data on NATS servers, not in `dir`: runs use
  // CompareConfig::jetstream_tasks.
  bool on_nats = false;
  // Also run the latency workload although calls do not wait for a sync
  // (taskwald: the round trip over HTTP is the latency of interest).
  bool measure_latency = false;
};

// taskwal in kAlways, kInterval, kNone (benchmarks/taskwal_queue.cc).
std::vector<SystemSpec> TaskwalSystems();
// SQLite queue, synchronous=FULL and NORMAL (benchmarks/sqlite_queue.cc).
std::vector<SystemSpec> SqliteSystems();
// RocksDB task store, sync=true, sync=false, and WAL buffered in memory
// (benchmarks/rocksdb_queue.cc).
std::vector<SystemSpec> RocksdbSystems();
// taskwal on NATS JetStream: benchmarks/jetstream_queue.h.

inline absl::Status QueueClient::SubmitBatch(absl::Span<const NewTask>) {
  return absl::UnimplementedError("no batched calls");
}
inline absl::Status QueueClient::ClaimNextBatch(size_t,
                                                std::vector<ClaimedRef>*) {
  return absl::UnimplementedError("no batched calls");
}
inline absl::Status QueueClient::CompleteBatch(absl::Span<const ClaimedRef>,
                                               absl::string_view) {
  return absl::UnimplementedError("no batched calls");
}

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_QUEUE_H_
