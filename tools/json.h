#ifndef TASKWAL_TOOLS_JSON_H_
#define TASKWAL_TOOLS_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace taskwal::tools {

// A JSON string literal (RFC 8259) of s: quotes, backslashes and control
// characters escaped; other bytes as they are. Shared by the taskwal tool's
// --json output and the benchmark reports.
std::string JsonQuote(absl::string_view s);

}  // namespace taskwal::tools

#endif  // TASKWAL_TOOLS_JSON_H_
