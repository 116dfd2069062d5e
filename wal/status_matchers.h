#ifndef TASKWAL_WAL_STATUS_MATCHERS_H_
#define TASKWAL_WAL_STATUS_MATCHERS_H_

// gMock matchers for absl::Status and absl::StatusOr<T>, which this Abseil
// (20220623) and GoogleTest (1.12) lack. For tests only.
//
//   EXPECT_THAT(env->SyncDir(dir), IsOk());
//   EXPECT_THAT(env->ReadFileToString(path),
//               StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace taskwal::wal {

inline const absl::Status& StatusOf(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::taskwal::wal::StatusOf(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code,
          std::string("has code ") + absl::StatusCodeToString(code)) {
  const absl::Status& status = ::taskwal::wal::StatusOf(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

// The message matcher is any gMock string matcher (HasSubstr, StartsWith...).
MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has code ") + absl::StatusCodeToString(code) +
               " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher)) {
  const absl::Status& status = ::taskwal::wal::StatusOf(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

// Matches an OK absl::StatusOr<T> whose value matches `value_matcher`.
//   EXPECT_THAT(reader.Read(&record), IsOkAndHolds(true));
MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_STATUS_MATCHERS_H_
