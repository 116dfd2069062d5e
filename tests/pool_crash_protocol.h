#ifndef TASKWAL_TESTS_POOL_CRASH_PROTOCOL_H_
#define TASKWAL_TESTS_POOL_CRASH_PROTOCOL_H_

// The contract between pool_crash_child (a WorkerPool that gets kill -9'ed
// mid-handler) and pool_crash_test (the parent that checks what survived).
//
// The child's handler appends to the execution log, a side file, with one
// write(2) per line followed by fdatasync:
//   B <task-id> <worker> <attempt>            when the handler begins;
//   E <task-id> <worker> <attempt> <result>   when its work is done, just
//                                             before it returns <result>.
// So every Complete the engine stored has its E line on disk first, and
// every handler run that began has its B line. A SIGKILL may cut the last
// line short (a write straddling a page); the next child ends such a line
// before it appends, and the parent skips it. On stdout the child writes
// "R <pid>" once its pool runs and, with --finish,
// "DONE <lost-claims> <engine-errors>" when every task is COMPLETED and the
// pool and engine are closed.

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"

namespace taskwal {
namespace pool_crash {

// Task types: one served by the shared threads without limits, one with a
// running limit (so kills also land while its threads wait for a slot).
inline constexpr char kPlainType[] = "plain";
inline constexpr char kLimitedType[] = "limited";
inline constexpr int kLimitedMaxRunning = 2;

// Short leases, so that the claims of a killed child come back to PENDING
// within two seconds of the next child's start (the pool heartbeats every
// lease / 3, so a live claim survives a stall of over a second); plenty of
// attempts, since each kill costs the tasks it interrupted one (their
// leases expire).
inline constexpr absl::Duration kLease = absl::Seconds(2);
inline constexpr uint32_t kMaxAttempts = 1000;

inline EngineOptions PoolCrashOptions(const std::string& data_dir) {
  EngineOptions o;
  o.data_dir = data_dir;
  o.sync_mode = SyncMode::kAlways;
  o.segment_bytes = 64 << 10;
  o.snapshot_every_records = 500;
  o.maintenance_interval = absl::Milliseconds(10);
  o.max_history_per_task = 10000;
  o.max_max_attempts = kMaxAttempts;
  o.default_max_attempts = kMaxAttempts;
  o.default_retry_policy.set_initial_backoff_micros(0);
  o.default_retry_policy.set_max_backoff_micros(0);
  o.default_lease = kLease;
  return o;
}

// The result a handler returns for one claim: names the process (in the
// worker id) and the claim, so the parent can tell which run stored it.
inline std::string ResultFor(const std::string& worker, uint64_t token) {
  return absl::StrCat("r-", worker, "-", token);
}

}  // namespace pool_crash
}  // namespace taskwal

#endif  // TASKWAL_TESTS_POOL_CRASH_PROTOCOL_H_
