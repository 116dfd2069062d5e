// http_floor: what one request/response on loopback costs this machine
// before taskwald does anything, for the taskwald rows of compare:
//   1. raw TCP: each client thread ping-pongs 200-byte messages with a
//      server thread of its own (blocking send/recv, TCP_NODELAY): the
//      kernel's floor per round trip;
//   2. cpp-httplib (Debian's libcpp-httplib, what taskwald serves with):
//      keep-alive clients POSTing a small JSON body to a handler that
//      answers a constant.
// Prints round trips per second and CPU microseconds (user + system, the
// whole process: clients and server) per round trip, for each client count.
// A lifecycle over HTTP is three round trips (submit, claim, complete), so
// cores / (3 x CPU per round trip) bounds taskwald's lifecycles per second
// from above, whatever its own code costs.
//
//   bazel build --config=opt //benchmarks:http_floor
//   bazel-bin/benchmarks/http_floor [--clients=1,64] [--rounds=20000]
//
// Measures; asserts nothing.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, clients, "1,64", "Client thread counts.");
ABSL_FLAG(int, rounds, 20000, "Round trips per client thread (raw TCP).");
ABSL_FLAG(int, http_rounds, 3000, "Requests per client thread (HTTP).");

namespace {

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

void NoDelay(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void Report(const char* what, int clients, double round_trips,
            absl::Duration wall, double cpu) {
  std::printf("%-8s %4d clients: %9.0f round trips/s  %7.1f us CPU each\n",
              what, clients, round_trips / absl::ToDoubleSeconds(wall),
              cpu / round_trips * 1e6);
}

// Returns false if a socket call failed.
bool RawTcp(int clients, int rounds) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 ||
      bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, SOMAXCONN) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("http_floor: listen");
    if (listener >= 0) close(listener);
    return false;
  }
  constexpr size_t kMessage = 200;
  std::vector<std::thread> servers;
  std::thread acceptor([&] {
    for (int i = 0; i < clients; ++i) {
      const int fd = accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      NoDelay(fd);
      servers.emplace_back([fd] {
        char buffer[kMessage];
        while (recv(fd, buffer, kMessage, MSG_WAITALL) ==
               static_cast<ssize_t>(kMessage)) {
          if (send(fd, buffer, kMessage, 0) < 0) break;
        }
        close(fd);
      });
    }
  });
  const double cpu0 = CpuSeconds();
  const absl::Time start = absl::Now();
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&] {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0 ||
          connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ok = false;
        return;
      }
      NoDelay(fd);
      char buffer[kMessage] = {};
      for (int k = 0; k < rounds; ++k) {
        if (send(fd, buffer, kMessage, 0) < 0 ||
            recv(fd, buffer, kMessage, MSG_WAITALL) !=
                static_cast<ssize_t>(kMessage)) {
          ok = false;
          break;
        }
      }
      close(fd);
    });
  }
  for (std::thread& t : threads) t.join();
  const absl::Duration wall = absl::Now() - start;
  const double cpu = CpuSeconds() - cpu0;
  // A client that never connected leaves accept() waiting: end it.
  shutdown(listener, SHUT_RDWR);
  acceptor.join();
  for (std::thread& t : servers) t.join();
  close(listener);
  if (!ok) {
    std::fprintf(stderr, "http_floor: a raw TCP round trip failed\n");
    return false;
  }
  Report("raw-tcp", clients, static_cast<double>(clients) * rounds, wall, cpu);
  return true;
}

bool Http(int clients, int rounds) {
  httplib::Server server;
  server.new_task_queue = [clients] {
    return new httplib::ThreadPool(static_cast<size_t>(clients) + 4);
  };
  server.set_tcp_nodelay(true);
  server.Post("/v1/tasks", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"task_id\":\"1\",\"deduplicated\":false}",
                    "application/json");
  });
  std::atomic<int> listen_fd{-1};
  server.set_socket_options([&listen_fd](int fd) { listen_fd = fd; });
  const int port = server.bind_to_any_port("127.0.0.1");
  // httplib's compiled-in backlog of 5 drops a burst of connections.
  if (port < 0 || listen(listen_fd.load(), SOMAXCONN) != 0) {
    std::fprintf(stderr, "http_floor: cannot listen\n");
    return false;
  }
  std::thread loop([&server] { server.listen_after_bind(); });
  while (!server.is_running()) absl::SleepFor(absl::Milliseconds(1));
  const std::string body =
      "{\"idempotency_key\":\"order-12345\",\"type\":\"email\","
      "\"payload\":\"aGVsbG8gd29ybGQ=\"}";
  const double cpu0 = CpuSeconds();
  const absl::Time start = absl::Now();
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      for (int k = 0; k < rounds; ++k) {
        httplib::Result res =
            client.Post("/v1/tasks", body, "application/json");
        if (!res || res->status != 200) {
          ok = false;
          break;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const absl::Duration wall = absl::Now() - start;
  const double cpu = CpuSeconds() - cpu0;
  server.stop();
  loop.join();
  if (!ok) {
    std::fprintf(stderr, "http_floor: an HTTP request failed\n");
    return false;
  }
  Report("httplib", clients, static_cast<double>(clients) * rounds, wall, cpu);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::vector<int> counts;
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_clients), ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n < 1 || n > 1024) {
      std::fprintf(stderr, "http_floor: bad --clients\n");
      return 2;
    }
    counts.push_back(n);
  }
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const int http_rounds = absl::GetFlag(FLAGS_http_rounds);
  if (rounds < 1 || http_rounds < 1) {
    std::fprintf(stderr,
                 "http_floor: --rounds and --http_rounds must be >= 1\n");
    return 2;
  }
  std::printf("on %u cores\n", std::thread::hardware_concurrency());
  for (int n : counts) {
    if (!RawTcp(n, rounds) || !Http(n, http_rounds)) return 1;
  }
  return 0;
}
