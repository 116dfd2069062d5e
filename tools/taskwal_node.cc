// taskwal-node: one member of a taskwal cluster on NATS JetStream. It
// follows the cluster as a hot standby until it holds the cluster's lease,
// then takes over, serves the engine to every client over NATS
// (ConnectJetStreamEngine) and keeps the lease; when it loses the lease, or
// finds its engine deposed, it stops serving and stands by again. Run one
// per machine; any number may stand by.
//
//   taskwal-node --servers=nats://10.0.0.1:4222,nats://10.0.0.2:4222
//       --cluster=billing     (one command line)
//
// Logs to stderr (task text never appears in it). On stdout, one line per
// change of role, for scripts: "STANDBY <shard> <position>", "LEADING
// <shard>", "STOPPED <shard>", "FAILED <shard>" (the shard cannot go on:
// its stream is refused or damaged; the other shards stay led). With
// --shards=N it stands by for and may lead each shard (or those --lead
// names) independently.
// SIGTERM or SIGINT: stops serving, closes the engine, gives the lease up
// (a standby takes over at once) and exits 0.
// Exit codes, once every shard stopped: 0 stopped by a signal; 1 a shard
// failed (the stream refused or damaged, ...); 2 bad flags.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"

ABSL_FLAG(std::string, servers, "",
          "NATS server URLs, comma-separated (required).");
ABSL_FLAG(std::string, cluster, "",
          "The cluster's name: 1 to 32 of [A-Za-z0-9_-] (required).");
ABSL_FLAG(std::string, name, "",
          "This node's name in the lease (default: host name and pid).");
ABSL_FLAG(int, replicas, 3, "Copies of the stream when it is created (1-5).");
ABSL_FLAG(uint32_t, partitions, 0,
          "Partitions when the stream is created (0: 16); must match an "
          "existing stream's if set.");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(5),
          "The lease's time to live: a dead leader is replaced after it.");
ABSL_FLAG(std::string, sync, "always",
          "always: acknowledge once the stream has a record; none: at once.");
ABSL_FLAG(int, threads, 32, "Calls served at once.");
ABSL_FLAG(absl::Duration, max_claim_wait, absl::Seconds(30),
          "The longest a client's ClaimNext waits.");
ABSL_FLAG(int, shards, 1,
          "Shards of the cluster (independent streams <cluster>-0, ...); 1: "
          "the cluster is one stream named <cluster>.");
ABSL_FLAG(std::string, lead, "all",
          "The shards this node stands by for and may lead: all, or a "
          "comma-separated list (0, 2, ...).");
ABSL_FLAG(uint64_t, snapshot_every, 1000000,
          "Snapshot after this many records (0: never).");

namespace {

std::atomic<bool> stop_requested{false};

void Log(const std::string& line) {
  const std::string out = absl::StrCat("taskwal-node: ", line, "\n");
  if (::write(STDERR_FILENO, out.data(), out.size()) < 0) {
  }
}

void Say(const std::string& line) {
  const std::string out = line + "\n";
  if (::write(STDOUT_FILENO, out.data(), out.size()) < 0) {
  }
}

// Waits for SIGTERM or SIGINT (blocked in every thread) on a thread of its
// own.
void StartSignalThread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    stop_requested.store(true);
  }).detach();
}

bool Stopping() { return stop_requested.load(); }

}  // namespace

// Stands by for, leads and serves one shard until a signal; returns the
// exit code.
int RunShard(int shard, const taskwal::EngineOptions& options,
             const taskwal::JetStreamOptions& js, const std::string& name,
             const taskwal::JetStreamLease::Options& lease_options,
             const taskwal::JetStreamServer::Options& server_options) {
  while (!Stopping()) {
    absl::StatusOr<std::unique_ptr<taskwal::JetStreamStandby>> standby =
        taskwal::JetStreamStandby::Start(options, js);
    if (!standby.ok()) {
      Log(absl::StrCat("cannot stand by: ", standby.status().ToString()));
      if (absl::IsInvalidArgument(standby.status())) return 2;
      if (!absl::IsUnavailable(standby.status())) return 1;
      absl::SleepFor(absl::Seconds(1));
      continue;
    }
    Say(absl::StrCat("STANDBY ", shard, " ", (*standby)->position()));
    Log(absl::StrCat("standing by for cluster ", js.cluster, " at message ",
                     (*standby)->position()));
    // Waits for the lease a second at a time, to notice a signal.
    std::unique_ptr<taskwal::JetStreamLease> lease;
    while (!Stopping() && lease == nullptr) {
      taskwal::JetStreamLease::Options attempt = lease_options;
      attempt.deadline = absl::Now() + absl::Seconds(1);
      absl::StatusOr<std::unique_ptr<taskwal::JetStreamLease>> acquired =
          taskwal::JetStreamLease::Acquire(js, name, attempt);
      if (acquired.ok()) {
        lease = *std::move(acquired);
      } else if (!absl::IsDeadlineExceeded(acquired.status())) {
        Log(absl::StrCat("lease: ", acquired.status().ToString()));
        absl::SleepFor(absl::Seconds(1));
      }
    }
    if (lease == nullptr) return 0;
    absl::StatusOr<std::unique_ptr<taskwal::Engine>> engine =
        (*standby)->Promote();
    standby->reset();
    if (!engine.ok()) {
      Log(absl::StrCat("cannot take over: ", engine.status().ToString()));
      lease->Release().IgnoreError();
      if (absl::IsDataLoss(engine.status())) return 1;
      absl::SleepFor(absl::Seconds(1));
      continue;
    }
    taskwal::JetStreamServer::Options serving = server_options;
    serving.lease = lease.get();
    absl::StatusOr<std::unique_ptr<taskwal::JetStreamServer>> server =
        taskwal::JetStreamServer::Start(engine->get(), js, serving);
    if (!server.ok()) {
      Log(absl::StrCat("cannot serve: ", server.status().ToString()));
      (*engine)->Close().IgnoreError();
      lease->Release().IgnoreError();
      absl::SleepFor(absl::Seconds(1));
      continue;
    }
    Say(absl::StrCat("LEADING ", shard));
    Log(absl::StrCat("leading cluster ", js.cluster, " (",
                     (*engine)->Recovery().records_replayed,
                     " records read at takeover)"));
    // Leads until the lease is lost, the engine fails, or a signal.
    std::string why = "stopped by a signal";
    while (!Stopping()) {
      if (!lease->WaitLost(absl::Milliseconds(200))) {
        why = "the lease was lost";
        break;
      }
      if (absl::Status health = (*engine)->Health(); !health.ok()) {
        why = absl::StrCat("the engine failed: ", health.ToString());
        break;
      }
    }
    Log(absl::StrCat("stepping down: ", why));
    // Closing first ends the calls waiting in ClaimNext.
    (*engine)->Close().IgnoreError();
    (*server)->Stop();
    lease->Release().IgnoreError();
    Say(absl::StrCat("STOPPED ", shard));
  }
  return 0;
}

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "one member of a taskwal cluster on NATS JetStream; see "
      "tools/taskwal_node.cc");
  absl::ParseCommandLine(argc, argv);
  taskwal::JetStreamOptions js;
  js.servers = absl::GetFlag(FLAGS_servers);
  js.cluster = absl::GetFlag(FLAGS_cluster);
  js.replicas = absl::GetFlag(FLAGS_replicas);
  js.shards = absl::GetFlag(FLAGS_shards);
  if (js.shards < 1 || js.shards > 64) {
    Log("--shards must be 1 to 64");
    return 2;
  }
  taskwal::EngineOptions options;
  options.partitions = absl::GetFlag(FLAGS_partitions);
  options.snapshot_every_records = absl::GetFlag(FLAGS_snapshot_every);
  const std::string sync = absl::GetFlag(FLAGS_sync);
  if (sync == "always") {
    options.sync_mode = taskwal::SyncMode::kAlways;
  } else if (sync == "none") {
    options.sync_mode = taskwal::SyncMode::kNone;
  } else {
    Log("--sync must be always or none");
    return 2;
  }
  if (js.servers.empty() || js.cluster.empty()) {
    Log("--servers and --cluster are required");
    return 2;
  }
  std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    name = absl::StrCat(host, ":", getpid());
  }
  taskwal::JetStreamServer::Options server_options;
  server_options.threads = absl::GetFlag(FLAGS_threads);
  server_options.max_claim_wait = absl::GetFlag(FLAGS_max_claim_wait);
  taskwal::JetStreamLease::Options lease_options;
  lease_options.ttl = absl::GetFlag(FLAGS_lease_ttl);
  StartSignalThread();

  std::vector<int> lead;
  const std::string lead_flag = absl::GetFlag(FLAGS_lead);
  if (lead_flag == "all") {
    for (int i = 0; i < js.shards; ++i) lead.push_back(i);
  } else {
    for (absl::string_view part : absl::StrSplit(lead_flag, ',')) {
      int shard = -1;
      if (!absl::SimpleAtoi(part, &shard) || shard < 0 || shard >= js.shards) {
        Log(absl::StrCat("--lead: \"", absl::CHexEscape(part),
                         "\" is not a shard of 0 to ", js.shards - 1));
        return 2;
      }
      lead.push_back(shard);
    }
  }
  // One thread per shard; the first exit code that is not 0 wins. A shard
  // that cannot go on (its stream damaged, say) stops alone: the others
  // stay led.
  std::atomic<int> exit_code{0};
  std::vector<std::thread> threads;
  for (int shard : lead) {
    threads.emplace_back([&, shard] {
      const int code =
          RunShard(shard, options, taskwal::JetStreamShard(js, shard), name,
                   lease_options, server_options);
      int zero = 0;
      if (code != 0) {
        exit_code.compare_exchange_strong(zero, code);
        Say(absl::StrCat("FAILED ", shard));
        Log(absl::StrCat("shard ", shard,
                         " stopped for good; the others go on"));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return exit_code.load();
}
