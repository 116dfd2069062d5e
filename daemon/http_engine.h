#ifndef TASKWAL_DAEMON_HTTP_ENGINE_H_
#define TASKWAL_DAEMON_HTTP_ENGINE_H_

// An Engine whose calls go to a running taskwald over its HTTP/JSON API
// (daemon/http_api.h lists the routes), with cpp-httplib's client: what
// `taskwal --server=URL` uses, and what a program in another process uses
// to submit, claim and operate tasks of a daemon.
//
// Every call is one request (ClaimNext: see below) on a kept-alive
// connection. A call's codes are the server engine's codes, carried in the
// JSON Error body and returned as they are (code and message). On top of
// api/engine.h's codes:
//   kUnavailable      no answer: the server could not be reached, the
//                     connection broke, or no answer came within
//                     read_timeout. A mutating call may or may not have
//                     happened then (Submit and Complete are safe to
//                     repeat). Also: a proxy's 502, 503 or 504 without a
//                     taskwald Error body.
//   kUnauthenticated  no or a wrong bearer token (HTTP 401).
//   kPermissionDenied the read token on a call that changes something.
//   kInternal         an answer that is not what the API sends (not JSON,
//                     or not the call's message); the message shows it.
// Calls are carried as api/engine.h says, with these deviations:
//   - Close() closes this client only; the server's engine runs on. It
//     wakes this client's waiting ClaimNext calls (kCancelled) by closing
//     their connections; a task the server claimed for such a call just
//     then stays CLAIMED until its lease runs out. Calls in flight on
//     other threads run to their end.
//   - ClaimNext waits at most the server's max_claim_wait per request;
//     when that is shorter than options.wait, the client asks again until
//     options.wait has passed (as long as the server waited at least 50
//     ms, so a server that does not long-poll is not asked in a loop).
//   - Health(): OK when the server's engine takes writes (GET /readyz);
//     kCancelled after Close; kUnavailable when it does not, the sticky
//     error included (/readyz does not tell the sticky kInternal apart
//     from a closed engine; the message says which), or when the server
//     does not answer; kUnauthenticated for a missing or wrong token.
//   - Recovery() returns the server's report (GET /v1/recovery), or an
//     empty one when the server cannot be reached.
//   - Times and durations travel as microseconds (wire/convert.h): a
//     BulkFilter bound at the Unix epoch or in the infinite past reads as
//     "no bound". A FailOptions::retry_after of infinity is refused here
//     (kInvalidArgument), since the server could not tell it from a long
//     finite delay.
//
// Thread safety: safe for concurrent use. Each call takes a connection of
// its own (an idle kept-alive one, or a new one), so a ClaimNext long poll
// never holds up another call.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace httplib {
class Client;
}  // namespace httplib

namespace taskwal::daemon {

struct HttpEngineOptions {
  // Sent as "Authorization: Bearer <token>" on every request; empty: none.
  // Printable ASCII without spaces.
  std::string bearer_token;
  // How long connecting may take. Positive.
  absl::Duration connect_timeout = absl::Seconds(5);
  // How long a request waits for its answer (ClaimNext: its wait on top).
  // Positive.
  absl::Duration read_timeout = absl::Seconds(30);
  // Idle kept-alive connections kept for later calls; more are closed.
  size_t max_idle_connections = 8;
};

// The parts of a taskwald URL.
struct HttpEndpoint {
  std::string host;  // A name, an IPv4 address, or an IPv6 one without [].
  int port = 80;
};

// Parses "http://HOST[:PORT][/]" (HOST a name, IPv4 address or [IPv6]).
// kInvalidArgument: another scheme (taskwald serves plain HTTP), a path, a
// query, user info, or a port outside [1, 65535].
absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url);

class HttpEngine final : public Engine {
 public:
  // Use ConnectHttpEngine. `url` is only for messages.
  HttpEngine(HttpEndpoint endpoint, std::string url, HttpEngineOptions options);
  // Closes the client (see Close).
  ~HttpEngine() override;

  absl::Status Close() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<SubmitResult> Submit(const TaskSpec& spec) override;
  absl::StatusOr<std::vector<SubmitResult>> SubmitBatch(
      absl::Span<const TaskSpec> specs) override;
  absl::StatusOr<ClaimedTask> Claim(uint64_t task_id,
                                    absl::string_view worker_id,
                                    absl::Duration lease) override;
  absl::StatusOr<ClaimedTask> ClaimNext(
      absl::string_view worker_id, const ClaimNextOptions& options) override;
  absl::StatusOr<std::vector<ClaimedTask>> ClaimNextBatch(
      absl::string_view worker_id, const ClaimNextOptions& options,
      size_t max_tasks) override;
  absl::StatusOr<std::optional<absl::Time>> NextDueTime(
      absl::string_view type) override;
  absl::Status Complete(const ClaimRef& claim,
                        absl::string_view result) override;
  absl::StatusOr<std::vector<absl::Status>> CompleteBatch(
      absl::Span<const Completion> completions) override;
  absl::Status Fail(const ClaimRef& claim, absl::string_view error) override;
  absl::Status Fail(const ClaimRef& claim, absl::string_view error,
                    const FailOptions& options) override;
  absl::StatusOr<absl::Time> Heartbeat(const ClaimRef& claim,
                                       absl::Duration extension) override;
  absl::Status Retry(uint64_t task_id) override;
  absl::Status Cancel(uint64_t task_id) override;
  absl::Status Delete(uint64_t task_id) override;
  absl::StatusOr<BulkResult> RetryMatching(const BulkFilter& filter) override;
  absl::StatusOr<BulkResult> CancelMatching(const BulkFilter& filter) override;
  absl::StatusOr<BulkResult> DeleteMatching(const BulkFilter& filter) override;
  absl::StatusOr<Schedule> PutSchedule(const ScheduleSpec& spec) override;
  absl::Status DeleteSchedule(absl::string_view name) override;
  absl::StatusOr<Schedule> GetSchedule(absl::string_view name) override;
  absl::StatusOr<std::vector<Schedule>> ListSchedules() override;
  absl::Status Pause(absl::string_view type) override;
  absl::Status Resume(absl::string_view type) override;
  absl::StatusOr<std::vector<std::string>> PausedTypes() override;
  absl::StatusOr<Task> Get(uint64_t task_id) override;
  absl::StatusOr<Task> GetByIdempotencyKey(absl::string_view key) override;
  absl::StatusOr<ListPage> List(const ListFilter& filter) override;
  absl::StatusOr<std::vector<HistoryEntry>> History(uint64_t task_id) override;
  absl::StatusOr<EngineStats> Stats() override;
  absl::Status Snapshot() override;
  RecoveryReport Recovery() const override;
  absl::Status Health() const override;
  absl::Status RunMaintenance() override;

  // GET /healthz, which needs no token. OK: a taskwald answers.
  // kUnavailable otherwise (the message says what answered instead).
  // kCancelled: closed.
  absl::Status CheckServer() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // How a request is sent.
  struct CallOptions {
    // May be sent again, once, if a kept-alive connection turns out to be
    // closed.
    bool idempotent = false;
    // A ClaimNext long poll, which Close interrupts.
    bool long_poll = false;
    // Added to the read timeout.
    absl::Duration extra_wait = absl::ZeroDuration();
  };
  // One client (one connection) taken for one request.
  struct Connection;

  // `method` on `path` (query included) with `body` as JSON (nullptr: no
  // body); parses the 2xx answer into `response` (nullptr: not read).
  // Codes: kCancelled when closed, kInvalidArgument for a body that is
  // not UTF-8 where it must be, the server's code, or the class comment's.
  absl::Status Call(absl::string_view method, const std::string& path,
                    const google::protobuf::Message* body,
                    google::protobuf::Message* response,
                    const CallOptions& options) const ABSL_LOCKS_EXCLUDED(mu_);
  // A ClaimNext-style long poll: POSTs `body` to `path` in slices of at
  // most kMaxPollSlice (set_wait puts each slice's wait, in microseconds,
  // into body) until one answers, `wait` runs out, or a slice fails with
  // anything but kNotFound (nothing ready) or comes back too soon to have
  // waited. A negative wait goes to the server as it is, which refuses it.
  absl::Status LongPoll(const std::string& path, absl::Duration wait,
                        absl::FunctionRef<void(int64_t)> set_wait,
                        const google::protobuf::Message* body,
                        google::protobuf::Message* response) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Sends one request; OK: the 2xx answer's body.
  absl::StatusOr<std::string> Send(absl::string_view method,
                                   const std::string& path,
                                   const std::string& body,
                                   const CallOptions& options) const
      ABSL_LOCKS_EXCLUDED(mu_);
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);
  // An idle kept-alive connection, or a new one. kCancelled: closed.
  absl::StatusOr<std::unique_ptr<Connection>> Take(bool long_poll) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns a connection after its request; keeps it for later calls if
  // `reusable` and there is room.
  void Give(std::unique_ptr<Connection> connection, bool reusable,
            bool long_poll) const ABSL_LOCKS_EXCLUDED(mu_);
  // Sets *transport_error when no answer came.
  absl::StatusOr<std::string> SendOnce(absl::string_view method,
                                       const std::string& path,
                                       const std::string& body,
                                       const CallOptions& options,
                                       Connection& connection,
                                       bool* transport_error) const;
  // A bulk operation on `route` (/v1/bulk/...).
  absl::StatusOr<BulkResult> Bulk(absl::string_view route,
                                  const BulkFilter& filter);
  // Retry, Cancel (POST /v1/tasks/{id}/<action>) and Delete.
  absl::Status TaskAction(absl::string_view method, uint64_t task_id,
                          absl::string_view action);

  const HttpEndpoint endpoint_;
  const std::string url_;
  const HttpEngineOptions options_;

  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Kept-alive connections between calls, the most recently used last.
  mutable std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  // The clients of ClaimNext requests in flight, which Close interrupts.
  mutable std::vector<httplib::Client*> long_polls_ ABSL_GUARDED_BY(mu_);
};

// Checks that a taskwald answers at `url` (GET /healthz, which needs no
// token) and returns a client for it.
// OK: the client. kInvalidArgument: a bad URL (see ParseHttpUrl) or
// options out of range. kUnavailable: nothing answered, or not as taskwald
// does; the message names the URL.
absl::StatusOr<std::unique_ptr<Engine>> ConnectHttpEngine(
    const std::string& url, HttpEngineOptions options);

}  // namespace taskwal::daemon

#endif  // TASKWAL_DAEMON_HTTP_ENGINE_H_
