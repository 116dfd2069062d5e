#include "wire/sharded_engine.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace taskwal::wire {
namespace {

// The longest one shard is asked to wait while ClaimNext waits on all.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(50);

class ShardedEngine final : public Engine {
 public:
  explicit ShardedEngine(std::vector<std::unique_ptr<Engine>> shards)
      : shards_(std::move(shards)), n_(static_cast<uint32_t>(shards_.size())) {}

  absl::Status Close() override {
    absl::Status first;
    for (auto& shard : shards_) {
      absl::Status s = shard->Close();
      if (first.ok()) first = s;
    }
    return first;
  }

  absl::StatusOr<SubmitResult> Submit(const TaskSpec& spec) override {
    const uint32_t s = ShardOfKey(spec.idempotency_key, n_);
    if (absl::Status d = CheckDependencies(spec, s); !d.ok()) return d;
    absl::StatusOr<SubmitResult> r = shards_[s]->Submit(spec);
    if (!r.ok()) return r.status();
    r->task_id = Global(r->task_id, s);
    return r;
  }

  absl::StatusOr<std::vector<SubmitResult>> SubmitBatch(
      absl::Span<const TaskSpec> specs) override {
    if (specs.empty()) return shards_[0]->SubmitBatch(specs);
    std::vector<std::vector<TaskSpec>> by_shard(n_);
    std::vector<std::vector<size_t>> index(n_);
    for (size_t i = 0; i < specs.size(); ++i) {
      const uint32_t s = ShardOfKey(specs[i].idempotency_key, n_);
      if (absl::Status d = CheckDependencies(specs[i], s); !d.ok()) {
        return absl::Status(d.code(),
                            absl::StrCat("spec ", i, ": ", d.message()));
      }
      by_shard[s].push_back(specs[i]);
      index[s].push_back(i);
    }
    std::vector<SubmitResult> results(specs.size());
    for (uint32_t s = 0; s < n_; ++s) {
      if (by_shard[s].empty()) continue;
      absl::StatusOr<std::vector<SubmitResult>> r =
          shards_[s]->SubmitBatch(by_shard[s]);
      if (!r.ok()) {
        return absl::Status(
            r.status().code(),
            absl::StrCat("shard ", s, " of ", n_,
                         " refused its part of the "
                         "batch (the parts of earlier shards are submitted; "
                         "submitting the batch again completes it): ",
                         r.status().message()));
      }
      for (size_t j = 0; j < r->size(); ++j) {
        results[index[s][j]] = (*r)[j];
        results[index[s][j]].task_id = Global((*r)[j].task_id, s);
      }
    }
    return results;
  }

  absl::StatusOr<ClaimedTask> Claim(uint64_t task_id,
                                    absl::string_view worker_id,
                                    absl::Duration lease) override {
    return Claimed(
        shards_[Shard(task_id)]->Claim(Local(task_id), worker_id, lease),
        Shard(task_id));
  }

  absl::StatusOr<ClaimedTask> ClaimNext(
      absl::string_view worker_id, const ClaimNextOptions& options) override {
    return Search<ClaimedTask>(
        options,
        [&](uint32_t s, const ClaimNextOptions& o) {
          return shards_[s]->ClaimNext(worker_id, o);
        },
        [&](absl::StatusOr<ClaimedTask> r, uint32_t s) {
          return Claimed(std::move(r), s);
        });
  }

  // The batch of the first shard that has a task ready, then, if it was
  // short, what the other shards have ready now.
  absl::StatusOr<std::vector<ClaimedTask>> ClaimNextBatch(
      absl::string_view worker_id, const ClaimNextOptions& options,
      size_t max_tasks) override {
    if (absl::Status s = CheckClaimBatch(max_tasks); !s.ok()) return s;
    using Batch = std::vector<ClaimedTask>;
    auto global = [&](absl::StatusOr<Batch> r,
                      uint32_t s) -> absl::StatusOr<Batch> {
      if (!r.ok()) return r;
      for (ClaimedTask& c : *r) c = *Claimed(std::move(c), s);
      return r;
    };
    uint32_t first = 0;
    absl::StatusOr<Batch> batch = Search<Batch>(
        options,
        [&](uint32_t s, const ClaimNextOptions& o) {
          return shards_[s]->ClaimNextBatch(worker_id, o, max_tasks);
        },
        [&](absl::StatusOr<Batch> r, uint32_t s) {
          first = s;
          return global(std::move(r), s);
        });
    if (!batch.ok()) return batch;
    ClaimNextOptions now = options;
    now.wait = absl::ZeroDuration();
    for (uint32_t i = 1; i < n_ && batch->size() < max_tasks; ++i) {
      const uint32_t s = (first + i) % n_;
      absl::StatusOr<Batch> more = global(
          shards_[s]->ClaimNextBatch(worker_id, now, max_tasks - batch->size()),
          s);
      // None ready there: look further. A failure ends the batch (as
      // EngineImpl's): keep the claims made.
      if (absl::IsNotFound(more.status())) continue;
      if (!more.ok()) break;
      for (ClaimedTask& c : *more) batch->push_back(std::move(c));
    }
    return batch;
  }

  absl::StatusOr<std::optional<absl::Time>> NextDueTime(
      absl::string_view type) override {
    std::optional<absl::Time> earliest;
    for (auto& shard : shards_) {
      absl::StatusOr<std::optional<absl::Time>> due = shard->NextDueTime(type);
      if (!due.ok()) return due.status();
      if (due->has_value() && (!earliest || **due < *earliest)) earliest = *due;
    }
    return earliest;
  }

  absl::Status Complete(const ClaimRef& claim,
                        absl::string_view result) override {
    return shards_[Shard(claim.task_id)]->Complete(LocalRef(claim), result);
  }

  // One CompleteBatch per shard that holds some of the claims.
  absl::StatusOr<std::vector<absl::Status>> CompleteBatch(
      absl::Span<const Completion> completions) override {
    if (absl::Status s = CheckCompletionBatch(completions.size()); !s.ok()) {
      return s;
    }
    std::vector<std::vector<Completion>> by_shard(n_);
    std::vector<std::vector<size_t>> where(n_);
    for (size_t i = 0; i < completions.size(); ++i) {
      const uint32_t s = Shard(completions[i].claim.task_id);
      by_shard[s].push_back(
          Completion{LocalRef(completions[i].claim), completions[i].result});
      where[s].push_back(i);
    }
    std::vector<absl::Status> done(completions.size());
    for (uint32_t s = 0; s < n_; ++s) {
      if (by_shard[s].empty()) continue;
      absl::StatusOr<std::vector<absl::Status>> r =
          shards_[s]->CompleteBatch(by_shard[s]);
      if (!r.ok()) return r.status();
      if (r->size() != where[s].size()) {
        return absl::InternalError(
            absl::StrCat("shard ", s, " answered ", r->size(), " of ",
                         where[s].size(), " completions"));
      }
      for (size_t j = 0; j < r->size(); ++j) {
        done[where[s][j]] = std::move((*r)[j]);
      }
    }
    return done;
  }
  absl::Status Fail(const ClaimRef& claim, absl::string_view error) override {
    return shards_[Shard(claim.task_id)]->Fail(LocalRef(claim), error);
  }
  absl::Status Fail(const ClaimRef& claim, absl::string_view error,
                    const FailOptions& options) override {
    return shards_[Shard(claim.task_id)]->Fail(LocalRef(claim), error, options);
  }
  absl::StatusOr<absl::Time> Heartbeat(const ClaimRef& claim,
                                       absl::Duration extension) override {
    return shards_[Shard(claim.task_id)]->Heartbeat(LocalRef(claim), extension);
  }
  absl::Status Retry(uint64_t id) override {
    return shards_[Shard(id)]->Retry(Local(id));
  }
  absl::Status Cancel(uint64_t id) override {
    return shards_[Shard(id)]->Cancel(Local(id));
  }
  absl::Status Delete(uint64_t id) override {
    return shards_[Shard(id)]->Delete(Local(id));
  }

  absl::StatusOr<BulkResult> RetryMatching(const BulkFilter& filter) override {
    return Bulk(filter, &Engine::RetryMatching);
  }
  absl::StatusOr<BulkResult> CancelMatching(const BulkFilter& filter) override {
    return Bulk(filter, &Engine::CancelMatching);
  }
  absl::StatusOr<BulkResult> DeleteMatching(const BulkFilter& filter) override {
    return Bulk(filter, &Engine::DeleteMatching);
  }

  absl::StatusOr<Schedule> PutSchedule(const ScheduleSpec& spec) override {
    return shards_[ShardOfKey(spec.name, n_)]->PutSchedule(spec);
  }
  absl::Status DeleteSchedule(absl::string_view name) override {
    return shards_[ShardOfKey(name, n_)]->DeleteSchedule(name);
  }
  absl::StatusOr<Schedule> GetSchedule(absl::string_view name) override {
    return shards_[ShardOfKey(name, n_)]->GetSchedule(name);
  }
  absl::StatusOr<std::vector<Schedule>> ListSchedules() override {
    std::vector<Schedule> all;
    for (auto& shard : shards_) {
      absl::StatusOr<std::vector<Schedule>> list = shard->ListSchedules();
      if (!list.ok()) return list.status();
      all.insert(all.end(), list->begin(), list->end());
    }
    std::sort(all.begin(), all.end(), [](const Schedule& a, const Schedule& b) {
      return a.name() < b.name();
    });
    return all;
  }

  absl::Status Pause(absl::string_view type) override {
    return Every([&](Engine& e) { return e.Pause(type); });
  }
  absl::Status Resume(absl::string_view type) override {
    return Every([&](Engine& e) { return e.Resume(type); });
  }
  absl::StatusOr<std::vector<std::string>> PausedTypes() override {
    std::vector<std::string> all;
    for (auto& shard : shards_) {
      absl::StatusOr<std::vector<std::string>> types = shard->PausedTypes();
      if (!types.ok()) return types.status();
      all.insert(all.end(), types->begin(), types->end());
    }
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    return all;
  }

  absl::StatusOr<Task> Get(uint64_t id) override {
    return Translated(shards_[Shard(id)]->Get(Local(id)), Shard(id));
  }
  absl::StatusOr<Task> GetByIdempotencyKey(absl::string_view key) override {
    const uint32_t s = ShardOfKey(key, n_);
    return Translated(shards_[s]->GetByIdempotencyKey(key), s);
  }

  absl::StatusOr<ListPage> List(const ListFilter& filter) override {
    // Each shard's ids above the cursor, limit + 1 of them, merged.
    std::vector<std::pair<uint64_t, Task>> merged;
    bool more = false;
    for (uint32_t s = 0; s < n_; ++s) {
      ListFilter f = filter;
      f.after_id = filter.after_id >= s ? (filter.after_id - s) / n_ : 0;
      absl::StatusOr<ListPage> page = shards_[s]->List(f);
      if (!page.ok()) return page.status();
      if (page->next_cursor != 0) more = true;
      for (Task& t : page->tasks) {
        const uint64_t id = Global(t.id(), s);
        if (id <= filter.after_id) continue;
        t.set_id(id);
        TranslateRefs(t, s);
        merged.emplace_back(id, std::move(t));
      }
    }
    std::sort(merged.begin(), merged.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    ListPage out;
    const size_t limit = filter.limit;
    if (merged.size() > limit) {
      more = true;
      merged.resize(limit);
    }
    for (auto& [id, task] : merged) out.tasks.push_back(std::move(task));
    out.next_cursor = more && !out.tasks.empty() ? out.tasks.back().id() : 0;
    return out;
  }

  absl::StatusOr<std::vector<HistoryEntry>> History(uint64_t id) override {
    return shards_[Shard(id)]->History(Local(id));
  }

  absl::StatusOr<EngineStats> Stats() override {
    EngineStats sum;
    for (auto& shard : shards_) {
      absl::StatusOr<EngineStats> s = shard->Stats();
      if (!s.ok()) return s.status();
      sum.pending += s->pending;
      sum.claimed += s->claimed;
      sum.completed += s->completed;
      sum.failed += s->failed;
      sum.cancelled += s->cancelled;
      sum.tasks += s->tasks;
      sum.deduplicated += s->deduplicated;
      sum.submitted += s->submitted;
      sum.claims += s->claims;
      sum.completions += s->completions;
      sum.failed_attempts += s->failed_attempts;
      sum.lease_expiries += s->lease_expiries;
      sum.retries += s->retries;
      sum.cancellations += s->cancellations;
      sum.deletions += s->deletions;
      sum.retention_removals += s->retention_removals;
      sum.transitions += s->transitions;
      sum.partitions += s->partitions;
      sum.paused_types = std::max(sum.paused_types, s->paused_types);
      sum.schedules += s->schedules;
      sum.last_lsn += s->last_lsn;
      sum.fsyncs += s->fsyncs;
      sum.wal_bytes += s->wal_bytes;
      sum.wal_flushes += s->wal_flushes;
      sum.wal_records_flushed += s->wal_records_flushed;
      sum.snapshots += s->snapshots;
      sum.last_snapshot_lsn += s->last_snapshot_lsn;
      sum.last_snapshot_time =
          std::max(sum.last_snapshot_time, s->last_snapshot_time);
      for (const auto& [type, t] : s->by_type) sum.by_type[type].Merge(t);
    }
    return sum;
  }

  absl::Status RunMaintenance() override {
    return Every([](Engine& e) { return e.RunMaintenance(); });
  }
  absl::Status Snapshot() override {
    return Every([](Engine& e) { return e.Snapshot(); });
  }

  RecoveryReport Recovery() const override {
    RecoveryReport sum;
    for (uint32_t s = 0; s < n_; ++s) {
      const RecoveryReport r = shards_[s]->Recovery();
      sum.snapshot_lsn += r.snapshot_lsn;
      sum.records_replayed += r.records_replayed;
      sum.last_lsn += r.last_lsn;
      sum.truncated_bytes += r.truncated_bytes;
      sum.duration = std::max(sum.duration, r.duration);
      for (const std::string& note : r.notes) {
        sum.notes.push_back(absl::StrCat("shard ", s, ": ", note));
      }
    }
    return sum;
  }

  absl::Status Health() const override {
    for (uint32_t s = 0; s < n_; ++s) {
      absl::Status h = shards_[s]->Health();
      if (!h.ok()) {
        return absl::Status(h.code(),
                            absl::StrCat("shard ", s, ": ", h.message()));
      }
    }
    return absl::OkStatus();
  }

 private:
  uint32_t Shard(uint64_t id) const { return static_cast<uint32_t>(id % n_); }
  uint64_t Local(uint64_t id) const { return id / n_; }
  uint64_t Global(uint64_t local, uint32_t s) const {
    return local == 0 ? 0 : local * n_ + s;
  }
  ClaimRef LocalRef(const ClaimRef& claim) const {
    ClaimRef ref = claim;
    ref.task_id = Local(claim.task_id);
    return ref;
  }

  // Ids a task names (its dependencies) are of its own shard.
  void TranslateRefs(Task& t, uint32_t s) const {
    for (int i = 0; i < t.depends_on_size(); ++i) {
      t.set_depends_on(i, Global(t.depends_on(i), s));
    }
    for (int i = 0; i < t.waiting_for_size(); ++i) {
      t.set_waiting_for(i, Global(t.waiting_for(i), s));
    }
  }

  absl::StatusOr<Task> Translated(absl::StatusOr<Task> t, uint32_t s) const {
    if (!t.ok()) return t;
    t->set_id(Global(t->id(), s));
    TranslateRefs(*t, s);
    return t;
  }

  // ClaimNext's search over the shards, for one claim or a batch (T):
  // ask(s, options) asks shard s. A shard without a leader (kUnavailable)
  // is passed over: the others' tasks are still claimed. The first answer
  // that is neither kNotFound nor kUnavailable is returned through
  // global(answer, s).
  template <typename T, typename Ask, typename Global>
  absl::StatusOr<T> Search(const ClaimNextOptions& options, Ask ask,
                           Global global) {
    const absl::Time deadline = absl::Now() + options.wait;
    ClaimNextOptions now = options;
    now.wait = absl::ZeroDuration();
    uint32_t start = next_.fetch_add(1, std::memory_order_relaxed) % n_;
    absl::Status not_found = absl::NotFoundError("no task is ready");
    absl::Status unavailable;
    uint32_t answered = 0;  // Shards that said kNotFound in the last round.
    auto take = [&](absl::StatusOr<T>& r, uint32_t s) {
      if (absl::IsNotFound(r.status())) {
        not_found = r.status();
        ++answered;
        return false;
      }
      if (absl::IsUnavailable(r.status())) {
        unavailable = absl::UnavailableError(
            absl::StrCat("shard ", s, " of ", n_, ": ", r.status().message()));
        return false;
      }
      return true;
    };
    while (true) {
      answered = 0;  // Both of this round.
      unavailable = absl::OkStatus();
      for (uint32_t i = 0; i < n_; ++i) {
        const uint32_t s = (start + i) % n_;
        absl::StatusOr<T> r = ask(s, now);
        if (take(r, s)) return global(std::move(r), s);
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        if (answered > 0 || unavailable.ok()) {
          if (unavailable.ok()) return not_found;
          return absl::NotFoundError(absl::StrCat(not_found.message(), " (",
                                                  unavailable.message(), ")"));
        }
        return unavailable;  // No shard answered.
      }
      // Wait on one shard for a moment, then look at all again.
      ClaimNextOptions slice = options;
      slice.wait = std::min(left, kWaitSlice);
      absl::StatusOr<T> r = ask(start, slice);
      if (take(r, start)) return global(std::move(r), start);
      start = (start + 1) % n_;
    }
  }

  absl::StatusOr<ClaimedTask> Claimed(absl::StatusOr<ClaimedTask> c,
                                      uint32_t s) const {
    if (!c.ok()) return c;
    c->task.set_id(Global(c->task.id(), s));
    TranslateRefs(c->task, s);
    c->claim.task_id = Global(c->claim.task_id, s);
    return c;
  }

  absl::Status CheckDependencies(const TaskSpec& spec, uint32_t s) const {
    for (const std::string& key : spec.depends_on) {
      if (ShardOfKey(key, n_) != s) {
        return absl::InvalidArgumentError(
            absl::StrCat("a dependency must be a task of the same shard (", n_,
                         " shards; the keys hash to shards ", s, " and ",
                         ShardOfKey(key, n_), ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<BulkResult> Bulk(
      const BulkFilter& filter,
      absl::StatusOr<BulkResult> (Engine::*call)(const BulkFilter&)) {
    BulkResult out;
    for (uint32_t s = 0; s < n_; ++s) {
      BulkFilter f = filter;
      if (filter.limit != 0) {
        const uint64_t used = out.task_ids.size();
        if (used >= filter.limit) {
          out.more = true;  // Shards not looked at may hold more.
          break;
        }
        f.limit = filter.limit - used;
      }
      absl::StatusOr<BulkResult> r = ((*shards_[s]).*call)(f);
      if (!r.ok()) return r.status();
      out.changed += r->changed;
      for (uint64_t id : r->task_ids) out.task_ids.push_back(Global(id, s));
      out.more = out.more || r->more;
    }
    return out;
  }

  template <typename F>
  absl::Status Every(F f) {
    absl::Status first;
    for (auto& shard : shards_) {
      absl::Status s = f(*shard);
      if (first.ok()) first = s;
    }
    return first;
  }

  const std::vector<std::unique_ptr<Engine>> shards_;
  const uint32_t n_;
  std::atomic<uint32_t> next_{0};
};

}  // namespace

uint32_t ShardOfKey(absl::string_view key, uint32_t shards) {
  // FNV-1a (64 bits): stable, and unrelated to the CRC-based hash that
  // picks a partition within a shard, so a shard's keys spread over its
  // partitions.
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<uint32_t>(h % shards);
}

std::unique_ptr<Engine> NewShardedEngine(
    std::vector<std::unique_ptr<Engine>> shards) {
  if (shards.size() == 1) return std::move(shards[0]);
  return std::make_unique<ShardedEngine>(std::move(shards));
}

}  // namespace taskwal::wire
