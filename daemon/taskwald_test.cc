// Runs the real taskwald binary: exit statuses, a clean stop on SIGTERM,
// and kill -9 under load from several HTTP clients, after which a restart
// on the same directory must show every acknowledged call's effect.
//
// Servers listen on 127.0.0.1 with a port the kernel picks (--listen=
// 127.0.0.1:0; the port is read from taskwald's stdout line) and are
// stopped by their PID. The only timing here is generous upper bounds on
// waiting; the checks are about state.
#include <fcntl.h>
#include <httplib.h>
#include <nats/nats.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"
#include "taskwal/task.pb.h"
#include "tests/nats_cluster.h"
#include "wire/engine.pb.h"

namespace taskwal::daemon {
namespace {

using ::taskwal::wire::ClaimNextRequest;
using ::taskwal::wire::ClaimResponse;
using ::taskwal::wire::CompleteRequest;
using ::taskwal::wire::SubmitResponse;

// Upper bounds, generous for sanitizer builds on a loaded machine.
constexpr absl::Duration kStartTimeout = absl::Seconds(60);
constexpr absl::Duration kExitTimeout = absl::Seconds(60);
constexpr absl::Duration kProgressTimeout = absl::Seconds(120);

std::string TaskwaldPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/",
                      workspace ? workspace : "taskwal", "/daemon/taskwald");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

template <typename Message>
std::optional<Message> FromJson(const std::string& json) {
  Message message;
  if (!google::protobuf::util::JsonStringToMessage(json, &message).ok()) {
    return std::nullopt;
  }
  return message;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(message, &json).ok());
  return json;
}

// One taskwald process; stdout and stderr go to files. The destructor
// SIGKILLs and reaps it if it still runs, so a failed assertion leaves no
// process holding the directory.
class Taskwald {
 public:
  Taskwald() = default;
  Taskwald(const Taskwald&) = delete;
  Taskwald& operator=(const Taskwald&) = delete;
  ~Taskwald() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int wstatus;
      while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
      }
    }
  }

  absl::Status Start(const std::vector<std::string>& flags,
                     const std::string& log_prefix) {
    std::vector<std::string> args = {TaskwaldPath()};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    out_path_ = log_prefix + ".out";
    err_path_ = log_prefix + ".err";
    const int out_fd = ::open(out_path_.c_str(),
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int err_fd = ::open(err_path_.c_str(),
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0 || err_fd < 0) {
      return absl::InternalError(absl::StrCat("open: ", std::strerror(errno)));
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    }
    if (pid == 0) {
      // Only async-signal-safe calls until exec. Die with the test, too.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      if (::dup2(out_fd, STDOUT_FILENO) < 0) ::_exit(126);
      if (::dup2(err_fd, STDERR_FILENO) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out_fd);
    ::close(err_fd);
    pid_ = pid;
    return absl::OkStatus();
  }

  // The port from the "taskwald listening on http://127.0.0.1:PORT" line.
  absl::StatusOr<int> WaitForPort() {
    const absl::Time deadline = absl::Now() + kStartTimeout;
    constexpr absl::string_view kPrefix =
        "taskwald listening on http://127.0.0.1:";
    while (absl::Now() < deadline) {
      const std::string out = ReadFile(out_path_);
      const size_t at = out.find(kPrefix);
      const size_t end = out.find('\n', at);
      if (at != std::string::npos && end != std::string::npos) {
        int port = 0;
        if (absl::SimpleAtoi(
                out.substr(at + kPrefix.size(), end - at - kPrefix.size()),
                &port)) {
          return port;
        }
      }
      int wstatus = 0;
      if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::InternalError(
            absl::StrCat("taskwald exited before listening: ", Logs()));
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("taskwald did not listen: ", Logs()));
  }

  void Signal(int signal) {
    ASSERT_GT(pid_, 0);
    ASSERT_EQ(::kill(pid_, signal), 0) << std::strerror(errno);
  }

  // The wait status once the process ended, or kDeadlineExceeded.
  absl::StatusOr<int> WaitForExit() {
    const absl::Time deadline = absl::Now() + kExitTimeout;
    while (true) {
      int wstatus = 0;
      const pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return wstatus;
      }
      if (r < 0 && errno != EINTR) {
        return absl::InternalError(
            absl::StrCat("waitpid: ", std::strerror(errno)));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError("taskwald still running");
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  std::string Logs() const {
    return absl::StrCat("stdout:\n", ReadFile(out_path_), "stderr:\n",
                        ReadFile(err_path_));
  }

 private:
  pid_t pid_ = -1;
  std::string out_path_;
  std::string err_path_;
};

class TaskwaldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(
        tmp ? tmp : "/tmp", "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    data_dir_ = root_ + "/data";
  }

  std::vector<std::string> Flags() const {
    return {absl::StrCat("--data_dir=", data_dir_), "--listen=127.0.0.1:0",
            "--sync_mode=always", "--partitions=4"};
  }

  std::string root_;
  std::string data_dir_;
};

int ExitStatus(int wstatus) {
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -WTERMSIG(wstatus);
}

TEST_F(TaskwaldTest, UsageErrorsExitTwo) {
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{
           {"--bogus"},
           {},  // No --data_dir.
           {"--data_dir=" + data_dir_, "--sync_mode=sometimes"},
           {"--data_dir=" + data_dir_, "--listen=127.0.0.1"},
           {"--data_dir=" + data_dir_, "--listen=127.0.0.1:99999"},
           {"--data_dir=" + data_dir_, "--admin_token_file=" + root_ + "/no"},
           {"--data_dir=" + data_dir_, "--retention=a week"},
           {"--data_dir=" + data_dir_, "--max_tasks=-1"},
       }) {
    Taskwald taskwald;
    ASSERT_TRUE(taskwald.Start(flags, root_ + "/usage").ok());
    absl::StatusOr<int> wstatus = taskwald.WaitForExit();
    ASSERT_TRUE(wstatus.ok()) << wstatus.status();
    EXPECT_EQ(ExitStatus(*wstatus), 2) << taskwald.Logs();
  }
}

TEST_F(TaskwaldTest, ServesStopsOnSigtermAndRefusesALockedDirectory) {
  std::ofstream(root_ + "/admin.token") << "admin-secret\n";
  std::vector<std::string> flags = Flags();
  flags.push_back("--admin_token_file=" + root_ + "/admin.token");
  flags.push_back("--retention=168h");
  flags.push_back("--max_tasks=1000");
  Taskwald first;
  ASSERT_TRUE(first.Start(flags, root_ + "/first").ok());
  absl::StatusOr<int> port = first.WaitForPort();
  ASSERT_TRUE(port.ok()) << port.status();

  httplib::Client client("127.0.0.1", *port);
  client.set_read_timeout(60, 0);
  httplib::Result health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  httplib::Result refused = client.Post(
      "/v1/tasks", "{\"idempotency_key\":\"k\"}", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  client.set_bearer_token_auth("admin-secret");
  httplib::Result submitted = client.Post(
      "/v1/tasks", "{\"idempotency_key\":\"k\",\"type\":\"\\u001b[2J<b>\"}",
      "application/json");
  ASSERT_TRUE(submitted);
  EXPECT_EQ(submitted->status, 200) << submitted->body;
  httplib::Result ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  // A second daemon on the same directory cannot open it.
  Taskwald second;
  ASSERT_TRUE(second.Start(Flags(), root_ + "/second").ok());
  absl::StatusOr<int> locked = second.WaitForExit();
  ASSERT_TRUE(locked.ok()) << locked.status();
  EXPECT_EQ(ExitStatus(*locked), 1) << second.Logs();

  first.Signal(SIGTERM);
  absl::StatusOr<int> stopped = first.WaitForExit();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(ExitStatus(*stopped), 0) << first.Logs();
  // No raw terminal escape reached the log.
  EXPECT_EQ(first.Logs().find('\x1b'), std::string::npos);

  // Restarted, the task is there.
  Taskwald again;
  ASSERT_TRUE(again.Start(flags, root_ + "/again").ok());
  port = again.WaitForPort();
  ASSERT_TRUE(port.ok()) << port.status();
  httplib::Client client2("127.0.0.1", *port);
  client2.set_bearer_token_auth("admin-secret");
  httplib::Result got = client2.Get("/v1/tasks/by-key?key=k");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200) << got->body;
  again.Signal(SIGINT);
  stopped = again.WaitForExit();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(ExitStatus(*stopped), 0) << again.Logs();
}

// What the clients were told: only calls answered 200 are in here.
class Acknowledged {
 public:
  void Submitted(const std::string& key, uint64_t id) {
    absl::MutexLock lock(&mu_);
    submitted_[key] = id;
  }
  void Completed(uint64_t id, const std::string& result) {
    absl::MutexLock lock(&mu_);
    completed_[id] = result;
  }
  size_t CompletedCount() {
    absl::MutexLock lock(&mu_);
    return completed_.size();
  }
  std::map<std::string, uint64_t> submitted() {
    absl::MutexLock lock(&mu_);
    return submitted_;
  }
  std::map<uint64_t, std::string> completed() {
    absl::MutexLock lock(&mu_);
    return completed_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, uint64_t> submitted_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::string> completed_ ABSL_GUARDED_BY(mu_);
};

// Submits, claims and completes until a call gets no answer (the server
// died) or `stop` is set.
void Client(int port, int thread, int round, const std::atomic<bool>& stop,
            Acknowledged& acked) {
  httplib::Client client("127.0.0.1", port);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);
  client.set_read_timeout(60, 0);
  for (int i = 0; !stop.load(); ++i) {
    wire::TaskSpec spec;
    spec.set_idempotency_key(absl::StrCat("r", round, "-t", thread, "-", i));
    spec.set_payload("p");
    httplib::Result submitted =
        client.Post("/v1/tasks", ToJson(spec), "application/json");
    if (!submitted) return;
    if (submitted->status == 200) {
      std::optional<SubmitResponse> r =
          FromJson<SubmitResponse>(submitted->body);
      if (r) acked.Submitted(spec.idempotency_key(), r->task_id());
    }
    ClaimNextRequest claim;
    claim.set_worker_id(absl::StrCat("w", thread));
    httplib::Result claimed =
        client.Post("/v1/claims", ToJson(claim), "application/json");
    if (!claimed) return;
    if (claimed->status != 200) continue;
    std::optional<ClaimResponse> c = FromJson<ClaimResponse>(claimed->body);
    if (!c) continue;
    CompleteRequest complete;
    *complete.mutable_claim() = c->claim();
    const std::string result = absl::StrCat("done-", c->claim().task_id());
    complete.set_result(result);
    httplib::Result done = client.Post("/v1/claims/complete", ToJson(complete),
                                       "application/json");
    if (!done) return;
    if (done->status == 200) acked.Completed(c->claim().task_id(), result);
  }
}

TEST_F(TaskwaldTest, KillNineLosesNoAcknowledgedCall) {
  constexpr int kClients = 4;
  constexpr int kRounds = 2;
  constexpr size_t kCompletionsBeforeKill = 40;
  Acknowledged acked;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    Taskwald taskwald;
    ASSERT_TRUE(
        taskwald.Start(Flags(), absl::StrCat(root_, "/round", round)).ok());
    absl::StatusOr<int> port = taskwald.WaitForPort();
    ASSERT_TRUE(port.ok()) << port.status();
    const size_t before = acked.CompletedCount();
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < kClients; ++t) {
      clients.emplace_back([&, t] { Client(*port, t, round, stop, acked); });
    }
    const absl::Time deadline = absl::Now() + kProgressTimeout;
    while (acked.CompletedCount() < before + kCompletionsBeforeKill &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_GE(acked.CompletedCount(), before + kCompletionsBeforeKill)
        << taskwald.Logs();
    // Mid-load: the clients are still sending.
    taskwald.Signal(SIGKILL);
    absl::StatusOr<int> killed = taskwald.WaitForExit();
    stop.store(true);
    for (std::thread& c : clients) c.join();
    ASSERT_TRUE(killed.ok()) << killed.status();
    EXPECT_EQ(ExitStatus(*killed), -SIGKILL) << taskwald.Logs();
  }

  // Restart: every acknowledged submit and completion is there.
  Taskwald taskwald;
  ASSERT_TRUE(taskwald.Start(Flags(), root_ + "/final").ok());
  absl::StatusOr<int> port = taskwald.WaitForPort();
  ASSERT_TRUE(port.ok()) << port.status();
  httplib::Client client("127.0.0.1", *port);
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);
  client.set_read_timeout(60, 0);
  const std::map<std::string, uint64_t> submitted = acked.submitted();
  const std::map<uint64_t, std::string> completed = acked.completed();
  ASSERT_FALSE(submitted.empty());
  for (const auto& [key, id] : submitted) {
    httplib::Result got = client.Get(
        absl::StrCat("/v1/tasks/by-key?key=", key));  // Keys are URL-safe.
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200) << key << ": " << got->body;
    std::optional<Task> task = FromJson<Task>(got->body);
    ASSERT_TRUE(task.has_value());
    EXPECT_EQ(task->id(), id) << key;
  }
  for (const auto& [id, result] : completed) {
    httplib::Result got = client.Get(absl::StrCat("/v1/tasks/", id));
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200) << id << ": " << got->body;
    std::optional<Task> task = FromJson<Task>(got->body);
    ASSERT_TRUE(task.has_value());
    EXPECT_EQ(task->status(), COMPLETED) << id;
    EXPECT_EQ(task->result(), result) << id;
  }
  taskwald.Signal(SIGTERM);
  absl::StatusOr<int> stopped = taskwald.WaitForExit();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(ExitStatus(*stopped), 0) << taskwald.Logs();
}

// With --nats, taskwald is a gateway to a cluster on JetStream: its calls
// go to the cluster's leader (here an engine and JetStreamServer in this
// process, on a real nats-server).
TEST_F(TaskwaldTest, ServesAClusterOnJetStream) {
  absl::StatusOr<std::unique_ptr<testing::NatsCluster>> nats =
      testing::NatsCluster::Start(1, root_ + "/nats");
  ASSERT_TRUE(nats.ok()) << nats.status();
  JetStreamOptions js;
  js.servers = (*nats)->urls();
  js.cluster = "gateway";
  js.replicas = 1;
  EngineOptions options;
  options.partitions = 1;
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      OpenJetStreamEngine(options, js);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
      JetStreamServer::Start(engine->get(), js, JetStreamServer::Options());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string nats_flag = "--nats=" + js.servers;

  Taskwald gateway;
  ASSERT_TRUE(
      gateway
          .Start({nats_flag, "--cluster=gateway", "--listen=127.0.0.1:0"},
                 root_ + "/gateway")
          .ok());
  absl::StatusOr<int> port = gateway.WaitForPort();
  ASSERT_TRUE(port.ok()) << port.status();
  httplib::Client client("127.0.0.1", *port);
  client.set_read_timeout(60, 0);
  httplib::Result submitted =
      client.Post("/v1/tasks", "{\"idempotency_key\":\"k\",\"type\":\"t\"}",
                  "application/json");
  ASSERT_TRUE(submitted);
  EXPECT_EQ(submitted->status, 200) << submitted->body;
  EXPECT_TRUE((*engine)->GetByIdempotencyKey("k").ok());
  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("taskwal_tasks{status=\"pending\"} 1"),
            std::string::npos)
      << metrics->body;
  gateway.Signal(SIGTERM);
  absl::StatusOr<int> stopped = gateway.WaitForExit();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(ExitStatus(*stopped), 0) << gateway.Logs();

  // Flags that belong to a data directory, or a cluster without a name,
  // are usage errors; a cluster that does not exist cannot be served.
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{
           {nats_flag},
           {nats_flag, "--cluster=gateway", "--data_dir=" + data_dir_},
           {nats_flag, "--cluster=gateway", "--partitions=4"},
           {nats_flag, "--cluster=gateway", "--shards=0"},
           {"--cluster=gateway", "--data_dir=" + data_dir_},
       }) {
    Taskwald taskwald;
    ASSERT_TRUE(taskwald.Start(flags, root_ + "/usage").ok());
    absl::StatusOr<int> wstatus = taskwald.WaitForExit();
    ASSERT_TRUE(wstatus.ok()) << wstatus.status();
    EXPECT_EQ(ExitStatus(*wstatus), 2) << taskwald.Logs();
  }
  Taskwald nowhere;
  ASSERT_TRUE(
      nowhere
          .Start({nats_flag, "--cluster=nosuch", "--listen=127.0.0.1:0"},
                 root_ + "/nowhere")
          .ok());
  absl::StatusOr<int> wstatus = nowhere.WaitForExit();
  ASSERT_TRUE(wstatus.ok()) << wstatus.status();
  EXPECT_EQ(ExitStatus(*wstatus), 1) << nowhere.Logs();
  server->reset();
  ASSERT_TRUE((*engine)->Close().ok());
  engine->reset();
  nats_CloseAndWait(5000);
}

}  // namespace
}  // namespace taskwal::daemon
