#ifndef TASKWAL_WAL_POSIX_ENV_H_
#define TASKWAL_WAL_POSIX_ENV_H_

// Internals of the POSIX Env (api/env.h, Env::Default()), exposed for tests.

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace taskwal::wal {

// The Status for a failed system call: "<operation> <path>: <strerror>".
// ENOENT -> kNotFound, EACCES -> kPermissionDenied, ENOSPC and EDQUOT ->
// kResourceExhausted, anything else (EIO included) -> kInternal.
absl::Status PosixErrorToStatus(absl::string_view operation,
                                absl::string_view path, int error_number);

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_POSIX_ENV_H_
