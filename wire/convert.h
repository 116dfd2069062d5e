#ifndef TASKWAL_WIRE_CONVERT_H_
#define TASKWAL_WIRE_CONVERT_H_

// Between api/engine.h's structs and wire/engine.proto's messages, both
// ways. Times are microseconds since the Unix epoch, 0 for "unset" (an
// infinite time); durations microseconds.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "taskwal/engine.h"
#include "wire/engine.pb.h"

namespace taskwal::wire {

// 0 for an infinite time.
int64_t ToMicros(absl::Time t);
// `unset` for 0.
absl::Time FromMicros(int64_t micros, absl::Time unset);

taskwal::TaskSpec FromWire(const TaskSpec& m);
TaskSpec ToWire(const taskwal::TaskSpec& spec);

taskwal::ClaimRef FromWire(const Claim& m);
Claim ToWire(const taskwal::ClaimRef& ref);

taskwal::ClaimedTask FromWire(const ClaimResponse& m);
ClaimResponse ToWire(const taskwal::ClaimedTask& claimed);

// A client's side of ClaimNextBatch and CompleteBatch. kInternal: an
// answer with no claims or more than max_tasks; or with other than
// `completions` statuses.
absl::StatusOr<std::vector<taskwal::ClaimedTask>> FromWire(
    const ClaimBatchResponse& m, size_t max_tasks);
CompleteBatchRequest ToWire(absl::Span<const taskwal::Completion> completions);
absl::StatusOr<std::vector<absl::Status>> FromWire(
    const CompleteBatchResponse& m, size_t completions);

taskwal::BulkFilter FromWire(const BulkRequest& m);
BulkRequest ToWire(const taskwal::BulkFilter& filter);
taskwal::BulkResult FromWire(const BulkResponse& m);
BulkResponse ToWire(const taskwal::BulkResult& result);

// The name is the request's (NameRequest or the HTTP path), not here.
taskwal::ScheduleSpec FromWire(const ScheduleSpec& m);
ScheduleSpec ToWire(const taskwal::ScheduleSpec& spec);

taskwal::ListFilter FromWire(const ListRequest& m);
ListRequest ToWire(const taskwal::ListFilter& filter);
taskwal::ListPage FromWire(const ListTasksResponse& m);
ListTasksResponse ToWire(const taskwal::ListPage& page);

taskwal::EngineStats FromWire(const StatsResponse& m);
StatsResponse ToWire(const taskwal::EngineStats& stats);

taskwal::RecoveryReport FromWire(const RecoveryResponse& m);
RecoveryResponse ToWire(const taskwal::RecoveryReport& report);

// A status as Reply's code and message, and back. An unknown code name
// reads as kUnknown.
void ToWire(const absl::Status& status, Reply* reply);
absl::Status StatusFromWire(const Reply& reply);
// One status of several (CompleteBatchResponse): code "OK" for OK.
Error ErrorToWire(const absl::Status& status);
absl::Status StatusFromWire(const Error& error);
// "NOT_FOUND" -> kNotFound; false for an unknown name.
bool ParseStatusCode(absl::string_view name, absl::StatusCode* code);

}  // namespace taskwal::wire

#endif  // TASKWAL_WIRE_CONVERT_H_
