#ifndef TASKWAL_TESTS_CRASH_PROTOCOL_H_
#define TASKWAL_TESTS_CRASH_PROTOCOL_H_

// The contract between crash_child (the workload that gets kill -9'ed) and
// crash_test (the parent that checks what survived).
//
// The child writes one line to stdout per call that returned OK, with a
// single write(2) after the call returned, so every complete line is an
// acknowledged transition (a partial last line is not):
//   R <pid>                                 ready: Open returned OK
//   S <key> <id> <payload-hash>             Submit (new or deduplicated)
//   C <id> <worker> <attempt>               ClaimNext
//   D <id> <worker> <attempt> <result>      Complete
//   F <id> <worker> <attempt> <final>       Fail; final 1: the task FAILED
//   H <id> <worker> <attempt> <deadline>    Heartbeat; lease deadline (us)
// Keys are "k<n>"; workers, keys and results contain no spaces.

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"

namespace taskwal {
namespace crash {

inline uint64_t Fnv1a(absl::string_view data) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

// Payloads of varied length (16 bytes to about 1 KiB), so records of one
// workload straddle segment boundaries at different offsets.
inline std::string PayloadFor(absl::string_view key) {
  std::string payload;
  const int repeats = 1 + static_cast<int>(Fnv1a(key) % 64);
  for (int i = 0; i < repeats; ++i) absl::StrAppend(&payload, "payload:", key);
  return payload;
}

inline std::string KeyFor(uint64_t n) { return absl::StrCat("k", n); }

// Options under which crashes are interesting: small segments, automatic
// snapshots every few thousand records, and every event kept in History.
// Retries need no backoff, and leases outlast the test, so a task claimed by
// a killed child stays CLAIMED by it (no expiry events to reason about).
inline EngineOptions CrashOptions(const std::string& data_dir, SyncMode mode,
                                  uint64_t seed, uint32_t partitions) {
  EngineOptions o;
  o.data_dir = data_dir;
  o.partitions = partitions;
  o.env = nullptr;  // The real POSIX file system.
  o.sync_mode = mode;
  o.segment_bytes = 16 << 10;
  o.snapshot_every_records = 2000;
  o.maintenance_interval = absl::Milliseconds(5);
  o.max_history_per_task = 10000;
  o.default_max_attempts = 3;
  o.default_retry_policy.set_initial_backoff_micros(0);
  o.default_lease = absl::Hours(1);
  o.random_seed = seed;
  return o;
}

}  // namespace crash
}  // namespace taskwal

#endif  // TASKWAL_TESTS_CRASH_PROTOCOL_H_
