// For nats_cluster_test's AbortedProcessLeavesNoServerBehind: starts a
// 3-server NatsCluster in DIR, prints "PIDS <pid> <pid> <pid>" on stdout and
// abort()s without running any destructor, so only PR_SET_PDEATHSIG can end
// the servers.
//   nats_cluster_orphan_child DIR

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tests/nats_cluster.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  absl::StatusOr<std::unique_ptr<taskwal::testing::NatsCluster>> cluster =
      taskwal::testing::NatsCluster::Start(3, argv[1]);
  if (!cluster.ok()) {
    std::fprintf(stderr, "%s\n", cluster.status().ToString().c_str());
    return 1;
  }
  std::string line = "PIDS";
  for (int i = 0; i < (*cluster)->size(); ++i) {
    absl::StrAppend(&line, " ", (*cluster)->pid(i));
  }
  line += "\n";
  if (::write(STDOUT_FILENO, line.data(), line.size()) !=
      static_cast<ssize_t>(line.size())) {
    return 1;
  }
  std::abort();
}
