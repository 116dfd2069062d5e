#include "wire/service.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/journal.h"
#include "wire/convert.h"
#include "wire/engine.pb.h"

namespace taskwal::wire {
namespace {

using google::protobuf::Message;

std::string OkBody() {
  OkResponse ok;
  ok.set_status("ok");
  return ok.SerializeAsString();
}

// A handler parses its request from the bytes and returns the response's
// serialized bytes.
using Handler = std::function<absl::StatusOr<std::string>(
    Engine&, absl::string_view, const ServeOptions&)>;

// The most of an answer a task's spec may take: kAnswerRoom (or half of
// a small max_answer_bytes) is left for the rest.
int64_t SpecRoom(const ServeOptions& options) {
  return options.max_answer_bytes -
         std::min(kAnswerRoom, options.max_answer_bytes / 2);
}

// The most an answer's body may take within max_answer_bytes: room is left
// for the Reply around it.
int64_t AnswerMost(const ServeOptions& options) {
  return options.max_answer_bytes -
         std::min<int64_t>(1024, options.max_answer_bytes / 2);
}

// kInvalidArgument if a task of this spec (or of a schedule of it) could
// be stored but never handed out: a ClaimNext answer could not carry it
// (max_answer_bytes).
absl::Status CheckDeliverable(const google::protobuf::Message& spec,
                              const ServeOptions& options,
                              absl::string_view which = "") {
  if (options.max_answer_bytes <= 0) return absl::OkStatus();
  const int64_t most = SpecRoom(options);
  const int64_t size = static_cast<int64_t>(spec.ByteSizeLong());
  if (size <= most) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      which, "a task of ", size,
      " bytes could be stored but never handed out: a ClaimNext answer must "
      "fit in ",
      options.max_answer_bytes, " bytes (the NATS servers' max_payload), ",
      "which leaves ", std::max<int64_t>(0, most),
      " for a task's payload, key, type and dependencies; raise "
      "max_payload for larger tasks"));
}

// The most of a worker id a Claim or ClaimNext answer can carry with
// max_answer_bytes set: a longer one is refused before anything is claimed.
int64_t WorkerIdRoom(const ServeOptions& options) {
  return std::min(kAnswerRoom, options.max_answer_bytes / 2) / 4;
}

absl::Status CheckWorkerId(absl::string_view worker_id,
                           const ServeOptions& options) {
  if (options.max_answer_bytes <= 0 ||
      static_cast<int64_t>(worker_id.size()) <= WorkerIdRoom(options)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "a worker id of ", worker_id.size(), " bytes is over the ",
      WorkerIdRoom(options),
      " a claim's answer leaves for it within the NATS servers' max_payload"));
}

// The answer to a Claim or ClaimNext, within max_answer_bytes. A last error
// too long for it (an engine with a raised max_error_bytes) is cut in the
// answer (Get shows it whole, where its answer fits). A task that still does
// not fit (its spec stored before max_payload was lowered) is failed for
// good, saying why, rather than claimed again and again by workers who never
// get it (each claim costing an attempt when its lease ran out); the caller
// gets kResourceExhausted. Retry revives it once max_payload is raised.
absl::StatusOr<std::string> ClaimAnswer(Engine& e,
                                        absl::StatusOr<ClaimedTask> claimed,
                                        const ServeOptions& options) {
  if (!claimed.ok()) return claimed.status();
  ClaimResponse answer = ToWire(*claimed);
  std::string body = answer.SerializeAsString();
  const int64_t most = AnswerMost(options);
  if (options.max_answer_bytes <= 0 ||
      static_cast<int64_t>(body.size()) <= most) {
    return body;
  }
  std::string* error = answer.mutable_task()->mutable_last_error();
  const int64_t over = static_cast<int64_t>(body.size()) - most;
  constexpr absl::string_view kCut = " [cut: too long for a claim's answer]";
  if (static_cast<int64_t>(error->size()) >=
      over + static_cast<int64_t>(kCut.size()) + 16) {
    // Cut at a character's first byte (the error is valid UTF-8).
    size_t keep = error->size() - static_cast<size_t>(over) - kCut.size() - 16;
    while (keep > 0 && ((*error)[keep] & 0xC0) == 0x80) --keep;
    error->resize(keep);
    error->append(kCut.data(), kCut.size());
    body = answer.SerializeAsString();
    if (static_cast<int64_t>(body.size()) <= most) return body;
  }
  const std::string why =
      absl::StrCat("its claim's answer of ", body.size(),
                   " bytes is over the NATS servers' max_payload (",
                   options.max_answer_bytes, " bytes)");
  FailOptions permanent;
  permanent.permanent = true;
  absl::Status failed =
      e.Fail(claimed->claim,
             absl::StrCat("could not be handed out: ", why,
                          "; raise max_payload, then Retry the task"),
             permanent);
  // An engine whose max_error_bytes is under those messages.
  for (absl::string_view shorter : {"could not be handed out", ""}) {
    if (!absl::IsInvalidArgument(failed)) break;
    failed = e.Fail(claimed->claim, shorter, permanent);
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "task ", claimed->task.id(), " could not be handed out: ", why,
      failed.ok() ? "; it is FAILED (raise max_payload, then Retry it)"
                  : absl::StrCat("; failing it: ", failed.message())));
}

// The answer to a ClaimNextBatch: each claim's answer as ClaimAnswer makes
// it (a task that cannot fit even alone is failed for good and left out),
// as many as fit within max_answer_bytes; the claims after those are
// released (Retry: PENDING and claimable again, the attempt not counted),
// one journal write each: a caller should ask for about as many tasks as
// a message carries.
absl::StatusOr<std::string> BatchAnswer(Engine& e,
                                        std::vector<ClaimedTask> claimed,
                                        const ServeOptions& options) {
  ClaimBatchResponse m;
  const int64_t most = AnswerMost(options);
  // A repeated field's entry: its tag and length, then its bytes.
  constexpr int64_t kEntryOverhead = 6;
  int64_t used = 0;
  absl::Status left_out;
  bool full = false;
  for (ClaimedTask& c : claimed) {
    const uint64_t id = c.task.id();
    if (full) {
      e.Retry(id).IgnoreError();  // Else it waits out its lease.
      continue;
    }
    absl::StatusOr<std::string> one = ClaimAnswer(e, std::move(c), options);
    if (!one.ok()) {
      left_out = one.status();
      continue;
    }
    const int64_t size = static_cast<int64_t>(one->size()) + kEntryOverhead;
    // The first always fits: ClaimAnswer kept it within `most`, and
    // AnswerMost's slack covers its entry's overhead.
    if (options.max_answer_bytes > 0 && used > 0 && used + size > most) {
      full = true;
      e.Retry(id).IgnoreError();
      continue;
    }
    used += size;
    if (!m.add_claims()->ParseFromString(*one)) {
      return absl::InternalError("a claim's answer does not parse");
    }
  }
  if (m.claims().empty()) {
    return left_out.ok() ? absl::InternalError("a batch of no claims")
                         : left_out;
  }
  return m.SerializeAsString();
}

// A ClaimNext's options: its wait capped by max_claim_wait, less the time
// it was queued.
ClaimNextOptions OptionsOf(const ClaimNextRequest& r,
                           const ServeOptions& options) {
  ClaimNextOptions o;
  o.type = r.type();
  o.lease = absl::Microseconds(r.lease_micros());
  o.wait = std::max(
      absl::ZeroDuration(),
      std::min(absl::Microseconds(r.wait_micros()), options.max_claim_wait) -
          options.queued_for);
  return o;
}

// How long a remote Snapshot may take, on top of the call timeout.
constexpr absl::Duration kSnapshotTime = absl::Minutes(5);

// The bulk calls change at most as many tasks as their answer can list
// (a task id takes at most 10 bytes, and a tag).
taskwal::BulkFilter BulkOf(const BulkRequest& r, const ServeOptions& options) {
  taskwal::BulkFilter filter = FromWire(r);
  if (options.max_answer_bytes > 0) {
    const uint64_t most =
        static_cast<uint64_t>(std::max<int64_t>(1, SpecRoom(options) / 11));
    if (filter.limit == 0 || filter.limit > most) filter.limit = most;
  }
  return filter;
}

// A List page whose answer would not fit max_answer_bytes ends earlier,
// its cursor after the last task kept (at least one task stays: an answer
// of one task too large is refused as such).
void FitPage(ListTasksResponse& page, const ServeOptions& options) {
  if (options.max_answer_bytes <= 0) return;
  const size_t most = static_cast<size_t>(AnswerMost(options));
  if (page.ByteSizeLong() <= most) return;
  size_t size = 0;
  int keep = 0;
  for (; keep < page.tasks_size(); ++keep) {
    const size_t task = page.tasks(keep).ByteSizeLong() + 8;  // Tag, length.
    if (keep > 0 && size + task + 16 > most) break;
    size += task;
  }
  if (keep == page.tasks_size()) return;
  page.mutable_tasks()->DeleteSubrange(keep, page.tasks_size() - keep);
  page.set_next_cursor(page.tasks(keep - 1).id());
}

template <typename Request>
absl::StatusOr<Request> Parse(absl::string_view bytes) {
  Request request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is not a ", Request::descriptor()->name(), " message"));
  }
  return request;
}

// Request type R; fn(engine, request) returns StatusOr<Message> or Status.
template <typename R, typename F>
Handler Make(F fn) {
  return [fn](Engine& engine, absl::string_view bytes,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
    absl::StatusOr<R> request = Parse<R>(bytes);
    if (!request.ok()) return request.status();
    return fn(engine, *request, options);
  };
}

absl::StatusOr<std::string> Body(const absl::Status& s) {
  if (!s.ok()) return s;
  return OkBody();
}

template <typename T>
absl::StatusOr<std::string> Body(const absl::StatusOr<T>& r) {
  if (!r.ok()) return r.status();
  return ToWire(*r).SerializeAsString();
}

absl::StatusOr<std::string> MessageBody(const absl::StatusOr<Task>& r) {
  if (!r.ok()) return r.status();
  return r->SerializeAsString();
}

absl::StatusOr<std::string> MessageBody(const absl::StatusOr<Schedule>& r) {
  if (!r.ok()) return r.status();
  return r->SerializeAsString();
}

const absl::flat_hash_map<std::string, Handler>& Handlers() {
  static const auto* handlers = new absl::flat_hash_map<std::string, Handler>{
      {"Submit",
       Make<TaskSpec>(
           [](Engine& e, const TaskSpec& r,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
             if (absl::Status s = CheckDeliverable(r, options); !s.ok())
               return s;
             absl::StatusOr<SubmitResult> result = e.Submit(FromWire(r));
             if (!result.ok()) return result.status();
             SubmitResponse m;
             m.set_task_id(result->task_id);
             m.set_deduplicated(result->deduplicated);
             return m.SerializeAsString();
           })},
      {"SubmitBatch",
       Make<SubmitBatchRequest>(
           [](Engine& e, const SubmitBatchRequest& r,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
             std::vector<taskwal::TaskSpec> specs;
             for (int i = 0; i < r.tasks_size(); ++i) {
               if (absl::Status s = CheckDeliverable(
                       r.tasks(i), options,
                       absl::StrCat("task ", i, " of the batch: "));
                   !s.ok()) {
                 return s;
               }
               specs.push_back(FromWire(r.tasks(i)));
             }
             absl::StatusOr<std::vector<SubmitResult>> results =
                 e.SubmitBatch(specs);
             if (!results.ok()) return results.status();
             SubmitBatchResponse m;
             for (const SubmitResult& result : *results) {
               SubmitResponse* one = m.add_results();
               one->set_task_id(result.task_id);
               one->set_deduplicated(result.deduplicated);
             }
             return m.SerializeAsString();
           })},
      {"Claim", Make<ClaimByIdRequest>([](Engine& e, const ClaimByIdRequest& r,
                                          const ServeOptions& options)
                                           -> absl::StatusOr<std::string> {
         if (absl::Status s = CheckWorkerId(r.worker_id(), options); !s.ok())
           return s;
         return ClaimAnswer(e,
                            e.Claim(r.task_id(), r.worker_id(),
                                    absl::Microseconds(r.lease_micros())),
                            options);
       })},
      {"ClaimNext",
       Make<ClaimNextRequest>(
           [](Engine& e, const ClaimNextRequest& r,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
             if (absl::Status s = CheckWorkerId(r.worker_id(), options);
                 !s.ok())
               return s;
             const ClaimNextOptions o = OptionsOf(r, options);
             return ClaimAnswer(e, e.ClaimNext(r.worker_id(), o), options);
           })},
      {"ClaimNextBatch",
       Make<ClaimNextBatchRequest>(
           [](Engine& e, const ClaimNextBatchRequest& b,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
             const ClaimNextRequest& r = b.claim();
             if (absl::Status s = CheckWorkerId(r.worker_id(), options);
                 !s.ok())
               return s;
             const ClaimNextOptions o = OptionsOf(r, options);
             absl::StatusOr<std::vector<ClaimedTask>> claimed =
                 e.ClaimNextBatch(r.worker_id(), o, b.max_tasks());
             if (!claimed.ok()) return claimed.status();
             return BatchAnswer(e, *std::move(claimed), options);
           })},
      {"NextDueTime",
       Make<NextDueRequest>(
           [](Engine& e, const NextDueRequest& r,
              const ServeOptions&) -> absl::StatusOr<std::string> {
             absl::StatusOr<std::optional<absl::Time>> due =
                 e.NextDueTime(r.type());
             if (!due.ok()) return due.status();
             NextDueResponse m;
             m.set_due(due->has_value());
             if (due->has_value()) m.set_due_micros(absl::ToUnixMicros(**due));
             return m.SerializeAsString();
           })},
      {"Complete", Make<CompleteRequest>([](Engine& e, const CompleteRequest& r,
                                            const ServeOptions&) {
         return Body(e.Complete(FromWire(r.claim()), r.result()));
       })},
      {"CompleteBatch",
       Make<CompleteBatchRequest>([](Engine& e, const CompleteBatchRequest& r,
                                     const ServeOptions&)
                                      -> absl::StatusOr<std::string> {
         std::vector<Completion> completions;
         completions.reserve(r.completions_size());
         for (const CompleteRequest& c : r.completions()) {
           completions.push_back(Completion{FromWire(c.claim()), c.result()});
         }
         absl::StatusOr<std::vector<absl::Status>> done =
             e.CompleteBatch(completions);
         if (!done.ok()) return done.status();
         CompleteBatchResponse m;
         for (const absl::Status& one : *done) {
           *m.add_results() = ErrorToWire(one);
         }
         return m.SerializeAsString();
       })},
      {"Fail", Make<FailRequest>([](Engine& e, const FailRequest& r,
                                    const ServeOptions&) {
         FailOptions o;
         if (r.has_retry_after_micros()) {
           o.retry_after = absl::Microseconds(r.retry_after_micros());
         }
         o.permanent = r.permanent();
         return Body(e.Fail(FromWire(r.claim()), r.error(), o));
       })},
      {"Heartbeat", Make<HeartbeatRequest>(
                        [](Engine& e, const HeartbeatRequest& r,
                           const ServeOptions&) -> absl::StatusOr<std::string> {
                          absl::StatusOr<absl::Time> deadline = e.Heartbeat(
                              FromWire(r.claim()),
                              absl::Microseconds(r.extension_micros()));
                          if (!deadline.ok()) return deadline.status();
                          HeartbeatResponse m;
                          m.set_lease_deadline_micros(ToMicros(*deadline));
                          return m.SerializeAsString();
                        })},
      {"Retry", Make<TaskIdRequest>(
                    [](Engine& e, const TaskIdRequest& r, const ServeOptions&) {
                      return Body(e.Retry(r.task_id()));
                    })},
      {"Cancel", Make<TaskIdRequest>([](Engine& e, const TaskIdRequest& r,
                                        const ServeOptions&) {
         return Body(e.Cancel(r.task_id()));
       })},
      {"Delete", Make<TaskIdRequest>([](Engine& e, const TaskIdRequest& r,
                                        const ServeOptions&) {
         return Body(e.Delete(r.task_id()));
       })},
      {"RetryMatching", Make<BulkRequest>([](Engine& e, const BulkRequest& r,
                                             const ServeOptions& options) {
         return Body(e.RetryMatching(BulkOf(r, options)));
       })},
      {"CancelMatching", Make<BulkRequest>([](Engine& e, const BulkRequest& r,
                                              const ServeOptions& options) {
         return Body(e.CancelMatching(BulkOf(r, options)));
       })},
      {"DeleteMatching", Make<BulkRequest>([](Engine& e, const BulkRequest& r,
                                              const ServeOptions& options) {
         return Body(e.DeleteMatching(BulkOf(r, options)));
       })},
      {"PutSchedule",
       Make<PutScheduleRequest>(
           [](Engine& e, const PutScheduleRequest& r,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
             if (absl::Status s = CheckDeliverable(r.spec(), options,
                                                   "the schedule's tasks: ");
                 !s.ok()) {
               return s;
             }
             taskwal::ScheduleSpec spec = FromWire(r.spec());
             spec.name = r.name();
             return MessageBody(e.PutSchedule(spec));
           })},
      {"GetSchedule", Make<NameRequest>([](Engine& e, const NameRequest& r,
                                           const ServeOptions&) {
         return MessageBody(e.GetSchedule(r.name()));
       })},
      {"DeleteSchedule", Make<NameRequest>([](Engine& e, const NameRequest& r,
                                              const ServeOptions&) {
         return Body(e.DeleteSchedule(r.name()));
       })},
      {"ListSchedules",
       Make<EmptyRequest>(
           [](Engine& e, const EmptyRequest&,
              const ServeOptions&) -> absl::StatusOr<std::string> {
             absl::StatusOr<std::vector<Schedule>> list = e.ListSchedules();
             if (!list.ok()) return list.status();
             ListSchedulesResponse m;
             for (const Schedule& s : *list) *m.add_schedules() = s;
             return m.SerializeAsString();
           })},
      {"Pause", Make<PauseRequest>(
                    [](Engine& e, const PauseRequest& r, const ServeOptions&) {
                      return Body(e.Pause(r.type()));
                    })},
      {"Resume", Make<PauseRequest>(
                     [](Engine& e, const PauseRequest& r, const ServeOptions&) {
                       return Body(e.Resume(r.type()));
                     })},
      {"PausedTypes",
       Make<EmptyRequest>(
           [](Engine& e, const EmptyRequest&,
              const ServeOptions&) -> absl::StatusOr<std::string> {
             absl::StatusOr<std::vector<std::string>> types = e.PausedTypes();
             if (!types.ok()) return types.status();
             PausedTypesResponse m;
             for (const std::string& t : *types) m.add_types(t);
             return m.SerializeAsString();
           })},
      {"Get", Make<TaskIdRequest>(
                  [](Engine& e, const TaskIdRequest& r, const ServeOptions&) {
                    return MessageBody(e.Get(r.task_id()));
                  })},
      {"GetByIdempotencyKey",
       Make<KeyRequest>(
           [](Engine& e, const KeyRequest& r, const ServeOptions&) {
             return MessageBody(e.GetByIdempotencyKey(r.key()));
           })},
      {"List",
       Make<ListRequest>(
           [](Engine& e, const ListRequest& r,
              const ServeOptions& options) -> absl::StatusOr<std::string> {
             absl::StatusOr<ListPage> page = e.List(FromWire(r));
             if (!page.ok()) return page.status();
             ListTasksResponse m = ToWire(*page);
             FitPage(m, options);
             return m.SerializeAsString();
           })},
      {"History", Make<TaskIdRequest>(
                      [](Engine& e, const TaskIdRequest& r,
                         const ServeOptions&) -> absl::StatusOr<std::string> {
                        absl::StatusOr<std::vector<HistoryEntry>> history =
                            e.History(r.task_id());
                        if (!history.ok()) return history.status();
                        HistoryResponse m;
                        for (const HistoryEntry& h : *history)
                          *m.add_entries() = h;
                        return m.SerializeAsString();
                      })},
      {"Stats",
       Make<EmptyRequest>([](Engine& e, const EmptyRequest&,
                             const ServeOptions&) { return Body(e.Stats()); })},
      {"Snapshot", Make<EmptyRequest>(
                       [](Engine& e, const EmptyRequest&, const ServeOptions&) {
                         return Body(e.Snapshot());
                       })},
      {"RunMaintenance", Make<EmptyRequest>([](Engine& e, const EmptyRequest&,
                                               const ServeOptions&) {
         return Body(e.RunMaintenance());
       })},
      {"Health", Make<EmptyRequest>(
                     [](Engine& e, const EmptyRequest&, const ServeOptions&) {
                       return Body(e.Health());
                     })},
      {"Recovery", Make<EmptyRequest>(
                       [](Engine& e, const EmptyRequest&,
                          const ServeOptions&) -> absl::StatusOr<std::string> {
                         return ToWire(e.Recovery()).SerializeAsString();
                       })},
  };
  return *handlers;
}

// The client side.
class RemoteEngine final : public Engine {
 public:
  RemoteEngine(std::unique_ptr<Transport> transport,
               const RemoteOptions& options)
      : transport_(std::move(transport)), options_(options) {}

  absl::Status Close() override {
    closed_.store(true, std::memory_order_release);
    return absl::OkStatus();
  }

  absl::StatusOr<SubmitResult> Submit(const taskwal::TaskSpec& spec) override {
    SubmitResponse m;
    absl::Status s = Call("Submit", ToWire(spec), &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return SubmitResult{m.task_id(), m.deduplicated()};
  }

  absl::StatusOr<std::vector<SubmitResult>> SubmitBatch(
      absl::Span<const taskwal::TaskSpec> specs) override {
    SubmitBatchRequest request;
    for (const taskwal::TaskSpec& spec : specs) {
      *request.add_tasks() = ToWire(spec);
    }
    SubmitBatchResponse m;
    absl::Status s = Call("SubmitBatch", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    std::vector<SubmitResult> results;
    for (const SubmitResponse& r : m.results()) {
      results.push_back(SubmitResult{r.task_id(), r.deduplicated()});
    }
    return results;
  }

  absl::StatusOr<ClaimedTask> Claim(uint64_t task_id,
                                    absl::string_view worker_id,
                                    absl::Duration lease) override {
    ClaimByIdRequest request;
    request.set_task_id(task_id);
    request.set_worker_id(std::string(worker_id));
    request.set_lease_micros(absl::ToInt64Microseconds(lease));
    ClaimResponse m;
    absl::Status s = Call("Claim", request, &m, /*idempotent=*/false);
    if (!s.ok()) return s;
    return FromWire(m);
  }

  absl::StatusOr<ClaimedTask> ClaimNext(
      absl::string_view worker_id, const ClaimNextOptions& options) override {
    ClaimNextRequest request;
    request.set_worker_id(std::string(worker_id));
    request.set_type(options.type);
    request.set_lease_micros(absl::ToInt64Microseconds(options.lease));
    request.set_wait_micros(absl::ToInt64Microseconds(options.wait));
    ClaimResponse m;
    absl::Status s =
        Call("ClaimNext", request, &m, /*idempotent=*/false, options.wait,
             /*retry_for=*/options.wait);
    if (!s.ok()) return s;
    return FromWire(m);
  }

  absl::StatusOr<std::vector<ClaimedTask>> ClaimNextBatch(
      absl::string_view worker_id, const ClaimNextOptions& options,
      size_t max_tasks) override {
    if (absl::Status s = CheckClaimBatch(max_tasks); !s.ok()) return s;
    ClaimNextBatchRequest request;
    ClaimNextRequest* claim = request.mutable_claim();
    claim->set_worker_id(std::string(worker_id));
    claim->set_type(options.type);
    claim->set_lease_micros(absl::ToInt64Microseconds(options.lease));
    claim->set_wait_micros(absl::ToInt64Microseconds(options.wait));
    request.set_max_tasks(static_cast<uint32_t>(max_tasks));
    ClaimBatchResponse m;
    absl::Status s =
        Call("ClaimNextBatch", request, &m, /*idempotent=*/false, options.wait,
             /*retry_for=*/options.wait);
    // A server from before batches: one call per claim.
    if (absl::IsUnimplemented(s)) {
      return Engine::ClaimNextBatch(worker_id, options, max_tasks);
    }
    if (!s.ok()) return s;
    return FromWire(m, max_tasks);
  }

  absl::StatusOr<std::optional<absl::Time>> NextDueTime(
      absl::string_view type) override {
    NextDueRequest request;
    request.set_type(std::string(type));
    NextDueResponse m;
    absl::Status s = Call("NextDueTime", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    if (!m.due()) return std::optional<absl::Time>();
    return std::optional<absl::Time>(absl::FromUnixMicros(m.due_micros()));
  }

  absl::Status Complete(const ClaimRef& claim,
                        absl::string_view result) override {
    CompleteRequest request;
    *request.mutable_claim() = ToWire(claim);
    request.set_result(std::string(result));
    OkResponse m;
    // Completing twice with the same claim is OK: safe to repeat.
    return Call("Complete", request, &m, /*idempotent=*/true);
  }

  absl::StatusOr<std::vector<absl::Status>> CompleteBatch(
      absl::Span<const Completion> completions) override {
    if (absl::Status s = CheckCompletionBatch(completions.size()); !s.ok()) {
      return s;
    }
    CompleteBatchResponse m;
    absl::Status s =
        Call("CompleteBatch", ToWire(completions), &m, /*idempotent=*/true);
    // A server from before batches: one call per completion. So too for a
    // request refused whole (kInvalidArgument: over the transport's size
    // limit; the batch's own bounds were checked above), where each
    // completion then gets its own answer.
    if (absl::IsUnimplemented(s) ||
        (absl::IsInvalidArgument(s) && completions.size() > 1)) {
      return Engine::CompleteBatch(completions);
    }
    if (!s.ok()) return s;
    return FromWire(m, completions.size());
  }

  absl::Status Fail(const ClaimRef& claim, absl::string_view error) override {
    return Fail(claim, error, FailOptions());
  }

  absl::Status Fail(const ClaimRef& claim, absl::string_view error,
                    const FailOptions& options) override {
    FailRequest request;
    *request.mutable_claim() = ToWire(claim);
    request.set_error(std::string(error));
    if (options.retry_after.has_value()) {
      request.set_retry_after_micros(
          absl::ToInt64Microseconds(*options.retry_after));
    }
    request.set_permanent(options.permanent);
    OkResponse m;
    return Call("Fail", request, &m, /*idempotent=*/false);
  }

  absl::StatusOr<absl::Time> Heartbeat(const ClaimRef& claim,
                                       absl::Duration extension) override {
    HeartbeatRequest request;
    *request.mutable_claim() = ToWire(claim);
    request.set_extension_micros(absl::ToInt64Microseconds(extension));
    HeartbeatResponse m;
    absl::Status s = Call("Heartbeat", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return absl::FromUnixMicros(m.lease_deadline_micros());
  }

  absl::Status Retry(uint64_t task_id) override {
    return TaskCall("Retry", task_id);
  }
  absl::Status Cancel(uint64_t task_id) override {
    return TaskCall("Cancel", task_id);
  }
  absl::Status Delete(uint64_t task_id) override {
    return TaskCall("Delete", task_id);
  }

  absl::StatusOr<BulkResult> RetryMatching(const BulkFilter& filter) override {
    return BulkCall("RetryMatching", filter);
  }
  absl::StatusOr<BulkResult> CancelMatching(const BulkFilter& filter) override {
    return BulkCall("CancelMatching", filter);
  }
  absl::StatusOr<BulkResult> DeleteMatching(const BulkFilter& filter) override {
    return BulkCall("DeleteMatching", filter);
  }

  absl::StatusOr<Schedule> PutSchedule(
      const taskwal::ScheduleSpec& spec) override {
    PutScheduleRequest request;
    request.set_name(spec.name);
    *request.mutable_spec() = ToWire(spec);
    Schedule m;
    absl::Status s = Call("PutSchedule", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return m;
  }

  absl::Status DeleteSchedule(absl::string_view name) override {
    NameRequest request;
    request.set_name(std::string(name));
    OkResponse m;
    return Call("DeleteSchedule", request, &m, /*idempotent=*/false);
  }

  absl::StatusOr<Schedule> GetSchedule(absl::string_view name) override {
    NameRequest request;
    request.set_name(std::string(name));
    Schedule m;
    absl::Status s = Call("GetSchedule", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return m;
  }

  absl::StatusOr<std::vector<Schedule>> ListSchedules() override {
    ListSchedulesResponse m;
    absl::Status s =
        Call("ListSchedules", EmptyRequest(), &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return std::vector<Schedule>(m.schedules().begin(), m.schedules().end());
  }

  absl::Status Pause(absl::string_view type) override {
    PauseRequest request;
    request.set_type(std::string(type));
    OkResponse m;
    return Call("Pause", request, &m, /*idempotent=*/true);
  }

  absl::Status Resume(absl::string_view type) override {
    PauseRequest request;
    request.set_type(std::string(type));
    OkResponse m;
    return Call("Resume", request, &m, /*idempotent=*/true);
  }

  absl::StatusOr<std::vector<std::string>> PausedTypes() override {
    PausedTypesResponse m;
    absl::Status s =
        Call("PausedTypes", EmptyRequest(), &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return std::vector<std::string>(m.types().begin(), m.types().end());
  }

  absl::StatusOr<Task> Get(uint64_t task_id) override {
    TaskIdRequest request;
    request.set_task_id(task_id);
    Task m;
    absl::Status s = Call("Get", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return m;
  }

  absl::StatusOr<Task> GetByIdempotencyKey(absl::string_view key) override {
    KeyRequest request;
    request.set_key(std::string(key));
    Task m;
    absl::Status s =
        Call("GetByIdempotencyKey", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return m;
  }

  absl::StatusOr<ListPage> List(const ListFilter& filter) override {
    ListTasksResponse m;
    absl::Status s = Call("List", ToWire(filter), &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return FromWire(m);
  }

  absl::StatusOr<std::vector<HistoryEntry>> History(uint64_t task_id) override {
    TaskIdRequest request;
    request.set_task_id(task_id);
    HistoryResponse m;
    absl::Status s = Call("History", request, &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return std::vector<HistoryEntry>(m.entries().begin(), m.entries().end());
  }

  absl::StatusOr<EngineStats> Stats() override {
    StatsResponse m;
    absl::Status s = Call("Stats", EmptyRequest(), &m, /*idempotent=*/true);
    if (!s.ok()) return s;
    return FromWire(m);
  }

  absl::Status Snapshot() override {
    OkResponse m;
    // Writing a large state takes a while: one attempt waits for it rather
    // than starting another snapshot.
    return Call("Snapshot", EmptyRequest(), &m, /*idempotent=*/true,
                kSnapshotTime);
  }

  absl::Status RunMaintenance() override {
    OkResponse m;
    return Call("RunMaintenance", EmptyRequest(), &m, /*idempotent=*/true);
  }

  absl::Status Health() const override {
    OkResponse m;
    return const_cast<RemoteEngine*>(this)->Call("Health", EmptyRequest(), &m,
                                                 /*idempotent=*/true);
  }

  RecoveryReport Recovery() const override {
    RecoveryResponse m;
    if (!const_cast<RemoteEngine*>(this)
             ->Call("Recovery", EmptyRequest(), &m, /*idempotent=*/true)
             .ok()) {
      return RecoveryReport();
    }
    return FromWire(m);
  }

 private:
  // `extra`: time the call takes on top of call_timeout; `retry_for`: how
  // long the transport may look for a server to take it.
  absl::Status Call(absl::string_view method, const Message& request,
                    Message* response, bool idempotent,
                    absl::Duration extra = absl::ZeroDuration(),
                    absl::Duration retry_for = absl::InfiniteDuration()) {
    if (closed_.load(std::memory_order_acquire)) {
      return absl::CancelledError("the remote engine client is closed");
    }
    CallOptions call;
    call.timeout = options_.call_timeout + extra;
    call.idempotent = idempotent;
    call.retry_for = retry_for;
    absl::StatusOr<std::string> bytes =
        transport_->Call(method, request.SerializeAsString(), call);
    if (!bytes.ok()) return bytes.status();
    Reply reply;
    if (!reply.ParseFromString(*bytes)) {
      return absl::InternalError(
          absl::StrCat("the server's answer to ", method, " is not a Reply"));
    }
    absl::Status status = StatusFromWire(reply);
    if (!status.ok()) return status;
    if (!response->ParseFromString(reply.body())) {
      return absl::InternalError(
          absl::StrCat("the server's answer to ", method, " is not a ",
                       response->GetDescriptor()->name()));
    }
    return absl::OkStatus();
  }

  absl::Status TaskCall(absl::string_view method, uint64_t task_id) {
    TaskIdRequest request;
    request.set_task_id(task_id);
    OkResponse m;
    return Call(method, request, &m, /*idempotent=*/false);
  }

  absl::StatusOr<BulkResult> BulkCall(absl::string_view method,
                                      const BulkFilter& filter) {
    BulkResponse m;
    absl::Status s = Call(method, ToWire(filter), &m,
                          /*idempotent=*/filter.dry_run);
    if (!s.ok()) return s;
    return FromWire(m);
  }

  const std::unique_ptr<Transport> transport_;
  const RemoteOptions options_;
  std::atomic<bool> closed_{false};
};

}  // namespace

bool IsRead(absl::string_view method) {
  static const auto* reads = new absl::flat_hash_set<std::string>{
      "NextDueTime", "GetSchedule", "ListSchedules",
      "PausedTypes", "Get",         "GetByIdempotencyKey",
      "List",        "History",     "Stats",
      "Health",      "Recovery"};
  return reads->contains(method);
}

std::string ServeCall(Engine& engine, absl::string_view method,
                      absl::string_view request, const ServeOptions& options) {
  Reply reply;
  const auto& handlers = Handlers();
  auto it = handlers.find(method);
  absl::StatusOr<std::string> body =
      it == handlers.end()
          ? absl::UnimplementedError(absl::StrCat(
                "no engine call is named \"", absl::CHexEscape(method), "\""))
          : it->second(engine, request, options);
  if (body.ok()) {
    reply.set_code("OK");
    reply.set_body(*std::move(body));
  } else if (body.status().GetPayload(engine::kNotLeaderPayload).has_value() ||
             absl::IsCancelled(body.status())) {
    // Deposed, or closed (its server steps down): another server leads,
    // or soon will.
    ToWire(absl::UnavailableError(
               absl::StrCat("this server no longer leads its cluster: ",
                            body.status().message())),
           &reply);
    reply.set_not_leader(true);
  } else {
    ToWire(body.status(), &reply);
  }
  return reply.SerializeAsString();
}

std::unique_ptr<Engine> NewRemoteEngine(std::unique_ptr<Transport> transport,
                                        const RemoteOptions& options) {
  return std::make_unique<RemoteEngine>(std::move(transport), options);
}

}  // namespace taskwal::wire
