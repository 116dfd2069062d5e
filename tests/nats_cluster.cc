#include "tests/nats_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "httplib.h"

namespace taskwal::testing {
namespace {

constexpr char kDefaultBinary[] = "/usr/sbin/nats-server";
constexpr char kClusterName[] = "taskwal";
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

absl::Status ErrnoError(absl::string_view call, int error) {
  return absl::InternalError(absl::StrCat(call, ": ", std::strerror(error)));
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  return absl::StrCat("ended with wait status ", status);
}

// waitpid without EINTR. Returns waitpid's result; *status is filled when
// it is `pid`.
pid_t WaitPid(pid_t pid, int* status, int options) {
  pid_t result;
  do {
    result = ::waitpid(pid, status, options);
  } while (result < 0 && errno == EINTR);
  return result;
}

// The lowest port Linux gives an outgoing connection (32768 unless
// configured otherwise).
int EphemeralPortsStart() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  if (range >> low && low > 0) return low;
  return 32768;
}

// Binds a TCP socket to 127.0.0.1:port (0: any). Returns the socket, and
// the port bound in *bound; -1 with errno set on failure.
int BindLoopback(int port, int* bound) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  *bound = ntohs(address.sin_port);
  return fd;
}

// `count` distinct ports that were free a moment ago: all are bound at once
// (so none repeats), then released for the servers to take. Another process
// may take one in between; Start retries with fresh ports then. They are
// drawn below the range Linux picks outgoing connections' ports from
// (tools/nats_cluster.sh does the same), so that no connection takes a
// killed server's port before Restart binds it again; bind(0) where that
// range starts too low to leave room.
absl::StatusOr<std::vector<int>> PickFreePorts(int count) {
  constexpr int kLowest = 20000;
  const int below = EphemeralPortsStart();
  std::vector<int> fds;
  std::vector<int> ports;
  absl::Status status;
  std::mt19937 random(std::random_device{}());
  for (int tries = 0; below - kLowest >= 1000 && tries < 1000 &&
                      static_cast<int>(ports.size()) < count;
       ++tries) {
    const int port =
        std::uniform_int_distribution<int>(kLowest, below - 1)(random);
    int bound = 0;
    const int fd = BindLoopback(port, &bound);
    if (fd < 0) continue;  // Taken (or held in TIME_WAIT).
    fds.push_back(fd);
    ports.push_back(bound);
  }
  while (static_cast<int>(ports.size()) < count) {
    int bound = 0;
    const int fd = BindLoopback(0, &bound);
    if (fd < 0) {
      status = ErrnoError("bind 127.0.0.1:0", errno);
      break;
    }
    fds.push_back(fd);
    ports.push_back(bound);
  }
  for (int fd : fds) ::close(fd);
  if (!status.ok()) return status;
  return ports;
}

}  // namespace

// Forks every server from one long-lived thread. PR_SET_PDEATHSIG signals a
// child when the *thread* that forked it ends, not the process; forking from
// the calling thread would kill the servers when, say, a short-lived test
// thread that called Restart exits. This thread lives until the fixture has
// killed its servers, and dies with the process otherwise.
class ServerSpawner {
 public:
  ServerSpawner() : thread_([this] { Loop(); }) {}
  ServerSpawner(const ServerSpawner&) = delete;
  ServerSpawner& operator=(const ServerSpawner&) = delete;

  // REQUIRES: no Spawn call is in progress.
  ~ServerSpawner() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  // Runs argv[0] (an absolute path) with `argv`, stdin from /dev/null and
  // stdout and stderr appended to `log_path`. OK: the child's pid (it may
  // still fail to exec: it then exits with status 127). kInternal: a system
  // call failed.
  absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                              const std::string& log_path)
      ABSL_LOCKS_EXCLUDED(mu_) {
    Request request{&argv, &log_path, absl::InternalError("not run"), false};
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &ServerSpawner::IdleLocked));
    request_ = &request;
    mu_.Await(absl::Condition(&request.done));
    return std::move(request.result);
  }

 private:
  struct Request {
    const std::vector<std::string>* argv;
    const std::string* log_path;
    absl::StatusOr<pid_t> result;
    bool done;  // Written by the spawner thread under mu_.
  };

  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return request_ == nullptr;
  }
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || request_ != nullptr;
  }

  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      Request* request;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &ServerSpawner::HasWorkLocked));
        if (stop_) return;
        request = request_;
      }
      absl::StatusOr<pid_t> result =
          ForkExec(*request->argv, *request->log_path);
      absl::MutexLock lock(&mu_);
      request->result = std::move(result);
      request->done = true;
      request_ = nullptr;
    }
  }

  static absl::StatusOr<pid_t> ForkExec(const std::vector<std::string>& args,
                                        const std::string& log_path) {
    // Everything the child needs is prepared here: between fork and exec
    // it may only make async-signal-safe calls.
    std::vector<char*> argv;
    for (const std::string& arg : args) {
      argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path.c_str(),
                              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) return ErrnoError(absl::StrCat("open ", log_path), errno);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
      const int error = errno;
      ::close(log_fd);
      return ErrnoError("open /dev/null", error);
    }
    rlimit files = {};
    int max_fd = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 &&
        files.rlim_cur != RLIM_INFINITY) {
      max_fd = static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 16));
    }
    sigset_t no_signals;
    sigemptyset(&no_signals);
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid == 0) {
      // SIGKILL when this (the spawner) thread ends; if it already has,
      // getppid() is no longer the test process.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      if (::dup2(null_fd, STDIN_FILENO) < 0 ||
          ::dup2(log_fd, STDOUT_FILENO) < 0 ||
          ::dup2(log_fd, STDERR_FILENO) < 0) {
        ::_exit(126);
      }
      // The test's other descriptors (client sockets without CLOEXEC, ...)
      // must not live on in a server: a peer would never see them close.
      if (::close_range(3, ~0U, 0) != 0) {
        for (int fd = 3; fd < max_fd; ++fd) ::close(fd);
      }
      // Inherited from the spawner thread; a blocked SIGTERM would make
      // Stop(i, SIGTERM) do nothing.
      ::sigprocmask(SIG_SETMASK, &no_signals, nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const int fork_error = errno;
    ::close(log_fd);
    ::close(null_fd);
    if (pid < 0) return ErrnoError("fork", fork_error);
    return pid;
  }

  absl::Mutex mu_;
  Request* request_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Last: the thread starts once the members above are initialized.
  std::thread thread_;
};

NatsCluster::NatsCluster(std::string binary, std::vector<ServerConfig> configs,
                         std::unique_ptr<ServerSpawner> spawner)
    : binary_(std::move(binary)),
      configs_(std::move(configs)),
      spawner_(std::move(spawner)),
      pids_(configs_.size(), 0) {}

NatsCluster::~NatsCluster() {
  absl::MutexLock lock(&mu_);
  KillAllLocked();
}

absl::StatusOr<std::unique_ptr<NatsCluster>> NatsCluster::Start(
    int servers, const std::string& dir) {
  if (servers != 1 && servers != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("NatsCluster runs 1 or 3 servers, not ", servers));
  }
  if (dir.empty() || dir.find_first_of("\"\\\n") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "NatsCluster directory is empty or has a quote, backslash or newline: ",
        dir));
  }
  const char* binary_env = std::getenv("TASKWAL_NATS_SERVER");
  const std::string binary = binary_env != nullptr && *binary_env != '\0'
                                 ? binary_env
                                 : kDefaultBinary;
  if (::access(binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no nats-server at ", binary, " (", std::strerror(errno),
                     "); install Debian's nats-server (tools/setup.sh does)"));
  }
  std::error_code error;
  const std::filesystem::path root = std::filesystem::absolute(dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("absolute path of ", dir, ": ", error.message()));
  }

  absl::Status last_error;
  for (int attempt = 1; attempt <= kStartAttempts; ++attempt) {
    absl::StatusOr<std::vector<int>> ports = PickFreePorts(3 * servers);
    if (!ports.ok()) return ports.status();
    std::vector<ServerConfig> configs(servers);
    for (int i = 0; i < servers; ++i) {
      ServerConfig& config = configs[i];
      config.name = absl::StrCat("n", i);
      config.server_dir = (root / config.name).string();
      config.config_path = config.server_dir + "/nats-server.conf";
      config.log_path = config.server_dir + "/nats-server.log";
      config.client_port = (*ports)[3 * i];
      config.route_port = (*ports)[3 * i + 1];
      config.monitoring_port = (*ports)[3 * i + 2];
    }
    std::unique_ptr<NatsCluster> cluster(new NatsCluster(
        binary, std::move(configs), std::make_unique<ServerSpawner>()));
    last_error = cluster->StartAll();
    if (last_error.ok()) return cluster;
    // kUnavailable: a server exited, most likely over a port taken since
    // PickFreePorts. Anything else would fail again the same way.
    if (!absl::IsUnavailable(last_error)) return last_error;
  }
  return last_error;
}

absl::Status NatsCluster::StartAll() {
  absl::MutexLock lock(&mu_);
  for (const ServerConfig& config : configs_) {
    std::error_code error;
    std::filesystem::create_directories(config.server_dir, error);
    if (error) {
      return absl::InternalError(absl::StrCat(
          "create_directories ", config.server_dir, ": ", error.message()));
    }
    std::string text =
        absl::StrCat("# Written by taskwal::testing::NatsCluster.\n",
                     "server_name: ", config.name, "\n",  //
                     "listen: 127.0.0.1:", config.client_port, "\n",
                     "http: 127.0.0.1:", config.monitoring_port, "\n",
                     "jetstream {\n",  //
                     "  store_dir: \"", config.server_dir, "\"\n",
                     "  max_memory_store: 256MB\n",  //
                     "  max_file_store: 1GB\n",      //
                     "}\n");
    if (configs_.size() > 1) {
      std::vector<std::string> routes;
      for (const ServerConfig& other : configs_) {
        if (other.name == config.name) continue;
        routes.push_back(
            absl::StrCat("nats-route://127.0.0.1:", other.route_port));
      }
      absl::StrAppend(&text, "cluster {\n",                       //
                      "  name: ", kClusterName, "\n",             //
                      "  listen: 127.0.0.1:", config.route_port,  //
                      "\n  routes: [", absl::StrJoin(routes, ", "), "]\n}\n");
    }
    std::ofstream out(config.config_path, std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      return absl::InternalError(
          absl::StrCat("cannot write ", config.config_path));
    }
  }
  absl::Status status;
  for (int i = 0; i < size() && status.ok(); ++i) status = SpawnLocked(i);
  const absl::Time deadline = absl::Now() + kReadyTimeout;
  for (int i = 0; i < size() && status.ok(); ++i) {
    status = WaitHealthyLocked(i, deadline);
  }
  if (!status.ok()) KillAllLocked();
  return status;
}

absl::Status NatsCluster::SpawnLocked(int i) {
  const ServerConfig& config = configs_[i];
  absl::StatusOr<pid_t> pid =
      spawner_->Spawn({binary_, "-c", config.config_path}, config.log_path);
  if (!pid.ok()) return pid.status();
  pids_[i] = *pid;
  return absl::OkStatus();
}

absl::Status NatsCluster::WaitHealthyLocked(int i, absl::Time deadline) {
  httplib::Client client("127.0.0.1", configs_[i].monitoring_port);
  client.set_connection_timeout(0, 300 * 1000);
  client.set_read_timeout(2, 0);
  std::string last_answer = "no answer";
  while (true) {
    int wait_status = 0;
    const pid_t waited = WaitPid(pids_[i], &wait_status, WNOHANG);
    if (waited < 0) return ErrnoError("waitpid", errno);
    if (waited == pids_[i]) {
      pids_[i] = 0;
      return absl::UnavailableError(
          absl::StrCat("nats-server ", configs_[i].name, " ",
                       DescribeWaitStatus(wait_status),
                       " before /healthz was ok; log:\n", LogTail(i)));
    }
    if (httplib::Result result = client.Get("/healthz")) {
      if (result->status == 200) return absl::OkStatus();
      last_answer = absl::StrCat("HTTP ", result->status, " ", result->body);
    } else {
      last_answer = httplib::to_string(result.error());
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "nats-server ", configs_[i].name, " /healthz not ok after ",
          absl::FormatDuration(kReadyTimeout), " (last: ", last_answer,
          "); log:\n", LogTail(i)));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::Status NatsCluster::KillLocked(int i) {
  const pid_t pid = pids_[i];
  if (pid == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("nats-server ", configs_[i].name, " is not running"));
  }
  // A zombie (a server that exited by itself) accepts the signal too.
  if (::kill(pid, SIGKILL) != 0) return ErrnoError("kill", errno);
  int wait_status = 0;
  if (WaitPid(pid, &wait_status, 0) != pid) return ErrnoError("waitpid", errno);
  pids_[i] = 0;
  return absl::OkStatus();
}

void NatsCluster::KillAllLocked() {
  for (int i = 0; i < size(); ++i) {
    // Not running is fine; a failed kill leaves PDEATHSIG as the backstop.
    if (pids_[i] != 0) KillLocked(i).IgnoreError();
  }
}

std::string NatsCluster::url(int i) const {
  return absl::StrCat("nats://127.0.0.1:", configs_[i].client_port);
}

std::string NatsCluster::urls() const {
  std::vector<std::string> all;
  for (int i = 0; i < size(); ++i) all.push_back(url(i));
  return absl::StrJoin(all, ",");
}

int NatsCluster::monitoring_port(int i) const {
  return configs_[i].monitoring_port;
}

pid_t NatsCluster::pid(int i) const {
  absl::MutexLock lock(&mu_);
  return pids_[i];
}

absl::Status NatsCluster::Kill(int i) {
  if (i < 0 || i >= size()) {
    return absl::InvalidArgumentError(absl::StrCat("no server ", i));
  }
  absl::MutexLock lock(&mu_);
  return KillLocked(i);
}

absl::Status NatsCluster::Stop(int i, int signal) {
  if (i < 0 || i >= size()) {
    return absl::InvalidArgumentError(absl::StrCat("no server ", i));
  }
  if (signal <= 0 || signal >= NSIG) {
    return absl::InvalidArgumentError(absl::StrCat("bad signal ", signal));
  }
  absl::MutexLock lock(&mu_);
  if (pids_[i] == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("nats-server ", configs_[i].name, " is not running"));
  }
  if (::kill(pids_[i], signal) != 0) return ErrnoError("kill", errno);
  return absl::OkStatus();
}

absl::Status NatsCluster::Restart(int i) {
  if (i < 0 || i >= size()) {
    return absl::InvalidArgumentError(absl::StrCat("no server ", i));
  }
  absl::MutexLock lock(&mu_);
  if (pids_[i] != 0) {
    int wait_status = 0;
    const pid_t waited = WaitPid(pids_[i], &wait_status, WNOHANG);
    if (waited < 0) return ErrnoError("waitpid", errno);
    if (waited == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "nats-server ", configs_[i].name, " still runs; Kill it first"));
    }
    pids_[i] = 0;
  }
  if (absl::Status status = SpawnLocked(i); !status.ok()) return status;
  absl::Status status = WaitHealthyLocked(i, absl::Now() + kReadyTimeout);
  if (!status.ok() && pids_[i] != 0) KillLocked(i).IgnoreError();
  return status;
}

absl::StatusOr<int> NatsCluster::IndexOf(absl::string_view server_name) const {
  for (int i = 0; i < size(); ++i) {
    if (configs_[i].name == server_name) return i;
  }
  return absl::NotFoundError(
      absl::StrCat("no nats-server named \"", server_name, "\""));
}

std::string NatsCluster::LogTail(int i, size_t max_bytes) const {
  std::ifstream in(configs_[i].log_path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start =
      size > static_cast<std::streamoff>(max_bytes)
          ? size - static_cast<std::streamoff>(max_bytes)
          : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  tail.resize(static_cast<size_t>(in.gcount()));
  return tail;
}

}  // namespace taskwal::testing
