#include "benchmarks/taskwal_queue.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace taskwal::bench {
namespace {

class TaskwalClient final : public QueueClient {
 public:
  TaskwalClient(Engine* engine, int index)
      : engine_(engine), worker_(absl::StrCat("worker-", index)) {}

  absl::Status Submit(const NewTask& task, bool* deduplicated) override {
    spec_.idempotency_key.assign(task.key.data(), task.key.size());
    spec_.type.assign(task.type.data(), task.type.size());
    spec_.payload.assign(task.payload.data(), task.payload.size());
    spec_.priority = task.priority;
    absl::StatusOr<SubmitResult> r = engine_->Submit(spec_);
    if (!r.ok()) return r.status();
    *deduplicated = r->deduplicated;
    return absl::OkStatus();
  }

  absl::StatusOr<ClaimedRef> ClaimNext() override {
    absl::StatusOr<ClaimedTask> c = engine_->ClaimNext(worker_, options_);
    if (!c.ok()) return c.status();
    return ClaimedRef{c->task.id(), c->claim.token};
  }

  absl::Status Complete(const ClaimedRef& claim,
                        absl::string_view result) override {
    return engine_->Complete({claim.id, worker_, claim.token}, result);
  }

  absl::Status SubmitBatch(absl::Span<const NewTask> tasks) override {
    specs_.resize(tasks.size());
    for (size_t i = 0; i < tasks.size(); ++i) {
      TaskSpec& spec = specs_[i];
      spec.idempotency_key.assign(tasks[i].key.data(), tasks[i].key.size());
      spec.type.assign(tasks[i].type.data(), tasks[i].type.size());
      spec.payload.assign(tasks[i].payload.data(), tasks[i].payload.size());
      spec.priority = tasks[i].priority;
    }
    return engine_->SubmitBatch(specs_).status();
  }

  absl::Status ClaimNextBatch(size_t max,
                              std::vector<ClaimedRef>* claims) override {
    claims->clear();
    absl::StatusOr<std::vector<ClaimedTask>> c =
        engine_->ClaimNextBatch(worker_, options_, max);
    if (!c.ok()) return c.status();
    for (const ClaimedTask& t : *c) {
      claims->push_back(ClaimedRef{t.task.id(), t.claim.token});
    }
    return absl::OkStatus();
  }

  absl::Status CompleteBatch(absl::Span<const ClaimedRef> claims,
                             absl::string_view result) override {
    completions_.resize(claims.size());
    for (size_t i = 0; i < claims.size(); ++i) {
      completions_[i].claim = {claims[i].id, worker_, claims[i].token};
      completions_[i].result.assign(result.data(), result.size());
    }
    absl::StatusOr<std::vector<absl::Status>> done =
        engine_->CompleteBatch(completions_);
    if (!done.ok()) return done.status();
    for (const absl::Status& s : *done) {
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  Engine* const engine_;
  const std::string worker_;
  const ClaimNextOptions options_;
  TaskSpec spec_;  // Reused to keep allocations out of the loop.
  std::vector<TaskSpec> specs_;
  std::vector<Completion> completions_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TaskwalQueue>> TaskwalQueue::Open(
    const std::string& dir, EngineOptions options) {
  options.data_dir = dir;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  if (!engine.ok()) return engine.status();
  return Wrap(*std::move(engine));
}

std::unique_ptr<TaskwalQueue> TaskwalQueue::Wrap(
    std::unique_ptr<Engine> engine, std::function<absl::Status()> after_close) {
  return std::unique_ptr<TaskwalQueue>(
      new TaskwalQueue(std::move(engine), std::move(after_close)));
}

absl::Status TaskwalQueue::Close() {
  absl::Status closed = engine_->Close();
  if (!after_close_) return closed;
  absl::Status after = after_close_();
  return closed.ok() ? after : closed;
}

absl::StatusOr<std::unique_ptr<QueueClient>> TaskwalQueue::NewClient(
    int client_index) {
  return std::make_unique<TaskwalClient>(engine_.get(), client_index);
}

std::string TaskwalQueue::Diagnostics() {
  absl::StatusOr<EngineStats> s = engine_->Stats();
  if (!s.ok()) return "";
  return absl::StrFormat(
      "%d records, %d fsyncs, %d flushes, %.1f records/flush",
      s->wal_records_flushed, s->fsyncs, s->wal_flushes,
      s->wal_flushes > 0
          ? static_cast<double>(s->wal_records_flushed) / s->wal_flushes
          : 0.0);
}

EngineOptions CompareOptions(SyncMode mode) {
  EngineOptions options;
  options.sync_mode = mode;
  return options;
}

const char* SyncModeName(SyncMode mode) {
  switch (mode) {
    case SyncMode::kAlways:
      return "always";
    case SyncMode::kInterval:
      return "interval";
    case SyncMode::kNone:
      return "none";
  }
  return "?";
}

std::vector<SystemSpec> TaskwalSystems() {
  struct Mode {
    SyncMode mode;
    Durability durability;
    const char* what;
  };
  const Mode modes[] = {
      {SyncMode::kAlways, Durability::kFsyncPerCall,
       "taskwal, SyncMode::kAlways: each call returns after the group "
       "commit fdatasync covering its record (THE REFERENCE)"},
      {SyncMode::kInterval, Durability::kOsPerCall,
       "taskwal, SyncMode::kInterval: record written to the OS per call, "
       "fdatasync every 10 ms"},
      {SyncMode::kNone, Durability::kBuffered,
       "taskwal, SyncMode::kNone: record staged in a 1 MiB buffer"},
  };
  std::vector<SystemSpec> specs;
  for (const Mode& m : modes) {
    const SyncMode mode = m.mode;
    specs.push_back(SystemSpec{
        absl::StrCat("taskwal-", SyncModeName(mode)), m.what, m.durability,
        [mode](const std::string& dir)
            -> absl::StatusOr<std::unique_ptr<QueueSystem>> {
          absl::StatusOr<std::unique_ptr<TaskwalQueue>> q =
              TaskwalQueue::Open(dir, CompareOptions(mode));
          if (!q.ok()) return q.status();
          return std::unique_ptr<QueueSystem>(*std::move(q));
        }});
  }
  return specs;
}

}  // namespace taskwal::bench
