#ifndef TASKWAL_TOOLS_TESTING_CLI_H_
#define TASKWAL_TOOLS_TESTING_CLI_H_

// For the taskwal tool's tests: runs RunCli as a command line would and
// keeps what it printed, and the task spec the tests submit.

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "taskwal/engine.h"
#include "tools/taskwal_cli.h"

namespace taskwal::tools::testing_cli {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

// `taskwal ARGS...`: its exit status, stdout and stderr.
inline CliResult RunTaskwal(std::vector<std::string> args,
                            const CliOptions& options = CliOptions()) {
  args.insert(args.begin(), "taskwal");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::ostringstream out;
  std::ostringstream err;
  CliResult r;
  r.code =
      RunCli(static_cast<int>(argv.size()), argv.data(), out, err, options);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// A task of `key` and `type`, its payload "payload of <key>".
inline TaskSpec Spec(const std::string& key, const std::string& type,
                     uint32_t max_attempts = 3) {
  TaskSpec spec;
  spec.idempotency_key = key;
  spec.type = type;
  spec.payload = absl::StrCat("payload of ", key);
  spec.max_attempts = max_attempts;
  return spec;
}

}  // namespace taskwal::tools::testing_cli

#endif  // TASKWAL_TOOLS_TESTING_CLI_H_
