#include "benchmarks/raw_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "wal/futex.h"

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
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
                            (options.overwrite ? 0 : O_APPEND),
                        0600);
  if (fd < 0) return Errno("open", options.path);
  const size_t per_batch =
      options.records_per_sync > 0 ? options.records_per_sync : 64;
  const std::string batch(options.record_bytes * per_batch, 'r');
  if (options.overwrite) {
    const std::string zeros(size_t{1} << 20, '\0');
    for (size_t done = 0; done < kOverwriteBytes; done += zeros.size()) {
      if (!WriteAll(fd, zeros.data(), zeros.size())) {
        const absl::Status s = Errno("write", options.path);
        ::close(fd);
        return s;
      }
    }
    if (::fdatasync(fd) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
      const absl::Status s = Errno("fdatasync", options.path);
      ::close(fd);
      return s;
    }
  }
  size_t offset = 0;
  std::vector<int64_t> latencies;
  RawLogResult result;
  const int64_t start = NowNanos();
  const int64_t deadline = start + absl::ToInt64Nanoseconds(options.max_time);
  absl::Status status;
  while (result.records < options.max_records) {
    const int64_t t0 = options.record_latency ? NowNanos() : 0;
    if (options.overwrite) {
      if (offset + batch.size() > kOverwriteBytes) {
        offset = 0;  // Wrap around: still inside the zero-filled file.
        if (::lseek(fd, 0, SEEK_SET) != 0) {
          status = Errno("lseek", options.path);
          break;
        }
      }
      offset += batch.size();
    }
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

namespace {

using ::taskwal::wal::FutexWait;
using ::taskwal::wal::FutexWakeAll;

class BlockingClients {
 public:
  BlockingClients(int fd, const RawLogOptions& options)
      : fd_(fd), options_(options) {}

  absl::StatusOr<RawLogResult> Run(int clients) {
    const int64_t start = NowNanos();
    deadline_ = start + absl::ToInt64Nanoseconds(options_.max_time);
    std::thread flusher([this] { Flush(); });
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i)
      threads.emplace_back([this] { Client(); });
    for (std::thread& t : threads) t.join();
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    flusher_word_.fetch_add(1);
    FutexWakeAll(&flusher_word_);
    flusher.join();
    const int64_t end = NowNanos();
    absl::MutexLock l(&mu_);
    if (!status_.ok()) return status_;
    RawLogResult result;
    result.records = acked_.load();
    result.syncs = syncs_;
    result.seconds = static_cast<double>(end - start) / 1e9;
    result.records_per_second =
        result.seconds > 0
            ? static_cast<double>(result.records) / result.seconds
            : 0;
    return result;
  }

 private:
  void Client() {
    const std::string record(options_.record_bytes, 'r');
    while (true) {
      uint64_t lsn;
      std::atomic<uint32_t>* word;
      uint32_t expected;
      bool wake_flusher;
      {
        absl::MutexLock l(&mu_);
        if (!status_.ok() || failed_) return;
        buffer_.append(record);
        lsn = ++last_lsn_;
        // Covered by the next flush to start.
        word = &generation_words_[(flushes_started_ + 1) & 1];
        expected = word->load(std::memory_order_acquire);
        wake_flusher = !flusher_busy_;
        flusher_busy_ = true;
      }
      if (wake_flusher) {
        flusher_word_.fetch_add(1, std::memory_order_release);
        FutexWakeAll(&flusher_word_);
      }
      while (synced_lsn_.load(std::memory_order_acquire) < lsn) {
        if (failed_.load()) return;
        FutexWait(word, expected);
        expected = word->load(std::memory_order_acquire);
      }
      acked_.fetch_add(1, std::memory_order_relaxed);
      if (acked_.load(std::memory_order_relaxed) >= options_.max_records ||
          NowNanos() >= deadline_) {
        return;
      }
    }
  }

  void Flush() {
    std::string batch;
    while (true) {
      uint32_t seen = flusher_word_.load(std::memory_order_acquire);
      uint64_t target;
      std::atomic<uint32_t>* word;
      {
        absl::MutexLock l(&mu_);
        if (buffer_.empty()) {
          if (stop_) return;
          flusher_busy_ = false;
        } else {
          batch.swap(buffer_);
          target = last_lsn_;
          word = &generation_words_[++flushes_started_ & 1];
        }
      }
      if (batch.empty()) {
        FutexWait(&flusher_word_, seen);
        continue;
      }
      absl::Status s;
      if (!WriteAll(fd_, batch.data(), batch.size())) {
        s = Errno("write", options_.path);
      } else if (::fdatasync(fd_) != 0) {
        s = Errno("fdatasync", options_.path);
      }
      batch.clear();
      if (!s.ok()) {
        absl::MutexLock l(&mu_);
        status_ = s;
        failed_.store(true);
      } else {
        absl::MutexLock l(&mu_);
        ++syncs_;
      }
      synced_lsn_.store(target, std::memory_order_release);
      word->fetch_add(1, std::memory_order_release);
      FutexWakeAll(word);
      if (!s.ok()) {
        // Wake everyone: the other generation's sleepers too.
        for (auto& w : generation_words_) {
          w.fetch_add(1);
          FutexWakeAll(&w);
        }
        return;
      }
    }
  }

  const int fd_;
  const RawLogOptions options_;
  int64_t deadline_ = 0;
  absl::Mutex mu_;
  std::string buffer_ ABSL_GUARDED_BY(mu_);
  uint64_t last_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flushes_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  bool flusher_busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> synced_lsn_{0};
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint32_t> flusher_word_{0};
  // Clients of flush generation g sleep on generation_words_[g & 1]; only
  // one flush runs at a time, so at most two generations have sleepers.
  std::atomic<uint32_t> generation_words_[2] = {0, 0};
};

}  // namespace

absl::StatusOr<RawLogResult> RunRawClients(const RawLogOptions& options,
                                           int clients) {
  const int fd =
      ::open(options.path.c_str(),
             O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("open", options.path);
  BlockingClients run(fd, options);
  absl::StatusOr<RawLogResult> result = run.Run(clients);
  ::close(fd);
  return result;
}

}  // namespace taskwal::bench
