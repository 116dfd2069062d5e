// A consumer of an installed taskwal's JetStream mode (taskwal/jetstream.h,
// taskwal::jetstream or pkg-config taskwal-jetstream), needing no NATS
// server: examples/consumers/cmake and examples/consumers/pkgconfig both
// compile this file, and tools/cmake_check.sh runs them. It checks that
// OpenJetStreamEngine refuses bad options (kInvalidArgument) and reports
// an unreachable server (kUnavailable, through libnats) as the header says.
//
//   jetstream [URL]   URL: a NATS server nothing listens at
//                     (default nats://127.0.0.1:1)
#include "taskwal/jetstream.h"

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"
#include "taskwal/version.h"

namespace {

// Opens an engine that must fail with `want`; "" on success, else what
// went wrong.
std::string ExpectOpenFails(const taskwal::JetStreamOptions& js,
                            absl::StatusCode want) {
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> engine =
      taskwal::OpenJetStreamEngine(taskwal::EngineOptions(), js);
  if (engine.ok()) return "OpenJetStreamEngine succeeded";
  if (engine.status().code() != want) {
    return "OpenJetStreamEngine: " + engine.status().ToString() +
           " (expected " + absl::StatusCodeToString(want) + ")";
  }
  std::cout << "jetstream: " << engine.status().ToString() << "\n";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  taskwal::JetStreamOptions js;
  js.servers = argc > 1 ? argv[1] : "nats://127.0.0.1:1";
  js.cluster = "consumer";
  js.replicas = 1;
  js.retry_for = absl::Seconds(1);

  taskwal::JetStreamOptions bad = js;
  bad.cluster = "not a cluster name";
  std::string error = ExpectOpenFails(bad, absl::StatusCode::kInvalidArgument);
  if (error.empty()) {
    error = ExpectOpenFails(js, absl::StatusCode::kUnavailable);
  }
  if (!error.empty()) {
    std::cerr << "jetstream: FAIL: " << error << "\n";
    return 1;
  }
  std::cout << "jetstream: taskwal " << TASKWAL_VERSION
            << ": bad options and an unreachable server refused\n";
  return 0;
}
