#include "benchmarks/taskwald_queue.h"

#include <httplib.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/taskwal_queue.h"
#include "daemon/http_api.h"
#include "google/protobuf/util/json_util.h"
#include "tools/json.h"
#include "wire/engine.pb.h"

namespace taskwal::bench {
namespace {

// Clients the compare runs use at most hold a connection each, and a
// connection holds a server thread for its life: room for all of them.
constexpr int kServerThreads = 256;

// An HTTP error (or none at all) as a status with the server's message.
absl::Status HttpError(const httplib::Result& res, absl::string_view what) {
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat(what, ": ", httplib::to_string(res.error())));
  }
  if (res->status == 404) return absl::NotFoundError(res->body);
  return absl::InternalError(
      absl::StrCat(what, ": HTTP ", res->status, " ", res->body));
}

class TaskwaldClient final : public QueueClient {
 public:
  TaskwaldClient(int port, int client_index)
      : client_("127.0.0.1", port),
        worker_json_(tools::JsonQuote(absl::StrCat("w", client_index))) {
    client_.set_keep_alive(true);
    client_.set_tcp_nodelay(true);
    client_.set_read_timeout(60, 0);
  }

  absl::Status Submit(const NewTask& task, bool* deduplicated) override {
    const std::string body =
        absl::StrCat("{\"idempotency_key\":", tools::JsonQuote(task.key),
                     ",\"type\":", tools::JsonQuote(task.type),
                     ",\"payload\":\"", absl::Base64Escape(task.payload),
                     "\",\"priority\":", task.priority, "}");
    httplib::Result res = client_.Post("/v1/tasks", body, "application/json");
    if (!res || res->status != 200) return HttpError(res, "submit");
    wire::SubmitResponse submitted;
    if (!google::protobuf::util::JsonStringToMessage(res->body, &submitted)
             .ok()) {
      return absl::InternalError("submit: not a SubmitResponse");
    }
    *deduplicated = submitted.deduplicated();
    return absl::OkStatus();
  }

  absl::StatusOr<ClaimedRef> ClaimNext() override {
    const std::string body = absl::StrCat("{\"worker_id\":", worker_json_, "}");
    httplib::Result res = client_.Post("/v1/claims", body, "application/json");
    if (!res || res->status != 200) return HttpError(res, "claim");
    wire::ClaimResponse claim;
    if (!google::protobuf::util::JsonStringToMessage(res->body, &claim).ok()) {
      return absl::InternalError("claim: not a ClaimResponse");
    }
    return ClaimedRef{claim.claim().task_id(), claim.claim().token()};
  }

  absl::Status Complete(const ClaimedRef& claim,
                        absl::string_view result) override {
    const std::string body = absl::StrCat(
        "{\"claim\":{\"task_id\":\"", claim.id,
        "\",\"worker_id\":", worker_json_, ",\"token\":\"", claim.token,
        "\"},\"result\":\"", absl::Base64Escape(result), "\"}");
    httplib::Result res =
        client_.Post("/v1/claims/complete", body, "application/json");
    if (!res || res->status != 200) return HttpError(res, "complete");
    return absl::OkStatus();
  }

 private:
  httplib::Client client_;
  const std::string worker_json_;
};

class TaskwaldQueue final : public QueueSystem {
 public:
  static absl::StatusOr<std::unique_ptr<QueueSystem>> Open(
      const std::string& dir, SyncMode mode) {
    absl::StatusOr<std::unique_ptr<TaskwalQueue>> engine =
        TaskwalQueue::Open(dir, CompareOptions(mode));
    if (!engine.ok()) return engine.status();
    auto queue =
        std::unique_ptr<TaskwaldQueue>(new TaskwaldQueue(*std::move(engine)));
    daemon::HttpApiOptions options;
    options.threads = kServerThreads;
    queue->api_ =
        std::make_unique<daemon::HttpApi>(queue->engine_->engine(), options);
    absl::StatusOr<int> port = queue->api_->Start("127.0.0.1", 0);
    if (!port.ok()) return port.status();  // The destructor closes.
    queue->port_ = *port;
    return std::unique_ptr<QueueSystem>(std::move(queue));
  }

  ~TaskwaldQueue() override { Close().IgnoreError(); }

  absl::StatusOr<std::unique_ptr<QueueClient>> NewClient(
      int client_index) override {
    return std::make_unique<TaskwaldClient>(port_, client_index);
  }

  absl::Status Close() override {
    if (closed_) return absl::OkStatus();
    closed_ = true;
    if (api_ != nullptr) api_->StopAccepting();
    absl::Status status = engine_->Close();
    if (api_ != nullptr) api_->Wait();
    return status;
  }

  std::string Diagnostics() override { return engine_->Diagnostics(); }

 private:
  explicit TaskwaldQueue(std::unique_ptr<TaskwalQueue> engine)
      : engine_(std::move(engine)) {}

  const std::unique_ptr<TaskwalQueue> engine_;
  std::unique_ptr<daemon::HttpApi> api_;
  int port_ = 0;
  bool closed_ = false;
};

}  // namespace

std::vector<SystemSpec> TaskwaldSystems() {
  std::vector<SystemSpec> specs;
  specs.push_back(SystemSpec{
      "taskwald-interval",
      "taskwald over HTTP/JSON on loopback (keep-alive, a connection per "
      "client; the clients' HTTP and JSON work shares the cores), "
      "SyncMode::kInterval: record written to the OS per call, "
      "fdatasync every 10 ms",
      Durability::kOsPerCall,
      [](const std::string& dir) {
        return TaskwaldQueue::Open(dir, SyncMode::kInterval);
      },
      /*on_nats=*/false, /*measure_latency=*/true});
  specs.push_back(SystemSpec{
      "taskwald-always",
      "taskwald over HTTP/JSON on loopback, SyncMode::kAlways: each call "
      "answered after the fdatasync covering its record",
      Durability::kFsyncPerCall, [](const std::string& dir) {
        return TaskwaldQueue::Open(dir, SyncMode::kAlways);
      }});
  return specs;
}

}  // namespace taskwal::bench
