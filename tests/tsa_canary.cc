// Thread-safety analysis canary: proves that the --config=tsa build (clang,
// -Werror=thread-safety) rejects a read of a guarded member without its
// lock. Built by tools/test.sh twice: as is it must compile; with
// -DTASKWAL_TSA_CANARY_VIOLATION it must fail with a thread-safety error.
// Tagged manual.
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace {

class Counter {
 public:
  void Add() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    ++count_;
  }
  long Read() ABSL_LOCKS_EXCLUDED(mu_) {
#ifdef TASKWAL_TSA_CANARY_VIOLATION
    return count_;  // Without mu_: the analysis must refuse this.
#else
    absl::MutexLock l(&mu_);
    return count_;
#endif
  }

 private:
  absl::Mutex mu_;
  long count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

int main() {
  Counter c;
  c.Add();
  return c.Read() == 1 ? 0 : 1;
}
