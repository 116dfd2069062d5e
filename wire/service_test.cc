#include "wire/service.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "wire/engine.pb.h"

namespace taskwal::wire {
namespace {

Reply Serve(Engine& engine, absl::string_view method,
            const google::protobuf::Message& request,
            const ServeOptions& options) {
  Reply reply;
  EXPECT_TRUE(reply.ParseFromString(
      ServeCall(engine, method, request.SerializeAsString(), options)));
  return reply;
}

// The time a ClaimNext spent queued in a server counts against its wait: a
// caller who asked to wait 10 s waits no longer than that in all.
TEST(ServeCallTest, AClaimNextWaitsLessByTheTimeItWasQueued) {
  EngineOptions options;
  options.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  taskwal::TaskSpec spec;
  spec.idempotency_key = "k";
  spec.type = "t";
  spec.not_before = absl::Now() + absl::Seconds(5);  // Due within a wait.
  ASSERT_TRUE((*engine)->Submit(spec).ok());

  ClaimNextRequest request;
  request.set_worker_id("w");
  request.set_wait_micros(absl::ToInt64Microseconds(absl::Seconds(10)));
  ServeOptions queued;
  queued.max_claim_wait = absl::Seconds(10);
  queued.queued_for = absl::Seconds(10);
  // Its whole wait went by in the queue: it looks once, finds nothing due.
  EXPECT_EQ(Serve(**engine, "ClaimNext", request, queued).code(),
            absl::StatusCodeToString(absl::StatusCode::kNotFound));
  // Queued longer than the wait, the same.
  queued.queued_for = absl::Seconds(60);
  EXPECT_EQ(Serve(**engine, "ClaimNext", request, queued).code(),
            absl::StatusCodeToString(absl::StatusCode::kNotFound));
  // Not queued, it waits for the task to come due and claims it.
  queued.queued_for = absl::ZeroDuration();
  EXPECT_EQ(Serve(**engine, "ClaimNext", request, queued).code(), "OK");
}

}  // namespace
}  // namespace taskwal::wire
