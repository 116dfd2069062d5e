#ifndef TASKWAL_WIRE_SERVICE_H_
#define TASKWAL_WIRE_SERVICE_H_

// Engine calls as messages (wire/engine.proto), independent of how they
// travel: ServeCall runs one on an Engine; RemoteEngine is an Engine whose
// calls go through a Transport (NATS: wire/nats_service.h) to a ServeCall
// somewhere else.
//
// A call is its method name (the Engine method: "Submit", "ClaimNext",
// ...) and its request message; the answer is a Reply (code, message, and
// on OK the response message). The method table, request -> response:
//   Submit TaskSpec -> SubmitResponse
//   SubmitBatch SubmitBatchRequest -> SubmitBatchResponse
//   Claim ClaimByIdRequest -> ClaimResponse
//   ClaimNext ClaimNextRequest -> ClaimResponse
//   ClaimNextBatch ClaimNextBatchRequest -> ClaimBatchResponse
//   NextDueTime NextDueRequest -> NextDueResponse
//   Complete CompleteRequest -> OkResponse
//   CompleteBatch CompleteBatchRequest -> CompleteBatchResponse
//   Fail FailRequest -> OkResponse
//   Heartbeat HeartbeatRequest -> HeartbeatResponse
//   Retry, Cancel, Delete TaskIdRequest -> OkResponse
//   RetryMatching, CancelMatching, DeleteMatching BulkRequest -> BulkResponse
//   PutSchedule PutScheduleRequest -> Schedule
//   GetSchedule NameRequest -> Schedule
//   DeleteSchedule NameRequest -> OkResponse
//   ListSchedules EmptyRequest -> ListSchedulesResponse
//   Pause, Resume PauseRequest -> OkResponse
//   PausedTypes EmptyRequest -> PausedTypesResponse
//   Get TaskIdRequest -> Task
//   GetByIdempotencyKey KeyRequest -> Task
//   List ListRequest -> ListTasksResponse
//   History TaskIdRequest -> HistoryResponse
//   Stats EmptyRequest -> StatsResponse
//   Snapshot, RunMaintenance, Health EmptyRequest -> OkResponse
//   Recovery EmptyRequest -> RecoveryResponse

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"

namespace taskwal::wire {

struct ServeOptions {
  // The longest a ClaimNext waits, whatever the request asks.
  absl::Duration max_claim_wait = absl::Seconds(30);
  // How long this call already waited in the server's queue: a ClaimNext
  // waits that much less, so that its answer still reaches a caller who
  // waits for the time it asked for.
  absl::Duration queued_for = absl::ZeroDuration();
  // The largest answer that reaches the caller (a NATS message's
  // max_payload); 0: no bound. Then a Submit, SubmitBatch or PutSchedule
  // of a task whose ClaimNext answer could not carry it (its spec and
  // kAnswerRoom, or half of a bound under 32 KiB, over this) is refused
  // (kInvalidArgument), and a RetryMatching,
  // CancelMatching or DeleteMatching changes at most as many tasks as its
  // answer can list (`more` tells the caller to run it again), and a
  // claim's answer is kept within it (service.cc's ClaimAnswer: a long last
  // error cut, a long worker id refused, a task that cannot fit failed for
  // good, saying why); a ClaimNextBatch's claims that its answer has no
  // room left for are released at once (Retry: PENDING again, the attempt
  // not counted; one journal write each, so ask for about as many tasks
  // as fit in a message).
  int64_t max_answer_bytes = 0;
};

// Room in an answer for what a task carries besides its spec: ids, times,
// the claim, a worker id and the last error.
inline constexpr int64_t kAnswerRoom = 16 << 10;

// Whether the call `method` only reads (Get, List, Stats, ...).
bool IsRead(absl::string_view method);

// Runs the call on `engine` and returns the serialized Reply. A request
// that does not parse, or an unknown method, is an INVALID_ARGUMENT or
// UNIMPLEMENTED reply that changes nothing.
std::string ServeCall(Engine& engine, absl::string_view method,
                      absl::string_view request, const ServeOptions& options);

// How a Transport carries one call.
struct CallOptions {
  // Bounds one attempt.
  absl::Duration timeout = absl::Seconds(10);
  // Repeating the call is harmless.
  bool idempotent = false;
  // Tries again for at most this long (the transport's own limit too).
  absl::Duration retry_for = absl::InfiniteDuration();
};

// Carries a call to a ServeCall and back.
class Transport {
 public:
  virtual ~Transport() = default;
  // Sends the request and returns the serialized Reply. The transport may
  // retry an attempt that certainly did not reach a server, and an
  // idempotent call whatever happened, within options.retry_for and its
  // own deadline. kUnavailable / kDeadlineExceeded: no answer.
  virtual absl::StatusOr<std::string> Call(absl::string_view method,
                                           const std::string& request,
                                           const CallOptions& options) = 0;
};

struct RemoteOptions {
  // One attempt of a call waits this long for its answer (a ClaimNext the
  // wait on top, a Snapshot 5 minutes). A ClaimNext looks for a server to take
  // it only within its wait (one attempt for a wait of zero): a shard without a
  // leader does not hold up a ClaimNext over several shards.
  absl::Duration call_timeout = absl::Seconds(10);
};

// An Engine whose calls run elsewhere. Close closes only this client.
// Recovery() returns the server's report (empty if it cannot be reached).
std::unique_ptr<Engine> NewRemoteEngine(std::unique_ptr<Transport> transport,
                                        const RemoteOptions& options);

}  // namespace taskwal::wire

#endif  // TASKWAL_WIRE_SERVICE_H_
