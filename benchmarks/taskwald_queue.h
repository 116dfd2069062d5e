#ifndef TASKWAL_BENCHMARKS_TASKWALD_QUEUE_H_
#define TASKWAL_BENCHMARKS_TASKWALD_QUEUE_H_

// taskwald over HTTP/JSON on loopback as benchmark systems
// (benchmarks/queue.h): an engine in the data directory served by
// daemon::HttpApi on 127.0.0.1 (a free port) in this process, and each
// client a keep-alive HTTP connection of its own that calls
// POST /v1/tasks, POST /v1/claims and POST /v1/claims/complete with JSON
// bodies, as a program in another language would. The server's threads and
// the clients share this machine's cores, as a daemon and its local
// clients do.

#include <vector>

#include "benchmarks/queue.h"

namespace taskwal::bench {

// taskwald-interval (SyncMode::kInterval, the daemon's usual mode for
// throughput) and taskwald-always (kAlways).
std::vector<SystemSpec> TaskwaldSystems();

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_TASKWALD_QUEUE_H_
