// The NatsCluster fixture against real nats-server processes, driven through
// the NATS C client: fenced publishes, a killed stream leader, a restart, and
// no server left behind by a process that aborts.

#include "tests/nats_cluster.h"

#include <fcntl.h>
#include <nats/nats.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/status_matchers.h"

namespace taskwal::testing {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::IsOkAndHolds;
using ::taskwal::wal::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// JetStream's "wrong last sequence" (JSStreamWrongLastSequenceErrF); cnats
// 3.4.1 has no constant for it.
constexpr jsErrCode kWrongLastSequence = static_cast<jsErrCode>(10071);
constexpr char kStream[] = "ORDERS";
constexpr char kSubject[] = "orders.new";
// Bounds for loops that wait for the cluster (a leader election takes
// seconds in 2.9.10); they end the test instead of hanging it, and are never
// asserted as timings.
constexpr absl::Duration kRecoveryBound = absl::Seconds(90);

// Releases the NATS library's threads and memory once, after every test
// (leak checkers would otherwise see them).
class NatsLibraryEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { nats_CloseAndWait(5000); }
};
::testing::Environment* const kNatsLibrary =
    ::testing::AddGlobalTestEnvironment(new NatsLibraryEnvironment);

std::string FreshDir(absl::string_view name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

std::string NatsError(natsStatus status) {
  return absl::StrCat(natsStatus_GetText(status), ": ",
                      nats_GetLastError(nullptr));
}

struct PublishResult {
  natsStatus status = NATS_OK;
  jsErrCode error = static_cast<jsErrCode>(0);
  uint64_t sequence = 0;
  bool duplicate = false;
  std::string text;
};

// One client connection (to every URL of the cluster) and its JetStream
// context. Not safe for concurrent use.
class JetStreamClient {
 public:
  static absl::StatusOr<std::unique_ptr<JetStreamClient>> Connect(
      const std::string& urls) {
    std::unique_ptr<JetStreamClient> client(new JetStreamClient);
    std::vector<std::string> servers = absl::StrSplit(urls, ',');
    std::vector<const char*> server_ptrs;
    for (const std::string& server : servers) {
      server_ptrs.push_back(server.c_str());
    }
    natsOptions* options = nullptr;
    natsStatus s = natsOptions_Create(&options);
    if (s == NATS_OK) {
      s = natsOptions_SetServers(options, server_ptrs.data(),
                                 static_cast<int>(server_ptrs.size()));
    }
    if (s == NATS_OK) s = natsOptions_SetTimeout(options, 2000);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(options, 10000);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(options, 100);
    if (s == NATS_OK) s = natsConnection_Connect(&client->nc_, options);
    natsOptions_Destroy(options);
    jsOptions js_options;
    if (s == NATS_OK) s = jsOptions_Init(&js_options);
    if (s == NATS_OK) {
      js_options.Wait = 5000;
      s = natsConnection_JetStream(&client->js_, client->nc_, &js_options);
    }
    if (s != NATS_OK) {
      return absl::UnavailableError(
          absl::StrCat("connect to ", urls, ": ", NatsError(s)));
    }
    return client;
  }

  JetStreamClient(const JetStreamClient&) = delete;
  JetStreamClient& operator=(const JetStreamClient&) = delete;
  ~JetStreamClient() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  absl::Status AddStream(int replicas) {
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    const char* subjects[] = {kSubject};
    config.Name = kStream;
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = replicas;
    // A replicated stream's creation can time out while its servers elect
    // its leader: tried again (a try that created it meanwhile finds it).
    const absl::Time give_up = absl::Now() + kRecoveryBound;
    natsStatus s;
    jsErrCode error;
    for (int attempt = 0;; ++attempt) {
      jsStreamInfo* info = nullptr;
      error = static_cast<jsErrCode>(0);
      s = js_AddStream(&info, js_, &config, nullptr, &error);
      jsStreamInfo_Destroy(info);
      if (attempt > 0 && error == JSStreamNameExistErr) return absl::OkStatus();
      const bool retryable = s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ||
                             error == JSClusterNotAvailErr;
      if (s == NATS_OK || !retryable || absl::Now() >= give_up) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (s != NATS_OK) {
      return absl::UnavailableError(absl::StrCat("add stream (JetStream error ",
                                                 error, "): ", NatsError(s)));
    }
    return absl::OkStatus();
  }

  // The stream's leader server name and last sequence. A standalone
  // server (no cluster block) sends no cluster info: the name is empty.
  absl::StatusOr<std::pair<std::string, uint64_t>> StreamLeader() {
    jsStreamInfo* info = nullptr;
    jsErrCode error = static_cast<jsErrCode>(0);
    const natsStatus s = js_GetStreamInfo(&info, js_, kStream, nullptr, &error);
    if (s != NATS_OK) {
      return absl::UnavailableError(absl::StrCat(
          "stream info (JetStream error ", error, "): ", NatsError(s)));
    }
    std::pair<std::string, uint64_t> result;
    if (info->Cluster != nullptr && info->Cluster->Leader != nullptr) {
      result.first = info->Cluster->Leader;
    }
    result.second = info->State.LastSeq;
    jsStreamInfo_Destroy(info);
    return result;
  }

  // Publishes `data` with Nats-Expected-Last-Sequence (set as a header:
  // cnats 3.4.1 does not send jsPubOptions.ExpectLastSeq = 0) and a
  // Nats-Msg-Id, so that a retry of a publish whose ack was lost is
  // answered as a duplicate instead of refused as a wrong sequence.
  PublishResult Publish(const std::string& data, uint64_t expected_last,
                        const std::string& msg_id) {
    PublishResult result;
    natsMsg* msg = nullptr;
    result.status = natsMsg_Create(&msg, kSubject, nullptr, data.data(),
                                   static_cast<int>(data.size()));
    if (result.status == NATS_OK) {
      result.status = natsMsgHeader_Set(msg, "Nats-Expected-Last-Sequence",
                                        absl::StrCat(expected_last).c_str());
    }
    if (result.status == NATS_OK) {
      result.status = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
    }
    jsPubAck* ack = nullptr;
    if (result.status == NATS_OK) {
      result.status = js_PublishMsg(&ack, js_, msg, nullptr, &result.error);
    }
    if (result.status == NATS_OK) {
      result.sequence = ack->Sequence;
      result.duplicate = ack->Duplicate;
    } else {
      result.text = NatsError(result.status);
    }
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(msg);
    return result;
  }

  // Publish, retried while the cluster has no stream leader ("no
  // responders", timeouts) up to kRecoveryBound. OK: the sequence stored.
  absl::StatusOr<uint64_t> PublishWithRetry(const std::string& data,
                                            uint64_t expected_last,
                                            const std::string& msg_id) {
    const absl::Time give_up = absl::Now() + kRecoveryBound;
    PublishResult result;
    int attempts = 0;
    while (true) {
      ++attempts;
      result = Publish(data, expected_last, msg_id);
      if (result.status == NATS_OK) return result.sequence;
      const bool retryable = result.status == NATS_NO_RESPONDERS ||
                             result.status == NATS_TIMEOUT ||
                             result.status == NATS_CONNECTION_DISCONNECTED ||
                             result.status == NATS_CONNECTION_CLOSED;
      if (!retryable || absl::Now() >= give_up) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return absl::UnavailableError(absl::StrCat(
        "publish failed after ", attempts, " attempts: JetStream error ",
        result.error, ", ", result.text));
  }

 private:
  JetStreamClient() = default;

  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

std::string AllLogs(NatsCluster& cluster) {
  std::string logs;
  for (int i = 0; i < cluster.size(); ++i) {
    absl::StrAppend(&logs, "\n--- n", i, " log tail:\n", cluster.LogTail(i));
  }
  return logs;
}

// Fenced appends to a fresh stream: 1 and 2 land, a stale expectation is
// refused with 10071 and stores nothing.
void PublishFenced(JetStreamClient& client) {
  EXPECT_THAT(client.PublishWithRetry("first", 0, "m1"), IsOkAndHolds(1u));
  EXPECT_THAT(client.PublishWithRetry("second", 1, "m2"), IsOkAndHolds(2u));
  const PublishResult stale = client.Publish("stale", 1, "m-stale");
  EXPECT_EQ(stale.status, NATS_ERR) << stale.text;
  EXPECT_EQ(stale.error, kWrongLastSequence) << stale.text;
  EXPECT_THAT(stale.text, HasSubstr("wrong last sequence"));
}

class NatsClusterTest : public ::testing::Test {};

TEST_F(NatsClusterTest, OneServerFencesPublishesAndSurvivesRestart) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> started =
      NatsCluster::Start(1, FreshDir("one"));
  ASSERT_THAT(started, IsOk());
  NatsCluster& cluster = **started;
  ASSERT_EQ(cluster.size(), 1);
  EXPECT_EQ(cluster.urls(), cluster.url(0));
  EXPECT_THAT(cluster.url(0), HasSubstr("nats://127.0.0.1:"));
  EXPECT_GT(cluster.pid(0), 0);

  absl::StatusOr<std::unique_ptr<JetStreamClient>> client =
      JetStreamClient::Connect(cluster.urls());
  ASSERT_THAT(client, IsOk());
  ASSERT_THAT((*client)->AddStream(1), IsOk()) << AllLogs(cluster);
  PublishFenced(**client);

  absl::StatusOr<std::pair<std::string, uint64_t>> leader =
      (*client)->StreamLeader();
  ASSERT_THAT(leader, IsOk());
  EXPECT_EQ(leader->first, "");
  EXPECT_EQ(leader->second, 2u);

  ASSERT_THAT(cluster.Kill(0), IsOk());
  EXPECT_EQ(cluster.pid(0), 0);
  ASSERT_THAT(cluster.Restart(0), IsOk());
  EXPECT_GT(cluster.pid(0), 0);
  // The file store kept the stream: the fence continues at 2.
  EXPECT_THAT((*client)->PublishWithRetry("third", 2, "m3"), IsOkAndHolds(3u))
      << AllLogs(cluster);
}

TEST_F(NatsClusterTest, ThreeServersElectNewStreamLeaderAfterKill) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> started =
      NatsCluster::Start(3, FreshDir("three"));
  ASSERT_THAT(started, IsOk());
  NatsCluster& cluster = **started;
  ASSERT_EQ(cluster.size(), 3);
  EXPECT_THAT(std::vector<std::string>(absl::StrSplit(cluster.urls(), ',')),
              SizeIs(3));

  absl::StatusOr<std::unique_ptr<JetStreamClient>> client =
      JetStreamClient::Connect(cluster.urls());
  ASSERT_THAT(client, IsOk());
  ASSERT_THAT((*client)->AddStream(3), IsOk()) << AllLogs(cluster);
  PublishFenced(**client);

  absl::StatusOr<std::pair<std::string, uint64_t>> leader =
      (*client)->StreamLeader();
  ASSERT_THAT(leader, IsOk());
  ASSERT_NE(leader->first, "");
  absl::StatusOr<int> leader_index = cluster.IndexOf(leader->first);
  ASSERT_THAT(leader_index, IsOk());
  ASSERT_THAT(cluster.Kill(*leader_index), IsOk());

  // The two others elect a new stream leader; the fence still holds.
  EXPECT_THAT((*client)->PublishWithRetry("after kill", 2, "m3"),
              IsOkAndHolds(3u))
      << AllLogs(cluster);
  const PublishResult stale = (*client)->Publish("stale", 2, "m-stale2");
  EXPECT_EQ(stale.error, kWrongLastSequence) << stale.text;

  ASSERT_THAT(cluster.Restart(*leader_index), IsOk()) << AllLogs(cluster);
  EXPECT_THAT((*client)->PublishWithRetry("after restart", 3, "m4"),
              IsOkAndHolds(4u))
      << AllLogs(cluster);
}

TEST_F(NatsClusterTest, ControlsRefuseWhatTheStateForbids) {
  EXPECT_THAT(NatsCluster::Start(2, FreshDir("two")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(NatsCluster::Start(1, "/tmp/a\"b"),
              StatusIs(absl::StatusCode::kInvalidArgument));

  absl::StatusOr<std::unique_ptr<NatsCluster>> started =
      NatsCluster::Start(1, FreshDir("controls"));
  ASSERT_THAT(started, IsOk());
  NatsCluster& cluster = **started;
  EXPECT_THAT(cluster.IndexOf("n0"), IsOkAndHolds(0));
  // Its ports are below those Linux gives outgoing connections, so none
  // can take a killed server's port before it restarts.
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int ephemeral = 0;
  if (range >> ephemeral && ephemeral >= 21000) {
    EXPECT_LT(cluster.monitoring_port(0), ephemeral);
    const std::string url = cluster.url(0);
    int client_port = 0;
    ASSERT_TRUE(absl::SimpleAtoi(url.substr(url.rfind(':') + 1), &client_port))
        << url;
    EXPECT_LT(client_port, ephemeral) << url;
  }
  EXPECT_THAT(cluster.IndexOf("n1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(cluster.Restart(0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster.Kill(1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster.Stop(0, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  // 2.9 logs it at the very end of its start, after /healthz can answer.
  const absl::Time logged_by = absl::Now() + kRecoveryBound;
  while (!absl::StrContains(cluster.LogTail(0), "Server is ready") &&
         absl::Now() < logged_by) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT(cluster.LogTail(0), HasSubstr("Server is ready"));

  // SIGSTOP pauses the server ('T' in /proc/PID/stat), SIGCONT resumes it.
  const pid_t pid = cluster.pid(0);
  ASSERT_THAT(cluster.Stop(0, SIGSTOP), IsOk());
  const auto state = [pid] {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    return paren == std::string::npos || paren + 2 >= stat.size()
               ? '?'
               : stat[paren + 2];
  };
  const absl::Time give_up = absl::Now() + kRecoveryBound;
  while (state() != 'T' && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(state(), 'T');
  ASSERT_THAT(cluster.Stop(0, SIGCONT), IsOk());
  EXPECT_EQ(cluster.pid(0), pid);

  ASSERT_THAT(cluster.Kill(0), IsOk());
  EXPECT_EQ(cluster.pid(0), 0);
  EXPECT_THAT(cluster.Kill(0), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster.Stop(0, SIGCONT),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// True once `pid` no longer names a running nats-server: no such process, a
// zombie (dead, waiting for a reaper that is not us), or a reused pid.
bool ServerGone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(stat_file)),
                   std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos && paren + 2 < stat.size() &&
      (stat[paren + 2] == 'Z' || stat[paren + 2] == 'X')) {
    return true;
  }
  std::ifstream cmdline_file(absl::StrCat("/proc/", pid, "/cmdline"));
  std::string cmdline((std::istreambuf_iterator<char>(cmdline_file)),
                      std::istreambuf_iterator<char>());
  return !stat.empty() && cmdline.find("nats-server") == std::string::npos;
}

std::string OrphanChildPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/",
                      workspace ? workspace : "taskwal",
                      "/tests/nats_cluster_orphan_child");
}

TEST_F(NatsClusterTest, AbortedProcessLeavesNoServerBehind) {
  const std::string child_path = OrphanChildPath();
  const std::string dir = FreshDir("orphans");
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
  std::vector<char*> argv = {const_cast<char*>(child_path.c_str()),
                             const_cast<char*>(dir.c_str()), nullptr};
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    if (::dup2(fds[1], STDOUT_FILENO) < 0) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);

  // The child prints "PIDS <pid> <pid> <pid>" and aborts; read to EOF.
  std::string output;
  const absl::Time give_up = absl::Now() + kRecoveryBound;
  while (absl::Now() < give_up) {
    pollfd readable = {fds[0], POLLIN, 0};
    if (::poll(&readable, 1, 100) <= 0) continue;
    char buffer[256];
    const ssize_t n = ::read(fds[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    output.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  ::kill(child, SIGKILL);  // Only matters if it hung.
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGABRT)
      << "child wait status " << wait_status << ", output: " << output;

  std::vector<absl::string_view> words =
      absl::StrSplit(output, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  ASSERT_EQ(words.size(), 4u) << output;
  ASSERT_EQ(words[0], "PIDS") << output;
  for (size_t i = 1; i < words.size(); ++i) {
    pid_t pid = 0;
    ASSERT_TRUE(absl::SimpleAtoi(words[i], &pid)) << output;
    ASSERT_GT(pid, 0);
    while (!ServerGone(pid) && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_TRUE(ServerGone(pid)) << "nats-server " << pid << " outlived "
                                 << "the process that started it";
  }
}

}  // namespace
}  // namespace taskwal::testing
