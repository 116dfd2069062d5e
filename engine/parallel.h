#ifndef TASKWAL_ENGINE_PARALLEL_H_
#define TASKWAL_ENGINE_PARALLEL_H_

// Work spread over partitions: recovery loads and snapshots write one file
// per partition, each independent of the others.

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace taskwal::engine {

// Threads worth using for n independent items: at least 1, at most n and
// at most the machine's hardware threads.
uint32_t WorkerCount(uint32_t n);

// Calls fn(i) exactly once for each i in [0, n), on up to WorkerCount(n)
// threads including the calling one, and returns when all calls have
// returned. If the system refuses a thread, fewer are used; the calling
// thread always takes part, so the work is done either way. fn must not
// throw and must be safe to call concurrently for different i.
void ParallelFor(uint32_t n, absl::FunctionRef<void(uint32_t)> fn);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_PARALLEL_H_
