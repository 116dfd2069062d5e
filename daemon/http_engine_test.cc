// HttpEngine against a real HttpApi on 127.0.0.1 (a free port) in front of
// an in-memory engine: what the conformance suite (tests/) does not cover,
// namely URLs, tokens, transport failures, answers that are not
// taskwald's, long polls and Close. The Engine contract itself is
// tests/engine_conformance_test.cc's "http" backend.
#include "daemon/http_engine.h"

#include <httplib.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/http_api.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "wal/status_matchers.h"

namespace taskwal::daemon {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::testing::HasSubstr;

class HttpEngineTest : public ::testing::Test {
 protected:
  void TearDown() override {
    client_.reset();
    if (engine_ != nullptr) engine_->Close().IgnoreError();
    api_.reset();
    engine_.reset();
  }

  void StartServer(HttpApiOptions options = {}) {
    EngineOptions engine_options;
    engine_options.maintenance_interval = absl::ZeroDuration();
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(engine_options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    options.threads = 8;
    api_ = std::make_unique<HttpApi>(engine_.get(), std::move(options));
    absl::StatusOr<int> port = api_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    url_ = absl::StrCat("http://127.0.0.1:", *port);
  }

  void Connect(HttpEngineOptions options = {}) {
    absl::StatusOr<std::unique_ptr<Engine>> client =
        ConnectHttpEngine(url_, std::move(options));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  static TaskSpec Spec(absl::string_view key) {
    TaskSpec spec;
    spec.idempotency_key = std::string(key);
    spec.type = "t";
    return spec;
  }

  std::unique_ptr<Engine> engine_;  // The server's.
  std::unique_ptr<HttpApi> api_;
  std::string url_;
  std::unique_ptr<Engine> client_;
};

// A batch of completions over the server's body limit is sent one
// completion at a time: each gets its own answer.
TEST_F(HttpEngineTest, ABatchTooLargeForOneRequestGoesOneByOne) {
  HttpApiOptions options;
  options.max_body_bytes = 64 << 10;
  StartServer(options);
  Connect();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_->Submit(Spec(absl::StrCat("k", i))).ok());
  }
  absl::StatusOr<std::vector<ClaimedTask>> claimed =
      client_->ClaimNextBatch("w", {}, 3);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 3u);
  std::vector<Completion> completions;
  for (const ClaimedTask& c : *claimed) {
    completions.push_back({c.claim, std::string(30 << 10, 'r')});
  }
  completions[1].result = std::string(100 << 10, 'r');  // Over alone too.
  absl::StatusOr<std::vector<absl::Status>> done =
      client_->CompleteBatch(completions);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->size(), 3u);
  EXPECT_THAT((*done)[0], IsOk());
  EXPECT_THAT((*done)[1], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*done)[2], IsOk());
  EXPECT_EQ(engine_->Stats()->completed, 2u);
}

TEST(ParseHttpUrlTest, TakesHostAndPortAndRefusesTheRest) {
  absl::StatusOr<HttpEndpoint> e = ParseHttpUrl("http://127.0.0.1:8080");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 8080);
  e = ParseHttpUrl("HTTP://localhost/");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "localhost");
  EXPECT_EQ(e->port, 80);
  e = ParseHttpUrl("http://[::1]:9000");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->port, 9000);
  for (const char* bad :
       {"127.0.0.1:8080", "https://127.0.0.1:8080", "http://", "http://:80",
        "http://h:0", "http://h:65536", "http://h:x", "http://h:80/v1",
        "http://u@h:80", "http://h:80?a=b", "http://::1:80", "http://h:"}) {
    EXPECT_THAT(ParseHttpUrl(bad).status(),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(ParseHttpUrl("https://h:1").status().message(),
              HasSubstr("https"));
}

TEST_F(HttpEngineTest, ErrorsKeepTheServersCodeAndMessage) {
  StartServer();
  Connect();
  absl::Status missing = client_->Get(424242).status();
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(missing.message(), engine_->Get(424242).status().message());
  ASSERT_TRUE(client_->Submit(Spec("k")).ok());
  TaskSpec other = Spec("k");
  other.payload = "other";
  absl::Status conflict = client_->Submit(other).status();
  EXPECT_THAT(conflict, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(conflict.message(), engine_->Submit(other).status().message());
}

TEST_F(HttpEngineTest, AnUnreachableServerIsUnavailable) {
  StartServer();
  const std::string url = url_;
  TearDown();  // Nothing listens on the port now.
  absl::StatusOr<std::unique_ptr<Engine>> client =
      ConnectHttpEngine(url, HttpEngineOptions());
  EXPECT_THAT(client.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client.status().message(), HasSubstr(url));
}

TEST_F(HttpEngineTest, AServerThatGoesAwayMakesCallsUnavailable) {
  StartServer();
  Connect();
  ASSERT_TRUE(client_->Submit(Spec("a")).ok());
  engine_->Close().IgnoreError();
  api_.reset();
  EXPECT_THAT(client_->Get(1).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(client_->Recovery().notes.empty());  // Never fails.
}

TEST_F(HttpEngineTest, TokensAreSentAndAWrongOneIsUnauthenticated) {
  HttpApiOptions options;
  options.admin_token = "admin-secret";
  options.read_token = "read-secret";
  StartServer(options);
  HttpEngineOptions wrong;
  wrong.bearer_token = "nope";
  Connect(wrong);  // /healthz needs no token.
  absl::Status s = client_->Stats().status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(s.message(), HasSubstr("bearer token"));

  HttpEngineOptions reader;
  reader.bearer_token = "read-secret";
  Connect(reader);
  EXPECT_TRUE(client_->Stats().ok());
  EXPECT_THAT(client_->Submit(Spec("r")).status(),
              StatusIs(absl::StatusCode::kPermissionDenied));

  HttpEngineOptions admin;
  admin.bearer_token = "admin-secret";
  Connect(admin);
  EXPECT_TRUE(client_->Submit(Spec("a")).ok());

  HttpEngineOptions injected;
  injected.bearer_token = "a\r\nX-Evil: 1";
  EXPECT_THAT(ConnectHttpEngine(url_, injected).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(HttpEngineTest, AnAnswerThatIsNotTaskwaldsIsInternal) {
  httplib::Server other;
  other.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  other.Get("/v1/stats", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>hello</html>", "text/html");
  });
  other.Get(R"(/v1/tasks/(\d+))",
            [](const httplib::Request&, httplib::Response& res) {
              res.status = 500;
              res.set_content("<html>oops</html>", "text/html");
            });
  other.Get("/v1/paused", [](const httplib::Request&, httplib::Response& res) {
    res.status = 502;
    res.set_content("bad gateway", "text/plain");
  });
  const int port = other.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serving([&other] { other.listen_after_bind(); });
  while (!other.is_running()) absl::SleepFor(absl::Milliseconds(1));
  url_ = absl::StrCat("http://127.0.0.1:", port);
  Connect();
  absl::Status s = client_->Stats().status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(s.message(), HasSubstr("<html>hello</html>"));
  EXPECT_THAT(client_->Get(7).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("HTTP 500")));
  EXPECT_THAT(client_->PausedTypes().status(),
              StatusIs(absl::StatusCode::kUnavailable));
  client_.reset();
  other.stop();
  serving.join();
}

TEST_F(HttpEngineTest, ALongPollDoesNotHoldUpOtherCalls) {
  StartServer();
  Connect();
  absl::Notification claimed;
  absl::StatusOr<ClaimedTask> claim;
  std::thread worker([&] {
    ClaimNextOptions options;
    options.wait = absl::Seconds(30);
    claim = client_->ClaimNext("w", options);
    claimed.Notify();
  });
  // Calls on other threads go on while the worker waits (a client with
  // one connection for all calls would hold them until the poll ends).
  absl::SleepFor(absl::Milliseconds(100));
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(client_->Stats().ok());
    EXPECT_FALSE(claimed.HasBeenNotified());
  }
  absl::StatusOr<SubmitResult> submitted = client_->Submit(Spec("wake"));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  worker.join();
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_EQ(claim->task.id(), submitted->task_id);
}

TEST_F(HttpEngineTest, CloseWakesAWaitingClaimNextWithCancelled) {
  StartServer();
  Connect();
  std::atomic<bool> started{false};
  absl::StatusOr<ClaimedTask> claim;
  std::thread worker([&] {
    ClaimNextOptions options;
    options.wait = absl::Seconds(30);
    started = true;
    claim = client_->ClaimNext("w", options);
  });
  while (!started) absl::SleepFor(absl::Milliseconds(1));
  absl::SleepFor(absl::Milliseconds(50));  // Into its long poll, usually.
  const absl::Time before = absl::Now();
  EXPECT_THAT(client_->Close(), IsOk());
  worker.join();
  EXPECT_LT(absl::Now() - before, absl::Seconds(10));
  EXPECT_THAT(claim.status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(client_->Get(1).status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(client_->Health(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(client_->Close(), IsOk());  // Idempotent.
}

TEST_F(HttpEngineTest, ClaimNextWaitsPastTheServersLongPollLimit) {
  HttpApiOptions options;
  options.max_claim_wait = absl::Milliseconds(200);
  StartServer(options);
  Connect();
  std::thread producer([this] {
    absl::SleepFor(absl::Milliseconds(700));
    engine_->Submit(Spec("late")).IgnoreError();
  });
  ClaimNextOptions claim_options;
  claim_options.wait = absl::Seconds(20);
  absl::StatusOr<ClaimedTask> claim = client_->ClaimNext("w", claim_options);
  producer.join();
  ASSERT_TRUE(claim.ok()) << claim.status();
  EXPECT_EQ(claim->task.idempotency_key(), "late");
  // Nothing comes: kNotFound once the wait is over.
  claim_options.wait = absl::Milliseconds(500);
  EXPECT_THAT(client_->ClaimNext("w", claim_options).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(HttpEngineTest, HealthAndRecoveryComeFromTheServer) {
  StartServer();
  Connect();
  EXPECT_THAT(client_->Health(), IsOk());
  EXPECT_EQ(client_->Recovery().last_lsn, engine_->Recovery().last_lsn);
  engine_->Close().IgnoreError();
  EXPECT_THAT(client_->Health(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(HttpEngineTest, TextIsCarriedExactly) {
  StartServer();
  Connect();
  TaskSpec spec = Spec("key with spaces/slash?&=+%\xc3\xa9");
  spec.type = "type &=+?#";
  spec.payload = std::string("\0\xff bytes", 8);
  absl::StatusOr<SubmitResult> submitted = client_->Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  absl::StatusOr<Task> task =
      client_->GetByIdempotencyKey(spec.idempotency_key);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->payload(), spec.payload);
  ListFilter filter;
  filter.type = spec.type;
  EXPECT_EQ(client_->List(filter)->tasks.size(), 1u);
  absl::StatusOr<std::optional<absl::Time>> due =
      client_->NextDueTime(spec.type);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->has_value());
  ASSERT_THAT(client_->Pause(spec.type), IsOk());
  EXPECT_THAT(*client_->PausedTypes(), ::testing::ElementsAre(spec.type));
  ScheduleSpec schedule;
  schedule.name = "nightly/a b?c%";
  schedule.interval = absl::Hours(24);
  schedule.task.type = "report";
  absl::StatusOr<Schedule> put = client_->PutSchedule(schedule);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->name(), schedule.name);
  EXPECT_TRUE(client_->GetSchedule(schedule.name).ok());
  EXPECT_THAT(client_->DeleteSchedule(schedule.name), IsOk());
  EXPECT_THAT(client_->GetSchedule("").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace taskwal::daemon
