#ifndef TASKWAL_BENCHMARKS_COMPARE_RUNS_H_
#define TASKWAL_BENCHMARKS_COMPARE_RUNS_H_

// The workloads of benchmarks/compare, each run against the systems it
// applies to, adding its figures to a Results. Metric names used here are
// what compare_tables.cc reads back.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "benchmarks/queue.h"
#include "benchmarks/report.h"

namespace taskwal::bench {

inline constexpr char kReference[] = "taskwal-always";

// Rows of the "physical limit" that are not queue systems.
inline constexpr char kRawSync[] = "disk-fdatasync";
inline constexpr char kRawOverwrite[] = "disk-fdatasync-prezeroed";
inline constexpr char kRawGroup[] = "disk-group-commit";
inline constexpr char kRawClients[] = "disk-blocking-clients";
inline constexpr char kRawNoSync[] = "disk-append";

struct CompareConfig {
  std::string scratch;              // the run's own temporary directory
  std::string self_path;            // this binary, for the memory child process
  std::vector<SystemSpec> systems;  // selected queue systems
  bool raw = true;                  // the disk rows
  std::vector<int> threads;
  uint64_t durable_tasks = 20000;  // per run, systems that fsync per call
  uint64_t fast_tasks = 200000;    // per run, the others
  size_t payload_bytes = 128;
  size_t raw_record_bytes = 256;
  absl::Duration raw_time = absl::Seconds(2);
  absl::Duration max_phase_time = absl::Seconds(60);
  std::vector<int> latency_threads;
  uint64_t latency_tasks = 20000;
  std::vector<uint64_t> recovery_transitions;
  std::vector<uint64_t> snapshot_tasks;
  uint64_t memory_tasks = 1000000;
  std::vector<uint64_t> scale_live;
  std::vector<std::string> scale_modes;
  int scale_threads = 16;
  // taskwal on NATS JetStream (systems with SystemSpec::on_nats).
  std::string nats_servers;  // comma-separated URLs; empty: not run
  std::vector<int> jetstream_replicas;
  // Per lifecycle/dedup run of an on_nats system whose calls wait for the
  // servers (the -async one takes fast_tasks).
  uint64_t jetstream_tasks = 5000;
  // Tasks per batched call in the "batch" workload.
  size_t batch_size = 32;
  // Stream sizes (transitions) to time OpenJetStreamEngine's replay after.
  std::vector<uint64_t> jetstream_recovery_transitions;
  // Why the JetStream systems did not run, for the Systems table; empty
  // when they ran.
  std::string jetstream_skipped;
};

// Transitions per lifecycle (submit, claim, complete): one log record each
// in taskwal, and what a raw-log row appends per lifecycle.
inline constexpr int kRecordsPerLifecycle = 3;

// Whether a system's calls wait for durability (an fdatasync, or the NATS
// servers' acknowledgement): the systems of the latency workload.
inline bool WaitsPerCall(const SystemSpec& spec) {
  return spec.durability == Durability::kFsyncPerCall ||
         spec.durability == Durability::kReplicatedMajority;
}

// Whether the latency workload runs for the system.
inline bool MeasuresLatency(const SystemSpec& spec) {
  return WaitsPerCall(spec) || spec.measure_latency;
}

// workload "lifecycle": metric lifecycles_per_s (plus submits_per_s,
// claim_completes_per_s, seconds) per system and thread count; disk rows
// as lifecycles_per_s = records/s / 3.
absl::Status RunLifecycleWorkload(const CompareConfig& config,
                                  Results* results);
// workload "batch": the lifecycle workload with batched calls of
// batch_size tasks (SubmitBatch, ClaimNextBatch, CompleteBatch), for the
// systems that take them (QueueSystem::batches()): lifecycles_per_s,
// cpu_us_per_lifecycle.
absl::Status RunBatchWorkload(const CompareConfig& config, Results* results);
// workload "dedup": metric submits_per_s.
absl::Status RunDedupWorkload(const CompareConfig& config, Results* results);
// workload "latency": metrics {submit,complete,claim}_{p50,p99,p999}_us for
// the systems whose calls wait (WaitsPerCall), and disk-fdatasync
// batch_{p50,...}_us.
absl::Status RunLatencyWorkload(const CompareConfig& config, Results* results);
// workload "recovery": open_s, records_replayed, records_per_s,
// tasks_loaded, tasks_per_s, data_bytes per case label; with nats_servers
// also the replay of JetStream streams (labels starting "JetStream R").
absl::Status RunRecoveryWorkload(const CompareConfig& config, Results* results);
// workload "memory": runs this binary as a child (--internal_child=memory)
// so the figure is not skewed by earlier workloads' heap.
absl::Status RunMemoryWorkload(const CompareConfig& config, Results* results);
// workload "scale": lifecycles_per_s with live=N tasks already present.
absl::Status RunScaleWorkload(const CompareConfig& config, Results* results);

// The child side of RunMemoryWorkload: prints key=value lines.
// compare --internal_child=open: opens dir, prints the timing as
// key=value lines, closes. Returns the process exit code.
int OpenChildMain(const std::string& dir);
// compare --internal_child=open_jetstream: the same for OpenJetStreamEngine
// of `cluster` on `servers`.
int OpenJetStreamChildMain(const std::string& servers,
                           const std::string& cluster);

int MemoryChildMain(const std::string& dir, uint64_t tasks,
                    size_t payload_bytes);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_COMPARE_RUNS_H_
