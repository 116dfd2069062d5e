#include "benchmarks/workloads.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace taskwal::bench {
namespace {

// The first error any client hit; later ones are dropped.
class FirstError {
 public:
  void Set(absl::Status s) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (status_.ok()) status_ = std::move(s);
    failed_.store(true, std::memory_order_relaxed);
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  absl::Status status() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    return status_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_{false};
};

absl::StatusOr<std::vector<std::unique_ptr<QueueClient>>> MakeClients(
    QueueSystem* system, int threads) {
  std::vector<std::unique_ptr<QueueClient>> clients;
  for (int i = 0; i < threads; ++i) {
    absl::StatusOr<std::unique_ptr<QueueClient>> c = system->NewClient(i);
    if (!c.ok()) return c.status();
    clients.push_back(*std::move(c));
  }
  return clients;
}

// [begin, end) of thread i's share of n items, each share starting at a
// multiple of `align`.
std::pair<uint64_t, uint64_t> Share(uint64_t n, int threads, int i,
                                    uint64_t align) {
  const uint64_t units = (n + align - 1) / align;
  const uint64_t begin = units * i / threads * align;
  const uint64_t end = std::min(n, units * (i + 1) / threads * align);
  return {std::min(begin, n), end};
}

int64_t Deadline(absl::Duration cap) {
  return NowNanos() + absl::ToInt64Nanoseconds(cap);
}

struct ThreadStats {
  uint64_t submitted = 0;
  uint64_t completed = 0;
  uint64_t deduplicated = 0;
  bool capped = false;
  std::vector<int64_t> submit_ns, claim_ns, complete_ns;
};

// RunLifecycle's client with batched calls. The deadlines are read once
// their notifications came.
void BatchedClient(QueueClient* client, const LifecycleOptions& options,
                   uint64_t begin, uint64_t end, const std::string& payload,
                   absl::Notification* start_submit,
                   absl::BlockingCounter* submitted,
                   absl::Notification* start_drain,
                   const int64_t* submit_deadline,
                   const int64_t* drain_deadline, FirstError* error,
                   ThreadStats* st) {
  std::vector<std::string> keys(options.batch);
  std::vector<NewTask> tasks;
  tasks.reserve(options.batch);
  start_submit->WaitForNotification();
  for (uint64_t k = begin; k < end && !error->failed();) {
    const uint64_t n = std::min<uint64_t>(options.batch, end - k);
    tasks.clear();
    for (uint64_t i = 0; i < n; ++i) {
      keys[i] = absl::StrCat(options.key_prefix, k + i);
      tasks.push_back(NewTask{keys[i], "bench", payload, options.priority});
    }
    const int64_t t0 = NowNanos();
    absl::Status s = client->SubmitBatch(tasks);
    const int64_t t1 = NowNanos();
    if (!s.ok()) {
      error->Set(s);
      break;
    }
    k += n;
    st->submitted += n;
    if (options.record_latency) st->submit_ns.push_back(t1 - t0);
    if (t1 >= *submit_deadline) {
      st->capped = k < end;
      break;
    }
  }
  submitted->DecrementCount();
  start_drain->WaitForNotification();
  std::vector<ClaimedRef> claims;
  while (!error->failed()) {
    const int64_t t0 = NowNanos();
    absl::Status s = client->ClaimNextBatch(options.batch, &claims);
    const int64_t t1 = NowNanos();
    if (absl::IsNotFound(s)) break;
    if (!s.ok()) {
      error->Set(s);
      break;
    }
    s = client->CompleteBatch(claims, "ok");
    const int64_t t2 = NowNanos();
    if (!s.ok()) {
      error->Set(s);
      break;
    }
    st->completed += claims.size();
    if (options.record_latency) {
      st->claim_ns.push_back(t1 - t0);
      st->complete_ns.push_back(t2 - t1);
    }
    if (t2 >= *drain_deadline) {
      st->capped = true;
      break;
    }
  }
}

}  // namespace

absl::StatusOr<LifecycleResult> RunLifecycle(QueueSystem* system,
                                             const LifecycleOptions& options) {
  if (options.batch > 0 && !system->batches()) {
    return absl::InvalidArgumentError("this system takes no batched calls");
  }
  if (options.batch > 0 && options.max_claims > 0) {
    return absl::InvalidArgumentError("max_claims with batched calls");
  }
  const int n = options.threads;
  absl::StatusOr<std::vector<std::unique_ptr<QueueClient>>> clients =
      MakeClients(system, n);
  if (!clients.ok()) return clients.status();
  const std::string payload(options.payload_bytes, 'p');
  std::vector<ThreadStats> stats(n);
  FirstError error;
  absl::Notification start_submit, start_drain;
  absl::BlockingCounter submitted(n);
  int64_t submit_deadline = 0;  // Written before the notifications.
  int64_t drain_deadline = 0;
  std::atomic<uint64_t> claims{0};

  auto client_main = [&](int i) {
    QueueClient* client = (*clients)[i].get();
    ThreadStats& st = stats[i];
    const auto [begin, end] = Share(options.tasks, n, i, 1);
    if (options.record_latency) {
      st.submit_ns.reserve(end - begin);
      st.claim_ns.reserve(2 * (end - begin));
      st.complete_ns.reserve(2 * (end - begin));
    }
    std::string key;
    if (options.batch > 0) {
      BatchedClient(client, options, begin, end, payload, &start_submit,
                    &submitted, &start_drain, &submit_deadline, &drain_deadline,
                    &error, &st);
      return;
    }
    start_submit.WaitForNotification();
    for (uint64_t k = begin; k < end && !error.failed(); ++k) {
      key = absl::StrCat(options.key_prefix, k);
      NewTask task{key, "bench", payload, options.priority};
      bool dedup = false;
      const int64_t t0 = NowNanos();
      absl::Status s = client->Submit(task, &dedup);
      const int64_t t1 = NowNanos();
      if (!s.ok() || dedup) {
        error.Set(s.ok() ? absl::InternalError("unique key deduplicated") : s);
        break;
      }
      ++st.submitted;
      if (options.record_latency) st.submit_ns.push_back(t1 - t0);
      if (t1 >= submit_deadline) {
        st.capped = k + 1 < end;
        break;
      }
    }
    submitted.DecrementCount();
    start_drain.WaitForNotification();
    while (!error.failed()) {
      if (options.max_claims > 0 &&
          claims.fetch_add(1, std::memory_order_relaxed) >=
              options.max_claims) {
        break;
      }
      const int64_t t0 = NowNanos();
      absl::StatusOr<ClaimedRef> c = client->ClaimNext();
      const int64_t t1 = NowNanos();
      if (absl::IsNotFound(c.status())) break;
      if (!c.ok()) {
        error.Set(c.status());
        break;
      }
      absl::Status s = client->Complete(*c, "ok");
      const int64_t t2 = NowNanos();
      if (!s.ok()) {
        error.Set(s);
        break;
      }
      ++st.completed;
      if (options.record_latency) {
        st.claim_ns.push_back(t1 - t0);
        st.complete_ns.push_back(t2 - t1);
      }
      if (t2 >= drain_deadline) {
        st.capped = true;
        break;
      }
    }
  };

  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int i = 0; i < n; ++i) threads.emplace_back(client_main, i);
  submit_deadline = Deadline(options.max_phase_time);
  const double cpu0 = ProcessCpuSeconds();
  const uint64_t faults0 = ProcessMinorFaults();
  const int64_t t0 = NowNanos();
  start_submit.Notify();
  submitted.Wait();
  const int64_t t1 = NowNanos();
  drain_deadline = Deadline(options.max_phase_time);
  start_drain.Notify();
  for (std::thread& t : threads) t.join();
  const int64_t t2 = NowNanos();
  const double cpu1 = ProcessCpuSeconds();
  const uint64_t faults1 = ProcessMinorFaults();
  clients->clear();
  if (error.failed()) return error.status();

  LifecycleResult r;
  std::vector<int64_t> submit_ns, claim_ns, complete_ns;
  for (ThreadStats& st : stats) {
    r.submitted += st.submitted;
    r.completed += st.completed;
    r.capped = r.capped || st.capped;
    submit_ns.insert(submit_ns.end(), st.submit_ns.begin(), st.submit_ns.end());
    claim_ns.insert(claim_ns.end(), st.claim_ns.begin(), st.claim_ns.end());
    complete_ns.insert(complete_ns.end(), st.complete_ns.begin(),
                       st.complete_ns.end());
  }
  if (r.completed < r.submitted) r.capped = true;
  r.cpu_seconds = cpu1 - cpu0;
  r.minor_faults = faults1 - faults0;
  r.submit_seconds = static_cast<double>(t1 - t0) / 1e9;
  r.drain_seconds = static_cast<double>(t2 - t1) / 1e9;
  if (r.submitted > 0 && r.submit_seconds > 0) {
    r.submits_per_second = static_cast<double>(r.submitted) / r.submit_seconds;
  }
  if (r.completed > 0 && r.drain_seconds > 0) {
    r.claim_completes_per_second =
        static_cast<double>(r.completed) / r.drain_seconds;
  }
  if (r.submits_per_second > 0 && r.claim_completes_per_second > 0) {
    r.lifecycles_per_second =
        1.0 / (1.0 / r.submits_per_second + 1.0 / r.claim_completes_per_second);
  }
  r.submit_latency = Summarize(&submit_ns);
  r.claim_latency = Summarize(&claim_ns);
  r.complete_latency = Summarize(&complete_ns);
  return r;
}

absl::StatusOr<DedupResult> RunDedup(QueueSystem* system, int threads,
                                     uint64_t submits, size_t payload_bytes,
                                     absl::Duration max_time) {
  const int n = threads;
  absl::StatusOr<std::vector<std::unique_ptr<QueueClient>>> clients =
      MakeClients(system, n);
  if (!clients.ok()) return clients.status();
  const std::string payload(payload_bytes, 'p');
  std::vector<ThreadStats> stats(n);
  FirstError error;
  absl::Notification start;
  int64_t deadline = 0;

  auto client_main = [&](int i) {
    QueueClient* client = (*clients)[i].get();
    ThreadStats& st = stats[i];
    // Shares start at even calls, so call 2k+1 repeats call 2k's key in
    // the same client.
    const auto [begin, end] = Share(submits, n, i, 2);
    std::string key;
    start.WaitForNotification();
    for (uint64_t k = begin; k < end && !error.failed(); ++k) {
      key = absl::StrCat("dup-", k / 2);
      NewTask task{key, "bench", payload, 0};
      bool dedup = false;
      absl::Status s = client->Submit(task, &dedup);
      if (!s.ok()) {
        error.Set(s);
        break;
      }
      if (dedup != (k % 2 == 1)) {
        error.Set(absl::InternalError(absl::StrCat(
            "submit ", k, (dedup ? " was" : " was not"), " deduplicated")));
        break;
      }
      ++st.submitted;
      st.deduplicated += dedup ? 1 : 0;
      if (NowNanos() >= deadline) {
        st.capped = k + 1 < end;
        break;
      }
    }
  };

  std::vector<std::thread> pool;
  pool.reserve(n);
  for (int i = 0; i < n; ++i) pool.emplace_back(client_main, i);
  deadline = Deadline(max_time);
  const int64_t t0 = NowNanos();
  start.Notify();
  for (std::thread& t : pool) t.join();
  const int64_t t1 = NowNanos();
  clients->clear();
  if (error.failed()) return error.status();

  DedupResult r;
  for (const ThreadStats& st : stats) {
    r.submits += st.submitted;
    r.deduplicated += st.deduplicated;
    r.capped = r.capped || st.capped;
  }
  r.seconds = static_cast<double>(t1 - t0) / 1e9;
  if (r.seconds > 0) {
    r.submits_per_second = static_cast<double>(r.submits) / r.seconds;
  }
  return r;
}

}  // namespace taskwal::bench
