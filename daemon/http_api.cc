#include "daemon/http_api.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/dashboard.pb.h"
#include "daemon/dashboard_assets.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/util/json_util.h"
#include "taskwal/metrics.h"
#include "taskwal/task.pb.h"
#include "wal/status_macros.h"
#include "wire/convert.h"
#include "wire/engine.pb.h"

namespace taskwal::daemon {
namespace {

// The request and response bodies (wire/engine.proto).
using ::taskwal::wire::BulkRequest;
using ::taskwal::wire::BulkResponse;
using ::taskwal::wire::Claim;
using ::taskwal::wire::ClaimBatchResponse;
using ::taskwal::wire::ClaimNextBatchRequest;
using ::taskwal::wire::ClaimNextRequest;
using ::taskwal::wire::ClaimRequest;
using ::taskwal::wire::ClaimResponse;
using ::taskwal::wire::CompleteBatchRequest;
using ::taskwal::wire::CompleteBatchResponse;
using ::taskwal::wire::CompleteRequest;
using ::taskwal::wire::Error;
using ::taskwal::wire::FailRequest;
using ::taskwal::wire::HeartbeatRequest;
using ::taskwal::wire::HeartbeatResponse;
using ::taskwal::wire::HistoryResponse;
using ::taskwal::wire::ListSchedulesResponse;
using ::taskwal::wire::ListTasksResponse;
using ::taskwal::wire::NextDueResponse;
using ::taskwal::wire::OkResponse;
using ::taskwal::wire::PausedTypesResponse;
using ::taskwal::wire::PauseRequest;
using ::taskwal::wire::RecoveryResponse;
using ::taskwal::wire::StatsResponse;
using ::taskwal::wire::SubmitBatchRequest;
using ::taskwal::wire::SubmitBatchResponse;
using ::taskwal::wire::SubmitResponse;

constexpr char kJson[] = "application/json";
// The dashboard's files may run their own script and style and call the API
// (same origin), nothing else; no page may frame them.
constexpr char kDashboardPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";
constexpr char kApiPolicy[] = "default-src 'none'; frame-ancestors 'none'";

// The dashboard's redirects and static files: served without a token.
bool IsDashboardPath(absl::string_view path) {
  return path == "/" || path == "/ui" || absl::StartsWith(path, "/ui/");
}

// Whether a browser sent the request from a page of this server: no Origin
// header (not a browser, or a same-origin GET), or the one of this Host.
bool SameOrigin(const httplib::Request& req) {
  if (!req.has_header("Origin")) return true;
  return req.has_header("Host") &&
         req.get_header_value("Origin") ==
             absl::StrCat("http://", req.get_header_value("Host"));
}

// Whether the Host header names this server by an address or as
// localhost, not by a DNS name: a page that re-points its own name at
// 127.0.0.1 (DNS rebinding) sends its name. No Host header: not a browser.
bool HostIsAnAddress(const httplib::Request& req) {
  if (!req.has_header("Host")) return true;
  const std::string header = req.get_header_value("Host");  // A copy.
  absl::string_view host = header;
  if (absl::StartsWith(host, "[")) return true;  // An IPv6 literal.
  host = host.substr(0, host.find(':'));
  if (host == "localhost") return true;
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4) return false;
  for (absl::string_view part : parts) {
    int octet = 0;
    if (part.empty() || part.size() > 3 || !absl::SimpleAtoi(part, &octet) ||
        octet > 255) {
      return false;
    }
  }
  return true;
}
constexpr char kPrometheus[] = "text/plain; version=0.0.4; charset=utf-8";

// What a route handler answers: a body with its content type (status 200).
struct Reply {
  std::string content_type = kJson;
  std::string body;
};

absl::StatusOr<Reply> JsonReply(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  Reply reply;
  const auto printed = google::protobuf::util::MessageToJsonString(
      message, &reply.body, options);
  if (!printed.ok()) {
    // Only text that is not UTF-8 gets here; the engine stores only UTF-8.
    return absl::InternalError(absl::StrCat("cannot render ",
                                            message.GetDescriptor()->name(),
                                            " as JSON: ", printed.ToString()));
  }
  return reply;
}

absl::StatusOr<Reply> OkReply() {
  OkResponse ok;
  ok.set_status("ok");
  return JsonReply(ok);
}

std::string ErrorJson(absl::StatusCode code, absl::string_view message) {
  Error error;
  error.set_code(absl::StatusCodeToString(code));
  // A message may quote request bytes that are not UTF-8, which a JSON
  // string cannot hold: escape it then.
  error.set_message(google::protobuf::internal::IsStructurallyValidUTF8(
                        message.data(), static_cast<int>(message.size()))
                        ? std::string(message)
                        : absl::CHexEscape(message));
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(error, &json, options)
           .ok()) {
    json = "{\"code\":\"INTERNAL\",\"message\":\"\"}";  // Unreachable.
  }
  return json;
}

void SetError(httplib::Response& res, const absl::Status& status) {
  res.status = HttpStatusForCode(status.code());
  res.set_content(ErrorJson(status.code(), status.message()), kJson);
}

// Parses `body` (empty reads as "{}") into `message`: strict, so an
// unknown field or a wrong type is kInvalidArgument.
absl::Status ParseBody(const std::string& body,
                       google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      body.empty() ? "{}" : body, message, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request body is not a valid ", message->GetDescriptor()->name(), ": ",
        std::string(parsed.message())));
  }
  return absl::OkStatus();
}

absl::Status CheckParams(const httplib::Request& req,
                         const std::set<std::string>& allowed) {
  for (const auto& [name, value] : req.params) {
    if (allowed.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown query parameter \"", absl::CHexEscape(name), "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ParseId(absl::string_view what,
                                 absl::string_view text) {
  uint64_t id = 0;
  if (!absl::SimpleAtoi(text, &id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", absl::CHexEscape(text),
                     "\" is not a 64-bit unsigned integer"));
  }
  return id;
}

absl::StatusOr<TaskStatus> ParseStatusName(absl::string_view text) {
  TaskStatus status;
  if (!TaskStatus_Parse(absl::AsciiStrToUpper(text), &status) ||
      status == TASK_STATUS_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("status \"", absl::CHexEscape(text),
                     "\" is not PENDING, CLAIMED, COMPLETED, FAILED or "
                     "CANCELLED"));
  }
  return status;
}

void ObserveQueueWait(const ClaimedTask& claimed, HttpMetrics* metrics) {
  // Ready: created, or its not_before (a delay or a retry backoff) passed.
  const int64_t ready_micros =
      std::max(claimed.task.created_micros(), claimed.task.not_before_micros());
  metrics->ObserveQueueWait(
      claimed.task.type(),
      absl::Microseconds(claimed.task.claimed_micros() - ready_micros));
}

absl::StatusOr<Reply> ClaimReply(const ClaimedTask& claimed,
                                 HttpMetrics* metrics) {
  ObserveQueueWait(claimed, metrics);
  return JsonReply(wire::ToWire(claimed));
}

absl::StatusOr<Reply> BulkReply(const absl::StatusOr<BulkResult>& result) {
  if (!result.ok()) return result.status();
  return JsonReply(wire::ToWire(*result));
}

}  // namespace

int HttpStatusForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Every byte of `b` is looked at whatever `a` holds; a length mismatch
  // only sets a bit.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char from_a =
        a.empty() ? 0 : static_cast<unsigned char>(a[i % a.size()]);
    diff = diff | (from_a ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

HttpApi::HttpApi(Engine* engine, HttpApiOptions options)
    : engine_(engine),
      options_(std::move(options)),
      server_(std::make_unique<httplib::Server>()),
      series_(options_.series_step, options_.series_window) {}

HttpApi::~HttpApi() {
  StopAccepting();
  Wait();
}

void HttpApi::EnterRequest() {
  absl::MutexLock lock(&mu_);
  ++busy_;
}

void HttpApi::LeaveRequest() {
  absl::MutexLock lock(&mu_);
  --busy_;
}

bool HttpApi::AwaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return busy_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

bool HttpApi::Admit(const httplib::Request& req, httplib::Response& res) {
  // httplib bounds a body by max_body_bytes only through Content-Length:
  // a chunked body would be read whole whatever its size, and a compressed
  // one inflated whole. Neither is accepted.
  if (req.has_header("Transfer-Encoding")) {
    SetError(res, absl::InvalidArgumentError(
                      "a request body needs a Content-Length; "
                      "Transfer-Encoding is not accepted"));
    res.status = 411;
    return false;
  }
  if (req.has_header("Content-Encoding") &&
      !absl::EqualsIgnoreCase(req.get_header_value("Content-Encoding"),
                              "identity")) {
    SetError(res, absl::InvalidArgumentError(
                      "compressed request bodies are not accepted"));
    res.status = 415;
    return false;
  }
  if (req.path == "/healthz") return true;
  const bool tokens =
      !options_.read_token.empty() || !options_.admin_token.empty();
  // A page of another site cannot make a browser act here (CSRF), and,
  // without a token, a site that rebinds its name to this address cannot
  // read or change anything.
  if (!SameOrigin(req)) {
    SetError(res, absl::PermissionDeniedError(
                      "a cross-origin request (its Origin is not this "
                      "server's)"));
    return false;
  }
  if (!tokens && !HostIsAnAddress(req)) {
    SetError(res, absl::PermissionDeniedError(
                      "without a token, the Host header must be an IP "
                      "address or localhost (DNS names are refused: DNS "
                      "rebinding); configure a token to serve a name"));
    return false;
  }
  // The dashboard's files hold no data: no token, no rate limit.
  if (req.method == "GET" && IsDashboardPath(req.path)) return true;
  if (tokens) {
    const std::string authorization = req.get_header_value("Authorization");
    absl::string_view header = authorization;
    absl::string_view token;
    const bool bearer = absl::ConsumePrefix(&header, "Bearer ");
    if (bearer) token = header;
    const bool admin = bearer && !options_.admin_token.empty() &&
                       ConstantTimeEquals(token, options_.admin_token);
    const bool reader = bearer && !options_.read_token.empty() &&
                        ConstantTimeEquals(token, options_.read_token);
    if (!admin && !reader) {
      res.set_header("WWW-Authenticate", "Bearer");
      SetError(res,
               absl::UnauthenticatedError("a valid bearer token is required "
                                          "(Authorization: Bearer <token>)"));
      return false;
    }
    if (!admin && req.method != "GET" && req.method != "HEAD") {
      SetError(res, absl::PermissionDeniedError(
                        "the read token allows GET requests only"));
      return false;
    }
  }
  if (options_.rate_per_second > 0) {
    absl::MutexLock lock(&rate_mu_);
    if (rate_ != nullptr && !rate_->TryTake(absl::Now())) {
      res.set_header("Retry-After", "1");
      SetError(res, absl::ResourceExhaustedError(absl::StrCat(
                        "over the server's limit of ", options_.rate_per_second,
                        " requests per second")));
      return false;
    }
  }
  return true;
}

void HttpApi::ObserveRunTime(uint64_t task_id, bool completed) {
  // The task as the call left it: its type and when the claim began. A
  // task deleted meanwhile is not counted.
  absl::StatusOr<Task> task = engine_->Get(task_id);
  if (!task.ok()) return;
  const absl::Time end = task->finished_micros() != 0
                             ? absl::FromUnixMicros(task->finished_micros())
                             : absl::Now();
  metrics_.ObserveRunTime(task->type(), completed,
                          end - absl::FromUnixMicros(task->claimed_micros()));
}

void HttpApi::RegisterRoutes() {
  // A route's handler maps a request to a reply or an error status.
  using Handler = std::function<absl::StatusOr<Reply>(const httplib::Request&)>;
  httplib::Server& s = *server_;
  // Wraps a handler: counts it busy, turns its status into a response, and
  // logs 5xx answers.
  auto wrap = [this](Handler handler) {
    return [this, handler = std::move(handler)](const httplib::Request& req,
                                                httplib::Response& res) {
      EnterRequest();
      absl::StatusOr<Reply> reply = handler(req);
      LeaveRequest();
      if (reply.ok()) {
        res.status = 200;
        res.set_content(std::move(reply->body), reply->content_type);
        return;
      }
      SetError(res, reply.status());
      if (res.status >= 500 && options_.log) {
        options_.log(absl::StrCat(req.method, " ", absl::CHexEscape(req.path),
                                  ": ", res.status, " ",
                                  absl::CHexEscape(reply.status().ToString())));
      }
    };
  };
  auto task_id = [](const httplib::Request& req) {
    return ParseId("task id", req.matches[1].str());
  };

  // The dashboard: static files, no engine call.
  auto to_dashboard = [](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/ui/");
  };
  s.Get("/", to_dashboard);
  s.Get("/ui", to_dashboard);
  s.Get(R"(/ui/([a-z0-9._-]*))",
        [](const httplib::Request& req, httplib::Response& res) {
          std::string name = req.matches[1].str();
          if (name.empty()) name = "index.html";
          const DashboardAsset* asset = FindDashboardAsset(name);
          if (asset == nullptr) {
            SetError(res, absl::NotFoundError("no such dashboard file"));
            return;
          }
          res.set_content(asset->body.data(), asset->body.size(),
                          std::string(asset->content_type).c_str());
        });

  s.Get("/healthz", wrap([](const httplib::Request&) { return OkReply(); }));
  s.Get("/readyz",
        wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
          absl::Status health = engine_->Health();
          if (health.code() == absl::StatusCode::kCancelled) {
            return absl::UnavailableError("the engine is closed");
          }
          if (!health.ok()) {
            return absl::UnavailableError(absl::StrCat(
                "the engine takes no more writes: ", health.message()));
          }
          return OkReply();
        }));
  s.Get("/metrics",
        wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(EngineStats stats, engine_->Stats());
          Reply reply;
          reply.content_type = kPrometheus;
          reply.body = absl::StrCat(
              RenderPrometheus(stats, engine_->Recovery(), absl::Now()),
              metrics_.Render());
          return reply;
        }));

  s.Post("/v1/tasks",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           wire::TaskSpec spec;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &spec));
           TASKWAL_ASSIGN_OR_RETURN(SubmitResult result,
                                    engine_->Submit(wire::FromWire(spec)));
           SubmitResponse response;
           response.set_task_id(result.task_id);
           response.set_deduplicated(result.deduplicated);
           return JsonReply(response);
         }));
  s.Post("/v1/tasks/batch",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           SubmitBatchRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           std::vector<taskwal::TaskSpec> specs;
           specs.reserve(request.tasks_size());
           for (const wire::TaskSpec& spec : request.tasks()) {
             specs.push_back(wire::FromWire(spec));
           }
           TASKWAL_ASSIGN_OR_RETURN(std::vector<SubmitResult> results,
                                    engine_->SubmitBatch(specs));
           SubmitBatchResponse response;
           for (const SubmitResult& r : results) {
             SubmitResponse* out = response.add_results();
             out->set_task_id(r.task_id);
             out->set_deduplicated(r.deduplicated);
           }
           return JsonReply(response);
         }));
  s.Get("/v1/tasks",
        wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_RETURN_IF_ERROR(CheckParams(
              req, {"status", "type", "limit", "after_id", "payloads"}));
          ListFilter filter;
          if (req.has_param("status")) {
            TASKWAL_ASSIGN_OR_RETURN(
                filter.status, ParseStatusName(req.get_param_value("status")));
          }
          filter.type = req.get_param_value("type");
          if (req.has_param("limit")) {
            TASKWAL_ASSIGN_OR_RETURN(
                filter.limit, ParseId("limit", req.get_param_value("limit")));
          }
          if (req.has_param("after_id")) {
            TASKWAL_ASSIGN_OR_RETURN(
                filter.after_id,
                ParseId("after_id", req.get_param_value("after_id")));
          }
          if (req.has_param("payloads")) {
            const std::string payloads = req.get_param_value("payloads");
            if (payloads != "true" && payloads != "false") {
              return absl::InvalidArgumentError(
                  "the query parameter payloads is true or false");
            }
            filter.payloads = payloads == "true";
          }
          TASKWAL_ASSIGN_OR_RETURN(ListPage page, engine_->List(filter));
          ListTasksResponse response;
          for (Task& task : page.tasks) *response.add_tasks() = std::move(task);
          response.set_next_cursor(page.next_cursor);
          return JsonReply(response);
        }));
  s.Get("/v1/tasks/by-key",
        wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_RETURN_IF_ERROR(CheckParams(req, {"key"}));
          if (!req.has_param("key")) {
            return absl::InvalidArgumentError(
                "the query parameter key is required");
          }
          TASKWAL_ASSIGN_OR_RETURN(Task task, engine_->GetByIdempotencyKey(
                                                  req.get_param_value("key")));
          return JsonReply(task);
        }));
  s.Get(R"(/v1/tasks/([^/]+))",
        wrap([this,
              task_id](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(uint64_t id, task_id(req));
          TASKWAL_ASSIGN_OR_RETURN(Task task, engine_->Get(id));
          return JsonReply(task);
        }));
  s.Get(R"(/v1/tasks/([^/]+)/history)",
        wrap([this,
              task_id](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(uint64_t id, task_id(req));
          TASKWAL_ASSIGN_OR_RETURN(std::vector<HistoryEntry> entries,
                                   engine_->History(id));
          HistoryResponse response;
          for (HistoryEntry& e : entries) {
            *response.add_entries() = std::move(e);
          }
          return JsonReply(response);
        }));
  s.Post(R"(/v1/tasks/([^/]+)/claim)",
         wrap([this,
               task_id](const httplib::Request& req) -> absl::StatusOr<Reply> {
           TASKWAL_ASSIGN_OR_RETURN(uint64_t id, task_id(req));
           ClaimRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           TASKWAL_ASSIGN_OR_RETURN(
               ClaimedTask claimed,
               engine_->Claim(id, request.worker_id(),
                              absl::Microseconds(request.lease_micros())));
           return ClaimReply(claimed, &metrics_);
         }));
  s.Post(R"(/v1/tasks/([^/]+)/retry)",
         wrap([this,
               task_id](const httplib::Request& req) -> absl::StatusOr<Reply> {
           TASKWAL_ASSIGN_OR_RETURN(uint64_t id, task_id(req));
           TASKWAL_RETURN_IF_ERROR(engine_->Retry(id));
           return OkReply();
         }));
  s.Post(R"(/v1/tasks/([^/]+)/cancel)",
         wrap([this,
               task_id](const httplib::Request& req) -> absl::StatusOr<Reply> {
           TASKWAL_ASSIGN_OR_RETURN(uint64_t id, task_id(req));
           TASKWAL_RETURN_IF_ERROR(engine_->Cancel(id));
           return OkReply();
         }));
  s.Delete(R"(/v1/tasks/([^/]+))",
           wrap([this, task_id](
                    const httplib::Request& req) -> absl::StatusOr<Reply> {
             TASKWAL_ASSIGN_OR_RETURN(uint64_t id, task_id(req));
             TASKWAL_RETURN_IF_ERROR(engine_->Delete(id));
             return OkReply();
           }));

  // ClaimNext and ClaimNextBatch are not wrapped in EnterRequest /
  // LeaveRequest while they wait: a long poll does not hold up AwaitIdle.
  auto long_poll = [](Handler handler) {
    return [handler = std::move(handler)](const httplib::Request& req,
                                          httplib::Response& res) {
      absl::StatusOr<Reply> reply = handler(req);
      if (reply.ok()) {
        res.set_content(std::move(reply->body), reply->content_type);
      } else {
        SetError(res, reply.status());
      }
    };
  };
  auto claim_options = [this](const ClaimNextRequest& r) {
    ClaimNextOptions claim;
    claim.type = r.type();
    claim.lease = absl::Microseconds(r.lease_micros());
    claim.wait =
        std::min(absl::Microseconds(r.wait_micros()), options_.max_claim_wait);
    return claim;
  };
  s.Post("/v1/claims",
         long_poll([this, claim_options](
                       const httplib::Request& req) -> absl::StatusOr<Reply> {
           ClaimNextRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           TASKWAL_ASSIGN_OR_RETURN(
               ClaimedTask claimed,
               engine_->ClaimNext(request.worker_id(), claim_options(request)));
           EnterRequest();
           absl::StatusOr<Reply> reply = ClaimReply(claimed, &metrics_);
           LeaveRequest();
           return reply;
         }));
  // ClaimNextBatch: as /v1/claims, for up to max_tasks tasks.
  s.Post("/v1/claims/batch",
         long_poll([this, claim_options](
                       const httplib::Request& req) -> absl::StatusOr<Reply> {
           ClaimNextBatchRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           TASKWAL_ASSIGN_OR_RETURN(
               std::vector<ClaimedTask> claimed,
               engine_->ClaimNextBatch(request.claim().worker_id(),
                                       claim_options(request.claim()),
                                       request.max_tasks()));
           EnterRequest();
           ClaimBatchResponse response;
           for (const ClaimedTask& c : claimed) {
             ObserveQueueWait(c, &metrics_);
             *response.add_claims() = wire::ToWire(c);
           }
           absl::StatusOr<Reply> reply = JsonReply(response);
           LeaveRequest();
           return reply;
         }));
  s.Post("/v1/claims/complete/batch",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           CompleteBatchRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           std::vector<Completion> completions;
           completions.reserve(request.completions_size());
           for (const CompleteRequest& c : request.completions()) {
             completions.push_back(
                 Completion{wire::FromWire(c.claim()), c.result()});
           }
           TASKWAL_ASSIGN_OR_RETURN(std::vector<absl::Status> done,
                                    engine_->CompleteBatch(completions));
           CompleteBatchResponse response;
           for (size_t i = 0; i < done.size(); ++i) {
             if (done[i].ok()) {
               ObserveRunTime(completions[i].claim.task_id, /*completed=*/true);
             }
             *response.add_results() = wire::ErrorToWire(done[i]);
           }
           return JsonReply(response);
         }));
  s.Post("/v1/claims/complete",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           CompleteRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           TASKWAL_RETURN_IF_ERROR(engine_->Complete(
               wire::FromWire(request.claim()), request.result()));
           ObserveRunTime(request.claim().task_id(), /*completed=*/true);
           return OkReply();
         }));
  s.Post("/v1/claims/fail",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           FailRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           FailOptions fail;
           if (request.has_retry_after_micros()) {
             fail.retry_after =
                 absl::Microseconds(request.retry_after_micros());
           }
           fail.permanent = request.permanent();
           TASKWAL_RETURN_IF_ERROR(engine_->Fail(
               wire::FromWire(request.claim()), request.error(), fail));
           ObserveRunTime(request.claim().task_id(), /*completed=*/false);
           return OkReply();
         }));
  s.Post(
      "/v1/claims/heartbeat",
      wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
        HeartbeatRequest request;
        TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
        TASKWAL_ASSIGN_OR_RETURN(
            absl::Time deadline,
            engine_->Heartbeat(wire::FromWire(request.claim()),
                               absl::Microseconds(request.extension_micros())));
        HeartbeatResponse response;
        response.set_lease_deadline_micros(wire::ToMicros(deadline));
        return JsonReply(response);
      }));
  s.Get("/v1/next-due",
        wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_RETURN_IF_ERROR(CheckParams(req, {"type"}));
          TASKWAL_ASSIGN_OR_RETURN(
              std::optional<absl::Time> due,
              engine_->NextDueTime(req.get_param_value("type")));
          NextDueResponse response;
          response.set_due(due.has_value());
          if (due) response.set_due_micros(absl::ToUnixMicros(*due));
          return JsonReply(response);
        }));

  s.Post("/v1/bulk/retry",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           BulkRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           return BulkReply(engine_->RetryMatching(wire::FromWire(request)));
         }));
  s.Post("/v1/bulk/cancel",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           BulkRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           return BulkReply(engine_->CancelMatching(wire::FromWire(request)));
         }));
  s.Post("/v1/bulk/delete",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           BulkRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           return BulkReply(engine_->DeleteMatching(wire::FromWire(request)));
         }));

  s.Get("/v1/schedules",
        wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(std::vector<Schedule> schedules,
                                   engine_->ListSchedules());
          ListSchedulesResponse response;
          for (Schedule& sc : schedules)
            *response.add_schedules() = std::move(sc);
          return JsonReply(response);
        }));
  s.Get(R"(/v1/schedules/(.+))",
        wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(Schedule schedule,
                                   engine_->GetSchedule(req.matches[1].str()));
          return JsonReply(schedule);
        }));
  s.Put(R"(/v1/schedules/(.+))",
        wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
          wire::ScheduleSpec request;
          TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
          taskwal::ScheduleSpec spec = wire::FromWire(request);
          spec.name = req.matches[1].str();
          TASKWAL_ASSIGN_OR_RETURN(Schedule stored, engine_->PutSchedule(spec));
          return JsonReply(stored);
        }));
  s.Delete(
      R"(/v1/schedules/(.+))",
      wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
        TASKWAL_RETURN_IF_ERROR(engine_->DeleteSchedule(req.matches[1].str()));
        return OkReply();
      }));

  s.Get("/v1/paused",
        wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(std::vector<std::string> types,
                                   engine_->PausedTypes());
          PausedTypesResponse response;
          for (std::string& t : types) response.add_types(std::move(t));
          return JsonReply(response);
        }));
  s.Post("/v1/pause",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           PauseRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           TASKWAL_RETURN_IF_ERROR(engine_->Pause(request.type()));
           return OkReply();
         }));
  s.Post("/v1/resume",
         wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
           PauseRequest request;
           TASKWAL_RETURN_IF_ERROR(ParseBody(req.body, &request));
           TASKWAL_RETURN_IF_ERROR(engine_->Resume(request.type()));
           return OkReply();
         }));

  s.Get("/v1/stats",
        wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
          TASKWAL_ASSIGN_OR_RETURN(EngineStats stats, engine_->Stats());
          return JsonReply(wire::ToWire(stats));
        }));
  s.Get("/v1/recovery",
        wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
          const RecoveryReport recovery = engine_->Recovery();
          return JsonReply(wire::ToWire(engine_->Recovery()));
        }));
  s.Get("/v1/series",
        wrap([this](const httplib::Request& req) -> absl::StatusOr<Reply> {
          TASKWAL_RETURN_IF_ERROR(CheckParams(req, {}));
          dashboard::SeriesResponse response;
          response.set_step_micros(absl::ToInt64Microseconds(series_.step()));
          for (double bound : HttpMetrics::kBuckets) {
            response.add_bucket_bounds_seconds(bound);
          }
          for (const SeriesSample& sample : series_.Samples()) {
            dashboard::SeriesSample* out = response.add_samples();
            out->set_time_micros(absl::ToUnixMicros(sample.time));
            out->set_submitted(sample.submitted);
            out->set_completions(sample.completions);
            out->set_failed_attempts(sample.failed_attempts);
            for (uint64_t n : sample.queue_wait) out->add_queue_wait_buckets(n);
            for (uint64_t n : sample.run_time) out->add_run_time_buckets(n);
          }
          return JsonReply(response);
        }));
  s.Post("/v1/snapshot",
         wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
           TASKWAL_RETURN_IF_ERROR(engine_->Snapshot());
           return OkReply();
         }));
  s.Post("/v1/maintenance",
         wrap([this](const httplib::Request&) -> absl::StatusOr<Reply> {
           TASKWAL_RETURN_IF_ERROR(engine_->RunMaintenance());
           return OkReply();
         }));
}

absl::StatusOr<int> HttpApi::Start(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", port, " is outside [0, 65535]"));
  }
  if (options_.threads < 1) {
    return absl::InvalidArgumentError("threads must be at least 1");
  }
  if (options_.rate_per_second != 0 &&
      (options_.rate_per_second < engine::TokenBucket::kMinRate ||
       options_.rate_per_second > engine::TokenBucket::kMaxRate ||
       options_.rate_burst < 1)) {
    return absl::InvalidArgumentError(
        "rate_per_second must be 0 or in [1e-6, 1e9], with rate_burst >= 1");
  }
  if (options_.series_step <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("series_step must be positive");
  }
  absl::MutexLock lock(&thread_mu_);
  if (started_) return absl::FailedPreconditionError("already started");
  started_ = true;
  if (options_.rate_per_second > 0) {
    absl::MutexLock rate_lock(&rate_mu_);
    rate_ = std::make_unique<engine::TokenBucket>(
        options_.rate_per_second, options_.rate_burst, absl::Now());
  }
  httplib::Server& s = *server_;
  const size_t threads = static_cast<size_t>(options_.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(options_.max_body_bytes);
  s.set_keep_alive_max_count(options_.keep_alive_max_requests);
  s.set_tcp_nodelay(true);
  s.set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_header("Cache-Control", "no-store");
        if (IsDashboardPath(req.path)) {
          res.set_header("Content-Security-Policy", kDashboardPolicy);
          res.set_header("X-Frame-Options", "DENY");
          res.set_header("Referrer-Policy", "no-referrer");
        } else {
          res.set_header("Content-Security-Policy", kApiPolicy);
        }
        if (Admit(req, res)) return httplib::Server::HandlerResponse::Unhandled;
        // The body of a refused request is not read, so the connection
        // cannot carry another request: ask the client to close it.
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      });
  // httplib's own refusals (no route, body too large, a request it cannot
  // parse) get a JSON body like every other error.
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty())
          return httplib::Server::HandlerResponse::Unhandled;
        absl::StatusCode code = absl::StatusCode::kInvalidArgument;
        std::string message = "bad request";
        if (res.status == 404) {
          code = absl::StatusCode::kNotFound;
          message =
              "no such route (the API is under /v1/, see daemon/http_api.h)";
        } else if (res.status == 413) {
          message = "the request body is over the server's size limit";
        } else if (res.status >= 500) {
          code = absl::StatusCode::kInternal;
          message = "internal error";
        }
        res.set_content(ErrorJson(code, message), kJson);
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) {
        metrics_.ObserveRequest(req.method, res.status);
      });
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        SetError(res, absl::InternalError("the handler threw an exception"));
      });
  // httplib's default socket options set SO_REUSEPORT, which lets a second
  // server (of the same user) bind the same port and take half of its
  // connections: only SO_REUSEADDR here (a restart need not wait out
  // TIME_WAIT), so a port in use is an error.
  std::atomic<int> listen_fd{-1};
  s.set_socket_options([&listen_fd](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd.store(sock);
  });
  RegisterRoutes();
  const int bound = port == 0 ? s.bind_to_any_port(host)
                              : (s.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", host, ":", port));
  }
  // httplib listens with a backlog of 5 (compiled into Debian's library):
  // a burst of new clients overflows it, and a client whose connection was
  // dropped that way sees its first request fail. Linux takes a second
  // listen() on a listening socket as a new backlog.
  if (::listen(listen_fd.load(), SOMAXCONN) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot raise the listen backlog: ", std::strerror(errno)));
  }
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_.store(true);
  });
  // httplib's stop() does nothing until the server thread runs: wait for
  // it, so that a StopAccepting right after Start is not lost.
  while (!server_->is_running() && !listen_returned_.load()) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  series_.Start([this]() -> std::optional<SeriesSample> {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    if (!stats.ok()) return std::nullopt;  // Closed: nothing to draw.
    SeriesSample sample;
    sample.time = absl::Now();
    sample.submitted = stats->submitted;
    sample.completions = stats->completions;
    sample.failed_attempts = stats->failed_attempts;
    const HttpMetrics::Totals totals = metrics_.totals();
    sample.queue_wait.assign(totals.queue_wait.begin(),
                             totals.queue_wait.end());
    sample.run_time.assign(totals.run_time.begin(), totals.run_time.end());
    return sample;
  });
  return bound;
}

void HttpApi::StopAccepting() {
  server_->stop();
  series_.Stop();
}

void HttpApi::Wait() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) thread_.join();
}

}  // namespace taskwal::daemon
