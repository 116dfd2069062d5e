// A client process for tests/jetstream_cluster_test: reaches the cluster's
// engine through ConnectJetStreamEngine, from another process than any
// node, and runs submits, claims and completions until it is killed,
// reporting each acknowledged call on stdout, one write per line:
//   S <key> <id>   Submit acknowledged
//   R <key> <attempt>  ClaimNext handed out this task
//   C <key> <attempt>  Complete acknowledged
//   E <message>    a call failed (the client goes on)
// Usage: jetstream_client_child SERVERS CLUSTER NAME [SHARDS]

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"

namespace {

void Say(const std::string& line) {
  const std::string out = line + "\n";
  if (::write(STDOUT_FILENO, out.data(), out.size()) < 0) ::_exit(5);
}

}  // namespace

int main(int argc, char** argv) {
  int shards = 1;
  if ((argc != 4 && argc != 5) ||
      (argc == 5 && !absl::SimpleAtoi(argv[4], &shards))) {
    std::fprintf(stderr,
                 "usage: jetstream_client_child SERVERS CLUSTER NAME "
                 "[SHARDS]\n");
    return 2;
  }
  const std::string name = argv[3];
  taskwal::JetStreamOptions js;
  js.servers = argv[1];
  js.cluster = argv[2];
  js.retry_for = absl::Seconds(60);
  js.shards = shards;
  // A call to a node killed under it waits this long twice over before it
  // is tried again (or, if repeating it could do harm, given up).
  js.ack_timeout = absl::Seconds(1);
  auto engine = taskwal::ConnectJetStreamEngine(js);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(),
                 engine.status().ToString().c_str());
    return 1;
  }
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      taskwal::Engine& e = **engine;
      for (int i = 0;; ++i) {
        taskwal::TaskSpec spec;
        spec.idempotency_key = absl::StrCat(name, "-", w, "-", i);
        spec.type = "job";
        spec.payload = "x";
        auto submitted = e.Submit(spec);
        if (!submitted.ok()) {
          Say(absl::StrCat(
              "E ", absl::StatusCodeToString(submitted.status().code())));
          continue;
        }
        Say(absl::StrCat("S ", spec.idempotency_key, " ", submitted->task_id));
        taskwal::ClaimNextOptions options;
        options.wait = absl::Milliseconds(200);
        auto claim = e.ClaimNext(absl::StrCat(name, "-", w), options);
        if (absl::IsNotFound(claim.status())) continue;
        if (!claim.ok()) {
          Say(absl::StrCat("E ",
                           absl::StatusCodeToString(claim.status().code())));
          continue;
        }
        const std::string& key = claim->task.idempotency_key();
        Say(absl::StrCat("R ", key, " ", claim->attempt));
        const absl::Status done = e.Complete(claim->claim, "ok");
        if (done.ok()) {
          Say(absl::StrCat("C ", key, " ", claim->attempt));
        } else {
          Say(absl::StrCat("E ", absl::StatusCodeToString(done.code())));
        }
      }
    });
  }
  for (std::thread& t : workers) t.join();
  return 0;
}
