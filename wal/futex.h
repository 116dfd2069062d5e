#ifndef TASKWAL_WAL_FUTEX_H_
#define TASKWAL_WAL_FUTEX_H_

// The two futex operations the log's group commit needs (and the benchmark
// of its physical limit). On platforms other than Linux, waiting is a yield
// and waking does nothing: callers re-check their word in a loop anyway.

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#endif

namespace taskwal::wal {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t),
              "a futex word is 32 bits");

// Sleeps while *word == expected (or until a wake-up, maybe spurious).
inline void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE,
          expected, nullptr, nullptr, 0);
#else
  (void)word;
  (void)expected;
  std::this_thread::yield();
#endif
}

// Wakes every thread sleeping on *word.
inline void FutexWakeAll(std::atomic<uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE,
          INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_FUTEX_H_
