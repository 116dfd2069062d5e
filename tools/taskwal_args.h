#ifndef TASKWAL_TOOLS_TASKWAL_ARGS_H_
#define TASKWAL_TOOLS_TASKWAL_ARGS_H_

// Command-line parsing for the taskwal tool: flags declared per command, so
// each command rejects flags it does not know and prints its own help.
// absl/flags is process-global and exits on errors; this parser returns
// errors instead, so the tool can run in-process in tests.
//
// Syntax: "--name=value" or "--name value" (one dash works too); a boolean
// flag is "--name", "--name=true" or "--name=false". "--" ends the flags:
// every later argument is positional.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace taskwal::tools {

struct FlagSpec {
  std::string name;  // Without dashes.
  // Placeholder of the value in help ("N", "KEY"); empty for a boolean flag.
  std::string value_name;
  std::string help;
  bool is_bool() const { return value_name.empty(); }
};

struct ParsedArgs {
  // Flag name to its value as given ("true"/"false" for a boolean flag).
  // The last occurrence wins.
  std::map<std::string, std::string> flags;
  std::vector<std::string> positional;

  bool Has(absl::string_view name) const;
  // The value, or `fallback` when the flag was not given.
  std::string Get(absl::string_view name,
                  absl::string_view fallback = "") const;
  // A boolean flag: true when given as "--name" or "--name=true".
  bool GetBool(absl::string_view name) const;
};

// Parses args (no program name) against specs.
// stop_at_positional: stop at the first positional argument and leave it
// and everything after it in `positional` unparsed (for global flags that
// precede a command).
// kInvalidArgument, with a message naming the argument: an unknown flag, a
// missing value, a boolean flag with a value other than true/false.
absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args,
                                     absl::Span<const FlagSpec> specs,
                                     bool stop_at_positional = false);

// Numeric flag values. kInvalidArgument names the flag and the value.
absl::StatusOr<uint64_t> ParseUint64(absl::string_view flag,
                                     absl::string_view value);
absl::StatusOr<int64_t> ParseInt64(absl::string_view flag,
                                   absl::string_view value);

// Help lines for specs: "  --name=VALUE  help", aligned.
std::string FlagHelp(absl::Span<const FlagSpec> specs);

}  // namespace taskwal::tools

#endif  // TASKWAL_TOOLS_TASKWAL_ARGS_H_
