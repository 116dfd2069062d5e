// A taskwal node for tests/jetstream_failover_test: follows the cluster as a
// hot standby until it holds the cluster's lease, then takes over (the
// engine on JetStream, snapshots every 2,000 records) and runs a load of
// submits, claims and completions until it is killed, reporting each
// acknowledged call on stdout, one write per line:
//   L <pid>           leads (the engine is open)
//   S <key> <id>      Submit acknowledged
//   R <key> <attempt> ClaimNext handed out this task (a run begins)
//   C <key> <attempt> Complete acknowledged
//   D <message>       the engine failed (deposed); the node stops writing
//   X <message>       the lease was lost; the node closes and exits 3
// Usage: jetstream_node_child SERVERS CLUSTER NAME LEASE_TTL_MS

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"

namespace {

void Say(const std::string& line) {
  const std::string out = line + "\n";
  // One write: lines of several threads never interleave (< PIPE_BUF).
  if (::write(STDOUT_FILENO, out.data(), out.size()) < 0) ::_exit(5);
}

}  // namespace

int main(int argc, char** argv) {
  int ttl_ms = 0;
  if (argc != 5 || !absl::SimpleAtoi(argv[4], &ttl_ms)) {
    std::fprintf(stderr,
                 "usage: jetstream_node_child SERVERS CLUSTER NAME "
                 "LEASE_TTL_MS\n");
    return 2;
  }
  const std::string name = argv[3];
  taskwal::JetStreamOptions js;
  js.servers = argv[1];
  js.cluster = argv[2];
  js.replicas = 3;
  taskwal::EngineOptions options;
  options.partitions = 4;
  options.default_lease = absl::Seconds(2);
  options.maintenance_interval = absl::Milliseconds(200);
  options.snapshot_every_records = 2000;
  // A hot standby until it leads.
  auto standby = taskwal::JetStreamStandby::Start(options, js);
  if (!standby.ok()) {
    std::fprintf(stderr, "%s: standby: %s\n", name.c_str(),
                 standby.status().ToString().c_str());
    return 1;
  }
  taskwal::JetStreamLease::Options lease_options;
  lease_options.ttl = absl::Milliseconds(ttl_ms);
  auto lease = taskwal::JetStreamLease::Acquire(js, name, lease_options);
  if (!lease.ok()) {
    std::fprintf(stderr, "%s: lease: %s\n", name.c_str(),
                 lease.status().ToString().c_str());
    return 1;
  }
  auto engine = (*standby)->Promote();
  if (!engine.ok()) {
    std::fprintf(stderr, "%s: open: %s\n", name.c_str(),
                 engine.status().ToString().c_str());
    return 1;
  }
  Say(absl::StrCat("L ", ::getpid()));
  std::atomic<bool> failed{false};
  auto fail = [&](const absl::Status& s) {
    if (!failed.exchange(true)) Say(absl::StrCat("D ", s.message()));
  };
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      taskwal::Engine& e = **engine;
      for (int i = 0; !failed.load(); ++i) {
        taskwal::TaskSpec spec;
        spec.idempotency_key = absl::StrCat(name, "-", w, "-", i);
        spec.type = "job";
        spec.payload = "x";
        auto submitted = e.Submit(spec);
        if (!submitted.ok()) {
          fail(submitted.status());
          return;
        }
        Say(absl::StrCat("S ", spec.idempotency_key, " ", submitted->task_id));
        auto claim = e.ClaimNext(name, {});
        if (absl::IsNotFound(claim.status())) continue;
        if (!claim.ok()) {
          fail(claim.status());
          return;
        }
        const std::string& key = claim->task.idempotency_key();
        Say(absl::StrCat("R ", key, " ", claim->attempt));
        const absl::Status done = e.Complete(claim->claim, "ok");
        if (done.ok()) {
          Say(absl::StrCat("C ", key, " ", claim->attempt));
        } else if (!absl::IsAborted(done) &&
                   !absl::IsFailedPrecondition(done)) {
          fail(done);
          return;
        }
      }
    });
  }
  // Until the lease is lost (or the process is killed).
  while ((*lease)->WaitLost(absl::Seconds(1))) {
  }
  Say("X the lease was lost");
  failed.store(true);
  for (std::thread& t : workers) t.join();
  (*engine)->Close().IgnoreError();
  return 3;
}
