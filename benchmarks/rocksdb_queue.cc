// A RocksDB task store as one would build it: a task per key
// ("t" + big-endian id -> serialized taskwal::Task), an idempotency index
// ("k" + key -> id), one WriteBatch per transition, and a mutex-protected
// in-memory ready queue (priority, then id) for ClaimNext, filled as tasks
// are submitted (a restart would rebuild it with a scan; compare never
// restarts it). Clients write concurrently, so RocksDB's own write-group
// commit (a leader writes and syncs the WAL for every writer queued behind
// it) is in play.
//
//   rocksdb-sync      WriteOptions::sync = true: fsync per write group
//                     (the counterpart of taskwal kAlways).
//   rocksdb-nosync    sync = false: each write reaches the OS, no fsync
//                     (the counterpart of taskwal kInterval).
//   rocksdb-buffered  manual_wal_flush: the WAL stays in RocksDB's buffer
//                     until it fills (the counterpart of taskwal kNone).

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "benchmarks/queue.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/version.h"
#include "rocksdb/write_batch.h"
#include "taskwal/task.pb.h"

namespace taskwal::bench {
namespace {

enum class RocksMode { kSync, kNoSync, kBuffered };

#if defined(__SANITIZE_THREAD__)
#define TASKWAL_BENCH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TASKWAL_BENCH_TSAN 1
#endif
#endif

// ThreadSanitizer cannot see RocksDB's lock-free synchronization (the
// library is prebuilt, not instrumented): the leader of a write group
// copies its followers' batches, readers walk the memtable without a lock,
// and TSan reports both as races. In a TSan build every client call into
// RocksDB is serialized here, so `compare --quick` under --config=tsan
// checks this file's code rather than RocksDB's; the figures of such a build
// mean nothing anyway. Other builds: no lock.
class TsanSerializer {
 public:
#ifdef TASKWAL_BENCH_TSAN
  TsanSerializer() { Mu().Lock(); }
  ~TsanSerializer() { Mu().Unlock(); }

 private:
  static absl::Mutex& Mu() {
    static absl::Mutex* mu = new absl::Mutex;
    return *mu;
  }
#else
  TsanSerializer() {}
#endif
};

constexpr int kKeyStripes = 256;

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("rocksdb ", what, ": ", s.ToString()));
}

std::string TaskKey(uint64_t id) {
  std::string key(9, '\0');
  key[0] = 't';
  for (int i = 0; i < 8; ++i) {
    key[1 + i] = static_cast<char>(id >> (56 - 8 * i));
  }
  return key;
}

std::string IndexKey(absl::string_view idempotency_key) {
  return absl::StrCat("k", idempotency_key);
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

class RocksQueue final : public QueueSystem {
 public:
  static absl::StatusOr<std::unique_ptr<RocksQueue>> Open(
      const std::string& dir, RocksMode mode) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.manual_wal_flush = mode == RocksMode::kBuffered;
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, dir + "/rocksdb", &db);
    if (!s.ok()) return FromRocks(s, "open");
    auto queue = std::unique_ptr<RocksQueue>(new RocksQueue(db, mode));
    return queue;
  }

  ~RocksQueue() override { Close().IgnoreError(); }

  absl::StatusOr<std::unique_ptr<QueueClient>> NewClient(
      int client_index) override;

  absl::Status Close() override {
    if (db_ == nullptr) return absl::OkStatus();
    absl::Status result;
    if (mode_ == RocksMode::kBuffered) {
      result = FromRocks(db_->FlushWAL(/*sync=*/true), "flush wal");
    } else {
      result = FromRocks(db_->SyncWAL(), "sync wal");
    }
    absl::Status c = FromRocks(db_->Close(), "close");
    if (result.ok()) result = c;
    db_.reset();
    return result;
  }

 private:
  friend class RocksClient;
  RocksQueue(rocksdb::DB* db, RocksMode mode) : db_(db), mode_(mode) {
    write_options_.sync = mode == RocksMode::kSync;
  }

  absl::Mutex& StripeFor(absl::string_view key) {
    return key_stripes_[absl::HashOf(key) % kKeyStripes];
  }

  void PushReady(int32_t priority, uint64_t id) ABSL_LOCKS_EXCLUDED(ready_mu_) {
    absl::MutexLock l(&ready_mu_);
    ready_.insert({-static_cast<int64_t>(priority), id});
  }

  bool PopReady(std::pair<int64_t, uint64_t>* out)
      ABSL_LOCKS_EXCLUDED(ready_mu_) {
    absl::MutexLock l(&ready_mu_);
    if (ready_.empty()) return false;
    *out = *ready_.begin();
    ready_.erase(ready_.begin());
    return true;
  }

  std::unique_ptr<rocksdb::DB> db_;
  const RocksMode mode_;
  rocksdb::WriteOptions write_options_;
  std::atomic<uint64_t> next_id_{0};
  std::atomic<uint64_t> next_token_{0};
  // A submit checks the index and writes under the stripe of its key, so
  // two submits of one key cannot both create a task.
  absl::Mutex key_stripes_[kKeyStripes];

  absl::Mutex ready_mu_;
  // (-priority, id): begin() is the next task to claim.
  absl::btree_set<std::pair<int64_t, uint64_t>> ready_
      ABSL_GUARDED_BY(ready_mu_);
};

class RocksClient final : public QueueClient {
 public:
  RocksClient(RocksQueue* queue, int index)
      : queue_(queue), worker_(absl::StrCat("worker-", index)) {}

  absl::Status Submit(const NewTask& task, bool* deduplicated) override {
    const std::string index_key = IndexKey(task.key);
    absl::MutexLock stripe(&queue_->StripeFor(task.key));
    TsanSerializer serialize;
    rocksdb::Status s = queue_->db_->Get(read_options_, index_key, &value_);
    if (s.ok()) {
      // The key exists: the same task if type and payload match.
      uint64_t id = 0;
      std::memcpy(&id, value_.data(), sizeof(id));
      absl::Status r = FromRocks(
          queue_->db_->Get(read_options_, TaskKey(id), &value_), "get task");
      if (!r.ok()) return r;
      if (!task_.ParseFromString(value_)) {
        return absl::DataLossError("bad task record");
      }
      if (task_.type() != task.type || task_.payload() != task.payload) {
        return absl::AlreadyExistsError("key names a different task");
      }
      *deduplicated = true;
      return absl::OkStatus();
    }
    if (!s.IsNotFound()) return FromRocks(s, "get index");
    const uint64_t id = queue_->next_id_.fetch_add(1) + 1;
    task_.Clear();
    task_.set_id(id);
    task_.set_idempotency_key(task.key.data(), task.key.size());
    task_.set_type(task.type.data(), task.type.size());
    task_.set_payload(task.payload.data(), task.payload.size());
    task_.set_priority(task.priority);
    task_.set_status(PENDING);
    task_.set_max_attempts(3);
    task_.set_created_micros(NowMicros());
    task_.SerializeToString(&value_);
    rocksdb::WriteBatch batch;
    batch.Put(TaskKey(id), value_);
    batch.Put(index_key,
              rocksdb::Slice(reinterpret_cast<const char*>(&id), sizeof(id)));
    absl::Status w =
        FromRocks(queue_->db_->Write(queue_->write_options_, &batch), "write");
    if (!w.ok()) return w;
    queue_->PushReady(task.priority, id);
    *deduplicated = false;
    return absl::OkStatus();
  }

  absl::StatusOr<ClaimedRef> ClaimNext() override {
    TsanSerializer serialize;
    std::pair<int64_t, uint64_t> next;
    if (!queue_->PopReady(&next)) {
      return absl::NotFoundError("no task is ready");
    }
    const uint64_t id = next.second;
    const std::string key = TaskKey(id);
    absl::Status r =
        FromRocks(queue_->db_->Get(read_options_, key, &value_), "get task");
    if (!r.ok()) return r;
    if (!task_.ParseFromString(value_)) {
      return absl::DataLossError("bad task record");
    }
    const uint64_t token = queue_->next_token_.fetch_add(1) + 1;
    task_.set_status(CLAIMED);
    task_.set_attempts(task_.attempts() + 1);
    task_.set_claimed_by(worker_);
    task_.set_claim_token(token);
    task_.set_claimed_micros(NowMicros());
    task_.set_lease_deadline_micros(task_.claimed_micros() + 30000000);
    task_.SerializeToString(&value_);
    rocksdb::WriteBatch batch;
    batch.Put(key, value_);
    absl::Status w =
        FromRocks(queue_->db_->Write(queue_->write_options_, &batch), "write");
    if (!w.ok()) {
      queue_->PushReady(static_cast<int32_t>(-next.first), id);
      return w;
    }
    return ClaimedRef{id, token};
  }

  absl::Status Complete(const ClaimedRef& claim,
                        absl::string_view result) override {
    TsanSerializer serialize;
    const std::string key = TaskKey(claim.id);
    absl::Status r =
        FromRocks(queue_->db_->Get(read_options_, key, &value_), "get task");
    if (!r.ok()) return r;
    if (!task_.ParseFromString(value_)) {
      return absl::DataLossError("bad task record");
    }
    if (task_.status() != CLAIMED || task_.claimed_by() != worker_ ||
        task_.claim_token() != claim.token) {
      return absl::AbortedError("claim is not current");
    }
    task_.set_status(COMPLETED);
    task_.set_result(result.data(), result.size());
    task_.set_finished_micros(NowMicros());
    task_.set_lease_deadline_micros(0);
    task_.SerializeToString(&value_);
    rocksdb::WriteBatch batch;
    batch.Put(key, value_);
    return FromRocks(queue_->db_->Write(queue_->write_options_, &batch),
                     "write");
  }

 private:
  RocksQueue* const queue_;
  const std::string worker_;
  const rocksdb::ReadOptions read_options_;
  std::string value_;
  Task task_;
};

absl::StatusOr<std::unique_ptr<QueueClient>> RocksQueue::NewClient(
    int client_index) {
  return std::make_unique<RocksClient>(this, client_index);
}

}  // namespace

std::vector<SystemSpec> RocksdbSystems() {
  struct Variant {
    RocksMode mode;
    const char* name;
    Durability durability;
    const char* what;
  };
  const Variant variants[] = {
      {RocksMode::kSync, "rocksdb-sync", Durability::kFsyncPerCall,
       "WriteOptions::sync=true (fsync per write group)"},
      {RocksMode::kNoSync, "rocksdb-nosync", Durability::kOsPerCall,
       "WriteOptions::sync=false (WAL written to the OS per write)"},
      {RocksMode::kBuffered, "rocksdb-buffered", Durability::kBuffered,
       "manual_wal_flush=true (WAL buffered in memory until full)"},
  };
  std::vector<SystemSpec> specs;
  for (const Variant& v : variants) {
    const RocksMode mode = v.mode;
    specs.push_back(SystemSpec{
        v.name,
        absl::StrCat("RocksDB ", ROCKSDB_MAJOR, ".", ROCKSDB_MINOR, ".",
                     ROCKSDB_PATCH,
                     " task store (task per key + key index, WriteBatch per "
                     "transition, in-memory ready queue), ",
                     v.what),
        v.durability,
        [mode](const std::string& dir)
            -> absl::StatusOr<std::unique_ptr<QueueSystem>> {
          absl::StatusOr<std::unique_ptr<RocksQueue>> q =
              RocksQueue::Open(dir, mode);
          if (!q.ok()) return q.status();
          return std::unique_ptr<QueueSystem>(*std::move(q));
        }});
  }
  return specs;
}

}  // namespace taskwal::bench
