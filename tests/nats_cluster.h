#ifndef TASKWAL_TESTS_NATS_CLUSTER_H_
#define TASKWAL_TESTS_NATS_CLUSTER_H_

// A local NATS JetStream server or 3-server cluster on 127.0.0.1, for tests:
// real `nats-server -js` processes (Debian's nats-server 2.9.10) that a test
// can kill, pause and restart.
//
//   absl::StatusOr<std::unique_ptr<NatsCluster>> cluster =
//       NatsCluster::Start(3, absl::StrCat(::testing::TempDir(), "/nats"));
//   ASSERT_TRUE(cluster.ok()) << cluster.status();
//   natsConnection_ConnectTo(&nc, (*cluster)->urls().c_str());
//
// Layout under `dir`, per server i: `dir/n<i>/nats-server.conf` (written by
// the fixture), `dir/n<i>/nats-server.log` (the server's stdout and stderr,
// appended across restarts), and the JetStream store `dir/n<i>/jetstream`.
//
// Readiness: a server counts as up once its monitoring endpoint's plain
// `/healthz` answers 200. In 2.9.10 that already includes JetStream: it is
// 503 "JetStream has not established contact with a meta leader" until a
// meta leader exists, and 503 while the server's streams are not current.
// (`/healthz?js-enabled-only=true` is the weaker check, OK as soon as
// JetStream is enabled; it is not used.)
//
// Orphans: every server is forked by one spawner thread that the fixture owns
// for its whole life, and dies by PR_SET_PDEATHSIG (SIGKILL) when that
// thread ends, so no server outlives the process, also when the test crashes
// or aborts (PDEATHSIG follows the thread that forked, hence the dedicated
// thread rather than whichever thread calls Start or Restart). Servers stay
// in the caller's process group, so bazel's kill of a timed-out test's group
// and a terminal's ^C reach them as well. The destructor SIGKILLs and reaps
// every server itself.
//
// Thread safety: safe for concurrent use; calls are serialized (Restart
// holds the fixture for as long as it waits for the server).

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace taskwal::testing {

class ServerSpawner;

class NatsCluster {
 public:
  // How long Start and Restart wait for /healthz. Raft elections in 2.9.10
  // take seconds; the bound is for a loaded 2-core machine.
  static constexpr absl::Duration kReadyTimeout = absl::Seconds(60);
  // A server that exits while Start waits for it (most likely a port taken
  // between choosing it and the server binding it) makes Start retry with
  // fresh ports for every server, this many times in all.
  static constexpr int kStartAttempts = 3;

  // Starts `servers` (1 or 3) `nats-server -js` processes, on free client,
  // route and monitoring ports of 127.0.0.1, named "n0", "n1", ...; three
  // form the cluster "taskwal" with routes to each other. Creates `dir` and
  // the directories above. The server binary is $TASKWAL_NATS_SERVER if set,
  // else /usr/sbin/nats-server. JetStream limits: 256 MiB memory store,
  // 1 GiB file store per server.
  //
  // OK: every server's /healthz is ok (JetStream has a meta leader).
  // kInvalidArgument: `servers` is not 1 or 3, or `dir` contains a quote,
  // backslash or newline (it goes into the config files).
  // kFailedPrecondition: the nats-server binary is missing.
  // kDeadlineExceeded: a server was not ready within kReadyTimeout (the
  // message ends with its log tail).
  // kUnavailable: servers kept exiting while starting (the message ends
  // with the log tail of the last one).
  // kInternal: a system call failed (message names it).
  // On any error every server started is killed and reaped.
  static absl::StatusOr<std::unique_ptr<NatsCluster>> Start(
      int servers, const std::string& dir);

  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  // SIGKILLs and reaps every server it started that still runs (stopped
  // ones too), then ends the spawner thread.
  ~NatsCluster();

  int size() const { return static_cast<int>(configs_.size()); }

  // REQUIRES: 0 <= i < size() (for every method taking a server index).
  // "nats://127.0.0.1:PORT", server i's client URL; fixed for the fixture's
  // life (Restart reuses the ports).
  std::string url(int i) const;
  // Every server's URL, killed ones included, comma-separated: what
  // natsConnection_ConnectTo takes (the client fails over among them).
  std::string urls() const;
  // Server i's monitoring port (http://127.0.0.1:PORT/healthz, /jsz, ...).
  int monitoring_port(int i) const;

  // The server's process id; 0 after Kill(i) until Restart(i). A server
  // that exited by itself keeps its pid until Kill or Restart reaps it.
  pid_t pid(int i) const ABSL_LOCKS_EXCLUDED(mu_);

  // SIGKILLs server i and reaps it. OK: it is gone and pid(i) is 0.
  // kFailedPrecondition: it was not running (already killed).
  // kInternal: kill or waitpid failed.
  absl::Status Kill(int i) ABSL_LOCKS_EXCLUDED(mu_);

  // Sends `signal` to server i without reaping it: SIGSTOP / SIGCONT pause
  // and resume it. A server ended this way (SIGTERM, ...) keeps its pid
  // until Kill(i) or the destructor reaps it.
  // kFailedPrecondition: it is not running. kInvalidArgument: a bad signal.
  absl::Status Stop(int i, int signal) ABSL_LOCKS_EXCLUDED(mu_);

  // Starts server i again with the same ports, config and store, and waits
  // for its /healthz (for a clustered server: it is in contact with the
  // meta leader and its streams are current).
  // OK: it runs and is healthy.
  // kFailedPrecondition: it still runs (Kill it first). A server that
  // exited by itself is reaped and restarted.
  // kDeadlineExceeded / kUnavailable: not healthy in time / it exited (the
  // message ends with its log tail; Restart may be called again).
  // kInternal: a system call failed.
  absl::Status Restart(int i) ABSL_LOCKS_EXCLUDED(mu_);

  // "n0".."n<size-1>" -> index: maps a stream's leader name
  // (jsStreamInfo.Cluster->Leader) to a server. kNotFound for other names.
  absl::StatusOr<int> IndexOf(absl::string_view server_name) const;

  // The last `max_bytes` of server i's log (all its runs), for a failing
  // test to print. An empty string if there is no log yet.
  std::string LogTail(int i, size_t max_bytes = 8192) const;

 private:
  struct ServerConfig {
    std::string name;         // "n0"
    std::string server_dir;   // dir/n0
    std::string config_path;  // dir/n0/nats-server.conf
    std::string log_path;     // dir/n0/nats-server.log
    int client_port = 0;
    int route_port = 0;
    int monitoring_port = 0;
  };

  NatsCluster(std::string binary, std::vector<ServerConfig> configs,
              std::unique_ptr<ServerSpawner> spawner);

  // Writes every config file, forks every server, waits for all /healthz.
  // On error the servers it started are killed and reaped.
  absl::Status StartAll() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SpawnLocked(int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Polls server i's /healthz until 200. kUnavailable if it exits first
  // (it is then reaped), kDeadlineExceeded at `deadline`.
  absl::Status WaitHealthyLocked(int i, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status KillLocked(int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KillAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string binary_;
  // Ports are chosen by Start before the fixture exists and never change.
  const std::vector<ServerConfig> configs_;
  // Forks every server; outlives them all (see the file comment).
  const std::unique_ptr<ServerSpawner> spawner_;

  // Lock order: mu_, then the spawner's own lock.
  mutable absl::Mutex mu_;
  std::vector<pid_t> pids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskwal::testing

#endif  // TASKWAL_TESTS_NATS_CLUSTER_H_
