#include "daemon/http_engine.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "taskwal/task.pb.h"
#include "wire/convert.h"
#include "wire/engine.pb.h"

namespace taskwal::daemon {
namespace {

constexpr char kJson[] = "application/json";

// A kept-alive connection idle this long is closed rather than used:
// taskwald (httplib) closes one after 5 s idle, and a request sent just as
// it does would fail.
constexpr absl::Duration kMaxIdle = absl::Seconds(2);

// One ClaimNext request waits at most this long (the server caps it lower,
// at its max_claim_wait); a longer wait is several requests.
constexpr absl::Duration kMaxPollSlice = absl::Seconds(60);

// A ClaimNext request that came back sooner than this did not long-poll:
// the server is not asked again.
constexpr absl::Duration kMinPoll = absl::Milliseconds(50);

// taskwald's answer to a route it does not have (http_api.cc): a 404 whose
// message says so, unlike a call's own kNotFound.
bool UnknownRoute(const absl::Status& s) {
  return absl::IsNotFound(s) && absl::StartsWith(s.message(), "no such route");
}

// Text from the request or from the server in a message: ASCII, cut short.
std::string Shown(absl::string_view text) {
  constexpr size_t kMaxShown = 200;
  std::string shown = absl::CHexEscape(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) shown += "...";
  return shown;
}

// Percent-encodes everything but RFC 3986's unreserved characters, for a
// path segment or a query value.
std::string Encode(absl::string_view text) {
  std::string out;
  for (const char c : text) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "%",
                      absl::AsciiStrToUpper(
                          absl::BytesToHexString(absl::string_view(&c, 1))));
    }
  }
  return out;
}

std::string TaskPath(uint64_t task_id, absl::string_view suffix = "") {
  return absl::StrCat("/v1/tasks/", task_id, suffix);
}

void SetTimeout(absl::Duration d, time_t* sec, time_t* usec) {
  d = std::min(d, absl::Hours(24 * 365));
  const int64_t micros = std::max<int64_t>(absl::ToInt64Microseconds(d), 1);
  *sec = static_cast<time_t>(micros / 1000000);
  *usec = static_cast<time_t>(micros % 1000000);
}

// Why a request got no answer, in words.
std::string Describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect (nothing listens there, or it is unreachable)";
    case httplib::Error::ConnectionTimeout:
      return "connecting timed out";
    case httplib::Error::Read:
      return "the connection closed, or no answer came in time";
    case httplib::Error::Write:
      return "sending the request failed";
    case httplib::Error::Canceled:
      return "the request was cancelled";
    default:
      return httplib::to_string(error);
  }
}

bool ValidToken(absl::string_view token) {
  // What can go in a header line: visible ASCII, no spaces.
  return std::all_of(token.begin(), token.end(),
                     [](char c) { return c > ' ' && c < 0x7f; });
}

}  // namespace

struct HttpEngine::Connection {
  std::unique_ptr<httplib::Client> client;
  absl::Time last_used;
  bool reused = false;  // Taken from idle_: it served a request before.
};

absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url) {
  absl::string_view rest = url;
  auto bad = [url](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server URL \"", Shown(url), "\" ", why,
        "; expected http://HOST:PORT, such as http://127.0.0.1:8080"));
  };
  if (!absl::ConsumePrefix(&rest, "http://")) {
    if (absl::StartsWithIgnoreCase(rest, "https://")) {
      return bad(
          "uses https, which taskwald does not serve (put a TLS proxy in "
          "front, reached over http on its machine)");
    }
    if (absl::StartsWithIgnoreCase(rest, "http://")) {
      rest.remove_prefix(7);
    } else {
      return bad("does not start with http://");
    }
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.find_first_of("/?#@") != absl::string_view::npos) {
    return bad("has a path, query or user name");
  }
  HttpEndpoint endpoint;
  absl::string_view port;
  if (absl::ConsumePrefix(&rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) return bad("has an unclosed [");
    endpoint.host = std::string(rest.substr(0, close));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && !absl::ConsumePrefix(&rest, ":")) {
      return bad("has text after ]");
    }
    port = rest;
  } else {
    const size_t colon = rest.rfind(':');
    endpoint.host = std::string(rest.substr(0, colon));
    if (colon != absl::string_view::npos) port = rest.substr(colon + 1);
    if (endpoint.host.find(':') != std::string::npos) {
      return bad("has an IPv6 address without [ ]");
    }
  }
  if (endpoint.host.empty()) return bad("has no host");
  for (const char c : endpoint.host) {
    if (c <= ' ' || c >= 0x7f) return bad("has a bad character in its host");
  }
  if (!port.empty() || absl::EndsWith(rest, ":")) {
    if (!absl::SimpleAtoi(port, &endpoint.port) || endpoint.port < 1 ||
        endpoint.port > 65535) {
      return bad("has a port outside [1, 65535]");
    }
  }
  return endpoint;
}

HttpEngine::HttpEngine(HttpEndpoint endpoint, std::string url,
                       HttpEngineOptions options)
    : endpoint_(std::move(endpoint)),
      url_(std::move(url)),
      options_(std::move(options)) {}

HttpEngine::~HttpEngine() { Close().IgnoreError(); }

absl::Status HttpEngine::Close() {
  std::vector<std::unique_ptr<Connection>> idle;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::OkStatus();
    closed_ = true;
    idle.swap(idle_);
    // A long poll may be just connecting, after its check of closed_ and
    // before httplib counts its request: stop() must then be repeated.
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return long_polls_.empty();
    };
    while (!done()) {
      for (httplib::Client* client : long_polls_) client->stop();
      mu_.AwaitWithTimeout(absl::Condition(&done), absl::Milliseconds(10));
    }
  }
  return absl::OkStatus();  // `idle` closes its connections here.
}

bool HttpEngine::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

absl::StatusOr<std::unique_ptr<HttpEngine::Connection>> HttpEngine::Take(
    bool long_poll) const {
  std::vector<std::unique_ptr<Connection>> stale;
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  const absl::Time now = absl::Now();
  std::unique_ptr<Connection> connection;
  while (!idle_.empty()) {
    std::unique_ptr<Connection> c = std::move(idle_.back());
    idle_.pop_back();
    if (now - c->last_used < kMaxIdle) {
      connection = std::move(c);
      connection->reused = true;
      break;
    }
    stale.push_back(std::move(c));
  }
  if (connection == nullptr) {
    connection = std::make_unique<Connection>();
    auto client =
        std::make_unique<httplib::Client>(endpoint_.host, endpoint_.port);
    client->set_keep_alive(true);
    client->set_tcp_nodelay(true);
    client->set_url_encode(false);  // Paths are encoded here.
    time_t sec;
    time_t usec;
    SetTimeout(options_.connect_timeout, &sec, &usec);
    client->set_connection_timeout(sec, usec);
    SetTimeout(options_.read_timeout, &sec, &usec);
    client->set_write_timeout(sec, usec);
    if (!options_.bearer_token.empty()) {
      client->set_bearer_token_auth(options_.bearer_token);
    }
    connection->client = std::move(client);
  }
  if (long_poll) long_polls_.push_back(connection->client.get());
  return connection;
}

void HttpEngine::Give(std::unique_ptr<Connection> connection, bool reusable,
                      bool long_poll) const {
  absl::MutexLock lock(&mu_);
  if (long_poll) {
    long_polls_.erase(std::find(long_polls_.begin(), long_polls_.end(),
                                connection->client.get()));
  }
  if (closed_ || !reusable || idle_.size() >= options_.max_idle_connections) {
    return;  // `connection` closes.
  }
  connection->last_used = absl::Now();
  idle_.push_back(std::move(connection));
}

absl::StatusOr<std::string> HttpEngine::SendOnce(absl::string_view method,
                                                 const std::string& path,
                                                 const std::string& body,
                                                 const CallOptions& options,
                                                 Connection& connection,
                                                 bool* transport_error) const {
  httplib::Client& client = *connection.client;
  time_t sec;
  time_t usec;
  SetTimeout(options_.read_timeout + options.extra_wait, &sec, &usec);
  client.set_read_timeout(sec, usec);
  httplib::Request req;
  req.method = std::string(method);
  req.path = path;
  req.set_header("Accept", kJson);
  if (!body.empty()) {
    req.body = body;
    req.set_header("Content-Type", kJson);
  }
  const std::string call =
      absl::StrCat(method, " ", path.substr(0, path.find('?')));
  httplib::Result res = client.send(req);
  if (!res) {
    *transport_error = true;
    return absl::UnavailableError(absl::StrCat("no answer from taskwald at ",
                                               url_, " (", call,
                                               "): ", Describe(res.error())));
  }
  if (res->status >= 200 && res->status < 300) return std::move(res->body);
  wire::Error error;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (google::protobuf::util::JsonStringToMessage(res->body, &error, parse)
          .ok() &&
      !error.code().empty()) {
    if (!wire::ParseStatusCode(error.code(), &code) ||
        code == absl::StatusCode::kOk) {
      code = absl::StatusCode::kUnknown;
    }
    return absl::Status(code, error.message());
  }
  // Not taskwald's answer: a proxy's, or something else on the port.
  const bool gateway =
      res->status == 502 || res->status == 503 || res->status == 504;
  return absl::Status(
      gateway ? absl::StatusCode::kUnavailable : absl::StatusCode::kInternal,
      absl::StrCat("HTTP ", res->status, " from ", url_, " (", call,
                   ") without a taskwald error body: ", Shown(res->body)));
}

absl::StatusOr<std::string> HttpEngine::Send(absl::string_view method,
                                             const std::string& path,
                                             const std::string& body,
                                             const CallOptions& options) const {
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::unique_ptr<Connection>> connection =
        Take(options.long_poll);
    if (!connection.ok()) return connection.status();
    const bool reused = (*connection)->reused;
    bool transport_error = false;
    absl::StatusOr<std::string> answer =
        SendOnce(method, path, body, options, **connection, &transport_error);
    Give(*std::move(connection), /*reusable=*/!transport_error,
         options.long_poll);
    if (!transport_error) return answer;
    if (options.long_poll && closed()) {
      return absl::CancelledError(absl::StrCat(
          "the client of taskwald at ", url_, " was closed during the call"));
    }
    // A kept-alive connection the server closed meanwhile: once more on a
    // new one, where repeating the call is harmless.
    if (attempt > 0 || !reused || !options.idempotent) return answer;
  }
}

absl::Status HttpEngine::Call(absl::string_view method, const std::string& path,
                              const google::protobuf::Message* body,
                              google::protobuf::Message* response,
                              const CallOptions& options) const {
  if (closed()) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  std::string json;
  if (body != nullptr) {
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(*body, &json, print)
             .ok()) {
      // JSON strings hold only UTF-8; the engine takes only UTF-8 text.
      return absl::InvalidArgumentError(
          absl::StrCat("the ", body->GetDescriptor()->name(),
                       " holds text that is not valid UTF-8"));
    }
  }
  absl::StatusOr<std::string> answer = Send(method, path, json, options);
  if (!answer.ok()) return answer.status();
  if (response == nullptr) return absl::OkStatus();
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;  // Fields may be added (engine.proto).
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(*answer, response, parse);
  if (!parsed.ok()) {
    return absl::InternalError(
        absl::StrCat("the answer of ", url_, " to ", method, " ",
                     path.substr(0, path.find('?')), " is not a ",
                     response->GetDescriptor()->name(), " (", parsed.ToString(),
                     "): ", Shown(*answer)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SubmitResult> HttpEngine::Submit(const TaskSpec& spec) {
  wire::SubmitResponse m;
  CallOptions options;
  options.idempotent = true;  // The key deduplicates a repetition.
  const wire::TaskSpec request = wire::ToWire(spec);
  absl::Status s = Call("POST", "/v1/tasks", &request, &m, options);
  if (!s.ok()) return s;
  return SubmitResult{m.task_id(), m.deduplicated()};
}

absl::StatusOr<std::vector<SubmitResult>> HttpEngine::SubmitBatch(
    absl::Span<const TaskSpec> specs) {
  wire::SubmitBatchRequest request;
  for (const TaskSpec& spec : specs) *request.add_tasks() = wire::ToWire(spec);
  wire::SubmitBatchResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("POST", "/v1/tasks/batch", &request, &m, options);
  if (!s.ok()) return s;
  std::vector<SubmitResult> results;
  results.reserve(m.results_size());
  for (const wire::SubmitResponse& r : m.results()) {
    results.push_back(SubmitResult{r.task_id(), r.deduplicated()});
  }
  return results;
}

absl::StatusOr<ClaimedTask> HttpEngine::Claim(uint64_t task_id,
                                              absl::string_view worker_id,
                                              absl::Duration lease) {
  wire::ClaimRequest request;
  request.set_worker_id(std::string(worker_id));
  request.set_lease_micros(absl::ToInt64Microseconds(lease));
  wire::ClaimResponse m;
  absl::Status s =
      Call("POST", TaskPath(task_id, "/claim"), &request, &m, CallOptions());
  if (!s.ok()) return s;
  return wire::FromWire(m);
}

absl::Status HttpEngine::LongPoll(const std::string& path, absl::Duration wait,
                                  absl::FunctionRef<void(int64_t)> set_wait,
                                  const google::protobuf::Message* body,
                                  google::protobuf::Message* response) const {
  const absl::Time deadline = wait == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + wait;
  while (true) {
    const absl::Time start = absl::Now();
    const absl::Duration slice =
        wait < absl::ZeroDuration()
            ? wait
            : std::min(std::max(deadline - start, absl::ZeroDuration()),
                       kMaxPollSlice);
    set_wait(absl::ToInt64Microseconds(slice));
    CallOptions call;
    call.long_poll = slice > absl::ZeroDuration();
    call.extra_wait = std::max(slice, absl::ZeroDuration());
    absl::Status s = Call("POST", path, body, response, call);
    if (!absl::IsNotFound(s)) return s;
    const absl::Time now = absl::Now();
    if (now >= deadline || now - start < kMinPoll) return s;
  }
}

absl::StatusOr<ClaimedTask> HttpEngine::ClaimNext(
    absl::string_view worker_id, const ClaimNextOptions& options) {
  wire::ClaimNextRequest request;
  request.set_worker_id(std::string(worker_id));
  request.set_type(options.type);
  request.set_lease_micros(absl::ToInt64Microseconds(options.lease));
  wire::ClaimResponse m;
  absl::Status s = LongPoll(
      "/v1/claims", options.wait,
      [&](int64_t micros) { request.set_wait_micros(micros); }, &request, &m);
  if (!s.ok()) return s;
  return wire::FromWire(m);
}

absl::StatusOr<std::vector<ClaimedTask>> HttpEngine::ClaimNextBatch(
    absl::string_view worker_id, const ClaimNextOptions& options,
    size_t max_tasks) {
  if (absl::Status s = CheckClaimBatch(max_tasks); !s.ok()) return s;
  wire::ClaimNextBatchRequest request;
  wire::ClaimNextRequest* claim = request.mutable_claim();
  claim->set_worker_id(std::string(worker_id));
  claim->set_type(options.type);
  claim->set_lease_micros(absl::ToInt64Microseconds(options.lease));
  request.set_max_tasks(static_cast<uint32_t>(max_tasks));
  wire::ClaimBatchResponse m;
  absl::Status s = LongPoll(
      "/v1/claims/batch", options.wait,
      [&](int64_t micros) { claim->set_wait_micros(micros); }, &request, &m);
  // A taskwald from before batches: one call per claim.
  if (UnknownRoute(s)) {
    return Engine::ClaimNextBatch(worker_id, options, max_tasks);
  }
  if (!s.ok()) return s;
  return wire::FromWire(m, max_tasks);
}

absl::StatusOr<std::optional<absl::Time>> HttpEngine::NextDueTime(
    absl::string_view type) {
  wire::NextDueResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s =
      Call("GET",
           type.empty() ? std::string("/v1/next-due")
                        : absl::StrCat("/v1/next-due?type=", Encode(type)),
           nullptr, &m, options);
  if (!s.ok()) return s;
  if (!m.due()) return std::optional<absl::Time>();
  return std::optional<absl::Time>(absl::FromUnixMicros(m.due_micros()));
}

absl::Status HttpEngine::Complete(const ClaimRef& claim,
                                  absl::string_view result) {
  wire::CompleteRequest request;
  *request.mutable_claim() = wire::ToWire(claim);
  request.set_result(std::string(result));
  CallOptions options;
  options.idempotent = true;  // Completing twice with one claim is OK.
  return Call("POST", "/v1/claims/complete", &request, nullptr, options);
}

absl::StatusOr<std::vector<absl::Status>> HttpEngine::CompleteBatch(
    absl::Span<const Completion> completions) {
  if (absl::Status s = CheckCompletionBatch(completions.size()); !s.ok()) {
    return s;
  }
  const wire::CompleteBatchRequest request = wire::ToWire(completions);
  wire::CompleteBatchResponse m;
  CallOptions options;
  options.idempotent = true;  // Completing twice with one claim is OK.
  absl::Status s =
      Call("POST", "/v1/claims/complete/batch", &request, &m, options);
  // A taskwald from before batches: one call per completion. So too for a
  // request refused whole as too large (413): each completion then gets
  // its own answer.
  if (UnknownRoute(s) ||
      (absl::IsInvalidArgument(s) && completions.size() > 1)) {
    return Engine::CompleteBatch(completions);
  }
  if (!s.ok()) return s;
  return wire::FromWire(m, completions.size());
}

absl::Status HttpEngine::Fail(const ClaimRef& claim, absl::string_view error) {
  return Fail(claim, error, FailOptions());
}

absl::Status HttpEngine::Fail(const ClaimRef& claim, absl::string_view error,
                              const FailOptions& options) {
  if (closed()) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  wire::FailRequest request;
  *request.mutable_claim() = wire::ToWire(claim);
  request.set_error(std::string(error));
  if (options.retry_after.has_value()) {
    if (*options.retry_after == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError("retry_after must be finite");
    }
    request.set_retry_after_micros(
        absl::ToInt64Microseconds(*options.retry_after));
  }
  request.set_permanent(options.permanent);
  return Call("POST", "/v1/claims/fail", &request, nullptr, CallOptions());
}

absl::StatusOr<absl::Time> HttpEngine::Heartbeat(const ClaimRef& claim,
                                                 absl::Duration extension) {
  wire::HeartbeatRequest request;
  *request.mutable_claim() = wire::ToWire(claim);
  request.set_extension_micros(absl::ToInt64Microseconds(extension));
  wire::HeartbeatResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("POST", "/v1/claims/heartbeat", &request, &m, options);
  if (!s.ok()) return s;
  return absl::FromUnixMicros(m.lease_deadline_micros());
}

absl::Status HttpEngine::TaskAction(absl::string_view method, uint64_t task_id,
                                    absl::string_view action) {
  return Call(method, TaskPath(task_id, action), nullptr, nullptr,
              CallOptions());
}

absl::Status HttpEngine::Retry(uint64_t task_id) {
  return TaskAction("POST", task_id, "/retry");
}

absl::Status HttpEngine::Cancel(uint64_t task_id) {
  return TaskAction("POST", task_id, "/cancel");
}

absl::Status HttpEngine::Delete(uint64_t task_id) {
  return TaskAction("DELETE", task_id, "");
}

absl::StatusOr<BulkResult> HttpEngine::Bulk(absl::string_view route,
                                            const BulkFilter& filter) {
  if (closed()) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  // The wire form cannot say "unspecified" apart from "unset".
  if (filter.status == TASK_STATUS_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "a bulk filter's status must not be TASK_STATUS_UNSPECIFIED");
  }
  wire::BulkResponse m;
  CallOptions options;
  options.idempotent = filter.dry_run;
  const wire::BulkRequest request = wire::ToWire(filter);
  absl::Status s =
      Call("POST", absl::StrCat("/v1/bulk/", route), &request, &m, options);
  if (!s.ok()) return s;
  return wire::FromWire(m);
}

absl::StatusOr<BulkResult> HttpEngine::RetryMatching(const BulkFilter& filter) {
  return Bulk("retry", filter);
}

absl::StatusOr<BulkResult> HttpEngine::CancelMatching(
    const BulkFilter& filter) {
  return Bulk("cancel", filter);
}

absl::StatusOr<BulkResult> HttpEngine::DeleteMatching(
    const BulkFilter& filter) {
  return Bulk("delete", filter);
}

namespace {

// The path of a schedule. kInvalidArgument for an empty name, which the
// route cannot carry (the engine refuses it too).
absl::StatusOr<std::string> SchedulePath(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("a schedule name must not be empty");
  }
  return absl::StrCat("/v1/schedules/", Encode(name));
}

}  // namespace

absl::StatusOr<Schedule> HttpEngine::PutSchedule(const ScheduleSpec& spec) {
  if (closed()) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  absl::StatusOr<std::string> path = SchedulePath(spec.name);
  if (!path.ok()) return path.status();
  Schedule m;
  CallOptions options;
  options.idempotent = true;
  const wire::ScheduleSpec request = wire::ToWire(spec);
  absl::Status s = Call("PUT", *path, &request, &m, options);
  if (!s.ok()) return s;
  return m;
}

absl::Status HttpEngine::DeleteSchedule(absl::string_view name) {
  if (closed()) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  absl::StatusOr<std::string> path = SchedulePath(name);
  if (!path.ok()) return path.status();
  return Call("DELETE", *path, nullptr, nullptr, CallOptions());
}

absl::StatusOr<Schedule> HttpEngine::GetSchedule(absl::string_view name) {
  if (closed()) {
    return absl::CancelledError(
        absl::StrCat("the client of taskwald at ", url_, " is closed"));
  }
  absl::StatusOr<std::string> path = SchedulePath(name);
  if (!path.ok()) return path.status();
  Schedule m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", *path, nullptr, &m, options);
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<std::vector<Schedule>> HttpEngine::ListSchedules() {
  wire::ListSchedulesResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", "/v1/schedules", nullptr, &m, options);
  if (!s.ok()) return s;
  return std::vector<Schedule>(m.schedules().begin(), m.schedules().end());
}

absl::Status HttpEngine::Pause(absl::string_view type) {
  wire::PauseRequest request;
  request.set_type(std::string(type));
  CallOptions options;
  options.idempotent = true;  // Pausing a paused type is OK.
  return Call("POST", "/v1/pause", &request, nullptr, options);
}

absl::Status HttpEngine::Resume(absl::string_view type) {
  wire::PauseRequest request;
  request.set_type(std::string(type));
  CallOptions options;
  options.idempotent = true;
  return Call("POST", "/v1/resume", &request, nullptr, options);
}

absl::StatusOr<std::vector<std::string>> HttpEngine::PausedTypes() {
  wire::PausedTypesResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", "/v1/paused", nullptr, &m, options);
  if (!s.ok()) return s;
  return std::vector<std::string>(m.types().begin(), m.types().end());
}

absl::StatusOr<Task> HttpEngine::Get(uint64_t task_id) {
  Task m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", TaskPath(task_id), nullptr, &m, options);
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<Task> HttpEngine::GetByIdempotencyKey(absl::string_view key) {
  Task m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s =
      Call("GET", absl::StrCat("/v1/tasks/by-key?key=", Encode(key)), nullptr,
           &m, options);
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<ListPage> HttpEngine::List(const ListFilter& filter) {
  std::string path = absl::StrCat("/v1/tasks?limit=", filter.limit);
  if (filter.status.has_value()) {
    // An unknown value has no name: the server refuses the empty one.
    absl::StrAppend(&path, "&status=", TaskStatus_Name(*filter.status));
  }
  if (!filter.type.empty()) {
    absl::StrAppend(&path, "&type=", Encode(filter.type));
  }
  if (filter.after_id != 0) {
    absl::StrAppend(&path, "&after_id=", filter.after_id);
  }
  if (!filter.payloads) absl::StrAppend(&path, "&payloads=false");
  wire::ListTasksResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", path, nullptr, &m, options);
  if (!s.ok()) return s;
  return wire::FromWire(m);
}

absl::StatusOr<std::vector<HistoryEntry>> HttpEngine::History(
    uint64_t task_id) {
  wire::HistoryResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s =
      Call("GET", TaskPath(task_id, "/history"), nullptr, &m, options);
  if (!s.ok()) return s;
  return std::vector<HistoryEntry>(m.entries().begin(), m.entries().end());
}

absl::StatusOr<EngineStats> HttpEngine::Stats() {
  wire::StatsResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", "/v1/stats", nullptr, &m, options);
  if (!s.ok()) return s;
  return wire::FromWire(m);
}

absl::Status HttpEngine::Snapshot() {
  CallOptions options;
  options.idempotent = true;
  return Call("POST", "/v1/snapshot", nullptr, nullptr, options);
}

RecoveryReport HttpEngine::Recovery() const {
  wire::RecoveryResponse m;
  CallOptions options;
  options.idempotent = true;
  if (!Call("GET", "/v1/recovery", nullptr, &m, options).ok()) {
    return RecoveryReport();
  }
  return wire::FromWire(m);
}

absl::Status HttpEngine::Health() const {
  CallOptions options;
  options.idempotent = true;
  return Call("GET", "/readyz", nullptr, nullptr, options);
}

absl::Status HttpEngine::RunMaintenance() {
  CallOptions options;
  options.idempotent = true;
  return Call("POST", "/v1/maintenance", nullptr, nullptr, options);
}

absl::Status HttpEngine::CheckServer() const {
  wire::OkResponse m;
  CallOptions options;
  options.idempotent = true;
  absl::Status s = Call("GET", "/healthz", nullptr, &m, options);
  if (s.ok() && m.status() != "ok") {
    s = absl::InternalError(absl::StrCat("GET /healthz at ", url_,
                                         " answered status \"",
                                         Shown(m.status()), "\""));
  }
  if (s.ok() || absl::IsUnavailable(s)) return s;
  return absl::UnavailableError(
      absl::StrCat("no taskwald answers at ", url_,
                   ": GET /healthz failed: ", s.ToString()));
}

absl::StatusOr<std::unique_ptr<Engine>> ConnectHttpEngine(
    const std::string& url, HttpEngineOptions options) {
  absl::StatusOr<HttpEndpoint> endpoint = ParseHttpUrl(url);
  if (!endpoint.ok()) return endpoint.status();
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.read_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "connect_timeout and read_timeout must be positive");
  }
  if (!ValidToken(options.bearer_token)) {
    return absl::InvalidArgumentError(
        "the bearer token must be visible ASCII without spaces");
  }
  auto engine = std::make_unique<HttpEngine>(*std::move(endpoint), url,
                                             std::move(options));
  absl::Status health = engine->CheckServer();
  if (!health.ok()) return health;
  return engine;
}

}  // namespace taskwal::daemon
