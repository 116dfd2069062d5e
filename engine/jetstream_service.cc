// JetStreamServer and ConnectJetStreamEngine (api/jetstream.h): the
// transport-independent service of wire/service.h over NATS
// request/reply.

#include <nats/nats.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/jetstream_journal.h"
#include "taskwal/jetstream.h"
#include "wal/status_macros.h"
#include "wire/engine.pb.h"
#include "wire/service.h"
#include "wire/sharded_engine.h"

namespace taskwal {
namespace engine::jetstream {
namespace {

std::string RpcPrefix(absl::string_view cluster) {
  // Outside taskwal.<cluster>.>, which the journal's stream holds.
  return absl::StrCat("taskwal-rpc.", cluster, ".");
}

// A request's header: how long, in microseconds, its caller waits for the
// answer from when it sent the request. A call still queued near the end
// of that time is dropped unrun (its caller has given up and reported that
// it may not have run); a ClaimNext waits less by the time it was queued.
constexpr char kAnswerWithinHeader[] = "Taskwal-Answer-Within";

// Whether a call queued for `queued` may still run for a caller who waits
// `budget` in all: it must leave the call time for a journal write (its
// acknowledgement may take ack_timeout), or half the budget if that is
// less.
bool StillWanted(absl::Duration queued, absl::Duration budget,
                 absl::Duration ack_timeout) {
  return queued <
         budget - std::min(budget / 2, std::max(absl::Seconds(1), ack_timeout));
}

std::string Answer(const absl::Status& status) {
  wire::Reply reply;
  reply.set_code(absl::StatusCodeToString(status.code()));
  reply.set_message(std::string(status.message()));
  return reply.SerializeAsString();
}

// Serves calls from two pools of threads: waiting ClaimNext and
// ClaimNextBatch calls (long polls) in one, everything else in the other, so
// that workers waiting for tasks never hold up submits and completions.
class NatsServer final : public JetStreamServer {
 public:
  NatsServer(Engine* engine, std::unique_ptr<Connection> conn,
             std::string prefix, const Options& options,
             absl::Duration ack_timeout)
      : engine_(engine),
        conn_(std::move(conn)),
        prefix_(std::move(prefix)),
        options_(options),
        ack_timeout_(ack_timeout) {
    serve_options_.max_claim_wait = options.max_claim_wait;
    // An answer that would not fit a message never arrives.
    serve_options_.max_answer_bytes = natsConnection_GetMaxPayload(conn_->nc());
  }

  ~NatsServer() override { Stop(); }

  absl::Status Start() {
    for (int i = 0; i < options_.threads; ++i) {
      workers_.emplace_back([this] { Work(/*polls=*/false); });
      workers_.emplace_back([this] { Work(/*polls=*/true); });
    }
    const std::string subject = absl::StrCat(prefix_, "*");
    // One queue group: each call goes to one server of the cluster.
    const natsStatus s = natsConnection_QueueSubscribe(
        &sub_, conn_->nc(), subject.c_str(), "taskwal", &OnMessage, this);
    if (s != NATS_OK) {
      return absl::UnavailableError(absl::StrCat(
          "cannot subscribe to ", subject, ": ", natsStatus_GetText(s)));
    }
    natsSubscription_SetPendingLimits(sub_, -1, -1);
    return absl::OkStatus();
  }

  void Stop() override {
    absl::MutexLock stop(&stop_mu_);  // A second Stop waits for the first.
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (sub_ != nullptr) {
      // Drain: no more messages, and the callback has returned for every
      // one delivered, before the subscription goes.
      natsSubscription_Drain(sub_);
      natsSubscription_WaitForDrainCompletion(sub_, 10000);
      natsSubscription_Destroy(sub_);
      sub_ = nullptr;
    }
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    // Calls still queued did not run: tell their callers to go elsewhere.
    std::deque<Queued> left;
    {
      absl::MutexLock lock(&mu_);
      left.swap(calls_);
      left.insert(left.end(), polls_.begin(), polls_.end());
      polls_.clear();
    }
    for (const Queued& call : left) {
      Respond(call.msg, NotServing());
      natsMsg_Destroy(call.msg);
    }
  }

 private:
  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg,
                        void* closure) {
    static_cast<NatsServer*>(closure)->Enqueue(msg);
  }

  static std::string NotServing() {
    wire::Reply reply;
    reply.set_code(absl::StatusCodeToString(absl::StatusCode::kUnavailable));
    reply.set_message("this server stopped serving the cluster; try again");
    reply.set_not_leader(true);
    return reply.SerializeAsString();
  }

  void Enqueue(natsMsg* msg) {
    absl::string_view method = natsMsg_GetSubject(msg);
    method.remove_prefix(std::min(method.size(), prefix_.size()));
    std::string refusal;
    {
      absl::MutexLock lock(&mu_);
      std::deque<Queued>& queue =
          method == "ClaimNext" || method == "ClaimNextBatch" ? polls_ : calls_;
      if (stop_) {
        refusal = NotServing();
      } else if (queue.size() >= static_cast<size_t>(options_.max_queued)) {
        refusal = Answer(absl::ResourceExhaustedError(
            "the server has too many calls waiting; try again"));
      } else {
        queue.push_back(Queued{msg, absl::Now()});
        return;
      }
    }
    Respond(msg, refusal);
    natsMsg_Destroy(msg);
  }

  // Serves the long polls (ClaimNext) or the other calls.
  void Work(bool polls) {
    while (true) {
      Queued call;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this, polls]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || !(polls ? polls_ : calls_).empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        std::deque<Queued>& queue = polls ? polls_ : calls_;
        call = queue.front();
        queue.pop_front();
      }
      natsMsg* const msg = call.msg;
      if (options_.lease != nullptr && !options_.lease->held()) {
        // Another process may lead by now: the caller goes there.
        Respond(msg, NotServing());
        natsMsg_Destroy(msg);
        continue;
      }
      wire::ServeOptions options = serve_options_;
      options.queued_for = absl::Now() - call.arrived;
      const char* within = nullptr;
      int64_t budget_micros = 0;
      if (natsMsgHeader_Get(msg, kAnswerWithinHeader, &within) == NATS_OK &&
          absl::SimpleAtoi(within, &budget_micros) &&
          !StillWanted(options.queued_for, absl::Microseconds(budget_micros),
                       ack_timeout_)) {
        natsMsg_Destroy(msg);
        continue;
      }
      absl::string_view subject = natsMsg_GetSubject(msg);
      subject.remove_prefix(std::min(subject.size(), prefix_.size()));
      std::string answer = wire::ServeCall(
          *engine_, subject,
          absl::string_view(natsMsg_GetData(msg),
                            static_cast<size_t>(natsMsg_GetDataLength(msg))),
          options);
      // A read answered from this engine's state: only if it still led
      // when it was made (a write was fenced by the stream).
      if (options_.lease != nullptr && wire::IsRead(subject) &&
          !options_.lease->held()) {
        answer = NotServing();
      }
      Respond(msg, answer);
      natsMsg_Destroy(msg);
    }
  }

  void Respond(natsMsg* msg, const std::string& answer) {
    const char* reply = natsMsg_GetReply(msg);
    if (reply == nullptr || *reply == '\0') return;  // Nobody asks.
    const int64_t max_payload = natsConnection_GetMaxPayload(conn_->nc());
    if (static_cast<int64_t>(answer.size()) > max_payload) {
      // It would never arrive; say so instead.
      const std::string refusal =
          Answer(absl::ResourceExhaustedError(absl::StrCat(
              "the answer of ", answer.size(),
              " bytes exceeds the NATS servers' max_payload (", max_payload,
              " bytes): ask for less (a smaller List "
              "limit) or raise max_payload")));
      natsConnection_Publish(conn_->nc(), reply, refusal.data(),
                             static_cast<int>(refusal.size()));
      return;
    }
    natsConnection_Publish(conn_->nc(), reply, answer.data(),
                           static_cast<int>(answer.size()));
  }

  Engine* const engine_;
  const std::unique_ptr<Connection> conn_;
  const std::string prefix_;
  const Options options_;
  const absl::Duration ack_timeout_;  // Of the engine's journal.
  wire::ServeOptions serve_options_;
  absl::Mutex stop_mu_;
  natsSubscription* sub_ = nullptr;  // Set by Start; then Stop's.
  std::vector<std::thread> workers_;
  absl::Mutex mu_;
  // A request and when it arrived.
  struct Queued {
    natsMsg* msg = nullptr;
    absl::Time arrived;
  };
  std::deque<Queued> calls_ ABSL_GUARDED_BY(mu_);
  // ClaimNext, ClaimNextBatch.
  std::deque<Queued> polls_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

class NatsTransport final : public wire::Transport {
 public:
  NatsTransport(std::unique_ptr<Connection> conn, std::string prefix,
                absl::Duration retry_for)
      : conn_(std::move(conn)),
        prefix_(std::move(prefix)),
        retry_for_(retry_for) {}

  absl::StatusOr<std::string> Call(absl::string_view method,
                                   const std::string& request,
                                   const wire::CallOptions& options) override {
    const absl::Duration timeout = options.timeout;
    const bool idempotent = options.idempotent;
    const absl::Duration retry_for = std::min(retry_for_, options.retry_for);
    const std::string subject = absl::StrCat(prefix_, method);
    const absl::Time deadline = absl::Now() + retry_for;
    absl::Duration backoff = absl::Milliseconds(20);
    std::string last_problem;
    while (true) {
      natsMsg* reply = nullptr;
      natsMsg* msg = nullptr;
      natsStatus s =
          natsMsg_Create(&msg, subject.c_str(), nullptr, request.data(),
                         static_cast<int>(request.size()));
      if (s == NATS_OK) {
        s = natsMsgHeader_Set(
            msg, kAnswerWithinHeader,
            absl::StrCat(absl::ToInt64Microseconds(timeout)).c_str());
      }
      if (s == NATS_OK) {
        s = natsConnection_RequestMsg(
            &reply, conn_->nc(), msg,
            std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout)));
      }
      natsMsg_Destroy(msg);
      bool retry = false;
      if (s == NATS_OK) {
        std::string bytes(natsMsg_GetData(reply),
                          static_cast<size_t>(natsMsg_GetDataLength(reply)));
        natsMsg_Destroy(reply);
        wire::Reply parsed;
        if (parsed.ParseFromString(bytes) && parsed.not_leader() &&
            idempotent) {
          // Its engine was deposed: another server leads, or soon will.
          retry = true;
          last_problem = parsed.message();
        } else {
          return bytes;
        }
      } else if (s == NATS_MAX_PAYLOAD) {
        return absl::InvalidArgumentError(absl::StrCat(
            method, ": the request of ", request.size(),
            " bytes exceeds the NATS servers' max_payload (",
            natsConnection_GetMaxPayload(conn_->nc()),
            " bytes; raise it in their configuration for larger payloads)"));
      } else if (s == NATS_NO_RESPONDERS) {
        // No server took it: it did not run. (Between leaders.)
        retry = true;
        last_problem = "no server leads the cluster";
      } else if (s == NATS_TIMEOUT || Retryable(s)) {
        if (!idempotent) {
          return absl::DeadlineExceededError(absl::StrCat(
              method, ": no answer within ", absl::FormatDuration(timeout),
              " (", natsStatus_GetText(s),
              "); the call may or may not have run"));
        }
        retry = true;
        last_problem = natsStatus_GetText(s);
      } else {
        return absl::UnavailableError(absl::StrCat(
            method, ": NATS request failed: ", natsStatus_GetText(s)));
      }
      if (!retry || absl::Now() + backoff > deadline) {
        return absl::UnavailableError(absl::StrCat(
            method, ": no server answered within ",
            absl::FormatDuration(retry_for), " (", last_problem, ")"));
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Milliseconds(500));
    }
  }

 private:
  const std::unique_ptr<Connection> conn_;
  const std::string prefix_;
  const absl::Duration retry_for_;
};

}  // namespace
}  // namespace engine::jetstream

absl::StatusOr<std::unique_ptr<JetStreamServer>> JetStreamServer::Start(
    Engine* engine, const JetStreamOptions& jetstream, const Options& options) {
  namespace js = engine::jetstream;
  TASKWAL_RETURN_IF_ERROR(js::ValidateJetStreamOptions(jetstream));
  if (engine == nullptr || options.threads < 1 || options.threads > 4096 ||
      options.max_queued < 1 || options.max_claim_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "JetStreamServer needs an engine, 1 to 4096 threads, max_queued of at "
        "least 1 and a max_claim_wait not negative");
  }
  const js::Config config = js::MakeConfig(jetstream);
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<js::Connection> conn,
      js::Connection::Connect(config,
                              absl::StrCat("taskwal server ", config.cluster)));
  auto server = std::make_unique<js::NatsServer>(engine, std::move(conn),
                                                 js::RpcPrefix(config.cluster),
                                                 options, config.ack_timeout);
  TASKWAL_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<JetStreamServer>(std::move(server));
}

absl::StatusOr<std::unique_ptr<Engine>> ConnectJetStreamEngine(
    const JetStreamOptions& jetstream) {
  namespace js = engine::jetstream;
  TASKWAL_RETURN_IF_ERROR(js::ValidateJetStreamOptions(jetstream));
  std::vector<std::unique_ptr<Engine>> shards;
  bool check = true;  // Until JetStream does not answer.
  for (int s = 0; s < jetstream.shards; ++s) {
    const JetStreamOptions shard = JetStreamShard(jetstream, s);
    const js::Config config = js::MakeConfig(shard);
    TASKWAL_ASSIGN_OR_RETURN(
        std::unique_ptr<js::Connection> conn,
        js::Connection::Connect(
            config, absl::StrCat("taskwal client ", config.cluster)));
    // The cluster exists, with this shard count. A client that may not
    // ask JetStream about the stream (NATS permissions) gets no answer
    // within ack_timeout and goes on without the check, for every shard.
    if (check) {
      js::Config quick = config;
      quick.retry_for = std::min(config.retry_for, config.ack_timeout);
      const absl::Status found = js::FindStream(*conn, quick).status();
      if (absl::IsNotFound(found) || absl::IsFailedPrecondition(found) ||
          absl::IsInvalidArgument(found)) {
        return found;
      }
      check = found.ok();
    }
    wire::RemoteOptions options;
    options.call_timeout = jetstream.ack_timeout * 2;
    shards.push_back(wire::NewRemoteEngine(
        std::make_unique<js::NatsTransport>(std::move(conn),
                                            js::RpcPrefix(config.cluster),
                                            jetstream.retry_for),
        options));
  }
  return wire::NewShardedEngine(std::move(shards));
}

}  // namespace taskwal
