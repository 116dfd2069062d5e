#ifndef TASKWAL_BENCHMARKS_BENCH_UTIL_H_
#define TASKWAL_BENCHMARKS_BENCH_UTIL_H_

// Small helpers shared by the benchmark programs: scratch directories on the
// real disk, resident memory, latency percentiles, thread-count lists.
// Nothing here asserts timing; it only measures.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskwal::bench {

// The directory benchmarks put their data under: $TMPDIR, else /tmp. Both
// are on the real disk on the benchmark machine (not tmpfs), which matters:
// fdatasync on tmpfs is free.
std::string ScratchRoot();

// A fresh directory (mkdtemp) under `parent`, removed with everything in it
// when the object is destroyed. Not copyable.
class TempDir {
 public:
  // Creates <parent>/<prefix>XXXXXX. kInternal with errno text on failure.
  static absl::StatusOr<TempDir> Create(const std::string& parent,
                                        absl::string_view prefix);
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  // A path inside the directory (not created).
  std::string Sub(absl::string_view name) const;

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Removes path and everything below it; missing is fine.
void RemoveTree(const std::string& path);

// Bytes in files below path (recursively).
uint64_t TreeBytes(const std::string& path);

// Resident set size of this process in bytes (/proc/self/statm).
uint64_t ResidentBytes();

// Percentiles of a latency sample in nanoseconds.
struct LatencySummary {
  uint64_t count = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double p999_us = 0;
  double max_us = 0;
  double mean_us = 0;
};

// Sorts *samples_ns in place.
LatencySummary Summarize(std::vector<int64_t>* samples_ns);

// "1,4,16" -> {1, 4, 16}. Empty or malformed entries are skipped.
std::vector<int64_t> ParseIntList(absl::string_view list);

// Monotonic nanoseconds.
int64_t NowNanos();

// CPU time (user + system) this process used so far, all threads, in
// seconds (getrusage).
double ProcessCpuSeconds();
// Minor page faults of this process so far (getrusage).
uint64_t ProcessMinorFaults();

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_BENCH_UTIL_H_
