#ifndef TASKWAL_BENCHMARKS_WORKLOADS_H_
#define TASKWAL_BENCHMARKS_WORKLOADS_H_

// The client workloads compare runs against every QueueSystem: the same
// code drives taskwal, SQLite and RocksDB, with the same threads, keys and
// payloads.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmarks/bench_util.h"
#include "benchmarks/queue.h"

namespace taskwal::bench {

struct LifecycleOptions {
  int threads = 1;
  uint64_t tasks = 1000;
  size_t payload_bytes = 128;
  std::string key_prefix = "task-";
  int32_t priority = 0;
  // Each phase (submit, drain) stops after this long; the rate is then
  // computed from what was done (and the result says capped).
  absl::Duration max_phase_time = absl::Minutes(5);
  bool record_latency = false;
  // Phase 2 stops after this many claims in all (0: when ClaimNext finds
  // nothing). Lets a run leave an older backlog of lower priority alone.
  uint64_t max_claims = 0;
  // 0: one call per submit, claim and complete. N: batched calls
  // (QueueClient::SubmitBatch, ClaimNextBatch, CompleteBatch) of up to N
  // tasks; the system must take them (QueueSystem::batches()). Latencies
  // are then per call (a batch).
  size_t batch = 0;
};

struct LifecycleResult {
  uint64_t submitted = 0;
  uint64_t completed = 0;
  double submit_seconds = 0;
  double drain_seconds = 0;
  bool capped = false;
  // Tasks fully processed per second, counting submit, claim and complete:
  // 1 / (submit time per task + claim-and-complete time per task). Equals
  // tasks / (submit time + drain time) when nothing was capped.
  double lifecycles_per_second = 0;
  double submits_per_second = 0;
  double claim_completes_per_second = 0;
  // CPU time of the whole process (user + system, every thread: clients,
  // the system's own threads, the kernel's work for its syscalls) during
  // both phases. Less sensitive to a noisy disk than the rates; with C
  // cores, C / cpu_seconds_per_lifecycle bounds the rate.
  double cpu_seconds = 0;
  // Minor page faults of the process during both phases (fresh heap pages).
  uint64_t minor_faults = 0;
  // Per call, all threads together (only with record_latency).
  LatencySummary submit_latency;
  LatencySummary claim_latency;
  LatencySummary complete_latency;
};

// Phase 1: `threads` clients submit `tasks` tasks with unique keys
// (<key_prefix><i>) and payload_bytes-byte payloads, split evenly. Phase 2,
// once every submit returned: the same clients ClaimNext + Complete until
// ClaimNext finds nothing (kNotFound) or max_claims claims were made. Client
// setup (connections) is not timed. The first unexpected error stops every
// client and is returned.
absl::StatusOr<LifecycleResult> RunLifecycle(QueueSystem* system,
                                             const LifecycleOptions& options);

struct DedupResult {
  uint64_t submits = 0;
  uint64_t deduplicated = 0;
  double seconds = 0;
  bool capped = false;
  double submits_per_second = 0;
};

// `submits` Submit calls by `threads` clients where every second call
// repeats the key (and payload) of the call before it in the same client:
// half of the calls create a task, half are answered with the existing one.
absl::StatusOr<DedupResult> RunDedup(QueueSystem* system, int threads,
                                     uint64_t submits, size_t payload_bytes,
                                     absl::Duration max_time);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_WORKLOADS_H_
