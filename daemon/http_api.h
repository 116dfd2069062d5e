#ifndef TASKWAL_DAEMON_HTTP_API_H_
#define TASKWAL_DAEMON_HTTP_API_H_

// taskwald's HTTP/JSON API: every Engine call over HTTP, served by
// cpp-httplib (Debian's libcpp-httplib-dev) on a socket this class binds.
//
// Bodies are protobuf's JSON mapping of the messages in
// wire/engine.proto (and api/task.proto's Task, HistoryEntry,
// Schedule): 64-bit integers are strings, bytes are base64, times and
// durations are microseconds. Responses are `application/json` unless
// noted. A request body that is not JSON, does not match its message, or
// has an unknown field is a 400 INVALID_ARGUMENT and changes nothing; an
// empty body reads as `{}`.
//
// Routes ({id}: a decimal task id; {name}: a schedule name, percent-encoded
// as needed):
//
//   method path                    Engine call          response
//            (request body -> response, where the call takes a body)
//   GET    /healthz                 process up           OkResponse
//   GET    /readyz                  Health               OkResponse
//   GET    /metrics                 Stats, Recovery      Prometheus text (1)
//   POST   /v1/tasks                Submit
//            TaskSpec -> SubmitResponse
//   POST   /v1/tasks/batch          SubmitBatch
//            SubmitBatchRequest -> SubmitBatchResponse
//   GET    /v1/tasks (2)            List                 ListTasksResponse
//   GET    /v1/tasks/by-key?key=K   GetByIdempotencyKey  Task
//   GET    /v1/tasks/{id}           Get                  Task
//   GET    /v1/tasks/{id}/history   History              HistoryResponse
//   POST   /v1/tasks/{id}/claim     Claim
//            ClaimRequest -> ClaimResponse
//   POST   /v1/tasks/{id}/retry     Retry                OkResponse
//   POST   /v1/tasks/{id}/cancel    Cancel               OkResponse
//   DELETE /v1/tasks/{id}           Delete               OkResponse
//   POST   /v1/claims (3)           ClaimNext
//            ClaimNextRequest -> ClaimResponse
//   POST   /v1/claims/batch (3)     ClaimNextBatch
//            ClaimNextBatchRequest -> ClaimBatchResponse
//   POST   /v1/claims/complete      Complete
//            CompleteRequest -> OkResponse
//   POST   /v1/claims/complete/batch  CompleteBatch
//            CompleteBatchRequest -> CompleteBatchResponse
//   POST   /v1/claims/fail          Fail
//            FailRequest -> OkResponse
//   POST   /v1/claims/heartbeat     Heartbeat
//            HeartbeatRequest -> HeartbeatResponse
//   GET    /v1/next-due?type=T      NextDueTime          NextDueResponse
//   POST   /v1/bulk/retry           RetryMatching
//            BulkRequest -> BulkResponse
//   POST   /v1/bulk/cancel          CancelMatching
//            BulkRequest -> BulkResponse
//   POST   /v1/bulk/delete          DeleteMatching
//            BulkRequest -> BulkResponse
//   GET    /v1/schedules            ListSchedules        ListSchedulesResponse
//   GET    /v1/schedules/{name}     GetSchedule          Schedule
//   PUT    /v1/schedules/{name}     PutSchedule
//            ScheduleSpec -> Schedule
//   DELETE /v1/schedules/{name}     DeleteSchedule       OkResponse
//   GET    /v1/paused               PausedTypes          PausedTypesResponse
//   POST   /v1/pause                Pause
//            PauseRequest -> OkResponse
//   POST   /v1/resume               Resume
//            PauseRequest -> OkResponse
//   GET    /v1/stats                Stats                StatsResponse
//   GET    /v1/recovery             Recovery             RecoveryResponse
//   GET    /v1/series               (4)                  SeriesResponse
//   POST   /v1/snapshot             Snapshot             OkResponse
//   POST   /v1/maintenance          RunMaintenance       OkResponse
// (1) taskwal/metrics.h's families, then daemon/http_metrics.h's.
// (2) ?status=S&type=T&limit=N&after_id=C&payloads=false: status a
//     TaskStatus name (PENDING, ..., any case), limit, after_id and
//     payloads (true or false) as in ListFilter.
// (3) Waits up to min(wait_micros, max_claim_wait) for a ready task (a
//     long poll); nothing ready is a 404 NOT_FOUND, as ClaimNext's
//     kNotFound.
// (4) Not an Engine call: the figures the dashboard draws, sampled every
//     series_step over the last series_window (daemon/series.h,
//     daemon/dashboard.proto).
// An unknown query parameter is a 400.
//
// The web dashboard (daemon/dashboard/, compiled in): GET / and GET /ui
// redirect (302) to /ui/, GET /ui/ is its page, GET /ui/<file> its script
// and style sheet. These few static files hold no data and are served
// without a token (a browser cannot send one when it opens a page); the
// page asks for the token and sends it with every API call. They come with
// a Content-Security-Policy that allows only their own script, style and
// API calls, and forbids framing; every other response has
// "default-src 'none'; frame-ancestors 'none'".
//
// Errors: a JSON Error {"code":"NOT_FOUND","message":"..."} with the HTTP
// status of its code:
//   INVALID_ARGUMENT 400   NOT_FOUND 404         ALREADY_EXISTS 409
//   ABORTED 409 (the claim is lost)              FAILED_PRECONDITION 409
//   UNAUTHENTICATED 401    PERMISSION_DENIED 403  RESOURCE_EXHAUSTED 429
//   CANCELLED 503 (the engine is closed: the daemon is stopping)
//   UNAVAILABLE 503        DEADLINE_EXCEEDED 504  UNIMPLEMENTED 501
//   anything else 500 (INTERNAL: the engine takes no more writes, ...)
// The 409s share a status; the code tells them apart. HTTP-level errors
// carry a code too: an unknown route 404 NOT_FOUND, a body over
// max_body_bytes 413 INVALID_ARGUMENT, a body without Content-Length
// (Transfer-Encoding: chunked) 411 and a compressed one (Content-Encoding)
// 415, both INVALID_ARGUMENT and refused unread, a request httplib cannot
// parse 400.
//
// Browsers: a request with an Origin header other than "http://" + its
// Host is a 403 PERMISSION_DENIED (another site's page cannot make a
// browser act here), and so is, while no token is set, one whose Host is a
// DNS name rather than an IP address or localhost (a site that rebinds its
// name to 127.0.0.1 cannot read or change anything). GET /healthz is
// exempt.
//
// Security: once read_token or admin_token is set, every request except
// GET /healthz and the dashboard's static files needs "Authorization: Bearer
// <token>": no or an unknown token is a 401 UNAUTHENTICATED (with
// WWW-Authenticate: Bearer), the read token on anything but GET or HEAD a 403
// PERMISSION_DENIED. Tokens are compared in constant time. Requests over
// rate_per_second (if set) get a 429 (the dashboard's files do not count).
// Checks run before the body is read; a
// refused request changes nothing, and its response closes the connection
// (Connection: close).
//
// Thread safety: Start, StopAccepting, AwaitIdle and Wait may be called from
// any thread; requests are served by a pool of `threads` threads.

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/http_metrics.h"
#include "daemon/series.h"
#include "engine/token_bucket.h"
#include "taskwal/engine.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace taskwal::daemon {

struct HttpApiOptions {
  // Bearer tokens. Empty: not configured. With neither set, every request
  // is allowed (listen on loopback only).
  std::string read_token;   // GET and HEAD requests.
  std::string admin_token;  // Every request.
  // Larger request bodies get a 413 without being parsed.
  size_t max_body_bytes = 16 << 20;
  // The longest a POST /v1/claims long poll waits.
  absl::Duration max_claim_wait = absl::Seconds(30);
  // Requests per second over the whole server (all but /healthz), with
  // bursts of rate_burst; 0: no limit. Excess requests get a 429.
  double rate_per_second = 0;
  int rate_burst = 100;
  // Threads serving connections. A keep-alive connection holds one for its
  // life, so this bounds the clients served at once (others queue).
  int threads = 64;
  // Requests served on one keep-alive connection before it is closed.
  size_t keep_alive_max_requests = 10000;
  // The dashboard's samples (GET /v1/series): one every series_step, the
  // last series_window kept.
  absl::Duration series_step = absl::Seconds(5);
  absl::Duration series_window = absl::Minutes(15);
  // Receives one line per 5xx response (method, path, code, message), with
  // request text escaped. May be empty.
  std::function<void(absl::string_view line)> log;
};

// The HTTP code of a canonical status code, as the table above.
int HttpStatusForCode(absl::StatusCode code);

// Equal strings, compared in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

class HttpApi {
 public:
  // `engine` is borrowed and must outlive this object.
  HttpApi(Engine* engine, HttpApiOptions options);
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;
  // StopAccepting, then Wait.
  ~HttpApi();

  // Binds host:port (port 0: a free port) and serves on a thread of its own.
  // OK: the port bound. kUnavailable: the address could not be bound.
  // kInvalidArgument: a port outside [0, 65535], or options out of range
  // (threads < 1, rate_burst < 1 with a rate, rate_per_second outside
  // TokenBucket's range, series_step <= 0). kFailedPrecondition: called
  // before.
  absl::StatusOr<int> Start(const std::string& host, int port);

  // Stops taking connections, and requests on open ones (a request already
  // being read is still answered), and the dashboard's sampling.
  // Idempotent.
  void StopAccepting();

  // Waits until no request is being handled, not counting POST /v1/claims
  // long polls while they wait (Engine::Close ends those). True: idle.
  bool AwaitIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until the server thread ends: after StopAccepting, once every
  // request in flight has been answered (long polls included). Idempotent.
  void Wait();

 private:
  void RegisterRoutes();
  // Records the run time of the claim that just completed or failed.
  void ObserveRunTime(uint64_t task_id, bool completed);
  // Whether the request may go on; fills `res` with the refusal otherwise.
  bool Admit(const httplib::Request& req, httplib::Response& res)
      ABSL_LOCKS_EXCLUDED(rate_mu_);
  void EnterRequest() ABSL_LOCKS_EXCLUDED(mu_);
  void LeaveRequest() ABSL_LOCKS_EXCLUDED(mu_);

  Engine* const engine_;
  const HttpApiOptions options_;
  const std::unique_ptr<httplib::Server> server_;
  HttpMetrics metrics_;
  SeriesRecorder series_;

  // Lock order: mu_ and rate_mu_ are never held together.
  absl::Mutex mu_;
  // Requests being handled, not counting waiting long polls.
  int busy_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex rate_mu_;
  std::unique_ptr<engine::TokenBucket> rate_ ABSL_GUARDED_BY(rate_mu_);

  absl::Mutex thread_mu_;
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
  std::atomic<bool> listen_returned_{false};
  bool started_ ABSL_GUARDED_BY(thread_mu_) = false;
};

}  // namespace taskwal::daemon

#endif  // TASKWAL_DAEMON_HTTP_API_H_
