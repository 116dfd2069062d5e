#include "engine/parallel.h"

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>
#include <vector>

namespace taskwal::engine {

uint32_t WorkerCount(uint32_t n) {
  return std::max<uint32_t>(
      1, std::min<uint32_t>(n, std::thread::hardware_concurrency()));
}

void ParallelFor(uint32_t n, absl::FunctionRef<void(uint32_t)> fn) {
  std::atomic<uint32_t> next{0};
  auto work = [&] {
    for (uint32_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      fn(i);
    }
  };
  std::vector<std::thread> pool;
  const uint32_t threads = WorkerCount(n);
  for (uint32_t t = 1; t < threads; ++t) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // Fewer threads: the calling one does the rest.
    }
  }
  work();
  for (std::thread& t : pool) t.join();
}

}  // namespace taskwal::engine
