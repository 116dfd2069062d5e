#ifndef TASKWAL_TOOLS_TASKWAL_CLI_H_
#define TASKWAL_TOOLS_TASKWAL_CLI_H_

// The taskwal command-line tool (tools/taskwal.cc is only its main), as a
// library so tests run it in-process. `taskwal --help` documents the
// commands; the exit statuses are below.

#include <cstdint>
#include <ostream>

#include "api/env.h"

namespace taskwal::tools {

// Exit statuses, as `taskwal --help` documents them.
inline constexpr int kExitOk = 0;
// verify or dump found damage, or the directory is damaged (kDataLoss).
inline constexpr int kExitDamage = 1;
// The directory is held (locked) by another process.
inline constexpr int kExitLocked = 2;
// The request failed: no such task, a state that does not allow it, a
// missing directory, an I/O error.
inline constexpr int kExitFailed = 3;
// Bad command line (sysexits.h EX_USAGE).
inline constexpr int kExitUsage = 64;

struct CliOptions {
  // File system of the data directory. Not owned; nullptr: Env::Default().
  Env* env = nullptr;
  // Whether `err` is a terminal: verify and dump then draw a progress bar
  // on it for large logs.
  bool err_is_terminal = false;
  // Whether `out` is a terminal: dump draws no bar then, since its output
  // would run through it.
  bool out_is_terminal = false;
  // Logs smaller than this get no progress bar.
  uint64_t progress_min_bytes = 8 << 20;
};

// Runs `taskwal` with argv (argv[0] is the program name), writing results
// to `out` and messages to `err`. Returns the exit status. Never exits the
// process and never throws; safe to call from several threads at once
// (each call opens its own engine).
int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err,
           const CliOptions& options);
inline int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  return RunCli(argc, argv, out, err, CliOptions());
}

}  // namespace taskwal::tools

#endif  // TASKWAL_TOOLS_TASKWAL_CLI_H_
