// TSan canary: proves that ThreadSanitizer is active and sees races, and that
// Abseil (built from source, instrumented) causes no false reports.
//
//   tsan_canary            two threads: a deliberately UNLOCKED increment (a
//                          real data race, TSan must report it and fail) plus
//                          an absl::Mutex-guarded counter.
//   tsan_canary --locked   only the absl::Mutex-guarded counter: must be clean.
//
// Built and checked by tools/test.sh under --config=tsan. Tagged manual.
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace {

constexpr int kIterations = 100000;

absl::Mutex mu;
long guarded_counter ABSL_GUARDED_BY(mu) = 0;
long racy_counter = 0;  // deliberately unsynchronized

void Work(bool racy) {
  for (int i = 0; i < kIterations; ++i) {
    {
      absl::MutexLock lock(&mu);
      ++guarded_counter;
    }
    if (racy) ++racy_counter;  // data race
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool locked_only = argc > 1 && std::strcmp(argv[1], "--locked") == 0;
  std::thread a(Work, !locked_only);
  std::thread b(Work, !locked_only);
  a.join();
  b.join();
  long guarded;
  {
    absl::MutexLock lock(&mu);
    guarded = guarded_counter;
  }
  std::printf("mode=%s guarded=%ld racy=%ld\n", locked_only ? "locked" : "racy",
              guarded, racy_counter);
  return guarded == 2L * kIterations ? 0 : 1;
}
