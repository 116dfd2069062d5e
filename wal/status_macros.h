#ifndef TASKWAL_WAL_STATUS_MACROS_H_
#define TASKWAL_WAL_STATUS_MACROS_H_

// The two propagation macros this Abseil (20220623) lacks. Shared by every
// package of the project; wal/ is the lowest layer, so they live here.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TASKWAL_CONCAT_INNER_(a, b) a##b
#define TASKWAL_CONCAT_(a, b) TASKWAL_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` yields a non-OK status.
#define TASKWAL_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status taskwal_status_ = (expr);           \
    if (!taskwal_status_.ok()) return taskwal_status_; \
  } while (0)

// `TASKWAL_ASSIGN_OR_RETURN(auto x, Foo());` declares x from an OK StatusOr,
// or returns the error.
#define TASKWAL_ASSIGN_OR_RETURN(lhs, expr)                                   \
  TASKWAL_ASSIGN_OR_RETURN_IMPL_(TASKWAL_CONCAT_(taskwal_or_, __LINE__), lhs, \
                                 expr)
#define TASKWAL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()

#endif  // TASKWAL_WAL_STATUS_MACROS_H_
