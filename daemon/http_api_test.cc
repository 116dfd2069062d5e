// HttpApi over a real socket: a server on 127.0.0.1 (a free port) in front
// of an in-memory engine, and httplib::Client requests to every route,
// every error mapping and every auth case.
#include "daemon/http_api.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/dashboard.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/task.pb.h"
#include "wire/engine.pb.h"

namespace taskwal::daemon {
namespace {

using ::taskwal::wire::BulkRequest;
using ::taskwal::wire::BulkResponse;
using ::taskwal::wire::ClaimBatchResponse;
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
using ::taskwal::wire::StatsResponse;
using ::taskwal::wire::SubmitBatchRequest;
using ::taskwal::wire::SubmitBatchResponse;
using ::taskwal::wire::SubmitResponse;

using ::testing::HasSubstr;

struct HttpResult {
  int status = 0;  // 0: no response (the connection failed).
  std::string body;
  httplib::Headers headers;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(json, &message, options);
  EXPECT_TRUE(parsed.ok()) << parsed.ToString() << " in " << json;
  return message;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(message, &json).ok());
  return json;
}

class HttpApiTest : public ::testing::Test {
 protected:
  void TearDown() override { StopServer(); }

  void StartServer(HttpApiOptions options = {},
                   EngineOptions engine_options = {}) {
    engine_options.maintenance_interval = absl::ZeroDuration();
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(engine_options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    api_ = std::make_unique<HttpApi>(engine_.get(), std::move(options));
    absl::StatusOr<int> port = api_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  void StopServer() {
    if (api_ != nullptr) {
      api_->StopAccepting();
      if (engine_ != nullptr) engine_->Close().IgnoreError();
      api_->Wait();
      api_.reset();
    }
    engine_.reset();
  }

  HttpResult Call(const std::string& method, const std::string& path,
                  const std::string& body = "", const std::string& token = "",
                  const httplib::Headers& headers = {}) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(60, 0);
    client.set_tcp_nodelay(true);
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    if (!body.empty()) req.set_header("Content-Type", "application/json");
    if (!token.empty()) req.set_header("Authorization", "Bearer " + token);
    for (const auto& [name, value] : headers) req.set_header(name, value);
    httplib::Result res = client.send(req);
    HttpResult out;
    if (!res) return out;
    out.status = res->status;
    out.body = res->body;
    out.headers = res->headers;
    return out;
  }

  // An error response: its HTTP status and JSON code.
  void ExpectError(const HttpResult& r, int http_status,
                   const std::string& code) {
    EXPECT_EQ(r.status, http_status) << r.body;
    EXPECT_EQ(r.Header("Content-Type"), "application/json");
    Error error = FromJson<Error>(r.body);
    EXPECT_EQ(error.code(), code) << r.body;
    EXPECT_FALSE(error.message().empty());
  }

  uint64_t Submit(const std::string& key, const std::string& type = "t",
                  const std::string& payload = "p") {
    wire::TaskSpec spec;
    spec.set_idempotency_key(key);
    spec.set_type(type);
    spec.set_payload(payload);
    HttpResult r = Call("POST", "/v1/tasks", ToJson(spec));
    EXPECT_EQ(r.status, 200) << r.body;
    return FromJson<SubmitResponse>(r.body).task_id();
  }

  ClaimResponse ClaimNext(const std::string& worker,
                          const std::string& type = "") {
    ClaimNextRequest request;
    request.set_worker_id(worker);
    request.set_type(type);
    HttpResult r = Call("POST", "/v1/claims", ToJson(request));
    EXPECT_EQ(r.status, 200) << r.body;
    return FromJson<ClaimResponse>(r.body);
  }

  Task GetTask(uint64_t id) {
    HttpResult r = Call("GET", absl::StrCat("/v1/tasks/", id));
    EXPECT_EQ(r.status, 200) << r.body;
    return FromJson<Task>(r.body);
  }

  uint64_t Transitions() {
    absl::StatusOr<EngineStats> stats = engine_->Stats();
    EXPECT_TRUE(stats.ok());
    return stats.ok() ? stats->transitions : 0;
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<HttpApi> api_;
  int port_ = 0;
};

TEST(HttpStatusTest, EveryCodeMapsToItsDocumentedStatus) {
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kAborted), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kFailedPrecondition), 409);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnimplemented), 501);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kCancelled), 503);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kDataLoss), 500);
  EXPECT_EQ(HttpStatusForCode(absl::StatusCode::kUnknown), 500);
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("secret2", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  EXPECT_FALSE(ConstantTimeEquals("abab", "ab"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST_F(HttpApiTest, APortInUseIsRefused) {
  StartServer();
  HttpApi second(engine_.get(), {});
  absl::StatusOr<int> port = second.Start("127.0.0.1", port_);
  EXPECT_EQ(port.status().code(), absl::StatusCode::kUnavailable)
      << port.status();
  // The first server still answers every request.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(Call("GET", "/healthz").status, 200);
}

TEST_F(HttpApiTest, HealthReadyAndMetrics) {
  StartServer();
  HttpResult r = Call("GET", "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(FromJson<OkResponse>(r.body).status(), "ok");
  EXPECT_EQ(Call("GET", "/readyz").status, 200);
  Submit("k1");
  r = Call("GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.Header("Content-Type"), HasSubstr("text/plain"));
  EXPECT_THAT(r.body, HasSubstr("taskwal_tasks{status=\"pending\"} 1\n"));
  EXPECT_THAT(r.body, HasSubstr("taskwal_submitted_total 1\n"));

  // Claims and completions served here feed the per-type histograms.
  ClaimResponse claim = ClaimNext("w");
  CompleteRequest complete;
  *complete.mutable_claim() = claim.claim();
  ASSERT_EQ(Call("POST", "/v1/claims/complete", ToJson(complete)).status, 200);
  r = Call("GET", "/metrics");
  EXPECT_THAT(r.body,
              HasSubstr("taskwal_queue_wait_seconds_count{type=\"t\"} 1\n"));
  EXPECT_THAT(r.body, HasSubstr("taskwal_run_time_seconds_count{type=\"t\","
                                "outcome=\"completed\"} 1\n"));
  // Every response is counted, once written (httplib's logger runs after
  // the write, so the count may lag the client by a moment).
  const std::string posts =
      "taskwal_http_requests_total{method=\"POST\",code=\"200\"} 3\n";
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (r.body.find(posts) == std::string::npos && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
    r = Call("GET", "/metrics");
  }
  EXPECT_THAT(r.body, HasSubstr(posts));
  EXPECT_THAT(r.body, HasSubstr("taskwal_http_requests_total{method=\"GET\","
                                "code=\"200\"} "));
}

TEST_F(HttpApiTest, SubmitDeduplicatesAndGetsByIdAndKey) {
  StartServer();
  wire::TaskSpec spec;
  spec.set_idempotency_key("order-1");
  spec.set_type("email");
  spec.set_payload(std::string("\x00\xff{bytes}", 9));
  spec.set_priority(5);
  spec.set_max_attempts(4);
  HttpResult r = Call("POST", "/v1/tasks", ToJson(spec));
  ASSERT_EQ(r.status, 200) << r.body;
  // 64-bit ids are JSON strings in the mapping.
  EXPECT_THAT(r.body, HasSubstr("\"task_id\":\""));
  SubmitResponse first = FromJson<SubmitResponse>(r.body);
  EXPECT_FALSE(first.deduplicated());
  SubmitResponse again =
      FromJson<SubmitResponse>(Call("POST", "/v1/tasks", ToJson(spec)).body);
  EXPECT_TRUE(again.deduplicated());
  EXPECT_EQ(again.task_id(), first.task_id());

  Task task = GetTask(first.task_id());
  EXPECT_EQ(task.idempotency_key(), "order-1");
  EXPECT_EQ(task.type(), "email");
  EXPECT_EQ(task.payload(), spec.payload());
  EXPECT_EQ(task.priority(), 5);
  EXPECT_EQ(task.max_attempts(), 4u);
  EXPECT_EQ(task.status(), PENDING);

  r = Call("GET", "/v1/tasks/by-key?key=order-1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<Task>(r.body).id(), first.task_id());

  // Same key, other payload.
  spec.set_payload("other");
  ExpectError(Call("POST", "/v1/tasks", ToJson(spec)), 409, "ALREADY_EXISTS");
  ExpectError(Call("GET", "/v1/tasks/by-key?key=nope"), 404, "NOT_FOUND");
  ExpectError(Call("GET", "/v1/tasks/by-key"), 400, "INVALID_ARGUMENT");
  ExpectError(Call("GET", "/v1/tasks/999999"), 404, "NOT_FOUND");
  ExpectError(Call("GET", "/v1/tasks/abc"), 400, "INVALID_ARGUMENT");
  ExpectError(Call("GET", "/v1/tasks/99999999999999999999999"), 400,
              "INVALID_ARGUMENT");
  // Engine validation: an empty key.
  ExpectError(Call("POST", "/v1/tasks", "{\"type\":\"t\"}"), 400,
              "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, BatchIsAllOrNothing) {
  StartServer();
  SubmitBatchRequest batch;
  for (int i = 0; i < 3; ++i) {
    batch.add_tasks()->set_idempotency_key(absl::StrCat("b", i));
  }
  HttpResult r = Call("POST", "/v1/tasks/batch", ToJson(batch));
  ASSERT_EQ(r.status, 200) << r.body;
  SubmitBatchResponse response = FromJson<SubmitBatchResponse>(r.body);
  ASSERT_EQ(response.results_size(), 3);
  EXPECT_EQ(GetTask(response.results(2).task_id()).idempotency_key(), "b2");

  const uint64_t before = Transitions();
  SubmitBatchRequest bad;
  bad.add_tasks()->set_idempotency_key("c0");
  bad.add_tasks();  // No key.
  r = Call("POST", "/v1/tasks/batch", ToJson(bad));
  ExpectError(r, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(Transitions(), before);
  ExpectError(Call("GET", "/v1/tasks/by-key?key=c0"), 404, "NOT_FOUND");
}

TEST_F(HttpApiTest, ListFiltersAndPages) {
  StartServer();
  for (int i = 0; i < 5; ++i) Submit(absl::StrCat("a", i), "alpha");
  for (int i = 0; i < 2; ++i) Submit(absl::StrCat("b", i), "beta");
  ClaimNext("w", "beta");

  HttpResult r = Call("GET", "/v1/tasks?type=alpha&limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  ListTasksResponse page = FromJson<ListTasksResponse>(r.body);
  std::vector<uint64_t> seen;
  while (true) {
    ASSERT_LE(page.tasks_size(), 2);
    for (const Task& t : page.tasks()) {
      EXPECT_EQ(t.type(), "alpha");
      seen.push_back(t.id());
    }
    if (page.next_cursor() == 0) break;
    r = Call("GET", absl::StrCat("/v1/tasks?type=alpha&limit=2&after_id=",
                                 page.next_cursor()));
    ASSERT_EQ(r.status, 200) << r.body;
    page = FromJson<ListTasksResponse>(r.body);
  }
  EXPECT_EQ(seen.size(), 5u);

  r = Call("GET", "/v1/tasks?status=claimed");
  ASSERT_EQ(r.status, 200) << r.body;
  page = FromJson<ListTasksResponse>(r.body);
  ASSERT_EQ(page.tasks_size(), 1);
  EXPECT_EQ(page.tasks(0).type(), "beta");

  ExpectError(Call("GET", "/v1/tasks?status=sleeping"), 400,
              "INVALID_ARGUMENT");
  ExpectError(Call("GET", "/v1/tasks?limit=0"), 400, "INVALID_ARGUMENT");
  ExpectError(Call("GET", "/v1/tasks?limit=x"), 400, "INVALID_ARGUMENT");
  ExpectError(Call("GET", "/v1/tasks?colour=red"), 400, "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, ListWithoutPayloads) {
  StartServer();
  wire::TaskSpec spec;
  spec.set_idempotency_key("k");
  spec.set_type("t");
  spec.set_payload(std::string(4096, 'x'));
  ASSERT_EQ(Call("POST", "/v1/tasks", ToJson(spec)).status, 200);
  HttpResult r = Call("GET", "/v1/tasks?payloads=false");
  ASSERT_EQ(r.status, 200) << r.body;
  ListTasksResponse page = FromJson<ListTasksResponse>(r.body);
  ASSERT_EQ(page.tasks_size(), 1);
  EXPECT_EQ(page.tasks(0).idempotency_key(), "k");
  EXPECT_TRUE(page.tasks(0).payload().empty());
  r = Call("GET", "/v1/tasks?payloads=true");
  ASSERT_EQ(r.status, 200) << r.body;
  page = FromJson<ListTasksResponse>(r.body);
  ASSERT_EQ(page.tasks_size(), 1);
  EXPECT_EQ(page.tasks(0).payload(), std::string(4096, 'x'));
  ExpectError(Call("GET", "/v1/tasks?payloads=no"), 400, "INVALID_ARGUMENT");
}

// Batches: the JSON of /v1/claims/batch and /v1/claims/complete/batch.
TEST_F(HttpApiTest, ClaimsAndCompletionsInBatches) {
  StartServer();
  std::set<uint64_t> ids;
  for (int i = 0; i < 4; ++i) ids.insert(Submit(absl::StrCat("b", i)));
  HttpResult r = Call("POST", "/v1/claims/batch",
                      R"({"claim": {"worker_id": "w"}, "max_tasks": 3})");
  ASSERT_EQ(r.status, 200) << r.body;
  const ClaimBatchResponse batch = FromJson<ClaimBatchResponse>(r.body);
  ASSERT_EQ(batch.claims_size(), 3);
  CompleteBatchRequest complete;
  for (const ClaimResponse& c : batch.claims()) {
    EXPECT_EQ(ids.count(c.task().id()), 1u);
    EXPECT_EQ(c.task().status(), CLAIMED);
    EXPECT_EQ(c.claim().worker_id(), "w");
    CompleteRequest* one = complete.add_completions();
    *one->mutable_claim() = c.claim();
    one->set_result("done");
  }
  complete.mutable_completions(1)->mutable_claim()->set_token(1);
  r = Call("POST", "/v1/claims/complete/batch", ToJson(complete));
  ASSERT_EQ(r.status, 200) << r.body;
  const CompleteBatchResponse done = FromJson<CompleteBatchResponse>(r.body);
  ASSERT_EQ(done.results_size(), 3);
  EXPECT_EQ(done.results(0).code(), "OK");
  EXPECT_EQ(done.results(1).code(), "ABORTED");
  EXPECT_FALSE(done.results(1).message().empty());
  EXPECT_EQ(done.results(2).code(), "OK");
  EXPECT_EQ(GetTask(batch.claims(0).task().id()).status(), COMPLETED);
  EXPECT_EQ(GetTask(batch.claims(1).task().id()).status(), CLAIMED);
  // Bad batches are refused whole.
  ExpectError(Call("POST", "/v1/claims/batch",
                   R"({"claim": {"worker_id": "w"}, "max_tasks": 0})"),
              400, "INVALID_ARGUMENT");
  ExpectError(Call("POST", "/v1/claims/complete/batch", "{}"), 400,
              "INVALID_ARGUMENT");
  // One task is left; then nothing is ready.
  r = Call("POST", "/v1/claims/batch",
           R"({"claim": {"worker_id": "w"}, "max_tasks": 3})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<ClaimBatchResponse>(r.body).claims_size(), 1);
  ExpectError(Call("POST", "/v1/claims/batch",
                   R"({"claim": {"worker_id": "w"}, "max_tasks": 3})"),
              404, "NOT_FOUND");
}

TEST_F(HttpApiTest, ClaimHeartbeatCompleteAndLostClaims) {
  StartServer();
  const uint64_t id = Submit("job");
  ClaimResponse claim = ClaimNext("worker-1");
  EXPECT_EQ(claim.claim().task_id(), id);
  EXPECT_EQ(claim.claim().worker_id(), "worker-1");
  EXPECT_NE(claim.claim().token(), 0u);
  EXPECT_EQ(claim.attempt(), 1u);
  EXPECT_EQ(claim.task().status(), CLAIMED);
  EXPECT_GT(claim.lease_deadline_micros(), 0);

  HeartbeatRequest heartbeat;
  *heartbeat.mutable_claim() = claim.claim();
  heartbeat.set_extension_micros(60000000);
  HttpResult r = Call("POST", "/v1/claims/heartbeat", ToJson(heartbeat));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_GT(FromJson<HeartbeatResponse>(r.body).lease_deadline_micros(), 0);

  // A stale token: the claim is lost, nothing changes.
  CompleteRequest stale;
  *stale.mutable_claim() = claim.claim();
  stale.mutable_claim()->set_token(claim.claim().token() + 1);
  ExpectError(Call("POST", "/v1/claims/complete", ToJson(stale)), 409,
              "ABORTED");
  EXPECT_EQ(GetTask(id).status(), CLAIMED);

  CompleteRequest complete;
  *complete.mutable_claim() = claim.claim();
  complete.set_result("done");
  r = Call("POST", "/v1/claims/complete", ToJson(complete));
  ASSERT_EQ(r.status, 200) << r.body;
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), COMPLETED);
  EXPECT_EQ(task.result(), "done");

  ExpectError(Call("POST", "/v1/claims/heartbeat", ToJson(heartbeat)), 409,
              "ABORTED");

  r = Call("GET", absl::StrCat("/v1/tasks/", id, "/history"));
  ASSERT_EQ(r.status, 200) << r.body;
  HistoryResponse history = FromJson<HistoryResponse>(r.body);
  ASSERT_EQ(history.entries_size(), 3);
  EXPECT_EQ(history.entries(0).event(), HistoryEntry::SUBMITTED);
  EXPECT_EQ(history.entries(1).event(), HistoryEntry::CLAIMED);
  EXPECT_EQ(history.entries(2).event(), HistoryEntry::COMPLETED);
  ExpectError(Call("GET", "/v1/tasks/424242/history"), 404, "NOT_FOUND");
}

TEST_F(HttpApiTest, FailRetriesThenFailsPermanently) {
  StartServer();
  const uint64_t id = Submit("flaky");
  ClaimResponse claim = ClaimNext("w");
  FailRequest fail;
  *fail.mutable_claim() = claim.claim();
  fail.set_error("try again");
  fail.set_retry_after_micros(0);
  HttpResult r = Call("POST", "/v1/claims/fail", ToJson(fail));
  ASSERT_EQ(r.status, 200) << r.body;
  Task task = GetTask(id);
  EXPECT_EQ(task.status(), PENDING);
  EXPECT_EQ(task.last_error(), "try again");

  claim = ClaimNext("w");
  EXPECT_EQ(claim.attempt(), 2u);
  *fail.mutable_claim() = claim.claim();
  fail.set_permanent(true);
  fail.set_error("no hope");
  ASSERT_EQ(Call("POST", "/v1/claims/fail", ToJson(fail)).status, 200);
  EXPECT_EQ(GetTask(id).status(), FAILED);
  // The claim ended with the task.
  ExpectError(Call("POST", "/v1/claims/fail", ToJson(fail)), 409, "ABORTED");
  // A negative retry_after is the engine's kInvalidArgument.
  fail.set_retry_after_micros(-1);
  fail.set_permanent(false);
  ExpectError(Call("POST", "/v1/claims/fail", ToJson(fail)), 400,
              "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, ClaimNextWaitsForATaskAndReportsNothingReady) {
  StartServer();
  ClaimNextRequest request;
  request.set_worker_id("w");
  request.set_wait_micros(1000);
  ExpectError(Call("POST", "/v1/claims", ToJson(request)), 404, "NOT_FOUND");

  // A long poll that a submit answers.
  request.set_wait_micros(3600000000LL);  // Capped by max_claim_wait.
  HttpResult polled;
  std::thread poller(
      [&] { polled = Call("POST", "/v1/claims", ToJson(request)); });
  // The poll may start before or after the submit; it claims the task
  // either way.
  const uint64_t id = Submit("wake-up");
  poller.join();
  ASSERT_EQ(polled.status, 200) << polled.body;
  EXPECT_EQ(FromJson<ClaimResponse>(polled.body).claim().task_id(), id);

  ExpectError(Call("POST", "/v1/claims", "{\"worker_id\":\"\"}"), 400,
              "INVALID_ARGUMENT");
  request.set_wait_micros(-5);
  ExpectError(Call("POST", "/v1/claims", ToJson(request)), 400,
              "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, ClaimByIdAndNextDue) {
  StartServer();
  wire::TaskSpec spec;
  spec.set_idempotency_key("later");
  spec.set_not_before_micros(absl::ToUnixMicros(absl::Now() + absl::Hours(1)));
  HttpResult r = Call("POST", "/v1/tasks", ToJson(spec));
  ASSERT_EQ(r.status, 200) << r.body;
  const uint64_t later = FromJson<SubmitResponse>(r.body).task_id();
  const uint64_t now = Submit("now");

  r = Call("GET", "/v1/next-due");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(FromJson<NextDueResponse>(r.body).due());
  r = Call("GET", "/v1/next-due?type=other");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(FromJson<NextDueResponse>(r.body).due());

  ClaimRequest claim;
  claim.set_worker_id("w");
  ExpectError(
      Call("POST", absl::StrCat("/v1/tasks/", later, "/claim"), ToJson(claim)),
      409, "FAILED_PRECONDITION");
  r = Call("POST", absl::StrCat("/v1/tasks/", now, "/claim"), ToJson(claim));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<ClaimResponse>(r.body).claim().task_id(), now);
  ExpectError(Call("POST", "/v1/tasks/777/claim", ToJson(claim)), 404,
              "NOT_FOUND");
}

TEST_F(HttpApiTest, RetryCancelDeleteOneTask) {
  StartServer();
  const uint64_t a = Submit("a");
  const uint64_t b = Submit("b");
  ASSERT_EQ(Call("POST", absl::StrCat("/v1/tasks/", a, "/cancel")).status, 200);
  EXPECT_EQ(GetTask(a).status(), CANCELLED);
  ExpectError(Call("POST", absl::StrCat("/v1/tasks/", a, "/cancel")), 409,
              "FAILED_PRECONDITION");
  ExpectError(Call("POST", absl::StrCat("/v1/tasks/", a, "/retry")), 409,
              "FAILED_PRECONDITION");
  ExpectError(Call("DELETE", absl::StrCat("/v1/tasks/", b)), 409,
              "FAILED_PRECONDITION");

  ClaimResponse claim = ClaimNext("w");
  ASSERT_EQ(claim.claim().task_id(), b);
  // Retry releases the claim: the holder's complete is then refused.
  ASSERT_EQ(Call("POST", absl::StrCat("/v1/tasks/", b, "/retry")).status, 200);
  EXPECT_EQ(GetTask(b).status(), PENDING);
  CompleteRequest complete;
  *complete.mutable_claim() = claim.claim();
  ExpectError(Call("POST", "/v1/claims/complete", ToJson(complete)), 409,
              "ABORTED");

  ASSERT_EQ(Call("DELETE", absl::StrCat("/v1/tasks/", a)).status, 200);
  ExpectError(Call("GET", absl::StrCat("/v1/tasks/", a)), 404, "NOT_FOUND");
  ExpectError(Call("DELETE", absl::StrCat("/v1/tasks/", a)), 404, "NOT_FOUND");
  ExpectError(Call("POST", "/v1/tasks/12345/retry"), 404, "NOT_FOUND");
}

TEST_F(HttpApiTest, BulkOperationsByFilter) {
  StartServer();
  for (int i = 0; i < 4; ++i) Submit(absl::StrCat("x", i), "x");
  Submit("y0", "y");

  BulkRequest request;
  request.set_type("x");
  request.set_dry_run(true);
  HttpResult r = Call("POST", "/v1/bulk/cancel", ToJson(request));
  ASSERT_EQ(r.status, 200) << r.body;
  BulkResponse dry = FromJson<BulkResponse>(r.body);
  EXPECT_EQ(dry.changed(), 0u);
  EXPECT_EQ(dry.task_ids_size(), 4);

  request.set_dry_run(false);
  request.set_limit(3);
  r = Call("POST", "/v1/bulk/cancel", ToJson(request));
  ASSERT_EQ(r.status, 200) << r.body;
  BulkResponse cancelled = FromJson<BulkResponse>(r.body);
  EXPECT_EQ(cancelled.changed(), 3u);
  EXPECT_TRUE(cancelled.more());
  EXPECT_EQ(GetTask(cancelled.task_ids(0)).status(), CANCELLED);

  BulkRequest remove;
  remove.set_status(CANCELLED);
  r = Call("POST", "/v1/bulk/delete", ToJson(remove));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<BulkResponse>(r.body).changed(), 3u);

  BulkRequest retry;
  retry.set_status(PENDING);
  r = Call("POST", "/v1/bulk/retry", ToJson(retry));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<BulkResponse>(r.body).changed(), 2u);

  // A status the operation does not take.
  retry.set_status(COMPLETED);
  ExpectError(Call("POST", "/v1/bulk/retry", ToJson(retry)), 400,
              "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, PauseResumeAndPausedTypes) {
  StartServer();
  Submit("m", "mail");
  ASSERT_EQ(Call("POST", "/v1/pause", "{\"type\":\"mail\"}").status, 200);
  HttpResult r = Call("GET", "/v1/paused");
  ASSERT_EQ(r.status, 200) << r.body;
  PausedTypesResponse paused = FromJson<PausedTypesResponse>(r.body);
  ASSERT_EQ(paused.types_size(), 1);
  EXPECT_EQ(paused.types(0), "mail");
  ClaimNextRequest request;
  request.set_worker_id("w");
  ExpectError(Call("POST", "/v1/claims", ToJson(request)), 404, "NOT_FOUND");
  ASSERT_EQ(Call("POST", "/v1/resume", "{\"type\":\"mail\"}").status, 200);
  ClaimNext("w");
  ExpectError(Call("POST", "/v1/pause", "{}"), 400, "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, SchedulesPutGetListDelete) {
  StartServer();
  wire::ScheduleSpec spec;
  spec.set_cron("30 2 * * *");
  spec.set_time_zone("UTC");
  spec.mutable_task()->set_type("report");
  spec.mutable_task()->set_payload("{}");
  // A name with a space and a slash, percent-encoded in the path.
  HttpResult r =
      Call("PUT", "/v1/schedules/nightly%20report%2Fv2", ToJson(spec));
  ASSERT_EQ(r.status, 200) << r.body;
  Schedule stored = FromJson<Schedule>(r.body);
  EXPECT_EQ(stored.name(), "nightly report/v2");
  EXPECT_GT(stored.next_due_micros(), 0);

  r = Call("GET", "/v1/schedules/nightly%20report%2Fv2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<Schedule>(r.body).cron(), "30 2 * * *");
  r = Call("GET", "/v1/schedules");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<ListSchedulesResponse>(r.body).schedules_size(), 1);

  wire::ScheduleSpec bad = spec;
  bad.set_cron("61 * * * *");
  ExpectError(Call("PUT", "/v1/schedules/bad", ToJson(bad)), 400,
              "INVALID_ARGUMENT");
  ASSERT_EQ(Call("DELETE", "/v1/schedules/nightly%20report%2Fv2").status, 200);
  ExpectError(Call("GET", "/v1/schedules/nightly%20report%2Fv2"), 404,
              "NOT_FOUND");
  ExpectError(Call("DELETE", "/v1/schedules/nope"), 404, "NOT_FOUND");
}

TEST_F(HttpApiTest, StatsRecoverySnapshotAndMaintenance) {
  StartServer();
  Submit("s1");
  HttpResult r = Call("GET", "/v1/stats");
  ASSERT_EQ(r.status, 200) << r.body;
  StatsResponse stats = FromJson<StatsResponse>(r.body);
  EXPECT_EQ(stats.tasks(), 1u);
  EXPECT_EQ(stats.pending(), 1u);
  EXPECT_EQ(stats.submitted(), 1u);
  EXPECT_EQ(Call("GET", "/v1/recovery").status, 200);
  EXPECT_EQ(Call("POST", "/v1/maintenance").status, 200);
  // An in-memory engine has nothing to snapshot into.
  ExpectError(Call("POST", "/v1/snapshot"), 409, "FAILED_PRECONDITION");
}

TEST_F(HttpApiTest, LimitsAndAClosedEngineMapToTheirStatuses) {
  EngineOptions engine_options;
  engine_options.max_tasks = 1;
  StartServer({}, engine_options);
  Submit("only");
  wire::TaskSpec spec;
  spec.set_idempotency_key("one-too-many");
  ExpectError(Call("POST", "/v1/tasks", ToJson(spec)), 429,
              "RESOURCE_EXHAUSTED");

  ASSERT_TRUE(engine_->Close().ok());
  ExpectError(Call("GET", "/readyz"), 503, "UNAVAILABLE");
  ExpectError(Call("POST", "/v1/tasks", ToJson(spec)), 503, "CANCELLED");
  ExpectError(Call("GET", "/v1/stats"), 503, "CANCELLED");
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
}

TEST_F(HttpApiTest, MalformedBodiesAreRejectedAndChangeNothing) {
  StartServer();
  Submit("existing");
  const uint64_t before = Transitions();
  const std::vector<std::string> bodies = {
      "{",
      "not json",
      "[]",
      "{\"idempotency_key\":\"k\",\"colour\":\"red\"}",
      "{\"idempotency_key\":5}",
      "{\"idempotency_key\":\"k\",\"payload\":\"not base64!\"}",
      "{\"idempotency_key\":\"k\",\"priority\":\"high\"}",
      "{\"idempotency_key\":\"k\"}{\"idempotency_key\":\"j\"}",
  };
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    ExpectError(Call("POST", "/v1/tasks", body), 400, "INVALID_ARGUMENT");
    ExpectError(Call("POST", "/v1/tasks/batch", body), 400, "INVALID_ARGUMENT");
    ExpectError(Call("POST", "/v1/claims", body), 400, "INVALID_ARGUMENT");
  }
  ExpectError(Call("POST", "/v1/bulk/delete", "{\"dry_run\":1,\"x\":2}"), 400,
              "INVALID_ARGUMENT");
  EXPECT_EQ(Transitions(), before);
  ExpectError(Call("GET", "/v1/tasks/by-key?key=k"), 404, "NOT_FOUND");
}

TEST_F(HttpApiTest, UnknownRoutesGetJsonErrors) {
  StartServer();
  ExpectError(Call("GET", "/v2/tasks"), 404, "NOT_FOUND");
  ExpectError(Call("PATCH", "/v1/tasks"), 404, "NOT_FOUND");
  ExpectError(Call("GET", "/v1/tasks/1/nothing"), 404, "NOT_FOUND");
}

TEST_F(HttpApiTest, OversizedBodyIsRefusedAndChangesNothing) {
  HttpApiOptions options;
  options.max_body_bytes = 1024;
  StartServer(options);
  wire::TaskSpec spec;
  spec.set_idempotency_key("big");
  spec.set_payload(std::string(2048, 'x'));
  HttpResult r = Call("POST", "/v1/tasks", ToJson(spec));
  ExpectError(r, 413, "INVALID_ARGUMENT");
  EXPECT_EQ(Transitions(), 0u);
  // A body under the limit still works.
  spec.set_payload("small");
  EXPECT_EQ(Call("POST", "/v1/tasks", ToJson(spec)).status, 200);
}

// Sends `request` to 127.0.0.1:port in one write and reads one response:
// its status and body (status 0: none came within 10 s). A server that
// refuses a request before reading its body may close the connection while
// a client is still sending it (a reset that makes httplib's client fail at
// its write); sent in one write, the whole request is in the server's hands
// before it answers, so the answer is what is tested.
HttpResult RawExchange(int port, const std::string& request) {
  HttpResult out;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return out;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string received;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) ==
          0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    size_t want = std::string::npos;  // Bytes of a whole response.
    while (received.size() < want && absl::Now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      received.append(buffer, static_cast<size_t>(n));
      const size_t end = received.find("\r\n\r\n");
      if (want != std::string::npos || end == std::string::npos) continue;
      size_t length = 0;
      for (absl::string_view line :
           absl::StrSplit(absl::string_view(received).substr(0, end), "\r\n")) {
        std::pair<std::string, std::string> header =
            absl::StrSplit(line, absl::MaxSplits(':', 1));
        if (absl::EqualsIgnoreCase(header.first, "Content-Length")) {
          if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(header.second),
                                &length)) {
            length = 0;
          }
        }
        out.headers.emplace(
            header.first,
            std::string(absl::StripAsciiWhitespace(header.second)));
      }
      want = end + 4 + length;
    }
  }
  ::close(fd);
  const size_t end = received.find("\r\n\r\n");
  int status = 0;
  // "HTTP/1.1 411 Length Required"
  if (end == std::string::npos || received.size() < 12 ||
      !absl::SimpleAtoi(received.substr(9, 3), &status)) {
    return HttpResult{};
  }
  out.status = status;
  out.body = received.substr(end + 4);
  if (auto length = out.headers.find("Content-Length");
      length != out.headers.end()) {
    size_t n = 0;
    if (absl::SimpleAtoi(length->second, &n) && n < out.body.size()) {
      out.body.resize(n);
    }
  }
  return out;
}

TEST_F(HttpApiTest, ChunkedAndCompressedBodiesAreRefused) {
  StartServer();
  const std::string json = "{\"idempotency_key\":\"chunked\"}";
  // A chunked body (no Content-Length): httplib would not bound it.
  HttpResult chunked =
      RawExchange(port_, absl::StrCat("POST /v1/tasks HTTP/1.1\r\n"
                                      "Host: 127.0.0.1\r\n"
                                      "Content-Type: application/json\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n",
                                      absl::Hex(json.size()), "\r\n", json,
                                      "\r\n0\r\n\r\n"));
  ExpectError(chunked, 411, "INVALID_ARGUMENT");
  // Its body was not read: the connection cannot carry another request.
  EXPECT_EQ(chunked.Header("Connection"), "close");

  const std::string gzip = "{\"idempotency_key\":\"gzip\"}";  // Not gzip.
  HttpResult compressed =
      RawExchange(port_, absl::StrCat("POST /v1/tasks HTTP/1.1\r\n"
                                      "Host: 127.0.0.1\r\n"
                                      "Content-Type: application/json\r\n"
                                      "Content-Encoding: gzip\r\n"
                                      "Content-Length: ",
                                      gzip.size(), "\r\n\r\n", gzip));
  ExpectError(compressed, 415, "INVALID_ARGUMENT");
  EXPECT_EQ(compressed.Header("Connection"), "close");
  EXPECT_EQ(Transitions(), 0u);
  // The same request without the encoding is served.
  EXPECT_EQ(RawExchange(port_, absl::StrCat("POST /v1/tasks HTTP/1.1\r\n"
                                            "Host: 127.0.0.1\r\n"
                                            "Content-Type: application/json\r\n"
                                            "Content-Length: ",
                                            gzip.size(), "\r\n\r\n", gzip))
                .status,
            200);
  EXPECT_EQ(Transitions(), 1u);
}

TEST_F(HttpApiTest, TokensGuardEverythingButHealthz) {
  HttpApiOptions options;
  options.read_token = "reader-secret";
  options.admin_token = "admin-secret";
  StartServer(options);
  const std::string body = "{\"idempotency_key\":\"k\"}";

  EXPECT_EQ(Call("GET", "/healthz").status, 200);
  for (const char* path : {"/readyz", "/metrics", "/v1/stats", "/v1/tasks"}) {
    SCOPED_TRACE(path);
    HttpResult r = Call("GET", path);
    ExpectError(r, 401, "UNAUTHENTICATED");
    EXPECT_EQ(r.Header("WWW-Authenticate"), "Bearer");
    ExpectError(Call("GET", path, "", "wrong"), 401, "UNAUTHENTICATED");
    EXPECT_EQ(Call("GET", path, "", "reader-secret").status, 200);
    EXPECT_EQ(Call("GET", path, "", "admin-secret").status, 200);
  }
  ExpectError(Call("POST", "/v1/tasks", body), 401, "UNAUTHENTICATED");
  ExpectError(Call("POST", "/v1/tasks", body, "admin-secre"), 401,
              "UNAUTHENTICATED");
  ExpectError(Call("POST", "/v1/tasks", body, "admin-secret2"), 401,
              "UNAUTHENTICATED");
  ExpectError(Call("POST", "/v1/tasks", body, "reader-secret"), 403,
              "PERMISSION_DENIED");
  ExpectError(Call("DELETE", "/v1/tasks/1", "", "reader-secret"), 403,
              "PERMISSION_DENIED");
  EXPECT_EQ(Transitions(), 0u);
  EXPECT_EQ(Call("POST", "/v1/tasks", body, "admin-secret").status, 200);

  // Not a bearer token.
  httplib::Client client("127.0.0.1", port_);
  client.set_basic_auth("admin", "admin-secret");
  httplib::Result basic = client.Get("/v1/stats");
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->status, 401);

  // A refused request's connection is closed; the client's next request on
  // a new one works.
  httplib::Client keep("127.0.0.1", port_);
  keep.set_keep_alive(true);
  httplib::Result refused = keep.Post("/v1/tasks", body, "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  keep.set_bearer_token_auth("admin-secret");
  httplib::Result accepted = keep.Post("/v1/tasks", body, "application/json");
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->status, 200);
}

TEST_F(HttpApiTest, RateLimitRefusesBeyondTheBurst) {
  HttpApiOptions options;
  options.rate_per_second = 1e-6;  // Nothing refills during the test.
  options.rate_burst = 2;
  StartServer(options);
  EXPECT_EQ(Call("GET", "/v1/stats").status, 200);
  EXPECT_EQ(Call("GET", "/v1/stats").status, 200);
  HttpResult r = Call("POST", "/v1/tasks", "{\"idempotency_key\":\"k\"}");
  ExpectError(r, 429, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(Transitions(), 0u);
  EXPECT_EQ(Call("GET", "/healthz").status, 200);  // Never limited.
}

TEST_F(HttpApiTest, HostileStringsRoundTripAsData) {
  StartServer();
  const std::string key = "<script>alert('k')</script>";
  const std::string type =
      "\x1b[31mred\x1b[0m</td><img src=x onerror=alert(1)>";
  const std::string payload = "<b>bold</b>\x1b]0;title\x07\r\n\"quoted\"";
  const std::string error = "\xe2\x80\xae reversed <i>&amp;</i> \x1b[2J";
  wire::TaskSpec spec;
  spec.set_idempotency_key(key);
  spec.set_type(type);
  spec.set_payload(payload);
  HttpResult r = Call("POST", "/v1/tasks", ToJson(spec));
  ASSERT_EQ(r.status, 200) << r.body;
  const uint64_t id = FromJson<SubmitResponse>(r.body).task_id();

  ClaimResponse claim = ClaimNext("<worker>");
  FailRequest fail;
  *fail.mutable_claim() = claim.claim();
  fail.set_error(error);
  fail.set_retry_after_micros(0);
  ASSERT_EQ(Call("POST", "/v1/claims/fail", ToJson(fail)).status, 200);

  r = Call("GET", absl::StrCat("/v1/tasks/", id));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.Header("X-Content-Type-Options"), "nosniff");
  // Control characters and markup never appear raw in a response:
  // protobuf's JSON printer writes them as \u escapes.
  EXPECT_EQ(r.body.find('\x1b'), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find('<'), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find('>'), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find('\x07'), std::string::npos) << r.body;
  Task task = FromJson<Task>(r.body);
  EXPECT_EQ(task.idempotency_key(), key);
  EXPECT_EQ(task.type(), type);
  EXPECT_EQ(task.payload(), payload);
  EXPECT_EQ(task.last_error(), error);
  EXPECT_EQ(claim.claim().worker_id(), "<worker>");

  r = Call("GET", absl::StrCat("/v1/tasks/by-key?key=",
                               httplib::detail::encode_query_param(key)));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FromJson<Task>(r.body).id(), id);
  // An error message that quotes the request is JSON too.
  r = Call("GET", absl::StrCat(
                      "/v1/tasks?status=",
                      httplib::detail::encode_query_param("<script>\x1b[31m")));
  ExpectError(r, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(r.body.find('\x1b'), std::string::npos) << r.body;
  // Text that is not UTF-8 is refused.
  ExpectError(Call("POST", "/v1/tasks", "{\"idempotency_key\":\"\xff\xfe\"}"),
              400, "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, ConcurrentClientsAddUp) {
  StartServer();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<int> completed(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client client("127.0.0.1", port_);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      for (int i = 0; i < kPerThread; ++i) {
        wire::TaskSpec spec;
        spec.set_idempotency_key(absl::StrCat("c", t, "-", i));
        auto submitted =
            client.Post("/v1/tasks", ToJson(spec), "application/json");
        if (!submitted || submitted->status != 200) continue;
        ClaimNextRequest request;
        request.set_worker_id(absl::StrCat("w", t));
        auto claimed =
            client.Post("/v1/claims", ToJson(request), "application/json");
        if (!claimed || claimed->status != 200) continue;
        CompleteRequest complete;
        *complete.mutable_claim() =
            FromJson<ClaimResponse>(claimed->body).claim();
        auto done = client.Post("/v1/claims/complete", ToJson(complete),
                                "application/json");
        if (done && done->status == 200) ++completed[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  int total = 0;
  for (int c : completed) total += c;
  EXPECT_EQ(total, kThreads * kPerThread);
  HttpResult r = Call("GET", "/v1/stats");
  StatsResponse stats = FromJson<StatsResponse>(r.body);
  EXPECT_EQ(stats.completed(), static_cast<uint64_t>(kThreads * kPerThread));
}

TEST_F(HttpApiTest, AwaitIdleAndStopWithALongPollInFlight) {
  StartServer();
  HttpResult polled;
  std::thread poller([&] {
    polled = Call("POST", "/v1/claims",
                  "{\"worker_id\":\"w\",\"wait_micros\":\"600000000\"}");
  });
  // A waiting long poll does not count as busy.
  EXPECT_TRUE(api_->AwaitIdle(absl::Seconds(30)));
  api_->StopAccepting();
  ASSERT_TRUE(engine_->Close().ok());  // Ends the poll.
  poller.join();
  api_->Wait();
  // The poll either had not reached the engine (no answer, or 503) or was
  // woken by Close.
  if (polled.status != 0) {
    ExpectError(polled, 503, "CANCELLED");
  }
}

TEST_F(HttpApiTest, DashboardFilesAreServedWithoutATokenUnderAStrictPolicy) {
  HttpApiOptions options;
  options.read_token = "reader-secret";
  options.admin_token = "admin-secret";
  StartServer(options);
  for (const char* path : {"/", "/ui"}) {
    SCOPED_TRACE(path);
    HttpResult r = Call("GET", path);
    EXPECT_EQ(r.status, 302);
    EXPECT_EQ(r.Header("Location"), "/ui/");
  }
  struct File {
    const char* path;
    const char* type;
    const char* holds;
  };
  for (const File& f :
       {File{"/ui/", "text/html; charset=utf-8",
             "<script src=\"dashboard.js\""},
        File{"/ui/index.html", "text/html; charset=utf-8", "<!doctype html>"},
        File{"/ui/dashboard.js", "text/javascript; charset=utf-8",
             "function visible("},
        File{"/ui/dashboard.css", "text/css; charset=utf-8", ".card"},
        File{"/ui/favicon.svg", "image/svg+xml", "<svg"}}) {
    SCOPED_TRACE(f.path);
    HttpResult r = Call("GET", f.path);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.Header("Content-Type"), f.type);
    EXPECT_THAT(r.body, HasSubstr(f.holds));
    EXPECT_THAT(r.Header("Content-Security-Policy"),
                HasSubstr("script-src 'self'"));
    EXPECT_THAT(r.Header("Content-Security-Policy"),
                HasSubstr("frame-ancestors 'none'"));
    EXPECT_EQ(r.Header("X-Frame-Options"), "DENY");
    EXPECT_EQ(r.Header("X-Content-Type-Options"), "nosniff");
  }
  // No inline script or style: the policy would block them.
  const std::string page = Call("GET", "/ui/").body;
  EXPECT_EQ(page.find("<script>"), std::string::npos);
  EXPECT_EQ(page.find("style="), std::string::npos);
  EXPECT_EQ(page.find("onclick"), std::string::npos);

  ExpectError(Call("GET", "/ui/missing.js"), 404, "NOT_FOUND");
  // Paths are not normalized: this names no dashboard file, and no data.
  ExpectError(Call("GET", "/ui/../v1/stats"), 404, "NOT_FOUND");
  // Only GET is free: a write to a dashboard path still needs a token.
  ExpectError(Call("POST", "/ui/", "{}"), 401, "UNAUTHENTICATED");
  // The data itself is not.
  ExpectError(Call("GET", "/v1/series"), 401, "UNAUTHENTICATED");
  HttpResult api = Call("GET", "/v1/stats", "", "reader-secret");
  EXPECT_EQ(api.status, 200);
  EXPECT_EQ(api.Header("Content-Security-Policy"),
            "default-src 'none'; frame-ancestors 'none'");
}

TEST_F(HttpApiTest, SeriesSamplesCountsAndLatencies) {
  HttpApiOptions options;
  options.series_step = absl::Milliseconds(20);
  StartServer(options);
  ASSERT_EQ(Call("POST", "/v1/tasks", "{\"idempotency_key\":\"k\"}").status,
            200);
  HttpResult claim = Call("POST", "/v1/claims", "{\"worker_id\":\"w\"}");
  ASSERT_EQ(claim.status, 200) << claim.body;
  const ClaimResponse claimed = FromJson<ClaimResponse>(claim.body);
  ASSERT_EQ(Call("POST", "/v1/claims/complete",
                 absl::StrCat("{\"claim\":", ToJson(claimed.claim()), "}"))
                .status,
            200);
  // Waits (no timing asserted) for a sample that saw the completion.
  dashboard::SeriesResponse series;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  for (;;) {
    HttpResult r = Call("GET", "/v1/series");
    ASSERT_EQ(r.status, 200) << r.body;
    series = FromJson<dashboard::SeriesResponse>(r.body);
    if (series.samples_size() > 0 &&
        series.samples(series.samples_size() - 1).completions() == 1) {
      break;
    }
    ASSERT_LT(absl::Now(), give_up) << r.body;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(series.step_micros(), 20000);
  ASSERT_EQ(series.bucket_bounds_seconds_size(),
            static_cast<int>(HttpMetrics::kBuckets.size()));
  EXPECT_EQ(series.bucket_bounds_seconds(0), HttpMetrics::kBuckets[0]);
  const dashboard::SeriesSample& last =
      series.samples(series.samples_size() - 1);
  EXPECT_EQ(last.submitted(), 1u);
  EXPECT_EQ(last.failed_attempts(), 0u);
  ASSERT_EQ(last.queue_wait_buckets_size(),
            static_cast<int>(HttpMetrics::kBuckets.size() + 1));
  uint64_t waits = 0, runs = 0;
  for (uint64_t n : last.queue_wait_buckets()) waits += n;
  for (uint64_t n : last.run_time_buckets()) runs += n;
  EXPECT_EQ(waits, 1u);
  EXPECT_EQ(runs, 1u);
  for (int i = 1; i < series.samples_size(); ++i) {
    EXPECT_GE(series.samples(i).time_micros(),
              series.samples(i - 1).time_micros());
  }
  ExpectError(Call("GET", "/v1/series?x=1"), 400, "INVALID_ARGUMENT");
}

TEST_F(HttpApiTest, AStepThatIsNotPositiveIsRefused) {
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open({});
  ASSERT_TRUE(engine.ok());
  HttpApiOptions options;
  options.series_step = absl::ZeroDuration();
  HttpApi api(engine->get(), options);
  EXPECT_EQ(api.Start("127.0.0.1", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(HttpApiTest, OtherSitesPagesAreRefused) {
  StartServer();
  const std::string here = absl::StrCat("127.0.0.1:", port_);
  const std::string body = "{\"idempotency_key\":\"k\"}";
  // A page of another site (CSRF): refused, nothing submitted.
  HttpResult r =
      Call("POST", "/v1/tasks", body, "", {{"Origin", "http://evil.example"}});
  ExpectError(r, 403, "PERMISSION_DENIED");
  ExpectError(Call("POST", "/v1/bulk/delete", "{}", "", {{"Origin", "null"}}),
              403, "PERMISSION_DENIED");
  ExpectError(Call("GET", "/v1/tasks/by-key?key=k"), 404, "NOT_FOUND");
  // The dashboard's own page: fine.
  EXPECT_EQ(Call("POST", "/v1/tasks", body, "",
                 {{"Origin", absl::StrCat("http://", here)}})
                .status,
            200);
  // Without a token, a DNS name in Host (DNS rebinding) is refused, reads
  // included; addresses and localhost are not.
  for (const char* host :
       {"evil.example", "evil.example:80", "127.0.0.1.nip.io", "1.2.3",
        "1.2.3.256", "localhost.evil.example"}) {
    SCOPED_TRACE(host);
    ExpectError(Call("GET", "/v1/stats", "", "", {{"Host", host}}), 403,
                "PERMISSION_DENIED");
  }
  for (std::string host :
       {here, std::string("localhost"), std::string("10.1.2.3:7070"),
        std::string("[::1]:9")}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(Call("GET", "/v1/stats", "", "", {{"Host", host}}).status, 200);
  }
  EXPECT_EQ(Call("GET", "/healthz", "", "", {{"Host", "evil.example"}}).status,
            200);
}

TEST_F(HttpApiTest, WithATokenANameInHostIsFine) {
  HttpApiOptions options;
  options.admin_token = "admin-secret";
  StartServer(options);
  EXPECT_EQ(Call("GET", "/v1/stats", "", "admin-secret",
                 {{"Host", "queue.example:7070"}})
                .status,
            200);
  // The Origin check still applies.
  ExpectError(
      Call("GET", "/v1/stats", "", "admin-secret",
           {{"Host", "queue.example:7070"}, {"Origin", "http://evil.example"}}),
      403, "PERMISSION_DENIED");
}

TEST_F(HttpApiTest, TheDashboardsFilesDoNotCountAgainstTheRateLimit) {
  HttpApiOptions options;
  options.rate_per_second = 1e-6;  // One request, then none for days.
  options.rate_burst = 1;
  StartServer(options);
  EXPECT_EQ(Call("GET", "/v1/stats").status, 200);
  ExpectError(Call("GET", "/v1/stats"), 429, "RESOURCE_EXHAUSTED");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Call("GET", "/ui/dashboard.js").status, 200);
  }
}

}  // namespace
}  // namespace taskwal::daemon
