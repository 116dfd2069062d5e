#ifndef TASKWAL_BENCHMARKS_RAW_LOG_H_
#define TASKWAL_BENCHMARKS_RAW_LOG_H_

// The physical limit of the disk for a log: one writer appending fixed-size
// records to a file with write(2), and fdatasync(2) after every
// `records_per_sync` records (a perfect group commit of that many clients),
// or never. No checksums, no serialization, no locks: nothing a real
// system could do less.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmarks/bench_util.h"

namespace taskwal::bench {

struct RawLogOptions {
  std::string path;  // created; the caller removes it
  size_t record_bytes = 256;
  int records_per_sync = 1;     // 0: never fdatasync
  uint64_t max_records = 0;     // stop after this many records ...
  absl::Duration max_time;      // ... or this much time, whichever is first
  bool record_latency = false;  // time each append+fdatasync batch
  // Instead of appending: fill the file with zeros first (kOverwriteBytes,
  // fdatasynced), then write the records over them from the start,
  // wrapping around. fdatasync then has no file size or extent to update,
  // only data: what a log with preallocated, zero-filled segments would pay.
  bool overwrite = false;
};

inline constexpr size_t kOverwriteBytes = size_t{64} << 20;

struct RawLogResult {
  uint64_t records = 0;
  uint64_t syncs = 0;
  double seconds = 0;
  double records_per_second = 0;
  // Per batch (write of records_per_sync records + fdatasync), when asked.
  LatencySummary batch_latency;
};

// kInternal with errno text if a write or fdatasync fails.
absl::StatusOr<RawLogResult> RunRawLog(const RawLogOptions& options);

// The limit for any system whose calls each block until their record is
// fdatasynced, with `clients` client threads on this machine: each client
// copies a record into a shared buffer under a mutex and sleeps (on a futex
// per flush generation) until a dedicated flusher thread, which writes and
// fdatasyncs whatever is buffered back to back, has covered it; one wake-up
// syscall per flush wakes every client it covered. No checksums, no
// serialization, no state: only the disk and the thread wake-ups.
// options.records_per_sync is ignored (a flush takes what is buffered).
absl::StatusOr<RawLogResult> RunRawClients(const RawLogOptions& options,
                                           int clients);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_RAW_LOG_H_
