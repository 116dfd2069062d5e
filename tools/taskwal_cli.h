#ifndef TASKWAL_TOOLS_TASKWAL_CLI_H_
#define TASKWAL_TOOLS_TASKWAL_CLI_H_

// The taskwal command-line tool (tools/taskwal.cc is only its main), as a
// library so tests run it in-process. `taskwal --help` documents the
// commands; the exit statuses are below.

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "taskwal/env.h"

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
// --data_dir is not a taskwal data directory: it has no META file (nor log
// segments or snapshots, which make it a damaged or older one instead),
// and, for commands that change it, which create a data directory only in
// an empty directory, it is not empty either. Nothing is read or written.
inline constexpr int kExitNotDataDir = 4;
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
  // Where `submit --payload_file=-` reads the payload. Not owned; nullptr:
  // std::cin.
  std::istream* in = nullptr;
};

// Runs `taskwal` with argv (argv[0] is the program name), writing results
// to `out` and messages to `err`; under --json a failure too is a JSON
// document on `out` ({"error": {...}}, tools/taskwal_cli.proto). Returns
// the exit status. Never exits the process and never throws; safe to call
// from several threads at once (each call opens its own engine).
int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err,
           const CliOptions& options);
inline int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  return RunCli(argc, argv, out, err, CliOptions());
}

// `text` (task text: a key, type, worker id, error, payload, ...) in a form
// that is safe to print on a terminal and keeps to one line. Printable
// ASCII and well-formed, printable UTF-8 stay as they are; the rest is
// escaped in printable ASCII: \n, \r, \t; \xNN (two hex digits) for the
// other C0 controls, DEL and each byte that is not well-formed UTF-8;
// \uNNNN (\UNNNNNNNN above U+FFFF) for the C1 controls (U+0080..U+009F,
// which terminals act on as escapes), for characters that reorder or hide
// text (the bidirectional controls U+061C, U+200E, U+200F, U+202A..U+202E,
// U+2066..U+2069; U+200B, U+2028, U+2029, U+2060..U+2065, U+FEFF) and for
// code points that the C library's C.UTF-8 locale does not call printable.
// A backslash becomes \\, so the escapes cannot be forged. Every
// human-readable output of the tool shows task text through this rule
// (--json output is escaped as JSON instead).
std::string EscapeForTerminal(absl::string_view text);

}  // namespace taskwal::tools

#endif  // TASKWAL_TOOLS_TASKWAL_CLI_H_
