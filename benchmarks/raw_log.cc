#include "benchmarks/raw_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace taskwal::bench {
namespace {

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

absl::StatusOr<RawLogResult> RunRawLog(const RawLogOptions& options) {
  const int fd = ::open(options.path.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                        0600);
  if (fd < 0) return Errno("open", options.path);
  const size_t per_batch =
      options.records_per_sync > 0 ? options.records_per_sync : 64;
  const std::string batch(options.record_bytes * per_batch, 'r');
  std::vector<int64_t> latencies;
  RawLogResult result;
  const int64_t start = NowNanos();
  const int64_t deadline = start + absl::ToInt64Nanoseconds(options.max_time);
  absl::Status status;
  while (result.records < options.max_records) {
    const int64_t t0 = options.record_latency ? NowNanos() : 0;
    if (!WriteAll(fd, batch.data(), batch.size())) {
      status = Errno("write", options.path);
      break;
    }
    if (options.records_per_sync > 0) {
      if (::fdatasync(fd) != 0) {
        status = Errno("fdatasync", options.path);
        break;
      }
      ++result.syncs;
    }
    result.records += per_batch;
    const int64_t t1 = NowNanos();
    if (options.record_latency) latencies.push_back(t1 - t0);
    if (t1 >= deadline) break;
  }
  const int64_t end = NowNanos();
  ::close(fd);
  if (!status.ok()) return status;
  result.seconds = static_cast<double>(end - start) / 1e9;
  result.records_per_second =
      result.seconds > 0 ? static_cast<double>(result.records) / result.seconds
                         : 0;
  result.batch_latency = Summarize(&latencies);
  return result;
}

}  // namespace taskwal::bench
