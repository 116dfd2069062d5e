#ifndef TASKWAL_ENGINE_UTF8_H_
#define TASKWAL_ENGINE_UTF8_H_

#include "absl/strings/string_view.h"

namespace taskwal::engine {

// Whether `s` is well-formed UTF-8: no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. The same
// rule protobuf applies to proto3 `string` fields when it parses them, so a
// string that passes can be journaled in one and read back.
bool IsValidUtf8(absl::string_view s);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_UTF8_H_
