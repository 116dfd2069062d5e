#ifndef TASKWAL_BENCHMARKS_JETSTREAM_QUEUE_H_
#define TASKWAL_BENCHMARKS_JETSTREAM_QUEUE_H_

// taskwal on NATS JetStream (api/jetstream.h) as benchmark systems
// (benchmarks/queue.h), served by the same TaskwalQueue as the local modes.
//
// Every open() gets a cluster name of its own (UniqueClusterName), so no run
// replays another's stream, and Close deletes the cluster's streams
// (DeleteJetStreamCluster) so that the servers' stores do not fill up.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "benchmarks/queue.h"
#include "taskwal/engine.h"

namespace taskwal::bench {

// For each count R in `replicas`: taskwal-jetstream-r<R> (SyncMode::kAlways:
// a call returns once its record is acknowledged by the stream); for the
// largest R also taskwal-jetstream-r<R>-async (kNone: acknowledged before
// the stream has it) and taskwal-jetstream-r<R>-p1 (one partition, the
// issue's "through one partition" figure). `servers`: comma-separated
// nats:// URLs (empty: the specs serve for their names; open() fails with
// kInvalidArgument). Every R must be 1 to 5 and at most the servers' count,
// else open() fails.
std::vector<SystemSpec> JetStreamSystems(const std::string& servers,
                                         const std::vector<int>& replicas);

// A cluster name no earlier run used: "cmp" + this process id, the time in
// microseconds and a counter, at most 32 of [A-Za-z0-9_-]. Thread-safe.
std::string UniqueClusterName();

// Deletes the streams of `cluster` (TASKWAL_<cluster>,
// TASKWAL_<cluster>_SNAP and the lease bucket's KV_TASKWAL_<cluster>_LEASE);
// those that do not exist are fine. kUnavailable: no server answered;
// kInternal: a deletion failed.
absl::Status DeleteJetStreamCluster(const std::string& servers,
                                    const std::string& cluster);

// OpenJetStreamEngine of `cluster` on `servers` with `options` (data_dir
// must be empty), creating its stream with `replicas` copies if there is
// none. Errors as OpenJetStreamEngine's.
absl::StatusOr<std::unique_ptr<Engine>> OpenBenchJetStreamEngine(
    const std::string& servers, const std::string& cluster, int replicas,
    const EngineOptions& options);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_JETSTREAM_QUEUE_H_
